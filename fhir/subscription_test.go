package fhir_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// scSubscription is a Subscription as a practice sends it; edit changes it
// before it is encoded.
func scSubscription(t testing.TB, edit func(sub map[string]any)) []byte {
	t.Helper()
	sub := map[string]any{
		"resourceType": "Subscription",
		"status":       "requested",
		"reason":       "Hear of changes to our social prescribing referrals",
		"criteria":     "Task?requester=Organization/A81001",
		"channel": map[string]any{
			"type":     "rest-hook",
			"endpoint": "https://practice-a81001.example.org/fhir-hook",
			"payload":  "application/fhir+json",
			"header":   []any{"Authorization: Bearer practice-secret"},
		},
	}
	if edit != nil {
		edit(sub)
	}
	b, err := json.Marshal(sub)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// scChannel returns the channel of a Subscription document being edited.
func scChannel(sub map[string]any) map[string]any { return sub["channel"].(map[string]any) }

// scSubscribe creates a Subscription as key and returns its id.
func scSubscribe(t testing.TB, g *testGateway, key string, body []byte) string {
	t.Helper()
	r := g.post("/fhir/Subscription", key, body)
	if r.status != http.StatusCreated {
		t.Fatalf("subscribe: %d %s", r.status, r.body)
	}
	id := str(r.json(t), "id")
	if id == "" {
		t.Fatalf("subscribe: no id in %s", r.body)
	}
	return id
}

// scOutbox returns the events of a status in the store, oldest first.
func scOutbox(t testing.TB, g *testGateway, status string) []gateway.OutboxEvent {
	t.Helper()
	events, err := g.store.ListOutbox(context.Background(), status, 10000)
	if err != nil {
		t.Fatal(err)
	}
	return events
}

// scTo returns the events among events for destination.
func scTo(events []gateway.OutboxEvent, destination string) []gateway.OutboxEvent {
	var out []gateway.OutboxEvent
	for _, e := range events {
		if e.Destination == destination {
			out = append(out, e)
		}
	}
	return out
}

// scIssueText joins the diagnostics of an OperationOutcome's issues.
func scIssueText(t testing.TB, r response) string {
	t.Helper()
	var parts []string
	for _, is := range outcomeIssues(t, r) {
		parts = append(parts, str(is, "diagnostics"))
	}
	return strings.Join(parts, " | ")
}

// scRefused checks that r is an OperationOutcome with status want whose
// every issue is an error with diagnostics, one of them naming expr (when
// expr is not empty).
func scRefused(t testing.TB, what string, r response, want int, expr string) {
	t.Helper()
	if r.status != want {
		t.Errorf("%s: status %d, want %d: %s", what, r.status, want, r.body)
		return
	}
	issues := outcomeIssues(t, r)
	if len(issues) == 0 {
		t.Errorf("%s: an OperationOutcome without issues: %s", what, r.body)
		return
	}
	for _, is := range issues {
		if is["severity"] != "error" || str(is, "code") == "" {
			t.Errorf("%s: issue %v", what, is)
		}
	}
	if expr != "" && !names(t, r, expr) {
		t.Errorf("%s: no issue names %s: %s", what, expr, r.body)
	}
	if expr != "" && scIssueText(t, r) == "" {
		t.Errorf("%s: no diagnostics: %s", what, r.body)
	}
}

// TestSubscriptionCreateReadDelete: a practice subscribes to its own Tasks,
// reads its Subscription back, and deletes it; nobody else sees it.
func TestSubscriptionCreateReadDelete(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)

		r := g.post("/fhir/Subscription", keyA81001, scSubscription(t, nil))
		if r.status != http.StatusCreated {
			t.Fatalf("create: %d %s", r.status, r.body)
		}
		sub := r.json(t)
		id := str(sub, "id")
		if id == "" || sub["resourceType"] != "Subscription" {
			t.Fatalf("create: %s", r.body)
		}
		if loc := r.header.Get("Location"); loc != "/fhir/Subscription/"+id+"/_history/1" {
			t.Errorf("Location %q", loc)
		}
		if etag := r.header.Get("ETag"); etag != `W/"1"` {
			t.Errorf("ETag %q", etag)
		}
		// requested becomes active: the gateway takes it on at once.
		if sub["status"] != "active" || str(sub, "meta", "versionId") != "1" || str(sub, "meta", "lastUpdated") == "" {
			t.Errorf("created: %s", r.body)
		}
		if _, ok := sub["error"]; ok {
			t.Errorf("a new Subscription has an error: %s", r.body)
		}
		if sub["criteria"] != "Task?requester=Organization/A81001" || str(sub, "channel", "endpoint") != "https://practice-a81001.example.org/fhir-hook" ||
			str(sub, "channel", "payload") != "application/fhir+json" || str(sub, "channel", "header", 0) != "Authorization: Bearer practice-secret" {
			t.Errorf("created Subscription lost what was sent: %s", r.body)
		}

		// Read back by its owner, with the same version.
		got, v := g.read(t, "/fhir/Subscription/"+id, keyA81001)
		if v != 1 || got["status"] != "active" || str(got, "id") != id || got["criteria"] != sub["criteria"] {
			t.Errorf("read: version %d %v", v, got)
		}
		if r := g.get("/fhir/Subscription/"+id+"/_history/1", keyA81001); r.status != http.StatusOK || str(r.json(t), "status") != "active" {
			t.Errorf("vread: %d %s", r.status, r.body)
		}

		// The other practice does not know it; providers and operators may
		// not read Subscriptions at all.
		scRefused(t, "other practice reads", g.get("/fhir/Subscription/"+id, keyA81002), http.StatusNotFound, "")
		scRefused(t, "other practice vreads", g.get("/fhir/Subscription/"+id+"/_history/1", keyA81002), http.StatusNotFound, "")
		scRefused(t, "other practice reads the history", g.get("/fhir/Subscription/"+id+"/_history", keyA81002), http.StatusNotFound, "")
		// A Subscription is not updated in place (delete it and subscribe
		// again), nor searched.
		scRefused(t, "update", g.do(http.MethodPut, "/fhir/Subscription/"+id, keyA81001, scSubscription(t, nil)), http.StatusMethodNotAllowed, "")
		scRefused(t, "search", g.get("/fhir/Subscription", keyA81001), http.StatusMethodNotAllowed, "")
		scRefused(t, "provider reads", g.get("/fhir/Subscription/"+id, keyPRV01), http.StatusForbidden, "")
		scRefused(t, "admin reads", g.get("/fhir/Subscription/"+id, keyAdmin), http.StatusForbidden, "")
		scRefused(t, "no key", g.get("/fhir/Subscription/"+id, ""), http.StatusUnauthorized, "")
		scRefused(t, "unknown id", g.get("/fhir/Subscription/no-such-subscription", keyA81001), http.StatusNotFound, "")

		// Prefer: return=minimal answers 201 with the headers and no body.
		r = g.post("/fhir/Subscription", keyA81001, scSubscription(t, nil), "Prefer", "return=minimal")
		if r.status != http.StatusCreated || len(r.body) != 0 || !strings.HasPrefix(r.header.Get("Location"), "/fhir/Subscription/") {
			t.Errorf("return=minimal: %d %q %s", r.status, r.header.Get("Location"), r.body)
		}
		// The criteria may name the practice by its bare code too, and the
		// payload may be empty (a notification without content).
		bare := scSubscribe(t, g, keyA81001, scSubscription(t, func(s map[string]any) {
			s["criteria"] = "Task?requester=A81001"
			delete(scChannel(s), "payload")
			delete(s, "status")
		}))
		if got, _ := g.read(t, "/fhir/Subscription/"+bare, keyA81001); got["status"] != "active" || str(got, "channel", "payload") != "" {
			t.Errorf("empty payload: %v", got)
		}

		// Delete: only the owner; a provider may not; nobody else knows it.
		scRefused(t, "other practice deletes", g.do(http.MethodDelete, "/fhir/Subscription/"+id, keyA81002, nil), http.StatusNotFound, "")
		scRefused(t, "provider deletes", g.do(http.MethodDelete, "/fhir/Subscription/"+id, keyPRV01, nil), http.StatusForbidden, "")
		scRefused(t, "admin deletes", g.do(http.MethodDelete, "/fhir/Subscription/"+id, keyAdmin, nil), http.StatusForbidden, "")
		scRefused(t, "delete unknown", g.do(http.MethodDelete, "/fhir/Subscription/no-such-subscription", keyA81001, nil), http.StatusNotFound, "")
		if _, v := g.read(t, "/fhir/Subscription/"+id, keyA81001); v != 1 {
			t.Errorf("refused deletes wrote version %d", v)
		}
		r = g.do(http.MethodDelete, "/fhir/Subscription/"+id, keyA81001, nil)
		if r.status != http.StatusNoContent || len(r.body) != 0 {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
		// Gone for its owner, still unknown to the other practice.
		scRefused(t, "read after delete", g.get("/fhir/Subscription/"+id, keyA81001), http.StatusGone, "")
		scRefused(t, "other practice reads after delete", g.get("/fhir/Subscription/"+id, keyA81002), http.StatusNotFound, "")
		scRefused(t, "delete again", g.do(http.MethodDelete, "/fhir/Subscription/"+id, keyA81001, nil), http.StatusGone, "")
		// The other Subscriptions are untouched.
		if got, _ := g.read(t, "/fhir/Subscription/"+bare, keyA81001); got["status"] != "active" {
			t.Errorf("another Subscription after a delete: %v", got)
		}
		// Other types are not deleted.
		ref := newReferral(t, g, "SUB-DEL-1")
		scRefused(t, "delete a Task", g.do(http.MethodDelete, "/fhir/Task/"+ref.task, keyA81001, nil), http.StatusMethodNotAllowed, "")
		if _, v := g.read(t, "/fhir/Task/"+ref.task, keyA81001); v != 1 {
			t.Errorf("Task after a refused delete: version %d", v)
		}
	})
}

// TestSubscriptionRefused sends Subscriptions the gateway does not take:
// each is refused with a status and an OperationOutcome naming the element.
func TestSubscriptionRefused(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		criteria := func(c string) func(map[string]any) { return func(s map[string]any) { s["criteria"] = c } }
		channel := func(k string, v any) func(map[string]any) {
			return func(s map[string]any) {
				if v == nil {
					delete(scChannel(s), k)
				} else {
					scChannel(s)[k] = v
				}
			}
		}
		cases := []struct {
			name   string
			key    string
			edit   func(map[string]any)
			status int
			expr   string
		}{
			{"another practice's Tasks", keyA81001, criteria("Task?requester=Organization/A81002"), 422, "Subscription.criteria"},
			{"another practice's Tasks, bare code", keyA81001, criteria("Task?requester=A81002"), 422, "Subscription.criteria"},
			{"own criteria, other practice's key", keyA81002, nil, 422, "Subscription.criteria"},
			{"another resource type", keyA81001, criteria("ServiceRequest?requester=Organization/A81001"), 422, "Subscription.criteria"},
			{"another parameter", keyA81001, criteria("Task?owner=Organization/PRV01"), 422, "Subscription.criteria"},
			{"an extra parameter", keyA81001, criteria("Task?requester=Organization/A81001&status=completed"), 422, "Subscription.criteria"},
			{"all Tasks", keyA81001, criteria("Task"), 422, "Subscription.criteria"},
			{"empty criteria", keyA81001, criteria(""), 422, "Subscription.criteria"},
			{"no criteria", keyA81001, func(s map[string]any) { delete(s, "criteria") }, 422, "Subscription.criteria"},
			{"websocket channel", keyA81001, channel("type", "websocket"), 422, "Subscription.channel.type"},
			{"email channel", keyA81001, channel("type", "email"), 422, "Subscription.channel.type"},
			{"no endpoint", keyA81001, channel("endpoint", nil), 422, "Subscription.channel.endpoint"},
			{"relative endpoint", keyA81001, channel("endpoint", "/fhir-hook"), 422, "Subscription.channel.endpoint"},
			{"ftp endpoint", keyA81001, channel("endpoint", "ftp://practice-a81001.example.org/hook"), 422, "Subscription.channel.endpoint"},
			{"mailto endpoint", keyA81001, channel("endpoint", "mailto:hook@example.org"), 422, "Subscription.channel.endpoint"},
			{"XML payload", keyA81001, channel("payload", "application/fhir+xml"), 422, "Subscription.channel.payload"},
			{"text payload", keyA81001, channel("payload", "text/plain"), 422, "Subscription.channel.payload"},
			{"header without a name", keyA81001, channel("header", []any{"no colon here"}), 422, "Subscription.channel.header"},
			{"header name with a space", keyA81001, channel("header", []any{"X Key: v"}), 422, "Subscription.channel.header"},
			{"header with an empty name", keyA81001, channel("header", []any{": v"}), 422, "Subscription.channel.header"},
			{"header on two lines", keyA81001, channel("header", []any{"X-Key: v\r\nX-Other: w"}), 422, "Subscription.channel.header"},
			{"header with a NUL", keyA81001, channel("header", []any{"X-Key: v\u0000w"}), 422, "Subscription.channel.header"},
			{"status off", keyA81001, func(s map[string]any) { s["status"] = "off" }, 422, "Subscription.status"},
			{"status error", keyA81001, func(s map[string]any) { s["status"] = "error" }, 422, "Subscription.status"},
			{"provider", keyPRV01, nil, 403, ""},
			{"provider, own criteria", keyPRV01, criteria("Task?owner=Organization/PRV01"), 403, ""},
			{"admin", keyAdmin, nil, 403, ""},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				scRefused(t, c.name, g.post("/fhir/Subscription", c.key, scSubscription(t, c.edit)), c.status, c.expr)
			})
		}

		// Several problems at once: one issue for each.
		r := g.post("/fhir/Subscription", keyA81001, scSubscription(t, func(s map[string]any) {
			s["criteria"] = "Patient?general-practitioner=A81001"
			scChannel(s)["type"] = "message"
			scChannel(s)["payload"] = "application/xml"
			delete(scChannel(s), "endpoint")
		}))
		scRefused(t, "four problems", r, 422, "")
		for _, expr := range []string{"Subscription.criteria", "Subscription.channel.type", "Subscription.channel.endpoint", "Subscription.channel.payload"} {
			if !names(t, r, expr) {
				t.Errorf("four problems: no issue names %s: %s", expr, r.body)
			}
		}

		// Bodies that are not Subscriptions at all: 400.
		bad := []struct {
			name, body, expr string
		}{
			{"not JSON", `{"resourceType":"Subscription",`, ""},
			{"a Task", `{"resourceType":"Task","status":"requested","intent":"order"}`, "Subscription"},
			{"no resourceType", `{"criteria":"Task?requester=Organization/A81001"}`, "Subscription"},
			{"channel not an object", `{"resourceType":"Subscription","status":"requested","reason":"x","criteria":"Task?requester=Organization/A81001","channel":"rest-hook"}`,
				"Subscription.channel"},
			{"channel type not a FHIR code", `{"resourceType":"Subscription","status":"requested","reason":"x","criteria":"Task?requester=Organization/A81001",` +
				`"channel":{"type":"carrier-pigeon","endpoint":"https://practice-a81001.example.org/fhir-hook"}}`, "Subscription.channel.type"},
		}
		for _, b := range bad {
			scRefused(t, b.name, g.post("/fhir/Subscription", keyA81001, []byte(b.body)), http.StatusBadRequest, b.expr)
		}
		// Not FHIR JSON.
		r = g.post("/fhir/Subscription", keyA81001, scSubscription(t, nil), "Content-Type", "application/xml")
		scRefused(t, "XML content type", r, http.StatusUnsupportedMediaType, "")
		// No key.
		scRefused(t, "no key", g.post("/fhir/Subscription", "", scSubscription(t, nil)), http.StatusUnauthorized, "")

		// Nothing refused was stored: the practice's Subscriptions are all
		// ones it made, and none was made.
		events := scOutbox(t, g, gateway.OutboxPending)
		ref := newReferral(t, g, "SUB-REF-1")
		g.mustChange(t, ref.task, keyPRV01, setStatus("accepted"))
		if after := scOutbox(t, g, gateway.OutboxPending); len(after) != len(events) {
			t.Errorf("a refused Subscription hears of Task changes: %+v", after)
		}
	})
}

// TestSubscriptionNotified: a Task change by the provider enqueues one
// delivery per live Subscription of the practice, with the Task as the
// practice sees it (or nothing, for an empty payload); the practice's own
// changes, the other practice's Subscriptions and deleted Subscriptions
// get none.
func TestSubscriptionNotified(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		full := scSubscribe(t, g, keyA81001, scSubscription(t, nil))
		empty := scSubscribe(t, g, keyA81001, scSubscription(t, func(s map[string]any) { delete(scChannel(s), "payload") }))
		other := scSubscribe(t, g, keyA81002, scSubscription(t, func(s map[string]any) { s["criteria"] = "Task?requester=Organization/A81002" }))

		// The practice's own referral tells nobody.
		ref := newReferral(t, g, "SUB-N-1")
		if events := scOutbox(t, g, gateway.OutboxPending); len(events) != 0 {
			t.Fatalf("the practice hears of its own referral: %+v", events)
		}

		// The provider accepts: each of A81001's Subscriptions hears of it.
		g.mustChange(t, ref.task, keyPRV01, setStatus("accepted"))
		events := scOutbox(t, g, gateway.OutboxPending)
		if len(events) != 2 {
			t.Fatalf("%d events after the provider's change, want 2: %+v", len(events), events)
		}
		for _, sub := range []string{full, empty} {
			got := scTo(events, gateway.SubscriptionDestination(sub))
			if len(got) != 1 {
				t.Fatalf("%d events for subscription %s: %+v", len(got), sub, events)
			}
			e := got[0]
			if e.Destination != "subscription:"+sub || e.Kind != gateway.EventTask || e.OrderKey != ref.task || e.TaskVersion != 2 ||
				e.Status != gateway.OutboxPending || e.Attempts != 0 || e.ID == "" {
				t.Errorf("event %+v", e)
			}
		}
		if got := scTo(events, gateway.SubscriptionDestination(other)); len(got) != 0 {
			t.Errorf("the other practice's Subscription hears of A81001's Task: %+v", got)
		}
		// The full payload is the Task as the practice reads it.
		payload := scTo(events, gateway.SubscriptionDestination(full))[0].Payload
		task, _ := g.read(t, "/fhir/Task/"+ref.task, keyA81001)
		if b, _ := json.Marshal(task); !sameJSON(t, payload, b) {
			t.Errorf("payload is not the Task as the practice sees it:\n%s\n%s", payload, b)
		}
		if p := scTo(events, gateway.SubscriptionDestination(empty))[0].Payload; len(p) != 0 {
			t.Errorf("empty payload Subscription got %s", p)
		}
		// The operator's view shows the same deliveries.
		r := g.get("/api/v1/outbox?status=pending", keyAdmin)
		if r.status != http.StatusOK {
			t.Fatalf("outbox: %d %s", r.status, r.body)
		}
		var view struct {
			Events []struct {
				Destination string `json:"destination"`
				Task        string `json:"task"`
				TaskVersion int    `json:"task_version"`
			} `json:"events"`
		}
		if err := json.Unmarshal(r.body, &view); err != nil {
			t.Fatal(err)
		}
		if len(view.Events) != 2 || view.Events[0].Task != ref.task || view.Events[0].TaskVersion != 2 ||
			!strings.HasPrefix(view.Events[0].Destination, "subscription:") {
			t.Errorf("operator's view: %s", r.body)
		}

		// More changes by the provider: one more event each, in order.
		g.mustChange(t, ref.task, keyPRV01, func(task map[string]any) {
			task["status"] = "in-progress"
			task["businessStatus"] = coded(businessStatusSystem, "first-contact-made", "")
		})
		got := scTo(scOutbox(t, g, gateway.OutboxPending), gateway.SubscriptionDestination(full))
		if len(got) != 2 || got[1].TaskVersion != 3 || got[0].Seq >= got[1].Seq {
			t.Errorf("after a second change: %+v", got)
		}

		// The practice's own change (cancelling) tells none of its
		// Subscriptions.
		before := len(scOutbox(t, g, gateway.OutboxPending))
		g.mustChange(t, ref.task, keyA81001, setStatusWithReason("cancelled", "referred-elsewhere", ""))
		if after := scOutbox(t, g, gateway.OutboxPending); len(after) != before {
			t.Errorf("the practice's own change was notified: %+v", after[before:])
		}
		// Nor does revoking the referral.
		ref2 := newReferral(t, g, "SUB-N-2")
		sr, _ := g.read(t, "/fhir/ServiceRequest/"+ref2.request, keyA81001)
		sr["status"] = "entered-in-error"
		if r := g.put(t, "/fhir/ServiceRequest/"+ref2.request, keyA81001, 0, sr); r.status != http.StatusOK {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		if after := scOutbox(t, g, gateway.OutboxPending); len(after) != before {
			t.Errorf("the practice's own revocation was notified: %+v", after[before:])
		}

		// A deleted Subscription hears no more.
		if r := g.do(http.MethodDelete, "/fhir/Subscription/"+empty, keyA81001, nil); r.status != http.StatusNoContent {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
		ref3 := newReferral(t, g, "SUB-N-3")
		g.mustChange(t, ref3.task, keyPRV01, setStatus("received"))
		after := scOutbox(t, g, gateway.OutboxPending)
		if n := len(scTo(after, gateway.SubscriptionDestination(empty))); n != 2 {
			t.Errorf("deleted Subscription: %d events, want the 2 from before it was deleted", n)
		}
		last := scTo(after, gateway.SubscriptionDestination(full))
		if len(last) != 3 || last[2].OrderKey != ref3.task || last[2].TaskVersion != 2 {
			t.Errorf("live Subscription after the delete: %+v", last)
		}
		// The other practice's Subscription hears of its own Tasks.
		body := []byte(strings.ReplaceAll(string(referralBundle(t, "SUB-N-4", "6541003238")), "A81001", "A81002"))
		if r := g.post("/fhir", keyA81002, body); r.status != http.StatusOK {
			t.Fatalf("A81002 referral: %d %s", r.status, r.body)
		}
		tasks, _ := entries(t, g.get("/fhir/Task?requester=Organization/A81002", keyA81002))
		if len(tasks) != 1 {
			t.Fatalf("%d A81002 tasks", len(tasks))
		}
		g.mustChange(t, str(tasks[0], "id"), keyPRV02, setStatus("accepted"))
		if got := scTo(scOutbox(t, g, gateway.OutboxPending), gateway.SubscriptionDestination(other)); len(got) != 1 ||
			got[0].OrderKey != str(tasks[0], "id") {
			t.Errorf("A81002's Subscription: %+v", got)
		}
	})
}

// TestSubscriptionDeliveryStatus: a failed delivery puts the Subscription
// in error, with the failure; a successful one makes it active again.
func TestSubscriptionDeliveryStatus(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		id, ref, ev := scAccepted(t, g, "SUB-D-1")

		scResult(t, g, ev, errors.New("dial tcp 192.0.2.1:443: connection refused"))
		sub, v := g.read(t, "/fhir/Subscription/"+id, keyA81001)
		if sub["status"] != "error" || v != 2 {
			t.Fatalf("after a failure: version %d %v", v, sub)
		}
		if msg := str(sub, "error"); !strings.Contains(msg, "connection refused") || !strings.Contains(msg, "delivery failed") {
			t.Errorf("error %q", msg)
		}
		// Another failure of the same outage writes no new version.
		scResult(t, g, ev, errors.New("dial tcp 192.0.2.1:443: connection refused"))
		if _, v := g.read(t, "/fhir/Subscription/"+id, keyA81001); v != 2 {
			t.Errorf("a second failure wrote version %d", v)
		}
		// A Subscription in error still hears of changes.
		g.mustChange(t, ref.task, keyPRV01, setStatus("in-progress"))
		if n := len(scTo(scOutbox(t, g, gateway.OutboxPending), gateway.SubscriptionDestination(id))); n != 2 {
			t.Errorf("a Subscription in error: %d events, want 2", n)
		}
		// Still the owner's alone.
		scRefused(t, "other practice reads a Subscription in error", g.get("/fhir/Subscription/"+id, keyA81002), http.StatusNotFound, "")

		scResult(t, g, ev, nil)
		sub, v = g.read(t, "/fhir/Subscription/"+id, keyA81001)
		if sub["status"] != "active" || v != 3 {
			t.Fatalf("after a success: version %d %v", v, sub)
		}
		if _, ok := sub["error"]; ok {
			t.Errorf("error kept after a success: %v", sub["error"])
		}
		// Success while active changes nothing.
		scResult(t, g, ev, nil)
		if _, v := g.read(t, "/fhir/Subscription/"+id, keyA81001); v != 3 {
			t.Errorf("a success while active wrote version %d", v)
		}
		// The history shows the outage.
		r := g.get("/fhir/Subscription/"+id+"/_history", keyA81001)
		versions, _ := entries(t, r)
		var statuses []string
		for _, x := range versions {
			statuses = append(statuses, str(x, "status"))
		}
		if strings.Join(statuses, ",") != "active,error,active" {
			t.Errorf("history statuses %v", statuses)
		}

		// Results for other destinations, or a deleted Subscription, change
		// nothing.
		scResult(t, g, gateway.OutboxEvent{Destination: gateway.ProviderDestination("PRV01")}, errors.New("down"))
		if r := g.do(http.MethodDelete, "/fhir/Subscription/"+id, keyA81001, nil); r.status != http.StatusNoContent {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
		scResult(t, g, ev, errors.New("down"))
		scRefused(t, "read after delete and a failure", g.get("/fhir/Subscription/"+id, keyA81001), http.StatusGone, "")
	})
}

// scAccepted subscribes A81001, sends its referral identifier and has
// PRV01 accept it: it returns the Subscription's id, the referral and the
// one event the acceptance queued for the Subscription.
func scAccepted(t *testing.T, g *testGateway, identifier string) (string, referral, gateway.OutboxEvent) {
	t.Helper()
	id := scSubscribe(t, g, keyA81001, scSubscription(t, nil))
	ref := newReferral(t, g, identifier)
	g.mustChange(t, ref.task, keyPRV01, setStatus("accepted"))
	events := scTo(scOutbox(t, g, gateway.OutboxPending), gateway.SubscriptionDestination(id))
	if len(events) != 1 {
		t.Fatalf("%d events", len(events))
	}
	return id, ref, events[0]
}

// scResult tells the gateway of a delivery's outcome, as the outbox worker
// does, and fails the test if the Subscription's status was not written.
func scResult(t *testing.T, g *testGateway, e gateway.OutboxEvent, failure error) {
	t.Helper()
	if err := g.svc.DeliveryResult(context.Background(), e, failure); err != nil {
		t.Fatalf("DeliveryResult: %v", err)
	}
}

// TestSubscriptionDeliveryStatusNotWritten: a Subscription's status that
// cannot be written is an error for the outbox worker to log, not silence;
// the Subscription is as it was.
func TestSubscriptionDeliveryStatusNotWritten(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		id, _, ev := scAccepted(t, g, "SUB-W-1")
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // the store refuses to begin the write
		err := g.svc.DeliveryResult(ctx, ev, errors.New("dial tcp 192.0.2.1:443: connection refused"))
		if err == nil || !strings.Contains(err.Error(), "Subscription "+id) {
			t.Errorf("DeliveryResult = %v, want an error naming the Subscription", err)
		}
		if sub, v := g.read(t, "/fhir/Subscription/"+id, keyA81001); sub["status"] != "active" || v != 1 {
			t.Errorf("after a write that failed: version %d %v", v, sub)
		}
	})
}

// TestSubscriptionCodesOnlyPayload: the Task a Subscription receives is the
// Task as the practice may see it: under a codes-only consent, none of the
// provider's free text.
func TestSubscriptionCodesOnlyPayload(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		sub := scSubscribe(t, g, keyA81001, scSubscription(t, nil))
		ref := sendReferral(t, g, codesOnlyBundle(t, "SUB-CODES-1"))
		g.mustChange(t, ref.task, keyPRV01, setStatus("accepted"))
		g.mustChange(t, ref.task, keyPRV01, workNotes)
		events := scTo(scOutbox(t, g, gateway.OutboxPending), gateway.SubscriptionDestination(sub))
		if len(events) != 2 {
			t.Fatalf("%d events", len(events))
		}
		payload := events[1].Payload
		for _, s := range []string{"husband", "anxious", "Summary", "Rang her", "Tuesday group", "what happened"} {
			if strings.Contains(string(payload), s) {
				t.Errorf("codes-only payload holds %q: %s", s, payload)
			}
		}
		seen, _ := g.read(t, "/fhir/Task/"+ref.task, keyA81001)
		if b, _ := json.Marshal(seen); !sameJSON(t, payload, b) {
			t.Errorf("payload is not the practice's view:\n%s\n%s", payload, b)
		}
		if !strings.Contains(string(payload), "1362931000000106") {
			t.Errorf("codes-only payload lost the coded outcome: %s", payload)
		}
	})
}

// TestSubscriptionPROMDue: the gateway's own change (marking a follow-up
// PROM due) is someone else's for both parties: the practice's
// Subscription hears of it and the provider's pushed case record follows.
func TestSubscriptionPROMDue(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine, scWithCases(nil, "PRV01"))
		sub := scSubscribe(t, g, keyA81001, scSubscription(t, nil))
		ref := newReferral(t, g, "SUB-DUE-1")
		scMustEvent(t, g, ref.task, keyPRV01, `{"event":"ACCEPT"}`)
		scMustEvent(t, g, ref.task, keyPRV01, `{"event":"PROM","instrument":"swemwbs","answered_at":"`+scAnsweredAt()+
			`","answers":{"1":3,"2":3,"3":3,"6":3,"7":3,"9":3,"11":3}}`)
		before := scOutbox(t, g, gateway.OutboxPending)
		if n := len(scTo(before, gateway.SubscriptionDestination(sub))); n != 2 {
			t.Fatalf("%d Subscription events before the PROM fell due, want 2 (accept, PROM)", n)
		}
		if n := len(scTo(before, gateway.ProviderDestination("PRV01"))); n != 1 {
			t.Fatalf("%d PRV01 events before the PROM fell due, want 1 (the referral)", n)
		}
		marked, err := g.svc.MarkPROMsDue(context.Background(), time.Now().AddDate(1, 0, 0))
		if err != nil || marked != 1 {
			t.Fatalf("MarkPROMsDue: %d %v", marked, err)
		}
		task, v := g.read(t, "/fhir/Task/"+ref.task, keyA81001)
		if businessStatus(task) != "follow-up-prom-due" {
			t.Fatalf("Task after MarkPROMsDue: %v", task["businessStatus"])
		}
		after := scOutbox(t, g, gateway.OutboxPending)
		subs := scTo(after, gateway.SubscriptionDestination(sub))
		if len(subs) != 3 || subs[2].TaskVersion != v || subs[2].OrderKey != ref.task {
			t.Errorf("Subscription events after the PROM fell due: %+v", subs)
		}
		pushed := scTo(after, gateway.ProviderDestination("PRV01"))
		if len(pushed) != 2 || pushed[1].TaskVersion != v {
			t.Fatalf("PRV01 events after the PROM fell due: %+v", pushed)
		}
		if _, rec := scCase(t, g, ref.task, keyPRV01); string(pushed[1].Payload) != string(rec) ||
			!strings.Contains(string(rec), `"BUSINESS_STATUS":"follow-up-prom-due"`) {
			t.Errorf("pushed record %s\nwant %s", pushed[1].Payload, rec)
		}
	})
}

// TestSubscriptionsPerPractice: a practice holds at most
// gateway.MaxSubscriptions, every one of them notified; one more is
// refused until one is deleted, and the other practice is not affected.
func TestSubscriptionsPerPractice(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		var ids []string
		for range gateway.MaxSubscriptions {
			ids = append(ids, scSubscribe(t, g, keyA81001, scSubscription(t, nil)))
		}
		r := g.post("/fhir/Subscription", keyA81001, scSubscription(t, nil))
		if r.status != http.StatusUnprocessableEntity {
			t.Fatalf("one Subscription too many: %d %s", r.status, r.body)
		}
		if is := outcomeIssues(t, r); len(is) != 1 || is[0]["code"] != "business-rule" ||
			!strings.Contains(is[0]["diagnostics"].(string), fmt.Sprintf("already has %d Subscriptions", gateway.MaxSubscriptions)) {
			t.Errorf("one Subscription too many: %s", r.body)
		}
		// The other practice has its own allowance.
		scSubscribe(t, g, keyA81002, scSubscription(t, func(sub map[string]any) {
			sub["criteria"] = "Task?requester=Organization/A81002"
		}))

		ref := newReferral(t, g, "SUB-MANY-1")
		g.mustChange(t, ref.task, keyPRV01, setStatus("accepted"))
		events := scOutbox(t, g, gateway.OutboxPending)
		for _, id := range ids {
			if n := len(scTo(events, gateway.SubscriptionDestination(id))); n != 1 {
				t.Errorf("Subscription %s: %d events, want 1 (of %d for %d Subscriptions)", id, n, len(events), len(ids))
			}
		}
		if len(events) != len(ids) {
			t.Errorf("%d events for %d Subscriptions of A81001", len(events), len(ids))
		}

		// Deleting one makes room for one.
		if r := g.do(http.MethodDelete, "/fhir/Subscription/"+ids[0], keyA81001, nil); r.status != http.StatusNoContent {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
		scSubscribe(t, g, keyA81001, scSubscription(t, nil))
		if r := g.post("/fhir/Subscription", keyA81001, scSubscription(t, nil)); r.status != http.StatusUnprocessableEntity {
			t.Errorf("after one deleted and one added: %d %s", r.status, r.body)
		}
	})
}
