package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// TypeAuditEvent is the FHIR type of the audit trail, read by operators.
const TypeAuditEvent = "AuditEvent"

// AuditAction is what a client did or tried to do: a FHIR interaction, or
// one of the gateway's own APIs.
type AuditAction string

// The audited actions.
const (
	AuditRead        AuditAction = "read"
	AuditVread       AuditAction = "vread"
	AuditSearch      AuditAction = "search"
	AuditHistory     AuditAction = "history"
	AuditCreate      AuditAction = "create"
	AuditTransaction AuditAction = "transaction"
	AuditUpdate      AuditAction = "update"
	AuditPatch       AuditAction = "patch"
	AuditDelete      AuditAction = "delete"
	AuditOperation   AuditAction = "operation"
	AuditCaseList    AuditAction = "case-list"
	AuditCaseRead    AuditAction = "case-read"
	AuditCaseEvent   AuditAction = "case-event"
	AuditReport      AuditAction = "report"
)

// OutcomeSuccess is the outcome of an access that succeeded; any other
// outcome is the Code of the error that refused or failed it.
const OutcomeSuccess = "success"

// AuditEvent is one access to patient data, or one refused access. It holds
// who, what and when, never patient data: resources appear only as
// references (Type/id), and neither query strings nor bodies are kept.
type AuditEvent struct {
	ID       string
	Seq      int64 // set by the store; orders the trail
	Recorded time.Time
	ClientID string // empty when the client could not be authenticated
	Role     Role
	Org      string
	Action   AuditAction
	// ResourceType is the type the request was about ("" for reports).
	ResourceType string
	// Entities are the resources touched, as Type/id: read, returned
	// (every match and include of a search page) or written. A refused or
	// failed access names only what the request asked for.
	Entities []string
	// Outcome is OutcomeSuccess or the error code (not_found, forbidden…).
	Outcome   string
	SourceIP  string
	RequestID string
}

// AuditQuery selects audit events, newest first.
type AuditQuery struct {
	// Agents are groups of alternatives, all of which must match: a client
	// id or an organisation code.
	Agents [][]string
	// Entities are groups of alternatives (Type/id), all of which must
	// match one of an event's entities.
	Entities [][]string
	// Dates all apply to Recorded.
	Dates []DateBound
	// Count is the page size; 0 asks only for the total.
	Count int
	// Before continues a listing: events older (lower Seq) than it; 0
	// starts at the newest.
	Before int64
	// Total asks for the number of matches.
	Total bool
}

// AuditPage is a page of audit events, newest first.
type AuditPage struct {
	Events []AuditEvent
	// Total is the number of matches, or -1 when not counted.
	Total int
	More  bool
}

// Auditor keeps audit events that are not written inside a write
// transaction: reads, searches, history and refusals. Record may block (back
// pressure) but never drops an event; it returns an error when the event
// could not be kept (a failed write, or a closed auditor).
type Auditor interface {
	Record(ctx context.Context, ev AuditEvent) error
}

// RequestInfo is what the HTTP edge knows of a request that the audit
// trail records. The edge puts it in the request's context.
type RequestInfo struct {
	SourceIP string
	ID       string
	// Action, when set, is the interaction the edge routed the request to
	// (a JSON Patch is an update to the service, a patch to the trail).
	Action AuditAction
	// audited is set once the service has taken charge of auditing the
	// request, so the edge audits only what never reached it.
	audited atomic.Bool
}

// Audited reports whether the service audited the request.
func (ri *RequestInfo) Audited() bool { return ri.audited.Load() }

type requestKey struct{}

// WithRequest returns ctx carrying ri.
func WithRequest(ctx context.Context, ri *RequestInfo) context.Context {
	return context.WithValue(ctx, requestKey{}, ri)
}

// RequestFrom returns the RequestInfo of ctx, or nil.
func RequestFrom(ctx context.Context) *RequestInfo {
	ri, _ := ctx.Value(requestKey{}).(*RequestInfo)
	return ri
}

// audit is the audit of one service call. A call made inside another (a
// case event reads and updates a Task) joins the outer call's audit, so one
// request is one event per write and one for the rest.
type audit struct {
	svc     *Service
	ev      AuditEvent
	targets []string // what the request named; kept on failure
	touched []string // what was returned or written; kept on success
	written int      // how many of touched a committed write's event holds
	wrote   bool     // a write transaction committed this audit
	parent  *audit   // the audit of the outer call, for a nested call
}

type auditKey struct{}

// begin starts the audit of a call by p. action is the default for the
// call; the edge's RequestInfo.Action, when set, says more precisely what
// the client asked. targets are the resources the request names.
func (s *Service) begin(ctx context.Context, p Principal, action AuditAction, typ string, targets ...string) (*audit, context.Context) {
	if outer, ok := ctx.Value(auditKey{}).(*audit); ok {
		return &audit{svc: s, parent: outer}, ctx
	}
	ri := RequestFrom(ctx)
	for i, t := range targets {
		targets[i] = storable(t)
	}
	a := &audit{svc: s, targets: targets, ev: AuditEvent{ClientID: p.ClientID, Role: p.Role, Org: p.Org, Action: action, ResourceType: typ}}
	if ri != nil {
		ri.audited.Store(true)
		a.ev.SourceIP, a.ev.RequestID = ri.SourceIP, ri.ID
		if ri.Action != "" {
			a.ev.Action = ri.Action
		}
	}
	return a, context.WithValue(ctx, auditKey{}, a)
}

// storable is s as text every store keeps: a target named by a client's
// path may hold NUL or bytes that are not UTF-8, which PostgreSQL refuses,
// and one such event would hold up the batch, and every event after it,
// for good.
func storable(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", "\uFFFD"), "\uFFFD")
}

// root is the audit a call adds to: its own, or its outer call's.
func (a *audit) root() *audit {
	if a.parent != nil {
		return a.parent
	}
	return a
}

// touch adds the resources an access returned or wrote.
func (a *audit) touch(rs ...Resource) {
	o := a.root()
	for _, r := range rs {
		o.touchRef(r.Type + "/" + r.ID)
	}
}

// touchReferral adds the referral and patient of Task t, which a case
// record shows.
func (a *audit) touchReferral(t Resource) {
	a.touchRef(TypeServiceRequest + "/" + t.Index.ReferralID)
	a.touchRef(TypePatient + "/" + t.Index.PatientID)
}

func (a *audit) touchRef(ref string) {
	a = a.root()
	ref = storable(ref)
	if !slices.Contains(a.touched, ref) {
		a.touched = append(a.touched, ref)
	}
}

// event returns the audit event of the call with outcome err.
func (a *audit) event(at time.Time, err error) AuditEvent {
	ev := a.ev
	ev.ID, ev.Recorded = NewUUID(), at
	if err == nil {
		ev.Outcome = OutcomeSuccess
		ev.Entities = slices.Clone(a.targets)
		for _, ref := range a.touched {
			if !slices.Contains(ev.Entities, ref) {
				ev.Entities = append(ev.Entities, ref)
			}
		}
	} else {
		ev.Outcome = string(ErrorCode(err))
		ev.Entities = slices.Clone(a.targets)
	}
	return ev
}

// end records the call's outcome. When a write transaction has already
// recorded its success, end records only what the call showed after it
// (a case event answers with the case record, Conditions and Consent
// included), if anything. An event that cannot be kept fails the call: no
// access goes unaudited.
func (a *audit) end(ctx context.Context, err error) error {
	if a.parent != nil {
		return err
	}
	ev := a.event(a.svc.now().UTC(), err)
	if err == nil && a.wrote {
		if len(a.touched) == a.written {
			return nil
		}
		ev.Entities = slices.Clone(a.touched[a.written:])
	}
	if rerr := a.svc.auditor.Record(context.WithoutCancel(ctx), ev); rerr != nil {
		return errors.Join(err, Internal("audit", rerr))
	}
	return err
}

// update runs fn in a write transaction that also writes the audit event of
// its success: a committed write always has its audit, and a rolled-back
// one leaves only the audit of its failure (written by end). Every resource
// fn puts is touched.
func (s *Service) update(ctx context.Context, a *audit, fn func(Tx) error) error {
	o := a.root()
	mark := len(o.touched)
	err := s.store.Update(ctx, func(tx Tx) error {
		o.touched = o.touched[:mark] // afresh on each run: a store may retry fn
		if err := fn(auditTx{Tx: tx, a: o}); err != nil {
			return err
		}
		return tx.Audit(ctx, o.event(tx.Now(), nil))
	})
	if err != nil {
		o.touched = o.touched[:mark]
		return err
	}
	o.wrote, o.written = true, len(o.touched)
	return nil
}

// auditTx touches every resource put through it.
type auditTx struct {
	Tx
	a *audit
}

func (t auditTx) Put(ctx context.Context, r *Resource) error {
	if err := t.Tx.Put(ctx, r); err != nil {
		return err
	}
	t.a.touchRef(r.Type + "/" + r.ID)
	return nil
}

// Audit opens the audit of one access the edge makes of several service
// calls (a JSON Patch reads the Task, then updates it): calls made with the
// returned context join it, and end, given the access's outcome, records
// it unless a write already recorded its success.
func (s *Service) Audit(ctx context.Context, p Principal, action AuditAction, typ string, targets ...string) (context.Context, func(error) error) {
	a, ctx := s.begin(ctx, p, action, typ, targets...)
	return ctx, func(err error) error { return a.end(ctx, err) }
}

// AuditRefusal records an access the edge refused before the service saw
// it (no or bad credentials, a malformed request). p is nil when the client
// is unknown.
func (s *Service) AuditRefusal(ctx context.Context, p *Principal, action AuditAction, typ string, ref string, refusal error) error {
	var who Principal
	if p != nil {
		who = *p
	}
	var targets []string
	if ref != "" {
		targets = []string{ref}
	}
	a, ctx := s.begin(ctx, who, action, typ, targets...)
	return a.end(ctx, refusal)
}

// AuditEvents searches the audit trail. It returns CodeForbidden for
// anyone but an operator.
func (s *Service) AuditEvents(ctx context.Context, p Principal, q AuditQuery) (page AuditPage, err error) {
	a, ctx := s.begin(ctx, p, AuditSearch, TypeAuditEvent)
	defer func() { err = a.end(ctx, err) }()
	if err := authorize(p, ActionSearch, TypeAuditEvent); err != nil {
		return AuditPage{}, err
	}
	err = s.store.View(ctx, func(v View) error {
		var err error
		page, err = v.AuditEvents(ctx, q)
		return err
	})
	for _, ev := range page.Events {
		a.touchRef(TypeAuditEvent + "/" + ev.ID)
	}
	return page, err
}

// AuditEvent reads one audit event, for operators only.
func (s *Service) AuditEvent(ctx context.Context, p Principal, id string) (ev AuditEvent, err error) {
	a, ctx := s.begin(ctx, p, AuditRead, TypeAuditEvent, TypeAuditEvent+"/"+id)
	defer func() { err = a.end(ctx, err) }()
	if err := authorize(p, ActionRead, TypeAuditEvent); err != nil {
		return AuditEvent{}, err
	}
	err = s.store.View(ctx, func(v View) error {
		var err error
		ev, err = v.AuditEvent(ctx, id)
		return err
	})
	return ev, err
}

func (a *BatchAuditor) insert(events ...AuditEvent) error {
	return a.cfg.Store.Update(a.ctx, func(tx Tx) error { return tx.Audit(a.ctx, events...) })
}

// stripped is ev without its resource references, every text made
// storable: who, what kind of access, when and with what outcome survive.
func stripped(ev AuditEvent) AuditEvent {
	ev.Entities = nil
	ev.ClientID, ev.Org, ev.ResourceType = storable(ev.ClientID), storable(ev.Org), storable(ev.ResourceType)
	ev.Outcome, ev.SourceIP, ev.RequestID = storable(ev.Outcome), storable(ev.SourceIP), storable(ev.RequestID)
	ev.Role, ev.Action = Role(storable(string(ev.Role))), AuditAction(storable(string(ev.Action)))
	return ev
}

// StoreAuditor writes each audit event in a transaction of its own: simple,
// and the slowest choice; BatchAuditor is for serving.
type StoreAuditor struct{ Store Store }

// Record writes ev.
func (s StoreAuditor) Record(ctx context.Context, ev AuditEvent) error {
	return s.Store.Update(ctx, func(tx Tx) error { return tx.Audit(ctx, ev) })
}

// ErrAuditorClosed is returned by Record after Close.
var ErrAuditorClosed = errors.New("the auditor is closed")

// BatchAuditorConfig configures a BatchAuditor.
type BatchAuditorConfig struct {
	Store Store
	// Queue is how many events may wait to be written (default 4096);
	// Record blocks while it is full.
	Queue int
	// Batch is the most events one insert writes (default 256).
	Batch int
	// Failed is told of a batch that could not be written (it is tried
	// again, until Close gives up); it may be nil.
	Failed func(err error, events int)
	// Stripped is told of an event the database refused while it took
	// others, which was then written without its resource references and
	// with its other text made storable; it may be nil.
	Stripped func(ev AuditEvent, err error)
}

// BatchAuditor writes audit events in batches, one transaction and one
// multi-row insert per batch, so that reads do not each become a write
// transaction. Events wait in a bounded queue: when the database falls
// behind, Record blocks rather than drops. Events still queued when the
// process dies are lost; Close writes them first.
type BatchAuditor struct {
	cfg     BatchAuditorConfig
	queue   chan AuditEvent
	flushes chan chan struct{}
	stop    chan struct{}
	done    chan struct{}
	ctx     context.Context // cancelled when Close gives up
	cancel  context.CancelFunc
	mu      sync.RWMutex // held for writing by Close, for reading by Record
	closed  bool
	lost    atomic.Int64
}

// NewBatchAuditor starts a BatchAuditor.
func NewBatchAuditor(cfg BatchAuditorConfig) (*BatchAuditor, error) {
	if cfg.Store == nil {
		return nil, errors.New("gateway.NewBatchAuditor: a store is required")
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 4096
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 256
	}
	a := &BatchAuditor{cfg: cfg, queue: make(chan AuditEvent, cfg.Queue), flushes: make(chan chan struct{}),
		stop: make(chan struct{}), done: make(chan struct{})}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	go a.run()
	return a, nil
}

// Record queues ev, waiting while the queue is full.
func (a *BatchAuditor) Record(ctx context.Context, ev AuditEvent) error {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		return ErrAuditorClosed
	}
	select {
	case a.queue <- ev:
		return nil
	case <-a.ctx.Done():
		return ErrAuditorClosed
	}
}

// Flush returns once every event queued before it was called is written
// (or Close gave up on it).
func (a *BatchAuditor) Flush(ctx context.Context) error {
	ch := make(chan struct{})
	select {
	case a.flushes <- ch:
	case <-a.done:
		return ErrAuditorClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close writes the queued events and stops. It waits until they are
// written or ctx ends; then it gives up and reports how many were lost.
func (a *BatchAuditor) Close(ctx context.Context) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		<-a.done
		return nil
	}
	a.closed = true
	a.mu.Unlock()
	close(a.stop)
	select {
	case <-a.done:
	case <-ctx.Done():
		a.cancel()
		<-a.done
	}
	a.cancel()
	if n := a.lost.Load(); n > 0 {
		return fmt.Errorf("gateway.BatchAuditor.Close: %d audit events lost: the database did not take them before the shutdown deadline", n)
	}
	return nil
}

func (a *BatchAuditor) run() {
	defer close(a.done)
	batch := make([]AuditEvent, 0, a.cfg.Batch)
	// drain writes what is queued now, a batch at a time.
	drain := func() {
		for {
			batch = batch[:0]
		fill:
			for len(batch) < a.cfg.Batch {
				select {
				case ev := <-a.queue:
					batch = append(batch, ev)
				default:
					break fill
				}
			}
			if len(batch) == 0 {
				return
			}
			a.write(batch)
		}
	}
	for {
		select {
		case ev := <-a.queue:
			batch = append(batch[:0], ev)
			for len(batch) < a.cfg.Batch && len(a.queue) > 0 {
				batch = append(batch, <-a.queue)
			}
			a.write(batch)
		case ch := <-a.flushes:
			drain()
			close(ch)
		case <-a.stop:
			drain()
			return
		}
	}
}

// write writes one batch, trying again with backoff until it succeeds or
// Close gives up. A batch refused while the database answers holds an event
// the database will not take: it is split, so that such an event holds up
// only itself, and that event is written stripped of its references rather
// than stop the trail (and, by back pressure, every read) for ever.
func (a *BatchAuditor) write(batch []AuditEvent) {
	wait := 50 * time.Millisecond
	for {
		err := a.insert(batch...)
		if err == nil {
			return
		}
		if a.cfg.Failed != nil {
			a.cfg.Failed(err, len(batch))
		}
		if a.ctx.Err() == nil && a.cfg.Store.Ping(a.ctx) == nil {
			if len(batch) > 1 {
				half := len(batch) / 2
				a.write(batch[:half])
				a.write(batch[half:])
				return
			}
			if a.insert(batch...) == nil { // a passing failure
				return
			}
			bare := stripped(batch[0])
			if a.insert(bare) == nil {
				if a.cfg.Stripped != nil {
					a.cfg.Stripped(bare, err)
				}
				return
			}
		}
		select {
		case <-time.After(wait):
			wait = min(2*wait, 5*time.Second)
		case <-a.ctx.Done():
			a.lost.Add(int64(len(batch)))
			return
		}
	}
}
