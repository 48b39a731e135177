package fhir_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/spgateway/spgateway/fhir"
	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/oauth"
	"github.com/spgateway/spgateway/gateway/store"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// oauthBase is the base_url of the gateways in these tests: replicas behind
// one load balancer share it, so assertions name one token URL.
const (
	oauthBase = "https://spgateway.test"
	tokenURL  = oauthBase + oauth.TokenPath
)

// clientKeys are the private keys of the test clients: two practices with
// EC P-256 keys and a provider with a 2048-bit RSA key. Generating RSA keys
// is slow, so they are made once.
var clientKeys = sync.OnceValue(func() map[string]crypto.Signer {
	keys := map[string]crypto.Signer{}
	for _, id := range []string{"practice-a81001", "practice-a81002"} {
		k, err := oauth.GenerateKey(oauth.ES256)
		if err != nil {
			panic(err)
		}
		keys[id] = k
	}
	keys["provider-prv01"] = rsaKey()
	return keys
})

// rsaKey makes a 2048-bit RSA key, the smallest accepted and the quickest
// to generate.
func rsaKey() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

// registeredClients registers the test clients with their public keys (the
// practices' from a JWK Set, the provider's from PEM, as configuration
// does), plus an admin without keys.
func registeredClients(t testing.TB) []oauth.Client {
	t.Helper()
	keys := clientKeys()
	var out []oauth.Client
	for _, p := range []gateway.Principal{
		{ClientID: "practice-a81001", Role: gateway.RolePractice, Org: "A81001"},
		{ClientID: "practice-a81002", Role: gateway.RolePractice, Org: "A81002"},
		{ClientID: "provider-prv01", Role: gateway.RoleProvider, Org: "PRV01"},
	} {
		var jwks []jose.JSONWebKey
		if p.Role == gateway.RolePractice {
			set, err := oauth.MarshalJWKS(keys[p.ClientID], "")
			if err != nil {
				t.Fatal(err)
			}
			if jwks, err = oauth.ParseJWKS(set); err != nil {
				t.Fatal(err)
			}
		} else {
			pemKey, err := oauth.MarshalPublicKeyPEM(keys[p.ClientID].Public())
			if err != nil {
				t.Fatal(err)
			}
			jwk, err := oauth.ParsePublicKeyPEM(pemKey, "")
			if err != nil {
				t.Fatal(err)
			}
			jwks = []jose.JSONWebKey{jwk}
		}
		out = append(out, oauth.Client{Principal: p, Keys: jwks})
	}
	return out
}

// testClock is a clock tests move.
type testClock struct{ t atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.t.Store(time.Now().UnixNano())
	return c
}
func (c *testClock) Now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *testClock) Advance(d time.Duration) { c.t.Add(int64(d)) }

// oauthGateway is a gateway that issues and accepts access tokens, with
// the development keys still accepted beside them.
type oauthGateway struct {
	*testGateway
	tokens  *oauth.Server
	clients *oauth.Clients
}

type oauthSetup struct {
	cfg     store.Config // the database, shared by replicas
	keys    *oauth.Keys
	clients *oauth.Clients
	clock   *testClock
	meters  *sdkmetric.MeterProvider
	edit    func(*fhir.Config) // when set, changes each replica's HTTP configuration
}

// newOAuthSetup makes a database, a gateway signing key and the client
// registry for engine.
func newOAuthSetup(t *testing.T, engine string) *oauthSetup {
	t.Helper()
	keys, err := oauth.EphemeralKeys()
	if err != nil {
		t.Fatal(err)
	}
	return &oauthSetup{cfg: storetest.Config(t, engine), keys: keys,
		clients: oauth.NewClients(registeredClients(t)), clock: newTestClock()}
}

// start runs one gateway replica of the setup.
func (o *oauthSetup) start(t *testing.T) *oauthGateway {
	t.Helper()
	st, err := store.Open(context.Background(), o.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := oauth.Config{BaseURL: oauthBase, Clients: o.clients, Keys: o.keys, JTIs: st, Now: o.clock.Now}
	if o.meters != nil {
		cfg.MeterProvider = o.meters
	}
	tokens, err := oauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	gcfg := devConfig()
	gcfg.Store, gcfg.Outbox = st, st
	svc, err := gateway.NewService(gcfg)
	if err != nil {
		t.Fatal(err)
	}
	fcfg := fhir.Config{BaseURL: oauthBase, Tokens: tokens}
	if o.edit != nil {
		o.edit(&fcfg)
	}
	h, err := fhir.NewServer(fcfg, svc, oauth.Chain(tokens, devKeys()))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	g := &testGateway{t: t, srv: srv, svc: svc, fhir: h, store: st, base: srv.URL}
	return &oauthGateway{testGateway: g, tokens: tokens, clients: o.clients}
}

// assertion signs a client assertion for client with its own key.
func assertion(t testing.TB, client string) string {
	t.Helper()
	a, err := oauth.SignAssertion(clientKeys()[client], "", client, tokenURL, time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// tokenForm is a well-formed token request for an assertion.
func tokenForm(assertion string) url.Values {
	return url.Values{
		"grant_type":            {oauth.GrantClientCredentials},
		"client_assertion_type": {oauth.AssertionType},
		"client_assertion":      {assertion},
	}
}

// postToken sends a raw token request body.
func (g *oauthGateway) postToken(contentType string, body io.Reader) response {
	g.t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.base+oauth.TokenPath, body)
	if err != nil {
		g.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := g.srv.Client().Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		g.t.Fatal(err)
	}
	if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
		g.t.Errorf("token endpoint answered with Cache-Control %q, want no-store", cc)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		g.t.Errorf("token endpoint answered with Content-Type %q", ct)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

func (g *oauthGateway) token(form url.Values) response {
	g.t.Helper()
	return g.postToken("application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
}

// accessToken gets an access token for client, or fails the test.
func (g *oauthGateway) accessToken(client string) string {
	g.t.Helper()
	r := g.token(tokenForm(assertion(g.t, client)))
	if r.status != http.StatusOK {
		g.t.Fatalf("token for %s: %d %s", client, r.status, r.body)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.Unmarshal(r.body, &tok); err != nil {
		g.t.Fatal(err)
	}
	if tok.TokenType != "Bearer" || tok.ExpiresIn != 300 || tok.AccessToken == "" {
		g.t.Fatalf("token response %s", r.body)
	}
	return tok.AccessToken
}

// oauthErr checks a refused token request: its status and RFC 6749 error
// code, a description containing want, and that the body holds nothing but
// error and error_description.
func oauthErr(t testing.TB, r response, status int, code, want string) {
	t.Helper()
	if r.status != status {
		t.Errorf("status %d, want %d: %s", r.status, status, r.body)
	}
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("error body is not JSON: %s", r.body)
	}
	if m["error"] != code {
		t.Errorf("error %v, want %s: %s", m["error"], code, r.body)
	}
	desc, _ := m["error_description"].(string)
	if !strings.Contains(desc, want) {
		t.Errorf("error_description %q does not say %q", desc, want)
	}
	if len(m) != 2 {
		t.Errorf("error body has other members: %s", r.body)
	}
}

// assertionClaims are valid claims for client, changed by edit.
func assertionClaims(client string, edit func(map[string]any)) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss": client, "sub": client, "aud": tokenURL,
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": gateway.NewUUID(),
	}
	if edit != nil {
		edit(c)
	}
	return c
}

// TestOAuthClientCredentials: a client's signed assertion gets an access
// token, and the token works on the FHIR API with the client's tenancy;
// development keys keep working beside tokens.
func TestOAuthClientCredentials(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newOAuthSetup(t, engine).start(t)
		practice := g.accessToken("practice-a81001")

		h, c := claimsOf(t, practice)
		if h["kid"] != g.tokensKeyID(t) || h["typ"] != "at+jwt" || h["alg"] != "ES256" {
			t.Errorf("access token header %v", h)
		}
		if c["iss"] != oauthBase || c["sub"] != "practice-a81001" || c["aud"] != oauthBase+"/fhir" || c["jti"] == "" {
			t.Errorf("access token claims %v", c)
		}
		if exp, iat := c["exp"].(float64), c["iat"].(float64); exp-iat != 300 {
			t.Errorf("access token lives %vs, want 300", exp-iat)
		}

		r := g.post("/fhir", practice, fixture(t, "referral-bundle.json"))
		if r.status != http.StatusOK {
			t.Fatalf("referral with an access token: %d %s", r.status, r.body)
		}
		// The RSA-keyed provider the referral was routed to sees its Task;
		// the other practice and provider (development keys) see nothing.
		provider := g.accessToken("provider-prv01")
		if n := total(t, g.get("/fhir/Task", provider)); n != 1 {
			t.Errorf("provider PRV01 sees %d Tasks, want 1", n)
		}
		if n := total(t, g.get("/fhir/ServiceRequest", practice)); n != 1 {
			t.Errorf("practice A81001 sees %d ServiceRequests, want 1", n)
		}
		other := g.accessToken("practice-a81002")
		if n := total(t, g.get("/fhir/ServiceRequest", other)); n != 0 {
			t.Errorf("practice A81002 sees %d ServiceRequests, want 0", n)
		}
		if n := total(t, g.get("/fhir/Task", keyPRV02)); n != 0 {
			t.Errorf("provider PRV02 (development key) sees %d Tasks, want 0", n)
		}
		if n := total(t, g.get("/fhir/Task", keyPRV01)); n != 1 {
			t.Errorf("provider PRV01 (development key) sees %d Tasks, want 1", n)
		}

		// aud may be an array holding the token URL; client_id may repeat
		// the iss; a scope is ignored.
		key := clientKeys()["practice-a81001"]
		kid, _ := oauth.Thumbprint(key.Public())
		a := signJWT(t, key, jose.ES256, kid, assertionClaims("practice-a81001", func(c map[string]any) {
			c["aud"] = []string{"https://elsewhere.example", tokenURL}
		}), nil)
		form := tokenForm(a)
		form.Set("client_id", "practice-a81001")
		form.Set("scope", "system/*.read")
		if r := g.token(form); r.status != http.StatusOK {
			t.Errorf("aud array, client_id and scope: %d %s", r.status, r.body)
		}
	})
}

// tokensKeyID is the kid the gateway signs with.
func (g *oauthGateway) tokensKeyID(t testing.TB) string {
	t.Helper()
	h, _ := claimsOf(t, g.accessToken("practice-a81002"))
	return h["kid"].(string)
}

// TestOAuthTokenRefused: every broken rule of the token request and the
// assertion is refused with the RFC 6749 error, status and a description
// saying what was wrong.
func TestOAuthTokenRefused(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newOAuthSetup(t, engine).start(t)
		keys := clientKeys()
		a81001, a81002, prv01 := keys["practice-a81001"], keys["practice-a81002"], keys["provider-prv01"]
		kid01, _ := oauth.Thumbprint(a81001.Public())
		kid02, _ := oauth.Thumbprint(a81002.Public())
		pub01, _ := oauth.MarshalPublicKeyPEM(a81001.Public())
		pubPRV, _ := oauth.MarshalPublicKeyPEM(prv01.Public())
		strangerRSA := rsaKey()
		es := func(edit func(map[string]any)) string {
			return signJWT(t, a81001, jose.ES256, kid01, assertionClaims("practice-a81001", edit), nil)
		}
		with := func(a string, edit func(url.Values)) url.Values {
			f := tokenForm(a)
			edit(f)
			return f
		}
		replayed := assertion(t, "practice-a81001")
		if r := g.token(tokenForm(replayed)); r.status != http.StatusOK {
			t.Fatalf("first use: %d %s", r.status, r.body)
		}
		const bad, client, req = http.StatusBadRequest, http.StatusUnauthorized, http.StatusBadRequest
		cases := []struct {
			name   string
			form   url.Values
			status int
			code   string
			want   string
		}{
			{"expired", tokenForm(es(func(c map[string]any) {
				c["iat"], c["exp"] = time.Now().Add(-3*time.Minute).Unix(), time.Now().Add(-time.Minute).Unix()
			})), client, oauth.ErrInvalidClient, "expired"},
			{"exp more than 5 minutes ahead", tokenForm(es(func(c map[string]any) { c["exp"] = time.Now().Add(6 * time.Minute).Unix() })),
				client, oauth.ErrInvalidClient, "more than 5m0s ahead"},
			{"no exp", tokenForm(es(func(c map[string]any) { delete(c, "exp") })), client, oauth.ErrInvalidClient, "no exp"},
			{"nbf in the future", tokenForm(es(func(c map[string]any) { c["nbf"] = time.Now().Add(2 * time.Minute).Unix() })),
				client, oauth.ErrInvalidClient, "not valid yet"},
			{"iat in the future", tokenForm(es(func(c map[string]any) { c["iat"] = time.Now().Add(2 * time.Minute).Unix() })),
				client, oauth.ErrInvalidClient, "issued in the future"},
			{"wrong audience", tokenForm(es(func(c map[string]any) { c["aud"] = oauthBase + "/fhir" })),
				client, oauth.ErrInvalidClient, "aud must be the token endpoint"},
			{"audience array without the token URL", tokenForm(es(func(c map[string]any) { c["aud"] = []string{"a", "b"} })),
				client, oauth.ErrInvalidClient, "aud must be the token endpoint"},
			{"replayed jti", tokenForm(replayed), client, oauth.ErrInvalidClient, "jti has been used before"},
			{"missing jti", tokenForm(es(func(c map[string]any) { delete(c, "jti") })), client, oauth.ErrInvalidClient, "no jti"},
			{"iss is not sub", tokenForm(es(func(c map[string]any) { c["sub"] = "practice-a81002" })),
				client, oauth.ErrInvalidClient, "iss and sub must both be the client id"},
			{"unknown client", tokenForm(signJWT(t, a81001, jose.ES256, kid01, assertionClaims("practice-z99999", nil), nil)),
				client, oauth.ErrInvalidClient, "not a registered client"},
			{"no iss", tokenForm(es(func(c map[string]any) { delete(c, "iss") })), client, oauth.ErrInvalidClient, "no iss"},
			{"signed by another client's key", tokenForm(signJWT(t, a81002, jose.ES256, "", assertionClaims("practice-a81001", nil), nil)),
				client, oauth.ErrInvalidClient, "signature does not verify"},
			{"another client's key and kid", tokenForm(signJWT(t, a81002, jose.ES256, kid02, assertionClaims("practice-a81001", nil), nil)),
				client, oauth.ErrInvalidClient, "no ES256 key with the assertion's kid"},
			{"RS256 for a client with an EC key", tokenForm(signJWT(t, strangerRSA, jose.RS256, "", assertionClaims("practice-a81001", nil), nil)),
				client, oauth.ErrInvalidClient, "no RS256 key is registered"},
			{"alg none", tokenForm(rawJWT(map[string]any{"alg": "none", "typ": "JWT"}, assertionClaims("practice-a81001", nil), nil)),
				client, oauth.ErrInvalidClient, "alg must be RS256 or ES256"},
			{"HS256 with the EC client's public key PEM as secret", tokenForm(rawJWT(map[string]any{"alg": "HS256", "typ": "JWT", "kid": kid01},
				assertionClaims("practice-a81001", nil), hs256(pub01))), client, oauth.ErrInvalidClient, "alg must be RS256 or ES256"},
			{"HS256 with the RSA client's public key PEM as secret", tokenForm(rawJWT(map[string]any{"alg": "HS256", "typ": "JWT"},
				assertionClaims("provider-prv01", nil), hs256(pubPRV))), client, oauth.ErrInvalidClient, "alg must be RS256 or ES256"},
			{"PS256", tokenForm(signJWT(t, prv01, jose.PS256, "", assertionClaims("provider-prv01", nil), nil)),
				client, oauth.ErrInvalidClient, "alg must be RS256 or ES256"},
			{"tampered claims", tokenForm(func() string {
				parts := strings.Split(es(nil), ".")
				c := assertionClaims("practice-a81001", nil)
				b, _ := json.Marshal(c)
				return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
			}()), client, oauth.ErrInvalidClient, "signature does not verify"},
			{"not a JWT", tokenForm("not-a-jwt"), client, oauth.ErrInvalidClient, "not a signed JWT"},
			{"exp is a string", tokenForm(es(func(c map[string]any) { c["exp"] = "tomorrow" })), client, oauth.ErrInvalidClient, "claims are not"},
			{"client_id is not the iss", with(es(nil), func(f url.Values) { f.Set("client_id", "practice-a81002") }),
				client, oauth.ErrInvalidClient, "client_id does not match"},
			{"wrong grant type", with(es(nil), func(f url.Values) { f.Set("grant_type", "authorization_code") }),
				bad, oauth.ErrUnsupportedGrantType, "grant_type must be client_credentials"},
			{"jwt-bearer grant", with(es(nil), func(f url.Values) { f.Set("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer") }),
				bad, oauth.ErrUnsupportedGrantType, "grant_type must be client_credentials"},
			{"wrong assertion type", with(es(nil), func(f url.Values) {
				f.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
			}),
				req, oauth.ErrInvalidRequest, "client_assertion_type must be"},
			{"no grant_type", with(es(nil), func(f url.Values) { f.Del("grant_type") }), req, oauth.ErrInvalidRequest, "grant_type is required"},
			{"no client_assertion_type", with(es(nil), func(f url.Values) { f.Del("client_assertion_type") }),
				req, oauth.ErrInvalidRequest, "client_assertion_type is required"},
			{"no client_assertion", with(es(nil), func(f url.Values) { f.Del("client_assertion") }),
				req, oauth.ErrInvalidRequest, "client_assertion is required"},
			{"empty client_assertion", with(es(nil), func(f url.Values) { f.Set("client_assertion", "") }),
				req, oauth.ErrInvalidRequest, "client_assertion is required"},
			{"duplicated client_assertion", with(es(nil), func(f url.Values) { f.Add("client_assertion", es(nil)) }),
				req, oauth.ErrInvalidRequest, "client_assertion is given more than once"},
			{"duplicated grant_type", with(es(nil), func(f url.Values) { f.Add("grant_type", oauth.GrantClientCredentials) }),
				req, oauth.ErrInvalidRequest, "grant_type is given more than once"},
			{"client_secret beside the assertion", with(es(nil), func(f url.Values) { f.Set("client_secret", "s3cret") }),
				req, oauth.ErrInvalidRequest, "client_secret is not accepted"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := g.token(tc.form)
				oauthErr(t, r, tc.status, tc.code, tc.want)
				if a := tc.form.Get("client_assertion"); len(a) > 20 && bytes.Contains(r.body, []byte(a[len(a)-20:])) {
					t.Errorf("the error echoes the assertion: %s", r.body)
				}
			})
		}

		// The body itself.
		valid := tokenForm(es(nil)).Encode()
		oauthErr(t, g.postToken("application/json", strings.NewReader(`{"grant_type":"client_credentials"}`)),
			req, oauth.ErrInvalidRequest, "application/x-www-form-urlencoded")
		oauthErr(t, g.postToken("", strings.NewReader(valid)), req, oauth.ErrInvalidRequest, "application/x-www-form-urlencoded")
		oauthErr(t, g.postToken("application/x-www-form-urlencoded", strings.NewReader("grant_type=%zz")),
			req, oauth.ErrInvalidRequest, "not form-encoded")
		huge := valid + "&padding=" + strings.Repeat("a", 32<<10)
		oauthErr(t, g.postToken("application/x-www-form-urlencoded", strings.NewReader(huge)),
			http.StatusRequestEntityTooLarge, oauth.ErrInvalidRequest, "too large")
		// Without a Content-Length, the limit holds while reading.
		oauthErr(t, g.postToken("application/x-www-form-urlencoded", io.MultiReader(strings.NewReader(huge))),
			http.StatusRequestEntityTooLarge, oauth.ErrInvalidRequest, "too large")
		// The token endpoint is not a FHIR endpoint: GET is not offered.
		if r := g.get(oauth.TokenPath, ""); r.status != http.StatusMethodNotAllowed {
			t.Errorf("GET %s: %d", oauth.TokenPath, r.status)
		}
	})
}

// TestOAuthReplayAcrossReplicas: an assertion accepted by one gateway is
// refused by another on the same database, and of many concurrent uses of
// one assertion across two replicas exactly one gets a token.
func TestOAuthReplayAcrossReplicas(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		setup := newOAuthSetup(t, engine)
		g1, g2 := setup.start(t), setup.start(t)
		a := assertion(t, "practice-a81001")
		if r := g1.token(tokenForm(a)); r.status != http.StatusOK {
			t.Fatalf("replica 1: %d %s", r.status, r.body)
		}
		oauthErr(t, g2.token(tokenForm(a)), http.StatusUnauthorized, oauth.ErrInvalidClient, "jti has been used before")

		race := assertion(t, "provider-prv01")
		var ok, refused atomic.Int32
		var wg sync.WaitGroup
		for i := range 12 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g := g1
				if i%2 == 1 {
					g = g2
				}
				switch r := g.token(tokenForm(race)); r.status {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusUnauthorized:
					refused.Add(1)
				default:
					t.Errorf("concurrent use: %d %s", r.status, r.body)
				}
			}()
		}
		wg.Wait()
		if ok.Load() != 1 || refused.Load() != 11 {
			t.Errorf("%d tokens and %d refusals for one assertion sent 12 times, want 1 and 11", ok.Load(), refused.Load())
		}
	})
}

// unauthorized checks a 401 OperationOutcome with issue code login.
func unauthorized(t testing.TB, r response, want string) {
	t.Helper()
	if r.status != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401: %s", r.status, r.body)
	}
	is := outcomeIssues(t, r)
	if len(is) != 1 || is[0]["code"] != "login" {
		t.Errorf("issues %v, want one login issue", is)
	}
	if d := str(is[0], "diagnostics"); !strings.Contains(d, want) {
		t.Errorf("diagnostics %q do not say %q", d, want)
	}
	if r.header.Get("WWW-Authenticate") == "" {
		t.Error("no WWW-Authenticate header")
	}
}

// TestAccessTokenRefused: access tokens that are expired, forged, meant for
// another audience, tampered with, unsigned, or held by a client no longer
// registered are refused with a 401 OperationOutcome.
func TestAccessTokenRefused(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		setup := newOAuthSetup(t, engine)
		g := setup.start(t)
		good := g.accessToken("practice-a81001")
		if r := g.get("/fhir/Task", good); r.status != http.StatusOK {
			t.Fatalf("a fresh token: %d %s", r.status, r.body)
		}
		h, c := claimsOf(t, good)
		kid := h["kid"].(string)

		// Forged: the same claims and kid, signed by a key the gateway
		// does not have.
		other, err := oauth.GenerateKey(oauth.ES256)
		if err != nil {
			t.Fatal(err)
		}
		at := map[jose.HeaderKey]any{jose.HeaderType: "at+jwt"}
		forged := signJWT(t, other, jose.ES256, kid, c, at)
		unknownKid := signJWT(t, other, jose.ES256, "someone-elses-key", c, at)
		// Signed by the gateway's own key but for another audience: a
		// token minted by a gateway with another base URL.
		elsewhereTokens, err := oauth.New(oauth.Config{BaseURL: "https://other.test", Clients: setup.clients, Keys: setup.keys, JTIs: g.store})
		if err != nil {
			t.Fatal(err)
		}
		form := tokenForm(func() string {
			a, err := oauth.SignAssertion(clientKeys()["practice-a81001"], "", "practice-a81001", "https://other.test"+oauth.TokenPath, time.Now(), time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			return a
		}())
		otherTok, err := elsewhereTokens.Token(context.Background(), form)
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(good, ".")
		c2 := map[string]any{}
		for k, v := range c {
			c2[k] = v
		}
		c2["sub"] = "practice-a81002"
		b, _ := json.Marshal(c2)
		tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
		none := rawJWT(map[string]any{"alg": "none", "typ": "at+jwt", "kid": kid}, c, nil)
		hs := rawJWT(map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": kid}, c, hs256([]byte(kid)))
		// A client assertion is not an access token, even when it is
		// shaped like one.
		clientAssertion := assertion(t, "practice-a81001")

		for _, tc := range []struct{ name, token, want string }{
			{"forged with the gateway's kid", forged, "signature does not verify"},
			{"signed by an unknown key", unknownKid, "not signed by a key of this gateway"},
			{"another audience and issuer", otherTok.AccessToken, "not issued by this gateway"},
			{"tampered payload", tampered, "signature does not verify"},
			{"alg none", none, "not a JWT signed with RS256 or ES256"},
			{"HS256", hs, "not a JWT signed with RS256 or ES256"},
			{"a client assertion", clientAssertion, "not an access token"},
			{"a JWT-shaped stranger", "eyJhbGciOiJFUzI1NiJ9.e30.c2ln", "not an access token"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				unauthorized(t, g.get("/fhir/Task", tc.token), tc.want)
			})
		}

		// Expired: after its lifetime and the leeway.
		setup.clock.Advance(5*time.Minute + oauth.Leeway + time.Second)
		unauthorized(t, g.get("/fhir/Task", good), "expired")
		setup.clock.Advance(-(5*time.Minute + oauth.Leeway + time.Second))
		if r := g.get("/fhir/Task", good); r.status != http.StatusOK {
			t.Fatalf("the token again before it expires: %d %s", r.status, r.body)
		}

		// A client removed from the registry is refused at once.
		var kept []oauth.Client
		for _, cl := range registeredClients(t) {
			if cl.Principal.ClientID != "practice-a81001" {
				kept = append(kept, cl)
			}
		}
		setup.clients.Replace(kept)
		unauthorized(t, g.get("/fhir/Task", good), "no longer registered")
		oauthErr(t, g.token(tokenForm(assertion(t, "practice-a81001"))), http.StatusUnauthorized, oauth.ErrInvalidClient, "not a registered client")
	})
}

// TestSigningKeyRotation: a token signed by the previous key works while
// that key is listed, new tokens carry the new kid, and once the old key is
// removed its tokens are refused.
func TestSigningKeyRotation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		k1, err := oauth.GenerateKey(oauth.ES256)
		if err != nil {
			t.Fatal(err)
		}
		k2 := rsaKey()
		keys := func(active string, ks ...oauth.SigningKey) *oauth.Keys {
			t.Helper()
			out, err := oauth.NewKeys(ks, active)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
		old, next := oauth.SigningKey{ID: "gw-2026-01", Key: k1}, oauth.SigningKey{ID: "gw-2026-02", Key: k2}
		setup := newOAuthSetup(t, engine)
		setup.keys = keys("gw-2026-01", old)
		before := setup.start(t).accessToken("practice-a81001")

		setup.keys = keys("gw-2026-02", old, next) // step 1: add and activate
		during := setup.start(t)
		if r := during.get("/fhir/Task", before); r.status != http.StatusOK {
			t.Errorf("a token of the previous key while it is listed: %d %s", r.status, r.body)
		}
		after := during.accessToken("practice-a81001")
		if h, _ := claimsOf(t, after); h["kid"] != "gw-2026-02" || h["alg"] != "RS256" {
			t.Errorf("a new token's header %v, want kid gw-2026-02 RS256", h)
		}

		setup.keys = keys("gw-2026-02", next) // step 2: remove the old key
		done := setup.start(t)
		unauthorized(t, done.get("/fhir/Task", before), "not signed by a key of this gateway")
		if r := done.get("/fhir/Task", after); r.status != http.StatusOK {
			t.Errorf("a token of the new key: %d %s", r.status, r.body)
		}
	})
}

// TestOAuthDiscovery: the CapabilityStatement and the SMART configuration
// name the token endpoint and how to authenticate to it.
func TestOAuthDiscovery(t *testing.T) {
	g := newOAuthSetup(t, store.DriverSQLite).start(t)
	r := g.get("/fhir/metadata", "")
	if r.status != http.StatusOK {
		t.Fatalf("metadata: %d %s", r.status, r.body)
	}
	sec := r.json(t)["rest"].([]any)[0].(map[string]any)["security"]
	if got := str(sec, "extension", 0, "url"); got != "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris" {
		t.Errorf("security extension %q", got)
	}
	if got := str(sec, "extension", 0, "extension", 0, "url"); got != "token" {
		t.Errorf("oauth-uris sub-extension %q", got)
	}
	if got := str(sec, "extension", 0, "extension", 0, "valueUri"); got != tokenURL {
		t.Errorf("token URL %q, want %s", got, tokenURL)
	}
	if got := str(sec, "service", 0, "coding", 0, "code"); got != "SMART-on-FHIR" {
		t.Errorf("security service %q", got)
	}

	res, err := g.srv.Client().Get(g.base + "/fhir/.well-known/smart-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var sc struct {
		TokenEndpoint string   `json:"token_endpoint"`
		AuthMethods   []string `json:"token_endpoint_auth_methods_supported"`
		Algs          []string `json:"token_endpoint_auth_signing_alg_values_supported"`
		Grants        []string `json:"grant_types_supported"`
	}
	if err := json.NewDecoder(res.Body).Decode(&sc); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("smart-configuration: %d %v", res.StatusCode, err)
	}
	if sc.TokenEndpoint != tokenURL || strings.Join(sc.AuthMethods, ",") != "private_key_jwt" ||
		strings.Join(sc.Algs, ",") != "RS256,ES256" || strings.Join(sc.Grants, ",") != "client_credentials" {
		t.Errorf("smart-configuration %+v", sc)
	}

	// Without a token endpoint the gateway claims none.
	plain := newGateway(t, store.DriverSQLite)
	if r := plain.get("/fhir/metadata", ""); strings.Contains(string(r.body), "oauth-uris") {
		t.Error("metadata names a token endpoint the gateway does not have")
	}
	if r := plain.post(oauth.TokenPath, "", []byte("{}")); r.status != http.StatusNotFound {
		t.Errorf("token endpoint without tokens: %d", r.status)
	}
}

// TestOAuthMetrics: issued and refused tokens are counted, refusals by
// their RFC 6749 error code.
func TestOAuthMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	setup := newOAuthSetup(t, store.DriverSQLite)
	setup.meters = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	g := setup.start(t)
	g.accessToken("practice-a81001")
	g.accessToken("provider-prv01")
	a := assertion(t, "practice-a81002")
	g.token(tokenForm(a))
	g.token(tokenForm(a)) // replayed: invalid_client
	g.token(url.Values{"grant_type": {"password"}, "client_assertion_type": {oauth.AssertionType}, "client_assertion": {a}})

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				t.Fatalf("%s is %T, want an int64 sum", m.Name, m.Data)
			}
			for _, dp := range sum.DataPoints {
				key := m.Name
				if v, ok := dp.Attributes.Value(attribute.Key("error")); ok {
					key += "{" + v.AsString() + "}"
				}
				got[key] += dp.Value
			}
		}
	}
	want := map[string]int64{
		"spgateway.oauth.tokens.issued":                                  3,
		"spgateway.oauth.tokens.refused{" + oauth.ErrInvalidClient + "}": 1,
		"spgateway.oauth.tokens.refused{unsupported_grant_type}":         1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("metrics %v, want %v", got, want)
	}
}
