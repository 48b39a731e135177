package store

import (
	"database/sql"

	"github.com/jmoiron/sqlx"
	"github.com/pressly/goose/v3"
)

// dialect is everything that differs between the engines. The rest of the SQL
// is written once, with ? placeholders.
type dialect struct {
	name  string
	goose goose.Dialect
	bind  int
	// lockClock reads the change clock and, where the engine needs it,
	// locks it until commit. SQLite's BEGIN IMMEDIATE already holds the
	// database's only write lock.
	lockClock string
	// readTx starts a read that sees one snapshot for all its statements.
	readTx *sql.TxOptions
	// accessible restricts the resource_versions row v to what the
	// organisation bound to its ? may read. It must cost one probe of
	// resource_access's key per row, whatever the planner's statistics say.
	accessible string
	// claimLock ends the outbox claim's choice of events: on PostgreSQL it
	// locks them in seq order, skipping those another claim is taking, so
	// concurrent claims (several replicas) neither wait on nor deadlock
	// with each other. SQLite has one writer.
	claimLock string
}

const accessibleSQL = `EXISTS (SELECT 1 FROM resource_access a WHERE a.org = ? AND a.type = v.type AND a.id = v.id`

var sqliteDialect = dialect{
	name:      DriverSQLite,
	goose:     goose.DialectSQLite3,
	bind:      sqlx.QUESTION,
	lockClock: `SELECT seq, last_updated FROM change_clock WHERE id = 1`,
	readTx:    &sql.TxOptions{ReadOnly: true},
	// SQLite runs a correlated EXISTS as a probe of the key per row.
	accessible: accessibleSQL + `)`,
}

var postgresDialect = dialect{
	name:      DriverPostgres,
	goose:     goose.DialectPostgres,
	bind:      sqlx.DOLLAR,
	lockClock: `SELECT seq, last_updated FROM change_clock WHERE id = 1 FOR UPDATE`,
	readTx:    &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead},
	// PostgreSQL would turn the EXISTS into a semi-join, and with stale or
	// no statistics (a new database) scan all of the organisation's access
	// rows for every candidate row. OFFSET 0 keeps the subquery a
	// correlated probe of the primary key.
	accessible: accessibleSQL + ` OFFSET 0)`,
	claimLock:  ` FOR UPDATE OF o SKIP LOCKED`,
}

func (d dialect) rebind(q string) string { return sqlx.Rebind(d.bind, q) }
