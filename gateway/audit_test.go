package gateway_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

func auditEvent(i int) gateway.AuditEvent {
	return gateway.AuditEvent{ID: gateway.NewUUID(), Recorded: time.Now().UTC(), ClientID: fmt.Sprintf("client-%d", i),
		Role: gateway.RoleProvider, Org: "PRV01", Action: gateway.AuditRead, ResourceType: gateway.TypeTask,
		Entities: []string{fmt.Sprintf("Task/t%d", i), "Patient/p"}, Outcome: gateway.OutcomeSuccess, SourceIP: "192.0.2.1", RequestID: "r"}
}

func storedAudits(t *testing.T, st gateway.Store) []gateway.AuditEvent {
	t.Helper()
	ctx := context.Background()
	var out []gateway.AuditEvent
	err := st.View(ctx, func(v gateway.View) error {
		page, err := v.AuditEvents(ctx, gateway.AuditQuery{Count: 1 << 20})
		out = page.Events
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBatchAuditorCloseWritesAll: events recorded from many goroutines are
// all in the store once Close returns, with their entities, in batches.
func TestBatchAuditorCloseWritesAll(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		st := storetest.Open(t, engine, nil)
		a, err := gateway.NewBatchAuditor(gateway.BatchAuditorConfig{Store: st, Queue: 64, Batch: 50})
		if err != nil {
			t.Fatal(err)
		}
		const n = 1000
		errs := make(chan error, n)
		for i := range n {
			go func() { errs <- a.Record(context.Background(), auditEvent(i)) }()
		}
		for range n {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if err := a.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		got := storedAudits(t, st)
		if len(got) != n {
			t.Fatalf("%d events stored, want %d", len(got), n)
		}
		clients := map[string]bool{}
		for _, e := range got {
			clients[e.ClientID] = true
			if len(e.Entities) != 2 || e.Entities[1] != "Patient/p" || e.SourceIP != "192.0.2.1" {
				t.Fatalf("stored %+v", e)
			}
		}
		if len(clients) != n {
			t.Errorf("%d distinct events, want %d", len(clients), n)
		}
		if err := a.Record(context.Background(), auditEvent(0)); !errors.Is(err, gateway.ErrAuditorClosed) {
			t.Errorf("Record after Close: %v", err)
		}
	})
}

// TestBatchAuditorBackPressure: with a queue of one and the database's
// write lock held, Record blocks instead of dropping; once the lock is
// released every event is written.
func TestBatchAuditorBackPressure(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		st := storetest.Open(t, engine, nil)
		a, err := gateway.NewBatchAuditor(gateway.BatchAuditorConfig{Store: st, Queue: 1, Batch: 1})
		if err != nil {
			t.Fatal(err)
		}
		hold, held := make(chan struct{}), make(chan struct{})
		go st.Update(context.Background(), func(gateway.Tx) error { close(held); <-hold; return nil })
		<-held
		recorded := make(chan int, 10)
		go func() {
			for i := range 4 {
				if err := a.Record(context.Background(), auditEvent(i)); err != nil {
					t.Error(err)
				}
				recorded <- i
			}
		}()
		// One event is being written (waiting for the lock), one waits in
		// the queue; the third Record must wait.
		deadline := time.After(300 * time.Millisecond)
		n := 0
	wait:
		for {
			select {
			case <-recorded:
				n++
			case <-deadline:
				break wait
			}
		}
		if n > 2 {
			t.Errorf("%d Records returned while the store was locked: the queue holds one", n)
		}
		close(hold)
		for n < 4 {
			select {
			case <-recorded:
				n++
			case <-time.After(5 * time.Second):
				t.Fatal("Record still blocked after the store was released")
			}
		}
		if err := a.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := storedAudits(t, st); len(got) != 4 {
			t.Errorf("%d events stored, want 4", len(got))
		}
	})
}

// TestBatchAuditorCloseGivesUp: when the database does not take the events
// before Close's deadline, Close says they were lost rather than hanging.
func TestBatchAuditorCloseGivesUp(t *testing.T) {
	st := storetest.Open(t, "sqlite", nil)
	failures := make(chan int, 100)
	a, err := gateway.NewBatchAuditor(gateway.BatchAuditorConfig{Store: st,
		Failed: func(_ error, n int) { failures <- n }})
	if err != nil {
		t.Fatal(err)
	}
	bad := auditEvent(1)
	if err := a.Record(context.Background(), bad); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The same id again: the insert fails every time.
	if err := a.Record(context.Background(), bad); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-failures:
		if n != 1 {
			t.Errorf("failed batch of %d", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the failing batch was not reported")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := a.Close(ctx); err == nil {
		t.Error("Close reports no loss")
	}
	if got := storedAudits(t, st); len(got) != 1 {
		t.Errorf("%d events stored, want 1", len(got))
	}
}

// TestBatchAuditorIsolatesARefusedEvent: the database refuses one event of
// a batch (here a trigger refuses its reference) while it takes others.
// Every other event of the batch and every later one is written whole; the
// refused one is written without its references and reported, instead of
// holding up the trail for ever.
func TestBatchAuditorIsolatesARefusedEvent(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		cfg := storetest.Config(t, engine)
		st := storetest.OpenConfig(t, cfg)
		driver, dsn := "pgx", cfg.DSN
		if engine == store.DriverSQLite {
			driver, dsn = "sqlite", "file:"+cfg.DSN+"?_pragma=busy_timeout(10000)"
		}
		db, err := sql.Open(driver, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		stmts := []string{`CREATE TRIGGER refuse_poison BEFORE INSERT ON audit_refs WHEN NEW.ref = 'Task/poison'
			BEGIN SELECT RAISE(ABORT, 'refused for the test'); END`}
		if engine == store.DriverPostgres {
			stmts = []string{`CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN IF NEW.ref = 'Task/poison' THEN RAISE EXCEPTION 'refused for the test'; END IF; RETURN NEW; END; $$`,
				`CREATE TRIGGER refuse_poison BEFORE INSERT ON audit_refs FOR EACH ROW EXECUTE FUNCTION refuse_poison()`}
		}
		for _, q := range stmts {
			if _, err := db.Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}

		var mu sync.Mutex
		var reported []gateway.AuditEvent
		a, err := gateway.NewBatchAuditor(gateway.BatchAuditorConfig{Store: st, Queue: 64, Batch: 16,
			Stripped: func(ev gateway.AuditEvent, err error) {
				mu.Lock()
				defer mu.Unlock()
				reported = append(reported, ev)
			}})
		if err != nil {
			t.Fatal(err)
		}
		const n = 40
		poison := auditEvent(7)
		poison.Entities = []string{"Task/poison", "Patient/p"}
		for i := range n {
			ev := auditEvent(i)
			if i == 7 {
				ev = poison
			}
			if err := a.Record(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := a.Flush(ctx); err != nil {
			t.Fatalf("the trail is held up by the refused event: %v", err)
		}
		if err := a.Close(ctx); err != nil {
			t.Fatal(err)
		}
		got := map[string]gateway.AuditEvent{}
		for _, e := range storedAudits(t, st) {
			got[e.ID] = e
		}
		if len(got) != n {
			t.Fatalf("%d events stored, want %d", len(got), n)
		}
		for id, e := range got {
			switch {
			case id == poison.ID:
				if len(e.Entities) != 0 || e.ClientID != poison.ClientID || e.Action != poison.Action || e.Outcome != poison.Outcome {
					t.Errorf("refused event stored as %+v, want it without references and otherwise whole", e)
				}
			case len(e.Entities) != 2:
				t.Errorf("event %s stored with %v, want its two references", e.ClientID, e.Entities)
			}
		}
		if len(reported) != 1 || reported[0].ID != poison.ID {
			t.Errorf("reported %+v, want the refused event once", reported)
		}
	})
}
