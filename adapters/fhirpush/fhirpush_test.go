package fhirpush_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spgateway/spgateway/adapters/fhirpush"
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

// request is one request as the FHIR server saw it.
type request struct {
	method, path string
	header       http.Header
	body         []byte
}

// server is a provider's FHIR server answering status and answer.
func server(t *testing.T, status int, answer string) (*httptest.Server, chan request) {
	t.Helper()
	got := make(chan request, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- request{method: r.Method, path: r.URL.Path, header: r.Header.Clone(), body: body}
		w.Header().Set("Content-Type", "application/fhir+json")
		w.WriteHeader(status)
		io.WriteString(w, answer)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

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
			srv, got := server(t, http.StatusOK, transactionResponse)
			a := adapter(t, fhirpush.Config{BaseURL: srv.URL + base, Token: "t0ken"})
			if err := a.Deliver(context.Background(), event); err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			r := <-got
			if r.method != http.MethodPost || r.path != "/fhir" {
				t.Errorf("%s %s, want POST /fhir (the base)", r.method, r.path)
			}
			for name, want := range map[string]string{
				"Content-Type":  "application/fhir+json",
				"Accept":        "application/fhir+json",
				"Authorization": "Bearer t0ken",
				"X-Request-Id":  "delivery-1",
			} {
				if v := r.header.Get(name); v != want {
					t.Errorf("%s = %q, want %q", name, v, want)
				}
			}
			if string(r.body) != string(transaction) {
				t.Errorf("body = %s, want the Bundle as it is", r.body)
			}
		})
	}
	t.Run("no token, no Authorization", func(t *testing.T) {
		srv, got := server(t, http.StatusOK, transactionResponse)
		if err := adapter(t, fhirpush.Config{BaseURL: srv.URL}).Deliver(context.Background(), event); err != nil {
			t.Fatalf("Deliver: %v", err)
		}
		if r := <-got; r.header.Get("Authorization") != "" || r.path != "/" && r.path != "" {
			t.Errorf("Authorization = %q, path %q", r.header.Get("Authorization"), r.path)
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
			srv, _ := server(t, tt.status, tt.answer)
			err := adapter(t, fhirpush.Config{BaseURL: srv.URL, Token: "t0ken"}).Deliver(context.Background(), event)
			if err == nil {
				t.Fatal("Deliver succeeded")
			}
			var perm *gateway.PermanentError
			if errors.As(err, &perm) != tt.permanent {
				t.Errorf("Deliver = %v: permanent is %v, want %v", err, !tt.permanent, tt.permanent)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.says) {
				t.Errorf("error %q does not say %q", msg, tt.says)
			}
			for _, secret := range []string{nhsNumber, "Smith", "t0ken"} {
				if strings.Contains(msg, secret) {
					t.Errorf("error %q holds %q", msg, secret)
				}
			}
		})
	}
}

func TestDeliverTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // then the server notices the client leave
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer srv.Close()
	start := time.Now()
	err := adapter(t, fhirpush.Config{BaseURL: srv.URL, Timeout: 200 * time.Millisecond}).Deliver(context.Background(), event)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Deliver = %v, want a timeout", err)
	}
	if took := time.Since(start); took > 1200*time.Millisecond {
		t.Errorf("Deliver took %s with a timeout of 200ms", took)
	}
}

func TestDeliverRefusesNonTransactions(t *testing.T) {
	srv, got := server(t, http.StatusOK, transactionResponse)
	a := adapter(t, fhirpush.Config{BaseURL: srv.URL})
	var batch map[string]any
	json.Unmarshal(transaction, &batch)
	batch["type"] = "batch"
	batchJSON, _ := json.Marshal(batch)
	for _, payload := range []string{"", `{"nhs_number":"` + nhsNumber + `"}`, `{"resourceType":"Task"}`, string(batchJSON), "not json " + nhsNumber} {
		e := event
		e.Payload = []byte(payload)
		err := a.Deliver(context.Background(), e)
		var perm *gateway.PermanentError
		if !errors.As(err, &perm) {
			t.Errorf("Deliver = %v, want a permanent error", err)
		} else if strings.Contains(err.Error(), nhsNumber) {
			t.Errorf("error %q holds patient data", err)
		}
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
