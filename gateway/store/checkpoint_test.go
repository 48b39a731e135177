package store_test

import (
	"context"
	"os"
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
