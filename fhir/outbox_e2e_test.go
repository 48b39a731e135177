package fhir_test

// The outbox end to end, wired as the binary wires it: the FHIR API over a
// real store, whose writes enqueue case records for the push provider
// (PRV01, through the signed webhook adapter) and Task notifications for
// practices' Subscriptions (through the rest-hook adapter), delivered by a
// gateway.Worker to real HTTP receivers (httptest servers) that fail, hang,
// answer late and recover. The receivers keep every request they get; the
// tests then hold the deliveries to the outbox's promises: nothing lost,
// nothing out of order per Task, a repeat only ever under the same delivery
// id, and a restart in the middle of a delivery changes none of that.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spgateway/spgateway/adapters/resthook"
	"github.com/spgateway/spgateway/adapters/webhook"
	"github.com/spgateway/spgateway/fhir"
	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store"
	"github.com/spgateway/spgateway/gateway/store/storetest"
	"github.com/spgateway/spgateway/mapping"
)

// e2eSecret is the webhook secret the gateway and PRV01's receiver share.
var e2eSecret = []byte("e2e-shared-webhook-secret")

// e2eDeadline bounds every wait: generous, as the tests never assert on
// how long anything takes.
const e2eDeadline = 20 * time.Second

// e2eCaseRecords are the case-record configurations: PRV01's (pushed) and
// PRV02's (polled). PRV01's record names the case and the referral number,
// which the receivers key on.
func e2eCaseRecords(t testing.TB) mapping.CaseRecords {
	t.Helper()
	c := mapping.CaseRecords{Providers: map[string]mapping.ProviderMapping{
		"PRV01": {
			Fields:     []string{"case_id", "referral_number", "status", "status_reason", "last_updated"},
			Rename:     map[string]string{"case_id": "caseRef", "referral_number": "referralNo", "status": "state"},
			Codes:      map[string]mapping.CodeTable{"status_reason": {Map: map[string]string{gateway.ReasonPatientDeclined: "DECLINED"}, Default: "OTHER"}},
			DateFormat: mapping.DateUK,
			Events:     map[string]mapping.EventMapping{"ACCEPT": {Status: gateway.TaskAccepted}},
		},
		"PRV02": {
			Fields: []string{"case_id", "status"},
			Events: map[string]mapping.EventMapping{"accepted": {Status: gateway.TaskAccepted}},
		},
	}}
	for code, m := range c.Providers {
		if err := mapping.CheckProviderMapping(m); err != nil {
			t.Fatalf("mapping of %s: %v", code, err)
		}
	}
	return c
}

// e2eOptions are the settings of one gateway process.
type e2eOptions struct {
	// webhookURL is PRV01's receiver.
	webhookURL string
	// timeout bounds one delivery (both adapters); lease is how long the
	// worker holds an event; maxAttempts, then dead-letter.
	timeout, lease time.Duration
	maxAttempts    int
}

// e2eGateway is one gateway process: FHIR API, store and outbox worker.
type e2eGateway struct {
	*testGateway
	worker *gateway.Worker
	cancel context.CancelFunc
	done   chan struct{} // closed when the worker has returned
	once   sync.Once
}

// e2eStart starts a gateway process on the store of cfg, as the binary
// would: service with case records pushed for PRV01 and the store as the
// operators' outbox, the HTTP API, and the outbox worker, which the
// service wakes. It is stopped when the test ends, unless stopped before.
func e2eStart(t *testing.T, cfg store.Config, o e2eOptions) *e2eGateway {
	t.Helper()
	if o.timeout <= 0 {
		o.timeout = 200 * time.Millisecond
	}
	if o.lease <= 0 {
		o.lease = 500 * time.Millisecond
	}
	if o.maxAttempts <= 0 {
		o.maxAttempts = 1000
	}
	st, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("store.Open(%s): %v", cfg.Driver, err)
	}
	var w *gateway.Worker // set before the first request
	gcfg := devConfig()
	gcfg.Store, gcfg.Outbox = st, st
	gcfg.Cases, gcfg.PushProviders = e2eCaseRecords(t), []string{"PRV01"}
	gcfg.Wake = func() { w.Wake() }
	svc, err := gateway.NewService(gcfg)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	hook, err := webhook.New(webhook.Config{URL: o.webhookURL, Secret: e2eSecret, Timeout: o.timeout})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	rest, err := resthook.New(resthook.Config{Channels: svc, Timeout: o.timeout,
		Endpoints: gateway.EndpointPolicy{AllowHTTP: true, AllowPrivate: true}})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	w, err = gateway.NewWorker(gateway.WorkerConfig{
		Outbox: st,
		Deliverers: map[string]gateway.Deliverer{
			gateway.DestinationProvider:     gateway.ProviderRoutes{"PRV01": hook},
			gateway.DestinationSubscription: rest,
		},
		Retry:    gateway.RetryPolicy{MaxAttempts: o.maxAttempts, BaseDelay: 5 * time.Millisecond, MaxDelay: 50 * time.Millisecond},
		Lease:    o.lease,
		Poll:     20 * time.Millisecond,
		OnResult: svc.DeliveryResult,
	})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}

	g := &e2eGateway{testGateway: &testGateway{t: t, svc: svc, store: st}, worker: w, done: make(chan struct{})}
	srv := httptest.NewUnstartedServer(nil)
	g.base = "http://" + srv.Listener.Addr().String()
	h, err := fhir.NewServer(fhir.Config{BaseURL: g.base, MaxBodyBytes: 1 << 20, MaxJSONDepth: 64, DefaultCount: 50, MaxCount: 500}, svc, devKeys())
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	srv.Config.Handler = h
	srv.Start()
	g.srv, g.fhir = srv, h

	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go func() {
		defer close(g.done)
		w.Run(ctx)
	}()
	t.Cleanup(g.stop)
	return g
}

// stop shuts the process down in order: the worker finishes the deliveries
// under way, then the API and the store close.
func (g *e2eGateway) stop() {
	g.once.Do(func() {
		g.cancel()
		<-g.done
		g.srv.Close()
		g.store.Close()
	})
}

// crash stops the process as a kill would: the store goes first, so
// nothing the worker does from then on is recorded (a lease it holds is
// never finished). release then lets hung deliveries end, and crash waits
// for the worker's goroutine to be gone.
func (g *e2eGateway) crash(release func()) {
	g.once.Do(func() {
		g.srv.Close()
		g.store.Close()
		g.cancel()
		release()
		<-g.done
	})
}

func (g *e2eGateway) depth(t testing.TB) map[string]int {
	t.Helper()
	d, err := g.store.OutboxDepth(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// settle waits until no event is pending: each is delivered or dead.
func (g *e2eGateway) settle(t testing.TB) map[string]int {
	t.Helper()
	var d map[string]int
	e2eWait(t, "the outbox to drain", func() bool {
		d = g.depth(t)
		return d[gateway.OutboxPending] == 0
	})
	return d
}

// events lists the events of a status, oldest first.
func (g *e2eGateway) events(t testing.TB, status string) []gateway.OutboxEvent {
	t.Helper()
	es, err := g.store.ListOutbox(context.Background(), status, 10000)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// e2eWait polls cond until it holds, failing the test after e2eDeadline.
func e2eWait(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(e2eDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Special answers of a receiver.
const (
	// e2eHang holds the request, unprocessed, until the sender gives up.
	e2eHang = -1
	// e2eLate processes the request at once but answers 200 only after
	// the sender gave up: the receiver has it, the gateway does not know.
	e2eLate = -2
)

// e2eReceipt is one request a receiver got.
type e2eReceipt struct {
	n         int // arrival order
	method    string
	path      string
	header    http.Header
	body      []byte
	verifyErr error // the webhook signature check, for a verifying receiver
	// status is what the receiver answered, or for e2eLate the 200 it
	// decided on; 0 while unanswered or when it never answered in time.
	status int
}

func (r e2eReceipt) delivery() string { return r.header.Get(webhook.HeaderDelivery) }

func (r e2eReceipt) version() int {
	v, _ := strconv.Atoi(r.header.Get(webhook.HeaderTaskVersion))
	return v
}

// accepted reports whether the receiver took the delivery in (2xx).
func (r e2eReceipt) accepted() bool { return r.status >= 200 && r.status < 300 }

// e2eReceiver is an HTTP receiver that keeps every request; answer (called
// outside its lock, and free to block) decides each answer from the
// arrival index n. A verifying receiver refuses (401), without asking
// answer, a request whose webhook signature does not verify.
type e2eReceiver struct {
	*httptest.Server
	verify bool
	answer func(n int, r *http.Request, body []byte) int

	mu       sync.Mutex
	receipts []*e2eReceipt
}

func e2eNewReceiver(t testing.TB, verify bool, answer func(n int, r *http.Request, body []byte) int) *e2eReceiver {
	t.Helper()
	rc := &e2eReceiver{verify: verify, answer: answer}
	rc.Server = httptest.NewServer(rc)
	t.Cleanup(rc.Close)
	return rc
}

func (rc *e2eReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // the sender went away
	}
	rec := &e2eReceipt{method: r.Method, path: r.URL.Path, header: r.Header.Clone(), body: body}
	if rc.verify {
		rec.verifyErr = webhook.Verify(e2eSecret, r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature),
			body, time.Now(), 0)
	}
	rc.mu.Lock()
	rec.n = len(rc.receipts)
	rc.receipts = append(rc.receipts, rec)
	rc.mu.Unlock()

	status := http.StatusUnauthorized
	if rec.verifyErr == nil {
		status = rc.answer(rec.n, r, body)
	}
	switch status {
	case e2eHang, e2eLate:
		if status == e2eLate {
			rc.setStatus(rec, http.StatusOK)
		}
		select {
		case <-r.Context().Done(): // the sender gave up
		case <-time.After(e2eDeadline):
		}
		if status == e2eLate {
			w.WriteHeader(http.StatusOK)
		} else {
			w.WriteHeader(http.StatusGatewayTimeout)
		}
		return
	}
	rc.setStatus(rec, status)
	w.WriteHeader(status)
}

func (rc *e2eReceiver) setStatus(rec *e2eReceipt, status int) {
	rc.mu.Lock()
	rec.status = status
	rc.mu.Unlock()
}

// got returns the receipts so far, in arrival order.
func (rc *e2eReceiver) got() []e2eReceipt {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make([]e2eReceipt, len(rc.receipts))
	for i, r := range rc.receipts {
		out[i] = *r
	}
	return out
}

func (rc *e2eReceiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.receipts)
}

// e2eOK answers every request 200.
func e2eOK(int, *http.Request, []byte) int { return http.StatusOK }

// e2eCheckDeliveries holds receipts (of deliveries to one destination
// kind) to events: every event was taken in (2xx) at least once; every
// receipt is of a known event (by delivery id), with its Task version and
// the body want says; a repeat of a delivery has the same id and body; and
// per Task, what was taken in came in the order of the Task's versions, none
// skipped; no change was enqueued twice. It returns the receipts by
// delivery id.
func e2eCheckDeliveries(t testing.TB, events []gateway.OutboxEvent, receipts []e2eReceipt, want func(gateway.OutboxEvent) []byte) map[string][]e2eReceipt {
	t.Helper()
	byID := map[string]gateway.OutboxEvent{}
	versions := map[string][]int{} // per Task, the versions of its events
	ids := map[string]string{}     // destination, Task and version → event
	for _, e := range events {
		byID[e.ID] = e
		versions[e.OrderKey] = append(versions[e.OrderKey], e.TaskVersion)
		key := fmt.Sprint(e.Destination, " ", e.OrderKey, " ", e.TaskVersion)
		if other, ok := ids[key]; ok {
			t.Errorf("%s: two events, %s and %s: the change would arrive under two delivery ids", key, other, e.ID)
		}
		ids[key] = e.ID
	}
	got := map[string][]e2eReceipt{}
	taken := map[string][]int{} // per Task, the versions taken in, in arrival order
	for _, r := range receipts {
		e, ok := byID[r.delivery()]
		if !ok {
			t.Errorf("receipt %d: delivery %q is no event of the outbox", r.n, r.delivery())
			continue
		}
		got[e.ID] = append(got[e.ID], r)
		if r.version() != e.TaskVersion {
			t.Errorf("delivery %s: %s %s, want %d", e.ID, webhook.HeaderTaskVersion, r.header.Get(webhook.HeaderTaskVersion), e.TaskVersion)
		}
		if w := want(e); !bytes.Equal(r.body, w) {
			t.Errorf("delivery %s (attempt %d): body\n%s\nwant\n%s", e.ID, len(got[e.ID]), r.body, w)
		}
		if r.accepted() {
			taken[e.OrderKey] = append(taken[e.OrderKey], e.TaskVersion)
		}
	}
	for _, e := range events {
		if !slices.ContainsFunc(got[e.ID], e2eReceipt.accepted) {
			t.Errorf("event %s (Task %s version %d) was delivered, but the receiver never took it in (%d attempts seen)",
				e.ID, e.OrderKey, e.TaskVersion, len(got[e.ID]))
		}
	}
	for task, vs := range taken {
		if !slices.IsSorted(vs) {
			t.Errorf("Task %s: versions taken in out of order: %v", task, vs)
		}
		want := slices.Clone(versions[task])
		slices.Sort(want)
		if got := slices.Compact(slices.Clone(vs)); !slices.Equal(got, slices.Compact(want)) {
			t.Errorf("Task %s: versions taken in %v, events of versions %v", task, got, want)
		}
	}
	return got
}

// e2eTo returns the events to destinations of a kind ("provider",
// "subscription") or to one destination.
func e2eTo(events []gateway.OutboxEvent, dest string) []gateway.OutboxEvent {
	var out []gateway.OutboxEvent
	for _, e := range events {
		if e.Destination == dest || strings.HasPrefix(e.Destination, dest+":") {
			out = append(out, e)
		}
	}
	return out
}

// e2eCaseRecord decodes a PRV01 case record.
func e2eCaseRecord(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("case record is not JSON: %v\n%s", err, b)
	}
	return m
}

func e2ePayload(e gateway.OutboxEvent) []byte { return e.Payload }

// e2eCheckWebhooks checks what the gateway sent PRV01's receiver beyond the
// body: signed, as JSON, as case-record events about the Task of the event.
func e2eCheckWebhooks(t testing.TB, events []gateway.OutboxEvent, got map[string][]e2eReceipt) {
	t.Helper()
	for _, e := range events {
		rec := e2eCaseRecord(t, e.Payload)
		if rec["caseRef"] != e.OrderKey {
			t.Errorf("event %s is about Task %s, its case record about %v", e.ID, e.OrderKey, rec["caseRef"])
		}
		for _, r := range got[e.ID] {
			if r.verifyErr != nil {
				t.Errorf("delivery %s: the receiver could not verify the signature: %v", e.ID, r.verifyErr)
			}
			if r.method != http.MethodPost || r.header.Get("Content-Type") != "application/json" ||
				r.header.Get(webhook.HeaderEvent) != gateway.EventCaseRecord {
				t.Errorf("delivery %s: %s, Content-Type %q, event %q", e.ID, r.method, r.header.Get("Content-Type"), r.header.Get(webhook.HeaderEvent))
			}
		}
	}
}

// e2eForged sends PRV01's receiver a request signed with ts and sig and
// returns the status it answers.
func e2eForged(t testing.TB, url, delivery, ts, sig string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.HeaderDelivery, delivery)
	req.Header.Set(webhook.HeaderEvent, gateway.EventCaseRecord)
	req.Header.Set(webhook.HeaderTaskVersion, "1")
	if ts != "" {
		req.Header.Set(webhook.HeaderTimestamp, ts)
	}
	if sig != "" {
		req.Header.Set(webhook.HeaderSignature, sig)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// TestE2EWebhookFailAndRecover: PRV01's receiver fails (5xx, 400, 429),
// hangs past the adapter's timeout, answers too late, and recovers, while
// the practice refers and cancels and the provider works its Tasks. Every
// event reaches it, in Task version order, repeats only under the same
// delivery id with the same body, every request signed; forged, tampered
// and stale requests do not verify.
func TestE2EWebhookFailAndRecover(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		var (
			up   atomic.Bool
			upAt atomic.Int64 // the arrival index from which the receiver is up
		)
		failures := []int{http.StatusInternalServerError, http.StatusServiceUnavailable, http.StatusBadRequest, http.StatusTooManyRequests}
		rcv := e2eNewReceiver(t, true, func(n int, _ *http.Request, _ []byte) int {
			if !up.Load() {
				if n%10 == 3 {
					return e2eHang
				}
				return failures[n%len(failures)]
			}
			// Recovering: a few more failures, hangs and late answers.
			switch k := n - int(upAt.Load()); {
			case k >= 40:
			case k%5 == 1:
				return http.StatusBadGateway
			case k%7 == 2:
				return e2eLate
			case k%11 == 4:
				return e2eHang
			}
			return http.StatusOK
		})
		g := e2eStart(t, storetest.Config(t, engine), e2eOptions{webhookURL: rcv.URL})

		refs := make([]referral, 20)
		for i := range refs {
			refs[i] = newReferral(t, g.testGateway, fmt.Sprintf("E2E-WH-%02d", i))
		}
		// The provider's own changes are not pushed back to it; the
		// practice's cancellations are, after the referral.
		for i, ref := range refs {
			switch {
			case i < 5:
				g.mustChange(t, ref.task, keyPRV01, setStatus("accepted"))
				g.mustChange(t, ref.task, keyPRV01, func(task map[string]any) {
					task["status"] = "in-progress"
					task["businessStatus"] = coded(businessStatusSystem, "first-contact-made", "")
				})
				g.mustChange(t, ref.task, keyPRV01, setStatus("completed"))
			case i < 10:
				g.mustChange(t, ref.task, keyPRV01, setStatus("accepted"))
				g.mustChange(t, ref.task, keyA81001, setStatusWithReason("cancelled", "patient-declined", "Patient phoned the surgery"))
			case i < 15:
				g.mustChange(t, ref.task, keyA81001, setStatusWithReason("cancelled", "duplicate", ""))
			}
		}
		for _, r := range rcv.got() {
			if r.accepted() {
				t.Fatalf("receipt %d taken in while the receiver was down", r.n)
			}
		}
		upAt.Store(int64(rcv.count()))
		up.Store(true)

		if d := g.settle(t); d[gateway.OutboxDead] != 0 {
			t.Fatalf("dead letters: %v", d)
		}
		events := g.events(t, gateway.OutboxDelivered)
		if len(events) != 30 { // 20 referrals, 10 cancellations
			t.Fatalf("%d events delivered, want 30", len(events))
		}
		tasks := map[string]bool{}
		for _, ref := range refs {
			tasks[ref.task] = true
		}
		states := map[int]string{}
		for _, e := range events {
			if e.Destination != gateway.ProviderDestination("PRV01") || e.Kind != gateway.EventCaseRecord || !tasks[e.OrderKey] {
				t.Errorf("event %+v", e)
			}
			states[e.TaskVersion] += fmt.Sprint(e2eCaseRecord(t, e.Payload)["state"], ",")
		}
		if states[1] != strings.Repeat("requested,", 20) || states[2] != strings.Repeat("cancelled,", 5) || states[3] != strings.Repeat("cancelled,", 5) {
			t.Errorf("case records by version: %v", states)
		}
		receipts := rcv.got()
		got := e2eCheckDeliveries(t, events, receipts, e2ePayload)
		e2eCheckWebhooks(t, events, got)
		repeated := 0
		for _, rs := range got {
			if len(slices.DeleteFunc(slices.Clone(rs), func(r e2eReceipt) bool { return !r.accepted() })) > 1 {
				repeated++
			}
		}
		if repeated == 0 {
			t.Errorf("no delivery was taken in twice, though the receiver answered some too late")
		}
		if m := g.worker.Metrics(); m.Delivered.Load() < 30 || m.Failures.Load() == 0 || m.DeadLetters.Load() != 0 {
			t.Errorf("metrics: delivered %d, failures %d, dead letters %d", m.Delivered.Load(), m.Failures.Load(), m.DeadLetters.Load())
		}

		// The receiver's side of the signature: a genuine delivery verifies
		// (above); anything else does not.
		genuine := events[0].Payload
		now := strconv.FormatInt(time.Now().Unix(), 10)
		stale := strconv.FormatInt(time.Now().Add(-10*time.Minute).Unix(), 10)
		tampered := bytes.Replace(genuine, []byte(`"requested"`), []byte(`"cancelled"`), 1)
		for _, f := range []struct {
			name, ts, sig string
			body          []byte
		}{
			{"another secret", now, webhook.Sign([]byte("not-the-secret"), now, genuine), genuine},
			{"tampered body", now, webhook.Sign(e2eSecret, now, genuine), tampered},
			{"other timestamp", now, webhook.Sign(e2eSecret, stale, genuine), genuine},
			{"stale", stale, webhook.Sign(e2eSecret, stale, genuine), genuine},
			{"unsigned", now, "", genuine},
			{"no timestamp", "", webhook.Sign(e2eSecret, now, genuine), genuine},
			{"malformed signature", now, "sha256=zz", genuine},
		} {
			if status := e2eForged(t, rcv.URL, "forged-"+f.name, f.ts, f.sig, f.body); status != http.StatusUnauthorized {
				t.Errorf("%s: the receiver answered %d, want 401", f.name, status)
			}
		}
		// The same, signed with the shared secret, verifies.
		if status := e2eForged(t, rcv.URL, "resent", now, webhook.Sign(e2eSecret, now, genuine), genuine); status != http.StatusOK {
			t.Errorf("a correctly signed request: %d", status)
		}
		for _, r := range rcv.got()[len(receipts):] {
			if r.delivery() != "resent" && (r.verifyErr == nil || r.accepted()) {
				t.Errorf("%s: verified (%v), answered %d", r.delivery(), r.verifyErr, r.status)
			}
		}
	})
}

// e2eSubscribe creates a Subscription of A81001 to its Tasks, to endpoint
// with payload ("" for empty notifications) and channel headers; it
// returns its id.
func e2eSubscribe(t testing.TB, g *e2eGateway, endpoint, payload string, headers ...string) string {
	t.Helper()
	channel := map[string]any{"type": "rest-hook", "endpoint": endpoint}
	if payload != "" {
		channel["payload"] = payload
	}
	if len(headers) > 0 {
		channel["header"] = headers
	}
	b, err := json.Marshal(map[string]any{"resourceType": "Subscription", "status": "requested",
		"reason": "Hear of our referrals", "criteria": "Task?requester=Organization/A81001", "channel": channel})
	if err != nil {
		t.Fatal(err)
	}
	r := g.post("/fhir/Subscription", keyA81001, b)
	if r.status != http.StatusCreated || str(r.json(t), "status") != gateway.SubscriptionActive {
		t.Fatalf("create Subscription: %d %s", r.status, r.body)
	}
	return str(r.json(t), "id")
}

// e2eSubscription reads a Subscription as A81001.
func e2eSubscription(t testing.TB, g *e2eGateway, id string) map[string]any {
	t.Helper()
	sub, _ := g.read(t, "/fhir/Subscription/"+id, keyA81001)
	return sub
}

// TestE2ESubscriptionRestHook: a practice's rest-hook Subscriptions hear of
// the provider's changes to its Tasks. While the endpoint fails the
// Subscription is in error, saying why; once it recovers the Subscription
// is active again and every change has arrived, per Task in version order:
// with a payload, each version PUT to [endpoint]/Task/{id}; without, an
// empty POST.
func TestE2ESubscriptionRestHook(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		var down atomic.Bool
		down.Store(true)
		hooks := e2eNewReceiver(t, false, func(int, *http.Request, []byte) int {
			if down.Load() {
				return http.StatusServiceUnavailable
			}
			return http.StatusOK
		})
		cases := e2eNewReceiver(t, true, e2eOK)
		g := e2eStart(t, storetest.Config(t, engine), e2eOptions{webhookURL: cases.URL})

		const token = "Authorization: Bearer practice-hook-token"
		full := e2eSubscribe(t, g, hooks.URL+"/fhir", "application/fhir+json", token, "X-Practice: A81001")
		empty := e2eSubscribe(t, g, hooks.URL+"/notify", "")
		refs := make([]referral, 3)
		for i := range refs {
			refs[i] = newReferral(t, g.testGateway, fmt.Sprintf("E2E-SUB-%d", i))
		}
		for _, ref := range refs {
			g.mustChange(t, ref.task, keyPRV01, setStatus("received"))
			g.mustChange(t, ref.task, keyPRV01, setStatus("accepted"))
			g.mustChange(t, ref.task, keyPRV01, func(task map[string]any) {
				task["status"] = "in-progress"
				task["businessStatus"] = coded(businessStatusSystem, "first-contact-made", "")
			})
		}

		// The endpoint fails: both Subscriptions say so.
		for _, id := range []string{full, empty} {
			e2eWait(t, "Subscription "+id+" in error", func() bool {
				return e2eSubscription(t, g, id)["status"] == gateway.SubscriptionError
			})
			sub := e2eSubscription(t, g, id)
			msg := str(sub, "error")
			if !strings.Contains(msg, "delivery failed") || !strings.Contains(msg, "503") || strings.Contains(msg, "practice-hook-token") {
				t.Errorf("Subscription %s: error %q", id, msg)
			}
		}
		// The practice's own change is not sent to its Subscriptions.
		g.mustChange(t, refs[2].task, keyA81001, setStatusWithReason("cancelled", "duplicate", ""))

		down.Store(false)
		if d := g.settle(t); d[gateway.OutboxDead] != 0 {
			t.Fatalf("dead letters: %v", d)
		}
		for _, id := range []string{full, empty} {
			e2eWait(t, "Subscription "+id+" active again", func() bool {
				sub := e2eSubscription(t, g, id)
				return sub["status"] == gateway.SubscriptionActive && sub["error"] == nil
			})
		}

		events := g.events(t, gateway.OutboxDelivered)
		// 3 referrals and 1 cancellation for PRV01; 3 changes of 3 Tasks for
		// each Subscription.
		if n := len(e2eTo(events, "provider")); n != 4 {
			t.Errorf("%d case records delivered, want 4", n)
		}
		e2eCheckWebhooks(t, e2eTo(events, "provider"), e2eCheckDeliveries(t, e2eTo(events, "provider"), cases.got(), e2ePayload))
		var toFull, toEmpty []e2eReceipt
		for _, r := range hooks.got() {
			if r.method == http.MethodPost {
				toEmpty = append(toEmpty, r)
			} else {
				toFull = append(toFull, r)
			}
		}

		fullEvents := e2eTo(events, gateway.SubscriptionDestination(full))
		if len(fullEvents) != 9 {
			t.Fatalf("%d events for the Subscription with a payload, want 9", len(fullEvents))
		}
		got := e2eCheckDeliveries(t, fullEvents, toFull, e2ePayload)
		taken := map[string][]int{}
		for _, e := range fullEvents {
			if e.Kind != gateway.EventTask || e.TaskVersion < 2 || e.TaskVersion > 4 {
				t.Errorf("event %+v", e)
			}
			for _, r := range got[e.ID] {
				var task map[string]any
				if err := json.Unmarshal(r.body, &task); err != nil {
					t.Fatalf("PUT body: %v", err)
				}
				if r.method != http.MethodPut || r.path != "/fhir/Task/"+e.OrderKey || task["resourceType"] != "Task" || task["id"] != e.OrderKey ||
					versionOf(task) != e.TaskVersion || r.header.Get("Content-Type") != "application/fhir+json" ||
					r.header.Get("Authorization") != "Bearer practice-hook-token" || r.header.Get("X-Practice") != "A81001" {
					t.Errorf("delivery %s: %s %s, Task %v version %d, headers %v", e.ID, r.method, r.path, task["id"], versionOf(task), r.header)
				}
			}
		}
		for _, r := range toFull {
			if r.accepted() {
				var task map[string]any
				json.Unmarshal(r.body, &task)
				id := str(task, "id")
				taken[id] = append(taken[id], versionOf(task))
			}
		}
		for _, ref := range refs {
			if vs := slices.Compact(taken[ref.task]); !slices.Equal(vs, []int{2, 3, 4}) {
				t.Errorf("Task %s: meta.versionId of the PUTs taken in: %v", ref.task, taken[ref.task])
			}
		}

		emptyEvents := e2eTo(events, gateway.SubscriptionDestination(empty))
		if len(emptyEvents) != 9 {
			t.Fatalf("%d events for the empty Subscription, want 9", len(emptyEvents))
		}
		got = e2eCheckDeliveries(t, emptyEvents, toEmpty, func(gateway.OutboxEvent) []byte { return []byte{} })
		for _, e := range emptyEvents {
			if len(e.Payload) != 0 {
				t.Errorf("event %s of an empty Subscription has a payload", e.ID)
			}
			for _, r := range got[e.ID] {
				if r.path != "/notify" || r.header.Get("Content-Type") != "" || r.header.Get("Authorization") != "" {
					t.Errorf("delivery %s: %s %s, headers %v", e.ID, r.method, r.path, r.header)
				}
			}
		}
	})
}

// TestE2ERestartMidDelivery: the gateway dies while PRV01's receiver holds
// a delivery (store closed first, so the lease is never finished, though
// the receiver then takes the request in). A new process on the same
// database, with a new worker, delivers everything: the held event again
// under the same delivery id, the rest once, all in order per Task.
func TestE2ERestartMidDelivery(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		var (
			gate     = make(chan struct{}) // closed: the receiver answers
			inflight atomic.Int32
		)
		rcv := e2eNewReceiver(t, true, func(_ int, r *http.Request, _ []byte) int {
			inflight.Add(1)
			defer inflight.Add(-1)
			select {
			case <-gate:
				return http.StatusOK
			case <-r.Context().Done():
				return e2eHang // the sender gave up: not taken in
			}
		})
		cfg := storetest.Config(t, engine)
		// A longer timeout (and the lease longer still, as the binary's
		// configuration demands), so the crash surely comes while a
		// delivery is held.
		g := e2eStart(t, cfg, e2eOptions{webhookURL: rcv.URL, timeout: time.Second, lease: 1500 * time.Millisecond})
		refs := make([]referral, 6)
		for i := range refs {
			refs[i] = newReferral(t, g.testGateway, fmt.Sprintf("E2E-RS-%d", i))
		}
		// A delivery that has just arrived, not one about to time out.
		posted := rcv.count()
		e2eWait(t, "a delivery in flight", func() bool { return rcv.count() > posted && inflight.Load() > 0 })
		g.crash(func() { close(gate) })
		before := rcv.got()
		var held []string
		for _, r := range before {
			if r.accepted() {
				held = append(held, r.delivery())
			}
		}
		if len(held) == 0 {
			t.Fatal("no delivery was taken in while the gateway went down")
		}

		g2 := e2eStart(t, cfg, e2eOptions{webhookURL: rcv.URL})
		// The data survived; the practice cancels two referrals after the
		// restart, which must reach the provider after their referrals.
		res, _ := entries(t, g2.get("/fhir/Task?requester=Organization/A81001", keyA81001))
		if len(res) != len(refs) {
			t.Fatalf("%d Tasks after the restart, want %d", len(res), len(refs))
		}
		for _, ref := range refs[:2] {
			g2.mustChange(t, ref.task, keyA81001, setStatusWithReason("cancelled", "duplicate", ""))
		}
		if d := g2.settle(t); d[gateway.OutboxDead] != 0 {
			t.Fatalf("dead letters: %v", d)
		}
		events := g2.events(t, gateway.OutboxDelivered)
		if len(events) != len(refs)+2 {
			t.Fatalf("%d events delivered, want %d", len(events), len(refs)+2)
		}
		receipts := rcv.got()
		got := e2eCheckDeliveries(t, events, receipts, e2ePayload)
		e2eCheckWebhooks(t, events, got)
		for _, id := range held {
			again := false
			for _, r := range receipts[len(before):] {
				again = again || (r.delivery() == id && r.accepted())
			}
			if !again {
				t.Errorf("delivery %s, held when the gateway went down, was not delivered again after the restart", id)
			}
		}
	})
}

// e2eOutboxList is the operators' view of the outbox.
type e2eOutboxList struct {
	Depth  map[string]int `json:"depth"`
	Events []struct {
		ID          string `json:"id"`
		Destination string `json:"destination"`
		Task        string `json:"task"`
		TaskVersion int    `json:"task_version"`
		Status      string `json:"status"`
		Attempts    int    `json:"attempts"`
		LastError   string `json:"last_error"`
	} `json:"events"`
}

// TestE2EDeadLetterRedrive: a receiver that says 410 Gone dead-letters the
// event at once; one that keeps failing, after MaxAttempts. Later events of
// the same Task are still delivered. An operator lists the dead letters
// and redrives them, and they are delivered under their own delivery id.
func TestE2EDeadLetterRedrive(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		var refusing atomic.Bool
		refusing.Store(true)
		rcv := e2eNewReceiver(t, true, func(_ int, r *http.Request, body []byte) int {
			var rec struct {
				ReferralNo string `json:"referralNo"`
			}
			json.Unmarshal(body, &rec)
			if refusing.Load() && r.Header.Get(webhook.HeaderTaskVersion) == "1" {
				switch rec.ReferralNo {
				case "E2E-DL-GONE":
					return http.StatusGone
				case "E2E-DL-FAIL":
					return http.StatusInternalServerError
				}
			}
			return http.StatusOK
		})
		g := e2eStart(t, storetest.Config(t, engine), e2eOptions{webhookURL: rcv.URL, maxAttempts: 3})
		gone := newReferral(t, g.testGateway, "E2E-DL-GONE")
		fail := newReferral(t, g.testGateway, "E2E-DL-FAIL")
		newReferral(t, g.testGateway, "E2E-DL-OK")
		e2eWait(t, "two dead letters", func() bool {
			d := g.depth(t)
			return d[gateway.OutboxDead] == 2 && d[gateway.OutboxPending] == 0
		})

		r := g.get("/api/v1/outbox?status=dead", keyAdmin)
		var list e2eOutboxList
		if err := json.Unmarshal(r.body, &list); r.status != http.StatusOK || err != nil {
			t.Fatalf("list dead letters: %d %s", r.status, r.body)
		}
		if bytes.Contains(r.body, []byte("payload")) || bytes.Contains(r.body, []byte("E2E-DL")) {
			t.Errorf("the operators' list shows case records: %s", r.body)
		}
		if list.Depth[gateway.OutboxDead] != 2 || len(list.Events) != 2 {
			t.Fatalf("dead letters: %s", r.body)
		}
		dead := map[string]string{} // Task → event
		for _, e := range list.Events {
			dead[e.Task] = e.ID
			if e.Status != gateway.OutboxDead || e.Destination != "provider:PRV01" || e.TaskVersion != 1 {
				t.Errorf("dead letter %+v", e)
			}
			switch e.Task {
			case gone.task:
				if e.Attempts != 1 || !strings.Contains(e.LastError, "410") {
					t.Errorf("410 Gone: %+v", e)
				}
			case fail.task:
				if e.Attempts != 3 || !strings.Contains(e.LastError, "500") {
					t.Errorf("failing: %+v", e)
				}
			default:
				t.Errorf("dead letter of Task %s", e.Task)
			}
		}
		attempts := map[string]int{}
		for _, r := range rcv.got() {
			attempts[r.delivery()]++
		}
		if attempts[dead[gone.task]] != 1 || attempts[dead[fail.task]] != 3 {
			t.Errorf("attempts seen by the receiver: %v", attempts)
		}

		// A dead letter holds nothing up: the practice cancels both, and
		// the cancellations are delivered.
		g.mustChange(t, gone.task, keyA81001, setStatusWithReason("cancelled", "duplicate", ""))
		g.mustChange(t, fail.task, keyA81001, setStatusWithReason("cancelled", "duplicate", ""))
		if d := g.settle(t); d[gateway.OutboxDead] != 2 || d[gateway.OutboxDelivered] != 3 {
			t.Fatalf("after the cancellations: %v", d)
		}

		// The receiver is mended; the operator redrives.
		refusing.Store(false)
		if r := g.post("/api/v1/outbox/"+dead[gone.task]+"/redrive", keyA81001, nil); r.status != http.StatusForbidden {
			t.Errorf("practice redrives: %d %s", r.status, r.body)
		}
		if r := g.post("/api/v1/outbox/no-such-event/redrive", keyAdmin, nil); r.status != http.StatusNotFound {
			t.Errorf("redrive of nothing: %d %s", r.status, r.body)
		}
		for _, task := range []string{gone.task, fail.task} {
			if r := g.post("/api/v1/outbox/"+dead[task]+"/redrive", keyAdmin, nil); r.status != http.StatusNoContent {
				t.Fatalf("redrive: %d %s", r.status, r.body)
			}
		}
		if d := g.settle(t); d[gateway.OutboxDead] != 0 || d[gateway.OutboxDelivered] != 5 {
			t.Fatalf("after the redrive: %v", d)
		}
		if r := g.post("/api/v1/outbox/"+dead[gone.task]+"/redrive", keyAdmin, nil); r.status != http.StatusNotFound {
			t.Errorf("redrive of a delivered event: %d %s", r.status, r.body)
		}

		// Every event was taken in, under its own id with its own body.
		// (Order per Task is not checked: a redriven version 1 arrives after
		// version 2, which the Task version header lets a receiver see.)
		events := g.events(t, gateway.OutboxDelivered)
		byID := map[string]gateway.OutboxEvent{}
		for _, e := range events {
			byID[e.ID] = e
		}
		accepted := map[string]bool{}
		for _, r := range rcv.got() {
			e, ok := byID[r.delivery()]
			if !ok || !bytes.Equal(r.body, e.Payload) || r.version() != e.TaskVersion || r.verifyErr != nil {
				t.Errorf("receipt %d: delivery %s, version %d, verified %v", r.n, r.delivery(), r.version(), r.verifyErr)
			}
			accepted[r.delivery()] = accepted[r.delivery()] || r.accepted()
		}
		for _, e := range events {
			if !accepted[e.ID] {
				t.Errorf("event %s (Task %s version %d) never taken in", e.ID, e.OrderKey, e.TaskVersion)
			}
		}
		if e := byID[dead[gone.task]]; e.Attempts != 1 || e.LastError != "" {
			t.Errorf("redriven event: %+v", e)
		}
	})
}
