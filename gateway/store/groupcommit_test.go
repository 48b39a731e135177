package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store"
)

// TestGroupCommit: SQLite writes that queue while the writer is busy are
// committed together, and each keeps its own outcome: a write that fails
// leaves nothing, one whose caller has gone before its turn is skipped, and
// the others are committed, with their own sequence numbers and times, in
// the order they ran.
func TestGroupCommit(t *testing.T) {
	s := open(t, store.DriverSQLite)
	ctx := context.Background()
	put(t, s, newResource(gateway.TypeTask, "existing", gateway.Index{Practice: practiceA, Status: "requested", Access: []string{practiceA}}))

	// A write that holds the writer until the others are queued.
	release := make(chan struct{})
	holding := make(chan struct{})
	firstDone := make(chan error, 1)
	go func() {
		firstDone <- s.Update(ctx, func(tx gateway.Tx) error {
			close(holding)
			<-release
			return putTx(ctx, tx, newResource(gateway.TypePatient, "first", gateway.Index{Practice: practiceA, Access: []string{practiceA}}))
		})
	}()
	<-holding
	commits := s.Commits()

	errStop := errors.New("stop")
	gone, cancel := context.WithCancel(ctx)
	type write struct {
		id   string
		ctx  context.Context
		fail bool
	}
	writes := []write{{"a", ctx, false}, {"b", ctx, true}, {"c", gone, false}, {"d", ctx, false}, {"e", ctx, true}, {"f", ctx, false}}
	errs := make([]error, len(writes))
	var wg sync.WaitGroup
	for i, w := range writes {
		wg.Go(func() {
			errs[i] = s.Update(w.ctx, func(tx gateway.Tx) error {
				if err := putTx(ctx, tx, newResource(gateway.TypePatient, w.id, gateway.Index{Practice: practiceA, Access: []string{practiceA}})); err != nil {
					return err
				}
				if w.fail {
					return errStop
				}
				return nil
			})
		})
		time.Sleep(20 * time.Millisecond) // queued in this order
	}
	cancel() // c's caller gives up while it waits its turn
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if err := <-firstDone; err != nil {
		t.Fatalf("the first write: %v", err)
	}

	// c left the queue at once or was skipped in its group; the rest were
	// committed by one transaction after the first's.
	if got := s.Commits() - commits; got != 2 {
		t.Errorf("%d commits for the first write and the five queued behind it, want 2", got)
	}
	var seqs []int64
	for i, w := range writes {
		r, err := get(t, s, "", gateway.TypePatient, w.id, 0)
		switch {
		case w.fail:
			if !errors.Is(errs[i], errStop) {
				t.Errorf("write %s: %v, want its own error", w.id, errs[i])
			}
			wantNotFound(t, err, "the resource of a failed write "+w.id)
		case w.ctx != ctx:
			if !errors.Is(errs[i], context.Canceled) {
				t.Errorf("write %s: %v, want context.Canceled", w.id, errs[i])
			}
			wantNotFound(t, err, "the resource of a write whose caller had gone, "+w.id)
		default:
			if errs[i] != nil || err != nil {
				t.Errorf("write %s: %v; read back: %v", w.id, errs[i], err)
				continue
			}
			seqs = append(seqs, r.Seq)
		}
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Errorf("sequence numbers %v are not in the order the writes ran", seqs)
		}
	}
	first := mustGet(t, s, "", gateway.TypePatient, "first", 0)
	view(t, s, func(v gateway.View) error {
		if len(seqs) > 0 && (first.Seq >= seqs[0] || v.Snapshot() != seqs[len(seqs)-1]) {
			t.Errorf("snapshot %d, first %d, group %v: the change clock did not follow the writes", v.Snapshot(), first.Seq, seqs)
		}
		return nil
	})
}

// TestGroupCommitManyWriters: 64 writers at once, each its own resource:
// every write is committed.
func TestGroupCommitManyWriters(t *testing.T) {
	s := open(t, store.DriverSQLite)
	commits := s.Commits()
	const n = 64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := tryPut(t, s, newResource(gateway.TypePatient, fmt.Sprintf("p%d", i), gateway.Index{Practice: practiceA, Access: []string{practiceA}})); err != nil {
				t.Errorf("write %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	for i := range n {
		if _, err := get(t, s, "", gateway.TypePatient, fmt.Sprintf("p%d", i), 0); err != nil {
			t.Errorf("p%d: %v", i, err)
		}
	}
	t.Logf("%d writes in %d commits", n, s.Commits()-commits)
}

// TestGroupCommitPanic: a write that panics is rolled back alone, its panic
// raised in its caller's goroutine (where the HTTP server's recoverer
// answers 500), and the store goes on committing.
func TestGroupCommitPanic(t *testing.T) {
	s := open(t, store.DriverSQLite)
	func() {
		defer func() {
			if v := recover(); v == nil || !strings.Contains(fmt.Sprint(v), "a bug in a write") {
				t.Errorf("recovered %v, want the write's panic", v)
			}
		}()
		_ = s.Update(t.Context(), func(tx gateway.Tx) error {
			if err := putTx(t.Context(), tx, newResource(gateway.TypePatient, "half", gateway.Index{Practice: practiceA, Access: []string{practiceA}})); err != nil {
				return err
			}
			panic("a bug in a write")
		})
		t.Error("Update returned after its write panicked")
	}()
	_, err := get(t, s, "", gateway.TypePatient, "half", 0)
	wantNotFound(t, err, "the resource of a write that panicked")
	put(t, s, newResource(gateway.TypePatient, "after", gateway.Index{Practice: practiceA, Access: []string{practiceA}}))
}
