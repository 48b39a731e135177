// Package fhir is the FHIR R4 REST edge of the gateway, on gin: routing,
// content negotiation, authentication, request limits, search parameters,
// Bundles, OperationOutcomes and the CapabilityStatement. Handlers decode,
// call the gateway.Service, and encode; the rules live in gateway.
package fhir

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/oauth"
)

// Config is what the FHIR edge needs from configuration.
type Config struct {
	// BaseURL is the server root clients use, without a trailing slash
	// (e.g. http://127.0.0.1:8080); the FHIR base is BaseURL + "/fhir".
	BaseURL string
	// MaxBodyBytes caps request bodies (413 beyond).
	MaxBodyBytes int64
	// MaxJSONDepth caps the nesting of request JSON (400 beyond).
	MaxJSONDepth int
	// DefaultCount and MaxCount are the search page sizes.
	DefaultCount int
	MaxCount     int
	// Logger gets one line per request (no patient data) and every
	// internal error in full.
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Version is the software version reported in the CapabilityStatement.
	Version string
	// Tokens, when set, answers POST /oauth2/token, and the
	// CapabilityStatement and /fhir/.well-known/smart-configuration point
	// clients to it.
	Tokens TokenIssuer
	// RatePerSecond and RateBurst are each authenticated client's token
	// bucket on /fhir and /api/v1 (429 beyond); a RatePerSecond of 0 turns
	// the limit off, and a RateBurst below 1 is taken as 1.
	RatePerSecond float64
	RateBurst     int
	// FailedAuthPerMinute and FailedAuthBurst are each source address's
	// token bucket for failed authentication (401s on /fhir and /api/v1,
	// refusals at the token endpoint): beyond it, 429 until it refills.
	// 0 turns the limit off; a FailedAuthBurst below 1 is taken as 1.
	FailedAuthPerMinute float64
	FailedAuthBurst     int
	// TracerProvider and MeterProvider, when set, trace each request
	// (spans named by route pattern) and record http.server.request.duration
	// by route and status. Neither is used when both are nil.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	// TrustedProxies are the addresses or CIDR ranges of proxies whose
	// X-Forwarded-For the audit trail believes for a request's source
	// address; none by default (the TCP peer is the source).
	TrustedProxies []string
}

// Server is the FHIR API as an http.Handler.
type Server struct {
	cfg        Config
	svc        *gateway.Service
	auth       gateway.Authenticator
	log        *slog.Logger
	engine     *gin.Engine
	base       string // FHIR base URL
	basePath   string // its path, for Location headers
	started    time.Time
	capability []byte
	// smartConfig is the SMART configuration document, when Tokens is set.
	smartConfig []byte
	limiter     *clientLimiter
	failures    *clientLimiter // by source address, of failed authentication
}

// NewServer builds the router. It refuses a missing service or
// authenticator and fills in defaults for zero limits.
func NewServer(cfg Config, svc *gateway.Service, auth gateway.Authenticator) (*Server, error) {
	if svc == nil || auth == nil {
		return nil, errors.New("fhir.NewServer: a service and an authenticator are required")
	}
	if cfg.BaseURL == "" {
		return nil, errors.New("fhir.NewServer: no base URL")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.MaxJSONDepth <= 0 {
		cfg.MaxJSONDepth = 64
	}
	if cfg.MaxCount <= 0 {
		cfg.MaxCount = 500
	}
	if cfg.DefaultCount <= 0 || cfg.DefaultCount > cfg.MaxCount {
		cfg.DefaultCount = min(50, cfg.MaxCount)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{
		cfg:      cfg,
		svc:      svc,
		auth:     auth,
		log:      cfg.Logger,
		base:     strings.TrimSuffix(cfg.BaseURL, "/") + "/fhir",
		started:  cfg.Now().UTC(),
		limiter:  newClientLimiter(cfg.RatePerSecond, cfg.RateBurst, cfg.Now),
		failures: newClientLimiter(cfg.FailedAuthPerMinute/60, cfg.FailedAuthBurst, cfg.Now),
	}
	u, err := url.Parse(s.base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("fhir.NewServer: base URL %q is not an absolute http(s) URL", cfg.BaseURL)
	}
	s.basePath = u.Path
	capability, err := s.capabilityStatement()
	if err != nil {
		return nil, err
	}
	s.capability = capability
	if cfg.Tokens != nil {
		if s.smartConfig, err = s.smartConfigJSON(); err != nil {
			return nil, err
		}
	}

	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.ContextWithFallback = true
	if err := r.SetTrustedProxies(cfg.TrustedProxies); err != nil {
		return nil, fmt.Errorf("fhir.NewServer: trusted proxies: %w", err)
	}
	if cfg.TracerProvider != nil || cfg.MeterProvider != nil {
		r.Use(s.telemetry(u.Host)...)
	}
	r.Use(s.recoverer, s.requestLog)
	r.NoRoute(s.handle(func(c *gin.Context) error {
		return gateway.Errorf(gateway.CodeNotFound, "no such endpoint")
	}))
	r.NoMethod(s.handle(func(c *gin.Context) error {
		return gateway.Errorf(gateway.CodeMethodNotAllowed, "%s is not supported here", c.Request.Method)
	}))
	r.GET("/healthz", s.healthz)
	r.GET("/readyz", s.readyz)
	if cfg.Tokens != nil {
		r.POST(oauth.TokenPath, s.oauthToken)
		r.GET("/fhir/.well-known/smart-configuration", s.smartConfiguration)
	}

	f := r.Group("/fhir", s.limitBody, s.negotiate)
	f.GET("/metadata", s.handle(s.metadata))
	a := f.Group("", s.authenticate, s.rateLimit)
	a.POST("", s.handle(s.transaction))
	a.POST("/", s.handle(s.transaction))
	a.GET("/:type", s.handle(s.search))
	a.POST("/:type", s.handle(s.create))
	a.POST("/:type/_search", s.handle(s.searchPost))
	a.GET("/:type/:id", s.handle(s.read))
	a.POST("/:type/:id", s.handle(s.operation))
	a.PUT("/:type/:id", s.handle(s.update))
	a.PATCH("/:type/:id", s.handle(s.patch))
	a.DELETE("/:type/:id", s.handle(s.remove))
	a.GET("/:type/:id/_history", s.handle(s.history))
	a.GET("/:type/:id/_history/:vid", s.handle(s.vread))

	api := r.Group("/api/v1", func(c *gin.Context) { c.Set(responseTypeKey, mediaJSON) }, s.limitBody, s.authenticate, s.rateLimit)
	api.GET("/reports/funnel", s.handle(s.funnelReport))
	api.GET("/reports/outcomes", s.handle(s.outcomesReport))
	api.GET("/cases", s.handle(s.listCases))
	api.GET("/cases/:id", s.handle(s.getCase))
	api.POST("/cases/:id/events", s.handle(s.caseEvent))
	api.GET("/outbox", s.handle(s.listOutbox))
	api.POST("/outbox/:id/redrive", s.handle(s.redrive))
	s.engine = r
	return s, nil
}

// Routes lists every route as "METHOD /path/:param", so that tests which
// must cover each endpoint (the attack suite) notice a new one.
func (s *Server) Routes() []string {
	var out []string
	for _, r := range s.engine.Routes() {
		out = append(out, r.Method+" "+r.Path)
	}
	return out
}

// ServeHTTP serves the gateway's HTTP API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.engine.ServeHTTP(w, r)
}

// handle adapts a handler that returns an error: every error becomes an
// OperationOutcome here, in one place.
func (s *Server) handle(h func(c *gin.Context) error) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := h(c); err != nil {
			s.writeError(c, err)
		}
	}
}

func (s *Server) healthz(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// readyz answers 200 when the database is reachable and migrated.
func (s *Server) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	c.Header("Cache-Control", "no-store")
	if err := s.svc.Ready(ctx); err != nil {
		s.log.ErrorContext(ctx, "not ready", "err", err)
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "unavailable"})
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}
