package gateway

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Everything that must leave the gateway — a case record for a provider
// that cannot poll, a Task change for a practice's Subscription — is first
// an OutboxEvent, written in the same transaction as the change it is
// about. A Worker then delivers each event at least once, in order per Task
// and destination, retrying with backoff, until it succeeds or is
// dead-lettered. The event's ID goes with every attempt, so a receiver can
// ignore a repeat.

// Event kinds.
const (
	// EventCaseRecord carries a provider's case record of a referral.
	EventCaseRecord = "case-record"
	// EventTask carries a Task (or nothing) to a practice's Subscription.
	EventTask = "task"
)

// Outbox event statuses.
const (
	OutboxPending   = "pending"
	OutboxDelivered = "delivered"
	OutboxDead      = "dead"
)

// OutboxEvent is one delivery to make.
type OutboxEvent struct {
	// ID is the delivery id receivers de-duplicate on.
	ID  string `json:"id"`
	Seq int64  `json:"seq"`
	// Destination is "provider:{code}" or "subscription:{id}".
	Destination string `json:"destination"`
	Kind        string `json:"kind"`
	// OrderKey is the Task the event is about: events with the same
	// destination and key are delivered in order.
	OrderKey    string    `json:"task"`
	TaskVersion int       `json:"task_version"`
	Payload     []byte    `json:"-"`
	Status      string    `json:"status"`
	Attempts    int       `json:"attempts"`
	LastError   string    `json:"last_error,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	NextAttempt time.Time `json:"next_attempt_at"`
	DeliveredAt time.Time `json:"delivered_at,omitzero"`
}

// The kinds of destination: a destination is "{kind}:{code or id}", and the
// Worker's Deliverers are keyed by kind.
const (
	DestinationProvider     = "provider"
	DestinationSubscription = "subscription"
)

// ProviderDestination and SubscriptionDestination name destinations.
func ProviderDestination(code string) string   { return DestinationProvider + ":" + code }
func SubscriptionDestination(id string) string { return DestinationSubscription + ":" + id }

// SplitDestination returns a destination's kind and its provider code or
// Subscription id.
func SplitDestination(destination string) (kind, id string) {
	kind, id, _ = strings.Cut(destination, ":")
	return kind, id
}

// Outbox is the storage the Worker needs.
type Outbox interface {
	// ClaimOutbox leases up to limit pending events due by now to owner
	// until now+lease, oldest first. It never returns an event while an
	// older pending event of the same destination and order key exists,
	// nor one another owner holds an unexpired lease on.
	ClaimOutbox(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]OutboxEvent, error)
	// FinishOutbox records the outcome of owner's attempt at a leased
	// event: delivered, pending again from NextAttempt, or dead. It changes
	// nothing, and reports false, when owner no longer holds the lease
	// (another worker took the event over): that worker's outcome counts.
	FinishOutbox(ctx context.Context, owner string, e OutboxEvent) (bool, error)
	// OutboxDepth counts events by status.
	OutboxDepth(ctx context.Context) (map[string]int, error)
	// ListOutbox returns events of a status, oldest first.
	ListOutbox(ctx context.Context, status string, limit int) ([]OutboxEvent, error)
	// RedriveOutbox makes a dead event pending again, due now, attempts
	// reset. It returns CodeNotFound when there is no such dead event.
	RedriveOutbox(ctx context.Context, id string, now time.Time) error
}

// Deliverer delivers events of one destination kind: an adapter.
type Deliverer interface {
	// Deliver makes one attempt. An error means try again later; a
	// *PermanentError, that retrying cannot help (dead-letter at once).
	Deliver(ctx context.Context, e OutboxEvent) error
}

// PermanentError marks a failure retrying cannot mend (the destination no
// longer exists, say).
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// ErrDiscard tells the Worker an event no longer needs delivering (its
// Subscription was deleted): it is marked delivered, counted as an attempt
// but not as a delivery.
var ErrDiscard = errors.New("the destination is gone: nothing to deliver")

// RetryPolicy is how the Worker retries.
type RetryPolicy struct {
	MaxAttempts int           // then dead-letter
	BaseDelay   time.Duration // after the first failure; doubles each time
	MaxDelay    time.Duration
}

// DefaultRetryPolicy retries for 7 to 15 hours (12 attempts, the waits
// doubling from 30s to at most 6h, each between half and all of that).
var DefaultRetryPolicy = RetryPolicy{MaxAttempts: 12, BaseDelay: 30 * time.Second, MaxDelay: 6 * time.Hour}

// Delay is how long to wait after attempt n (1 for the first) failed: the
// base doubled n-1 times, capped, with "full jitter" between half and all of
// it so that many events failing together do not retry together.
func (p RetryPolicy) Delay(n int, rnd func() float64) time.Duration {
	d := p.BaseDelay
	for i := 1; i < n && d < p.MaxDelay; i++ {
		if d > p.MaxDelay/2 {
			d = p.MaxDelay // and no overflow
			break
		}
		d *= 2
	}
	d = min(d, p.MaxDelay)
	return d/2 + time.Duration(rnd()*float64(d/2))
}

// OutboxMetrics counts what the Worker does, in one place, for the metrics
// endpoint to expose (with the depth, from Outbox.OutboxDepth).
type OutboxMetrics struct {
	Attempts    atomic.Int64
	Delivered   atomic.Int64
	Failures    atomic.Int64
	DeadLetters atomic.Int64
}

// WorkerConfig is what a Worker needs.
type WorkerConfig struct {
	Outbox Outbox
	// Deliverers by destination kind (DestinationProvider, DestinationSubscription).
	Deliverers map[string]Deliverer
	Retry      RetryPolicy
	// Batch is how many events one claim takes; Lease how long they are
	// held (longer than any delivery's timeout).
	Batch int
	Lease time.Duration
	// Poll is how long the worker waits when there is nothing to do.
	Poll    time.Duration
	Now     func() time.Time
	Log     *slog.Logger
	Metrics *OutboxMetrics
	// OnResult, when set, hears the outcome of every attempt (to keep a
	// Subscription's status). An error it returns is logged, like a
	// failure to record the attempt: the outcome is in the outbox either
	// way, and the next attempt's result is heard again.
	OnResult func(ctx context.Context, e OutboxEvent, err error) error
	// TracerProvider traces each attempt (default: no tracing). The span
	// holds the event's id, destination kind, attempt and outcome, never
	// its payload or the error's text.
	TracerProvider trace.TracerProvider
}

// Worker delivers the outbox.
type Worker struct {
	cfg    WorkerConfig
	owner  string
	wake   chan struct{}
	tracer trace.Tracer
}

// NewWorker returns a Worker; it refuses a missing outbox.
func NewWorker(cfg WorkerConfig) (*Worker, error) {
	if cfg.Outbox == nil {
		return nil, errors.New("gateway.NewWorker: no outbox")
	}
	if cfg.Retry.MaxAttempts <= 0 {
		cfg.Retry = DefaultRetryPolicy
	}
	cfg.Retry.BaseDelay = max(cfg.Retry.BaseDelay, 0)
	cfg.Retry.MaxDelay = max(cfg.Retry.MaxDelay, cfg.Retry.BaseDelay)
	if cfg.Batch <= 0 {
		cfg.Batch = 32
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 2 * time.Minute
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = &OutboxMetrics{}
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = tracenoop.NewTracerProvider()
	}
	return &Worker{cfg: cfg, owner: NewUUID(), wake: make(chan struct{}, 1),
		tracer: cfg.TracerProvider.Tracer("github.com/spgateway/spgateway/gateway")}, nil
}

// Metrics returns the worker's counters.
func (w *Worker) Metrics() *OutboxMetrics { return w.cfg.Metrics }

// Wake makes the worker look for work now (after a write that enqueued
// events, say).
func (w *Worker) Wake() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends, then returns once the deliveries under way
// have finished.
func (w *Worker) Run(ctx context.Context) {
	for {
		n, err := w.RunOnce(ctx)
		if err != nil && ctx.Err() == nil {
			w.cfg.Log.Error("outbox: claiming failed", "err", err)
		}
		if ctx.Err() != nil {
			return
		}
		if n > 0 {
			// More may be waiting: the next event of each Task just
			// delivered, or more than a batch.
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-time.After(w.cfg.Poll):
		}
	}
}

// RunOnce claims one batch and attempts each event once, in parallel across
// Tasks (a batch holds at most one event per destination and Task). It
// returns how many it claimed.
func (w *Worker) RunOnce(ctx context.Context) (int, error) {
	now := w.cfg.Now()
	events, err := w.cfg.Outbox.ClaimOutbox(ctx, w.owner, now, w.cfg.Lease, w.cfg.Batch)
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	for _, e := range events {
		wg.Go(func() { w.attempt(context.WithoutCancel(ctx), e) })
	}
	wg.Wait()
	return len(events), nil
}

// The outcomes of an attempt, as its span records them.
const (
	outcomeDelivered = "delivered"
	outcomeDiscarded = "discarded"
	outcomeRetry     = "retry"
	outcomeDead      = "dead"
)

func (w *Worker) attempt(ctx context.Context, e OutboxEvent) {
	kind, _ := SplitDestination(e.Destination)
	ctx, span := w.tracer.Start(ctx, "outbox.deliver", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("spgateway.outbox.event_id", e.ID),
			attribute.String("spgateway.outbox.event_kind", e.Kind),
			attribute.String("spgateway.outbox.destination_kind", kind),
			attribute.Int("spgateway.outbox.attempt", e.Attempts+1),
		))
	defer span.End()
	var err error
	if d, ok := w.cfg.Deliverers[kind]; ok {
		w.cfg.Metrics.Attempts.Add(1)
		err = d.Deliver(ctx, e)
	} else {
		err = &PermanentError{Err: errors.New("no adapter delivers to " + kind)}
	}
	now := w.cfg.Now()
	e.Attempts++
	var perm *PermanentError
	switch {
	case err == nil || errors.Is(err, ErrDiscard):
		e.Status, e.DeliveredAt, e.LastError = OutboxDelivered, now, ""
		outcome := outcomeDiscarded
		if err == nil {
			w.cfg.Metrics.Delivered.Add(1)
			outcome = outcomeDelivered
		}
		span.SetAttributes(attribute.String("spgateway.outbox.outcome", outcome))
	case errors.As(err, &perm) || e.Attempts >= w.cfg.Retry.MaxAttempts:
		// The error's text is in the log and the outbox row, not the span:
		// a receiver's answer is not the gateway's to export.
		span.SetAttributes(attribute.String("spgateway.outbox.outcome", outcomeDead))
		span.SetStatus(codes.Error, outcomeDead)
		w.cfg.Metrics.Failures.Add(1)
		w.cfg.Metrics.DeadLetters.Add(1)
		e.Status, e.LastError = OutboxDead, truncate(err.Error(), 500)
		w.cfg.Log.Warn("outbox: dead letter", "event", e.ID, "destination", e.Destination, "attempts", e.Attempts, "err", e.LastError)
	default:
		span.SetAttributes(attribute.String("spgateway.outbox.outcome", outcomeRetry))
		span.SetStatus(codes.Error, outcomeRetry)
		w.cfg.Metrics.Failures.Add(1)
		e.LastError = truncate(err.Error(), 500)
		e.NextAttempt = now.Add(w.cfg.Retry.Delay(e.Attempts, rand.Float64))
		w.cfg.Log.Warn("outbox: delivery failed", "event", e.ID, "destination", e.Destination, "attempts", e.Attempts,
			"next_attempt", e.NextAttempt, "err", e.LastError)
	}
	counted, ferr := w.cfg.Outbox.FinishOutbox(ctx, w.owner, e)
	if ferr != nil {
		// The lease runs out and the event is tried again: at least once.
		w.cfg.Log.Error("outbox: recording an attempt failed", "event", e.ID, "err", ferr)
	}
	if !counted {
		span.SetAttributes(attribute.Bool("spgateway.outbox.superseded", true))
		// Another worker took the event over (or the outcome was not
		// recorded): its outcome, not this one, is what OnResult hears.
		return
	}
	if w.cfg.OnResult != nil && !errors.Is(err, ErrDiscard) {
		if rerr := w.cfg.OnResult(ctx, e, err); rerr != nil {
			w.cfg.Log.Error("outbox: acting on an attempt's outcome failed", "event", e.ID, "destination", e.Destination, "err", rerr)
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") // not a rune cut in two: PostgreSQL refuses invalid UTF-8
}

// OutboxView is what an operator sees of the outbox.
type OutboxView struct {
	Depth  map[string]int `json:"depth"`
	Events []OutboxEvent  `json:"events"`
}

// Operator returns CodeForbidden unless p may work the outbox (an admin),
// and CodeNotFound when there is no outbox.
func (s *Service) Operator(p Principal) error {
	if p.Role != RoleAdmin {
		return Errorf(CodeForbidden, "the outbox is for operators")
	}
	if s.outbox == nil {
		return Errorf(CodeNotFound, "no outbox here")
	}
	return nil
}

// OutboxEvents lists deliveries of a status (dead letters, say), oldest
// first, with the outbox's depth; payloads (patient data) are left out.
func (s *Service) OutboxEvents(ctx context.Context, p Principal, status string, limit int) (OutboxView, error) {
	if err := s.Operator(p); err != nil {
		return OutboxView{}, err
	}
	switch status {
	case OutboxPending, OutboxDelivered, OutboxDead:
	default:
		return OutboxView{}, Problem(CodeInvalid, IssueValue, "status", "status is pending, delivered or dead")
	}
	depth, err := s.outbox.OutboxDepth(ctx)
	if err != nil {
		return OutboxView{}, err
	}
	events, err := s.outbox.ListOutbox(ctx, status, limit)
	if err != nil {
		return OutboxView{}, err
	}
	if events == nil {
		events = []OutboxEvent{}
	}
	return OutboxView{Depth: depth, Events: events}, nil
}

// Redrive makes a dead letter pending again, to be delivered now.
func (s *Service) Redrive(ctx context.Context, p Principal, id string) error {
	if err := s.Operator(p); err != nil {
		return err
	}
	if err := s.outbox.RedriveOutbox(ctx, id, s.now()); err != nil {
		return err
	}
	s.enqueued()
	return nil
}

// ProviderRoutes delivers each provider's events through its own adapter.
type ProviderRoutes map[string]Deliverer

// Deliver hands e to the adapter of its provider; a provider without one
// is a permanent failure (its configuration changed).
func (r ProviderRoutes) Deliver(ctx context.Context, e OutboxEvent) error {
	_, code := SplitDestination(e.Destination)
	d, ok := r[code]
	if !ok {
		return &PermanentError{Err: errors.New("no adapter is configured for provider " + code)}
	}
	return d.Deliver(ctx, e)
}
