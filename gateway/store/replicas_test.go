package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// TestReplicasMigrateTogether: several gateway processes started at once
// on an empty database all come up; the schema is migrated once (each
// migration recorded once) and every process can write.
func TestReplicasMigrateTogether(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		cfg := storetest.Config(t, engine)
		const n = 4
		stores := make([]*store.Store, n)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				stores[i], errs[i] = store.Open(context.Background(), cfg)
			})
		}
		close(start)
		wg.Wait()
		for i, s := range stores {
			if s != nil {
				t.Cleanup(func() { s.Close() })
			}
			if errs[i] != nil {
				t.Errorf("replica %d did not start: %v", i, errs[i])
			}
		}
		if t.Failed() {
			return
		}
		files, err := filepath.Glob(filepath.Join("migrations", engine, "*.sql"))
		if err != nil || len(files) == 0 {
			t.Fatalf("migrations of %s: %v %v", engine, files, err)
		}
		db := rawDB(t, cfg)
		var applied, distinct int
		if err := db.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT version_id) FROM goose_db_version WHERE version_id > 0`).
			Scan(&applied, &distinct); err != nil {
			t.Fatal(err)
		}
		if applied != len(files) || distinct != len(files) {
			t.Errorf("goose recorded %d migrations (%d distinct), want each of the %d once", applied, distinct, len(files))
		}
		for i, s := range stores {
			if err := s.Ping(context.Background()); err != nil {
				t.Errorf("replica %d: %v", i, err)
			}
			r := newResource("Patient", fmt.Sprintf("p-%d", i), gateway.Index{Practice: practiceA, Access: []string{practiceA}})
			if err := tryPut(t, s, r); err != nil || r.Seq == 0 {
				t.Errorf("replica %d cannot write: %v", i, err)
			}
		}
	})
}

// rawDB opens the database of cfg without the store, to look at it.
func rawDB(t *testing.T, cfg store.Config) *sql.DB {
	t.Helper()
	driver, dsn := "pgx", cfg.DSN
	if cfg.Driver == store.DriverSQLite {
		driver, dsn = "sqlite", "file:"+filepath.Clean(cfg.DSN)+"?_pragma=busy_timeout(10000)"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
