package store

import (
	"context"
	"database/sql"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// checkpointEvery is how often the checkpointer copies the SQLite WAL back
// into the database file; restartAbove is the log's length, in pages, past
// which the store's writer waits for readers to leave the log so that it
// can start again from its beginning.
var (
	checkpointEvery = 200 * time.Millisecond // variables for tests
	restartAbove    = 4096
)

// checkpointer copies the SQLite write-ahead log back into the database
// file from a connection of its own. SQLite does it inside the commit that
// takes the log past 1000 pages, while that commit holds the one write
// lock: a profile of intake showed half the writer's system calls there.
// A PASSIVE checkpoint waits for no one and blocks no one: writers go on
// appending to the log while it copies, so when the writer's own
// checkpoint comes it finds little left to copy.
//
// Copying is not enough. The log starts again from its beginning only when
// a write begins with every page copied and no reader still reading from
// the log; under reads and writes that never pause, that moment never
// comes, and the log grew past a gigabyte under the load generator,
// slowing every read and growing the process by its index (it did before
// this checkpointer too). So when the log passes restartAbove pages the
// checkpointer says so, and the store's writer, between two transactions,
// runs a RESTART checkpoint: it waits (within the busy timeout) for the
// readers on the log to finish, which takes as long as a read, and the
// next write starts the log again (TestSQLiteLogStaysBounded).
//
// Durability is unchanged: a commit is in the log before it is
// acknowledged, checkpointed or not.
type checkpointer struct {
	db         *sql.DB
	stop       chan struct{}
	done       chan struct{}
	closing    sync.Once
	restartDue atomic.Bool // the log has passed restartAbove pages
}

// startCheckpointer opens its connection to the SQLite file at dsn and
// starts it.
func startCheckpointer(dsn string) (*checkpointer, error) {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	c := &checkpointer{db: db, stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c, nil
}

func (c *checkpointer) run() {
	defer close(c.done)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			// A failure (the file busy in another process's checkpoint, a
			// full disk) leaves the pages in the log, still durable; the
			// next tick tries again.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			var busy, pages, copied int
			err := c.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &pages, &copied)
			cancel()
			if err == nil && pages >= restartAbove {
				c.restartDue.Store(true)
			}
		}
	}
}

// SQLiteCheckpointer starts, for the SQLite file at path, the checkpointer
// a store runs beside its writer (SQLiteWriterDSN). It is exported for the
// bench's baseline, which must pay what the store pays; Close stops it.
func SQLiteCheckpointer(path string) (io.Closer, error) {
	return startCheckpointer(sqliteDSN(path))
}

// Close is close, for SQLiteCheckpointer's callers.
func (c *checkpointer) Close() error { return c.close() }

// close stops the checkpointer and closes its connection, once; the
// store's last connection to close checkpoints what is left.
func (c *checkpointer) close() (err error) {
	if c == nil {
		return nil
	}
	c.closing.Do(func() {
		close(c.stop)
		<-c.done
		err = c.db.Close()
	})
	return err
}
