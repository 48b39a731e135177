package fhir_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// scDeliverer is a Deliverer from a function.
type scDeliverer func(ctx context.Context, e gateway.OutboxEvent) error

func (f scDeliverer) Deliver(ctx context.Context, e gateway.OutboxEvent) error { return f(ctx, e) }

// scRecorder delivers with fail's answer and remembers what it was given.
type scRecorder struct {
	mu   sync.Mutex
	fail error
	seen []gateway.OutboxEvent
}

func (r *scRecorder) Deliver(_ context.Context, e gateway.OutboxEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, e)
	return r.fail
}

// scRunWorker runs one round of an outbox worker over the gateway's store
// that delivers every destination through d and keeps Subscriptions'
// status, and returns how many events it claimed.
func scRunWorker(t testing.TB, g *testGateway, d gateway.Deliverer) int {
	t.Helper()
	w, err := gateway.NewWorker(gateway.WorkerConfig{
		Outbox:     g.store,
		Deliverers: map[string]gateway.Deliverer{"provider": d, "subscription": d},
		// A moment ahead, so that events enqueued this microsecond are due.
		Now:      func() time.Time { return time.Now().Add(time.Second) },
		OnResult: g.svc.DeliveryResult,
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := w.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// scOutboxView is the operator's view of the outbox.
type scOutboxView struct {
	Depth  map[string]int   `json:"depth"`
	Events []map[string]any `json:"events"`
	raw    []byte
}

// scListOutbox lists the outbox as the operator; it must answer 200.
func scListOutbox(t testing.TB, g *testGateway, query string) scOutboxView {
	t.Helper()
	r := g.get("/api/v1/outbox"+query, keyAdmin)
	if r.status != http.StatusOK {
		t.Fatalf("outbox%s: %d %s", query, r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("outbox%s: Content-Type %q", query, ct)
	}
	// A payload (a FHIR resource, a case record) would bring its
	// resourceType or its fields with it.
	if strings.Contains(string(r.body), "resourceType") || strings.Contains(string(r.body), "NHS_NO") {
		t.Errorf("outbox%s: a payload in the listing: %s", query, r.body)
	}
	m := r.json(t)
	v := scOutboxView{raw: r.body, Depth: map[string]int{}}
	depth, ok := m["depth"].(map[string]any)
	if !ok {
		t.Fatalf("outbox%s: no depth: %s", query, r.body)
	}
	for k, n := range depth {
		v.Depth[k] = int(n.(float64))
	}
	list, ok := m["events"].([]any)
	if !ok {
		t.Fatalf("outbox%s: events is not a list: %s", query, r.body)
	}
	for _, e := range list {
		v.Events = append(v.Events, e.(map[string]any))
	}
	return v
}

// scEventIDs returns the ids of listed events.
func scEventIDs(events []map[string]any) []string {
	var out []string
	for _, e := range events {
		out = append(out, str(e, "id"))
	}
	return out
}

// scNoPatientData checks that a listing holds no payload and none of the
// fixture patient's details.
func scNoPatientData(t testing.TB, what string, body []byte) {
	t.Helper()
	// The birth date in either format (the year alone could be part of an
	// event id).
	for _, secret := range []string{"9434765919", "Irene", "Testpatient", "07700 900123", "NE4 5XX", "1961-04-17", "17/04/1961",
		"payload", "Prefers a phone call"} {
		if i := strings.Index(string(body), secret); i >= 0 {
			t.Errorf("%s: the listing holds %q: …%s…", what, secret, body[max(0, i-200):min(len(body), i+200)])
		}
	}
}

// TestOutboxAdmin: the operator lists deliveries by status, without their
// payloads, and redrives dead letters; nobody else may do either.
func TestOutboxAdmin(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine, scWithCases(nil, "PRV01"))

		// An empty outbox.
		v := scListOutbox(t, g, "")
		if len(v.Events) != 0 || v.Depth["pending"] != 0 || v.Depth["delivered"] != 0 || v.Depth["dead"] != 0 || len(v.Depth) != 3 {
			t.Errorf("empty outbox: %s", v.raw)
		}

		// A case record for PRV01 (pushed) and a Task for A81001's
		// Subscription, both holding patient data.
		sub := scSubscribe(t, g, keyA81001, scSubscription(t, nil))
		ref := newReferral(t, g, "OUT-1")
		g.mustChange(t, ref.task, keyPRV01, setStatus("accepted"))
		stored := scOutbox(t, g, gateway.OutboxPending)
		if len(stored) != 2 || stored[0].Destination != "provider:PRV01" || stored[1].Destination != "subscription:"+sub {
			t.Fatalf("stored events: %+v", stored)
		}
		if !strings.Contains(string(stored[0].Payload), "9434765919") || !strings.Contains(string(stored[0].Payload), "Testpatient") ||
			!strings.Contains(string(stored[1].Payload), `"resourceType":"Task"`) {
			t.Fatalf("the payloads are not what the test needs: %s / %s", stored[0].Payload, stored[1].Payload)
		}

		// Pending: both, oldest first, as metadata only.
		v = scListOutbox(t, g, "?status=pending")
		scNoPatientData(t, "pending", v.raw)
		if fmt.Sprint(scEventIDs(v.Events)) != fmt.Sprint([]string{stored[0].ID, stored[1].ID}) || v.Depth["pending"] != 2 || v.Depth["dead"] != 0 {
			t.Fatalf("pending: %s", v.raw)
		}
		allowed := []string{"id", "seq", "destination", "kind", "task", "task_version", "status", "attempts", "last_error",
			"created_at", "next_attempt_at", "delivered_at"}
		for i, e := range v.Events {
			for k := range e {
				if !slices.Contains(allowed, k) {
					t.Errorf("pending event %d has %q: %v", i, k, e)
				}
			}
			if e["status"] != "pending" || e["attempts"].(float64) != 0 || str(e, "task") != ref.task || str(e, "created_at") == "" ||
				str(e, "next_attempt_at") == "" || e["seq"].(float64) != float64(stored[i].Seq) {
				t.Errorf("pending event %d: %v", i, e)
			}
			if _, ok := e["delivered_at"]; ok {
				t.Errorf("pending event %d has delivered_at: %v", i, e)
			}
		}
		if v.Events[0]["kind"] != "case-record" || v.Events[0]["task_version"].(float64) != 1 ||
			v.Events[1]["kind"] != "task" || v.Events[1]["task_version"].(float64) != 2 {
			t.Errorf("pending events: %s", v.raw)
		}
		// The default is the dead letters: none yet.
		if v := scListOutbox(t, g, ""); len(v.Events) != 0 || v.Depth["pending"] != 2 {
			t.Errorf("default listing: %s", v.raw)
		}

		// The adapters refuse for good: both are dead letters at once, and
		// the Subscription is in error.
		gone := scDeliverer(func(context.Context, gateway.OutboxEvent) error {
			return &gateway.PermanentError{Err: errors.New("endpoint answered 410 Gone")}
		})
		if n := scRunWorker(t, g, gone); n != 2 {
			t.Fatalf("worker claimed %d", n)
		}
		dead := scListOutbox(t, g, "")
		scNoPatientData(t, "dead", dead.raw)
		if fmt.Sprint(scEventIDs(dead.Events)) != fmt.Sprint([]string{stored[0].ID, stored[1].ID}) ||
			dead.Depth["dead"] != 2 || dead.Depth["pending"] != 0 || dead.Depth["delivered"] != 0 {
			t.Fatalf("dead letters: %s", dead.raw)
		}
		for _, e := range dead.Events {
			if e["status"] != "dead" || e["attempts"].(float64) != 1 || str(e, "last_error") != "endpoint answered 410 Gone" {
				t.Errorf("dead letter %v", e)
			}
		}
		if v := scListOutbox(t, g, "?status=dead"); string(v.raw) != string(dead.raw) {
			t.Errorf("?status=dead differs from the default:\n%s\n%s", v.raw, dead.raw)
		}
		if v := scListOutbox(t, g, "?status=pending"); len(v.Events) != 0 {
			t.Errorf("pending after dead-lettering: %s", v.raw)
		}
		if v := scListOutbox(t, g, "?status=delivered"); len(v.Events) != 0 {
			t.Errorf("delivered: %s", v.raw)
		}
		if v := scListOutbox(t, g, "?limit=1"); fmt.Sprint(scEventIDs(v.Events)) != fmt.Sprint([]string{stored[0].ID}) || v.Depth["dead"] != 2 {
			t.Errorf("limit=1: %s", v.raw)
		}
		if s, _ := g.read(t, "/fhir/Subscription/"+sub, keyA81001); s["status"] != "error" || !strings.Contains(str(s, "error"), "410 Gone") {
			t.Errorf("Subscription after a dead letter: %v %v", s["status"], s["error"])
		}

		// Only operators see or redrive the outbox.
		for _, who := range []struct {
			name, key string
			status    int
		}{
			{"practice", keyA81001, http.StatusForbidden},
			{"provider", keyPRV01, http.StatusForbidden},
			{"no key", "", http.StatusUnauthorized},
		} {
			for _, q := range []string{"", "?status=pending", "?status=bogus", "?limit=ten", "?limit=0"} {
				r := g.get("/api/v1/outbox"+q, who.key)
				scRefused(t, who.name+" lists"+q, r, who.status, "")
				scNoPatientData(t, who.name+" lists"+q, r.body)
			}
			scRefused(t, who.name+" redrives", g.post("/api/v1/outbox/"+stored[0].ID+"/redrive", who.key, nil), who.status, "")
		}
		if v := scListOutbox(t, g, ""); len(v.Events) != 2 {
			t.Fatalf("refused redrives changed the dead letters: %s", v.raw)
		}

		// Bad parameters: 400 with the problem.
		for _, c := range []struct {
			query, expr string
		}{
			{"?status=bogus", "status"},
			{"?status=", "status"},
			{"?status=DEAD", "status"},
			{"?status=dead,pending", "status"},
			{"?limit=0", ""},
			{"?limit=-5", ""},
			{"?limit=ten", ""},
		} {
			r := g.get("/api/v1/outbox"+c.query, keyAdmin)
			scRefused(t, "outbox"+c.query, r, http.StatusBadRequest, c.expr)
			if r.status == http.StatusBadRequest && scIssueText(t, r) == "" {
				t.Errorf("outbox%s: no diagnostics: %s", c.query, r.body)
			}
		}

		// Redrive the Subscription's dead letter: 204, pending again, due
		// now, its attempts and error cleared.
		r := g.post("/api/v1/outbox/"+stored[1].ID+"/redrive", keyAdmin, nil)
		if r.status != http.StatusNoContent || len(r.body) != 0 {
			t.Fatalf("redrive: %d %s", r.status, r.body)
		}
		pending := scListOutbox(t, g, "?status=pending")
		if len(pending.Events) != 1 || str(pending.Events[0], "id") != stored[1].ID || pending.Events[0]["attempts"].(float64) != 0 ||
			pending.Events[0]["status"] != "pending" || pending.Depth["pending"] != 1 || pending.Depth["dead"] != 1 {
			t.Fatalf("after redrive: %s", pending.raw)
		}
		if _, ok := pending.Events[0]["last_error"]; ok {
			t.Errorf("redriven event keeps its error: %v", pending.Events[0])
		}
		if v := scListOutbox(t, g, ""); fmt.Sprint(scEventIDs(v.Events)) != fmt.Sprint([]string{stored[0].ID}) {
			t.Errorf("dead letters after redrive: %s", v.raw)
		}
		// A pending event, an unknown one, or the same again: 404.
		for _, c := range []struct{ name, id string }{
			{"redrive again (pending)", stored[1].ID},
			{"unknown id", "00000000-0000-4000-8000-000000000000"},
			{"not an id", "no-such-event"},
		} {
			scRefused(t, c.name, g.post("/api/v1/outbox/"+c.id+"/redrive", keyAdmin, nil), http.StatusNotFound, "")
		}

		// The redriven event is delivered; the Subscription is active again.
		rec := &scRecorder{}
		if n := scRunWorker(t, g, rec); n != 1 || len(rec.seen) != 1 || rec.seen[0].ID != stored[1].ID ||
			string(rec.seen[0].Payload) != string(stored[1].Payload) {
			t.Fatalf("worker after redrive: claimed %d, delivered %+v", n, rec.seen)
		}
		delivered := scListOutbox(t, g, "?status=delivered")
		scNoPatientData(t, "delivered", delivered.raw)
		if len(delivered.Events) != 1 || str(delivered.Events[0], "id") != stored[1].ID || str(delivered.Events[0], "delivered_at") == "" ||
			delivered.Events[0]["attempts"].(float64) != 1 || delivered.Depth["delivered"] != 1 || delivered.Depth["pending"] != 0 {
			t.Errorf("delivered: %s", delivered.raw)
		}
		if s, _ := g.read(t, "/fhir/Subscription/"+sub, keyA81001); s["status"] != "active" {
			t.Errorf("Subscription after a delivery: %v %v", s["status"], s["error"])
		}
		// A delivered event is not redriven.
		scRefused(t, "redrive a delivered event", g.post("/api/v1/outbox/"+stored[1].ID+"/redrive", keyAdmin, nil), http.StatusNotFound, "")
	})
}

// TestOutboxAdminLimit: the listing takes 100 by default and at most 1000,
// whatever limit asks.
func TestOutboxAdminLimit(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		ctx := context.Background()
		const n = 1003
		events := make([]gateway.OutboxEvent, n)
		for i := range events {
			events[i] = gateway.OutboxEvent{ID: gateway.NewUUID(), Destination: gateway.ProviderDestination("PRV01"),
				Kind: gateway.EventCaseRecord, OrderKey: fmt.Sprintf("task-%d", i), TaskVersion: 1,
				Payload: []byte(`{"NHS_NO":"9434765919","FAMILY_NAME":"Testpatient"}`)}
		}
		if err := g.store.Update(ctx, func(tx gateway.Tx) error { return tx.Enqueue(ctx, events...) }); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			query string
			want  int
		}{
			{"?status=pending", 100},
			{"?status=pending&limit=1", 1},
			{"?status=pending&limit=999", 999},
			{"?status=pending&limit=1000", 1000},
			{"?status=pending&limit=1001", 1000},
			{"?status=pending&limit=5000", 1000},
			{"?status=pending&limit=2147483648", 1000},
			{"", 0},
		} {
			v := scListOutbox(t, g, c.query)
			if len(v.Events) != c.want || v.Depth["pending"] != n {
				t.Errorf("%s: %d events (depth %v), want %d", c.query, len(v.Events), v.Depth, c.want)
			}
			if len(v.Events) > 0 && (str(v.Events[0], "id") != events[0].ID || str(v.Events[len(v.Events)-1], "id") != events[len(v.Events)-1].ID) {
				t.Errorf("%s: not the oldest first", c.query)
			}
			if c.want > 0 {
				scNoPatientData(t, c.query, v.raw)
			}
		}
	})
}
