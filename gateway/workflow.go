package gateway

import (
	"context"
	"errors"
	"slices"
)

// The open Task statuses: a referral in one of them is still being worked.
// OpenStatuses are the statuses of a Task still being worked.
var OpenStatuses = []string{TaskRequested, TaskReceived, TaskAccepted, TaskInProgress, TaskOnHold}

// MaxReassign caps the Tasks one handover moves, so a single call cannot
// hold the write lock for long; a larger caseload moves in several calls.
const MaxReassign = 5000

// taskRole is the part p plays for a Task it can see: its owner or its
// requester. Anything else is CodeNotFound, like a Task that does not exist.
func taskRole(p Principal, t Resource) (TaskRole, error) {
	switch {
	case p.Role == RoleProvider && t.Index.Provider == p.Org:
		return TaskOwner, nil
	case p.Role == RolePractice && t.Index.Practice == p.Org:
		return TaskRequester, nil
	}
	return "", Errorf(CodeNotFound, "Task/%s is not known", t.ID)
}

func (s *Service) edited(p Principal) (Principal, Organization) {
	return p, s.dir[p.Org]
}

// UpdateTask stores body as the next version of Task id, for its owner or
// requester. ifMatch is the version the caller last saw (If-Match). It
// returns CodePreconditionRequired without ifMatch, CodeNotFound for a Task
// the caller is not party to, CodePreconditionFailed when the Task has
// changed since ifMatch, CodeForbidden for a change the caller's party may
// not make, CodeConflict for a status step that does not exist (or any change
// of a final Task), and CodeUnprocessable for missing or wrong reasons and
// codes. It adds the SNOMED CT outcome the change implies, and a practice's
// cancellation revokes the ServiceRequest in the same transaction.
func (s *Service) UpdateTask(ctx context.Context, p Principal, id string, ifMatch int, body []byte) (_ Resource, err error) {
	a, ctx := s.begin(ctx, p, AuditUpdate, TypeTask, TypeTask+"/"+id)
	defer func() { err = a.end(ctx, err) }()
	if err := authorize(p, ActionUpdate, TypeTask); err != nil {
		return Resource{}, err
	}
	if ifMatch <= 0 {
		return Resource{}, Errorf(CodePreconditionRequired, `updating a Task needs If-Match: W/"<version>", the version you last read`)
	}
	after, err := s.docs.Task(body)
	if err != nil {
		return Resource{}, err
	}
	var out Resource
	err = s.update(ctx, a, func(tx Tx) error {
		cur, err := tx.GetFor(ctx, p.Org, TypeTask, id, 0)
		if err != nil {
			return err
		}
		role, err := taskRole(p, cur)
		if err != nil {
			return err
		}
		if cur.Version != ifMatch {
			return Errorf(CodePreconditionFailed, "Task/%s is at version %d, not %d: read it again and reapply your change", id, cur.Version, ifMatch)
		}
		before, err := s.docs.Task(cur.Body)
		if err != nil {
			return Internal("read stored Task", err)
		}
		// A practice changes the Task it sees (which may leave out free
		// text); its change, status and reason, is applied to the Task.
		seen, err := s.view(p, cur)
		if err != nil {
			return err
		}
		changed, err := s.docs.Changed(seen.Body, body)
		if err != nil {
			return err
		}
		if err := CheckTaskTransition(before.Status, after.Status, role); err != nil {
			return err
		}
		if err := CheckTaskChange(role, changed); err != nil {
			return err
		}
		if role == TaskRequester && after.Status == before.Status && len(changed) > 0 {
			// status and statusReason are the practice's to change only to
			// cancel; the provider's reason for an open Task is the provider's.
			return Problem(CodeForbidden, IssueBusinessRule, "Task.statusReason", "the practice may change a Task only to cancel it")
		}
		if err := Unprocessable(taskIssues(before, after, changed)); err != nil {
			return err
		}
		by, at := s.edited(p)
		edit := TaskEdit{ID: id, Version: cur.Version + 1, Now: tx.Now(), AddOutcomes: ImpliedOutcomes(before, after), ChangedBy: by, ChangedAt: at}
		cancelled := after.Status == TaskCancelled && before.Status != TaskCancelled
		state := after
		if role == TaskRequester {
			// Only status and reason come from the practice's copy.
			body, edit.Status, edit.Reason, state = cur.Body, after.Status, after.StatusReason, before
		}
		milestones(&cur.Index, before, after, edit.Now)
		next, err := s.writeTask(ctx, tx, cur, body, state, s.withSchedule(cur, state, edit))
		if err != nil {
			return err
		}
		if cancelled {
			if err := s.revokeWithTask(ctx, tx, cur.Index.ReferralID, after.StatusReason, by, at); err != nil {
				return err
			}
		}
		out = next
		return nil
	})
	if err != nil {
		return Resource{}, err
	}
	return s.view(p, out)
}

// taskIssues checks the reasons and codes of a changed Task.
func taskIssues(before, after TaskState, changed []string) []Issue {
	var issues []Issue
	switch {
	case after.Status != before.Status:
		issues = append(issues, CheckStatusReason(after.Status, after.StatusReason, "Task.statusReason")...)
	case slices.Contains(changed, "statusReason") && after.StatusReason != nil:
		issues = append(issues, CheckStatusReason(after.Status, after.StatusReason, "Task.statusReason")...)
	}
	if slices.Contains(changed, "businessStatus") {
		issues = append(issues, CheckBusinessStatus(after.BusinessStatus)...)
	}
	if slices.Contains(changed, "output") {
		issues = append(issues, after.OutputIssues...)
	}
	return issues
}

// writeTask stores the next version of cur, rendered from body with edit.
func (s *Service) writeTask(ctx context.Context, tx Tx, cur Resource, body []byte, state TaskState, edit TaskEdit) (Resource, error) {
	nb, err := s.docs.WriteTask(body, edit)
	if err != nil {
		return Resource{}, Internal("write Task", err)
	}
	if edit.Status != "" {
		state.Status = edit.Status
	}
	if edit.LinkWorker != nil {
		state.LinkWorker = *edit.LinkWorker
	}
	if edit.BusinessStatus != "" {
		state.BusinessStatus = []Coding{{System: SystemBusinessStatus, Code: edit.BusinessStatus}}
	}
	next := Resource{Type: TypeTask, ID: cur.ID, Version: edit.Version, Body: nb, Index: cur.Index}
	next.Index.Status = state.Status
	next.Index.BusinessStatus = businessCode(state.BusinessStatus)
	next.Index.Modified = edit.Now
	next.Index.LinkWorker = state.LinkWorker
	if edit.PROMDue != nil {
		next.Index.PROMDue = *edit.PROMDue
	}
	next.Index.Access = nil // unchanged: access is per resource
	if err := tx.Put(ctx, &next); err != nil {
		if errors.Is(err, ErrStaleVersion) {
			return Resource{}, Errorf(CodePreconditionFailed, "Task/%s changed meanwhile: read it again", cur.ID)
		}
		return Resource{}, err
	}
	if err := s.notify(ctx, tx, next, edit.ChangedAt.Code); err != nil {
		return Resource{}, err
	}
	return next, nil
}

// revokeWithTask revokes the referral of a Task the practice cancelled.
func (s *Service) revokeWithTask(ctx context.Context, tx Tx, referralID string, reason *Reason, by Principal, at Organization) error {
	sr, err := tx.Get(ctx, TypeServiceRequest, referralID, 0)
	if err != nil {
		return Internal("read referral of Task", err)
	}
	if sr.Index.Status != "active" {
		return nil
	}
	_, err = s.writeRequest(ctx, tx, sr, sr.Body, RequestEdit{ID: sr.ID, Version: sr.Version + 1, Now: tx.Now(),
		Status: "revoked", Reason: reason, ChangedBy: by, ChangedAt: at})
	return err
}

func (s *Service) writeRequest(ctx context.Context, tx Tx, cur Resource, body []byte, edit RequestEdit) (Resource, error) {
	nb, err := s.docs.WriteRequest(body, edit)
	if err != nil {
		return Resource{}, Internal("write ServiceRequest", err)
	}
	next := Resource{Type: TypeServiceRequest, ID: cur.ID, Version: edit.Version, Body: nb, Index: cur.Index}
	next.Index.Status = edit.Status
	next.Index.Access = nil
	if err := tx.Put(ctx, &next); err != nil {
		return Resource{}, err
	}
	return next, nil
}

// UpdateRequest applies a practice's update of its referral: the only
// change it may make is to revoke it (status revoked, or entered-in-error),
// which cancels the open Task in the same transaction, with the reason
// (extension request-statusReason). ifMatch 0 means no If-Match. It returns
// CodeForbidden for any other change, CodeConflict when the referral or its
// Task is already final, CodePreconditionFailed for a stale ifMatch, and
// CodeUnprocessable for a revocation without a coded reason.
func (s *Service) UpdateRequest(ctx context.Context, p Principal, id string, ifMatch int, body []byte) (_ Resource, err error) {
	a, ctx := s.begin(ctx, p, AuditUpdate, TypeServiceRequest, TypeServiceRequest+"/"+id)
	defer func() { err = a.end(ctx, err) }()
	if p.Role != RolePractice {
		return Resource{}, Errorf(CodeForbidden, "only the referring practice may update a ServiceRequest")
	}
	status, reason, err := s.docs.Request(body)
	if err != nil {
		return Resource{}, err
	}
	var out Resource
	err = s.update(ctx, a, func(tx Tx) error {
		cur, err := tx.GetFor(ctx, p.Org, TypeServiceRequest, id, 0)
		if err != nil {
			return err
		}
		if cur.Index.Practice != p.Org {
			return Errorf(CodeNotFound, "ServiceRequest/%s is not known", id)
		}
		if ifMatch > 0 && cur.Version != ifMatch {
			return Errorf(CodePreconditionFailed, "ServiceRequest/%s is at version %d, not %d", id, cur.Version, ifMatch)
		}
		changed, err := s.docs.Changed(cur.Body, body)
		if err != nil {
			return err
		}
		if len(changed) == 0 {
			out = cur
			return nil
		}
		if err := CheckRequestChange(cur.Index.Status, status, changed); err != nil {
			return err
		}
		if status == "revoked" && reason == nil {
			return Unprocessable([]Issue{issue(IssueRequired, "ServiceRequest.extension",
				"revoking a referral needs the reason: extension %s with a coding from %s", ExtensionRequestStatusReason, SystemStatusReason)})
		}
		if reason != nil {
			if err := Unprocessable(CheckStatusReason(TaskCancelled, reason, "ServiceRequest.extension")); err != nil {
				return err
			}
		} else {
			reason = &Reason{Codes: []Coding{{System: SystemStatusReason, Code: ReasonOther}}, Text: "The referral was entered in error"}
		}
		related, err := tx.ByReferral(ctx, cur.ID)
		if err != nil {
			return err
		}
		task := nthOfType(related, TypeTask, 0)
		if task == nil {
			return Internal("revoke referral", errors.New("referral without a Task"))
		}
		if !TaskOpen(task.Index.Status) {
			return Problem(CodeConflict, IssueBusinessRule, "ServiceRequest.status", "the referral's Task is %s, which is final: the referral can no longer be revoked", task.Index.Status)
		}
		by, at := s.edited(p)
		now := tx.Now()
		if out, err = s.writeRequest(ctx, tx, cur, body, RequestEdit{ID: cur.ID, Version: cur.Version + 1, Now: now,
			Status: status, Reason: reason, ChangedBy: by, ChangedAt: at}); err != nil {
			return err
		}
		taskState, err := s.docs.Task(task.Body)
		if err != nil {
			return Internal("read stored Task", err)
		}
		cancelled := TaskState{Status: TaskCancelled, StatusReason: reason, Outcomes: taskState.Outcomes}
		milestones(&task.Index, taskState, cancelled, now)
		_, err = s.writeTask(ctx, tx, *task, task.Body, taskState, s.withSchedule(*task, taskState, TaskEdit{ID: task.ID, Version: task.Version + 1, Now: now,
			Status: TaskCancelled, Reason: reason, AddOutcomes: ImpliedOutcomes(taskState, cancelled), ChangedBy: by, ChangedAt: at}))
		return err
	})
	return out, err
}

// CheckRequestChange: a practice changes its referral only to revoke it,
// while it is active. A referral that is no longer active is final
// (CodeConflict, whatever the change); any other change is CodeForbidden,
// naming every element it touches.
func CheckRequestChange(from, to string, changed []string) error {
	if from != "active" {
		return Problem(CodeConflict, IssueBusinessRule, "ServiceRequest.status", "the referral is %s, which is final: it can no longer change", from)
	}
	var issues []Issue
	for _, el := range changed {
		if el != "status" && el != "extension" {
			issues = append(issues, issue(IssueBusinessRule, "ServiceRequest."+el,
				"a referral cannot be edited once sent: revoke it (status revoked) and send a new one"))
		}
	}
	if to != from && to != "revoked" && to != TaskEnteredInError {
		issues = append(issues, issue(IssueBusinessRule, "ServiceRequest.status", "the practice may set a referral to revoked or entered-in-error only, not %s", to))
	}
	if len(issues) > 0 {
		return &Error{Code: CodeForbidden, Issues: issues}
	}
	return nil
}

// Reassign hands over a departing link worker's caseload: every open Task
// of the caller's organisation whose link worker is from gets to instead,
// each as a new version, all in one transaction. It returns the ids of the
// Tasks moved, CodeForbidden for a caller that is not a provider, and
// CodeUnprocessable for identifiers without system and value or a caseload
// over MaxReassign.
func (s *Service) Reassign(ctx context.Context, p Principal, from, to Identifier) (_ []string, err error) {
	a, ctx := s.begin(ctx, p, AuditOperation, TypeTask)
	defer func() { err = a.end(ctx, err) }()
	if p.Role != RoleProvider {
		return nil, Errorf(CodeForbidden, "only a provider hands over its link workers' caseloads")
	}
	var issues []Issue
	for _, x := range []struct {
		name string
		id   Identifier
	}{{"from", from}, {"to", to}} {
		if x.id.System == "" || x.id.Value == "" {
			issues = append(issues, issue(IssueRequired, "Parameters.parameter."+x.name,
				"%s needs a link worker identifier with system and value", x.name))
		}
	}
	if err := Unprocessable(issues); err != nil {
		return nil, err
	}
	var moved []string
	err = s.update(ctx, a, func(tx Tx) error {
		page, err := tx.Search(ctx, SearchQuery{
			Type: TypeTask, Org: p.Org, Count: MaxReassign,
			Filters: []Filter{
				{Field: FieldProvider, Values: []string{p.Org}},
				{Field: FieldLinkWorker, Values: []string{from.Key()}},
				{Field: FieldStatus, Values: OpenStatuses},
			},
		})
		if err != nil {
			return err
		}
		if page.More {
			return Unprocessable([]Issue{issue(IssueTooLong, "Parameters.parameter.from",
				"the caseload has more than %d open Tasks: hand it over in parts", MaxReassign)})
		}
		by, at := s.edited(p)
		now := tx.Now()
		for _, t := range page.Matches {
			state, err := s.docs.Task(t.Body)
			if err != nil {
				return Internal("read stored Task", err)
			}
			if _, err := s.writeTask(ctx, tx, t, t.Body, state, TaskEdit{ID: t.ID, Version: t.Version + 1, Now: now,
				LinkWorker: &to, ChangedBy: by, ChangedAt: at}); err != nil {
				return err
			}
			moved = append(moved, t.ID)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return moved, nil
}

// Key is the identifier as one string, system|value.
func (id Identifier) Key() string { return id.System + "|" + id.Value }

// History returns the versions of a resource the caller may read, newest
// first: at most limit of them, older than version before (0: from the
// newest).
func (s *Service) History(ctx context.Context, p Principal, typ, id string, before, limit int) (out []Resource, err error) {
	a, ctx := s.begin(ctx, p, AuditHistory, typ, typ+"/"+id)
	defer func() { err = a.end(ctx, err) }()
	if err := authorize(p, ActionRead, typ); err != nil {
		return nil, err
	}
	err = s.store.View(ctx, func(v View) error {
		var err error
		out, err = v.History(ctx, p.Org, typ, id, before, limit)
		return err
	})
	if err != nil {
		return nil, err
	}
	for i := range out {
		if out[i], err = s.view(p, out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// view is what p may see of r: a practice whose patient agreed to share
// codes only sees its Tasks without free text or notes.
func (s *Service) view(p Principal, r Resource) (Resource, error) {
	if p.Role != RolePractice || r.Type != TypeTask || !r.Index.CodesOnly {
		return r, nil
	}
	body, err := s.docs.CodesOnly(r.Body)
	if err != nil {
		return Resource{}, Internal("codes-only view", err)
	}
	r.Body = body
	return r, nil
}
