package fhir

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/contrib/instrumentation/github.com/gin-gonic/gin/otelgin"
	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// unmatched names the route of a request no route matched, in spans and
// the request log.
const unmatched = "unmatched"

// telemetry traces each request and records its duration (otelgin), under
// the route pattern: a path or query can carry an NHS number, so the span
// is named after the pattern and its url.path is the pattern too. The
// health checks, polled every few seconds, are left out. server is the
// public host, so that a client's Host header cannot make new metric
// series.
func (s *Server) telemetry(server string) []gin.HandlerFunc {
	tp, mp := s.cfg.TracerProvider, s.cfg.MeterProvider
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	traced := otelgin.Middleware(server,
		otelgin.WithTracerProvider(tp),
		otelgin.WithMeterProvider(mp),
		otelgin.WithPropagators(propagation.TraceContext{}),
		otelgin.WithSpanNameFormatter(func(c *gin.Context) string { return c.Request.Method + " " + route(c) }),
		otelgin.WithFilter(func(r *http.Request) bool { return r.URL.Path != "/healthz" && r.URL.Path != "/readyz" }),
	)
	return []gin.HandlerFunc{traced, hidePath}
}

// route is the request's route pattern, or unmatched.
func route(c *gin.Context) string {
	if r := c.FullPath(); r != "" {
		return r
	}
	return unmatched
}

// hidePath replaces the url.path otelgin records with the route pattern.
func hidePath(c *gin.Context) {
	trace.SpanFromContext(c.Request.Context()).SetAttributes(attribute.String("url.path", route(c)))
	c.Next()
}
