package store

import (
	"cmp"
	"context"
	"database/sql"
	"slices"
	"time"

	"github.com/spgateway/spgateway/gateway"
)

var _ gateway.Outbox = (*Store)(nil)

type outboxRow struct {
	Seq         int64          `db:"seq"`
	ID          string         `db:"id"`
	Destination string         `db:"destination"`
	Kind        string         `db:"kind"`
	OrderKey    string         `db:"order_key"`
	TaskVersion int            `db:"task_version"`
	Payload     []byte         `db:"payload"`
	Status      string         `db:"status"`
	Attempts    int            `db:"attempts"`
	LastError   sql.NullString `db:"last_error"`
	CreatedAt   int64          `db:"created_at"`
	NextAttempt int64          `db:"next_attempt"`
	DeliveredAt sql.NullInt64  `db:"delivered_at"`
}

const outboxColumns = `seq, id, destination, kind, order_key, task_version, payload, status, attempts, last_error,
	created_at, next_attempt, delivered_at`

func (r outboxRow) toEvent() gateway.OutboxEvent {
	return gateway.OutboxEvent{
		ID: r.ID, Seq: r.Seq, Destination: r.Destination, Kind: r.Kind, OrderKey: r.OrderKey, TaskVersion: r.TaskVersion,
		Payload: r.Payload, Status: r.Status, Attempts: r.Attempts, LastError: r.LastError.String,
		CreatedAt: time.UnixMicro(r.CreatedAt).UTC(), NextAttempt: time.UnixMicro(r.NextAttempt).UTC(),
		DeliveredAt: fromMicros(r.DeliveredAt),
	}
}

func toEvents(rows []outboxRow) []gateway.OutboxEvent {
	out := make([]gateway.OutboxEvent, len(rows))
	for i, r := range rows {
		out[i] = r.toEvent()
	}
	return out
}

// Enqueue writes events in the transaction. Writers are serialised, so seq
// (an autoincrement) follows commit order.
func (t *writeTx) Enqueue(ctx context.Context, events ...gateway.OutboxEvent) error {
	for i := range events {
		e := &events[i]
		e.Status, e.CreatedAt, e.NextAttempt = gateway.OutboxPending, t.now, t.now
		err := t.getOne(ctx, &e.Seq, `INSERT INTO outbox (id, destination, kind, order_key, task_version, payload, status,
			attempts, created_at, next_attempt) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?) RETURNING seq`,
			e.ID, e.Destination, e.Kind, e.OrderKey, e.TaskVersion, string(e.Payload), e.Status, t.now.UnixMicro(), t.now.UnixMicro())
		if err != nil {
			return gateway.Internal("store.Enqueue", err)
		}
	}
	return nil
}

// ClaimOutbox leases the heads of the pending queues. The candidates are
// chosen once, in a CTE (PostgreSQL may run a subquery of the UPDATE's
// WHERE more than once, and a locking one then returns more rows than its
// LIMIT), locked on PostgreSQL in seq order skipping those another claim
// holds; the lease is checked again in the UPDATE's own WHERE. Two
// workers never hold one event.
func (s *Store) ClaimOutbox(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]gateway.OutboxEvent, error) {
	n := now.UnixMicro()
	var rows []outboxRow
	err := s.writer.SelectContext(ctx, &rows, s.d.rebind(`WITH picked AS (
			SELECT o.seq FROM outbox o
			WHERE o.status = 'pending' AND o.next_attempt <= ? AND (o.lease_until IS NULL OR o.lease_until < ?)
			AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.destination = o.destination AND e.order_key = o.order_key
				AND e.status = 'pending' AND e.seq < o.seq)
			ORDER BY o.seq LIMIT ?`+s.d.claimLock+`)
		UPDATE outbox SET lease_owner = ?, lease_until = ?
		WHERE seq IN (SELECT seq FROM picked) AND status = 'pending' AND (lease_until IS NULL OR lease_until < ?)
		RETURNING `+outboxColumns), n, n, limit, owner, now.Add(lease).UnixMicro(), n)
	if err != nil {
		return nil, gateway.Internal("store.ClaimOutbox", err)
	}
	// RETURNING gives the rows in no particular order (PostgreSQL: storage order).
	slices.SortFunc(rows, func(a, b outboxRow) int { return cmp.Compare(a.Seq, b.Seq) })
	return toEvents(rows), nil
}

// FinishOutbox records an attempt's outcome and ends the lease, if owner
// still holds it.
func (s *Store) FinishOutbox(ctx context.Context, owner string, e gateway.OutboxEvent) (bool, error) {
	res, err := s.writer.ExecContext(ctx, s.d.rebind(`UPDATE outbox SET status = ?, attempts = ?, last_error = ?, next_attempt = ?,
		delivered_at = ?, lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ?`),
		e.Status, e.Attempts, nullString(e.LastError), e.NextAttempt.UnixMicro(), nullMicros(e.DeliveredAt), e.ID, owner)
	if err != nil {
		return false, gateway.Internal("store.FinishOutbox", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, gateway.Internal("store.FinishOutbox", err)
	}
	return n == 1, nil
}

// OutboxDepth counts events by status.
func (s *Store) OutboxDepth(ctx context.Context) (map[string]int, error) {
	var rows []struct {
		Status string `db:"status"`
		N      int    `db:"n"`
	}
	if err := s.reader.SelectContext(ctx, &rows, `SELECT status, COUNT(*) AS n FROM outbox GROUP BY status`); err != nil {
		return nil, gateway.Internal("store.OutboxDepth", err)
	}
	out := map[string]int{gateway.OutboxPending: 0, gateway.OutboxDelivered: 0, gateway.OutboxDead: 0}
	for _, r := range rows {
		out[r.Status] = r.N
	}
	return out, nil
}

// OutboxBacklog counts the events not delivered, pending and dead, for the
// metrics endpoint: a range of the (status, next_attempt) index, so a
// scrape costs what waits, not everything the outbox has delivered.
func (s *Store) OutboxBacklog(ctx context.Context) (map[string]int, error) {
	var rows []struct {
		Status string `db:"status"`
		N      int    `db:"n"`
	}
	if err := s.reader.SelectContext(ctx, &rows, s.d.rebind(`SELECT status, COUNT(*) AS n FROM outbox
		WHERE status IN (?, ?) GROUP BY status`), gateway.OutboxPending, gateway.OutboxDead); err != nil {
		return nil, gateway.Internal("store.OutboxBacklog", err)
	}
	out := map[string]int{gateway.OutboxPending: 0, gateway.OutboxDead: 0}
	for _, r := range rows {
		out[r.Status] = r.N
	}
	return out, nil
}

// TaskCountsByStatus counts current Tasks (referrals) by status, for the
// metrics endpoint: one scan of the current Tasks, no patient data.
func (s *Store) TaskCountsByStatus(ctx context.Context) (map[string]int, error) {
	var rows []struct {
		Status string `db:"status"`
		N      int    `db:"n"`
	}
	if err := s.reader.SelectContext(ctx, &rows, `SELECT COALESCE(status, '') AS status, COUNT(*) AS n FROM resource_versions
		WHERE type = 'Task' AND superseded_seq IS NULL GROUP BY status`); err != nil {
		return nil, gateway.Internal("store.TaskCountsByStatus", err)
	}
	out := make(map[string]int, len(rows))
	for _, r := range rows {
		out[r.Status] = r.N
	}
	return out, nil
}

// ListOutbox returns events of a status, oldest first.
func (s *Store) ListOutbox(ctx context.Context, status string, limit int) ([]gateway.OutboxEvent, error) {
	var rows []outboxRow
	if err := s.reader.SelectContext(ctx, &rows, s.d.rebind(`SELECT `+outboxColumns+` FROM outbox WHERE status = ? ORDER BY seq LIMIT ?`),
		status, limit); err != nil {
		return nil, gateway.Internal("store.ListOutbox", err)
	}
	return toEvents(rows), nil
}

// RedriveOutbox makes a dead event pending again.
func (s *Store) RedriveOutbox(ctx context.Context, id string, now time.Time) error {
	res, err := s.writer.ExecContext(ctx, s.d.rebind(`UPDATE outbox SET status = 'pending', attempts = 0, last_error = NULL,
		next_attempt = ?, lease_owner = NULL, lease_until = NULL WHERE id = ? AND status = 'dead'`), now.UnixMicro(), id)
	if err != nil {
		return gateway.Internal("store.RedriveOutbox", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return gateway.Errorf(gateway.CodeNotFound, "no dead letter %s", id)
	}
	return nil
}
