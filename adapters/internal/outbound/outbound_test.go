package outbound

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestShown(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:secret@hooks.example/in?token=abc#frag": "https://hooks.example/in",
		"http://127.0.0.1:9000/spgateway":                     "http://127.0.0.1:9000/spgateway",
	} {
		u, err := url.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := Shown(u); got != want {
			t.Errorf("Shown(%s) = %s, want %s", in, got, want)
		}
	}
}

// TestCause: a timed-out delivery says so, with the timeout; any other
// failure is the network's error without the request's URL.
func TestCause(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	uerr := &url.Error{Op: "Post", URL: "https://hooks.example/in?token=abc", Err: refused}

	if got := Cause(context.Background(), uerr, time.Second); got != error(refused) {
		t.Errorf("Cause of a url.Error = %v, want the error it wraps", got)
	}
	if got := Cause(context.Background(), refused, time.Second); got != error(refused) {
		t.Errorf("Cause of another error = %v, want it as it is", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	got := Cause(ctx, uerr, 250*time.Millisecond)
	if !errors.Is(got, context.DeadlineExceeded) || got.Error() != "no answer within 250ms: context deadline exceeded" {
		t.Errorf("Cause after the deadline = %v", got)
	}
}

func TestClientDoesNotFollowRedirects(t *testing.T) {
	elsewhere := 0
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere++ }))
	defer target.Close()
	srv := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusTemporaryRedirect))
	defer srv.Close()
	resp, err := Client(nil).Post(srv.URL, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || elsewhere != 0 {
		t.Errorf("status %d, %d requests followed the redirect", resp.StatusCode, elsewhere)
	}
}

func TestClientTraces(t *testing.T) {
	var traceparent []string
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		traceparent = append(traceparent, r.Header.Get("Traceparent"))
	}))
	defer srv.Close()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, parent := tp.Tracer("test").Start(t.Context(), "delivery")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/in", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := Client(tp).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	parent.End()
	var client []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanKind() == trace.SpanKindClient {
			client = append(client, s)
		}
	}
	if len(client) != 1 || client[0].Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Fatalf("%d client spans, want 1 under the delivery's span", len(client))
	}
	if len(traceparent) != 1 || traceparent[0] != "" {
		t.Errorf("the receiver was sent trace context %q; want none", traceparent)
	}
	// Without a TracerProvider the client is not instrumented.
	if c := Client(nil); c.Transport != nil {
		t.Errorf("Client(nil) has transport %T, want the default", c.Transport)
	}
}

// TestGuardedClientChecksDialledAddress: the check sees the address a
// connection is made to, after the name is resolved, so "localhost" (or
// any name pointing inside) is refused where it connects; the receiver
// hears nothing. The same client connects when the check allows it.
func TestGuardedClientChecksDialledAddress(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	refused := errors.New("refused")
	var seen []netip.Addr
	var mu sync.Mutex
	deny := GuardedClient(nil, func(a netip.Addr) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, a)
		return refused
	})
	for _, u := range []string{srv.URL, "http://localhost:" + port + "/"} {
		res, err := deny.Get(u)
		if err == nil {
			res.Body.Close()
			t.Fatalf("%s: connected (%d)", u, res.StatusCode)
		}
		if !errors.Is(err, refused) {
			t.Errorf("%s: %v, want the check's error", u, err)
		}
	}
	if hits.Load() != 0 {
		t.Errorf("the receiver got %d requests", hits.Load())
	}
	for _, a := range seen {
		if !a.Unmap().IsLoopback() {
			t.Errorf("the check saw %s, not the loopback address dialled", a)
		}
	}
	if len(seen) < 2 {
		t.Errorf("the check saw %v", seen)
	}
	allow := GuardedClient(nil, func(netip.Addr) error { return nil })
	res, err := allow.Get("http://localhost:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || hits.Load() != 1 {
		t.Errorf("allowed: %d, %d requests", res.StatusCode, hits.Load())
	}
}
