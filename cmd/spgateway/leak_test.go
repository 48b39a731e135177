package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/spgateway/spgateway/gateway/gatewaytest"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// The fixture's patient data: none of it may appear in a span, a log line
// or a metric.
var patientData = []string{
	"9434765919", "943 476 5919", "Irene", "Testpatient", "07700 900123", "07700900123", "NE4 5XX",
	"12 Example Terrace", "irene.testpatient@example.org", "Socially isolated", "bereavement",
	"Prefers a phone call", "Hard of hearing", "SP-2026-000123",
	"9434765918", // the invalid NHS number of the 422
}

// leaks returns the values of secrets that text holds.
func leaks(text string, secrets []string) []string {
	var found []string
	for _, s := range secrets {
		if strings.Contains(strings.ToLower(text), strings.ToLower(s)) {
			found = append(found, s)
		}
	}
	return found
}

func TestLeakCheckerFindsPlantedValues(t *testing.T) {
	for _, planted := range []string{`{"attr":"irene"}`, "http.route=/fhir/Patient?identifier=x|9434765919", "postcode ne4 5xx"} {
		if len(leaks(planted, patientData)) == 0 {
			t.Errorf("the checker misses the patient data in %q", planted)
		}
	}
	if got := leaks(`{"route":"/fhir/:type","status":200}`, patientData); len(got) != 0 {
		t.Errorf("the checker finds %v in a clean line", got)
	}
}

// spanText is everything a span exports, as text: name, attributes,
// events, status, links.
func spanText(s tracetest.SpanStub) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s|", s.Name, s.Status.Code, s.Status.Description)
	for _, a := range s.Attributes {
		fmt.Fprintf(&b, "%s=%s|", a.Key, a.Value.String())
	}
	for _, e := range s.Events {
		fmt.Fprintf(&b, "event %s|", e.Name)
		for _, a := range e.Attributes {
			fmt.Fprintf(&b, "%s=%s|", a.Key, a.Value.String())
		}
	}
	for _, l := range s.Links {
		for _, a := range l.Attributes {
			fmt.Fprintf(&b, "%s=%s|", a.Key, a.Value.String())
		}
	}
	return b.String()
}

// TestNoPatientDataInTelemetry runs a whole referral through the gateway as
// serve runs it, with every span kept and the request log at debug level:
// intake, the provider's poll, searches by NHS number, reads, acceptance,
// a PROM, completion, the case API, a webhook delivery and errors; then it
// scrapes /metrics. No patient data may appear in any span, log line or
// metric; and the spans it looks at must be there.
func TestNoPatientDataInTelemetry(t *testing.T) {
	storetest.Each(t, testNoPatientDataInTelemetry)
}

func testNoPatientDataInTelemetry(t *testing.T, engine string) {
	var (
		mu       sync.Mutex
		received [][]byte
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		received = append(received, b)
		mu.Unlock()
	}))
	defer hook.Close()

	path := webhookConfig(t, hook.URL)
	getenv := testEnv(t, map[string]string{
		"SPGATEWAY_DATABASE_DRIVER":               engine,
		"SPGATEWAY_DATABASE_DSN":                  storetest.Config(t, engine).DSN,
		"PRV01_WEBHOOK_SECRET":                    "a-webhook-secret-of-at-least-32-characters",
		"SPGATEWAY_LOG_LEVEL":                     "debug",
		"SPGATEWAY_OUTBOX_POLL":                   "50ms",
		"SPGATEWAY_TELEMETRY_TRACES_EXPORTER":     "stdout", // replaced by the in-memory exporter
		"SPGATEWAY_TELEMETRY_METRICS_ENABLED":     "true",
		"SPGATEWAY_TELEMETRY_TRACES_SAMPLE_RATIO": "1",
	})
	cfg, err := loadConfig(path, getenv)
	if err != nil {
		t.Fatal(err)
	}
	exp := tracetest.NewInMemoryExporter()
	tel, err := newTelemetry(t.Context(), cfg, io.Discard, exp)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, newLogger(cfg, logs), tel, nil) }()
	base := cfg.Server.BaseURL
	if err := waitReady(base+"/readyz", 60*time.Second); err != nil {
		cancel()
		t.Fatalf("%v; serve: %v\n%s", err, <-done, logs)
	}

	do := func(method, path, key string, body []byte, want int, headers ...string) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/fhir+json")
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != want {
			t.Fatalf("%s %s: %d, want %d\n%s", method, path, res.StatusCode, want, b)
		}
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return m
	}
	const (
		practice = gatewaytest.KeyA81001
		provider = gatewaytest.KeyPRV01
		nhsQuery = "https://fhir.nhs.uk/Id/nhs-number|9434765919"
	)
	bundle, err := os.ReadFile(filepath.Join("..", "..", "testdata", "fixtures", "referral-bundle.json"))
	if err != nil {
		t.Fatal(err)
	}
	do("POST", "/fhir", practice, bundle, 200)
	poll := do("GET", "/fhir/Task?owner=Organization/PRV01&status=requested&_include=Task:focus&_include=Task:patient", provider, nil, 200)
	var taskID, requestID, patientID string
	for _, e := range poll["entry"].([]any) {
		r := e.(map[string]any)["resource"].(map[string]any)
		switch r["resourceType"] {
		case "Task":
			taskID = r["id"].(string)
		case "ServiceRequest":
			requestID = r["id"].(string)
		case "Patient":
			patientID = r["id"].(string)
		}
	}
	if taskID == "" || requestID == "" || patientID == "" {
		t.Fatalf("the poll did not return the Task with its includes: %v", poll)
	}
	do("GET", "/fhir/Patient?identifier="+nhsQuery, practice, nil, 200)
	do("GET", "/fhir/ServiceRequest?patient:identifier="+nhsQuery, provider, nil, 200)
	do("GET", "/fhir/Task/"+taskID, provider, nil, 200)
	do("GET", "/fhir/Task/"+taskID+"/_history/1", provider, nil, 200)
	do("GET", "/fhir/Task/"+taskID+"/_history", provider, nil, 200)
	patch := func(version int, status string) {
		do("PATCH", "/fhir/Task/"+taskID, provider, []byte(`[{"op":"replace","path":"/status","value":"`+status+`"}]`), 200,
			"Content-Type", "application/json-patch+json", "If-Match", fmt.Sprintf(`W/"%d"`, version))
	}
	patch(1, "accepted")
	items := []string{}
	for _, l := range []string{"1", "2", "3", "6", "7", "9", "11"} {
		items = append(items, `{"linkId":"`+l+`","answer":[{"valueInteger":3}]}`)
	}
	do("POST", "/fhir/QuestionnaireResponse", provider, []byte(`{"resourceType":"QuestionnaireResponse",`+
		`"questionnaire":"https://fhir.spgateway.org/Questionnaire/swemwbs","status":"completed",`+
		`"subject":{"reference":"Patient/`+patientID+`"},"basedOn":[{"reference":"ServiceRequest/`+requestID+`"}],`+
		`"authored":"`+time.Now().UTC().Format(time.RFC3339)+`","item":[`+strings.Join(items, ",")+`]}`), 201)
	task := do("GET", "/fhir/Task/"+taskID, provider, nil, 200)
	version := 0
	fmt.Sscan(task["meta"].(map[string]any)["versionId"].(string), &version)
	patch(version, "in-progress")
	patch(version+1, "completed")
	do("GET", "/fhir/Task/"+taskID, practice, nil, 200)
	do("GET", "/fhir/ServiceRequest/"+requestID, practice, nil, 200)
	do("GET", "/fhir/Patient/"+patientID, practice, nil, 200)
	do("GET", "/api/v1/cases", provider, nil, 200)
	do("GET", "/api/v1/cases/"+taskID, provider, nil, 200)
	// The error paths.
	bad := bytes.ReplaceAll(bytes.ReplaceAll(bundle, []byte("9434765919"), []byte("9434765918")), []byte("SP-2026-000123"), []byte("SP-2026-000999"))
	do("POST", "/fhir", practice, bad, 422)
	do("GET", "/fhir/Task/nonesuch-9434765919", provider, nil, 404)
	do("GET", "/fhir/Patient/9434765919?name=Testpatient", practice, nil, 404)

	// The webhook receives the new referral's case record, patient data and all.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(received)
		got := bytes.Join(received, nil)
		mu.Unlock()
		if n > 0 && bytes.Contains(got, []byte("9434765919")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhook received %d deliveries, none with the case record", n)
		}
		time.Sleep(20 * time.Millisecond)
	}

	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metricsText, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{`http_server_request_duration_seconds_bucket{`, `http_route="/fhir/:type/:id"`,
		`spgateway_referrals{`, `status="completed"`, `spgateway_outbox_depth{`, `spgateway_outbox_delivered_total{`, `go_goroutines`} {
		if !bytes.Contains(metricsText, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	// The in-memory exporter forgets its spans at shutdown: flush and read
	// them first.
	if err := tel.tracer.ForceFlush(context.Background()); err != nil {
		t.Fatalf("flushing spans: %v", err)
	}
	spans := exp.GetSpans()
	if err := tel.close(context.Background()); err != nil {
		t.Fatalf("telemetry shutdown: %v", err)
	}
	var all strings.Builder
	seen := map[string]int{}
	for _, s := range spans {
		text := spanText(s)
		all.WriteString(text + "\n")
		switch {
		case s.SpanKind == trace.SpanKindServer:
			seen["server "+s.Name]++
		case strings.HasPrefix(s.Name, "sql."):
			seen["sql"]++
		case s.Name == "outbox.deliver":
			seen["delivery"]++
		case s.SpanKind == trace.SpanKindClient:
			seen["client"]++
		}
		if found := leaks(text, patientData); len(found) > 0 {
			t.Errorf("span %s holds %v:\n%s", s.Name, found, text)
		}
		if strings.Contains(text, "token=abc") {
			t.Errorf("span %s holds the webhook URL's query: %s", s.Name, text)
		}
	}
	for _, want := range []string{"server POST /fhir", "server GET /fhir/:type", "server GET /fhir/:type/:id",
		"server PATCH /fhir/:type/:id", "server POST /fhir/:type", "server GET /fhir/:type/:id/_history",
		"server GET /fhir/:type/:id/_history/:vid", "server GET /api/v1/cases", "server GET /api/v1/cases/:id", "sql", "delivery", "client"} {
		if seen[want] == 0 {
			t.Errorf("no %s span among %d spans: %v", want, len(spans), seen)
		}
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if found := leaks(line, patientData); len(found) > 0 {
			t.Errorf("log line holds %v: %s", found, line)
		}
	}
	if !strings.Contains(logs.String(), `"trace_id":"`) {
		t.Error("no request log line carries a trace id")
	}
	if found := leaks(string(metricsText), patientData); len(found) > 0 {
		t.Errorf("/metrics holds %v", found)
	}
}
