package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"
)

// Part is the role a resource plays in a referral.
type Part int

// The parts of a referral.
const (
	PartRequest    Part = iota + 1 // the ServiceRequest
	PartPatient                    // the Patient sent with it
	PartTask                       // a Task the practice sent with it
	PartSupporting                 // Conditions, Consent
)

// Entry is one resource a referral carries, in request order.
type Entry struct {
	Type string
	Part Part
}

// Referral is a referral as a practice sent it, parsed by the FHIR edge: the
// views the rules check, and a Renderer for the FHIR documents to store once
// the service has decided ids, versions and the provider.
type Referral struct {
	Request RequestView
	// Patient is the Patient sent with the referral; nil when the subject
	// refers to a patient the gateway holds.
	Patient *PatientView
	// Task is a Task the practice sent; nil lets the gateway create it.
	Task    *TaskView
	Entries []Entry
	Render  Renderer
}

// Renderer builds the documents of a referral.
type Renderer interface {
	// Render returns one resource per entry, and the Task when
	// a.TaskID is set, each with Body (id and meta set) and the content
	// fields of Index (Status, Key, Identifiers, dates, ContentHash). The
	// service fills in tenancy: Practice, Provider, PatientID, ReferralID,
	// Access.
	Render(a Assignment) (entries []Resource, task *Resource, err error)
}

// Assignment is what the service decides for a referral.
type Assignment struct {
	Now       time.Time
	IDs       []string // per entry; the Patient's is the known patient's id when there is one
	Versions  []int    // per entry
	PatientID string
	Requester Organization
	Owner     Organization
	// TaskID is the id of the Task the gateway creates; empty when the
	// referral carries its own Task.
	TaskID string
	// ChangedBy is the client that sent the referral.
	ChangedBy Principal
}

// ReferralResult says what a submission stored or found.
type ReferralResult struct {
	// Created is false when the practice had sent this referral before:
	// nothing was written and Entries are the resources stored then.
	Created bool
	Entries []EntryResult
	Task    Resource
}

// EntryResult is what became of one entry.
type EntryResult struct {
	// Resource is nil only for an entry of a repeated referral that has no
	// counterpart in the original.
	Resource *Resource
	Created  bool
}

// errDuplicateReferral aborts the write transaction of a referral the
// practice has sent before.
var errDuplicateReferral = errors.New("referral already received")

// SubmitReferral validates, routes and stores a practice's referral with its
// Task, all in one transaction. A referral whose identifier the practice has
// used before writes nothing and returns what was stored then. It returns
// CodeForbidden when the caller is not the referring practice and
// CodeUnprocessable, listing every broken rule, when the referral is invalid
// or no provider takes it.
func (s *Service) SubmitReferral(ctx context.Context, p Principal, r *Referral) (_ *ReferralResult, err error) {
	a, ctx := s.begin(ctx, p, AuditCreate, TypeServiceRequest)
	defer func() { err = a.end(ctx, err) }()
	if err := authorize(p, ActionCreate, TypeServiceRequest); err != nil {
		return nil, err
	}
	if err := CheckRequester(r.Request, p.Org); err != nil {
		return nil, err
	}
	if err := Unprocessable(s.referralIssues(r, p.Org)); err != nil {
		return nil, err
	}
	provider, err := s.route(r, p.Org)
	if err != nil {
		return nil, err
	}
	var res *ReferralResult
	err = s.update(ctx, a, func(tx Tx) error {
		var err error
		res, err = s.writeReferral(ctx, tx, p, provider, r)
		return err
	})
	if errors.Is(err, errDuplicateReferral) {
		// Nothing written: the practice is told what it sent before.
		res, err := s.existingReferral(ctx, p.Org, r)
		if err == nil {
			for _, e := range res.Entries {
				if e.Resource != nil {
					a.touch(*e.Resource)
				}
			}
			a.touch(res.Task)
		}
		return res, err
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// referralIssues runs every rule of SPEC 2.1 but the requester check.
func (s *Service) referralIssues(r *Referral, practice string) []Issue {
	var issues []Issue
	add := func(is []Issue) { issues = append(issues, is...) }
	q := r.Request
	add(CheckReferralIdentifier(q))
	add(CheckRequestStatus(q))
	add(CheckRequestIntent(q))
	add(CheckRequestCode(q))
	add(CheckAuthoredOn(q))
	add(CheckSubject(q))
	add(CheckPerformer(q, s.dir))
	if pt := r.Patient; pt != nil {
		add(CheckPatientNHSNumber(*pt, s.relaxed))
		add(CheckPatientName(*pt))
		add(CheckBirthDate(*pt, s.now()))
		add(CheckContactRoute(*pt))
	}
	if t := r.Task; t != nil {
		add(CheckReferralTask(*t, practice, s.dir))
	}
	return issues
}

// route picks the provider: the performer the practice named, else the owner
// of the Task it sent, else the routing rules.
func (s *Service) route(r *Referral, practice string) (string, error) {
	var fromTask string
	if r.Task != nil && r.Task.Owner.Present {
		fromTask = r.Task.Owner.Code
	}
	if len(r.Request.Performers) == 1 {
		named := r.Request.Performers[0].Code
		if fromTask != "" && fromTask != named {
			return "", Unprocessable([]Issue{located(IssueValue, r.Task.At, "owner", "the Task's owner and the ServiceRequest's performer name different providers")})
		}
		return named, nil
	}
	if fromTask != "" {
		return fromTask, nil
	}
	in := RouteInput{Practice: practice, Reasons: r.Request.Reasons}
	if r.Patient != nil {
		in.Postcode = r.Patient.Postcode
	}
	provider, ok := Route(s.routing, in)
	if !ok {
		return "", Unprocessable([]Issue{located(IssueBusinessRule, r.Request.At, "performer",
			"no routing rule sends this referral to a provider: name one in performer, or ask the operator to add a rule")})
	}
	return provider, nil
}

func (s *Service) writeReferral(ctx context.Context, tx Tx, p Principal, provider string, r *Referral) (*ReferralResult, error) {
	practice := p.Org
	n := len(r.Entries)
	a := Assignment{
		ChangedBy: p,
		Now:       tx.Now(),
		IDs:       make([]string, n),
		Versions:  make([]int, n),
		Requester: s.dir[practice],
		Owner:     s.dir[provider],
	}
	known, err := s.resolvePatient(ctx, tx, practice, r)
	if err != nil {
		return nil, err
	}
	a.PatientID = s.newID()
	if known != nil {
		a.PatientID = known.ID
	}
	for i, e := range r.Entries {
		a.IDs[i], a.Versions[i] = s.newID(), 1
		if e.Part == PartPatient {
			a.IDs[i] = a.PatientID
			if known != nil {
				a.Versions[i] = known.Version + 1
			}
		}
	}
	if r.Task == nil {
		a.TaskID = s.newID()
	}
	docs, task, err := r.Render.Render(a)
	if err != nil {
		return nil, Internal("render referral", err)
	}
	if len(docs) != n || (task == nil) != (a.TaskID == "") {
		return nil, Internal("render referral", fmt.Errorf("rendered %d entries for %d", len(docs), n))
	}
	var referralID string
	for i, e := range r.Entries {
		if e.Part == PartRequest {
			referralID = a.IDs[i]
		}
	}
	access := []string{practice, provider}
	for i := range docs {
		d := &docs[i]
		d.Index.Practice, d.Index.Access = practice, access
		if r.Entries[i].Part != PartPatient {
			d.Index.PatientID, d.Index.ReferralID, d.Index.Provider = a.PatientID, referralID, provider
		}
	}
	if task != nil {
		task.Index.Practice, task.Index.Provider, task.Index.Access = practice, provider, access
		task.Index.PatientID, task.Index.ReferralID = a.PatientID, referralID
	}

	res := &ReferralResult{Created: true, Entries: make([]EntryResult, n)}
	// The ServiceRequest goes first: the unique key on the practice's
	// referral identifier is what makes a repeated referral write nothing,
	// however many copies arrive at once.
	order := make([]int, 0, n)
	for i, e := range r.Entries {
		if e.Part == PartRequest {
			order = append([]int{i}, order...)
		} else {
			order = append(order, i)
		}
	}
	for _, i := range order {
		d := &docs[i]
		if r.Entries[i].Part == PartPatient && known != nil && known.Index.ContentHash == d.Index.ContentHash {
			// The practice sent the patient's details unchanged: no new
			// version, but this referral's provider may now read them.
			if err := tx.Grant(ctx, known.Type, known.ID, access...); err != nil {
				return nil, err
			}
			res.Entries[i] = EntryResult{Resource: known}
			continue
		}
		if err := tx.Put(ctx, d); err != nil {
			if r.Entries[i].Part == PartRequest && errors.Is(err, ErrDuplicateKey) {
				return nil, errDuplicateReferral
			}
			return nil, err
		}
		res.Entries[i] = EntryResult{Resource: d, Created: d.Version == 1}
	}
	if task != nil {
		if err := tx.Put(ctx, task); err != nil {
			return nil, err
		}
		res.Task = *task
	} else {
		for i, e := range r.Entries {
			if e.Part == PartTask {
				res.Task = docs[i]
			}
		}
	}
	if err := s.notify(ctx, tx, res.Task, practice); err != nil {
		return nil, err
	}
	if i := patientEntry(r); known != nil && i >= 0 && res.Entries[i].Resource != known {
		// New details of a known patient: the providers of the patient's
		// other open referrals get their case records again.
		if err := s.renotifyPatient(ctx, tx, practice, a.PatientID, res.Task.ID); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// resolvePatient finds the patient the practice already holds: the one with
// the NHS number of the Patient sent, or the one the subject refers to. It
// returns nil when a sent Patient is new, and CodeUnprocessable when a
// referenced patient is not the practice's.
func (s *Service) resolvePatient(ctx context.Context, tx Tx, practice string, r *Referral) (*Resource, error) {
	var (
		cur Resource
		err error
	)
	switch {
	case r.Patient != nil:
		cur, err = tx.GetByKey(ctx, TypePatient, practice, Identifier{System: SystemNHSNumber, Value: r.Patient.NHSNumbers[0]})
		if ErrorCode(err) == CodeNotFound {
			return nil, nil
		}
	case r.Request.Subject.Kind == SubjectByIdentifier:
		cur, err = tx.GetByKey(ctx, TypePatient, practice, Identifier{System: SystemNHSNumber, Value: r.Request.Subject.NHSNumber})
	case r.Request.Subject.Kind == SubjectByID:
		cur, err = tx.Get(ctx, TypePatient, r.Request.Subject.ID, 0)
		if err == nil && cur.Index.Practice != practice {
			err = Errorf(CodeNotFound, "no such patient")
		}
	default:
		return nil, Internal("resolve patient", fmt.Errorf("subject kind %d", r.Request.Subject.Kind))
	}
	if ErrorCode(err) == CodeNotFound {
		return nil, Unprocessable([]Issue{located(IssueValue, r.Request.At, "subject",
			"this practice has not referred that patient before: send the Patient with the referral (in the Bundle, or contained)")})
	}
	if err != nil {
		return nil, err
	}
	return &cur, nil
}

// existingReferral answers a repeated referral with what the first one
// stored: each entry is matched to the resource of the same part (the n-th
// Condition to the n-th Condition).
func (s *Service) existingReferral(ctx context.Context, practice string, r *Referral) (*ReferralResult, error) {
	key := r.Request.Identifiers[0]
	res := &ReferralResult{Entries: make([]EntryResult, len(r.Entries))}
	err := s.store.View(ctx, func(v View) error {
		sr, err := v.GetByKey(ctx, TypeServiceRequest, practice, key)
		if err != nil {
			return err
		}
		related, err := v.ByReferral(ctx, sr.ID)
		if err != nil {
			return err
		}
		var patient *Resource
		if pt, err := v.Get(ctx, TypePatient, sr.Index.PatientID, 0); err == nil {
			patient = &pt
		} else if ErrorCode(err) != CodeNotFound {
			return err
		}
		seen := map[string]int{}
		for i, e := range r.Entries {
			switch e.Part {
			case PartRequest:
				res.Entries[i].Resource = &sr
			case PartPatient:
				res.Entries[i].Resource = patient
			default:
				res.Entries[i].Resource = nthOfType(related, e.Type, seen[e.Type])
				seen[e.Type]++
			}
		}
		if t := nthOfType(related, TypeTask, 0); t != nil {
			res.Task = *t
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

func nthOfType(rs []Resource, typ string, n int) *Resource {
	for i := range rs {
		if rs[i].Type != typ {
			continue
		}
		if n == 0 {
			return &rs[i]
		}
		n--
	}
	return nil
}

// renotifyPatient sends again, as written by practice, the case records of
// the open Tasks of a patient but one whose providers have them pushed,
// when the patient's new details change what the provider's record holds.
// A record the provider already has is not sent again under a new
// delivery id. (The Tasks themselves did not change: practices' own
// Subscriptions hear nothing.)
func (s *Service) renotifyPatient(ctx context.Context, tx Tx, practice, patientID, except string) error {
	page, err := tx.Search(ctx, SearchQuery{Type: TypeTask, Org: practice, Count: MaxReassign, Filters: []Filter{
		{Field: FieldPatient, Values: []string{patientID}}, {Field: FieldStatus, Values: OpenStatuses}}})
	if err != nil {
		return err
	}
	for _, t := range page.Matches {
		if t.ID == except || !s.pushes[t.Index.Provider] {
			continue
		}
		changed, err := s.recordChanged(ctx, tx, t)
		if err != nil {
			return err
		}
		if !changed {
			continue
		}
		if err := s.notify(ctx, tx, t, practice); err != nil {
			return err
		}
	}
	return nil
}

// recordChanged reports whether the provider's case record of Task t
// differs between the patient's current version and the one before it.
func (s *Service) recordChanged(ctx context.Context, tx Tx, t Resource) (bool, error) {
	docs, err := referralDocuments(ctx, tx, t)
	if err != nil {
		return false, err
	}
	if docs.Patient.Version <= 1 {
		return true, nil
	}
	now, err := s.renderCase(t.Index.Provider, docs)
	if err != nil {
		return false, err
	}
	if docs.Patient, err = tx.Get(ctx, TypePatient, docs.Patient.ID, docs.Patient.Version-1); err != nil {
		return false, err
	}
	before, err := s.renderCase(t.Index.Provider, docs)
	if err != nil {
		return false, err
	}
	return !bytes.Equal(now, before), nil
}

// patientEntry returns the index of the referral's Patient entry, or -1.
func patientEntry(r *Referral) int {
	for i, e := range r.Entries {
		if e.Part == PartPatient {
			return i
		}
	}
	return -1
}
