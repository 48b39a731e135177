// Package storetest opens real stores for tests: a SQLite file in the test's
// temporary folder and, when SPGATEWAY_TEST_POSTGRES_DSN names a PostgreSQL
// database, a fresh schema in it that is dropped when the test ends.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway/store"
)

// DSNVariable names the environment variable that points the tests at
// PostgreSQL, e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
const DSNVariable = "SPGATEWAY_TEST_POSTGRES_DSN"

// Engines lists the engines the tests run on: SQLite always, PostgreSQL when
// configured.
func Engines() []string {
	if os.Getenv(DSNVariable) != "" {
		return []string{store.DriverSQLite, store.DriverPostgres}
	}
	return []string{store.DriverSQLite}
}

// Each runs fn as a subtest per engine. Without PostgreSQL it says so, once
// per test, and runs SQLite alone.
func Each(t *testing.T, fn func(t *testing.T, engine string)) {
	t.Helper()
	for _, e := range []string{store.DriverSQLite, store.DriverPostgres} {
		t.Run(e, func(t *testing.T) {
			if e == store.DriverPostgres && os.Getenv(DSNVariable) == "" {
				t.Skipf("PostgreSQL tests skipped: set %s to run them", DSNVariable)
			}
			fn(t, e)
		})
	}
}

// Config returns a store configuration on engine that is the test's alone.
func Config(t testing.TB, engine string) store.Config {
	t.Helper()
	switch engine {
	case store.DriverSQLite:
		return store.Config{Driver: store.DriverSQLite, DSN: filepath.Join(t.TempDir(), "spgateway.db")}
	case store.DriverPostgres:
		return store.Config{Driver: store.DriverPostgres, DSN: schemaDSN(t)}
	}
	t.Fatalf("storetest: unknown engine %q", engine)
	return store.Config{}
}

// Open opens a migrated store on engine, closed when the test ends. now, when
// not nil, is the store's clock.
func Open(t testing.TB, engine string, now func() time.Time) *store.Store {
	t.Helper()
	cfg := Config(t, engine)
	cfg.Now = now
	return OpenConfig(t, cfg)
}

// OpenConfig opens a migrated store of cfg (from Config), closed when the
// test ends: for tests that also reach the database directly.
func OpenConfig(t testing.TB, cfg store.Config) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("store.Open(%s): %v", cfg.Driver, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// schemaDSN creates a schema for the test and returns a DSN whose
// search_path is that schema.
func schemaDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(DSNVariable)
	if base == "" {
		t.Skipf("PostgreSQL tests skipped: set %s to run them", DSNVariable)
	}
	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" {
		t.Fatalf("%s must be a postgres:// URL: %v", DSNVariable, err)
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "t_" + hex.EncodeToString(b[:])
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		admin.Close()
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`); err != nil {
			t.Logf("drop schema %s: %v", schema, err)
		}
		admin.Close()
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
