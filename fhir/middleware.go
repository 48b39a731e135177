package fhir

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"regexp"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/trace"

	"github.com/spgateway/spgateway/gateway"
)

const (
	principalKey = "spgateway.principal"
	requestIDKey = "spgateway.request_id"
)

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// requestLog gives each request an id (the client's X-Request-Id when it is
// safe to echo) and logs one line when it ends. The line holds the route
// pattern, never the path or query, which can carry NHS numbers.
func (s *Server) requestLog(c *gin.Context) {
	start := time.Now()
	id := c.GetHeader("X-Request-Id")
	if !requestIDPattern.MatchString(id) {
		id = gateway.NewUUID()
	}
	c.Set(requestIDKey, id)
	c.Header("X-Request-Id", id)
	s.withRequest(c, id)
	c.Next()
	attrs := []slog.Attr{
		slog.String("request_id", id),
		slog.String("method", c.Request.Method),
		slog.String("route", route(c)),
		slog.Int("status", c.Writer.Status()),
		slog.Int("bytes", c.Writer.Size()),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
	}
	if p, ok := c.Get(principalKey); ok {
		attrs = append(attrs, slog.String("client", p.(gateway.Principal).ClientID))
	}
	if sc := trace.SpanContextFromContext(c.Request.Context()); sc.HasTraceID() {
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
	}
	s.log.LogAttrs(c.Request.Context(), slog.LevelInfo, "request", attrs...)
}

// recoverer turns a panic into a 500 OperationOutcome and logs the stack.
func (s *Server) recoverer(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v)
			}
			s.writeError(c, gateway.Internal("panic", fmt.Errorf("%v\n%s", v, debug.Stack())))
			c.Abort()
		}
	}()
	c.Next()
}

// limitBody refuses bodies over the limit: at once when Content-Length says
// so, and while reading otherwise.
func (s *Server) limitBody(c *gin.Context) {
	if c.Request.ContentLength > s.cfg.MaxBodyBytes {
		s.writeError(c, tooLarge(s.cfg.MaxBodyBytes))
		c.Abort()
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBodyBytes)
	c.Next()
}

func tooLarge(limit int64) error {
	return gateway.Errorf(gateway.CodeTooLarge, "the request body is larger than %d bytes", limit)
}

// readBody reads the whole request body within the size limit and checks it
// is JSON no deeper than the limit, before anything parses it.
func (s *Server) readBody(c *gin.Context) ([]byte, error) {
	body, err := s.readRaw(c)
	if err != nil {
		return nil, err
	}
	if err := checkJSON(body, s.cfg.MaxJSONDepth); err != nil {
		return nil, err
	}
	return body, nil
}

// readRaw reads the whole body within the size limit.
func (s *Server) readRaw(c *gin.Context) ([]byte, error) {
	body, err := io.ReadAll(c.Request.Body)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, tooLarge(s.cfg.MaxBodyBytes)
	case err != nil:
		return nil, gateway.Errorf(gateway.CodeInvalid, "the request body could not be read")
	}
	return body, nil
}

// The media types of FHIR JSON.
const (
	mediaFHIRJSON = "application/fhir+json"
	mediaJSON     = "application/json"
)

// negotiate checks _format, Accept and Content-Type: the gateway speaks FHIR
// JSON only, and answers anything else with 415.
func (s *Server) negotiate(c *gin.Context) {
	responseType := mediaFHIRJSON
	if f, ok := c.GetQuery("_format"); ok {
		switch f {
		case "json", mediaFHIRJSON:
		case mediaJSON:
			responseType = mediaJSON
		default:
			s.unsupported(c, "_format %q is not supported: this server speaks FHIR JSON only", f)
			return
		}
	} else if accept := c.GetHeader("Accept"); accept != "" {
		t, ok := acceptable(accept)
		if !ok {
			s.unsupported(c, "Accept %q: this server speaks FHIR JSON only (application/fhir+json)", accept)
			return
		}
		responseType = t
	}
	c.Set(responseTypeKey, responseType)
	switch c.Request.Method {
	case http.MethodPatch:
		if !isJSONPatch(c.GetHeader("Content-Type")) {
			s.unsupported(c, "PATCH takes a JSON Patch: Content-Type %s", mediaJSONPatch)
			return
		}
	case http.MethodPost, http.MethodPut:
		mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
		if err != nil || (mt != mediaFHIRJSON && mt != mediaJSON && !isFormSearch(c, mt)) {
			s.unsupported(c, "Content-Type must be %s", mediaFHIRJSON)
			return
		}
	}
	c.Next()
}

const responseTypeKey = "spgateway.response_type"

func isFormSearch(c *gin.Context, mediaType string) bool {
	return mediaType == "application/x-www-form-urlencoded" && strings.HasSuffix(c.Request.URL.Path, "/_search")
}

func (s *Server) unsupported(c *gin.Context, format string, args ...any) {
	s.writeError(c, gateway.Errorf(gateway.CodeUnsupportedMedia, format, args...))
	c.Abort()
}

// acceptable reads an Accept header: it returns the JSON type to answer
// with, or false when the client accepts no JSON at all.
func acceptable(accept string) (string, bool) {
	best, ok := "", false
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil || params["q"] == "0" {
			continue
		}
		switch mt {
		case mediaFHIRJSON, "*/*", "application/*":
			return mediaFHIRJSON, true
		case mediaJSON:
			best, ok = mediaJSON, true
		}
	}
	return best, ok
}

// authenticate requires a bearer credential and records the principal.
func (s *Server) authenticate(c *gin.Context) {
	scheme, credential, found := strings.Cut(c.GetHeader("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(credential) == "" {
		s.refuseCredentials(c, gateway.Errorf(gateway.CodeUnauthorized, "an Authorization: Bearer credential is required"))
		return
	}
	p, err := s.auth.Authenticate(c.Request.Context(), strings.TrimSpace(credential))
	if err != nil {
		s.refuseCredentials(c, err)
		return
	}
	c.Set(principalKey, p)
	c.Next()
}

func principal(c *gin.Context) gateway.Principal {
	p, _ := c.Get(principalKey)
	return p.(gateway.Principal)
}
