package store

import (
	"context"
	"database/sql"
	"io"
	"sync"
	"time"
)

// checkpointEvery is how often the checkpointer copies the SQLite WAL back
// into the database file.
const checkpointEvery = 200 * time.Millisecond

// checkpointer copies the SQLite write-ahead log back into the database
// file from a connection of its own. SQLite would otherwise do it inside
// the commit that takes the log past 1000 pages, while that commit holds
// the one write lock: a profile of intake showed half the writer's system
// calls there. A PASSIVE checkpoint waits for no one and blocks no one:
// writers go on appending to the log while it copies, and the log starts
// again from its beginning once everything in it has been copied and no
// reader still needs it, as it did before. Durability is unchanged: a
// commit is in the log before it is acknowledged, checkpointed or not.
type checkpointer struct {
	db      *sql.DB
	stop    chan struct{}
	done    chan struct{}
	closing sync.Once
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
			_, _ = c.db.ExecContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`)
			cancel()
		}
	}
}

// SQLiteCheckpointer starts, for the SQLite file at path, the checkpointer
// a store runs beside its writer, whose connection (SQLiteWriterDSN) never
// checkpoints. It is exported for the bench's baseline, which must pay what
// the store pays; Close stops it.
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
