package store_test

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// TestSQLiteCheckpointsInTheBackground: commits leave their pages in the
// write-ahead log, and the checkpointer copies them into the database file
// soon after, with no further commit to set it off (a writer that
// checkpointed by itself would wait for a thousand pages). Closing the
// store leaves no log behind.
func TestSQLiteCheckpointsInTheBackground(t *testing.T) {
	ctx := context.Background()
	cfg := storetest.Config(t, store.DriverSQLite)
	s, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	size := func() int64 {
		fi, err := os.Stat(cfg.DSN)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	time.Sleep(500 * time.Millisecond) // the migrations' pages checkpointed
	before := size()
	// About 120 pages of audit references: well under SQLite's own
	// threshold of 1000.
	for i := range 4 {
		events := make([]gateway.AuditEvent, 16)
		for j := range events {
			events[j] = pollAudit(16*i + j)
		}
		if err := s.Update(ctx, func(tx gateway.Tx) error { return tx.Audit(ctx, events...) }); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for size() < before+256<<10 {
		if time.Now().After(deadline) {
			t.Fatalf("the database file is %d bytes, %d before the writes: nothing was checkpointed", size(), before)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(cfg.DSN + "-wal"); err == nil && fi.Size() > 0 {
		t.Errorf("after Close the log holds %d bytes", fi.Size())
	}
}

// TestSQLiteLogStaysBounded: under writes that never pause and readers
// that never pause, the write-ahead log still starts again from its
// beginning, again and again, rather than growing with everything written
// (which slows every read, and grows the process by the log's index).
func TestSQLiteLogStaysBounded(t *testing.T) {
	ctx := context.Background()
	// Checkpoints every 50 ms and a log of 64 pages restarted, so that a
	// few MB of writes tell, even under the race detector.
	store.SetCheckpoints(t, 50*time.Millisecond, 64)
	cfg := storetest.Config(t, store.DriverSQLite)
	s := storetest.OpenConfig(t, cfg)
	done := make(chan struct{})
	var wg sync.WaitGroup
	var written atomic.Int64
	for w := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				events := make([]gateway.AuditEvent, 4)
				for j := range events {
					events[j] = pollAudit(1_000_000*w + 4*i + j)
				}
				if err := s.Update(ctx, func(tx gateway.Tx) error { return tx.Audit(ctx, events...) }); err != nil {
					t.Error(err)
					return
				}
				written.Add(int64(len(events)))
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if err := s.View(ctx, func(v gateway.View) error {
					_, err := v.AuditEvents(ctx, gateway.AuditQuery{Count: 50})
					return err
				}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	// Watch the log's length (in pages) while the load runs, until 8192
	// pages (32 MB) have been written to it or a minute has passed: a
	// restart is the length going down.
	raw := rawDB(t, cfg)
	var frames, restarts, logged, peak int
	for deadline := time.Now().Add(time.Minute); logged < 8192 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		var busy, n, copied int
		if err := raw.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &n, &copied); err != nil {
			t.Fatal(err)
		}
		if n < frames {
			restarts++
			logged += frames
		} else {
			logged += n - frames
		}
		frames = n
		peak = max(peak, n)
	}
	close(done)
	wg.Wait()
	t.Logf("%d events written, about %d pages logged: the log started again %d times, and was at most %d pages long", written.Load(), logged, restarts, peak)
	if logged < 8192 {
		t.Fatalf("only %d pages logged in a minute: too little load to tell", logged)
	}
	// Restarted, the log is never much longer than 64 pages and what is
	// written between two checkpoints; left alone it holds everything
	// since it last happened to start again, half of it or more.
	if peak > logged/4 {
		t.Errorf("the log started again %d times while %d pages were written to it, and grew to %d pages", restarts, logged, peak)
	}
}
