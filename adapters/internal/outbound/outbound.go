// Package outbound holds what the HTTP adapters share about sending to a
// receiver they do not control.
package outbound

import (
	"net/http"
	"net/url"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Client returns an HTTP client that does not follow redirects, so that
// what is delivered goes only where it was configured (or asked) to go; a
// redirect is answered as the 3xx it is. With a TracerProvider (tp not nil)
// each request is a client span (otelhttp) in the delivery's trace. The
// trace context is not sent: receivers are other organisations, and our
// trace ids are no business of theirs.
func Client(tp trace.TracerProvider) *http.Client {
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if tp != nil {
		c.Transport = otelhttp.NewTransport(http.DefaultTransport,
			otelhttp.WithTracerProvider(tp),
			otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
			otelhttp.WithPropagators(propagation.NewCompositeTextMapPropagator()))
	}
	return c
}

// Shown is a URL as errors show it: scheme, host and path, without the
// credentials or query a URL may carry.
func Shown(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}
