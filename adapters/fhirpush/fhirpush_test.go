package fhirpush_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/spgateway/spgateway/adapters/fhirpush"
	"github.com/spgateway/spgateway/adapters/internal/adaptertest"
	"github.com/spgateway/spgateway/gateway"
)

// The adapter is a Deliverer for the outbox worker.
var _ gateway.Deliverer = (*fhirpush.Adapter)(nil)

const nhsNumber = "9434765919"

var (
	transaction = []byte(`{"resourceType":"Bundle","type":"transaction","entry":[` +
		`{"fullUrl":"urn:uuid:0b5f3b0e-1f7c-4d35-9c55-2a2f4d7e9a01","resource":{"resourceType":"Patient",` +
		`"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"` + nhsNumber + `"}],"name":[{"family":"Smith","given":["Jane"]}]},` +
		`"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=https://fhir.nhs.uk/Id/nhs-number|` + nhsNumber + `"}},` +
		`{"resource":{"resourceType":"Task","status":"requested","intent":"order","for":{"reference":"urn:uuid:0b5f3b0e-1f7c-4d35-9c55-2a2f4d7e9a01"}},` +
		`"request":{"method":"PUT","url":"Task?identifier=https://spgateway.example/task|task-1"}}]}`)
	transactionResponse = `{"resourceType":"Bundle","type":"transaction-response","entry":[` +
		`{"response":{"status":"200 OK","location":"Patient/p1/_history/1"}},{"response":{"status":"201 Created","location":"Task/t1/_history/1"}}]}`
	event = gateway.OutboxEvent{ID: "delivery-1", Destination: gateway.ProviderDestination("P2"), Kind: gateway.EventCaseRecord,
		OrderKey: "task-1", TaskVersion: 1, Payload: transaction}
)

func adapter(t *testing.T, cfg fhirpush.Config) *fhirpush.Adapter {
	t.Helper()
	a, err := fhirpush.New(cfg)
	if err != nil {
		t.Fatalf("fhirpush.New: %v", err)
	}
	return a
}

func TestDeliverTransaction(t *testing.T) {
	for _, base := range []string{"/fhir", "/fhir/"} {
		t.Run("base "+base, func(t *testing.T) {
			srv, got := adaptertest.Receiver(t, http.StatusOK, transactionResponse)
			a := adapter(t, fhirpush.Config{BaseURL: srv.URL + base, Token: "t0ken"})
			if err := a.Deliver(context.Background(), event); err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			r := <-got
			if r.Method != http.MethodPost || r.Path != "/fhir" {
				t.Errorf("%s %s, want POST /fhir (the base)", r.Method, r.Path)
			}
			for name, want := range map[string]string{
				"Content-Type":  "application/fhir+json",
				"Accept":        "application/fhir+json",
				"Authorization": "Bearer t0ken",
				"X-Request-Id":  "delivery-1",
			} {
				if v := r.Header.Get(name); v != want {
					t.Errorf("%s = %q, want %q", name, v, want)
				}
			}
			if string(r.Body) != string(transaction) {
				t.Errorf("body = %s, want the Bundle as it is", r.Body)
			}
		})
	}
	t.Run("no token, no Authorization", func(t *testing.T) {
		srv, got := adaptertest.Receiver(t, http.StatusOK, transactionResponse)
		if err := adapter(t, fhirpush.Config{BaseURL: srv.URL}).Deliver(context.Background(), event); err != nil {
			t.Fatalf("Deliver: %v", err)
		}
		if r := <-got; r.Header.Get("Authorization") != "" || r.Path != "/" && r.Path != "" {
			t.Errorf("Authorization = %q, path %q", r.Header.Get("Authorization"), r.Path)
		}
	})
}

func TestDeliverFailures(t *testing.T) {
	outcome := `{"resourceType":"OperationOutcome","issue":[` +
		`{"severity":"error","code":"invalid","diagnostics":"NHS number ` + nhsNumber + ` (Smith) fails its check digit",` +
		`"expression":["Bundle.entry[0].resource.identifier.where(value='` + nhsNumber + `')"]},` +
		`{"severity":"error","code":"required","location":["Bundle.entry[1].resource.owner"]},` +
		`{"severity":"warning","code":"informational","diagnostics":"Smith"},` +
		`{"severity":"warning","code":"informational"}]}`
	tests := []struct {
		name      string
		status    int
		answer    string
		permanent bool
		says      string
	}{
		{name: "200 without a Bundle is retried", status: 200, answer: `{"resourceType":"OperationOutcome"}`, says: "not a transaction-response Bundle"},
		{name: "200 with a batch-response is retried", status: 200, answer: `{"resourceType":"Bundle","type":"batch-response"}`, says: "not a transaction-response Bundle"},
		{name: "200 with HTML is retried", status: 200, answer: `<html>welcome</html>`, says: "200 OK, but the answer"},
		{name: "401 is retried", status: 401, says: "401 Unauthorized: the server refused the gateway's credentials"},
		{name: "403 is retried", status: 403, says: "403 Forbidden: the server refused the gateway's credentials"},
		{name: "410 is permanent", status: 410, permanent: true, says: "410 Gone"},
		{name: "422 names the issues, not their values", status: 422, answer: outcome,
			says: "422 Unprocessable Entity: OperationOutcome: error invalid at Bundle.entry[0].resource.identifier.where…; error required at Bundle.entry[1].resource.owner; warning informational; 1 more"},
		{name: "500 echoing the Bundle is not quoted", status: 500, answer: string(transaction), says: "500 Internal Server Error"},
		{name: "502 from a proxy is quoted", status: 502, answer: "upstream connect error", says: `502 Bad Gateway: "upstream connect error"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := adaptertest.Receiver(t, tt.status, tt.answer)
			err := adapter(t, fhirpush.Config{BaseURL: srv.URL, Token: "t0ken"}).Deliver(context.Background(), event)
			adaptertest.WantFailure(t, err, tt.permanent, tt.says, nhsNumber, "Smith", "t0ken")
		})
	}
}

func TestDeliverTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	a := adapter(t, fhirpush.Config{BaseURL: adaptertest.Stalling(t).URL, Timeout: timeout})
	adaptertest.WantTimeout(t, timeout, func() error { return a.Deliver(context.Background(), event) })
}

func TestDeliverRefusesNonTransactions(t *testing.T) {
	srv, got := adaptertest.Receiver(t, http.StatusOK, transactionResponse)
	a := adapter(t, fhirpush.Config{BaseURL: srv.URL})
	var batch map[string]any
	json.Unmarshal(transaction, &batch)
	batch["type"] = "batch"
	batchJSON, _ := json.Marshal(batch)
	for _, payload := range []string{"", `{"nhs_number":"` + nhsNumber + `"}`, `{"resourceType":"Task"}`, string(batchJSON), "not json " + nhsNumber} {
		e := event
		e.Payload = []byte(payload)
		adaptertest.WantPermanent(t, a.Deliver(context.Background(), e), nhsNumber)
	}
	if len(got) != 0 {
		t.Error("a payload that is not a transaction was sent")
	}
}

func TestNewRefuses(t *testing.T) {
	for _, cfg := range []fhirpush.Config{
		{},
		{BaseURL: "fhir.provider.example/fhir"},
		{BaseURL: "ftp://fhir.provider.example/fhir"},
		{BaseURL: "https://:8443/fhir"},
		{BaseURL: "https://fhir.provider.example/fhir", Token: "t0ken\r\nX-Other: 1"},
	} {
		if a, err := fhirpush.New(cfg); err == nil || a != nil {
			t.Errorf("New(%+v) = %v, %v; want an error", cfg, a, err)
		}
	}
}
