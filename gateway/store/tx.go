package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/spgateway/spgateway/gateway"
)

// row is a resource_versions row. It is the store's own model: conversions
// to and from gateway.Resource are explicit (toResource, Put).
type row struct {
	Seq            int64           `db:"seq"`
	Type           string          `db:"type"`
	ID             string          `db:"id"`
	Version        int             `db:"version"`
	LastUpdated    int64           `db:"last_updated"`
	Practice       sql.NullString  `db:"practice"`
	Provider       sql.NullString  `db:"provider"`
	PatientID      sql.NullString  `db:"patient_id"`
	ReferralID     sql.NullString  `db:"referral_id"`
	Status         sql.NullString  `db:"status"`
	BusinessStatus sql.NullString  `db:"business_status"`
	KeySystem      sql.NullString  `db:"key_system"`
	KeyValue       sql.NullString  `db:"key_value"`
	Authored       sql.NullInt64   `db:"authored"`
	Modified       sql.NullInt64   `db:"modified"`
	ContentHash    sql.NullString  `db:"content_hash"`
	LinkWorker     sql.NullString  `db:"link_worker"`
	CodesOnly      bool            `db:"codes_only"`
	StatusReason   sql.NullString  `db:"status_reason"`
	AcceptedAt     sql.NullInt64   `db:"accepted_at"`
	FirstContactAt sql.NullInt64   `db:"first_contact_at"`
	BaselineAt     sql.NullInt64   `db:"baseline_at"`
	PROMsDone      int             `db:"proms_done"`
	PROMDue        sql.NullInt64   `db:"prom_due"`
	Questionnaire  sql.NullString  `db:"questionnaire"`
	Score          sql.NullFloat64 `db:"score"`
	Deleted        bool            `db:"deleted"`
	Body           []byte          `db:"body"`
}

const rowColumns = `v.seq, v.type, v.id, v.version, v.last_updated, v.practice, v.provider, v.patient_id, v.referral_id,
	v.status, v.business_status, v.key_system, v.key_value, v.authored, v.modified, v.content_hash, v.link_worker,
	v.codes_only, v.status_reason, v.accepted_at, v.first_contact_at, v.baseline_at, v.proms_done, v.prom_due,
	v.questionnaire, v.score, v.deleted, v.body`

func (r row) toResource() gateway.Resource {
	res := gateway.Resource{
		Type:        r.Type,
		ID:          r.ID,
		Version:     r.Version,
		LastUpdated: time.UnixMicro(r.LastUpdated).UTC(),
		Seq:         r.Seq,
		Body:        r.Body,
		Index: gateway.Index{
			Practice:       r.Practice.String,
			Provider:       r.Provider.String,
			PatientID:      r.PatientID.String,
			ReferralID:     r.ReferralID.String,
			Status:         r.Status.String,
			BusinessStatus: r.BusinessStatus.String,
			Key:            gateway.Identifier{System: r.KeySystem.String, Value: r.KeyValue.String},
			ContentHash:    r.ContentHash.String,
			CodesOnly:      r.CodesOnly,
			StatusReason:   r.StatusReason.String,
			AcceptedAt:     fromMicros(r.AcceptedAt),
			FirstContactAt: fromMicros(r.FirstContactAt),
			BaselineAt:     fromMicros(r.BaselineAt),
			PROMsDone:      r.PROMsDone,
			PROMDue:        fromMicros(r.PROMDue),
			Questionnaire:  r.Questionnaire.String,
			Value:          r.Score.Float64,
			HasValue:       r.Score.Valid,
			Deleted:        r.Deleted,
		},
	}
	if system, value, ok := strings.Cut(r.LinkWorker.String, "|"); ok {
		res.Index.LinkWorker = gateway.Identifier{System: system, Value: value}
	}
	res.Index.Authored = fromMicros(r.Authored)
	res.Index.Modified = fromMicros(r.Modified)
	return res
}

func fromMicros(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.UnixMicro(n.Int64).UTC()
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// linkWorker is the column value of a link worker identifier: system|value,
// or "" for none.
func linkWorker(id gateway.Identifier) string {
	if id.Value == "" {
		return ""
	}
	return id.Key()
}

func nullMicros(t time.Time) sql.NullInt64 {
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: !t.IsZero()}
}

// view implements gateway.View inside one transaction.
type view struct {
	tx       *sqlx.Tx
	d        dialect
	stmts    *stmtCache
	snapshot int64
	// detached runs statements on their context without its cancellation:
	// a grouped write's (see committer).
	detached bool
}

// stmtCtx is the context a statement runs on.
func (v *view) stmtCtx(ctx context.Context) context.Context {
	if v.detached {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

// The view's statements go through these: placeholders rebound for the
// dialect, and prepared statements reused where the dialect wants it.

func (v *view) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx = v.stmtCtx(ctx)
	query = v.d.rebind(query)
	if s := v.stmts.stmt(ctx, v.tx, query); s != nil {
		return s.ExecContext(ctx, args...)
	}
	return v.tx.ExecContext(ctx, query, args...)
}

func (v *view) getOne(ctx context.Context, dest any, query string, args ...any) error {
	ctx = v.stmtCtx(ctx)
	query = v.d.rebind(query)
	if s := v.stmts.stmt(ctx, v.tx, query); s != nil {
		return s.GetContext(ctx, dest, args...)
	}
	return v.tx.GetContext(ctx, dest, query, args...)
}

func (v *view) selectAll(ctx context.Context, dest any, query string, args ...any) error {
	ctx = v.stmtCtx(ctx)
	query = v.d.rebind(query)
	if s := v.stmts.stmt(ctx, v.tx, query); s != nil {
		return s.SelectContext(ctx, dest, args...)
	}
	return v.tx.SelectContext(ctx, dest, query, args...)
}

func (v *view) Snapshot() int64 { return v.snapshot }

func (v *view) get(ctx context.Context, org, typ, id string, version int) (gateway.Resource, error) {
	q := `SELECT ` + rowColumns + ` FROM resource_versions v WHERE v.type = ? AND v.id = ?`
	args := []any{typ, id}
	if version > 0 {
		q += ` AND v.version = ?`
		args = append(args, version)
	} else {
		q += ` AND v.superseded_seq IS NULL`
	}
	if org != "" {
		q += ` AND ` + v.d.accessible
		args = append(args, org)
	}
	var r row
	err := v.getOne(ctx, &r, (q), args...)
	if errors.Is(err, sql.ErrNoRows) {
		if version > 0 {
			return gateway.Resource{}, gateway.Errorf(gateway.CodeNotFound, "%s/%s/_history/%d is not known", typ, id, version)
		}
		return gateway.Resource{}, gateway.Errorf(gateway.CodeNotFound, "%s/%s is not known", typ, id)
	}
	if err != nil {
		return gateway.Resource{}, gateway.Internal("store.Get", err)
	}
	return r.toResource(), nil
}

func (v *view) Get(ctx context.Context, typ, id string, version int) (gateway.Resource, error) {
	return v.get(ctx, "", typ, id, version)
}

func (v *view) GetFor(ctx context.Context, org, typ, id string, version int) (gateway.Resource, error) {
	if org == "" {
		return gateway.Resource{}, gateway.Errorf(gateway.CodeNotFound, "%s/%s is not known", typ, id)
	}
	r, err := v.get(ctx, org, typ, id, version)
	if err == nil && r.Index.Deleted {
		return gateway.Resource{}, gateway.Errorf(gateway.CodeGone, "%s/%s was deleted", typ, id)
	}
	return r, err
}

func (v *view) GetByKey(ctx context.Context, typ, practice string, key gateway.Identifier) (gateway.Resource, error) {
	var r row
	err := v.getOne(ctx, &r, (`SELECT ` + rowColumns + ` FROM resource_versions v
		WHERE v.type = ? AND v.practice = ? AND v.key_system = ? AND v.key_value = ? AND v.superseded_seq IS NULL`),
		typ, practice, key.System, key.Value)
	if errors.Is(err, sql.ErrNoRows) {
		return gateway.Resource{}, gateway.Errorf(gateway.CodeNotFound, "no %s with that identifier", typ)
	}
	if err != nil {
		return gateway.Resource{}, gateway.Internal("store.GetByKey", err)
	}
	return r.toResource(), nil
}

func (v *view) History(ctx context.Context, org, typ, id string, before, limit int) ([]gateway.Resource, error) {
	if org == "" {
		return nil, gateway.Errorf(gateway.CodeNotFound, "%s/%s is not known", typ, id)
	}
	if before <= 0 {
		before = math.MaxInt32
	}
	var rows []row
	err := v.selectAll(ctx, &rows, `SELECT `+rowColumns+` FROM resource_versions v
		WHERE v.type = ? AND v.id = ? AND v.version < ? AND `+v.d.accessible+` ORDER BY v.version DESC LIMIT ?`, typ, id, before, org, limit)
	if err != nil {
		return nil, gateway.Internal("store.History", err)
	}
	if len(rows) == 0 {
		if _, err := v.get(ctx, org, typ, id, 0); err != nil {
			return nil, err
		}
		return nil, nil // no versions before `before`
	}
	out := make([]gateway.Resource, len(rows))
	for i, r := range rows {
		out[i] = r.toResource()
	}
	return out, nil
}

// token is a row of resource_tokens: a value of a multi-valued token search
// parameter.
type token struct{ param, system, value string }

// The token parameters.
const (
	paramIdentifier = "identifier"
	paramCode       = "code"
)

func tokens(x gateway.Index) []token {
	var out []token
	for _, id := range x.Identifiers {
		if id.Value != "" {
			out = append(out, token{paramIdentifier, id.System, id.Value})
		}
	}
	for _, c := range x.Codes {
		if c.Code != "" {
			out = append(out, token{paramCode, c.System, c.Code})
		}
	}
	return out
}

// DuePROMs marks a follow-up once: a Task one of whose versions was marked
// for the same due date is not due again when the provider has since moved
// its businessStatus on (a contact attempt while chasing the PROM, say).
// The versions looked at include the current one, so a Task marked now is
// not due either. prom_due IS NOT NULL, which prom_due <= ? implies, is
// the condition of the partial index resource_prom_due.
func (v *view) DuePROMs(ctx context.Context, now time.Time, limit int) ([]gateway.Resource, error) {
	var rows []row
	err := v.selectAll(ctx, &rows, `SELECT `+rowColumns+` FROM resource_versions v
		WHERE v.type = 'Task' AND v.superseded_seq IS NULL AND v.prom_due IS NOT NULL AND v.prom_due <= ?
		AND v.proms_done >= 1 AND v.status IN ('accepted', 'in-progress', 'on-hold')
		AND NOT EXISTS (SELECT 1 FROM resource_versions m
			WHERE m.type = 'Task' AND m.id = v.id
			AND m.prom_due = v.prom_due AND m.business_status = 'follow-up-prom-due')
		ORDER BY v.prom_due LIMIT ?`, now.UnixMicro(), limit)
	if err != nil {
		return nil, gateway.Internal("store.DuePROMs", err)
	}
	out := make([]gateway.Resource, len(rows))
	for i, r := range rows {
		out[i] = r.toResource()
	}
	return out, nil
}

func (v *view) ByReferral(ctx context.Context, referralID string) ([]gateway.Resource, error) {
	var rows []row
	err := v.selectAll(ctx, &rows, (`SELECT ` + rowColumns + ` FROM resource_versions v
		WHERE v.referral_id = ? AND v.superseded_seq IS NULL ORDER BY v.seq`), referralID)
	if err != nil {
		return nil, gateway.Internal("store.ByReferral", err)
	}
	out := make([]gateway.Resource, len(rows))
	for i, r := range rows {
		out[i] = r.toResource()
	}
	return out, nil
}

// writeTx implements gateway.Tx. Its snapshot is the last sequence number it
// has given out.
type writeTx struct {
	view
	now time.Time
}

func (t *writeTx) Now() time.Time { return t.now }

func (t *writeTx) Put(ctx context.Context, r *gateway.Resource) error {
	seq := t.snapshot + 1
	x := r.Index
	switch {
	case r.Version == 1:
	case r.Version > 1:
		res, err := t.exec(ctx, (`UPDATE resource_versions SET superseded_seq = ?
			WHERE type = ? AND id = ? AND version = ? AND superseded_seq IS NULL`), seq, r.Type, r.ID, r.Version-1)
		if err != nil {
			return gateway.Internal("store.Put", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errStale(r)
		}
	default:
		return gateway.Internal("store.Put", fmt.Errorf("version %d", r.Version))
	}
	// The unique indexes decide: a natural key another current resource
	// holds, or a version that exists, inserts nothing (no error, so a
	// PostgreSQL transaction stays usable) and is told apart afterwards.
	res, err := t.exec(ctx, (`INSERT INTO resource_versions
		(seq, type, id, version, last_updated, practice, provider, patient_id, referral_id, status, business_status,
		 key_system, key_value, authored, modified, content_hash, link_worker, codes_only,
		 status_reason, accepted_at, first_contact_at, baseline_at, proms_done, prom_due, questionnaire, score, deleted, body)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT DO NOTHING`),
		seq, r.Type, r.ID, r.Version, t.now.UnixMicro(),
		nullString(x.Practice), nullString(x.Provider), nullString(x.PatientID), nullString(x.ReferralID),
		nullString(x.Status), nullString(x.BusinessStatus), nullString(x.Key.System), nullString(x.Key.Value),
		nullMicros(x.Authored), nullMicros(x.Modified), nullString(x.ContentHash), nullString(linkWorker(x.LinkWorker)),
		x.CodesOnly, nullString(x.StatusReason), nullMicros(x.AcceptedAt), nullMicros(x.FirstContactAt), nullMicros(x.BaselineAt),
		x.PROMsDone, nullMicros(x.PROMDue), nullString(x.Questionnaire), sql.NullFloat64{Float64: x.Value, Valid: x.HasValue},
		x.Deleted, string(r.Body))
	if err != nil {
		return gateway.Internal("store.Put", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return t.refused(ctx, r, seq)
	}
	for _, tok := range tokens(x) {
		if _, err := t.exec(ctx, `INSERT INTO resource_tokens (seq, param, system, value)
			VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`, seq, tok.param, tok.system, tok.value); err != nil {
			return gateway.Internal("store.Put", err)
		}
	}
	if err := t.Grant(ctx, r.Type, r.ID, x.Access...); err != nil {
		return err
	}
	t.snapshot = seq
	r.Seq, r.LastUpdated = seq, t.now
	return nil
}

// refused explains an insert the unique indexes turned away, after putting
// back the version it was to replace: a refused Put leaves the transaction
// as it was, so the caller may handle the conflict and go on.
func (t *writeTx) refused(ctx context.Context, r *gateway.Resource, seq int64) error {
	if r.Version > 1 {
		if _, err := t.exec(ctx, (`UPDATE resource_versions SET superseded_seq = NULL
			WHERE type = ? AND id = ? AND version = ? AND superseded_seq = ?`), r.Type, r.ID, r.Version-1, seq); err != nil {
			return gateway.Internal("store.Put", err)
		}
	}
	var n int
	if err := t.getOne(ctx, &n, (`SELECT COUNT(*) FROM resource_versions WHERE type = ? AND id = ? AND version = ?`),
		r.Type, r.ID, r.Version); err != nil {
		return gateway.Internal("store.Put", err)
	}
	if n > 0 {
		return errStale(r)
	}
	return errDuplicateKey(r.Type)
}

func errStale(r *gateway.Resource) error {
	msg := fmt.Sprintf("%s/%s is no longer at version %d", r.Type, r.ID, r.Version-1)
	if r.Version == 1 {
		msg = fmt.Sprintf("%s/%s already exists", r.Type, r.ID)
	}
	return &gateway.Error{Code: gateway.CodeConflict, Err: gateway.ErrStaleVersion, Issues: []gateway.Issue{{Message: msg}}}
}

func errDuplicateKey(typ string) error {
	return &gateway.Error{Code: gateway.CodeConflict, Err: gateway.ErrDuplicateKey,
		Issues: []gateway.Issue{{Message: fmt.Sprintf("another %s has this identifier", typ)}}}
}

func (t *writeTx) Grant(ctx context.Context, typ, id string, orgs ...string) error {
	for _, org := range orgs {
		if strings.TrimSpace(org) == "" {
			continue
		}
		if _, err := t.exec(ctx, (`INSERT INTO resource_access (org, type, id)
			VALUES (?, ?, ?) ON CONFLICT DO NOTHING`), org, typ, id); err != nil {
			return gateway.Internal("store.Grant", err)
		}
	}
	return nil
}
