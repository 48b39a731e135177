package gateway

import (
	"slices"
)

// Task statuses (http://hl7.org/fhir/task-status).
const (
	TaskDraft          = "draft"
	TaskRequested      = "requested"
	TaskReceived       = "received"
	TaskAccepted       = "accepted"
	TaskRejected       = "rejected"
	TaskReady          = "ready"
	TaskCancelled      = "cancelled"
	TaskInProgress     = "in-progress"
	TaskOnHold         = "on-hold"
	TaskFailed         = "failed"
	TaskCompleted      = "completed"
	TaskEnteredInError = "entered-in-error"
)

// TaskStatuses are all the statuses of FHIR R4, in the order of the
// specification.
var TaskStatuses = []string{TaskDraft, TaskRequested, TaskReceived, TaskAccepted, TaskRejected, TaskReady,
	TaskCancelled, TaskInProgress, TaskOnHold, TaskFailed, TaskCompleted, TaskEnteredInError}

// TaskRole is the part a caller plays for one Task.
type TaskRole string

// The parties to a Task.
const (
	TaskOwner     TaskRole = "owner"     // the provider the Task is routed to
	TaskRequester TaskRole = "requester" // the referring practice
)

// setBy says which party may move a Task into a status at all (SDOH
// Clinical Care IG, narrowed as DOMAIN.md says: only the practice cancels; a
// provider that cannot go on rejects before acceptance and fails after).
// Statuses no party sets through the gateway (draft, ready,
// entered-in-error, and requested, which only creation sets) are absent.
var setBy = map[string]TaskRole{
	TaskReceived:   TaskOwner,
	TaskAccepted:   TaskOwner,
	TaskRejected:   TaskOwner,
	TaskInProgress: TaskOwner,
	TaskOnHold:     TaskOwner,
	TaskFailed:     TaskOwner,
	TaskCompleted:  TaskOwner,
	TaskCancelled:  TaskRequester,
}

// next lists the statuses each status may move to (SPEC 2.2):
//
//	requested ─► (received) ─► accepted ─► in-progress ─► completed
//	    │            │           │            │  ▲
//	    │            │           │            ▼  │
//	    │            │           │          on-hold
//	    ├────────────┴─► rejected
//	    └──── any open status ─► cancelled (requester) · failed (owner, once accepted)
var next = map[string][]string{
	TaskRequested:  {TaskReceived, TaskAccepted, TaskRejected, TaskCancelled},
	TaskReceived:   {TaskAccepted, TaskRejected, TaskCancelled},
	TaskAccepted:   {TaskInProgress, TaskFailed, TaskCancelled},
	TaskInProgress: {TaskOnHold, TaskCompleted, TaskFailed, TaskCancelled},
	TaskOnHold:     {TaskInProgress, TaskFailed, TaskCancelled},
}

// TaskOpen reports whether a Task in status may still change. Every status
// that is not open is final: nothing changes after it.
func TaskOpen(status string) bool {
	_, ok := next[status]
	return ok
}

// CheckTaskTransition decides whether the party role may move a Task from
// one status to another. It returns nil when it may; CodeForbidden when the
// role never sets the status to (whatever the current one); and
// CodeConflict when there is no such step from the current status, which
// includes any change at all of a Task in a final status. from == to is no
// transition and is allowed while the Task is open.
func CheckTaskTransition(from, to string, role TaskRole) error {
	if !TaskOpen(from) {
		return Problem(CodeConflict, IssueBusinessRule, "Task.status", "the Task is %s, which is final: it can no longer change", from)
	}
	if from == to {
		return nil
	}
	if who, ok := setBy[to]; !ok || who != role {
		return Problem(CodeForbidden, IssueBusinessRule, "Task.status", "the %s may not set a Task to %s%s", role, to, whoSets(to))
	}
	if !slices.Contains(next[from], to) {
		return Problem(CodeConflict, IssueBusinessRule, "Task.status", "a Task cannot go from %s to %s", from, to)
	}
	return nil
}

// MaySet reports whether the party may ever move a Task into status (from
// some status); configuration checks use it.
func MaySet(role TaskRole, status string) bool {
	who, ok := setBy[status]
	return ok && who == role
}

func whoSets(status string) string {
	switch setBy[status] {
	case TaskOwner:
		return " (the provider does)"
	case TaskRequester:
		return " (the practice does)"
	}
	return " through the gateway"
}

// Status reasons (https://fhir.spgateway.org/CodeSystem/status-reason).
const (
	ReasonPatientDeclined = "patient-declined"
	ReasonOther           = "other"
)

// StatusReasons are the codes of the status-reason code system.
var StatusReasons = []string{ReasonPatientDeclined, "unable-to-contact", "not-eligible", "out-of-area", "no-capacity",
	"duplicate", "referred-elsewhere", ReasonOther}

// Business statuses (https://fhir.spgateway.org/CodeSystem/business-status).
const (
	BusinessFirstContactMade     = "first-contact-made"
	BusinessBaselinePROMComplete = "baseline-prom-complete"
	BusinessFollowUpPROMDue      = "follow-up-prom-due"
	BusinessFollowUpPROMComplete = "follow-up-prom-complete"
)

// BusinessStatuses are the codes of the business-status code system.
var BusinessStatuses = []string{"awaiting-contact", "contact-attempted", BusinessFirstContactMade, BusinessBaselinePROMComplete,
	BusinessFollowUpPROMDue, BusinessFollowUpPROMComplete, "case-closed"}

// needsReason are the statuses a Task enters only with a statusReason.
var needsReason = []string{TaskRejected, TaskCancelled, TaskOnHold, TaskFailed}

// Reason is a coded reason with its text.
type Reason struct {
	Codes []Coding
	Text  string
}

// code returns the code of system in r, or "".
func (r Reason) code(system string) string {
	for _, c := range r.Codes {
		if c.System == system {
			return c.Code
		}
	}
	return ""
}

// CheckStatusReason: entering rejected, cancelled, on-hold or failed needs a
// statusReason coded from the gateway's status-reason system (and text when
// the code is "other"); a reason given with another status must still be
// coded right.
func CheckStatusReason(to string, reason *Reason, expr string) []Issue {
	if reason == nil {
		if slices.Contains(needsReason, to) {
			return []Issue{issue(IssueRequired, expr, "a Task that becomes %s needs a statusReason coded from %s", to, SystemStatusReason)}
		}
		return nil
	}
	code := reason.code(SystemStatusReason)
	switch {
	case code == "":
		return []Issue{issue(IssueCodeInvalid, expr, "statusReason needs a coding from %s", SystemStatusReason)}
	case !slices.Contains(StatusReasons, code):
		return []Issue{issue(IssueCodeInvalid, expr, "%q is not a code of %s", code, SystemStatusReason)}
	case code == ReasonOther && reason.Text == "":
		return []Issue{issue(IssueRequired, expr, "a statusReason of other needs text saying what it is")}
	}
	return nil
}

// CheckBusinessStatus: a businessStatus, when given, is a code of the
// gateway's business-status system.
func CheckBusinessStatus(codes []Coding) []Issue {
	if codes == nil {
		return nil
	}
	code := businessCode(codes)
	switch {
	case code == "":
		return []Issue{issue(IssueCodeInvalid, "Task.businessStatus", "businessStatus needs a coding from %s", SystemBusinessStatus)}
	case !slices.Contains(BusinessStatuses, code):
		return []Issue{issue(IssueCodeInvalid, "Task.businessStatus", "%q is not a code of %s", code, SystemBusinessStatus)}
	}
	return nil
}

// mutable lists the top-level elements of a Task each party may change; any
// other change is refused (403). Server-managed elements (id, meta,
// lastModified) are set by the gateway whatever the client sends.
var mutable = map[TaskRole][]string{
	TaskOwner: {"status", "statusReason", "businessStatus", "output", "note", "executionPeriod",
		"extension", "description", "input", "restriction"},
	TaskRequester: {"status", "statusReason"},
}

// CheckTaskChange refuses changes to elements the party may not change: a
// provider may not change for, focus, requester or owner; a practice may
// change only status and statusReason (to cancel).
func CheckTaskChange(role TaskRole, changed []string) error {
	var issues []Issue
	for _, el := range changed {
		if !slices.Contains(mutable[role], el) {
			issues = append(issues, issue(IssueBusinessRule, "Task."+el, "the %s may not change Task.%s", role, el))
		}
	}
	if len(issues) > 0 {
		return &Error{Code: CodeForbidden, Issues: issues}
	}
	return nil
}
