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
}

var sqliteDialect = dialect{
	name:      DriverSQLite,
	goose:     goose.DialectSQLite3,
	bind:      sqlx.QUESTION,
	lockClock: `SELECT seq, last_updated FROM change_clock WHERE id = 1`,
	readTx:    &sql.TxOptions{ReadOnly: true},
}

var postgresDialect = dialect{
	name:      DriverPostgres,
	goose:     goose.DialectPostgres,
	bind:      sqlx.DOLLAR,
	lockClock: `SELECT seq, last_updated FROM change_clock WHERE id = 1 FOR UPDATE`,
	readTx:    &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead},
}

func (d dialect) rebind(q string) string { return sqlx.Rebind(d.bind, q) }
