package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// The outbox worker's tests run it over the real store; the Deliverers are
// fakes standing for the receivers.

// w0 is the worker tests' epoch.
var w0 = time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)

// waitLimit bounds every wait for something that happens in another
// goroutine: generous, for a slow and busy machine.
const waitLimit = 20 * time.Second

// workerClock is a clock the test moves by hand.
type workerClock struct {
	mu sync.Mutex
	t  time.Time
}

func newWorkerClock(t time.Time) *workerClock { return &workerClock{t: t} }

func (c *workerClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *workerClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *workerClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// deliverFunc is a Deliverer made of a function.
type deliverFunc func(ctx context.Context, e gateway.OutboxEvent) error

func (f deliverFunc) Deliver(ctx context.Context, e gateway.OutboxEvent) error { return f(ctx, e) }

// receiver is a fake Deliverer: it records every attempt and answers with
// answer (nil: success).
type receiver struct {
	mu     sync.Mutex
	got    []gateway.OutboxEvent
	answer func(e gateway.OutboxEvent, n int) error // n: attempts at e so far, this one included
}

func (r *receiver) Deliver(_ context.Context, e gateway.OutboxEvent) error {
	r.mu.Lock()
	r.got = append(r.got, e)
	n := 0
	for _, g := range r.got {
		if g.ID == e.ID {
			n++
		}
	}
	answer := r.answer
	r.mu.Unlock()
	if answer == nil {
		return nil
	}
	return answer(e, n)
}

func (r *receiver) attempts() []gateway.OutboxEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// result is what OnResult heard of one attempt.
type result struct {
	ID       string
	Status   string
	Attempts int
	Err      error
}

// results collects what OnResult hears.
type results struct {
	mu  sync.Mutex
	got []result
}

func (r *results) OnResult(_ context.Context, e gateway.OutboxEvent, err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, result{e.ID, e.Status, e.Attempts, err})
	return nil
}

func (r *results) all() []result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func outboxEvent(id, dest, task string) gateway.OutboxEvent {
	return gateway.OutboxEvent{
		ID: id, Destination: dest, Kind: gateway.EventCaseRecord, OrderKey: task, TaskVersion: 2,
		Payload: fmt.Appendf(nil, `{"task":%q,"event":%q}`, task, id),
	}
}

// enqueueEvents writes events in one transaction and returns them with
// their seqs.
func enqueueEvents(t *testing.T, st gateway.Store, events ...gateway.OutboxEvent) []gateway.OutboxEvent {
	t.Helper()
	if err := st.Update(t.Context(), func(tx gateway.Tx) error { return tx.Enqueue(t.Context(), events...) }); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	return events
}

// storedEvent reads an event back, whatever its status.
func storedEvent(t *testing.T, ob gateway.Outbox, id string) gateway.OutboxEvent {
	t.Helper()
	for _, status := range []string{gateway.OutboxPending, gateway.OutboxDelivered, gateway.OutboxDead} {
		events, err := ob.ListOutbox(t.Context(), status, 10000)
		if err != nil {
			t.Fatalf("ListOutbox: %v", err)
		}
		for _, e := range events {
			if e.ID == id {
				return e
			}
		}
	}
	t.Fatalf("event %s is not in the outbox", id)
	return gateway.OutboxEvent{}
}

func outboxDepth(t *testing.T, ob gateway.Outbox) map[string]int {
	t.Helper()
	d, err := ob.OutboxDepth(t.Context())
	if err != nil {
		t.Fatalf("OutboxDepth: %v", err)
	}
	return d
}

func newWorker(t *testing.T, cfg gateway.WorkerConfig) *gateway.Worker {
	t.Helper()
	w, err := gateway.NewWorker(cfg)
	if err != nil {
		t.Fatalf("NewWorker: %v", err)
	}
	return w
}

func runOnce(t *testing.T, w *gateway.Worker) int {
	t.Helper()
	n, err := w.RunOnce(t.Context())
	if err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
	return n
}

type metricsWant struct{ attempts, delivered, failures, deadLetters int64 }

func wantMetrics(t *testing.T, m *gateway.OutboxMetrics, want metricsWant) {
	t.Helper()
	got := metricsWant{m.Attempts.Load(), m.Delivered.Load(), m.Failures.Load(), m.DeadLetters.Load()}
	if got != want {
		t.Errorf("metrics (attempts, delivered, failures, dead letters) = %+v, want %+v", got, want)
	}
}

// waitFor receives from ch, failing the test when nothing comes in time.
func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

var (
	provP = gateway.ProviderDestination("PRV01")
	subS  = gateway.SubscriptionDestination("sub-1")
)

func TestNewWorkerNeedsOutbox(t *testing.T) {
	t.Parallel()
	if _, err := gateway.NewWorker(gateway.WorkerConfig{}); err == nil {
		t.Error("NewWorker without an outbox succeeded")
	}
}

func TestWorkerDelivers(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		c := newWorkerClock(w0)
		st := storetest.Open(t, engine, c.Now)
		sent := enqueueEvents(t, st, outboxEvent("e1", provP, "task-1"), outboxEvent("e2", subS, "task-1"))
		prov, sub, heard := &receiver{}, &receiver{}, &results{}
		metrics := &gateway.OutboxMetrics{}
		w := newWorker(t, gateway.WorkerConfig{
			Outbox:     st,
			Deliverers: map[string]gateway.Deliverer{"provider": prov, "subscription": sub},
			Now:        c.Now, Metrics: metrics, OnResult: heard.OnResult,
		})
		if w.Metrics() != metrics {
			t.Error("Metrics() is not the configured counters")
		}

		c.Set(w0.Add(time.Second))
		if n := runOnce(t, w); n != 2 {
			t.Fatalf("RunOnce claimed %d, want 2", n)
		}
		for _, tc := range []struct {
			r    *receiver
			want gateway.OutboxEvent
		}{{prov, sent[0]}, {sub, sent[1]}} {
			got := tc.r.attempts()
			if len(got) != 1 {
				t.Fatalf("%s: %d attempts, want 1", tc.want.Destination, len(got))
			}
			g := got[0]
			if g.ID != tc.want.ID || g.Seq != tc.want.Seq || g.Destination != tc.want.Destination || g.Kind != tc.want.Kind ||
				g.OrderKey != tc.want.OrderKey || g.TaskVersion != tc.want.TaskVersion || string(g.Payload) != string(tc.want.Payload) {
				t.Errorf("delivered %+v, want %+v", g, tc.want)
			}
			e := storedEvent(t, st, tc.want.ID)
			if e.Status != gateway.OutboxDelivered || e.Attempts != 1 || !e.DeliveredAt.Equal(w0.Add(time.Second)) || e.LastError != "" {
				t.Errorf("stored %s: status %q, attempts %d, delivered at %v, last error %q; want delivered, 1, %v, none",
					e.ID, e.Status, e.Attempts, e.DeliveredAt, e.LastError, w0.Add(time.Second))
			}
		}
		wantMetrics(t, metrics, metricsWant{attempts: 2, delivered: 2})
		got := heard.all()
		slices.SortFunc(got, func(a, b result) int { return strings.Compare(a.ID, b.ID) })
		want := []result{{"e1", gateway.OutboxDelivered, 1, nil}, {"e2", gateway.OutboxDelivered, 1, nil}}
		if !slices.Equal(got, want) {
			t.Errorf("OnResult heard %+v, want %+v", got, want)
		}
		if n := runOnce(t, w); n != 0 {
			t.Errorf("RunOnce after delivery claimed %d, want 0", n)
		}
	})
}

func TestWorkerRetriesThenDeadLetters(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		c := newWorkerClock(w0)
		st := storetest.Open(t, engine, c.Now)
		enqueueEvents(t, st, outboxEvent("e1", provP, "task-1"), outboxEvent("e2", provP, "task-1"))
		errDown := errors.New("503 Service Unavailable")
		prov := &receiver{answer: func(gateway.OutboxEvent, int) error { return errDown }}
		heard := &results{}
		policy := gateway.RetryPolicy{MaxAttempts: 4, BaseDelay: 10 * time.Second, MaxDelay: 25 * time.Second}
		w := newWorker(t, gateway.WorkerConfig{
			Outbox: st, Deliverers: map[string]gateway.Deliverer{"provider": prov},
			Retry: policy, Now: c.Now, OnResult: heard.OnResult,
		})

		// After failure n the next attempt is between half and all of the
		// base doubled n-1 times, capped.
		delays := []time.Duration{10 * time.Second, 20 * time.Second, 25 * time.Second}
		for n, d := range delays {
			at := c.Now()
			if got := runOnce(t, w); got != 1 {
				t.Fatalf("attempt %d: claimed %d, want 1 (e2 waits for e1)", n+1, got)
			}
			e := storedEvent(t, st, "e1")
			if e.Status != gateway.OutboxPending || e.Attempts != n+1 || e.LastError != errDown.Error() {
				t.Errorf("after attempt %d: status %q, attempts %d, last error %q; want pending, %d, %q",
					n+1, e.Status, e.Attempts, e.LastError, n+1, errDown)
			}
			if wait := e.NextAttempt.Sub(at); wait < d/2 || wait > d {
				t.Errorf("after attempt %d: next attempt in %v, want %v..%v", n+1, wait, d/2, d)
			}
			// Not due yet: nothing to claim, e2 included.
			c.Set(e.NextAttempt.Add(-time.Millisecond))
			if got := runOnce(t, w); got != 0 {
				t.Errorf("before the next attempt: claimed %d, want 0", got)
			}
			c.Set(e.NextAttempt)
		}
		if got := runOnce(t, w); got != 1 {
			t.Fatalf("last attempt: claimed %d, want 1", got)
		}
		e := storedEvent(t, st, "e1")
		if e.Status != gateway.OutboxDead || e.Attempts != 4 || e.LastError != errDown.Error() {
			t.Errorf("after %d attempts: status %q, attempts %d, last error %q; want dead, 4, %q",
				policy.MaxAttempts, e.Status, e.Attempts, e.LastError, errDown)
		}
		wantMetrics(t, w.Metrics(), metricsWant{attempts: 4, failures: 4, deadLetters: 1})

		got := heard.all()
		want := []result{
			{"e1", gateway.OutboxPending, 1, errDown}, {"e1", gateway.OutboxPending, 2, errDown},
			{"e1", gateway.OutboxPending, 3, errDown}, {"e1", gateway.OutboxDead, 4, errDown},
		}
		if !slices.Equal(got, want) {
			t.Errorf("OnResult heard %+v, want %+v", got, want)
		}
		// The dead letter no longer holds e2 back.
		if got := runOnce(t, w); got != 1 {
			t.Errorf("after e1 died: claimed %d, want 1", got)
		}
		if att := prov.attempts(); att[len(att)-1].ID != "e2" {
			t.Errorf("last attempt was at %s, want e2", att[len(att)-1].ID)
		}
	})
}

// A retry, then a success: OnResult hears each attempt's outcome.
func TestWorkerOnResult(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		c := newWorkerClock(w0)
		st := storetest.Open(t, engine, c.Now)
		enqueueEvents(t, st, outboxEvent("e1", subS, "task-1"), outboxEvent("e2", subS, "task-1"))
		errs := []error{errors.New("first"), errors.New("second")}
		sub := &receiver{answer: func(e gateway.OutboxEvent, n int) error {
			if e.ID == "e1" && n <= len(errs) {
				return errs[n-1]
			}
			return nil
		}}
		heard := &results{}
		w := newWorker(t, gateway.WorkerConfig{
			Outbox: st, Deliverers: map[string]gateway.Deliverer{"subscription": sub},
			Retry: gateway.RetryPolicy{MaxAttempts: 10, BaseDelay: time.Second, MaxDelay: time.Minute},
			Now:   c.Now, OnResult: heard.OnResult,
		})
		for range 10 {
			runOnce(t, w)
			c.Advance(time.Minute)
		}
		want := []result{
			{"e1", gateway.OutboxPending, 1, errs[0]}, {"e1", gateway.OutboxPending, 2, errs[1]},
			{"e1", gateway.OutboxDelivered, 3, nil}, {"e2", gateway.OutboxDelivered, 1, nil},
		}
		if got := heard.all(); !slices.Equal(got, want) {
			t.Errorf("OnResult heard %+v, want %+v", got, want)
		}
		wantMetrics(t, w.Metrics(), metricsWant{attempts: 4, delivered: 2, failures: 2})
	})
}

// TestWorkerLogsOnResultFailure: when OnResult cannot act on an outcome
// (a Subscription's status not written), the worker says so in its log;
// the outcome itself is recorded in the outbox all the same.
func TestWorkerLogsOnResultFailure(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		c := newWorkerClock(w0)
		st := storetest.Open(t, engine, c.Now)
		enqueueEvents(t, st, outboxEvent("e1", subS, "task-1"))
		var log bytes.Buffer
		w := newWorker(t, gateway.WorkerConfig{
			Outbox: st, Deliverers: map[string]gateway.Deliverer{"subscription": &receiver{}}, Now: c.Now,
			Log: slog.New(slog.NewTextHandler(&log, nil)),
			OnResult: func(context.Context, gateway.OutboxEvent, error) error {
				return errors.New("writing the Subscription's status: database is locked")
			},
		})
		runOnce(t, w)
		if got := log.String(); !strings.Contains(got, "level=ERROR") || !strings.Contains(got, "event=e1") ||
			!strings.Contains(got, "database is locked") {
			t.Errorf("the log does not tell of the failure:\n%s", got)
		}
		if e := storedEvent(t, st, "e1"); e.Status != gateway.OutboxDelivered {
			t.Errorf("e1 is %s, want delivered", e.Status)
		}
	})
}

func TestWorkerTruncatesLastError(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		c := newWorkerClock(w0)
		st := storetest.Open(t, engine, c.Now)
		long := strings.Repeat("0123456789", 200)
		// 499 bytes, then a two-byte character across the 500-byte cut.
		accented := strings.Repeat("x", 499) + strings.Repeat("é", 100)
		msgs := map[string]string{"retry": long, "dead": long, "utf8": accented}
		enqueueEvents(t, st, outboxEvent("retry", provP, "task-1"), outboxEvent("dead", provP, "task-2"),
			outboxEvent("utf8", provP, "task-3"))
		prov := &receiver{answer: func(e gateway.OutboxEvent, _ int) error {
			if e.ID == "dead" {
				return &gateway.PermanentError{Err: errors.New(msgs[e.ID])}
			}
			return errors.New(msgs[e.ID])
		}}
		w := newWorker(t, gateway.WorkerConfig{Outbox: st, Deliverers: map[string]gateway.Deliverer{"provider": prov}, Now: c.Now})
		if n := runOnce(t, w); n != 3 {
			t.Fatalf("claimed %d, want 3", n)
		}
		for id, status := range map[string]string{"retry": gateway.OutboxPending, "dead": gateway.OutboxDead, "utf8": gateway.OutboxPending} {
			e := storedEvent(t, st, id)
			if e.Status != status || e.Attempts != 1 {
				t.Errorf("%s: status %q, attempts %d; want %s, 1 (was the attempt recorded?)", id, e.Status, e.Attempts, status)
			}
			if len(e.LastError) > 500 || len(e.LastError) < 498 || !strings.HasPrefix(msgs[id], e.LastError) {
				t.Errorf("%s: last error of %d bytes, want the first 500 bytes (or so) of the error", id, len(e.LastError))
			}
			if !utf8.ValidString(e.LastError) {
				t.Errorf("%s: last error is not valid UTF-8: ...%q", id, e.LastError[max(len(e.LastError)-4, 0):])
			}
		}
	})
}

func TestWorkerPermanentError(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		c := newWorkerClock(w0)
		st := storetest.Open(t, engine, c.Now)
		enqueueEvents(t, st, outboxEvent("e1", provP, "task-1"), outboxEvent("e2", provP, "task-2"))
		prov := &receiver{answer: func(e gateway.OutboxEvent, _ int) error {
			if e.ID == "e1" {
				return &gateway.PermanentError{Err: errors.New("404 no such case")}
			}
			return fmt.Errorf("push: %w", &gateway.PermanentError{Err: errors.New("410 gone")})
		}}
		heard := &results{}
		w := newWorker(t, gateway.WorkerConfig{
			Outbox: st, Deliverers: map[string]gateway.Deliverer{"provider": prov},
			Retry: gateway.RetryPolicy{MaxAttempts: 10, BaseDelay: time.Second, MaxDelay: time.Minute},
			Now:   c.Now, OnResult: heard.OnResult,
		})
		runOnce(t, w)
		for id, msg := range map[string]string{"e1": "404 no such case", "e2": "push: 410 gone"} {
			e := storedEvent(t, st, id)
			if e.Status != gateway.OutboxDead || e.Attempts != 1 || e.LastError != msg {
				t.Errorf("%s: status %q, attempts %d, last error %q; want dead, 1, %q", id, e.Status, e.Attempts, e.LastError, msg)
			}
		}
		wantMetrics(t, w.Metrics(), metricsWant{attempts: 2, failures: 2, deadLetters: 2})
		for _, r := range heard.all() {
			var perm *gateway.PermanentError
			if r.Status != gateway.OutboxDead || !errors.As(r.Err, &perm) {
				t.Errorf("OnResult heard %+v, want dead with a *PermanentError", r)
			}
		}
		if n := len(heard.all()); n != 2 {
			t.Errorf("OnResult heard %d outcomes, want 2", n)
		}
	})
}

func TestWorkerDiscard(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		c := newWorkerClock(w0)
		st := storetest.Open(t, engine, c.Now)
		enqueueEvents(t, st, outboxEvent("e1", subS, "task-1"), outboxEvent("e2", subS, "task-2"), outboxEvent("e3", subS, "task-1"))
		sub := &receiver{answer: func(e gateway.OutboxEvent, _ int) error {
			if e.ID == "e2" {
				return fmt.Errorf("subscription sub-1: %w", gateway.ErrDiscard)
			}
			return gateway.ErrDiscard
		}}
		heard := &results{}
		w := newWorker(t, gateway.WorkerConfig{Outbox: st, Deliverers: map[string]gateway.Deliverer{"subscription": sub},
			Now: c.Now, OnResult: heard.OnResult})
		runOnce(t, w)
		runOnce(t, w) // e3, after e1
		for _, id := range []string{"e1", "e2", "e3"} {
			if e := storedEvent(t, st, id); e.Status != gateway.OutboxDelivered || e.LastError != "" {
				t.Errorf("%s: status %q, last error %q; want delivered, none", id, e.Status, e.LastError)
			}
		}
		m := w.Metrics()
		if m.Delivered.Load() != 0 || m.Failures.Load() != 0 || m.DeadLetters.Load() != 0 {
			t.Errorf("discards counted: delivered %d, failures %d, dead letters %d; want 0, 0, 0",
				m.Delivered.Load(), m.Failures.Load(), m.DeadLetters.Load())
		}
		if got := heard.all(); len(got) != 0 {
			t.Errorf("OnResult heard discards: %+v", got)
		}
	})
}

func TestWorkerUnknownDestinationKind(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		c := newWorkerClock(w0)
		st := storetest.Open(t, engine, c.Now)
		enqueueEvents(t, st, outboxEvent("fax", "fax:0191", "task-1"), outboxEvent("sub", subS, "task-1"),
			outboxEvent("prov", provP, "task-1"))
		prov := &receiver{}
		heard := &results{}
		w := newWorker(t, gateway.WorkerConfig{Outbox: st, Deliverers: map[string]gateway.Deliverer{"provider": prov},
			Retry: gateway.RetryPolicy{MaxAttempts: 10, BaseDelay: time.Second, MaxDelay: time.Minute},
			Now:   c.Now, OnResult: heard.OnResult})
		if n := runOnce(t, w); n != 3 {
			t.Fatalf("claimed %d, want 3", n)
		}
		for _, id := range []string{"fax", "sub"} {
			e := storedEvent(t, st, id)
			if e.Status != gateway.OutboxDead || e.Attempts != 1 || !strings.Contains(e.LastError, "no adapter") {
				t.Errorf("%s: status %q, attempts %d, last error %q; want dead, 1, no adapter", id, e.Status, e.Attempts, e.LastError)
			}
		}
		if e := storedEvent(t, st, "prov"); e.Status != gateway.OutboxDelivered {
			t.Errorf("prov: status %q, want delivered", e.Status)
		}
		// No deliverer was called for the unknown kinds.
		wantMetrics(t, w.Metrics(), metricsWant{attempts: 1, delivered: 1, failures: 2, deadLetters: 2})
		perms := 0
		for _, r := range heard.all() {
			var perm *gateway.PermanentError
			if errors.As(r.Err, &perm) && r.Status == gateway.OutboxDead {
				perms++
			}
		}
		if perms != 2 {
			t.Errorf("OnResult heard %+v, want two dead letters with a *PermanentError", heard.all())
		}
	})
}

func TestRetryPolicyDelay(t *testing.T) {
	t.Parallel()
	const almostOne = 1 - 1e-9
	p := gateway.RetryPolicy{MaxAttempts: 10, BaseDelay: time.Second, MaxDelay: time.Minute}
	cases := []struct {
		p        gateway.RetryPolicy
		n        int
		rnd      float64
		min, max time.Duration // inclusive
	}{
		{p, 1, 0, 500 * time.Millisecond, 500 * time.Millisecond},
		{p, 1, almostOne, 999 * time.Millisecond, time.Second},
		{p, 1, 0.5, 750 * time.Millisecond, 750 * time.Millisecond},
		{p, 2, 0, time.Second, time.Second},
		{p, 2, almostOne, 1999 * time.Millisecond, 2 * time.Second},
		{p, 6, 0, 16 * time.Second, 16 * time.Second},
		{p, 6, almostOne, 31999 * time.Millisecond, 32 * time.Second},
		// 64s, capped at a minute.
		{p, 7, 0, 30 * time.Second, 30 * time.Second},
		{p, 7, almostOne, 59999 * time.Millisecond, time.Minute},
		{p, 100, 0, 30 * time.Second, 30 * time.Second},
		{p, 1 << 30, almostOne, 59999 * time.Millisecond, time.Minute},
		{gateway.DefaultRetryPolicy, 64, 0, 3 * time.Hour, 3 * time.Hour},
		{gateway.DefaultRetryPolicy, 1 << 40, almostOne, 6*time.Hour - time.Millisecond, 6 * time.Hour},
		{gateway.DefaultRetryPolicy, 1, 0, 15 * time.Second, 15 * time.Second},
		// A base over the cap is capped.
		{gateway.RetryPolicy{MaxAttempts: 3, BaseDelay: time.Hour, MaxDelay: time.Minute}, 1, 0, 30 * time.Second, 30 * time.Second},
	}
	for _, c := range cases {
		got := c.p.Delay(c.n, func() float64 { return c.rnd })
		if got < c.min || got > c.max {
			t.Errorf("%+v.Delay(%d, %v) = %v, want %v..%v", c.p, c.n, c.rnd, got, c.min, c.max)
		}
	}
	// With real randomness, every delay is within its bounds.
	rnd := rand.New(rand.NewPCG(1, 2))
	for n := 1; n <= 40; n++ {
		d := min(p.BaseDelay<<min(n-1, 20), p.MaxDelay)
		for range 50 {
			if got := p.Delay(n, rnd.Float64); got < d/2 || got > d {
				t.Fatalf("Delay(%d) = %v, want %v..%v", n, got, d/2, d)
			}
		}
	}
}

func TestProviderRoutes(t *testing.T) {
	t.Parallel()
	one, two := &receiver{}, &receiver{}
	errDown := errors.New("connection refused")
	two.answer = func(gateway.OutboxEvent, int) error { return errDown }
	routes := gateway.ProviderRoutes{"PRV01": one, "PRV02": two}
	ctx := t.Context()

	if err := routes.Deliver(ctx, outboxEvent("a", gateway.ProviderDestination("PRV01"), "t")); err != nil {
		t.Errorf("PRV01: %v", err)
	}
	if err := routes.Deliver(ctx, outboxEvent("b", gateway.ProviderDestination("PRV02"), "t")); !errors.Is(err, errDown) {
		t.Errorf("PRV02: %v, want the adapter's own error", err)
	}
	var perm *gateway.PermanentError
	if err := routes.Deliver(ctx, outboxEvent("c", gateway.ProviderDestination("PRV03"), "t")); !errors.As(err, &perm) ||
		!strings.Contains(err.Error(), "PRV03") {
		t.Errorf("PRV03 (no adapter): %v, want a *PermanentError naming PRV03", err)
	}
	if got := eventIDsOf(one.attempts()); !slices.Equal(got, []string{"a"}) {
		t.Errorf("PRV01's adapter got %v, want [a]", got)
	}
	if got := eventIDsOf(two.attempts()); !slices.Equal(got, []string{"b"}) {
		t.Errorf("PRV02's adapter got %v, want [b]", got)
	}

	// Through a Worker: an unconfigured provider is dead-lettered at once.
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		c := newWorkerClock(w0)
		st := storetest.Open(t, engine, c.Now)
		enqueueEvents(t, st, outboxEvent("x", gateway.ProviderDestination("PRV09"), "t"))
		w := newWorker(t, gateway.WorkerConfig{Outbox: st, Deliverers: map[string]gateway.Deliverer{"provider": routes}, Now: c.Now})
		runOnce(t, w)
		if e := storedEvent(t, st, "x"); e.Status != gateway.OutboxDead || e.Attempts != 1 {
			t.Errorf("unconfigured provider: status %q, attempts %d; want dead, 1", e.Status, e.Attempts)
		}
	})
}

func eventIDsOf(events []gateway.OutboxEvent) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

// flakyFinish is the store with FinishOutbox failing now and then, as when
// the database connection drops after a delivery: the attempt goes
// unrecorded and the event is delivered again once its lease runs out.
type flakyFinish struct {
	gateway.Outbox
	mu      sync.Mutex
	rnd     *rand.Rand
	dropped int
}

func (f *flakyFinish) FinishOutbox(ctx context.Context, owner string, e gateway.OutboxEvent) (bool, error) {
	f.mu.Lock()
	drop := f.rnd.IntN(5) == 0
	if drop {
		f.dropped++
	}
	f.mu.Unlock()
	if drop {
		return false, errors.New("connection reset")
	}
	return f.Outbox.FinishOutbox(ctx, owner, e)
}

// Whatever fails, each destination gets each Task's events in seq order,
// every one at least once, a repeat with the same ID.
func TestWorkerOrderPerTask(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		c := newWorkerClock(w0)
		st := storetest.Open(t, engine, c.Now)
		const tasks, perTask = 6, 8
		var sent []gateway.OutboxEvent
		for i := range perTask {
			var batch []gateway.OutboxEvent
			for k := range tasks {
				dest := provP
				if k%2 == 1 {
					dest = subS
				}
				batch = append(batch, outboxEvent(fmt.Sprintf("t%d-e%d", k, i), dest, fmt.Sprintf("task-%d", k)))
				if k == 0 { // task-0 goes to both destinations
					batch = append(batch, outboxEvent(fmt.Sprintf("t%d-e%d-sub", k, i), subS, "task-0"))
				}
			}
			sent = append(sent, enqueueEvents(t, st, batch...)...)
		}

		var (
			mu        sync.Mutex
			rnd       = rand.New(rand.NewPCG(7, 11))
			successes []gateway.OutboxEvent
			failures  int
		)
		flaky := deliverFunc(func(_ context.Context, e gateway.OutboxEvent) error {
			mu.Lock()
			defer mu.Unlock()
			if rnd.IntN(2) == 0 {
				failures++
				return errors.New("flaky receiver")
			}
			successes = append(successes, e)
			return nil
		})
		ob := &flakyFinish{Outbox: st, rnd: rand.New(rand.NewPCG(3, 5))}
		policy := gateway.RetryPolicy{MaxAttempts: 1000, BaseDelay: time.Second, MaxDelay: 8 * time.Second}
		w := newWorker(t, gateway.WorkerConfig{
			Outbox: ob, Deliverers: map[string]gateway.Deliverer{"provider": flaky, "subscription": flaky},
			Retry: policy, Batch: 4, Lease: 5 * time.Second, Now: c.Now,
		})
		rounds := 0
		for ; rounds < 5000 && outboxDepth(t, st)[gateway.OutboxPending] > 0; rounds++ {
			runOnce(t, w)
			// Past the longest retry delay and the lease: whatever is
			// pending is due again.
			c.Advance(policy.MaxDelay + time.Second)
		}
		if d := outboxDepth(t, st); d[gateway.OutboxPending] != 0 || d[gateway.OutboxDelivered] != len(sent) || d[gateway.OutboxDead] != 0 {
			t.Fatalf("after %d rounds: depth %v, want all %d delivered", rounds, d, len(sent))
		}

		type queue struct{ dest, task string }
		want := map[queue][]string{}
		seqOf := map[string]int64{}
		for _, e := range sent {
			q := queue{e.Destination, e.OrderKey}
			want[q] = append(want[q], e.ID)
			seqOf[e.ID] = e.Seq
		}
		got := map[queue][]string{}
		dups := 0
		for _, e := range successes {
			if seq, ok := seqOf[e.ID]; !ok || seq != e.Seq {
				t.Errorf("delivered %s with seq %d: no such event was sent", e.ID, e.Seq)
			}
			q := queue{e.Destination, e.OrderKey}
			if ids := got[q]; len(ids) > 0 && ids[len(ids)-1] == e.ID {
				dups++ // a repeat, right after the first: the receiver drops it by its ID
				continue
			}
			got[q] = append(got[q], e.ID)
		}
		for q, ids := range want {
			if !slices.Equal(got[q], ids) {
				t.Errorf("%s about %s: delivered (repeats dropped) %v, want %v", q.dest, q.task, got[q], ids)
			}
		}
		m := w.Metrics()
		if m.Delivered.Load() != int64(len(successes)) || m.Failures.Load() != int64(failures) ||
			m.Attempts.Load() != int64(len(successes)+failures) || m.DeadLetters.Load() != 0 {
			t.Errorf("metrics: attempts %d, delivered %d, failures %d, dead %d; the receiver saw %d successes, %d failures",
				m.Attempts.Load(), m.Delivered.Load(), m.Failures.Load(), m.DeadLetters.Load(), len(successes), failures)
		}
		t.Logf("%d events, %d rounds, %d successes (%d repeats), %d failures, %d finishes lost",
			len(sent), rounds, len(successes), dups, failures, ob.dropped)
		if ob.dropped == 0 || dups == 0 {
			t.Errorf("no finish was lost (%d) or nothing was delivered twice (%d): the test did not test repeats", ob.dropped, dups)
		}
	})
}

// claimWatch is the store, telling the test when each claim is done.
type claimWatch struct {
	gateway.Outbox
	claimed chan int
}

func (c *claimWatch) ClaimOutbox(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]gateway.OutboxEvent, error) {
	events, err := c.Outbox.ClaimOutbox(ctx, owner, now, lease, limit)
	select {
	case c.claimed <- len(events):
	default:
	}
	return events, err
}

// runWorker runs w until the test cancels it; the returned channel closes
// when Run has returned.
func runWorker(t *testing.T, w *gateway.Worker) (cancel func(), done <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		w.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ch:
		case <-time.After(waitLimit):
			t.Error("Run did not return after its context was cancelled")
		}
	})
	return cancel, ch
}

func TestWorkerRunWake(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		c := newWorkerClock(w0)
		st := storetest.Open(t, engine, c.Now)
		delivered := make(chan string, 10)
		d := deliverFunc(func(_ context.Context, e gateway.OutboxEvent) error { delivered <- e.ID; return nil })
		watch := &claimWatch{Outbox: st, claimed: make(chan int, 1)}
		// A poll of an hour: only Wake can bring the worker back in time.
		w := newWorker(t, gateway.WorkerConfig{Outbox: watch, Deliverers: map[string]gateway.Deliverer{"provider": d},
			Poll: time.Hour, Now: c.Now})
		cancel, done := runWorker(t, w)
		if n := waitFor(t, watch.claimed, "the first claim"); n != 0 {
			t.Fatalf("first claim took %d events of an empty outbox", n)
		}

		enqueueEvents(t, st, outboxEvent("e1", provP, "task-1"))
		w.Wake()
		if id := waitFor(t, delivered, "a delivery after Wake"); id != "e1" {
			t.Errorf("delivered %s, want e1", id)
		}
		enqueueEvents(t, st, outboxEvent("e2", provP, "task-1"))
		w.Wake()
		w.Wake() // a second wake before the first is seen does no harm
		if id := waitFor(t, delivered, "a delivery after the second Wake"); id != "e2" {
			t.Errorf("delivered %s, want e2", id)
		}

		cancel()
		waitFor(t, done, "Run to return")
		for _, id := range []string{"e1", "e2"} {
			if e := storedEvent(t, st, id); e.Status != gateway.OutboxDelivered {
				t.Errorf("%s: status %q, want delivered", id, e.Status)
			}
		}
	})
}

func TestWorkerRunPolls(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		c := newWorkerClock(w0)
		st := storetest.Open(t, engine, c.Now)
		delivered := make(chan string, 10)
		d := deliverFunc(func(_ context.Context, e gateway.OutboxEvent) error { delivered <- e.ID; return nil })
		watch := &claimWatch{Outbox: st, claimed: make(chan int, 1)}
		w := newWorker(t, gateway.WorkerConfig{Outbox: watch, Deliverers: map[string]gateway.Deliverer{"provider": d},
			Poll: 10 * time.Millisecond, Now: c.Now})
		cancel, done := runWorker(t, w)
		waitFor(t, watch.claimed, "the first claim")
		enqueueEvents(t, st, outboxEvent("e1", provP, "task-1"))
		if id := waitFor(t, delivered, "a delivery found by polling"); id != "e1" {
			t.Errorf("delivered %s, want e1", id)
		}
		cancel()
		waitFor(t, done, "Run to return")
	})
}

// A full batch is followed by another claim at once, without waiting for
// the poll.
func TestWorkerRunDrainsFullBatches(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		c := newWorkerClock(w0)
		st := storetest.Open(t, engine, c.Now)
		var events []gateway.OutboxEvent
		for i := range 10 {
			events = append(events, outboxEvent(fmt.Sprintf("e%d", i), provP, fmt.Sprintf("task-%d", i)))
		}
		enqueueEvents(t, st, events...)
		delivered := make(chan string, 10)
		d := deliverFunc(func(_ context.Context, e gateway.OutboxEvent) error { delivered <- e.ID; return nil })
		w := newWorker(t, gateway.WorkerConfig{Outbox: st, Deliverers: map[string]gateway.Deliverer{"provider": d},
			Batch: 2, Poll: time.Hour, Now: c.Now})
		cancel, done := runWorker(t, w)
		for range 10 {
			waitFor(t, delivered, "the next delivery")
		}
		cancel()
		waitFor(t, done, "Run to return")
		if d := outboxDepth(t, st); d[gateway.OutboxDelivered] != 10 {
			t.Errorf("depth %v, want 10 delivered", d)
		}
	})
}

// Run returns once its context is cancelled, but not before the delivery
// under way has finished and been recorded.
func TestWorkerRunFinishesDeliveryUnderWay(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		c := newWorkerClock(w0)
		st := storetest.Open(t, engine, c.Now)
		started, release := make(chan string, 1), make(chan struct{})
		ctxErr := make(chan error, 1)
		d := deliverFunc(func(ctx context.Context, e gateway.OutboxEvent) error {
			started <- e.ID
			<-release
			ctxErr <- ctx.Err()
			return nil
		})
		heard := &results{}
		w := newWorker(t, gateway.WorkerConfig{Outbox: st, Deliverers: map[string]gateway.Deliverer{"provider": d},
			Poll: 10 * time.Millisecond, Now: c.Now, OnResult: heard.OnResult})
		enqueueEvents(t, st, outboxEvent("e1", provP, "task-1"))
		cancel, done := runWorker(t, w)
		waitFor(t, started, "the delivery to start")
		cancel()
		select {
		case <-done:
			t.Fatal("Run returned while a delivery was under way")
		case <-time.After(100 * time.Millisecond):
		}
		close(release)
		waitFor(t, done, "Run to return after the delivery")
		if err := <-ctxErr; err != nil {
			t.Errorf("the delivery's context ended with Run's: %v", err)
		}
		if e := storedEvent(t, st, "e1"); e.Status != gateway.OutboxDelivered || e.Attempts != 1 {
			t.Errorf("e1: status %q, attempts %d; want delivered, 1", e.Status, e.Attempts)
		}
		if got := heard.all(); len(got) != 1 || got[0].Err != nil {
			t.Errorf("OnResult heard %+v, want one success", got)
		}
	})
}

// blocker is a Deliverer that holds each delivery until released.
type blocker struct {
	started chan gateway.OutboxEvent
	release chan struct{}
	err     error
}

func newBlocker(err error) *blocker {
	return &blocker{started: make(chan gateway.OutboxEvent, 10), release: make(chan struct{}), err: err}
}

func (b *blocker) Deliver(_ context.Context, e gateway.OutboxEvent) error {
	b.started <- e
	<-b.release
	return b.err
}

// The process dies while delivering: after a restart, a new worker takes
// the event over once the lease has run out and delivers it, with its ID.
func TestWorkerRestartMidDelivery(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		cfg := storetest.Config(t, engine)
		c1 := newWorkerClock(w0)
		cfg.Now = c1.Now
		s1, err := store.Open(context.Background(), cfg)
		if err != nil {
			t.Fatalf("store.Open: %v", err)
		}
		sent := enqueueEvents(t, s1, outboxEvent("e1", provP, "task-1"), outboxEvent("e2", provP, "task-1"))
		const lease = time.Minute
		b := newBlocker(nil)
		w1 := newWorker(t, gateway.WorkerConfig{Outbox: s1, Deliverers: map[string]gateway.Deliverer{"provider": b},
			Lease: lease, Now: c1.Now})
		w1done := make(chan struct{})
		go func() {
			defer close(w1done)
			w1.RunOnce(context.Background()) // its outcome is lost with its store
		}()
		first := waitFor(t, b.started, "worker 1's delivery")
		if err := s1.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		t.Cleanup(func() {
			close(b.release)
			<-w1done
		})

		c2 := newWorkerClock(w0.Add(lease / 2))
		cfg.Now = c2.Now
		s2, err := store.Open(context.Background(), cfg)
		if err != nil {
			t.Fatalf("store.Open after the restart: %v", err)
		}
		t.Cleanup(func() { s2.Close() })
		r := &receiver{}
		w2 := newWorker(t, gateway.WorkerConfig{Outbox: s2, Deliverers: map[string]gateway.Deliverer{"provider": r},
			Lease: lease, Now: c2.Now})
		if n := runOnce(t, w2); n != 0 {
			t.Errorf("worker 2 claimed %d during worker 1's lease, want 0", n)
		}
		c2.Set(w0.Add(lease + time.Second))
		if n := runOnce(t, w2); n != 1 {
			t.Fatalf("worker 2 claimed %d after worker 1's lease, want 1", n)
		}
		runOnce(t, w2)
		got := r.attempts()
		if ids := eventIDsOf(got); !slices.Equal(ids, []string{"e1", "e2"}) {
			t.Fatalf("worker 2 delivered %v, want [e1 e2]", ids)
		}
		if first.ID != sent[0].ID || got[0].ID != first.ID || got[0].Seq != first.Seq || string(got[0].Payload) != string(first.Payload) {
			t.Errorf("worker 1 delivered %s (seq %d), worker 2 %s (seq %d): want the same event, e1", first.ID, first.Seq, got[0].ID, got[0].Seq)
		}
		for _, id := range []string{"e1", "e2"} {
			if e := storedEvent(t, s2, id); e.Status != gateway.OutboxDelivered || e.Attempts != 1 {
				t.Errorf("%s: status %q, attempts %d; want delivered, 1", id, e.Status, e.Attempts)
			}
		}
	})
}

// A worker whose lease was taken over cannot undo the new owner's outcome
// when its own attempt ends late.
func TestWorkerLateOutcomeAfterTakeover(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		c1 := newWorkerClock(w0)
		st := storetest.Open(t, engine, c1.Now)
		enqueueEvents(t, st, outboxEvent("e1", subS, "task-1"))
		const lease = time.Minute
		b := newBlocker(errors.New("timeout"))
		var (
			heardMu sync.Mutex
			heard   []error
		)
		w1 := newWorker(t, gateway.WorkerConfig{Outbox: st, Deliverers: map[string]gateway.Deliverer{"subscription": b},
			Lease: lease, Now: c1.Now, OnResult: func(_ context.Context, _ gateway.OutboxEvent, err error) error {
				heardMu.Lock()
				defer heardMu.Unlock()
				heard = append(heard, err)
				return nil
			}})
		w1done := make(chan struct{})
		go func() {
			defer close(w1done)
			if _, err := w1.RunOnce(context.Background()); err != nil {
				t.Errorf("worker 1: %v", err)
			}
		}()
		waitFor(t, b.started, "worker 1's delivery")

		c2 := newWorkerClock(w0.Add(lease + time.Second))
		r := &receiver{}
		w2 := newWorker(t, gateway.WorkerConfig{Outbox: st, Deliverers: map[string]gateway.Deliverer{"subscription": r},
			Lease: lease, Now: c2.Now})
		if n := runOnce(t, w2); n != 1 {
			t.Fatalf("worker 2 claimed %d, want 1", n)
		}
		c1.Set(w0.Add(lease + 2*time.Second))
		close(b.release)
		waitFor(t, w1done, "worker 1 to finish")

		e := storedEvent(t, st, "e1")
		if e.Status != gateway.OutboxDelivered || e.Attempts != 1 || e.LastError != "" {
			t.Errorf("e1: status %q, attempts %d, last error %q; want delivered, 1, none (worker 2's outcome)", e.Status, e.Attempts, e.LastError)
		}
		// Nor does anyone hear worker 1's late failure (it would put a
		// Subscription that was just delivered to into error).
		heardMu.Lock()
		if len(heard) != 0 {
			t.Errorf("worker 1's OnResult heard %v after the event was taken over", heard)
		}
		heardMu.Unlock()
		c2.Advance(time.Hour)
		if n := runOnce(t, w2); n != 0 {
			t.Errorf("claimed %d after delivery, want 0", n)
		}
	})
}

// Several workers over one store deliver everything once, in order per
// Task.
func TestWorkersTogether(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		c := newWorkerClock(w0)
		st := storetest.Open(t, engine, c.Now)
		const tasks, perTask = 10, 10
		var sent []gateway.OutboxEvent
		for i := range perTask {
			var batch []gateway.OutboxEvent
			for k := range tasks {
				batch = append(batch, outboxEvent(fmt.Sprintf("t%d-e%d", k, i), provP, fmt.Sprintf("task-%d", k)))
			}
			sent = append(sent, enqueueEvents(t, st, batch...)...)
		}
		var (
			mu  sync.Mutex
			got = map[string][]string{} // Task → event ids, in delivery order
			n   int
		)
		all := make(chan struct{})
		d := deliverFunc(func(_ context.Context, e gateway.OutboxEvent) error {
			mu.Lock()
			defer mu.Unlock()
			got[e.OrderKey] = append(got[e.OrderKey], e.ID)
			if n++; n == len(sent) {
				close(all)
			}
			return nil
		})
		var cancels []func()
		var dones []<-chan struct{}
		for range 3 {
			w := newWorker(t, gateway.WorkerConfig{Outbox: st, Deliverers: map[string]gateway.Deliverer{"provider": d},
				Batch: 3, Poll: 5 * time.Millisecond, Now: c.Now})
			cancel, done := runWorker(t, w)
			cancels, dones = append(cancels, cancel), append(dones, done)
		}
		waitFor(t, all, "every delivery")
		for i, cancel := range cancels {
			cancel()
			waitFor(t, dones[i], "Run to return")
		}
		want := map[string][]string{}
		for _, e := range sent {
			want[e.OrderKey] = append(want[e.OrderKey], e.ID)
		}
		mu.Lock()
		defer mu.Unlock()
		if n != len(sent) {
			t.Errorf("%d deliveries of %d events", n, len(sent))
		}
		for task, ids := range want {
			if !slices.Equal(got[task], ids) {
				t.Errorf("%s delivered %v, want %v", task, got[task], ids)
			}
		}
		if d := outboxDepth(t, st); d[gateway.OutboxDelivered] != len(sent) {
			t.Errorf("depth %v, want %d delivered", d, len(sent))
		}
	})
}
