package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// pollAudit is the audit event of a provider's poll page: 50 Tasks, their
// ServiceRequests and Patients.
func pollAudit(i int) gateway.AuditEvent {
	e := gateway.AuditEvent{ID: gateway.NewUUID(), Recorded: time.UnixMicro(1_790_000_000_000_000 + int64(i)).UTC(),
		ClientID: "provider-prv01", Role: gateway.RoleProvider, Org: "PRV01", Action: gateway.AuditSearch,
		ResourceType: gateway.TypeTask, Outcome: gateway.OutcomeSuccess, SourceIP: "10.0.0.7", RequestID: fmt.Sprintf("req-%d", i)}
	for j := range 50 {
		e.Entities = append(e.Entities, fmt.Sprintf("Task/%d-%d", i, j), fmt.Sprintf("ServiceRequest/%d-%d", i, j), fmt.Sprintf("Patient/%d", j))
	}
	return e
}

// auditPage reads a page of the trail of s.
func auditPage(t *testing.T, s *store.Store, q gateway.AuditQuery) gateway.AuditPage {
	t.Helper()
	ctx := context.Background()
	var page gateway.AuditPage
	if err := s.View(ctx, func(v gateway.View) (err error) {
		page, err = v.AuditEvents(ctx, q)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return page
}

// TestAuditTotal: a search of the trail counts its matches when asked —
// all of them, whichever page it reads — and Count 0 asks for the count
// alone; not asked, the total is -1.
func TestAuditTotal(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		s := storetest.Open(t, engine, nil)
		ctx := context.Background()
		events := make([]gateway.AuditEvent, 5)
		for i := range events {
			events[i] = pollAudit(i)
		}
		events[4].ClientID, events[4].Org = "provider-prv02", "PRV02"
		if err := s.Update(ctx, func(tx gateway.Tx) error { return tx.Audit(ctx, events...) }); err != nil {
			t.Fatal(err)
		}
		first := auditPage(t, s, gateway.AuditQuery{Count: 2})
		for _, c := range []struct {
			name          string
			q             gateway.AuditQuery
			total, events int
		}{
			{"count alone", gateway.AuditQuery{Total: true}, 5, 0},
			{"nothing asked", gateway.AuditQuery{}, -1, 0},
			{"first page", gateway.AuditQuery{Count: 2, Total: true}, 5, 2},
			{"later page", gateway.AuditQuery{Count: 2, Total: true, Before: first.Events[1].Seq}, 5, 2},
			{"not counted", gateway.AuditQuery{Count: 2}, -1, 2},
			{"by agent", gateway.AuditQuery{Total: true, Agents: [][]string{{"PRV01"}}}, 4, 0},
			{"by entity and date", gateway.AuditQuery{Count: 10, Total: true, Entities: [][]string{{"Task/3-7", "Task/4-7"}},
				Dates: []gateway.DateBound{{Op: gateway.OpLt, Period: gateway.Period{Start: events[4].Recorded, End: events[4].Recorded}}}}, 1, 1},
			{"no match", gateway.AuditQuery{Total: true, Agents: [][]string{{"nobody"}}}, 0, 0},
		} {
			page := auditPage(t, s, c.q)
			if page.Total != c.total || len(page.Events) != c.events {
				t.Errorf("%s: total %d, %d events; want %d, %d", c.name, page.Total, len(page.Events), c.total, c.events)
			}
		}
		if err := s.View(ctx, func(v gateway.View) error {
			_, err := v.AuditEvents(ctx, gateway.AuditQuery{Count: -1})
			return err
		}); gateway.ErrorCode(err) != gateway.CodeInvalid {
			t.Errorf("a negative page size: %v", err)
		}
	})
}

// TestAuditRoundTrip writes events and reads them back whole: the entities
// in order (odd but storable text included), found by each of them, and an
// event with none.
func TestAuditRoundTrip(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		s := storetest.Open(t, engine, nil)
		ctx := context.Background()
		odd := pollAudit(1)
		odd.Entities = []string{"Task/é\"\\,[]", "Patient/a\nb", "ServiceRequest/x"}
		none := pollAudit(2)
		none.Entities, none.Outcome = nil, string(gateway.CodeForbidden)
		events := []gateway.AuditEvent{pollAudit(0), odd, none}
		if err := s.Update(ctx, func(tx gateway.Tx) error { return tx.Audit(ctx, events...) }); err != nil {
			t.Fatal(err)
		}
		var page gateway.AuditPage
		err := s.View(ctx, func(v gateway.View) (err error) {
			page, err = v.AuditEvents(ctx, gateway.AuditQuery{Count: 10})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Events) != 3 || page.More {
			t.Fatalf("%d events (more %t), want 3", len(page.Events), page.More)
		}
		for i, got := range page.Events {
			want := events[len(events)-1-i] // newest first
			if got.ID != want.ID || !slices.Equal(got.Entities, want.Entities) || got.Seq == 0 {
				t.Errorf("event %d: %s %q, want %s %q", i, got.ID, got.Entities, want.ID, want.Entities)
			}
		}
		for _, e := range events {
			for _, ref := range e.Entities {
				err := s.View(ctx, func(v gateway.View) (err error) {
					page, err = v.AuditEvents(ctx, gateway.AuditQuery{Count: 10, Entities: [][]string{{ref}}})
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				if len(page.Events) != 1 || page.Events[0].ID != e.ID {
					t.Errorf("entity %q: found %d events, want only %s", ref, len(page.Events), e.ID)
				}
			}
			var one gateway.AuditEvent
			err := s.View(ctx, func(v gateway.View) (err error) {
				one, err = v.AuditEvent(ctx, e.ID)
				return err
			})
			if err != nil || !slices.Equal(one.Entities, e.Entities) {
				t.Errorf("AuditEvent(%s) = %q, %v; want %q", e.ID, one.Entities, err, e.Entities)
			}
		}
	})
}

// BenchmarkAudit writes a batch of 16 poll-page audits (150 references
// each) per operation, as the batching auditor does under load.
func BenchmarkAudit(b *testing.B) {
	for _, engine := range storetest.Engines() {
		b.Run(engine, func(b *testing.B) {
			s := storetest.Open(b, engine, nil)
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				events := make([]gateway.AuditEvent, 16)
				for j := range events {
					events[j] = pollAudit(i)
					i++
				}
				if err := s.Update(ctx, func(tx gateway.Tx) error { return tx.Audit(ctx, events...) }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestAuditCompactMigration: the audit trail written before references moved
// into audit_events comes through the migration whole, in order and
// searchable, stays append-only, and goes back down as it was.
func TestAuditCompactMigration(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		cfg := storetest.Config(t, engine)
		if engine == store.DriverSQLite {
			if err := os.MkdirAll(filepath.Dir(cfg.DSN), 0o750); err != nil {
				t.Fatal(err)
			}
		}
		db := rawDB(t, cfg)
		p, err := store.NewMigrationProvider(engine, db)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.UpTo(ctx, 6); err != nil {
			t.Fatal(err)
		}
		bind := func(q string) string {
			if engine != store.DriverPostgres {
				return q
			}
			for i := 1; strings.Contains(q, "?"); i++ {
				q = strings.Replace(q, "?", "$"+strconv.Itoa(i), 1)
			}
			return q
		}
		for _, e := range []struct {
			seq  int
			refs []string
		}{{1, []string{"Task/t1", "ServiceRequest/s1", "Patient/p1"}}, {2, nil}, {3, []string{"Patient/p1"}}} {
			var seq int64
			if err := db.QueryRow(bind(`INSERT INTO audit_events (id, recorded, client_id, role, org, action, resource_type, outcome, source_ip, request_id)
				VALUES (?, ?, 'provider-prv01', 'provider', 'PRV01', 'search', 'Task', 'success', '10.0.0.7', 'r') RETURNING seq`),
				fmt.Sprintf("event-%d", e.seq), 1_790_000_000_000_000+e.seq).Scan(&seq); err != nil {
				t.Fatal(err)
			}
			if seq != int64(e.seq) {
				t.Fatalf("event %d has seq %d", e.seq, seq)
			}
			for i := len(e.refs) - 1; i >= 0; i-- { // out of order: pos decides
				if _, err := db.Exec(bind(`INSERT INTO audit_entities (ref, audit_seq, pos) VALUES (?, ?, ?)`), e.refs[i], seq, i); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, err := p.UpTo(ctx, 7); err != nil {
			t.Fatal(err)
		}
		s := storetest.OpenConfig(t, cfg)
		read := func(q gateway.AuditQuery) []gateway.AuditEvent {
			t.Helper()
			return auditPage(t, s, q).Events
		}
		all := read(gateway.AuditQuery{Count: 10})
		if got := fmt.Sprint(len(all), all[2].Entities, all[1].Entities, all[0].Entities); got != "3 [Task/t1 ServiceRequest/s1 Patient/p1] [] [Patient/p1]" {
			t.Errorf("after the migration: %s", got)
		}
		if got := read(gateway.AuditQuery{Count: 10, Entities: [][]string{{"Patient/p1"}}}); len(got) != 2 || got[0].ID != "event-3" || got[1].ID != "event-1" {
			t.Errorf("entity=Patient/p1 after the migration: %+v", got)
		}
		// New events are written the new way beside the migrated ones.
		added := pollAudit(9)
		added.Entities = append(added.Entities, "Patient/p1")
		if err := s.Update(ctx, func(tx gateway.Tx) error { return tx.Audit(ctx, added) }); err != nil {
			t.Fatal(err)
		}
		if got := read(gateway.AuditQuery{Count: 10, Entities: [][]string{{"Patient/p1"}}}); len(got) != 3 {
			t.Errorf("entity=Patient/p1 with a new event: %d events, want 3", len(got))
		}
		for _, q := range []string{`UPDATE audit_events SET entities = '[]'`, `DELETE FROM audit_events`,
			`UPDATE audit_refs SET ref = 'Task/x'`, `DELETE FROM audit_refs`} {
			if _, err := db.Exec(q); err == nil || !strings.Contains(err.Error(), "append-only") {
				t.Errorf("%s after the migration: %v", q, err)
			}
		}
		if _, err := p.DownTo(ctx, 6); err != nil {
			t.Fatal(err)
		}
		var got []string
		rows, err := db.Query(`SELECT ref FROM audit_entities WHERE audit_seq = 1 ORDER BY pos`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var ref string
			if err := rows.Scan(&ref); err != nil {
				t.Fatal(err)
			}
			got = append(got, ref)
		}
		rows.Close()
		if fmt.Sprint(got) != "[Task/t1 ServiceRequest/s1 Patient/p1]" {
			t.Errorf("event 1 after going back down: %v", got)
		}
		if _, err := db.Exec(`DELETE FROM audit_entities`); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("audit_entities after going back down is not append-only: %v", err)
		}
	})
}
