package webhook_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spgateway/spgateway/adapters/internal/adaptertest"
	"github.com/spgateway/spgateway/adapters/webhook"
	"github.com/spgateway/spgateway/gateway"
)

// The adapter is a Deliverer for the outbox worker.
var _ gateway.Deliverer = (*webhook.Adapter)(nil)

const nhsNumber = "9434765919"

var (
	secret = []byte("a shared secret of the provider")
	record = []byte(`{"case_id":"task-1","nhs_number":"` + nhsNumber + `","family_name":"Smith","birth_date":"1970-01-01","needs":["housing","debt"]}`)
	event  = gateway.OutboxEvent{ID: "delivery-1", Destination: gateway.ProviderDestination("P1"), Kind: gateway.EventCaseRecord,
		OrderKey: "task-1", TaskVersion: 2, Payload: record}
	clock = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
)

// received is one request as a receiver saw it.
type received struct {
	header http.Header
	body   []byte
	err    error // Verify's verdict
}

// receiver is a provider's endpoint: it verifies each delivery as a
// provider would, and answers status.
func receiver(t *testing.T, status int, answer string) (*httptest.Server, chan received) {
	t.Helper()
	got := make(chan received, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		err := webhook.Verify(secret, r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body, clock, time.Minute)
		got <- received{header: r.Header.Clone(), body: body, err: err}
		if err != nil {
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(status)
		io.WriteString(w, answer)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func adapter(t *testing.T, cfg webhook.Config) *webhook.Adapter {
	t.Helper()
	if cfg.Secret == nil {
		cfg.Secret = secret
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return clock }
	}
	a, err := webhook.New(cfg)
	if err != nil {
		t.Fatalf("webhook.New: %v", err)
	}
	return a
}

func TestDeliverSignedRecord(t *testing.T) {
	srv, got := receiver(t, http.StatusAccepted, "")
	a := adapter(t, webhook.Config{URL: srv.URL + "/cases"})
	if err := a.Deliver(context.Background(), event); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	r := <-got
	if r.err != nil {
		t.Fatalf("the receiver's Verify: %v", r.err)
	}
	if string(r.body) != string(record) {
		t.Errorf("body = %s, want the payload as it is", r.body)
	}
	for name, want := range map[string]string{
		"Content-Type":            "application/json",
		webhook.HeaderDelivery:    "delivery-1",
		webhook.HeaderEvent:       gateway.EventCaseRecord,
		webhook.HeaderTimestamp:   strconv.FormatInt(clock.Unix(), 10),
		webhook.HeaderTaskVersion: strconv.Itoa(event.TaskVersion),
	} {
		if v := r.header.Get(name); v != want {
			t.Errorf("%s = %q, want %q", name, v, want)
		}
	}
	if sig := r.header.Get(webhook.HeaderSignature); !strings.HasPrefix(sig, "sha256=") || len(sig) != len("sha256=")+64 {
		t.Errorf("signature = %q, want sha256= and 64 hex digits", sig)
	}
}

func TestVerify(t *testing.T) {
	ts := strconv.FormatInt(clock.Unix(), 10)
	sig := webhook.Sign(secret, ts, record)
	tampered := []byte(strings.Replace(string(record), nhsNumber, "9434765870", 1))
	tests := []struct {
		name      string
		secret    []byte
		timestamp string
		signature string
		body      []byte
		now       time.Time
		want      error
	}{
		{name: "accepted: as signed", secret: secret, timestamp: ts, signature: sig, body: record, now: clock},
		{name: "accepted: receiver's clock 59s ahead", secret: secret, timestamp: ts, signature: sig, body: record, now: clock.Add(59 * time.Second)},
		{name: "accepted: receiver's clock 59s behind", secret: secret, timestamp: ts, signature: sig, body: record, now: clock.Add(-59 * time.Second)},
		{name: "refused: tampered body", secret: secret, timestamp: ts, signature: sig, body: tampered, now: clock, want: webhook.ErrSignature},
		{name: "refused: wrong secret", secret: []byte("another secret"), timestamp: ts, signature: sig, body: record, now: clock, want: webhook.ErrSignature},
		{name: "refused: timestamp changed", secret: secret, timestamp: strconv.FormatInt(clock.Unix()+1, 10), signature: sig, body: record, now: clock, want: webhook.ErrSignature},
		{name: "refused: old timestamp (replay)", secret: secret, timestamp: ts, signature: sig, body: record, now: clock.Add(2 * time.Minute), want: webhook.ErrStale},
		{name: "refused: timestamp from the future", secret: secret, timestamp: ts, signature: sig, body: record, now: clock.Add(-2 * time.Minute), want: webhook.ErrStale},
		{name: "refused: no sha256= prefix", secret: secret, timestamp: ts, signature: strings.TrimPrefix(sig, "sha256="), body: record, now: clock, want: webhook.ErrMalformed},
		{name: "refused: not hex", secret: secret, timestamp: ts, signature: "sha256=" + strings.Repeat("zz", 32), body: record, now: clock, want: webhook.ErrMalformed},
		{name: "refused: short signature", secret: secret, timestamp: ts, signature: sig[:len(sig)-2], body: record, now: clock, want: webhook.ErrMalformed},
		{name: "refused: empty signature", secret: secret, timestamp: ts, signature: "", body: record, now: clock, want: webhook.ErrMalformed},
		{name: "refused: timestamp not a number", secret: secret, timestamp: "yesterday", signature: sig, body: record, now: clock, want: webhook.ErrMalformed},
		{name: "refused: timestamp in milliseconds", secret: secret, timestamp: ts + "000", signature: sig, body: record, now: clock, want: webhook.ErrStale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := webhook.Verify(tt.secret, tt.timestamp, tt.signature, tt.body, tt.now, time.Minute)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("refused: no secret", func(t *testing.T) {
		if err := webhook.Verify(nil, ts, webhook.Sign(nil, ts, record), record, clock, time.Minute); err == nil {
			t.Error("Verify with no secret passed")
		}
	})
}

// TestReceiverRefusesForgery sends what a forger could: the receiver's
// Verify refuses it, and the delivery fails.
func TestReceiverRefusesForgery(t *testing.T) {
	srv, got := receiver(t, http.StatusOK, "")
	forger := adapter(t, webhook.Config{URL: srv.URL, Secret: []byte("not the provider's secret")})
	err := forger.Deliver(context.Background(), event)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("Deliver = %v, want the receiver's 401", err)
	}
	if r := <-got; !errors.Is(r.err, webhook.ErrSignature) {
		t.Errorf("the receiver's Verify = %v, want ErrSignature", r.err)
	}
	// A delivery signed long ago, replayed now, is refused too.
	late := adapter(t, webhook.Config{URL: srv.URL, Now: func() time.Time { return clock.Add(-time.Hour) }})
	if err := late.Deliver(context.Background(), event); err == nil {
		t.Error("a stale delivery was accepted")
	}
	if r := <-got; !errors.Is(r.err, webhook.ErrStale) {
		t.Errorf("the receiver's Verify = %v, want ErrStale", r.err)
	}
}

func TestDeliverFailures(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		answer    string
		permanent bool
		says      string // in the error
	}{
		{name: "500 is retried", status: 500, answer: "database down", says: `500 Internal Server Error: "database down"`},
		{name: "503 is retried", status: 503, says: "503 Service Unavailable"},
		{name: "400 is retried", status: 400, answer: "bad", says: "400 Bad Request"},
		{name: "404 is retried", status: 404, says: "404 Not Found"},
		{name: "302 is not followed", status: 302, says: "302 Found"},
		{name: "410 is permanent", status: 410, permanent: true, says: "410 Gone"},
		{name: "an echo of the payload is not quoted", status: 500, answer: "cannot store " + string(record), says: "500 Internal Server Error"},
		{name: "an echo of one value is not quoted", status: 422, answer: "unknown patient smith", says: "422 Unprocessable Entity"},
		{name: "a long answer is cut short", status: 500, answer: strings.Repeat("stack frame ", 1000), says: "500 Internal Server Error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := receiver(t, tt.status, tt.answer)
			err := adapter(t, webhook.Config{URL: srv.URL}).Deliver(context.Background(), event)
			adaptertest.WantFailure(t, err, tt.permanent, tt.says, nhsNumber)
			if err == nil {
				return
			}
			if msg := err.Error(); strings.Contains(strings.ToLower(msg), "smith") || len(msg) > 300 {
				t.Errorf("error %q (%d bytes) holds patient data or is too long", msg, len(msg))
			}
		})
	}
}

func TestDeliverTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	a := adapter(t, webhook.Config{URL: adaptertest.Stalling(t).URL, Timeout: timeout})
	adaptertest.WantTimeout(t, timeout, func() error { return a.Deliver(context.Background(), event) })
}

func TestDeliverNetworkError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/cases?token=a-query-secret"
	srv.Close() // nothing listens there now
	err := adapter(t, webhook.Config{URL: url}).Deliver(context.Background(), event)
	adaptertest.WantRetry(t, err, "a-query-secret")
	if err != nil && !strings.HasPrefix(err.Error(), "webhook.Deliver: POST http://") {
		t.Errorf("error %q does not say which call failed", err)
	}
}

func TestDeliverRefusesNonJSON(t *testing.T) {
	srv, got := receiver(t, http.StatusOK, "")
	a := adapter(t, webhook.Config{URL: srv.URL})
	for _, payload := range []string{"", "not json " + nhsNumber, `{"nhs_number":"` + nhsNumber + `"`} {
		e := event
		e.Payload = []byte(payload)
		adaptertest.WantPermanent(t, a.Deliver(context.Background(), e), nhsNumber)
	}
	if len(got) != 0 {
		t.Error("a payload that is not JSON was sent")
	}
}

func TestNewRefuses(t *testing.T) {
	tests := []struct {
		name string
		cfg  webhook.Config
	}{
		{name: "refused: no URL", cfg: webhook.Config{Secret: secret}},
		{name: "refused: relative URL", cfg: webhook.Config{URL: "/cases", Secret: secret}},
		{name: "refused: ftp URL", cfg: webhook.Config{URL: "ftp://provider.example/cases", Secret: secret}},
		{name: "refused: no host", cfg: webhook.Config{URL: "https:///cases", Secret: secret}},
		{name: "refused: a port without a host", cfg: webhook.Config{URL: "https://:8443/cases", Secret: secret}},
		{name: "refused: no secret", cfg: webhook.Config{URL: "https://provider.example/cases"}},
		{name: "refused: empty secret", cfg: webhook.Config{URL: "https://provider.example/cases", Secret: []byte{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if a, err := webhook.New(tt.cfg); err == nil || a != nil {
				t.Errorf("New = %v, %v; want an error", a, err)
			}
		})
	}
	if _, err := webhook.New(webhook.Config{URL: "https://provider.example/cases", Secret: secret}); err != nil {
		t.Errorf("New with a URL and secret: %v", err)
	}
}
