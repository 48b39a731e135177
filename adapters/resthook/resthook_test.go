package resthook_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spgateway/spgateway/adapters/internal/adaptertest"
	"github.com/spgateway/spgateway/adapters/resthook"
	"github.com/spgateway/spgateway/gateway"
)

// The adapter is the worker's Deliverer for subscriptions, and the
// Service is where it finds them.
var (
	_ gateway.Deliverer = (*resthook.Adapter)(nil)
	_ resthook.Channels = (*gateway.Service)(nil)
)

const nhsNumber = "9434765919"

var task = []byte(`{"resourceType":"Task","id":"task-1","status":"accepted","intent":"order",` +
	`"for":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"` + nhsNumber + `"},"display":"Jane Smith"}}`)

// channels is a fake Channels: a Subscription's channel, or an error.
type channels struct {
	ch      map[string]gateway.SubscriptionChannel
	err     error
	lookups int
}

func (c *channels) SubscriptionChannel(_ context.Context, id string) (gateway.SubscriptionChannel, error) {
	c.lookups++
	if c.err != nil {
		return gateway.SubscriptionChannel{}, c.err
	}
	ch, ok := c.ch[id]
	if !ok {
		return ch, gateway.ErrDiscard
	}
	return ch, nil
}

func event(payload []byte) gateway.OutboxEvent {
	return gateway.OutboxEvent{ID: "delivery-1", Destination: gateway.SubscriptionDestination("sub-1"), Kind: gateway.EventTask,
		OrderKey: "task-1", TaskVersion: 3, Payload: payload}
}

func adapter(t *testing.T, c resthook.Channels, timeout time.Duration) *resthook.Adapter {
	t.Helper()
	// The test endpoints are plain http on the loopback address.
	a, err := resthook.New(resthook.Config{Channels: c, Timeout: timeout,
		Endpoints: gateway.EndpointPolicy{AllowHTTP: true, AllowPrivate: true}})
	if err != nil {
		t.Fatalf("resthook.New: %v", err)
	}
	return a
}

func TestDeliverNotification(t *testing.T) {
	// R4 rest-hook: an empty notification is a POST to the endpoint; with a
	// payload, the endpoint is a FHIR base and the Task is PUT there.
	tests := []struct {
		name        string
		channelType string // the Subscription's payload
		payload     []byte // the event's
		wantBody    []byte
		wantType    string
		wantMethod  string
		wantPath    string
	}{
		{name: "the Task, as FHIR JSON", channelType: "application/fhir+json", payload: task, wantBody: task, wantType: "application/fhir+json",
			wantMethod: http.MethodPut, wantPath: "/hooks/tasks/Task/task-1"},
		{name: "the Task, as JSON", channelType: "application/json", payload: task, wantBody: task, wantType: "application/json",
			wantMethod: http.MethodPut, wantPath: "/hooks/tasks/Task/task-1"},
		{name: "an empty notification", channelType: "", payload: nil, wantMethod: http.MethodPost, wantPath: "/hooks/tasks"},
		{name: "an empty notification, though the event has the Task", channelType: "", payload: task, wantMethod: http.MethodPost, wantPath: "/hooks/tasks"},
		{name: "an empty notification, the event having nothing", channelType: "application/fhir+json", payload: nil, wantMethod: http.MethodPost, wantPath: "/hooks/tasks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, got := adaptertest.Receiver(t, http.StatusOK, "")
			c := &channels{ch: map[string]gateway.SubscriptionChannel{"sub-1": {ID: "sub-1", Status: gateway.SubscriptionActive,
				Endpoint: srv.URL + "/hooks/tasks?practice=A81001", Payload: tt.channelType,
				Headers: []string{"Authorization: Bearer practice-token", "X-Practice:  A81001 ", "X-Spgateway-Delivery: forged", "Content-Type: text/plain"}}}}
			if err := adapter(t, c, 0).Deliver(context.Background(), event(tt.payload)); err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			r := <-got
			if r.Method != tt.wantMethod || r.Path != tt.wantPath || r.Query != "practice=A81001" {
				t.Errorf("%s %s?%s, want %s %s?practice=A81001", r.Method, r.Path, r.Query, tt.wantMethod, tt.wantPath)
			}
			if string(r.Body) != string(tt.wantBody) || r.Length != int64(len(tt.wantBody)) {
				t.Errorf("body = %q (Content-Length %d), want %q", r.Body, r.Length, tt.wantBody)
			}
			for name, want := range map[string]string{
				"Content-Type":             tt.wantType,
				"Authorization":            "Bearer practice-token",
				"X-Practice":               "A81001",
				resthook.HeaderDelivery:    "delivery-1",
				resthook.HeaderTaskVersion: "3",
			} {
				if v := r.Header.Values(name); want == "" && len(v) != 0 || want != "" && (len(v) != 1 || v[0] != want) {
					t.Errorf("%s = %q, want %q", name, v, want)
				}
			}
		})
	}
}

func TestDeliverDiscards(t *testing.T) {
	srv, got := adaptertest.Receiver(t, http.StatusOK, "")
	for name, c := range map[string]*channels{
		"deleted": {err: gateway.ErrDiscard},
		"unknown": {ch: map[string]gateway.SubscriptionChannel{}},
		"off":     {ch: map[string]gateway.SubscriptionChannel{"sub-1": {ID: "sub-1", Status: gateway.SubscriptionOff, Endpoint: srv.URL}}},
	} {
		t.Run(name, func(t *testing.T) {
			if err := adapter(t, c, 0).Deliver(context.Background(), event(task)); err != gateway.ErrDiscard {
				t.Errorf("Deliver = %v, want gateway.ErrDiscard as it is", err)
			}
		})
	}
	if len(got) != 0 {
		t.Error("a discarded event was delivered")
	}
}

func TestDeliverFailures(t *testing.T) {
	const token = "practice-token"
	tests := []struct {
		name      string
		status    int
		answer    string
		permanent bool
		says      string
	}{
		{name: "410 is permanent", status: 410, permanent: true, says: "410 Gone"},
		{name: "500 is retried", status: 500, answer: "queue full", says: `500 Internal Server Error: "queue full"`},
		{name: "401 is retried", status: 401, says: "401 Unauthorized"},
		{name: "404 is retried", status: 404, says: "404 Not Found"},
		{name: "301 is not followed", status: 301, says: "301 Moved Permanently"},
		{name: "an echo of the Task is not quoted", status: 400, answer: "rejected: " + string(task), says: "400 Bad Request"},
		{name: "a patient's name is not quoted", status: 422, answer: "who is Jane Smith?", says: "422 Unprocessable Entity"},
		{name: "an NHS number is not quoted", status: 422, answer: "unknown patient 943 476 5919", says: "422 Unprocessable Entity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := adaptertest.Receiver(t, tt.status, tt.answer)
			c := &channels{ch: map[string]gateway.SubscriptionChannel{"sub-1": {ID: "sub-1", Status: gateway.SubscriptionActive,
				Endpoint: srv.URL + "/hook?key=" + token, Payload: "application/fhir+json", Headers: []string{"Authorization: Bearer " + token}}}}
			err := adapter(t, c, 0).Deliver(context.Background(), event(task))
			adaptertest.WantFailure(t, err, tt.permanent, tt.says, nhsNumber, "Smith", token)
			// Nor a part of the NHS number, looked for outside the
			// receiver's address (a random port, any digits).
			if err != nil && strings.Contains(strings.ReplaceAll(err.Error(), srv.URL, "<receiver>"), "5919") {
				t.Errorf("error %q holds %q", err, "5919")
			}
		})
	}
}

func TestDeliverRefuses(t *testing.T) {
	const token = "practice-token"
	active := func(endpoint string, headers ...string) *channels {
		return &channels{ch: map[string]gateway.SubscriptionChannel{"sub-1": {ID: "sub-1", Status: gateway.SubscriptionActive,
			Endpoint: endpoint, Payload: "application/fhir+json", Headers: headers}}}
	}
	srv, got := adaptertest.Receiver(t, http.StatusOK, "")
	tests := []struct {
		name     string
		channels *channels
		dest     string
	}{
		{name: "refused: a provider destination", channels: active(srv.URL), dest: gateway.ProviderDestination("P1")},
		{name: "refused: no Subscription id", channels: active(srv.URL), dest: "subscription:"},
		{name: "refused: a relative endpoint", channels: active("/hook")},
		{name: "refused: an ftp endpoint", channels: active("ftp://practice.example/hook")},
		{name: "refused: a header without a colon", channels: active(srv.URL, "Authorization Bearer "+token)},
		{name: "refused: a header without a name", channels: active(srv.URL, ": "+token)},
		{name: "refused: a header name with a space", channels: active(srv.URL, "X Key: "+token)},
		{name: "refused: a header adding a line", channels: active(srv.URL, "X-Key: "+token+"\r\nX-Other: 1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := event(task)
			if tt.dest != "" {
				e.Destination = tt.dest
			}
			adaptertest.WantPermanent(t, adapter(t, tt.channels, 0).Deliver(context.Background(), e), token)
		})
	}
	if len(got) != 0 {
		t.Error("a refused event was delivered")
	}
}

func TestDeliverLookupFails(t *testing.T) {
	c := &channels{err: errors.New("database is locked")}
	err := adapter(t, c, 0).Deliver(context.Background(), event(task))
	adaptertest.WantRetry(t, err)
	if errors.Is(err, gateway.ErrDiscard) || err != nil && !strings.Contains(err.Error(), "SubscriptionChannel sub-1: database is locked") {
		t.Errorf("Deliver = %v, want the lookup's error to retry", err)
	}
}

func TestDeliverTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	c := &channels{ch: map[string]gateway.SubscriptionChannel{"sub-1": {ID: "sub-1", Status: gateway.SubscriptionError, Endpoint: adaptertest.Stalling(t).URL}}}
	a := adapter(t, c, timeout)
	adaptertest.WantTimeout(t, timeout, func() error { return a.Deliver(context.Background(), event(nil)) })
}

func TestNewRefusesNoChannels(t *testing.T) {
	if a, err := resthook.New(resthook.Config{}); err == nil || a != nil {
		t.Errorf("New = %v, %v; want an error", a, err)
	}
}

// TestDeliverRefusesInternalEndpoints: under the production rule (the zero
// Endpoints) a Subscription that points at the loopback address, a private
// network, the cloud metadata address or plain http (one made under a
// looser rule, or a name resolving inside) is a permanent failure, and
// nothing reaches the address. With private addresses allowed, a name
// that resolves to loopback is delivered to: the check is where the
// connection is made.
func TestDeliverRefusesInternalEndpoints(t *testing.T) {
	srv, got := adaptertest.Receiver(t, http.StatusOK, "")
	port := srv.URL[strings.LastIndex(srv.URL, ":"):]
	for _, tt := range []struct {
		name     string
		policy   gateway.EndpointPolicy
		endpoint string
	}{
		{"loopback over http", gateway.EndpointPolicy{}, srv.URL + "/hooks"},
		{"loopback, http allowed", gateway.EndpointPolicy{AllowHTTP: true}, srv.URL + "/hooks"},
		{"localhost, http allowed", gateway.EndpointPolicy{AllowHTTP: true}, "http://localhost" + port + "/hooks"},
		{"localhost with a trailing dot, http allowed", gateway.EndpointPolicy{AllowHTTP: true}, "http://localhost." + port + "/hooks"},
		{"IPv4 loopback as IPv6", gateway.EndpointPolicy{AllowHTTP: true}, "http://[::ffff:127.0.0.1]" + port + "/hooks"},
		{"metadata", gateway.EndpointPolicy{}, "https://169.254.169.254/latest/meta-data/"},
		{"metadata, http allowed", gateway.EndpointPolicy{AllowHTTP: true}, "http://169.254.169.254/latest/meta-data/"},
		{"private network", gateway.EndpointPolicy{}, "https://10.0.0.1/hooks"},
		{"public name over plain http", gateway.EndpointPolicy{AllowPrivate: true}, "http://hooks.example.org/in"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &channels{ch: map[string]gateway.SubscriptionChannel{"sub-1": {ID: "sub-1", Status: gateway.SubscriptionActive,
				Endpoint: tt.endpoint, Payload: "application/fhir+json"}}}
			a, err := resthook.New(resthook.Config{Channels: c, Timeout: time.Second, Endpoints: tt.policy})
			if err != nil {
				t.Fatal(err)
			}
			err = a.Deliver(context.Background(), event(task))
			if !adaptertest.Permanent(err) || !errors.Is(err, gateway.ErrEndpointRefused) {
				t.Errorf("Deliver = %v, want a permanent refusal", err)
			}
			if err != nil && strings.Contains(err.Error(), nhsNumber) {
				t.Errorf("the error holds patient data: %v", err)
			}
			select {
			case r := <-got:
				t.Errorf("the endpoint got %s %s", r.Method, r.Path)
			default:
			}
		})
	}
	// Allowed, the same loopback endpoint by a name is reached.
	c := &channels{ch: map[string]gateway.SubscriptionChannel{"sub-1": {ID: "sub-1", Status: gateway.SubscriptionActive,
		Endpoint: "http://localhost" + port + "/hooks", Payload: "application/fhir+json"}}}
	a, err := resthook.New(resthook.Config{Channels: c, Timeout: 5 * time.Second,
		Endpoints: gateway.EndpointPolicy{AllowHTTP: true, AllowPrivate: true}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Deliver(context.Background(), event(task)); err != nil {
		t.Fatalf("allowed: %v", err)
	}
	if r := <-got; r.Method != http.MethodPut || r.Path != "/hooks/Task/task-1" {
		t.Errorf("allowed: %s %s", r.Method, r.Path)
	}
}
