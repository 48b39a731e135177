package gateway

import (
	"context"
)

// Case records are for providers that do not speak FHIR: a flat document
// per referral, in the provider's own field names, codes and date format,
// holding only the fields its configuration allows. Providers poll them
// (the case API) or have them pushed (an adapter, through the outbox), and
// send back events in their own vocabulary.

// ReferralDocuments are the stored resources of one referral.
type ReferralDocuments struct {
	Task    Resource
	Request Resource
	Patient Resource
	// Related are its Conditions and Consent.
	Related []Resource
}

// CaseEvent is a provider's event as a Task change (or a PROM).
type CaseEvent struct {
	Status         string
	Reason         *Reason
	BusinessStatus string
	Note           string
	PROM           *PROMResponse
}

// CaseRecords renders case records and reads providers' events; mapping
// implements it from per-provider configuration.
type CaseRecords interface {
	// Render returns a provider's document for a referral: its case
	// record, or for a provider that takes FHIR, a transaction Bundle.
	Render(provider string, r ReferralDocuments) ([]byte, error)
	// Event reads a provider's event. It returns CodeUnprocessable for an
	// event its configuration does not know.
	Event(provider string, body []byte) (CaseEvent, error)
	// Has reports whether the provider has a case-record configuration.
	Has(provider string) bool
}

// caseProvider refuses the case API to anyone but a provider with a
// case-record configuration.
func (s *Service) caseProvider(p Principal) error {
	if p.Role != RoleProvider {
		return Errorf(CodeForbidden, "the case API is for providers")
	}
	if s.cases == nil || !s.cases.Has(p.Org) {
		return Errorf(CodeForbidden, "no case records are configured for %s: use the FHIR API", p.Org)
	}
	return nil
}

// referralDocuments reads the documents of the referral of Task t.
func referralDocuments(ctx context.Context, v View, t Resource) (ReferralDocuments, error) {
	d := ReferralDocuments{Task: t}
	var err error
	if d.Request, err = v.Get(ctx, TypeServiceRequest, t.Index.ReferralID, 0); err != nil {
		return d, err
	}
	if d.Patient, err = v.Get(ctx, TypePatient, t.Index.PatientID, 0); err != nil {
		return d, err
	}
	related, err := v.ByReferral(ctx, t.Index.ReferralID)
	if err != nil {
		return d, err
	}
	for _, r := range related {
		if r.Type == TypeCondition || r.Type == TypeConsent {
			d.Related = append(d.Related, r)
		}
	}
	return d, nil
}

// notify enqueues, in tx, what must leave the gateway about Task version t
// written by the organisation writer: the provider's case record when its
// case records are pushed, and a notification to each of the practice's
// Subscriptions. Nobody is told of their own change.
func (s *Service) notify(ctx context.Context, tx Tx, t Resource, writer string) error {
	var events []OutboxEvent
	provider, practice := t.Index.Provider, t.Index.Practice
	if s.pushes[provider] && writer != provider {
		docs, err := referralDocuments(ctx, tx, t)
		if err != nil {
			return err
		}
		payload, err := s.renderCase(provider, docs)
		if err != nil {
			return err
		}
		events = append(events, OutboxEvent{ID: s.newID(), Destination: ProviderDestination(provider), Kind: EventCaseRecord,
			OrderKey: t.ID, TaskVersion: t.Version, Payload: payload})
	}
	if writer != practice {
		subs, err := s.subscriptionsOf(ctx, tx, practice)
		if err != nil {
			return err
		}
		if len(subs) > 0 {
			seen, err := s.view(Principal{Role: RolePractice, Org: practice}, t)
			if err != nil {
				return err
			}
			for _, sub := range subs {
				var payload []byte
				if sub.Payload != "" { // the full resource; otherwise an empty notification
					payload = seen.Body
				}
				events = append(events, OutboxEvent{ID: s.newID(), Destination: SubscriptionDestination(sub.ID), Kind: EventTask,
					OrderKey: t.ID, TaskVersion: t.Version, Payload: payload})
			}
		}
	}
	if len(events) == 0 {
		return nil
	}
	return tx.Enqueue(ctx, events...)
}

// renderCase renders provider's document of a referral; a failure is the
// gateway's own.
func (s *Service) renderCase(provider string, docs ReferralDocuments) ([]byte, error) {
	rec, err := s.cases.Render(provider, docs)
	if err != nil {
		return nil, Internal("render case record", err)
	}
	return rec, nil
}

// enqueued tells the outbox worker there is work.
func (s *Service) enqueued() {
	if s.wake != nil {
		s.wake()
	}
}

// wakingStore wakes the outbox worker after a transaction that enqueued
// events has committed, when the worker can see them.
type wakingStore struct {
	Store
	wake func()
}

type enqueueTx struct {
	Tx
	enqueued bool
}

func (t *enqueueTx) Enqueue(ctx context.Context, events ...OutboxEvent) error {
	t.enqueued = t.enqueued || len(events) > 0
	return t.Tx.Enqueue(ctx, events...)
}

func (w wakingStore) Update(ctx context.Context, fn func(Tx) error) error {
	var tx *enqueueTx
	err := w.Store.Update(ctx, func(t Tx) error {
		tx = &enqueueTx{Tx: t} // afresh on each run: a store may retry fn
		return fn(tx)
	})
	if err == nil && tx != nil && tx.enqueued {
		w.wake()
	}
	return err
}

// CaseQuery is a page of a provider's case records.
type CaseQuery struct {
	// Statuses are the Task statuses wanted (all when empty).
	Statuses []string
	// Since, when set, keeps the cases changed at or after its start.
	Since *Period
	// Snapshot and After continue a listing (0, 0: from the start).
	Snapshot, After int64
	Count           int
}

// Cases returns a page of the provider's case records: its Tasks of the
// query, oldest change first. It returns the records, the snapshot and
// the change to continue after, and whether more follow.
func (s *Service) Cases(ctx context.Context, p Principal, cq CaseQuery) (_ [][]byte, _, _ int64, _ bool, err error) {
	a, ctx := s.begin(ctx, p, AuditCaseList, TypeTask)
	defer func() { err = a.end(ctx, err) }()
	if err := s.caseProvider(p); err != nil {
		return nil, 0, 0, false, err
	}
	after := cq.After
	q := SearchQuery{Type: TypeTask, Org: p.Org, Count: cq.Count, Snapshot: cq.Snapshot, After: after,
		Filters: []Filter{{Field: FieldProvider, Values: []string{p.Org}}}}
	if len(cq.Statuses) > 0 {
		q.Filters = append(q.Filters, Filter{Field: FieldStatus, Values: cq.Statuses})
	}
	if cq.Since != nil {
		q.Filters = append(q.Filters, Filter{Field: FieldLastUpdated, Dates: []DateBound{{Op: OpGe, Period: *cq.Since}}})
	}
	var (
		out  [][]byte
		page SearchPage
	)
	err = s.store.View(ctx, func(v View) error {
		var err error
		if page, err = v.Search(ctx, q); err != nil {
			return err
		}
		for _, t := range page.Matches {
			docs, err := referralDocuments(ctx, v, t)
			if err != nil {
				return err
			}
			rec, err := s.renderCase(p.Org, docs)
			if err != nil {
				return err
			}
			a.touch(docs.resources()...)
			out = append(out, rec)
		}
		return nil
	})
	if err != nil {
		return nil, 0, 0, false, err
	}
	last := after
	if n := len(page.Matches); n > 0 {
		last = page.Matches[n-1].Seq
	}
	return out, page.Snapshot, last, page.More, nil
}

// Case returns the provider's case record of its Task id.
func (s *Service) Case(ctx context.Context, p Principal, id string) (rec []byte, err error) {
	a, ctx := s.begin(ctx, p, AuditCaseRead, TypeTask, TypeTask+"/"+id)
	defer func() { err = a.end(ctx, err) }()
	if err := s.caseProvider(p); err != nil {
		return nil, err
	}
	err = s.store.View(ctx, func(v View) error {
		t, err := v.GetFor(ctx, p.Org, TypeTask, id, 0)
		if err != nil {
			return err
		}
		if _, err := taskRole(p, t); err != nil {
			return err
		}
		docs, err := referralDocuments(ctx, v, t)
		if err != nil {
			return err
		}
		a.touch(docs.resources()...)
		rec, err = s.renderCase(p.Org, docs)
		return err
	})
	return rec, err
}

// resources are the documents a case record is made of.
func (d ReferralDocuments) resources() []Resource {
	return append([]Resource{d.Task, d.Request, d.Patient}, d.Related...)
}

// ApplyCaseEvent applies a provider's event to its case (Task id): a
// status, reason, business status or note goes through the same rules as a
// FHIR update (403, 409, 422 as there); a PROM is recorded as
// RecordPROM does. It returns the provider's case record afterwards.
func (s *Service) ApplyCaseEvent(ctx context.Context, p Principal, id string, body []byte) (_ []byte, err error) {
	a, ctx := s.begin(ctx, p, AuditCaseEvent, TypeTask, TypeTask+"/"+id)
	defer func() { err = a.end(ctx, err) }()
	if err := s.caseProvider(p); err != nil {
		return nil, err
	}
	ev, err := s.cases.Event(p.Org, body)
	if err != nil {
		return nil, err
	}
	if ev.PROM != nil {
		// The case names the referral and patient the PROM is about.
		t, err := s.Read(ctx, p, TypeTask, id, 0)
		if err != nil {
			return nil, err
		}
		if _, err := taskRole(p, t); err != nil {
			return nil, err
		}
		a.touchReferral(t)
		ev.PROM.SubjectID, ev.PROM.BasedOnID = t.Index.PatientID, t.Index.ReferralID
		if _, err := s.RecordPROM(ctx, p, ev.PROM); err != nil {
			return nil, err
		}
		return s.Case(ctx, p, id)
	}
	// The Task as it is, with the event applied, through UpdateTask; a
	// change in between (412) is read again and reapplied.
	for range 3 {
		cur, err := s.Read(ctx, p, TypeTask, id, 0)
		if err != nil {
			return nil, err
		}
		// The answer is the case record: the referral and patient too.
		a.touchReferral(cur)
		by, at := s.edited(p)
		edit := TaskEdit{ID: cur.ID, Version: cur.Version, Now: s.now(), Status: ev.Status, Reason: ev.Reason,
			BusinessStatus: ev.BusinessStatus, AddNote: ev.Note, ChangedBy: by, ChangedAt: at}
		body, err := s.docs.WriteTask(cur.Body, edit)
		if err != nil {
			return nil, Internal("apply case event", err)
		}
		_, err = s.UpdateTask(ctx, p, id, cur.Version, body)
		if ErrorCode(err) == CodePreconditionFailed {
			continue
		}
		if err != nil {
			return nil, err
		}
		return s.Case(ctx, p, id)
	}
	return nil, Errorf(CodeConflict, "the case kept changing while the event was applied: send it again")
}
