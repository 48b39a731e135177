package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Programme is a provider's PROM programme: which instrument it uses and
// its schedule.
type Programme struct {
	Name       string
	Providers  []string
	Instrument string // instrument id
	Schedule   Schedule
}

// clockSkew is how far ahead of the gateway's clock a client's times may be.
const clockSkew = 5 * time.Minute

// DefaultProgramme applies to providers no programme names.
var DefaultProgramme = Programme{Name: "default", Instrument: "swemwbs", Schedule: DefaultSchedule}

// PROMResponse is a QuestionnaireResponse a provider sends, parsed by the
// FHIR edge.
type PROMResponse struct {
	// Questionnaire is the canonical URL it answers (any |version cut off).
	Questionnaire string
	Status        string
	// SubjectID and BasedOnID are the ids of Patient/{id} and
	// ServiceRequest/{id}; empty when absent or not such a reference.
	SubjectID string
	BasedOnID string
	Authored  string
	Answers   []Answer
	Render    PROMRenderer
}

// PROMRenderer renders the stored documents of a scored PROM.
type PROMRenderer interface {
	// Render returns the QuestionnaireResponse as stored and the
	// Observation of its score.
	Render(a PROMAssignment) (response, observation []byte, err error)
}

// PROMAssignment is what the service decided for a PROM.
type PROMAssignment struct {
	ResponseID    string
	ObservationID string
	Now           time.Time
	Instrument    Instrument
	Score         Score
	PatientID     string
	ReferralID    string
	ChangedBy     Principal
	ChangedAt     Organization
}

// PROMResult is what recording a PROM stored.
type PROMResult struct {
	Response, Observation, Task Resource
}

// Instruments returns the PROM instruments the gateway knows.
func (s *Service) Instruments() []Instrument { return s.instruments }

func (s *Service) instrument(url string) (Instrument, bool) {
	for _, in := range s.instruments {
		if in.URL == url || in.ID == url {
			return in, true
		}
	}
	return Instrument{}, false
}

// programme returns the PROM programme of a provider.
func (s *Service) programme(provider string) Programme {
	for _, p := range s.programmes {
		for _, code := range p.Providers {
			if code == provider {
				return p
			}
		}
	}
	return DefaultProgramme
}

// RecordPROM validates, scores and stores a provider's QuestionnaireResponse
// for a known instrument, with an Observation of the score, and links both
// from the referral's Task (type additional-content), whose businessStatus
// becomes baseline-prom-complete or follow-up-prom-complete and whose next
// PROM moves on — all in one transaction. It returns CodeForbidden for a
// caller that is not a provider, CodeUnprocessable (naming the element or
// item) for a response that breaks a rule, CodeNotFound for a referral that
// is not the caller's, and CodeConflict when its Task is not accepted and
// open.
func (s *Service) RecordPROM(ctx context.Context, p Principal, r *PROMResponse) (_ *PROMResult, err error) {
	a, ctx := s.begin(ctx, p, AuditCreate, TypeQuestionnaireResponse)
	defer func() { err = a.end(ctx, err) }()
	if p.Role != RoleProvider {
		return nil, Errorf(CodeForbidden, "only the provider of a referral records its PROMs")
	}
	in, ok := s.instrument(r.Questionnaire)
	var issues []Issue
	if !ok {
		issues = append(issues, issue(IssueValue, "QuestionnaireResponse.questionnaire",
			"%q is not an instrument of this gateway (GET /fhir/Questionnaire lists them)", r.Questionnaire))
	}
	if r.Status != "completed" {
		issues = append(issues, issue(IssueValue, "QuestionnaireResponse.status", "only a completed response is scored, not %q", r.Status))
	}
	var authored Period
	if r.Authored == "" {
		issues = append(issues, issue(IssueRequired, "QuestionnaireResponse.authored", "authored is required: when the patient answered"))
	} else if authored, err = ParseDateTime(r.Authored); err != nil {
		issues = append(issues, issue(IssueValue, "QuestionnaireResponse.authored", "authored is %v", err))
	} else if authored.Start.After(s.now().Add(clockSkew)) {
		issues = append(issues, issue(IssueValue, "QuestionnaireResponse.authored", "authored is in the future"))
	}
	if r.SubjectID == "" {
		issues = append(issues, issue(IssueRequired, "QuestionnaireResponse.subject", "subject must be the Patient, as Patient/{id}"))
	}
	if r.BasedOnID == "" {
		issues = append(issues, issue(IssueRequired, "QuestionnaireResponse.basedOn", "basedOn must be the referral, as ServiceRequest/{id}"))
	}
	if ok {
		issues = append(issues, CheckAnswers(in, r.Answers)...)
	}
	if err := Unprocessable(issues); err != nil {
		return nil, err
	}
	score, err := ScoreAnswers(in, r.Answers)
	if err != nil {
		return nil, err
	}
	res := &PROMResult{}
	err = s.update(ctx, a, func(tx Tx) error {
		if _, err := tx.GetFor(ctx, p.Org, TypeServiceRequest, r.BasedOnID, 0); err != nil {
			return err
		}
		related, err := tx.ByReferral(ctx, r.BasedOnID)
		if err != nil {
			return err
		}
		task := nthOfType(related, TypeTask, 0)
		if task == nil {
			return Internal("record PROM", fmt.Errorf("referral %s without a Task", r.BasedOnID))
		}
		if role, err := taskRole(p, *task); err != nil || role != TaskOwner {
			return Errorf(CodeNotFound, "ServiceRequest/%s is not known", r.BasedOnID)
		}
		if r.SubjectID != task.Index.PatientID {
			return Unprocessable([]Issue{issue(IssueValue, "QuestionnaireResponse.subject", "subject is not the referral's Patient")})
		}
		switch task.Index.Status {
		case TaskAccepted, TaskInProgress, TaskOnHold:
		case TaskRequested, TaskReceived:
			return Problem(CodeConflict, IssueBusinessRule, "QuestionnaireResponse.basedOn", "the referral's Task is %s: accept it before recording PROMs", task.Index.Status)
		default:
			return Problem(CodeConflict, IssueBusinessRule, "QuestionnaireResponse.basedOn", "the referral's Task is %s, which is final: no more PROMs", task.Index.Status)
		}
		by, at := s.edited(p)
		a := PROMAssignment{ResponseID: s.newID(), ObservationID: s.newID(), Now: tx.Now(), Instrument: in, Score: score,
			PatientID: task.Index.PatientID, ReferralID: r.BasedOnID, ChangedBy: by, ChangedAt: at}
		qrBody, obsBody, err := r.Render.Render(a)
		if err != nil {
			return Internal("render PROM", err)
		}
		base := Index{Practice: task.Index.Practice, Provider: task.Index.Provider, PatientID: task.Index.PatientID,
			ReferralID: r.BasedOnID, Authored: authored.Start, Questionnaire: in.URL,
			Access: []string{task.Index.Practice, task.Index.Provider}}
		res.Response = Resource{Type: TypeQuestionnaireResponse, ID: a.ResponseID, Version: 1, Body: qrBody, Index: base}
		res.Response.Index.Status = r.Status
		res.Observation = Resource{Type: TypeObservation, ID: a.ObservationID, Version: 1, Body: obsBody, Index: base}
		res.Observation.Index.Status, res.Observation.Index.Codes = "final", in.Codes
		res.Observation.Index.Value, res.Observation.Index.HasValue = score.Value, score.HasValue
		for _, r := range []*Resource{&res.Response, &res.Observation} {
			if err := tx.Put(ctx, r); err != nil {
				return err
			}
		}
		state, err := s.docs.Task(task.Body)
		if err != nil {
			return Internal("read stored Task", err)
		}
		edit := TaskEdit{ID: task.ID, Version: task.Version + 1, Now: a.Now, ChangedBy: by, ChangedAt: at,
			AddContent: []string{TypeQuestionnaireResponse + "/" + a.ResponseID, TypeObservation + "/" + a.ObservationID}}
		edit.BusinessStatus = BusinessFollowUpPROMComplete
		if task.Index.PROMsDone == 0 {
			edit.BusinessStatus = BusinessBaselinePROMComplete
		}
		next := *task
		next.Index.PROMsDone++
		// The baseline is the earliest answered, whatever order the forms
		// are entered in.
		if next.Index.BaselineAt.IsZero() || authored.Start.Before(next.Index.BaselineAt) {
			next.Index.BaselineAt = authored.Start
		}
		res.Task, err = s.writeTask(ctx, tx, next, task.Body, state, s.withSchedule(next, state, edit))
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// withSchedule completes an edit of Task t (whose Index already holds the
// milestones after the edit) with when its next PROM is due.
func (s *Service) withSchedule(t Resource, after TaskState, e TaskEdit) TaskEdit {
	status := after.Status
	if e.Status != "" {
		status = e.Status
	}
	// Always stated, so the Task's extension and its index agree whatever
	// they held before (writing the same date again changes nothing).
	due := s.programme(t.Index.Provider).Schedule.NextPROMDue(t.Index.AcceptedAt, t.Index.BaselineAt, t.Index.PROMsDone, TaskOpen(status))
	e.PROMDue = &due
	return e
}

// milestones updates the milestones of a Task's index for a change from
// before to after at now.
func milestones(x *Index, before, after TaskState, now time.Time) {
	if x.AcceptedAt.IsZero() && before.Status != after.Status && after.Status == TaskAccepted {
		x.AcceptedAt = now
	}
	if x.FirstContactAt.IsZero() && businessCode(after.BusinessStatus) == BusinessFirstContactMade {
		x.FirstContactAt = now
	}
	if after.StatusReason != nil {
		x.StatusReason = after.StatusReason.code(SystemStatusReason)
	}
}

// MarkPROMsDue sets businessStatus follow-up-prom-due on every open Task
// whose next follow-up PROM is due by now and not yet marked, each as a new
// version written by the gateway itself. It returns how many it marked. It
// is meant to run every few minutes; running it twice marks nothing twice.
func (s *Service) MarkPROMsDue(ctx context.Context, now time.Time) (marked int, err error) {
	a, ctx := s.begin(ctx, promSchedule, AuditUpdate, TypeTask)
	err = s.update(ctx, a, func(tx Tx) error {
		marked = 0
		due, err := tx.DuePROMs(ctx, now, 500)
		if err != nil {
			return err
		}
		if len(due) == 0 {
			return errNoneDue // nothing to write, nor to audit
		}
		for _, t := range due {
			state, err := s.docs.Task(t.Body)
			if err != nil {
				return Internal("read stored Task", err)
			}
			edit := TaskEdit{ID: t.ID, Version: t.Version + 1, Now: tx.Now(), BusinessStatus: BusinessFollowUpPROMDue,
				ChangedBy: promSchedule}
			if _, err := s.writeTask(ctx, tx, t, t.Body, state, edit); err != nil {
				return err
			}
			marked++
		}
		return nil
	})
	if errors.Is(err, errNoneDue) {
		return 0, nil
	}
	return marked, a.end(ctx, err)
}

// promSchedule is the gateway itself, marking follow-up PROMs due.
var promSchedule = Principal{ClientID: "spgateway PROM schedule", Role: RoleSystem}

var errNoneDue = errors.New("no PROM is due")
