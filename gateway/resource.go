package gateway

import "time"

// The resource types the gateway stores or serves.
const (
	TypeServiceRequest        = "ServiceRequest"
	TypeTask                  = "Task"
	TypePatient               = "Patient"
	TypeCondition             = "Condition"
	TypeConsent               = "Consent"
	TypeOrganization          = "Organization"
	TypeBundle                = "Bundle"
	TypeQuestionnaire         = "Questionnaire"
	TypeQuestionnaireResponse = "QuestionnaireResponse"
	TypeObservation           = "Observation"
	TypeSubscription          = "Subscription"
)

// Identifier systems and code systems of DOMAIN.md.
const (
	SystemNHSNumber = "https://fhir.nhs.uk/Id/nhs-number"
	SystemODS       = "https://fhir.nhs.uk/Id/ods-organization-code"
	SystemSNOMED    = "http://snomed.info/sct"
	SystemTaskCode  = "http://hl7.org/fhir/CodeSystem/task-code"

	// CanonicalBase is where the gateway's own code systems, value sets and
	// questionnaires live, the same in every deployment.
	CanonicalBase        = "https://fhir.spgateway.org/"
	SystemBusinessStatus = CanonicalBase + "CodeSystem/business-status"
	SystemStatusReason   = CanonicalBase + "CodeSystem/status-reason"
)

// SNOMED CT concepts of DOMAIN.md.
const (
	SNOMEDSocialPrescribingReferral = "871731000000106" // Referral to social prescribing service
)

// Identifier is a FHIR identifier reduced to what the gateway compares.
type Identifier struct {
	System string
	Value  string
}

// Coding is a FHIR coding reduced to what the gateway compares.
type Coding struct {
	System string
	Code   string
}

// Resource is one version of a stored FHIR resource. Body is the FHIR JSON
// with id and meta set, exactly as the gateway returns it; Index holds what
// the store needs to search it and to decide who may see it.
type Resource struct {
	Type        string
	ID          string
	Version     int
	LastUpdated time.Time
	// Seq is the store's change sequence number of this version: it orders
	// all writes in commit order and backs the search cursor.
	Seq   int64
	Body  []byte
	Index Index
}

// Index is what the store extracts into columns. Empty strings mean "not set".
type Index struct {
	// Practice is the ODS code of the practice the resource belongs to.
	Practice string
	// Provider is the provider the resource is routed to (Task.owner; for a
	// ServiceRequest, the owner of its Task).
	Provider string
	// PatientID is the Patient the resource is about.
	PatientID string
	// ReferralID is the ServiceRequest the resource was sent with or is
	// about (Task.focus).
	ReferralID     string
	Status         string
	BusinessStatus string
	// Key is the practice-scoped natural key: the practice's referral
	// identifier for a ServiceRequest, the NHS number for a Patient. The
	// store keeps it unique per type and practice among current versions.
	Key         Identifier
	Identifiers []Identifier
	Authored    time.Time // ServiceRequest.authoredOn, QuestionnaireResponse.authored, Task.authoredOn
	Modified    time.Time // Task.lastModified
	// ContentHash identifies the content a client sent, without server-set
	// fields, so an unchanged resource does not get a new version.
	ContentHash string
	// Access lists the organisations that may read the resource.
	Access []string
	// LinkWorker is the link worker holding a Task (ExtensionLinkWorker).
	LinkWorker Identifier
	// CodesOnly marks a Task whose patient agreed to share coded outcomes
	// only with the practice.
	CodesOnly bool

	// The milestones of a Task, kept by the gateway as it changes: for the
	// PROM schedule and the reports.
	StatusReason   string    // the code of statusReason
	AcceptedAt     time.Time // when it was first accepted
	FirstContactAt time.Time // when businessStatus first became first-contact-made
	BaselineAt     time.Time // when the earliest of its PROMs was answered (authored)
	PROMsDone      int
	PROMDue        time.Time // when the next PROM is due; zero: none

	// Codes are the codes of an Observation; Questionnaire is the
	// instrument of a QuestionnaireResponse or Observation; Value is an
	// Observation's score (HasValue false when it has none).
	Codes         []Coding
	Questionnaire string
	Value         float64
	HasValue      bool
	// Deleted marks the version that deleted the resource: reads answer
	// 410 and searches leave it out.
	Deleted bool
}
