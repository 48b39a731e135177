package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spgateway/spgateway/gateway"
)

// auditRow is an audit_events row.
type auditRow struct {
	Seq          int64  `db:"seq"`
	ID           string `db:"id"`
	Recorded     int64  `db:"recorded"`
	ClientID     string `db:"client_id"`
	Role         string `db:"role"`
	Org          string `db:"org"`
	Action       string `db:"action"`
	ResourceType string `db:"resource_type"`
	Outcome      string `db:"outcome"`
	SourceIP     string `db:"source_ip"`
	RequestID    string `db:"request_id"`
	Entities     string `db:"entities"` // a JSON array of references
}

const auditColumns = `a.seq, a.id, a.recorded, a.client_id, a.role, a.org, a.action, a.resource_type, a.outcome, a.source_ip, a.request_id, a.entities`

func (r auditRow) toEvent() (gateway.AuditEvent, error) {
	e := gateway.AuditEvent{Seq: r.Seq, ID: r.ID, Recorded: time.UnixMicro(r.Recorded).UTC(), ClientID: r.ClientID,
		Role: gateway.Role(r.Role), Org: r.Org, Action: gateway.AuditAction(r.Action), ResourceType: r.ResourceType,
		Outcome: r.Outcome, SourceIP: r.SourceIP, RequestID: r.RequestID}
	if r.Entities != "[]" {
		if err := json.Unmarshal([]byte(r.Entities), &e.Entities); err != nil {
			return e, fmt.Errorf("audit event %s: entities: %w", r.ID, err)
		}
	}
	return e, nil
}

// entitiesJSON is how audit_events keeps an event's references.
func entitiesJSON(refs []string) (string, error) {
	if len(refs) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(refs)
	return string(b), err
}

// Rows per multi-row insert, well inside both engines' limits on bound
// parameters.
const (
	auditEventsPerInsert = 200
	auditRefsPerInsert   = 1000
)

// Audit appends events with one multi-row insert per table (per chunk): an
// event holds its references, and audit_refs indexes them for searches.
// Writers are serialised, so seq follows commit order and a newest-first
// listing by seq neither skips nor repeats an event while others write. The
// statements go straight to the transaction: their text varies with the
// batch size, which would crowd the statement cache.
func (t *writeTx) Audit(ctx context.Context, events ...gateway.AuditEvent) error {
	for len(events) > 0 {
		n := min(len(events), auditEventsPerInsert)
		if err := t.auditChunk(ctx, events[:n]); err != nil {
			return gateway.Internal("store.Audit", err)
		}
		events = events[n:]
	}
	return nil
}

func (t *writeTx) auditChunk(ctx context.Context, events []gateway.AuditEvent) error {
	ctx = t.stmtCtx(ctx)
	const cols = 11
	args := make([]any, 0, cols*len(events))
	for _, e := range events {
		refs, err := entitiesJSON(e.Entities)
		if err != nil {
			return err
		}
		args = append(args, e.ID, e.Recorded.UnixMicro(), e.ClientID, string(e.Role), e.Org, string(e.Action),
			e.ResourceType, e.Outcome, e.SourceIP, e.RequestID, refs)
	}
	values := strings.TrimSuffix(strings.Repeat("("+placeholders(cols)+"), ", len(events)), ", ")
	var ids []struct {
		Seq int64  `db:"seq"`
		ID  string `db:"id"`
	}
	if err := t.tx.SelectContext(ctx, &ids, t.d.rebind(`INSERT INTO audit_events
		(id, recorded, client_id, role, org, action, resource_type, outcome, source_ip, request_id, entities)
		VALUES `+values+` RETURNING seq, id`), args...); err != nil {
		return err
	}
	seqs := make(map[string]int64, len(ids))
	for _, r := range ids {
		seqs[r.ID] = r.Seq
	}
	args = args[:0]
	rows := 0
	flush := func() error {
		if rows == 0 {
			return nil
		}
		values := strings.TrimSuffix(strings.Repeat("(?, ?), ", rows), ", ")
		_, err := t.tx.ExecContext(ctx, t.d.rebind(`INSERT INTO audit_refs (ref, audit_seq) VALUES `+values+
			` ON CONFLICT DO NOTHING`), args...)
		args, rows = args[:0], 0
		return err
	}
	for _, e := range events {
		seq, ok := seqs[e.ID]
		if !ok {
			return errors.New("an inserted audit event did not come back")
		}
		for _, ref := range e.Entities {
			args = append(args, ref, seq)
			if rows++; rows == auditRefsPerInsert {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

// AuditEvents lists events newest first: the entity condition probes
// audit_refs' key (ref, audit_seq), the agent and date conditions their own
// indexes.
func (v *view) AuditEvents(ctx context.Context, q gateway.AuditQuery) (gateway.AuditPage, error) {
	if q.Count < 0 {
		return gateway.AuditPage{}, gateway.Errorf(gateway.CodeInvalid, "a page of audit events cannot have a negative size")
	}
	var w query
	for _, group := range q.Agents {
		if len(group) == 0 {
			w.add("1 = 0")
			continue
		}
		args := make([]any, 0, 2*len(group))
		for _, g := range group {
			args = append(args, g)
		}
		for _, g := range group {
			args = append(args, g)
		}
		w.add("(a.client_id IN ("+placeholders(len(group))+") OR a.org IN ("+placeholders(len(group))+"))", args...)
	}
	for _, group := range q.Entities {
		if len(group) == 0 {
			w.add("1 = 0")
			continue
		}
		args := make([]any, 0, len(group))
		for _, g := range group {
			args = append(args, g)
		}
		w.add("a.seq IN (SELECT e.audit_seq FROM audit_refs e WHERE e.ref IN ("+placeholders(len(group))+"))", args...)
	}
	for _, b := range q.Dates {
		cond, args, err := dateCondition("a.recorded", b)
		if err != nil {
			return gateway.AuditPage{}, gateway.Errorf(gateway.CodeInvalid, "date: %v", err)
		}
		w.add(cond, args...)
	}
	page := gateway.AuditPage{Total: -1}
	if q.Total {
		if err := v.getOne(ctx, &page.Total, `SELECT COUNT(*) FROM audit_events a`+w.whereSQL(), w.args...); err != nil {
			return gateway.AuditPage{}, gateway.Internal("store.AuditEvents", err)
		}
	}
	if q.Count == 0 {
		return page, nil
	}
	if q.Before > 0 {
		w.add("a.seq < ?", q.Before)
	}
	var rows []auditRow
	if err := v.tx.SelectContext(ctx, &rows, v.d.rebind(`SELECT `+auditColumns+` FROM audit_events a`+w.whereSQL()+
		` ORDER BY a.seq DESC LIMIT ?`), append(w.args, q.Count+1)...); err != nil {
		return gateway.AuditPage{}, gateway.Internal("store.AuditEvents", err)
	}
	page.More = len(rows) > q.Count
	rows = rows[:min(len(rows), q.Count)]
	page.Events = make([]gateway.AuditEvent, len(rows))
	for i, r := range rows {
		e, err := r.toEvent()
		if err != nil {
			return gateway.AuditPage{}, gateway.Internal("store.AuditEvents", err)
		}
		page.Events[i] = e
	}
	return page, nil
}

// AuditEvent reads one event.
func (v *view) AuditEvent(ctx context.Context, id string) (gateway.AuditEvent, error) {
	var r auditRow
	err := v.getOne(ctx, &r, `SELECT `+auditColumns+` FROM audit_events a WHERE a.id = ?`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return gateway.AuditEvent{}, gateway.Errorf(gateway.CodeNotFound, "AuditEvent/%s is not known", id)
	}
	if err != nil {
		return gateway.AuditEvent{}, gateway.Internal("store.AuditEvent", err)
	}
	e, err := r.toEvent()
	if err != nil {
		return gateway.AuditEvent{}, gateway.Internal("store.AuditEvent", err)
	}
	return e, nil
}
