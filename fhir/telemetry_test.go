package fhir_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/spgateway/spgateway/fhir"
	"github.com/spgateway/spgateway/gateway"
)

// lockedBuffer is a log sink the server and the test share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

// TestRequestTelemetry: a span per request named by method and route
// pattern, with url.path the pattern too (the path and query can carry an
// NHS number); the request log line carries the trace id; the request
// duration histogram is by route and status.
func TestRequestTelemetry(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	logs := &lockedBuffer{}
	g := newGateway(t, "sqlite", func(_ *gateway.Config, f *fhir.Config) {
		f.TracerProvider, f.MeterProvider = tp, mp
		f.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	})
	const nhs = "9434765919"
	requests := []struct{ path, span, route string }{
		{"/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|" + nhs, "GET /fhir/:type", "/fhir/:type"},
		{"/fhir/Patient/" + nhs, "GET /fhir/:type/:id", "/fhir/:type/:id"},
		{"/nowhere/" + nhs, "GET unmatched", ""},
	}
	for _, r := range requests {
		g.get(r.path, keyA81001)
	}
	g.get("/healthz", "") // not traced

	spans := rec.Ended()
	if len(spans) != len(requests) {
		t.Fatalf("%d spans, want %d (one per request, none for /healthz)", len(spans), len(requests))
	}
	traceIDs := map[string]bool{}
	for i, sp := range spans {
		want := requests[i]
		if sp.Name() != want.span || sp.SpanKind() != trace.SpanKindServer {
			t.Errorf("span %d: %q (%v), want server span %q", i, sp.Name(), sp.SpanKind(), want.span)
		}
		attrs := attribute.NewSet(sp.Attributes()...)
		if v, _ := attrs.Value("url.path"); v.AsString() != sp.Name()[len("GET "):] {
			t.Errorf("span %d: url.path %q, want the route pattern", i, v.AsString())
		}
		if v, _ := attrs.Value("http.route"); v.AsString() != want.route {
			t.Errorf("span %d: http.route %q, want %q", i, v.AsString(), want.route)
		}
		for _, a := range sp.Attributes() {
			if strings.Contains(a.Value.String(), nhs) {
				t.Errorf("span %d: %s = %q holds the NHS number", i, a.Key, a.Value.String())
			}
		}
		traceIDs[sp.SpanContext().TraceID().String()] = true
	}
	logged := 0
	for _, line := range logs.lines(t) {
		if line["msg"] != "request" || line["route"] == "/healthz" {
			continue
		}
		logged++
		if id, _ := line["trace_id"].(string); !traceIDs[id] {
			t.Errorf("request log line %v: trace_id is not a request's span", line)
		}
	}
	if logged != len(requests) {
		t.Errorf("%d request log lines with a trace, want %d", logged, len(requests))
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	routes := map[string]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "http.server.request.duration" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				r, _ := dp.Attributes.Value("http.route")
				s, _ := dp.Attributes.Value("http.response.status_code")
				routes[r.AsString()+" "+s.String()] = true
			}
		}
	}
	for _, want := range []string{"/fhir/:type 200", "/fhir/:type/:id 404"} {
		if !routes[want] {
			t.Errorf("no http.server.request.duration for route and status %q; have %v", want, routes)
		}
	}
}
