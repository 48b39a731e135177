// Package outbound holds what the HTTP adapters share about sending to a
// receiver they do not control.
package outbound

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"

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
	return client(nil, tp) // nil: http.DefaultTransport
}

// GuardedClient is Client for receivers a client of the gateway chose: each
// connection's address, as dialled after name resolution, is passed to
// check, and refused when it returns an error, so a name that resolves (or
// is re-pointed) to an internal address is caught where the connection is
// made. It uses no proxy, which would make the proxy's address the one
// checked.
func GuardedClient(tp trace.TracerProvider, check func(netip.Addr) error) *http.Client {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("outbound: dialling %q: %w", address, err)
			}
			return check(ap.Addr())
		}}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = d.DialContext
	return client(t, tp)
}

func client(rt http.RoundTripper, tp trace.TracerProvider) *http.Client {
	c := &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if tp != nil {
		c.Transport = otelhttp.NewTransport(rt,
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

// Cause turns a failed exchange's error into what went wrong, without the
// request's URL (which errors show only as Shown), saying so when the
// delivery ran out of time: ctx is the delivery's, bounded by timeout.
func Cause(ctx context.Context, err error, timeout time.Duration) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("no answer within %s: %w", timeout, context.DeadlineExceeded)
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}
