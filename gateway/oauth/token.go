package oauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/spgateway/spgateway/gateway"
)

// Token is the token endpoint's answer (RFC 6749 §5.1).
type Token struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
}

// maxAssertionBytes caps the assertion before anything decodes it.
const maxAssertionBytes = 8 << 10

// maxJTILength caps the stored assertion id.
const maxJTILength = 255

// Token answers a token request's form parameters: a client credentials
// grant authenticated by a signed JWT assertion. The scope parameter is
// ignored: what a client may do follows from its registered role. Its error
// is always an *Error.
func (s *Server) Token(ctx context.Context, form url.Values) (Token, error) {
	tok, err := s.token(ctx, form)
	if err != nil {
		e, ok := err.(*Error)
		if !ok {
			e = &Error{Code: ErrServerError, Description: "the token could not be issued", Err: err}
		}
		s.refused.Add(ctx, 1, metric.WithAttributes(attribute.String("error", e.Code)))
		return Token{}, e
	}
	s.issued.Add(ctx, 1)
	return tok, nil
}

func (s *Server) token(ctx context.Context, form url.Values) (Token, error) {
	for name, vs := range form {
		if len(vs) > 1 {
			return Token{}, refuse(ErrInvalidRequest, "the parameter %s is given more than once", safeName(name))
		}
	}
	for _, name := range []string{"grant_type", "client_assertion_type", "client_assertion"} {
		if form.Get(name) == "" {
			return Token{}, refuse(ErrInvalidRequest, "the parameter %s is required", name)
		}
	}
	if g := form.Get("grant_type"); g != GrantClientCredentials {
		return Token{}, refuse(ErrUnsupportedGrantType, "grant_type must be %s", GrantClientCredentials)
	}
	if form.Get("client_assertion_type") != AssertionType {
		return Token{}, refuse(ErrInvalidRequest, "client_assertion_type must be %s", AssertionType)
	}
	if form.Get("client_secret") != "" {
		return Token{}, refuse(ErrInvalidRequest, "a client authenticates with one method: client_secret is not accepted")
	}
	now := s.cfg.Now()
	a, err := s.verifyAssertion(form.Get("client_assertion"), form.Get("client_id"), now)
	if err != nil {
		return Token{}, err
	}
	// Remembered until the assertion could no longer pass the exp check.
	fresh, err := s.cfg.JTIs.UseJTI(ctx, a.client.Principal.ClientID, a.jti, a.expires.Add(Leeway))
	if err != nil {
		return Token{}, err
	}
	if !fresh {
		return Token{}, refuse(ErrInvalidClient, "the assertion's jti has been used before: every assertion needs a new one")
	}
	s.purge(ctx, now)
	access, err := s.sign(a.client.Principal.ClientID, now)
	if err != nil {
		return Token{}, err
	}
	return Token{AccessToken: access, TokenType: "Bearer", ExpiresIn: int(s.cfg.TokenLifetime / time.Second)}, nil
}

// safeName keeps a parameter name the client sent short and printable
// before it goes into a description.
func safeName(name string) string {
	if len(name) > 40 || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
		return "(a parameter)"
	}
	return name
}

// purge deletes expired jtis, at most once per purgeEvery per process; a
// failure is harmless (the rows are purged next time).
func (s *Server) purge(ctx context.Context, now time.Time) {
	if !s.purgeMu.TryLock() {
		return
	}
	defer s.purgeMu.Unlock()
	if now.Sub(s.purgedAt) < purgeEvery {
		return
	}
	s.purgedAt = now
	_, _ = s.cfg.JTIs.PurgeJTIs(ctx, now.Add(-Leeway))
}

// assertion is a verified client assertion.
type assertion struct {
	client  Client
	jti     string
	expires time.Time
}

// verifyAssertion checks a client assertion: its algorithm, its signature
// by a key registered for its issuer, and its claims. Every refusal is
// invalid_client; descriptions say what was wrong, never what was sent.
func (s *Server) verifyAssertion(raw, clientID string, now time.Time) (assertion, error) {
	bad := func(format string, args ...any) (assertion, error) {
		return assertion{}, refuse(ErrInvalidClient, format, args...)
	}
	if len(raw) > maxAssertionBytes {
		return bad("the client_assertion is longer than %d bytes", maxAssertionBytes)
	}
	alg, err := headerAlg(raw)
	if err != nil {
		return bad("the client_assertion is not a signed JWT in compact serialisation")
	}
	if !slices.Contains(SigningAlgorithms(), alg) {
		return bad("the assertion's alg must be RS256 or ES256")
	}
	tok, err := jwt.ParseSigned(raw, allowedAlgs)
	if err != nil || len(tok.Headers) != 1 {
		return bad("the client_assertion is not a signed JWT in compact serialisation")
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return bad("the assertion's claims are not a JSON object of registered JWT claims")
	}
	id := unverified.Issuer
	if id == "" {
		return bad("the assertion has no iss: it must be the client id")
	}
	if clientID != "" && clientID != id {
		return bad("client_id does not match the assertion's iss")
	}
	client, ok := s.cfg.Clients.Client(id)
	if !ok {
		return bad("the assertion's iss is not a registered client")
	}
	kid := tok.Headers[0].KeyID
	var claims jwt.Claims
	verified, matched := false, false
	for _, k := range client.Keys {
		if k.Algorithm != alg || (kid != "" && k.KeyID != kid) {
			continue
		}
		matched = true
		if err := tok.Claims(k.Key, &claims); err == nil {
			verified = true
			break
		}
	}
	switch {
	case !matched && kid != "":
		return bad("no %s key with the assertion's kid is registered for the client", alg)
	case !matched:
		return bad("no %s key is registered for the client", alg)
	case !verified:
		return bad("the assertion's signature does not verify with the client's registered keys")
	}
	return checkAssertionClaims(claims, client, s.tokenURL, now)
}

// checkAssertionClaims applies RFC 7523 §3 to verified claims.
func checkAssertionClaims(c jwt.Claims, client Client, tokenURL string, now time.Time) (assertion, error) {
	bad := func(format string, args ...any) (assertion, error) {
		return assertion{}, refuse(ErrInvalidClient, format, args...)
	}
	id := client.Principal.ClientID
	switch {
	case c.Issuer != id || c.Subject != id:
		return bad("the assertion's iss and sub must both be the client id")
	case !c.Audience.Contains(tokenURL):
		return bad("the assertion's aud must be the token endpoint, %s", tokenURL)
	case c.Expiry == nil:
		return bad("the assertion has no exp")
	case c.ID == "":
		return bad("the assertion has no jti")
	case len(c.ID) > maxJTILength:
		return bad("the assertion's jti is longer than %d characters", maxJTILength)
	}
	exp := c.Expiry.Time()
	switch {
	case now.Add(-Leeway).After(exp):
		return bad("the assertion has expired")
	case exp.After(now.Add(MaxAssertionLifetime + Leeway)):
		return bad("the assertion's exp is more than %s ahead", MaxAssertionLifetime)
	case c.NotBefore != nil && c.NotBefore.Time().After(now.Add(Leeway)):
		return bad("the assertion is not valid yet (nbf)")
	case c.IssuedAt != nil && c.IssuedAt.Time().After(now.Add(Leeway)):
		return bad("the assertion was issued in the future (iat)")
	}
	return assertion{client: client, jti: c.ID, expires: exp}, nil
}

// headerAlg reads the alg of a compact JWS's protected header, so that a
// refused algorithm is named as the reason.
func headerAlg(raw string) (string, error) {
	h, _, ok := strings.Cut(raw, ".")
	if !ok {
		return "", errNotJWT
	}
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return "", err
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(b, &hdr); err != nil {
		return "", err
	}
	return hdr.Alg, nil
}

var errNotJWT = errors.New("not a JWT")

// sign issues an access token for client.
func (s *Server) sign(client string, now time.Time) (string, error) {
	claims := jwt.Claims{
		Issuer:   s.cfg.BaseURL,
		Subject:  client,
		Audience: jwt.Audience{s.audience},
		Expiry:   jwt.NewNumericDate(now.Add(s.cfg.TokenLifetime)),
		IssuedAt: jwt.NewNumericDate(now),
		ID:       gateway.NewUUID(),
	}
	return jwt.Signed(s.cfg.Keys.signer).Claims(claims).Serialize()
}

// Authenticate verifies an access token the gateway issued and returns the
// principal of its client as the registry has it now. Every refusal is
// gateway.CodeUnauthorized.
func (s *Server) Authenticate(_ context.Context, credential string) (gateway.Principal, error) {
	deny := func(why string) (gateway.Principal, error) {
		return gateway.Principal{}, gateway.Errorf(gateway.CodeUnauthorized, "the access token is refused: %s", why)
	}
	if len(credential) > maxAssertionBytes {
		return deny("it is too long")
	}
	tok, err := jwt.ParseSigned(credential, allowedAlgs)
	if err != nil || len(tok.Headers) != 1 {
		return deny("it is not a JWT signed with RS256 or ES256")
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != accessTokenType {
		return deny("it is not an access token")
	}
	key, ok := s.cfg.Keys.verify[h.KeyID]
	if !ok || key.Algorithm != h.Algorithm {
		return deny("it was not signed by a key of this gateway")
	}
	var c jwt.Claims
	if err := tok.Claims(key.Key, &c); err != nil {
		return deny("its signature does not verify")
	}
	if c.Expiry == nil || c.Subject == "" {
		return deny("it lacks exp or sub")
	}
	err = c.ValidateWithLeeway(jwt.Expected{Issuer: s.cfg.BaseURL, AnyAudience: jwt.Audience{s.audience}, Time: s.cfg.Now()}, Leeway)
	switch {
	case err == jwt.ErrExpired:
		return deny("it has expired")
	case err != nil:
		return deny("it was not issued by this gateway for its FHIR API")
	}
	client, ok := s.cfg.Clients.Client(c.Subject)
	if !ok {
		return deny("its client is no longer registered")
	}
	return client.Principal, nil
}
