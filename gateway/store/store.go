// Package store keeps FHIR resources for the gateway in SQLite (embedded,
// pure Go) or PostgreSQL, through sqlx. The SQL is shared; what differs
// between the engines sits in dialect.go and in one migrations folder each.
//
// Every version of every resource is a row of resource_versions. Writers are
// serialised on the change_clock row, so change sequence numbers (seq) follow
// commit order on both engines; a search cursor is a position in that order
// plus the snapshot seq of its first page, which is why paging never skips or
// repeats a row while others write.
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/XSAM/otelsql"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"github.com/jmoiron/sqlx"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/spgateway/spgateway/gateway"
)

//go:embed migrations
var migrations embed.FS

// The supported engines.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Config says where the database is.
type Config struct {
	// Driver is DriverSQLite or DriverPostgres.
	Driver string
	// DSN is a file path for SQLite (its folder is created) and a
	// connection URL for PostgreSQL.
	DSN string
	// MaxReaders caps concurrent read connections (default 8).
	MaxReaders int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// TracerProvider, when set, traces every statement run for a traced
	// request or delivery (otelsql). Spans carry the statement text, never
	// its arguments: every value is bound.
	TracerProvider trace.TracerProvider
}

// Store implements gateway.Store.
type Store struct {
	d      dialect
	writer *sqlx.DB // SQLite: one connection, BEGIN IMMEDIATE; PostgreSQL: the pool
	reader *sqlx.DB // SQLite: query_only connections; PostgreSQL: the same pool
	// Prepared statements for the writer and the readers (SQLite only).
	writes, reads *stmtCache
	now           func() time.Time
	// sqliteDSN opens another connection to the SQLite file (the
	// migration lock's, the checkpointer's).
	sqliteDSN string
	// checkpoints copies the SQLite WAL into the database file, off the
	// writer, and group commits SQLite writes (both nil for PostgreSQL).
	checkpoints *checkpointer
	group       *committer
}

var _ gateway.Store = (*Store)(nil)

// Open connects to the database and brings its schema up to date.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	s, err := connect(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.Migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if s.d.name == DriverSQLite {
		if s.checkpoints, err = startCheckpointer(s.sqliteDSN); err != nil {
			s.Close()
			return nil, fmt.Errorf("store.Open: %w", err)
		}
		s.group = newCommitter(s)
	}
	return s, nil
}

func connect(cfg Config) (*Store, error) {
	if cfg.DSN == "" {
		return nil, errors.New("store.Open: no DSN")
	}
	if cfg.MaxReaders <= 0 {
		cfg.MaxReaders = 8
	}
	s := &Store{now: cfg.Now}
	if s.now == nil {
		s.now = time.Now
	}
	switch cfg.Driver {
	case DriverSQLite:
		s.d = sqliteDialect
		path := strings.TrimPrefix(cfg.DSN, "file:")
		if i := strings.IndexByte(path, '?'); i >= 0 {
			return nil, errors.New("store.Open: give SQLite a file path; the gateway sets the connection options")
		}
		if dir := filepath.Dir(path); dir != "" {
			if err := os.MkdirAll(dir, 0o750); err != nil {
				return nil, fmt.Errorf("store.Open: %w", err)
			}
		}
		s.sqliteDSN = sqliteDSN(path)
		w, err := open(cfg, "sqlite", SQLiteWriterDSN(path))
		if err != nil {
			return nil, fmt.Errorf("store.Open: %w", err)
		}
		// One writer: SQLite has one write lock; queueing for it in the
		// pool is cheaper and fairer than spinning on SQLITE_BUSY.
		w.SetMaxOpenConns(1)
		w.SetMaxIdleConns(1)
		w.SetConnMaxLifetime(0)
		r, err := open(cfg, "sqlite", sqliteDSN(path)+"&_pragma=query_only(1)")
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("store.Open: %w", err)
		}
		r.SetMaxOpenConns(cfg.MaxReaders)
		r.SetMaxIdleConns(cfg.MaxReaders)
		r.SetConnMaxLifetime(0)
		s.writer, s.reader = w, r
		s.writes, s.reads = newStmtCache(w, 64), newStmtCache(r, 256)
	case DriverPostgres:
		s.d = postgresDialect
		db, err := open(cfg, "pgx", cfg.DSN)
		if err != nil {
			return nil, fmt.Errorf("store.Open: %w", err)
		}
		db.SetMaxOpenConns(cfg.MaxReaders + 4)
		db.SetMaxIdleConns(cfg.MaxReaders + 4)
		db.SetConnMaxIdleTime(5 * time.Minute)
		s.writer, s.reader = db, db
	default:
		return nil, fmt.Errorf("store.Open: unknown driver %q (want %s or %s)", cfg.Driver, DriverSQLite, DriverPostgres)
	}
	return s, nil
}

// sqliteOptions are the connection options of every connection to the
// SQLite file.
const sqliteOptions = "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)"

func sqliteDSN(path string) string { return "file:" + path + "?" + sqliteOptions }

// SQLiteWriterDSN is the connection string (for the modernc.org/sqlite
// driver) of the store's one writer connection to the SQLite file at path:
// WAL, synchronous NORMAL, a busy timeout, foreign keys, a 16 MiB page
// cache, a log cut back to 64 MiB when it starts
// again, and BEGIN IMMEDIATE; SQLiteCheckpointer runs beside it. It is
// exported for the bench's baseline, which must pay what the store pays
// for a durable insert.
func SQLiteWriterDSN(path string) string {
	// The writer's page cache is 16 MiB, not 2: a batch of audit events
	// touches more pages than 2 MiB holds, and a cache that fills spills
	// pages into the WAL in the middle of the transaction. The
	// checkpointer copies the log on its own connection; the writer keeps
	// SQLite's own checkpoint at a thousand pages, which then finds little
	// left to copy. A burst that grew the log file is cut back to 64 MiB
	// when the log starts again. Temporary storage (statement and
	// savepoint journals, sorts) is SQLite's default, files that stay in
	// the operating system's cache: held in memory (temp_store MEMORY) it
	// took the process from 190 to 680 MB at the peak under the load
	// generator, for no measurable speed-up.
	return sqliteDSN(path) + "&_pragma=cache_size(-16384)&_pragma=journal_size_limit(67108864)&_txlock=immediate"
}

// open opens a connection pool of driverName, wrapped in otelsql when cfg has a
// TracerProvider.
func open(cfg Config, driverName, dsn string) (*sqlx.DB, error) {
	if cfg.TracerProvider == nil {
		return sqlx.Open(driverName, dsn)
	}
	system := "sqlite"
	if driverName == "pgx" {
		system = "postgresql"
	}
	db, err := otelsql.Open(driverName, dsn,
		otelsql.WithTracerProvider(cfg.TracerProvider),
		otelsql.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelsql.WithAttributes(attribute.String("db.system.name", system)),
		otelsql.WithSpanOptions(otelsql.SpanOptions{
			OmitConnResetSession: true,
			OmitRows:             true,
			OmitConnectorConnect: true,
			// A statement is traced as part of a request or a delivery; the
			// outbox poll and the PROM sweep, every few seconds on every
			// replica, would otherwise each make a trace of their own.
			SpanFilter: func(ctx context.Context, _ otelsql.Method, _ string, _ []driver.NamedValue) bool {
				return trace.SpanContextFromContext(ctx).IsValid()
			},
		}))
	if err != nil {
		return nil, err
	}
	return sqlx.NewDb(db, driverName), nil
}

// Migrate applies the embedded migrations that the database lacks. It holds
// a lock while it does (PostgreSQL: an advisory lock; SQLite: a lock row),
// so processes starting together migrate once.
func (s *Store) Migrate(ctx context.Context) error {
	fsys, err := fs.Sub(migrations, "migrations/"+s.d.name)
	if err != nil {
		return fmt.Errorf("store.Migrate: %w", err)
	}
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
	if s.d.name == DriverPostgres {
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return fmt.Errorf("store.Migrate: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	} else {
		if err := openSQLite(ctx, s.writer.DB); err != nil {
			return fmt.Errorf("store.Migrate: %w", err)
		}
		db, err := sql.Open("sqlite", s.sqliteDSN)
		if err != nil {
			return fmt.Errorf("store.Migrate: %w", err)
		}
		defer db.Close()
		db.SetMaxOpenConns(1)
		if err := openSQLite(ctx, db); err != nil {
			return fmt.Errorf("store.Migrate: %w", err)
		}
		opts = append(opts, goose.WithLocker(newSQLiteMigrationLock(db, gateway.NewUUID())))
	}
	p, err := goose.NewProvider(s.d.goose, s.writer.DB, fsys, opts...)
	if err != nil {
		return fmt.Errorf("store.Migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("store.Migrate: %w", err)
	}
	return nil
}

// Close closes the connections.
func (s *Store) Close() error {
	s.group.close()
	cerr := s.checkpoints.close()
	s.writes.close()
	s.reads.close()
	err := s.writer.Close()
	if s.reader != s.writer {
		err = errors.Join(err, s.reader.Close())
	}
	return errors.Join(cerr, err)
}

// Ping checks that the database answers and holds the gateway's schema.
func (s *Store) Ping(ctx context.Context) error {
	var seq int64
	if err := s.reader.GetContext(ctx, &seq, `SELECT seq FROM change_clock WHERE id = 1`); err != nil {
		return gateway.Internal("store.Ping", err)
	}
	return nil
}

// View runs fn in a read-only transaction, a consistent snapshot.
func (s *Store) View(ctx context.Context, fn func(gateway.View) error) error {
	tx, err := s.reader.BeginTxx(ctx, s.d.readTx)
	if err != nil {
		return gateway.Internal("store.View", err)
	}
	defer tx.Rollback()
	v := &view{tx: tx, d: s.d, stmts: s.reads}
	if err := v.getOne(ctx, &v.snapshot, `SELECT seq FROM change_clock WHERE id = 1`); err != nil {
		return gateway.Internal("store.View", err)
	}
	if err := fn(v); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return gateway.Internal("store.View", err)
	}
	return nil
}

// Update runs fn in a write transaction. It first locks the change clock, so
// writers run one at a time and their sequence numbers follow commit order.
// On SQLite, writes waiting for the writer are committed together, each in
// a savepoint of its own (see committer): fn's failure rolls back fn's
// writes only, and Update returns once they are committed.
func (s *Store) Update(ctx context.Context, fn func(gateway.Tx) error) error {
	if s.group != nil {
		return s.group.update(ctx, fn)
	}
	tx, err := s.writer.BeginTxx(ctx, nil)
	if err != nil {
		return gateway.Internal("store.Update", err)
	}
	defer tx.Rollback()
	var clock struct {
		Seq         int64 `db:"seq"`
		LastUpdated int64 `db:"last_updated"`
	}
	t := &writeTx{view: view{tx: tx, d: s.d, stmts: s.writes}}
	if err := t.getOne(ctx, &clock, s.d.lockClock); err != nil {
		return gateway.Internal("store.Update", err)
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	if last := time.UnixMicro(clock.LastUpdated).UTC(); !now.After(last) {
		now = last.Add(time.Microsecond)
	}
	t.snapshot, t.now = clock.Seq, now
	if err := fn(t); err != nil {
		return err
	}
	if t.snapshot != clock.Seq {
		if _, err := t.exec(ctx, `UPDATE change_clock SET seq = ?, last_updated = ? WHERE id = 1`,
			t.snapshot, now.UnixMicro()); err != nil {
			return gateway.Internal("store.Update", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return gateway.Internal("store.Update", err)
	}
	return nil
}
