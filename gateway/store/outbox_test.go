package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// Destinations the outbox tests deliver to.
var (
	destP = gateway.ProviderDestination(providerX)
	destQ = gateway.ProviderDestination(providerY)
	destS = gateway.SubscriptionDestination("sub-1")
)

// openOutbox opens a store whose clock stands still at t0, so every event
// is enqueued at t0 and the tests choose each claim's now.
func openOutbox(t *testing.T, engine string) *store.Store {
	t.Helper()
	return storetest.Open(t, engine, newClock(t0, 0).Now)
}

// obEvent returns an event about task for dest.
func obEvent(id, dest, task string) gateway.OutboxEvent {
	return gateway.OutboxEvent{
		ID: id, Destination: dest, Kind: gateway.EventTask, OrderKey: task, TaskVersion: 3,
		Payload: fmt.Appendf(nil, `{"resourceType":"Task","id":%q,"event":%q}`, task, id),
	}
}

// enqueue writes events in one transaction and returns them as Enqueue
// completed them (Seq, Status, times).
func enqueue(t *testing.T, s gateway.Store, events ...gateway.OutboxEvent) []gateway.OutboxEvent {
	t.Helper()
	err := s.Update(t.Context(), func(tx gateway.Tx) error { return tx.Enqueue(t.Context(), events...) })
	if err != nil {
		t.Fatalf("Update(Enqueue): %v", err)
	}
	return events
}

func claim(t *testing.T, s gateway.Outbox, owner string, now time.Time, lease time.Duration, limit int) []gateway.OutboxEvent {
	t.Helper()
	events, err := s.ClaimOutbox(t.Context(), owner, now, lease, limit)
	if err != nil {
		t.Fatalf("ClaimOutbox(%s, %v): %v", owner, now, err)
	}
	return events
}

// finish records owner's outcome for e, which must count (owner holds the
// lease) when counts says so, and must not otherwise.
func finish(t *testing.T, s gateway.Outbox, owner string, e gateway.OutboxEvent, counts ...bool) {
	t.Helper()
	want := len(counts) == 0 || counts[0]
	got, err := s.FinishOutbox(t.Context(), owner, e)
	if err != nil {
		t.Fatalf("FinishOutbox(%s, %s): %v", owner, e.ID, err)
	}
	if got != want {
		t.Errorf("FinishOutbox(%s, %s) counted %v, want %v", owner, e.ID, got, want)
	}
}

func list(t *testing.T, s gateway.Outbox, status string) []gateway.OutboxEvent {
	t.Helper()
	events, err := s.ListOutbox(t.Context(), status, 10000)
	if err != nil {
		t.Fatalf("ListOutbox(%s): %v", status, err)
	}
	return events
}

func depth(t *testing.T, s gateway.Outbox) map[string]int {
	t.Helper()
	d, err := s.OutboxDepth(t.Context())
	if err != nil {
		t.Fatalf("OutboxDepth: %v", err)
	}
	return d
}

// event finds an event by id, whatever its status.
func event(t *testing.T, s gateway.Outbox, id string) gateway.OutboxEvent {
	t.Helper()
	for _, status := range []string{gateway.OutboxPending, gateway.OutboxDelivered, gateway.OutboxDead} {
		for _, e := range list(t, s, status) {
			if e.ID == id {
				return e
			}
		}
	}
	t.Fatalf("event %s is not in the outbox", id)
	return gateway.OutboxEvent{}
}

func eventIDs(events []gateway.OutboxEvent) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

// wantClaimed stops the test unless got holds exactly the events ids, in
// that order: what follows a claim reads the events it claimed.
func wantClaimed(t *testing.T, what string, got []gateway.OutboxEvent, ids ...string) {
	t.Helper()
	if g := eventIDs(got); !slices.Equal(g, ids) {
		t.Fatalf("%s: claimed %v, want %v", what, g, ids)
	}
}

// wantDepth checks the outbox's depth by status, and that the backlog the
// metrics show is its pending and dead part.
func wantDepth(t *testing.T, s *store.Store, pending, delivered, dead int) {
	t.Helper()
	want := map[string]int{gateway.OutboxPending: pending, gateway.OutboxDelivered: delivered, gateway.OutboxDead: dead}
	if got := depth(t, s); !mapsEqual(got, want) {
		t.Errorf("OutboxDepth = %v, want %v", got, want)
	}
	backlog, err := s.OutboxBacklog(t.Context())
	if want := map[string]int{gateway.OutboxPending: pending, gateway.OutboxDead: dead}; err != nil || !mapsEqual(backlog, want) {
		t.Errorf("OutboxBacklog = %v, %v; want %v", backlog, err, want)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// wantNotFoundError fails the test unless err is a *gateway.Error of
// CodeNotFound.
func wantNotFoundError(t *testing.T, err error, what string) {
	t.Helper()
	var ge *gateway.Error
	if !errors.As(err, &ge) {
		t.Errorf("%s: err = %v (%T), want a *gateway.Error", what, err, err)
		return
	}
	if ge.Code != gateway.CodeNotFound {
		t.Errorf("%s: code %q (%v), want not_found", what, ge.Code, err)
	}
}

// delivered, retry and dead return e as its owner would finish it.
func delivered(e gateway.OutboxEvent, at time.Time) gateway.OutboxEvent {
	e.Attempts++
	e.Status, e.DeliveredAt, e.LastError = gateway.OutboxDelivered, at, ""
	return e
}

func retry(e gateway.OutboxEvent, next time.Time, msg string) gateway.OutboxEvent {
	e.Attempts++
	e.Status, e.NextAttempt, e.LastError = gateway.OutboxPending, next, msg
	return e
}

func dead(e gateway.OutboxEvent, msg string) gateway.OutboxEvent {
	e.Attempts++
	e.Status, e.LastError = gateway.OutboxDead, msg
	return e
}

func TestOutboxEnqueueRollsBack(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		s := openOutbox(t, engine)
		ctx := t.Context()
		errBoom := errors.New("boom")

		// The write function fails after enqueueing: nothing is left.
		err := s.Update(ctx, func(tx gateway.Tx) error {
			if err := tx.Enqueue(ctx, obEvent("a", destP, "task-1"), obEvent("b", destS, "task-1")); err != nil {
				return err
			}
			return errBoom
		})
		if !errors.Is(err, errBoom) {
			t.Fatalf("Update = %v, want the write function's error", err)
		}
		wantDepth(t, s, 0, 0, 0)
		wantClaimed(t, "after a rolled back enqueue", claim(t, s, "o1", t0.Add(time.Hour), time.Minute, 10))

		// An Enqueue that fails (the id is taken) takes the events the
		// transaction enqueued before it down with it.
		enqueue(t, s, obEvent("taken", destP, "task-2"))
		err = s.Update(ctx, func(tx gateway.Tx) error {
			if err := tx.Enqueue(ctx, obEvent("c", destP, "task-3")); err != nil {
				return err
			}
			return tx.Enqueue(ctx, obEvent("taken", destP, "task-4"))
		})
		if err == nil {
			t.Fatal("Update enqueueing an id twice succeeded")
		}
		if got := eventIDs(list(t, s, gateway.OutboxPending)); !slices.Equal(got, []string{"taken"}) {
			t.Errorf("pending after a failed enqueue: %v, want [taken]", got)
		}
		wantDepth(t, s, 1, 0, 0)
	})
}

func TestOutboxEnqueue(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		c := newClock(t0, 0)
		s := storetest.Open(t, engine, c.Now)
		ctx := t.Context()

		first := enqueue(t, s, obEvent("a", destP, "task-1"), obEvent("b", destS, "task-2"))
		var txNow time.Time
		second := []gateway.OutboxEvent{obEvent("c", destP, "task-1")}
		c.Set(t0.Add(time.Minute))
		if err := s.Update(ctx, func(tx gateway.Tx) error {
			txNow = tx.Now()
			return tx.Enqueue(ctx, second...)
		}); err != nil {
			t.Fatal(err)
		}
		want := append(first, second...)
		for i, e := range want {
			if e.Status != gateway.OutboxPending {
				t.Errorf("Enqueue set %s's status to %q, want pending", e.ID, e.Status)
			}
			if e.Seq <= 0 || i > 0 && e.Seq <= want[i-1].Seq {
				t.Errorf("Enqueue gave %s seq %d after %d: want it increasing", e.ID, e.Seq, want[max(i-1, 0)].Seq)
			}
		}
		if !first[0].CreatedAt.Equal(t0) || !first[0].NextAttempt.Equal(t0) {
			t.Errorf("first transaction's event: created %v, next attempt %v, want both %v", first[0].CreatedAt, first[0].NextAttempt, t0)
		}
		if !second[0].CreatedAt.Equal(txNow) || !second[0].NextAttempt.Equal(txNow) {
			t.Errorf("second transaction's event: created %v, next attempt %v, want both the transaction's now %v",
				second[0].CreatedAt, second[0].NextAttempt, txNow)
		}

		got := list(t, s, gateway.OutboxPending)
		if len(got) != len(want) {
			t.Fatalf("pending: %v, want %v", eventIDs(got), eventIDs(want))
		}
		for i, g := range got {
			w := want[i]
			if g.ID != w.ID || g.Seq != w.Seq || g.Destination != w.Destination || g.Kind != w.Kind ||
				g.OrderKey != w.OrderKey || g.TaskVersion != w.TaskVersion || string(g.Payload) != string(w.Payload) {
				t.Errorf("stored event %d = %+v, want %+v", i, g, w)
			}
			if g.Status != gateway.OutboxPending || g.Attempts != 0 || g.LastError != "" || !g.DeliveredAt.IsZero() {
				t.Errorf("stored event %s: status %q, attempts %d, last error %q, delivered %v; want pending, 0, none, never",
					g.ID, g.Status, g.Attempts, g.LastError, g.DeliveredAt)
			}
			if !g.CreatedAt.Equal(w.CreatedAt) || !g.NextAttempt.Equal(w.NextAttempt) {
				t.Errorf("stored event %s: created %v, next %v; want %v, %v", g.ID, g.CreatedAt, g.NextAttempt, w.CreatedAt, w.NextAttempt)
			}
		}
		wantDepth(t, s, 3, 0, 0)
	})
}

// Writers are serialised, so seq follows the order in which concurrent
// transactions commit (the order their write functions run in).
func TestOutboxSeqFollowsCommitOrder(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		s := openOutbox(t, engine)
		ctx := t.Context()
		var (
			mu    sync.Mutex
			order []string
			wg    sync.WaitGroup
		)
		for g := range 6 {
			wg.Go(func() {
				for i := range 5 {
					id := fmt.Sprintf("g%d-%d", g, i)
					err := s.Update(ctx, func(tx gateway.Tx) error {
						if err := tx.Enqueue(ctx, obEvent(id, destP, "task-"+id)); err != nil {
							return err
						}
						mu.Lock()
						order = append(order, id)
						mu.Unlock()
						return nil
					})
					if err != nil {
						t.Errorf("Update %s: %v", id, err)
					}
				}
			})
		}
		wg.Wait()
		if got := eventIDs(list(t, s, gateway.OutboxPending)); !slices.Equal(got, order) {
			t.Errorf("events by seq:\n%v\nwant commit order:\n%v", got, order)
		}
	})
}

func TestClaimOutboxLimitOldestFirst(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		s := openOutbox(t, engine)
		var all []gateway.OutboxEvent
		// Enqueued in several transactions, to different destinations, one
		// event per Task: all are heads of their queues.
		for b := range 4 {
			var batch []gateway.OutboxEvent
			for i := range 10 {
				n := b*10 + i
				dest := []string{destP, destQ, destS}[n%3]
				batch = append(batch, obEvent(fmt.Sprintf("e%02d", n), dest, fmt.Sprintf("task-%02d", n)))
			}
			all = append(all, enqueue(t, s, batch...)...)
		}
		ids := eventIDs(all)

		first := claim(t, s, "o1", t0, time.Minute, 15)
		wantClaimed(t, "first claim, limit 15", first, ids[:15]...)
		for _, e := range first {
			if e.Status != gateway.OutboxPending || e.Attempts != 0 {
				t.Errorf("claimed %s: status %q attempts %d, want pending, 0", e.ID, e.Status, e.Attempts)
			}
		}
		second := claim(t, s, "o2", t0, time.Minute, 100)
		wantClaimed(t, "second claim, limit 100", second, ids[15:]...)
		wantClaimed(t, "third claim", claim(t, s, "o3", t0, time.Minute, 100))
		// Claiming leases: it changes no status.
		wantDepth(t, s, 40, 0, 0)

		// Failed attempts recorded newest first, so that the rows' storage
		// order is no longer seq order: they are claimed again oldest first.
		later := t0.Add(time.Hour)
		for owner, events := range map[string][]gateway.OutboxEvent{"o1": first, "o2": second} {
			for i := len(events) - 1; i >= 0; i-- {
				finish(t, s, owner, retry(events[i], later, "try again"))
			}
		}
		wantClaimed(t, "after retries, limit 7", claim(t, s, "o3", later, time.Minute, 7), ids[:7]...)
		wantClaimed(t, "after retries, the rest", claim(t, s, "o4", later, time.Minute, 100), ids[7:]...)
	})
}

func TestClaimOutboxOrderPerTaskAndDestination(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		s := openOutbox(t, engine)
		const lease = 10 * time.Minute
		ev := map[string]gateway.OutboxEvent{}
		for _, e := range enqueue(t, s,
			obEvent("A1", destP, "A"),
			obEvent("B1", destP, "B"),
			obEvent("A2", destP, "A"),
			obEvent("SA1", destS, "A"), // the same Task, another destination
			obEvent("A3", destP, "A"),
			obEvent("B2", destP, "B"),
			obEvent("SA2", destS, "A"),
		) {
			ev[e.ID] = e
		}

		// The head of each destination's queue for each Task, together.
		got := claim(t, s, "o1", t0, lease, 100)
		wantClaimed(t, "heads", got, "A1", "B1", "SA1")
		// The heads are leased; what follows them waits.
		wantClaimed(t, "while the heads are leased", claim(t, s, "o2", t0.Add(time.Minute), lease, 100))

		// A1 delivered: A2 is next, and only A2.
		finish(t, s, "o1", delivered(got[0], t0.Add(time.Minute)))
		a2 := claim(t, s, "o2", t0.Add(2*time.Minute), lease, 100)
		wantClaimed(t, "after A1 is delivered", a2, "A2")

		// A2 failed and is not due for an hour: A3 still waits for it.
		finish(t, s, "o2", retry(a2[0], t0.Add(time.Hour), "503"))
		wantClaimed(t, "while A2 is not due", claim(t, s, "o2", t0.Add(3*time.Minute), lease, 100))

		// B1 is dead: it does not hold B2 back. SA1 delivered: SA2 follows.
		finish(t, s, "o1", dead(got[1], "410 Gone"))
		finish(t, s, "o1", delivered(got[2], t0.Add(3*time.Minute)))
		next := claim(t, s, "o3", t0.Add(4*time.Minute), lease, 100)
		wantClaimed(t, "after B1 died and SA1 was delivered", next, "B2", "SA2")
		for _, e := range next {
			finish(t, s, "o3", delivered(e, t0.Add(5*time.Minute)))
		}

		// A2 is due: it is claimed again, with its attempt counted; A3
		// still waits.
		again := claim(t, s, "o4", t0.Add(time.Hour), lease, 100)
		wantClaimed(t, "A2 due", again, "A2")
		if again[0].Attempts != 1 || again[0].LastError != "503" {
			t.Errorf("A2 claimed again with attempts %d, last error %q; want 1, 503", again[0].Attempts, again[0].LastError)
		}
		finish(t, s, "o4", delivered(again[0], t0.Add(time.Hour)))
		wantClaimed(t, "after A2", claim(t, s, "o4", t0.Add(time.Hour), lease, 100), "A3")
	})
}

func TestClaimOutboxNotDue(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		s := openOutbox(t, engine)
		enqueue(t, s, obEvent("e1", destP, "A"))
		// Enqueued at t0: not due before.
		wantClaimed(t, "before it was enqueued", claim(t, s, "o1", t0.Add(-time.Second), time.Minute, 10))
		got := claim(t, s, "o1", t0, time.Minute, 10)
		wantClaimed(t, "at t0", got, "e1")
		next := t0.Add(30 * time.Minute)
		finish(t, s, "o1", retry(got[0], next, "timeout"))
		// The lease has ended (finished), but the event is not due.
		wantClaimed(t, "before its next attempt", claim(t, s, "o2", next.Add(-time.Second), time.Minute, 10))
		wantClaimed(t, "at its next attempt", claim(t, s, "o2", next, time.Minute, 10), "e1")
	})
}

func TestClaimOutboxLeaseTakeover(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		s := openOutbox(t, engine)
		enqueue(t, s, obEvent("e1", destP, "A"), obEvent("e2", destP, "A"))
		const lease = time.Minute
		mine := claim(t, s, "o1", t0, lease, 10)
		wantClaimed(t, "o1", mine, "e1")

		wantClaimed(t, "o2 during o1's lease", claim(t, s, "o2", t0.Add(30*time.Second), lease, 10))
		wantClaimed(t, "o2 just before o1's lease ends", claim(t, s, "o2", t0.Add(lease-time.Millisecond), lease, 10))
		takeover := t0.Add(lease + time.Second)
		theirs := claim(t, s, "o2", takeover, lease, 10)
		wantClaimed(t, "o2 after o1's lease ended", theirs, "e1")
		if theirs[0].Attempts != 0 {
			t.Errorf("taken over with attempts %d, want 0 (o1 never finished)", theirs[0].Attempts)
		}

		// o1's late outcome changes nothing: o2 holds the event.
		finish(t, s, "o1", delivered(mine[0], takeover), false)
		if e := event(t, s, "e1"); e.Status != gateway.OutboxPending || e.Attempts != 0 {
			t.Errorf("after o1's late finish: status %q, attempts %d; want pending, 0", e.Status, e.Attempts)
		}
		// ... and o2's lease still stands.
		wantClaimed(t, "o3 during o2's lease", claim(t, s, "o3", takeover.Add(time.Second), lease, 10))

		finish(t, s, "o2", delivered(theirs[0], takeover.Add(time.Second)))
		if e := event(t, s, "e1"); e.Status != gateway.OutboxDelivered || e.Attempts != 1 {
			t.Errorf("after o2's finish: status %q, attempts %d; want delivered, 1", e.Status, e.Attempts)
		}
		// o1 again, now that nobody holds the event: still nothing.
		finish(t, s, "o1", dead(mine[0], "late"), false)
		if e := event(t, s, "e1"); e.Status != gateway.OutboxDelivered {
			t.Errorf("after o1's second late finish: status %q, want delivered", e.Status)
		}
		wantClaimed(t, "e2 after e1", claim(t, s, "o3", takeover.Add(2*time.Second), lease, 10), "e2")
	})
}

func TestFinishOutbox(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		s := openOutbox(t, engine)
		enqueue(t, s, obEvent("ok", destP, "A"), obEvent("later", destP, "B"), obEvent("gone", destS, "A"),
			obEvent("unclaimed", destQ, "C"))
		got := claim(t, s, "o1", t0, time.Hour, 3)
		wantClaimed(t, "claim", got, "ok", "later", "gone")

		at := t0.Add(5 * time.Second)
		finish(t, s, "o1", delivered(got[0], at))
		if e := event(t, s, "ok"); e.Status != gateway.OutboxDelivered || e.Attempts != 1 || !e.DeliveredAt.Equal(at) || e.LastError != "" {
			t.Errorf("delivered: %+v", e)
		}

		next := t0.Add(time.Minute)
		finish(t, s, "o1", retry(got[1], next, "502 Bad Gateway"))
		e := event(t, s, "later")
		if e.Status != gateway.OutboxPending || e.Attempts != 1 || !e.NextAttempt.Equal(next) || e.LastError != "502 Bad Gateway" ||
			!e.DeliveredAt.IsZero() {
			t.Errorf("retry: %+v", e)
		}
		// Finishing ended o1's lease (it ran for an hour): another owner
		// takes the event as soon as it is due.
		again := claim(t, s, "o2", next, time.Hour, 1)
		wantClaimed(t, "retry due, lease ended", again, "later")

		finish(t, s, "o1", dead(got[2], "subscription deleted"))
		if e := event(t, s, "gone"); e.Status != gateway.OutboxDead || e.Attempts != 1 || e.LastError != "subscription deleted" {
			t.Errorf("dead: %+v", e)
		}
		if d := list(t, s, gateway.OutboxDead); len(d) != 1 || d[0].ID != "gone" {
			t.Errorf("dead letters: %v, want [gone]", eventIDs(d))
		}

		// o1 no longer holds "later" (o2 does): its outcome changes nothing.
		finish(t, s, "o1", delivered(got[1], next), false)
		if e := event(t, s, "later"); e.Status != gateway.OutboxPending || e.Attempts != 1 {
			t.Errorf("after a finish by a former owner: status %q, attempts %d; want pending, 1", e.Status, e.Attempts)
		}
		// Nor does a finish of an event nobody claimed.
		finish(t, s, "o1", delivered(obEvent("unclaimed", destQ, "C"), next), false)
		if e := event(t, s, "unclaimed"); e.Status != gateway.OutboxPending {
			t.Errorf("after a finish of an unclaimed event: status %q, want pending", e.Status)
		}
		// Nor one of an unknown event.
		finish(t, s, "o1", delivered(obEvent("nonesuch", destQ, "C"), next), false)
		wantDepth(t, s, 2, 1, 1)
	})
}

func TestOutboxDepthAndList(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		s := openOutbox(t, engine)
		wantDepth(t, s, 0, 0, 0)
		for _, status := range []string{gateway.OutboxPending, gateway.OutboxDelivered, gateway.OutboxDead} {
			if got := list(t, s, status); len(got) != 0 {
				t.Errorf("ListOutbox(%s) of an empty outbox: %v", status, eventIDs(got))
			}
		}

		var events []gateway.OutboxEvent
		for i := range 9 {
			events = append(events, obEvent(fmt.Sprintf("e%d", i), destP, fmt.Sprintf("task-%d", i)))
		}
		enqueue(t, s, events...)
		got := claim(t, s, "o1", t0, time.Hour, 100)
		if len(got) != 9 {
			t.Fatalf("claimed %v, want 9", eventIDs(got))
		}
		// e0, e3, e6 delivered (finished newest first: the list still
		// comes oldest first); e1, e4 dead; e2, e5, e7, e8 pending.
		finish(t, s, "o1", delivered(got[6], t0))
		finish(t, s, "o1", delivered(got[3], t0))
		finish(t, s, "o1", delivered(got[0], t0))
		finish(t, s, "o1", dead(got[4], "no"))
		finish(t, s, "o1", dead(got[1], "no"))
		finish(t, s, "o1", retry(got[5], t0.Add(time.Minute), "later"))
		wantDepth(t, s, 4, 3, 2)

		cases := []struct {
			status string
			limit  int
			want   []string
		}{
			{gateway.OutboxPending, 100, []string{"e2", "e5", "e7", "e8"}},
			{gateway.OutboxPending, 2, []string{"e2", "e5"}},
			{gateway.OutboxDelivered, 100, []string{"e0", "e3", "e6"}},
			{gateway.OutboxDelivered, 1, []string{"e0"}},
			{gateway.OutboxDead, 100, []string{"e1", "e4"}},
			{"nonsense", 100, nil},
		}
		for _, c := range cases {
			got, err := s.ListOutbox(t.Context(), c.status, c.limit)
			if err != nil {
				t.Fatalf("ListOutbox(%s, %d): %v", c.status, c.limit, err)
			}
			if ids := eventIDs(got); !slices.Equal(ids, c.want) {
				t.Errorf("ListOutbox(%s, %d) = %v, want %v", c.status, c.limit, ids, c.want)
			}
			for _, e := range got {
				if e.Status != c.status {
					t.Errorf("ListOutbox(%s) gave %s with status %q", c.status, e.ID, e.Status)
				}
			}
		}
	})
}

func TestRedriveOutbox(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		s := openOutbox(t, engine)
		ctx := t.Context()
		enqueue(t, s, obEvent("d1", destP, "A"), obEvent("ok", destP, "B"), obEvent("wait", destQ, "C"),
			obEvent("d2", destP, "A"))
		got := claim(t, s, "o1", t0, time.Hour, 100)
		wantClaimed(t, "claim", got, "d1", "ok", "wait")
		d1 := got[0]
		d1.Attempts = 11
		finish(t, s, "o1", dead(d1, "410 Gone"))
		finish(t, s, "o1", delivered(got[1], t0))
		finish(t, s, "o1", retry(got[2], t0.Add(2*time.Hour), "later"))
		// d2 is the head of A's queue now that d1 is dead.
		wantClaimed(t, "after d1 died", claim(t, s, "o1", t0, time.Minute, 100), "d2")

		for _, id := range []string{"nonesuch", "ok", "wait", "d2", ""} {
			wantNotFoundError(t, s.RedriveOutbox(ctx, id, t0), "RedriveOutbox("+id+")")
		}
		wantDepth(t, s, 2, 1, 1)

		at := t0.Add(2 * time.Hour)
		if err := s.RedriveOutbox(ctx, "d1", at); err != nil {
			t.Fatalf("RedriveOutbox(d1): %v", err)
		}
		e := event(t, s, "d1")
		if e.Status != gateway.OutboxPending || e.Attempts != 0 || e.LastError != "" || !e.NextAttempt.Equal(at) {
			t.Errorf("redriven: status %q, attempts %d, last error %q, next %v; want pending, 0, none, %v",
				e.Status, e.Attempts, e.LastError, e.NextAttempt, at)
		}
		wantDepth(t, s, 3, 1, 0)
		wantNotFoundError(t, s.RedriveOutbox(ctx, "d1", at), "RedriveOutbox(d1) again")

		// Due now, not before; and once more the head of A's queue.
		wantClaimed(t, "before the redrive time", claim(t, s, "o2", at.Add(-time.Second), time.Minute, 100))
		wantClaimed(t, "at the redrive time", claim(t, s, "o2", at, time.Minute, 100), "d1", "wait")
	})
}

// Several owners claiming and finishing at once never hold one event
// together, and each Task's events are claimed in seq order.
func TestClaimOutboxConcurrent(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		s := openOutbox(t, engine)
		const tasks, perTask, owners = 20, 10, 4
		var all []gateway.OutboxEvent
		for i := range perTask {
			var batch []gateway.OutboxEvent
			for k := range tasks {
				dest := destP
				if k%5 == 0 {
					dest = destS
				}
				batch = append(batch, obEvent(fmt.Sprintf("t%02d-%02d", k, i), dest, fmt.Sprintf("task-%02d", k)))
			}
			all = append(all, enqueue(t, s, batch...)...)
		}
		task := map[string]string{}
		for _, e := range all {
			task[e.ID] = e.OrderKey
		}

		var (
			mu        sync.Mutex
			held      = map[string]string{}  // event id → owner
			claims    = map[string][]int64{} // Task → seqs, in claim order
			delivers  = map[string][]int64{} // Task → seqs, in delivery order
			nClaimed  int
			ctx       = t.Context()
			deadline  = time.Now().Add(2 * time.Minute)
			wg        sync.WaitGroup
			failed    = make(chan struct{})
			closeOnce sync.Once
		)
		fail := func(format string, args ...any) {
			t.Errorf(format, args...)
			closeOnce.Do(func() { close(failed) })
		}
		for o := range owners {
			owner := fmt.Sprintf("owner-%d", o)
			rnd := rand.New(rand.NewPCG(uint64(o), 42))
			wg.Go(func() {
				for {
					select {
					case <-failed:
						return
					default:
					}
					if time.Now().After(deadline) {
						fail("%s: the outbox did not drain in time", owner)
						return
					}
					got, err := s.ClaimOutbox(ctx, owner, t0, time.Hour, 1+rnd.IntN(6))
					if err != nil {
						fail("%s: ClaimOutbox: %v", owner, err)
						return
					}
					if len(got) == 0 {
						d, err := s.OutboxDepth(ctx)
						if err != nil {
							fail("%s: OutboxDepth: %v", owner, err)
							return
						}
						if d[gateway.OutboxPending] == 0 {
							return
						}
						continue
					}
					mu.Lock()
					inBatch := map[string]bool{}
					for _, e := range got {
						if other, ok := held[e.ID]; ok {
							fail("%s claimed %s, which %s holds", owner, e.ID, other)
						}
						if inBatch[e.OrderKey+"|"+e.Destination] {
							fail("%s claimed two events of %s for %s at once", owner, e.OrderKey, e.Destination)
						}
						inBatch[e.OrderKey+"|"+e.Destination] = true
						held[e.ID] = owner
						claims[e.OrderKey] = append(claims[e.OrderKey], e.Seq)
						nClaimed++
					}
					mu.Unlock()
					for _, e := range got {
						// A third of the attempts fail and are due again at
						// once: someone claims them again.
						ok := rnd.IntN(3) > 0
						mu.Lock()
						delete(held, e.ID)
						if ok {
							delivers[e.OrderKey] = append(delivers[e.OrderKey], e.Seq)
						}
						mu.Unlock()
						f := retry(e, t0, "try again")
						if ok {
							f = delivered(e, t0)
						}
						if _, err := s.FinishOutbox(ctx, owner, f); err != nil {
							fail("%s: FinishOutbox(%s): %v", owner, e.ID, err)
							return
						}
					}
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}

		wantDepth(t, s, 0, tasks*perTask, 0)
		if nClaimed < tasks*perTask {
			t.Errorf("%d claims for %d events", nClaimed, tasks*perTask)
		}
		want := map[string][]int64{}
		for _, e := range all {
			want[e.OrderKey] = append(want[e.OrderKey], e.Seq)
		}
		for k, seqs := range want {
			if !slices.IsSorted(claims[k]) {
				t.Errorf("%s claimed out of seq order: %v", k, claims[k])
			}
			if !slices.Equal(delivers[k], seqs) {
				t.Errorf("%s delivered in order %v, want %v", k, delivers[k], seqs)
			}
		}
		for _, e := range list(t, s, gateway.OutboxDelivered) {
			if e.Attempts < 1 {
				t.Errorf("%s delivered with %d attempts", e.ID, e.Attempts)
			}
		}
	})
}

// A lease outlives the process that took it: after a restart, another owner
// takes the event over once the lease has run out.
func TestOutboxRestart(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		ctx := context.Background()
		cfg := storetest.Config(t, engine)
		cfg.Now = newClock(t0, 0).Now
		s1, err := store.Open(ctx, cfg)
		if err != nil {
			t.Fatalf("store.Open: %v", err)
		}
		enqueue(t, s1, obEvent("e1", destP, "A"), obEvent("e2", destP, "A"), obEvent("f1", destS, "B"))
		const lease = 2 * time.Minute
		mine := claim(t, s1, "before-restart", t0, lease, 1)
		wantClaimed(t, "before the restart", mine, "e1")
		if err := s1.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}

		s2, err := store.Open(ctx, cfg)
		if err != nil {
			t.Fatalf("store.Open again: %v", err)
		}
		t.Cleanup(func() { s2.Close() })
		wantDepth(t, s2, 3, 0, 0)
		// e1 is still leased; f1 never was.
		wantClaimed(t, "during the old lease", claim(t, s2, "after-restart", t0.Add(time.Minute), lease, 10), "f1")
		got := claim(t, s2, "after-restart", t0.Add(lease+time.Second), lease, 10)
		wantClaimed(t, "after the old lease", got, "e1")
		if got[0].Attempts != 0 || string(got[0].Payload) != string(mine[0].Payload) {
			t.Errorf("taken over: attempts %d, payload %s; want 0, %s", got[0].Attempts, got[0].Payload, mine[0].Payload)
		}
		// The owner from before the restart is not heard any more.
		finish(t, s2, "before-restart", dead(mine[0], "late"), false)
		finish(t, s2, "after-restart", delivered(got[0], t0.Add(lease+2*time.Second)))
		if e := event(t, s2, "e1"); e.Status != gateway.OutboxDelivered {
			t.Errorf("e1: status %q, want delivered", e.Status)
		}
		wantClaimed(t, "e2 follows", claim(t, s2, "after-restart", t0.Add(lease+3*time.Second), lease, 10), "e2")
	})
}
