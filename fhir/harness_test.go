package fhir_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/spgateway/spgateway/fhir"
	"github.com/spgateway/spgateway/fhir/fhirtest"
	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/gatewaytest"
	"github.com/spgateway/spgateway/gateway/store"
	"github.com/spgateway/spgateway/gateway/store/storetest"
	"github.com/spgateway/spgateway/mapping"
)

// The development keys of SPEC 4.1.
const (
	keyA81001 = gatewaytest.KeyA81001
	keyA81002 = gatewaytest.KeyA81002
	keyPRV01  = gatewaytest.KeyPRV01
	keyPRV02  = gatewaytest.KeyPRV02
	keyAdmin  = gatewaytest.KeyAdmin
)

// traceAll runs every gateway with tracing on, to measure its cost:
// go test -run '^$' -bench . ./fhir/ -args -trace
var traceAll = flag.Bool("trace", false, "trace every request and statement (sampling 1.0, spans dropped)")

// testGateway is the real router over a real store.
type testGateway struct {
	t     testing.TB
	srv   *httptest.Server
	svc   *gateway.Service
	fhir  *fhir.Server
	store *store.Store
	audit *gateway.BatchAuditor
	db    store.Config // where the store is, for tests that reach it directly
	base  string       // server root
}

type gatewayOption func(*gateway.Config, *fhir.Config)

// withNow is the clock of the whole gateway: store (lastUpdated, Task
// milestones), service and HTTP edge.
func withNow(now func() time.Time) gatewayOption {
	return func(g *gateway.Config, f *fhir.Config) { g.Now, f.Now = now, now }
}

func withLimits(maxBody int64, maxDepth, defaultCount, maxCount int) gatewayOption {
	return func(_ *gateway.Config, f *fhir.Config) {
		f.MaxBodyBytes, f.MaxJSONDepth, f.DefaultCount, f.MaxCount = maxBody, maxDepth, defaultCount, maxCount
	}
}

// devConfig is the gateway.Config of the development organisations and
// routing (SPEC 4.1), without a store.
func devConfig() gateway.Config {
	return gateway.Config{
		Documents:     mapping.Documents{},
		Organizations: gatewaytest.Organizations(),
		Routing:       gatewaytest.Routing(),
		// The tests' Subscription endpoints are httptest servers: plain
		// http on the loopback address (attack_test holds them to the
		// production rule).
		SubscriptionEndpoints: gateway.EndpointPolicy{AllowHTTP: true, AllowPrivate: true},
	}
}

// devKeys are the development keys of SPEC 4.1.
func devKeys() gateway.Authenticator {
	return gateway.NewStaticKeys(gatewaytest.Clients())
}

// newGateway starts the gateway with the development organisations, routing
// and keys on a fresh store of engine.
func newGateway(t testing.TB, engine string, opts ...gatewayOption) *testGateway {
	t.Helper()
	return newGatewayAuth(t, engine, nil, opts...)
}

// newGatewayAuth is newGateway with the authenticator auth makes from the
// gateway's store and FHIR configuration (which it may change, to add a
// token endpoint); nil auth keeps the development keys.
func newGatewayAuth(t testing.TB, engine string, auth func(*store.Store, *fhir.Config) gateway.Authenticator, opts ...gatewayOption) *testGateway {
	t.Helper()
	gcfg := devConfig()
	g := &testGateway{t: t}
	srv := httptest.NewUnstartedServer(nil)
	g.base = "http://" + srv.Listener.Addr().String()
	fcfg := fhir.Config{BaseURL: g.base, MaxBodyBytes: 1 << 20, MaxJSONDepth: 64, DefaultCount: 50, MaxCount: 500}
	for _, o := range opts {
		o(&gcfg, &fcfg)
	}
	g.db = storetest.Config(t, engine)
	g.db.Now = gcfg.Now
	if *traceAll && fcfg.TracerProvider == nil {
		// Every request, statement and delivery traced, spans built and
		// batched to an exporter that drops them: tracing's cost.
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		fcfg.TracerProvider = tp
		g.db.TracerProvider = tp
	}
	st := storetest.OpenConfig(t, g.db)
	gcfg.Store = st
	// Reads and refusals are audited through a batching auditor, as when
	// serving; it is closed (and so written out) before the store.
	aud, err := gateway.NewBatchAuditor(gateway.BatchAuditorConfig{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := aud.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	if gcfg.Auditor == nil {
		gcfg.Auditor = aud
	}
	if gcfg.Outbox == nil {
		gcfg.Outbox = st
	}
	svc, err := gateway.NewService(gcfg)
	if err != nil {
		t.Fatal(err)
	}
	authn := devKeys()
	if auth != nil {
		authn = auth(st, &fcfg)
	}
	h, err := fhir.NewServer(fcfg, svc, authn)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = h
	srv.Start()
	t.Cleanup(srv.Close)
	g.srv, g.svc, g.fhir, g.store, g.audit = srv, svc, h, st, aud
	return g
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into a generic document.
func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not JSON: %v\n%s", err, r.body)
	}
	return m
}

// do sends a request as the client with key ("" for none). Headers come in
// name, value pairs. Every FHIR JSON response is checked against the FHIR
// R4 schema.
func (g *testGateway) do(method, path, key string, body []byte, headers ...string) response {
	g.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, g.base+path, rd)
	if err != nil {
		g.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := g.srv.Client().Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		g.t.Fatal(err)
	}
	r := response{status: res.StatusCode, header: res.Header, body: b}
	if strings.HasPrefix(path, "/fhir") && len(b) > 0 {
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") && !strings.HasPrefix(ct, "application/json") {
			g.t.Errorf("%s %s: Content-Type %q", method, path, ct)
		}
		fhirtest.Valid(g.t, b)
	}
	return r
}

func (g *testGateway) get(path, key string) response { return g.do(http.MethodGet, path, key, nil) }

func (g *testGateway) post(path, key string, body []byte, headers ...string) response {
	return g.do(http.MethodPost, path, key, body, headers...)
}

// fixture reads a file of testdata/fixtures.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "fixtures", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withIdentifier returns the referral Bundle fixture with another referral
// identifier (and NHS number, when nhs is not empty), as a new referral.
func referralBundle(t testing.TB, identifier, nhs string) []byte {
	t.Helper()
	b := fixture(t, "referral-bundle.json")
	b = bytes.ReplaceAll(b, []byte("SP-2026-000123"), []byte(identifier))
	if nhs != "" {
		b = bytes.ReplaceAll(b, []byte("9434765919"), []byte(nhs))
	}
	return b
}

// issues returns the issues of an OperationOutcome response.
func outcomeIssues(t testing.TB, r response) []map[string]any {
	t.Helper()
	m := r.json(t)
	if m["resourceType"] != "OperationOutcome" {
		t.Fatalf("want an OperationOutcome, got %s", r.body)
	}
	var out []map[string]any
	for _, is := range m["issue"].([]any) {
		out = append(out, is.(map[string]any))
	}
	return out
}

// names reports whether an issue of the outcome names expr.
func names(t testing.TB, r response, expr string) bool {
	t.Helper()
	for _, is := range outcomeIssues(t, r) {
		exprs, _ := is["expression"].([]any)
		for _, e := range exprs {
			if e == expr {
				return true
			}
		}
	}
	return false
}

// entries returns the resources of a Bundle response with their search mode.
func entries(t testing.TB, r response) (resources []map[string]any, modes []string) {
	t.Helper()
	m := r.json(t)
	if m["resourceType"] != "Bundle" {
		t.Fatalf("want a Bundle, got %d %s", r.status, r.body)
	}
	list, _ := m["entry"].([]any)
	for _, e := range list {
		e := e.(map[string]any)
		res, _ := e["resource"].(map[string]any)
		resources = append(resources, res)
		if s, ok := e["search"].(map[string]any); ok {
			modes = append(modes, s["mode"].(string))
		}
	}
	return resources, modes
}

// link returns the url of a Bundle link, or "".
func link(t testing.TB, r response, relation string) string {
	t.Helper()
	links, _ := r.json(t)["link"].([]any)
	for _, l := range links {
		l := l.(map[string]any)
		if l["relation"] == relation {
			return l["url"].(string)
		}
	}
	return ""
}

// str digs a string out of a decoded document by keys and indexes.
func str(v any, path ...any) string {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return ""
			}
			v = a[k]
		}
	}
	s, _ := v.(string)
	return s
}
