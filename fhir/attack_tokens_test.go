package fhir_test

import (
	"crypto"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/spgateway/spgateway/fhir"
	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/oauth"
	"github.com/spgateway/spgateway/gateway/store"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// The attack suite, part two: every authenticated route with every kind of
// token the gateway did not issue, or no longer honours, and with valid
// tokens of clients whose role may not use it.

// atkRouteRequests is one well-formed request for each authenticated route
// of the attack table, aimed at tn's resources: what a legitimate client
// of the right role would send. A route without one fails the tests that
// use it.
func atkRouteRequests(t *testing.T, tn *atkTenant) map[string]atkRequest {
	t.Helper()
	patch := []string{"Content-Type", "application/json-patch+json", "If-Match", `W/"2"`}
	task := `{"resourceType":"Task","id":"` + tn.ref.task + `","status":"cancelled","intent":"order"}`
	const reassign = `{"resourceType":"Parameters","parameter":[` +
		`{"name":"from","valueIdentifier":{"system":"` + linkWorkers + `","value":"LW-17"}},` +
		`{"name":"to","valueIdentifier":{"system":"` + linkWorkers + `","value":"LW-23"}}]}`
	bundle := string(referralBundle(t, "ATK-ROUTE-1", ""))
	return map[string]atkRequest{
		"POST /fhir":                        {method: "POST", path: "/fhir", body: bundle},
		"POST /fhir/":                       {method: "POST", path: "/fhir/", body: bundle},
		"GET /fhir/:type":                   {method: "GET", path: "/fhir/Task"},
		"POST /fhir/:type":                  {method: "POST", path: "/fhir/ServiceRequest", body: string(fixture(t, "service-request-contained-patient.json"))},
		"POST /fhir/:type/_search":          {method: "POST", path: "/fhir/Task/_search", body: "status=accepted", headers: []string{"Content-Type", "application/x-www-form-urlencoded"}},
		"GET /fhir/:type/:id":               {method: "GET", path: "/fhir/Task/" + tn.ref.task},
		"POST /fhir/:type/:id":              {method: "POST", path: "/fhir/Task/$reassign", body: reassign},
		"PUT /fhir/:type/:id":               {method: "PUT", path: "/fhir/Task/" + tn.ref.task, body: task, headers: []string{"If-Match", `W/"2"`}},
		"PATCH /fhir/:type/:id":             {method: "PATCH", path: "/fhir/Task/" + tn.ref.task, body: `[{"op":"replace","path":"/status","value":"cancelled"}]`, headers: patch},
		"DELETE /fhir/:type/:id":            {method: "DELETE", path: "/fhir/Subscription/" + tn.subscription},
		"GET /fhir/:type/:id/_history":      {method: "GET", path: "/fhir/Task/" + tn.ref.task + "/_history"},
		"GET /fhir/:type/:id/_history/:vid": {method: "GET", path: "/fhir/Task/" + tn.ref.task + "/_history/1"},
		"GET /api/v1/reports/funnel":        {method: "GET", path: "/api/v1/reports/funnel"},
		"GET /api/v1/reports/outcomes":      {method: "GET", path: "/api/v1/reports/outcomes"},
		"GET /api/v1/cases":                 {method: "GET", path: "/api/v1/cases"},
		"GET /api/v1/cases/:id":             {method: "GET", path: "/api/v1/cases/" + tn.ref.task},
		"POST /api/v1/cases/:id/events":     {method: "POST", path: "/api/v1/cases/" + tn.ref.task + "/events", body: `{"event":"CLOSED"}`},
		"GET /api/v1/outbox":                {method: "GET", path: "/api/v1/outbox"},
		"POST /api/v1/outbox/:id/redrive":   {method: "POST", path: "/api/v1/outbox/0f0e0d0c-0b0a-4909-8807-060504030201/redrive"},
	}
}

// atkAuthenticated lists the routes of the router that need credentials,
// each with its request; a route the table does not know fails the test.
func atkAuthenticated(t *testing.T, g *testGateway, tn *atkTenant) map[string]atkRequest {
	t.Helper()
	all := atkRouteRequests(t, tn)
	out := map[string]atkRequest{}
	for _, route := range g.fhir.Routes() {
		if atkRoutes[route] == atkPublic {
			continue
		}
		rq, ok := all[route]
		if !ok {
			t.Errorf("route %s has no request in atkRouteRequests", route)
			continue
		}
		out[route] = rq
	}
	return out
}

// send sends rq with a bearer credential and a request id of the caller's.
func (g *testGateway) send(rq atkRequest, credential, requestID string, extra ...string) response {
	g.t.Helper()
	var body []byte
	if rq.body != "" {
		body = []byte(rq.body)
	}
	headers := append([]string{"X-Request-Id", requestID}, rq.headers...)
	if credential != "" {
		headers = append(headers, "Authorization", "Bearer "+credential)
	}
	return g.do(rq.method, rq.path, "", body, append(headers, extra...)...)
}

// tokenWorld is the attack world on a gateway that issues access tokens
// with a signing key the test holds, beside the development keys, and
// registers an operator client too.
type tokenWorld struct {
	*testGateway
	a, b    *atkTenant
	tokens  *oauth.Server
	clients *oauth.Clients
	clock   *testClock
	gwKey   crypto.Signer
	kid     string
	keys    map[string]crypto.Signer // the clients' private keys
}

func newTokenWorld(t *testing.T, engine string, opts ...gatewayOption) *tokenWorld {
	t.Helper()
	gwKey, err := oauth.GenerateKey(oauth.ES256)
	if err != nil {
		t.Fatal(err)
	}
	w := &tokenWorld{gwKey: gwKey, kid: "gw-attack", clock: newTestClock(), keys: maps.Clone(clientKeys())}
	keys, err := oauth.NewKeys([]oauth.SigningKey{{ID: w.kid, Key: gwKey}}, w.kid)
	if err != nil {
		t.Fatal(err)
	}
	// The registered clients, and an operator and PRV02 with keys of their own.
	registry := registeredClients(t)
	for _, p := range []gateway.Principal{
		{ClientID: "admin", Role: gateway.RoleAdmin},
		{ClientID: "provider-prv02", Role: gateway.RoleProvider, Org: "PRV02"},
	} {
		k, err := oauth.GenerateKey(oauth.ES256)
		if err != nil {
			t.Fatal(err)
		}
		set, err := oauth.MarshalJWKS(k, "")
		if err != nil {
			t.Fatal(err)
		}
		jwks, err := oauth.ParseJWKS(set)
		if err != nil {
			t.Fatal(err)
		}
		w.keys[p.ClientID] = k
		registry = append(registry, oauth.Client{Principal: p, Keys: jwks})
	}
	w.clients = oauth.NewClients(registry)
	g := newGatewayAuth(t, engine, func(st *store.Store, f *fhir.Config) gateway.Authenticator {
		w.tokens, err = oauth.New(oauth.Config{BaseURL: f.BaseURL, Clients: w.clients, Keys: keys, JTIs: st, Now: w.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		f.Tokens = w.tokens
		return oauth.Chain(w.tokens, devKeys())
	}, append([]gatewayOption{scWithCases(nil)}, opts...)...)
	w.testGateway, w.a, w.b = atkPopulate(t, g)
	return w
}

// accessToken gets a token for client from the token endpoint, at the
// token server's clock.
func (w *tokenWorld) accessToken(t *testing.T, client string) string {
	t.Helper()
	a, err := oauth.SignAssertion(w.keys[client], "", client, w.tokens.TokenURL(), w.clock.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	r := w.do("POST", oauth.TokenPath, "", []byte(tokenForm(a).Encode()), "Content-Type", "application/x-www-form-urlencoded")
	if r.status != http.StatusOK {
		t.Fatalf("token for %s: %d %s", client, r.status, r.body)
	}
	return str(r.json(t), "access_token")
}

// claims are access-token claims as the gateway writes them, for client.
func (w *tokenWorld) claims(client string, edit func(map[string]any)) map[string]any {
	now := time.Now()
	c := map[string]any{"iss": w.base, "sub": client, "aud": w.base + "/fhir",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": gateway.NewUUID()}
	if edit != nil {
		edit(c)
	}
	return c
}

// badToken is a credential the gateway must refuse, and why.
type badToken struct{ name, token, want string }

// badTokens are the tokens every authenticated route must refuse with 401.
// The last, a token of a client since removed, is refused once removed()
// has run.
func (w *tokenWorld) badTokens(t *testing.T) (tokens []badToken, removed func()) {
	t.Helper()
	at := map[jose.HeaderKey]any{jose.HeaderType: "at+jwt"}
	stranger, err := oauth.GenerateKey(oauth.ES256)
	if err != nil {
		t.Fatal(err)
	}
	// A real token, issued ten minutes ago: expired.
	w.clock.Advance(-10 * time.Minute)
	expired := w.accessToken(t, "practice-a81001")
	w.clock.Advance(10 * time.Minute)
	// A real token of PRV02, whose registration is about to go.
	doomed := w.accessToken(t, "provider-prv02")
	// HS256 keyed with the gateway's public key, as a verifier that took
	// the algorithm from the token would check it.
	pub, err := oauth.MarshalPublicKeyPEM(w.gwKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	good := w.accessToken(t, "practice-a81001")
	_, goodClaims := claimsOf(t, good)
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + strings.Split(rawJWT(map[string]any{}, w.claims("practice-a81002", nil), nil), ".")[1] + "." + parts[2]
	assertionTok, err := oauth.SignAssertion(w.keys["practice-a81001"], "", "practice-a81001", w.tokens.TokenURL(), time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tokens = []badToken{
		{"expired", expired, "expired"},
		{"forged with the gateway's kid", signJWT(t, stranger, jose.ES256, w.kid, goodClaims, at), "signature does not verify"},
		{"signed by an unknown key", signJWT(t, stranger, jose.ES256, "someone-elses-key", goodClaims, at), "not signed by a key of this gateway"},
		{"another audience", signJWT(t, w.gwKey, jose.ES256, w.kid, w.claims("practice-a81001", func(c map[string]any) { c["aud"] = "https://other.test/fhir" }), at),
			"not issued by this gateway"},
		{"the token endpoint as audience", signJWT(t, w.gwKey, jose.ES256, w.kid, w.claims("practice-a81001", func(c map[string]any) { c["aud"] = w.tokens.TokenURL() }), at),
			"not issued by this gateway"},
		{"another issuer", signJWT(t, w.gwKey, jose.ES256, w.kid, w.claims("practice-a81001", func(c map[string]any) { c["iss"] = "https://other.test" }), at),
			"not issued by this gateway"},
		{"no exp", signJWT(t, w.gwKey, jose.ES256, w.kid, w.claims("practice-a81001", func(c map[string]any) { delete(c, "exp") }), at), "lacks exp or sub"},
		{"tampered payload", tampered, "signature does not verify"},
		{"alg none", rawJWT(map[string]any{"alg": "none", "typ": "at+jwt", "kid": w.kid}, goodClaims, nil), "not a JWT signed with RS256 or ES256"},
		{"HS256 keyed with the public key", rawJWT(map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": w.kid}, goodClaims, hs256(pub)),
			"not a JWT signed with RS256 or ES256"},
		{"a client assertion", assertionTok, "not an access token"},
		{"a client assertion typed as a token", signJWT(t, w.keys["practice-a81001"], jose.ES256, "", w.claims("practice-a81001", nil), at),
			"not signed by a key of this gateway"},
		{"a removed client's token", doomed, "no longer registered"},
	}
	return tokens, func() {
		var kept []oauth.Client
		for _, id := range []string{"practice-a81001", "practice-a81002", "provider-prv01", "admin"} {
			c, ok := w.clients.Client(id)
			if !ok {
				t.Fatalf("client %s is not registered", id)
			}
			kept = append(kept, c)
		}
		w.clients.Replace(kept)
	}
}

// atkState is what a refused request must leave as it was: every
// resource's version, and the outbox.
type atkState struct {
	versions map[string]string
	outbox   map[string]int
	events   int
}

func atkSnapshot(t *testing.T, g *testGateway, tenants ...*atkTenant) atkState {
	t.Helper()
	s := atkState{versions: map[string]string{}}
	for _, tn := range tenants {
		maps.Copy(s.versions, atkVersions(t, g, tn, nil))
	}
	ob := scListOutbox(t, g, "")
	s.outbox, s.events = ob.Depth, len(ob.Events)
	return s
}

func (s atkState) check(t *testing.T, what string, after atkState) {
	t.Helper()
	if !maps.Equal(s.versions, after.versions) {
		t.Errorf("%s changed resources: %v → %v", what, s.versions, after.versions)
	}
	if !maps.Equal(s.outbox, after.outbox) || s.events != after.events {
		t.Errorf("%s changed the outbox: %v → %v", what, s.outbox, after.outbox)
	}
}

// TestAttackTokens: every authenticated route refuses every token the
// gateway did not issue or no longer honours — expired, forged with its
// kid, signed by an unknown key, for another audience or issuer, without
// exp, tampered with, unsigned (alg none), HS256 keyed with its public key,
// a client assertion, a token of a removed client — with a 401
// OperationOutcome (issue code login) and WWW-Authenticate; nothing is
// written or enqueued, and each refusal is in the audit trail under its
// request id, with no client.
func TestAttackTokens(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		w := newTokenWorld(t, engine)
		routes := atkAuthenticated(t, w.testGateway, w.a)
		good := w.accessToken(t, "provider-prv01")
		if r := w.send(routes["GET /fhir/:type/:id"], good, "atk-good"); r.status != http.StatusOK {
			t.Fatalf("a valid token: %d %s", r.status, r.body)
		}
		tokens, remove := w.badTokens(t)
		doomed := tokens[len(tokens)-1]
		if r := w.send(routes["GET /fhir/:type"], doomed.token, "atk-doomed"); r.status != http.StatusOK {
			t.Fatalf("the token of a client still registered: %d %s", r.status, r.body)
		}
		remove()
		before := atkSnapshot(t, w.testGateway, w.a, w.b)
		sent := map[string]string{} // request id → what
		n := 0
		for _, tok := range tokens {
			for route, rq := range routes {
				n++
				id := fmt.Sprintf("atk-token-%d", n)
				what := tok.name + " on " + route
				sent[id] = what
				r := w.send(rq, tok.token, id)
				if r.status != http.StatusUnauthorized {
					t.Errorf("%s: %d %s", what, r.status, r.body)
					continue
				}
				is := outcomeIssues(t, r)
				if len(is) != 1 || is[0]["code"] != "login" || !strings.Contains(str(is[0], "diagnostics"), tok.want) {
					t.Errorf("%s: issues %v, want one login issue saying %q", what, is, tok.want)
				}
				if h := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer ") {
					t.Errorf("%s: WWW-Authenticate %q", what, h)
				}
				if tail := tok.token[max(0, len(tok.token)-16):]; strings.Contains(string(r.body), tail) {
					t.Errorf("%s: the answer echoes the token: %s", what, r.body)
				}
			}
		}
		t.Logf("%d requests with bad tokens", n)
		before.check(t, "bad tokens", atkSnapshot(t, w.testGateway, w.a, w.b))
		audited := map[string]gateway.AuditEvent{}
		for _, e := range w.trail(t) {
			if _, ok := sent[e.RequestID]; ok {
				audited[e.RequestID] = e
			}
		}
		for id, what := range sent {
			e, ok := audited[id]
			switch {
			case !ok:
				t.Errorf("%s: no audit event", what)
			case e.Outcome != string(gateway.CodeUnauthorized) || e.ClientID != "" || e.Action == "":
				t.Errorf("%s: audited as %+v", what, e)
			}
		}
	})
}

// TestAttackTokenRoles: valid tokens of clients whose role may not use a
// route are refused with 403 and an OperationOutcome (forbidden), audited
// under the client, and write nothing: a provider's token on the
// practices' writes, a practice's on the providers' and operators' routes,
// an operator's on patient data.
func TestAttackTokenRoles(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		w := newTokenWorld(t, engine)
		rq := atkRouteRequests(t, w.a)
		practice, provider, admin := w.accessToken(t, "practice-a81001"), w.accessToken(t, "provider-prv01"), w.accessToken(t, "admin")
		sub := atkRequest{method: "POST", path: "/fhir/Subscription", body: string(scSubscription(t, nil))}
		prom := atkRequest{method: "POST", path: "/fhir/QuestionnaireResponse",
			body: string(promResponse(w.a.ref, "swemwbs", scAnsweredAt(), swemwbsAnswers(3, 3, 3, 3, 3, 3, 3)))}
		read := func(typ string) atkRequest {
			return atkRequest{method: "GET", path: "/fhir/" + typ + "/" + w.a.ids[typ][0]}
		}
		search := func(q string) atkRequest { return atkRequest{method: "GET", path: "/fhir/" + q} }
		cases := []struct {
			client, token string
			rq            atkRequest
		}{
			{"provider", provider, rq["POST /fhir"]},
			{"provider", provider, rq["POST /fhir/"]},
			{"provider", provider, rq["POST /fhir/:type"]},
			{"provider", provider, sub},
			{"provider", provider, rq["GET /api/v1/outbox"]},
			{"provider", provider, rq["POST /api/v1/outbox/:id/redrive"]},
			{"provider", provider, search("AuditEvent")},
			{"practice", practice, rq["POST /fhir/:type/:id"]}, // $reassign
			{"practice", practice, prom},
			{"practice", practice, rq["GET /api/v1/cases"]},
			{"practice", practice, rq["GET /api/v1/cases/:id"]},
			{"practice", practice, rq["POST /api/v1/cases/:id/events"]},
			{"practice", practice, rq["GET /api/v1/outbox"]},
			{"practice", practice, rq["POST /api/v1/outbox/:id/redrive"]},
			{"practice", practice, search("AuditEvent")},
			{"admin", admin, rq["POST /fhir"]},
			{"admin", admin, rq["POST /fhir/:type"]},
			{"admin", admin, sub},
			{"admin", admin, prom},
			{"admin", admin, rq["POST /fhir/:type/:id"]},
			{"admin", admin, rq["PUT /fhir/:type/:id"]},
			{"admin", admin, rq["PATCH /fhir/:type/:id"]},
			{"admin", admin, rq["POST /api/v1/cases/:id/events"]},
			{"admin", admin, rq["GET /api/v1/cases"]},
		}
		for _, typ := range []string{"Task", "ServiceRequest", "Patient", "Condition", "Consent", "QuestionnaireResponse", "Observation"} {
			cases = append(cases, struct {
				client, token string
				rq            atkRequest
			}{"admin", admin, read(typ)}, struct {
				client, token string
				rq            atkRequest
			}{"admin", admin, search(typ)})
		}
		before := atkSnapshot(t, w.testGateway, w.a, w.b)
		sent := map[string]string{}
		for i, c := range cases {
			id := fmt.Sprintf("atk-role-%d", i)
			what := c.client + " " + c.rq.method + " " + c.rq.path
			sent[id] = what
			r := w.send(c.rq, c.token, id)
			if r.status != http.StatusForbidden {
				t.Errorf("%s: %d %.300s", what, r.status, r.body)
				continue
			}
			if is := outcomeIssues(t, r); len(is) == 0 || is[0]["code"] != "forbidden" {
				t.Errorf("%s: issues %v", what, is)
			}
			noSecrets(t, what, r.body, w.a)
		}
		before.check(t, "refused roles", atkSnapshot(t, w.testGateway, w.a, w.b))
		audited := map[string]gateway.AuditEvent{}
		for _, e := range w.trail(t) {
			audited[e.RequestID] = e
		}
		for id, what := range sent {
			e, ok := audited[id]
			client := map[string]string{"practice": "practice-a81001", "provider": "provider-prv01", "admin": "admin"}[strings.Fields(what)[0]]
			if !ok || e.Outcome != string(gateway.CodeForbidden) || e.ClientID != client {
				t.Errorf("%s: audited as %+v (found %v)", what, e, ok)
			}
		}
		// The same tokens do what their role may.
		for _, c := range []struct {
			token string
			rq    atkRequest
		}{{practice, search("Task")}, {provider, rq["GET /api/v1/cases"]}, {admin, rq["GET /api/v1/outbox"]}, {admin, search("AuditEvent")}} {
			if r := w.send(c.rq, c.token, "atk-role-ok"); r.status != http.StatusOK {
				t.Errorf("%s %s: %d %s", c.rq.method, c.rq.path, r.status, r.body)
			}
		}
	})
}
