package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/pressly/goose/v3/lock"
	"modernc.org/sqlite"
)

// sqliteMigrationLock keeps two processes that open one SQLite file at the
// same time from migrating it together: goose reads which migrations are
// applied before it runs them, so without a lock the second process runs
// a migration the first has just applied. PostgreSQL has goose's advisory
// session lock; SQLite has none, so the lock is a row of a table of its
// own, taken with an insert that only one process can win.
//
// It works through its own connection: goose holds the store's only writer
// connection while it locks. A lock older than staleAfter is taken to be
// left by a process that died while migrating, and is taken over.
type sqliteMigrationLock struct {
	db         *sql.DB
	owner      string
	staleAfter time.Duration
	retry      time.Duration
}

var _ lock.Locker = (*sqliteMigrationLock)(nil)

func newSQLiteMigrationLock(db *sql.DB, owner string) *sqliteMigrationLock {
	return &sqliteMigrationLock{db: db, owner: owner, staleAfter: 10 * time.Minute, retry: 25 * time.Millisecond}
}

// Lock waits until this process holds the migration lock, or ctx ends.
func (l *sqliteMigrationLock) Lock(ctx context.Context, _ *sql.DB) error {
	if _, err := l.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS spgateway_migration_lock (
		id INTEGER PRIMARY KEY CHECK (id = 1), owner TEXT NOT NULL, taken_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	for {
		now := time.Now()
		if _, err := l.db.ExecContext(ctx, `DELETE FROM spgateway_migration_lock WHERE taken_at < ?`,
			now.Add(-l.staleAfter).UnixMicro()); err != nil {
			return fmt.Errorf("migration lock: %w", err)
		}
		res, err := l.db.ExecContext(ctx, `INSERT INTO spgateway_migration_lock (id, owner, taken_at) VALUES (1, ?, ?)
			ON CONFLICT DO NOTHING`, l.owner, now.UnixMicro())
		if err != nil {
			return fmt.Errorf("migration lock: %w", err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 1 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("migration lock: another process is migrating: %w", ctx.Err())
		case <-time.After(l.retry):
		}
	}
}

// Unlock lets the next process migrate.
func (l *sqliteMigrationLock) Unlock(ctx context.Context, _ *sql.DB) error {
	res, err := l.db.ExecContext(ctx, `DELETE FROM spgateway_migration_lock WHERE id = 1 AND owner = ?`, l.owner)
	if err != nil {
		return fmt.Errorf("migration unlock: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return errors.New("migration unlock: the lock was taken over")
	}
	return nil
}

// sqliteBusy is SQLITE_BUSY, the primary result code (low byte) of a
// lock another connection holds.
const sqliteBusy = 5

// openSQLite makes db's first connection. Processes that open a new file
// together race to put it into WAL mode, and SQLite answers the losers
// SQLITE_BUSY at once, without waiting out the busy timeout: they try
// again until the winner is done.
func openSQLite(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := db.PingContext(ctx)
		var e *sqlite.Error
		if err == nil || !errors.As(err, &e) || e.Code()&0xff != sqliteBusy || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
