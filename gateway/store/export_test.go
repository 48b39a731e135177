package store

import (
	"database/sql"
	"io/fs"
	"time"

	"github.com/pressly/goose/v3"
)

// NewMigrationProvider walks a raw database of driver through the embedded
// migrations one version at a time, for tests of a migration's data.
func NewMigrationProvider(driver string, db *sql.DB) (*goose.Provider, error) {
	d := sqliteDialect
	if driver == DriverPostgres {
		d = postgresDialect
	}
	fsys, err := fs.Sub(migrations, "migrations/"+d.name)
	if err != nil {
		return nil, err
	}
	return goose.NewProvider(d.goose, db, fsys, goose.WithDisableGlobalRegistry(true))
}

// Commits counts the transactions the SQLite group committer has committed.
func (s *Store) Commits() int64 { return s.group.commits.Load() }

// SetCheckpoints sets how often the checkpointer runs and the log length
// past which the writer restarts the log, for the test's duration (stores
// opened after the call).
func SetCheckpoints(t interface{ Cleanup(func()) }, every time.Duration, pages int) {
	oldEvery, oldPages := checkpointEvery, restartAbove
	checkpointEvery, restartAbove = every, pages
	t.Cleanup(func() { checkpointEvery, restartAbove = oldEvery, oldPages })
}
