package store

import (
	"context"
	"sync"

	"github.com/jmoiron/sqlx"
)

// stmtCache keeps prepared statements by SQL text. database/sql otherwise
// prepares a statement on every call, and SQLite's parser then costs about
// as much as the write itself. A transaction reuses a cached statement on
// its own connection (Tx.Stmtx prepares it there once).
//
// Preparing goes through the pool and so needs a free connection: done
// inside a transaction it would wait forever for SQLite's one writer
// connection, which the transaction holds. So the first use of a query runs
// unprepared and a goroutine prepares it once a connection is free; later
// uses get the statement. Searches build SQL with varying IN lists, so the
// cache is capped; past the cap, statements are prepared per call as before.
// PostgreSQL's driver (pgx) caches statements by itself and needs none.
type stmtCache struct {
	db      *sqlx.DB
	max     int
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	m       map[string]*sqlx.Stmt
	pending map[string]bool
}

func newStmtCache(db *sqlx.DB, max int) *stmtCache {
	ctx, cancel := context.WithCancel(context.Background())
	return &stmtCache{db: db, max: max, ctx: ctx, cancel: cancel, m: map[string]*sqlx.Stmt{}, pending: map[string]bool{}}
}

// stmt returns the cached statement for query within tx, or nil when it is
// not (yet) cached.
func (c *stmtCache) stmt(ctx context.Context, tx *sqlx.Tx, query string) *sqlx.Stmt {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	s := c.m[query]
	if s == nil && c.m != nil && !c.pending[query] && len(c.m)+len(c.pending) < c.max {
		c.pending[query] = true
		c.wg.Add(1)
		go c.prepare(query)
	}
	c.mu.Unlock()
	if s == nil {
		return nil
	}
	return tx.StmtxContext(ctx, s)
}

func (c *stmtCache) prepare(query string) {
	defer c.wg.Done()
	s, err := c.db.PreparexContext(c.ctx, query)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.pending, query)
	if err != nil {
		return // the query fails unprepared too, and says why there
	}
	if c.m == nil { // closed meanwhile
		s.Close()
		return
	}
	c.m[query] = s
}

// close waits for preparations under way and closes every statement.
func (c *stmtCache) close() {
	if c == nil {
		return
	}
	c.cancel()
	c.wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.m {
		s.Close()
	}
	c.m = nil
}
