// Package oauth is the gateway's OAuth 2.0 authorisation server for
// machine clients (SPEC 4): the client credentials grant with a signed JWT
// client assertion (RFC 7523, private_key_jwt as in SMART Backend Services),
// and the short-lived access tokens it issues and later verifies.
//
// JOSE is go-jose v4: it makes the caller name the allowed signature
// algorithms when it parses a token, so none and HS256 never reach a key,
// and it reads JWK Sets for clients' registered keys.
package oauth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/spgateway/spgateway/gateway"
)

// Limits and constants of the protocol.
const (
	// TokenPath is where the token endpoint is, under the server root.
	TokenPath = "/oauth2/token"
	// AssertionType is the only client_assertion_type accepted.
	AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// GrantClientCredentials is the only grant_type accepted.
	GrantClientCredentials = "client_credentials"
	// MaxAssertionLifetime is how far ahead an assertion's exp may be.
	MaxAssertionLifetime = 5 * time.Minute
	// Leeway absorbs clock skew between a client, the gateway's replicas
	// and their database, in both directions.
	Leeway = 30 * time.Second
	// DefaultTokenLifetime and MaxTokenLifetime bound access tokens.
	DefaultTokenLifetime = 5 * time.Minute
	MaxTokenLifetime     = 60 * time.Minute
	// accessTokenType is the typ header of access tokens (RFC 9068).
	accessTokenType = "at+jwt"
	// purgeEvery is how often used jtis past their expiry are deleted.
	purgeEvery = 10 * time.Minute
)

// Client is a registered client: who it acts as, and the public keys its
// assertions may be signed with.
type Client struct {
	Principal gateway.Principal
	// Keys are public JWKs, each with kid and alg set (ParseJWKS,
	// ParsePublicKeyPEM).
	Keys []jose.JSONWebKey
}

// Registry finds a registered client by id. It is asked at every request, so
// a client removed from it is refused at once, whatever tokens it holds.
type Registry interface {
	Client(id string) (Client, bool)
}

// Clients is a Registry that can be replaced as a whole, for a
// configuration reloaded while the gateway runs.
type Clients struct {
	m atomic.Pointer[map[string]Client]
}

// NewClients returns a registry of cs.
func NewClients(cs []Client) *Clients {
	r := &Clients{}
	r.Replace(cs)
	return r
}

// Replace makes cs the registered clients.
func (r *Clients) Replace(cs []Client) {
	m := make(map[string]Client, len(cs))
	for _, c := range cs {
		m[c.Principal.ClientID] = c
	}
	r.m.Store(&m)
}

// Client returns the client with id.
func (r *Clients) Client(id string) (Client, bool) {
	c, ok := (*r.m.Load())[id]
	return c, ok
}

// JTIStore remembers the assertion ids each client has used, in the
// database, so that replay protection holds across replicas.
type JTIStore interface {
	// UseJTI records that client used jti, to be remembered until
	// expires. It returns false, and records nothing, when the client has
	// used jti before.
	UseJTI(ctx context.Context, client, jti string, expires time.Time) (bool, error)
	// PurgeJTIs forgets the ids that expired before t.
	PurgeJTIs(ctx context.Context, before time.Time) (int64, error)
}

// Config is what the authorisation server needs.
type Config struct {
	// BaseURL is the server root (no trailing slash): the iss of access
	// tokens. Assertions must be addressed to BaseURL + TokenPath; access
	// tokens are addressed to the FHIR base, BaseURL + "/fhir".
	BaseURL string
	// Clients are the registered clients.
	Clients Registry
	// Keys sign and verify access tokens.
	Keys *Keys
	// JTIs remembers used assertion ids.
	JTIs JTIStore
	// TokenLifetime is how long an access token lives (default
	// DefaultTokenLifetime, at most MaxTokenLifetime).
	TokenLifetime time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// MeterProvider counts tokens issued and refused (default noop).
	MeterProvider metric.MeterProvider
}

// Server issues and verifies access tokens. It is a gateway.Authenticator.
type Server struct {
	cfg      Config
	tokenURL string
	audience string
	issued   metric.Int64Counter
	refused  metric.Int64Counter

	purgeMu  sync.Mutex
	purgedAt time.Time
}

var _ gateway.Authenticator = (*Server)(nil)

// New checks cfg and returns the server.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.BaseURL == "":
		return nil, errors.New("oauth.New: no base URL")
	case cfg.Clients == nil:
		return nil, errors.New("oauth.New: no client registry")
	case cfg.Keys == nil:
		return nil, errors.New("oauth.New: no signing keys")
	case cfg.JTIs == nil:
		return nil, errors.New("oauth.New: no store for used assertion ids")
	case cfg.TokenLifetime < 0 || cfg.TokenLifetime > MaxTokenLifetime:
		return nil, fmt.Errorf("oauth.New: token lifetime %s is not between 0 and %s", cfg.TokenLifetime, MaxTokenLifetime)
	}
	if cfg.TokenLifetime == 0 {
		cfg.TokenLifetime = DefaultTokenLifetime
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MeterProvider == nil {
		cfg.MeterProvider = noop.NewMeterProvider()
	}
	meter := cfg.MeterProvider.Meter("github.com/spgateway/spgateway/gateway/oauth")
	issued, err := meter.Int64Counter("spgateway.oauth.tokens.issued",
		metric.WithDescription("Access tokens issued by the token endpoint."), metric.WithUnit("{token}"))
	if err != nil {
		return nil, fmt.Errorf("oauth.New: %w", err)
	}
	refused, err := meter.Int64Counter("spgateway.oauth.tokens.refused",
		metric.WithDescription("Token requests refused, by OAuth error code."), metric.WithUnit("{request}"))
	if err != nil {
		return nil, fmt.Errorf("oauth.New: %w", err)
	}
	return &Server{
		cfg:      cfg,
		tokenURL: cfg.BaseURL + TokenPath,
		audience: cfg.BaseURL + "/fhir",
		issued:   issued,
		refused:  refused,
	}, nil
}

// TokenURL is the token endpoint's absolute URL, the aud of assertions.
func (s *Server) TokenURL() string { return s.tokenURL }

// SigningAlgorithms are the algorithms accepted for client assertions.
func SigningAlgorithms() []string {
	out := make([]string, len(allowedAlgs))
	for i, a := range allowedAlgs {
		out[i] = string(a)
	}
	return out
}

// The error codes of RFC 6749 §5.2 the token endpoint answers with, and
// server_error for a failure of the gateway itself.
const (
	ErrInvalidRequest       = "invalid_request"
	ErrInvalidClient        = "invalid_client"
	ErrInvalidGrant         = "invalid_grant"
	ErrUnsupportedGrantType = "unsupported_grant_type"
	ErrServerError          = "server_error"
)

// Error is a refused token request. Description is safe to show the client
// and never holds the assertion; Err, for server_error, is logged only.
type Error struct {
	Code        string
	Description string
	Err         error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Description + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Description
}

func (e *Error) Unwrap() error { return e.Err }

func refuse(code, format string, args ...any) *Error {
	return &Error{Code: code, Description: fmt.Sprintf(format, args...)}
}
