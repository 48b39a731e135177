package gateway

import (
	"context"
	"errors"
	"time"
)

// Store is the storage the service needs. gateway/store implements it on
// SQLite and PostgreSQL.
//
// Tenancy lives here, in the queries: GetFor and Search return only what the
// given organisation may read, so a handler cannot forget to filter.
type Store interface {
	// View runs fn on a consistent, read-only snapshot.
	View(ctx context.Context, fn func(View) error) error
	// Update runs fn in a write transaction: all of fn's writes commit, or
	// none. Writers are serialised, so change sequence numbers follow commit
	// order. An error from fn is returned as it is.
	Update(ctx context.Context, fn func(Tx) error) error
	// Ping reports whether the database answers and is migrated.
	Ping(ctx context.Context) error
}

// View reads resources. Methods return CodeNotFound for a missing resource.
type View interface {
	// Snapshot is the change sequence number of the last write this view sees.
	Snapshot() int64
	// Get returns the current version (version 0) or the given version of a
	// resource, whoever owns it. It is for the service's own decisions.
	Get(ctx context.Context, typ, id string, version int) (Resource, error)
	// GetFor is Get restricted to resources that org may read.
	GetFor(ctx context.Context, org, typ, id string, version int) (Resource, error)
	// GetByKey returns the current resource of typ with a practice's
	// natural key.
	GetByKey(ctx context.Context, typ, practice string, key Identifier) (Resource, error)
	// ByReferral returns the current resources sent with or about a
	// ServiceRequest (Index.ReferralID), oldest first.
	ByReferral(ctx context.Context, referralID string) ([]Resource, error)
	// Search runs q for q.Org. It returns CodeInvalid for a query it cannot
	// run (no organisation, unknown field).
	Search(ctx context.Context, q SearchQuery) (SearchPage, error)
	// History returns the versions of a resource org may read, newest
	// first, at most limit, older than version before (0: from the
	// newest). It returns CodeNotFound when org may not read the resource.
	History(ctx context.Context, org, typ, id string, before, limit int) ([]Resource, error)
	// DuePROMs returns up to limit open Tasks whose next follow-up PROM was
	// due by now and that were not yet marked follow-up-prom-due for that
	// due date.
	DuePROMs(ctx context.Context, now time.Time, limit int) ([]Resource, error)
	Reports
	// AuditEvents returns a page of the audit trail, newest first. It
	// returns CodeInvalid for a query it cannot run.
	AuditEvents(ctx context.Context, q AuditQuery) (AuditPage, error)
	// AuditEvent returns one audit event, or CodeNotFound.
	AuditEvent(ctx context.Context, id string) (AuditEvent, error)
}

// Tx is a write transaction.
type Tx interface {
	View
	// Now is the transaction's time: every version it writes gets it as
	// lastUpdated, and it is later than the time of every earlier write.
	Now() time.Time
	// Put stores r as a new version. r.Version must be 1 for a new resource
	// or the current version plus one; Put sets r.Seq and r.LastUpdated
	// (r.Body must already carry the same lastUpdated, which is Now).
	// It returns CodeConflict wrapping ErrDuplicateKey when another current
	// resource of the type has the practice's natural key, and wrapping
	// ErrStaleVersion when r.Version-1 is not the current version.
	Put(ctx context.Context, r *Resource) error
	// Grant lets orgs read a resource (every version of it). Put grants
	// r.Index.Access itself; Grant is for widening access without a new
	// version.
	Grant(ctx context.Context, typ, id string, orgs ...string) error
	// Enqueue adds events to the outbox, to be delivered once the
	// transaction commits. It sets each event's Seq, CreatedAt and
	// NextAttempt (Now) and Status (pending).
	Enqueue(ctx context.Context, events ...OutboxEvent) error
	// Audit appends events to the audit trail, which is never changed
	// afterwards.
	Audit(ctx context.Context, events ...AuditEvent) error
}

// Errors wrapped by Tx.Put.
var (
	ErrDuplicateKey = errors.New("another current resource has this natural key")
	ErrStaleVersion = errors.New("the resource has changed since the version given")
)
