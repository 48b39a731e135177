package gateway

import "time"

// Output types of Task.output (SDOH Clinical Care IG temporary codes).
const (
	SystemOutputType        = "http://hl7.org/fhir/us/sdoh-clinicalcare/CodeSystem/SDOHCC-CodeSystemTemporaryCodes"
	OutputResultingActivity = "resulting-activity"
	OutputAdditionalContent = "additional-content"
)

// SNOMED CT outcome codes for the GP record (DOMAIN.md).
const (
	SNOMEDSeenByLinkWorker          = "1362931000000106" // Seen by social prescribing link worker
	SNOMEDSocialPrescribingDeclined = "871711000000103"  // Social prescribing declined
	SNOMEDCaseClosed                = "1362721000000106" // Social prescribing case closed
)

// Extensions the gateway defines and reads.
const (
	// ExtensionLinkWorker on a Task names the link worker (a
	// PractitionerRole, by an identifier in the provider's own system)
	// who holds the case. Task.owner stays the provider organisation.
	ExtensionLinkWorker = CanonicalBase + "StructureDefinition/link-worker"
	// ExtensionChangedBy on meta says which organisation and client wrote
	// a version.
	ExtensionChangedBy = CanonicalBase + "StructureDefinition/changed-by"
	// ExtensionPROMDue on a Task says when its next PROM is due.
	ExtensionPROMDue = CanonicalBase + "StructureDefinition/prom-due"
	// ExtensionRequestStatusReason is FHIR's core extension for the reason
	// of a request's status (ServiceRequest has no statusReason element).
	ExtensionRequestStatusReason = "http://hl7.org/fhir/StructureDefinition/request-statusReason"
	// SystemConsentCategory holds codes-only: the patient agreed to share
	// coded outcomes with the practice, not notes.
	SystemConsentCategory = CanonicalBase + "CodeSystem/consent-category"
	ConsentCodesOnly      = "codes-only"
)

// TaskState is a Task body as the workflow rules see it.
type TaskState struct {
	Status         string
	StatusReason   *Reason
	BusinessStatus []Coding // nil when absent
	// Outcomes are the codes of the outputs of type resulting-activity.
	Outcomes []Coding
	// OutputIssues are problems with Task.output (types outside the
	// SDOHCC codes, outcomes without a code).
	OutputIssues []Issue
	LinkWorker   Identifier
}

// hasOutcome reports whether the state records a SNOMED CT outcome code.
func (s TaskState) hasOutcome(code string) bool {
	for _, c := range s.Outcomes {
		if c.System == SystemSNOMED && c.Code == code {
			return true
		}
	}
	return false
}

// TaskEdit is what the gateway writes into a new version of a Task.
type TaskEdit struct {
	ID      string
	Version int
	Now     time.Time
	// Status and Reason, when set, replace the Task's own.
	Status string
	Reason *Reason
	// AddOutcomes are SNOMED CT codes to add as resulting-activity outputs.
	AddOutcomes []Coding
	// LinkWorker, when set, replaces the link worker extension.
	LinkWorker *Identifier
	// BusinessStatus, when set, replaces businessStatus with a code of the
	// gateway's business-status system.
	BusinessStatus string
	// AddContent are references (Type/id) to add as outputs of type
	// additional-content: PROM results.
	AddContent []string
	// PROMDue sets (or, zero, removes) the extension saying when the next
	// PROM is due; nil leaves it as it is.
	PROMDue *time.Time
	// AddNote is text to add as a note (Now, by ChangedBy).
	AddNote   string
	ChangedBy Principal
	ChangedAt Organization
}

// RequestEdit is what the gateway writes into a new version of a
// ServiceRequest.
type RequestEdit struct {
	ID        string
	Version   int
	Now       time.Time
	Status    string
	Reason    *Reason
	ChangedBy Principal
	ChangedAt Organization
}

// Documents reads and edits the FHIR documents of Tasks and ServiceRequests
// for the workflow; mapping implements it. The service decides; Documents
// writes JSON.
type Documents interface {
	// Task reads a Task body. It returns CodeInvalid for a body that is
	// not a Task.
	Task(body []byte) (TaskState, error)
	// Request reads a ServiceRequest body: its status and the reason given
	// in the request-statusReason extension, if any.
	Request(body []byte) (status string, reason *Reason, err error)
	// Changed lists the top-level elements in which two versions of a
	// resource differ, leaving out id, meta and lastModified.
	Changed(old, new []byte) ([]string, error)
	// WriteTask renders the next version of a Task from body.
	WriteTask(body []byte, e TaskEdit) ([]byte, error)
	// WriteRequest renders the next version of a ServiceRequest from body.
	WriteRequest(body []byte, e RequestEdit) ([]byte, error)
	// CodesOnly is a Task as a practice whose patient shares codes only
	// may see it: coded outcomes, no free text or notes.
	CodesOnly(body []byte) ([]byte, error)
	// Subscription reads a Subscription body. It returns CodeInvalid for
	// a body that is not a Subscription.
	Subscription(body []byte) (SubscriptionRequest, error)
	// WriteSubscription renders a version of a Subscription with its
	// status and error (an empty error removes it).
	WriteSubscription(body []byte, id string, version int, now time.Time, status, errText string) ([]byte, error)
}

// ImpliedOutcomes returns the SNOMED CT outcome codes a change of Task
// implies, so the practice always gets a codable outcome: first contact
// made; declined (rejected, failed or cancelled with reason
// patient-declined); case closed. Codes the new state already holds are left
// out.
func ImpliedOutcomes(before, after TaskState) []Coding {
	var out []Coding
	add := func(code string) {
		if !after.hasOutcome(code) {
			out = append(out, Coding{System: SystemSNOMED, Code: code})
		}
	}
	if businessCode(after.BusinessStatus) == BusinessFirstContactMade && businessCode(before.BusinessStatus) != BusinessFirstContactMade {
		add(SNOMEDSeenByLinkWorker)
	}
	if after.Status != before.Status {
		declined := after.StatusReason != nil && after.StatusReason.code(SystemStatusReason) == ReasonPatientDeclined
		switch {
		case declined && (after.Status == TaskRejected || after.Status == TaskFailed || after.Status == TaskCancelled):
			// The patient declined: before acceptance (rejected), after it
			// (failed), or by telling the practice (cancelled).
			add(SNOMEDSocialPrescribingDeclined)
		case after.Status == TaskCompleted:
			add(SNOMEDCaseClosed)
		}
	}
	return out
}

func businessCode(codes []Coding) string {
	return Reason{Codes: codes}.code(SystemBusinessStatus)
}
