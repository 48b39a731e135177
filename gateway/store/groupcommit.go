package store

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/spgateway/spgateway/gateway"
)

// maxGroup caps how many writes one SQLite transaction commits together.
const maxGroup = 32

// errStoreClosed answers a write sent after Close.
var errStoreClosed = errors.New("the store is closed")

// committer commits SQLite writes in groups. SQLite has one writer, so
// concurrent writes queue for it anyway; a commit writes every page the
// transaction changed to the log, one system call each, and most of those
// pages (the change clock, the tables' last pages, the indexes' upper
// levels) are the same from one write to the next. So the writes waiting
// when the writer comes free run one after another in one transaction,
// each inside its own savepoint: a write that fails is rolled back to its
// savepoint alone, and leaves the others be. Each is answered only after
// the commit, so no write is acknowledged before it is durable, and none
// is visible to readers before its caller hears of it.
//
// A write's statements run on a context detached from its caller's
// cancellation: SQLite answers an interrupted statement by rolling back the
// whole transaction, which would take the rest of the group with it. A
// caller gone before its turn is skipped; one gone during its turn has its
// write committed, as if its answer were lost on the way (which clients
// already handle: conditional creates and If-Match).
type committer struct {
	s       *Store
	queue   chan *groupWrite
	stop    chan struct{}
	stopped chan struct{}
	commits atomic.Int64 // transactions committed, for tests
}

// groupWrite is one Update waiting for its group.
type groupWrite struct {
	ctx  context.Context
	fn   func(gateway.Tx) error
	done chan error
}

func newCommitter(s *Store) *committer {
	c := &committer{s: s, queue: make(chan *groupWrite), stop: make(chan struct{}), stopped: make(chan struct{})}
	go c.run()
	return c
}

// writePanic carries a write's panic back to its caller's goroutine.
type writePanic struct {
	value any
	stack []byte
}

func (p *writePanic) Error() string { return fmt.Sprintf("panic in a write: %v\n%s", p.value, p.stack) }

// update queues fn and waits for its group's outcome. A panic in fn is
// raised again here, in the caller's goroutine, where it would have been
// raised had fn run there.
func (c *committer) update(ctx context.Context, fn func(gateway.Tx) error) error {
	w := &groupWrite{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case c.queue <- w:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.stopped:
		return gateway.Internal("store.Update", errStoreClosed)
	}
	err := <-w.done // a queued write always gets its answer
	if p, ok := err.(*writePanic); ok {
		panic(fmt.Sprintf("%v\n\ngoroutine of the group commit:\n%s", p.value, p.stack))
	}
	return err
}

// runWrite runs fn, turning a panic into a *writePanic.
func runWrite(fn func(gateway.Tx) error, t *writeTx) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &writePanic{value: v, stack: debug.Stack()}
		}
	}()
	return fn(t)
}

func (c *committer) run() {
	defer close(c.stopped)
	for {
		var group []*groupWrite
		select {
		case <-c.stop:
			return
		case w := <-c.queue:
			group = append(group, w)
		}
	more:
		for len(group) < maxGroup {
			select {
			case w := <-c.queue:
				group = append(group, w)
			default:
				break more
			}
		}
		c.restartLog()
		c.commit(group)
	}
}

// restartLog runs, when the checkpointer asks for it, a RESTART checkpoint
// on the writer between two transactions (see checkpointer). It is bounded
// by a timeout; if it fails, the checkpointer asks again.
func (c *committer) restartLog() {
	if c.s.checkpoints == nil || !c.s.checkpoints.restartDue.CompareAndSwap(true, false) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = c.s.writer.ExecContext(ctx, `PRAGMA wal_checkpoint(RESTART)`)
}

// close stops taking writes, once the group under way is answered.
func (c *committer) close() {
	if c == nil {
		return
	}
	select {
	case <-c.stopped:
	default:
		close(c.stop)
		<-c.stopped
	}
}

// commit runs a group in one transaction and answers each write.
func (c *committer) commit(group []*groupWrite) {
	errs := make([]error, len(group))
	err := c.transaction(group, errs)
	for i, w := range group {
		switch {
		case errs[i] != nil:
			w.done <- errs[i]
		case err != nil:
			w.done <- err // its write was rolled back with the group's
		default:
			w.done <- nil
		}
	}
}

// transaction runs each write of the group in a savepoint, recording a
// write's own failure in errs, and commits. Its error fails every write
// that had not failed by itself.
func (c *committer) transaction(group []*groupWrite, errs []error) error {
	s := c.s
	ctx := context.Background()
	tx, err := s.writer.BeginTxx(ctx, nil)
	if err != nil {
		return gateway.Internal("store.Update", err)
	}
	defer tx.Rollback()
	t := &writeTx{view: view{tx: tx, d: s.d, stmts: s.writes, detached: true}}
	var clock struct {
		Seq         int64 `db:"seq"`
		LastUpdated int64 `db:"last_updated"`
	}
	if err := t.getOne(ctx, &clock, s.d.lockClock); err != nil {
		return gateway.Internal("store.Update", err)
	}
	seq, last := clock.Seq, time.UnixMicro(clock.LastUpdated).UTC()
	for i, w := range group {
		if err := w.ctx.Err(); err != nil {
			errs[i] = err // gone before its turn: nothing written
			continue
		}
		now := s.now().UTC().Truncate(time.Microsecond)
		if !now.After(last) {
			now = last.Add(time.Microsecond)
		}
		if _, err := tx.ExecContext(ctx, `SAVEPOINT write`); err != nil {
			return gateway.Internal("store.Update", err)
		}
		t.snapshot, t.now = seq, now
		if err := runWrite(w.fn, t); err != nil {
			errs[i] = err
			if _, rerr := tx.ExecContext(ctx, `ROLLBACK TO write`); rerr != nil {
				// SQLite rolled the whole transaction back (a full disk,
				// an I/O error): the group's writes are gone.
				return gateway.Internal("store.Update", errors.Join(err, rerr))
			}
		} else if t.snapshot != seq {
			seq, last = t.snapshot, now
		}
		if _, err := tx.ExecContext(ctx, `RELEASE write`); err != nil {
			return gateway.Internal("store.Update", err)
		}
	}
	if seq != clock.Seq {
		if _, err := t.exec(ctx, `UPDATE change_clock SET seq = ?, last_updated = ? WHERE id = 1`, seq, last.UnixMicro()); err != nil {
			return gateway.Internal("store.Update", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return gateway.Internal("store.Update", err)
	}
	c.commits.Add(1)
	return nil
}
