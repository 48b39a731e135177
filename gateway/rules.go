package gateway

import (
	"time"
)

// The rules of SPEC 2.1. Each is a pure function of the parsed referral that
// returns the issues it finds; the service runs them all (referralIssues,
// then CheckRequester) so that one OperationOutcome lists every problem at
// once.

// Elements are located by FHIRPath. A view carries the paths of the resource
// it came from (At), e.g. ["Patient", "Bundle.entry[0].resource"], so an issue
// names both the element and where it sits in the request.

// OrgRef is a reference to an organisation, resolved to its code.
type OrgRef struct {
	Present bool
	// Code is the ODS code or local id named by the reference
	// ("Organization/A81001" or an ODS identifier); empty when the
	// reference names no organisation the gateway can identify.
	Code string
}

// SubjectKind says how a ServiceRequest names its patient.
type SubjectKind int

// The ways a referral can name its patient.
const (
	SubjectMissing      SubjectKind = iota
	SubjectIncluded                 // a Patient in the same Bundle, or contained
	SubjectUnresolved               // a local reference (urn:uuid, #id) that names no Patient sent with it
	SubjectByIdentifier             // a logical reference by NHS number
	SubjectByID                     // a literal reference Patient/{id}
	SubjectUnsupported              // any other reference (another server, another type)
)

// SubjectRef is ServiceRequest.subject as the rules see it.
type SubjectRef struct {
	Kind      SubjectKind
	NHSNumber string
	ID        string
}

// RequestView is the ServiceRequest of a referral.
type RequestView struct {
	At          []string
	Identifiers []Identifier
	Status      string
	Intent      string
	Codes       []Coding
	AuthoredOn  string
	Requester   OrgRef
	Performers  []OrgRef
	Subject     SubjectRef
	// Reasons are the codes of reasonCode and of the Conditions named by
	// reasonReference that were sent with the referral.
	Reasons []Coding
}

// ContactPoint is one telecom entry of a Patient.
type ContactPoint struct {
	System string
	Value  string
}

// PatientView is the Patient sent with a referral.
type PatientView struct {
	At         []string
	NHSNumbers []string
	HasName    bool
	BirthDate  string
	Telecom    []ContactPoint
	Postcode   string
}

// TaskView is a Task the practice sent with its referral.
type TaskView struct {
	At             []string
	Status         string
	Intent         string
	FocusIsRequest bool
	ForPresent     bool
	ForIsPatient   bool
	Requester      OrgRef
	Owner          OrgRef
}

// at returns elem under each base path.
func at(bases []string, elem string) []string {
	out := make([]string, len(bases))
	for i, b := range bases {
		out[i] = b + "." + elem
	}
	return out
}

func located(typ IssueType, bases []string, elem, msg string) Issue {
	return Issue{Type: typ, Expression: at(bases, elem), Message: msg}
}

// CheckRequester returns CodeForbidden unless the referral's requester is the
// caller's own practice, and CodeUnprocessable when it names no practice.
func CheckRequester(r RequestView, practice string) error {
	switch {
	case !r.Requester.Present:
		return &Error{Code: CodeUnprocessable, Issues: []Issue{located(IssueRequired, r.At, "requester",
			"requester is required: the referring practice, by ODS code")}}
	case r.Requester.Code == "":
		return &Error{Code: CodeUnprocessable, Issues: []Issue{located(IssueValue, r.At, "requester",
			"requester must name the practice by ODS code (identifier system "+SystemODS+") or as Organization/{ods}")}}
	case r.Requester.Code != practice:
		return &Error{Code: CodeForbidden, Issues: []Issue{located(IssueBusinessRule, r.At, "requester",
			"requester "+r.Requester.Code+" is not the practice this client acts for")}}
	}
	return nil
}

// CheckRequestStatus: a new referral is active.
func CheckRequestStatus(r RequestView) []Issue {
	switch r.Status {
	case "":
		return []Issue{located(IssueRequired, r.At, "status", "status is required")}
	case "active":
		return nil
	}
	return []Issue{located(IssueValue, r.At, "status", "status of a new referral must be active, not "+quote(r.Status))}
}

// CheckRequestIntent: a referral is an order.
func CheckRequestIntent(r RequestView) []Issue {
	switch r.Intent {
	case "":
		return []Issue{located(IssueRequired, r.At, "intent", "intent is required")}
	case "order":
		return nil
	}
	return []Issue{located(IssueValue, r.At, "intent", "intent of a referral must be order, not "+quote(r.Intent))}
}

// CheckRequestCode: the code is the SNOMED CT concept "Referral to social
// prescribing service".
func CheckRequestCode(r RequestView) []Issue {
	for _, c := range r.Codes {
		if c.System == SystemSNOMED && c.Code == SNOMEDSocialPrescribingReferral {
			return nil
		}
	}
	if len(r.Codes) == 0 {
		return []Issue{located(IssueRequired, r.At, "code", "code is required: SNOMED CT "+SNOMEDSocialPrescribingReferral+" (Referral to social prescribing service)")}
	}
	return []Issue{located(IssueCodeInvalid, r.At, "code", "code must include SNOMED CT "+SNOMEDSocialPrescribingReferral+" (Referral to social prescribing service)")}
}

// CheckAuthoredOn: authoredOn is present and a valid dateTime.
func CheckAuthoredOn(r RequestView) []Issue {
	if r.AuthoredOn == "" {
		return []Issue{located(IssueRequired, r.At, "authoredOn", "authoredOn is required")}
	}
	if _, err := ParseDateTime(r.AuthoredOn); err != nil {
		return []Issue{located(IssueValue, r.At, "authoredOn", "authoredOn is "+err.Error())}
	}
	return nil
}

// CheckReferralIdentifier: the practice's own referral number, with its
// system, makes retries safe.
func CheckReferralIdentifier(r RequestView) []Issue {
	if len(r.Identifiers) == 0 {
		return []Issue{located(IssueRequired, r.At, "identifier", "identifier is required: the practice's own referral number, with its system")}
	}
	if id := r.Identifiers[0]; id.System == "" || id.Value == "" {
		return []Issue{located(IssueValue, r.At, "identifier[0]", "the referral identifier needs both system and value")}
	}
	return nil
}

// CheckSubject: the subject is a Patient sent with the referral or one the
// gateway can look up.
func CheckSubject(r RequestView) []Issue {
	switch r.Subject.Kind {
	case SubjectMissing:
		return []Issue{located(IssueRequired, r.At, "subject", "subject is required: the Patient being referred")}
	case SubjectUnresolved:
		return []Issue{located(IssueValue, r.At, "subject", "subject does not resolve to a Patient sent with the referral")}
	case SubjectUnsupported:
		return []Issue{located(IssueValue, r.At, "subject",
			"subject must be a Patient in the Bundle, a contained Patient, Patient/{id}, or an NHS number identifier")}
	}
	return nil
}

// CheckPerformer: a performer, when given, is one configured provider.
func CheckPerformer(r RequestView, dir Directory) []Issue {
	switch {
	case len(r.Performers) == 0:
		return nil
	case len(r.Performers) > 1:
		return []Issue{located(IssueValue, r.At, "performer", "a referral goes to one provider: give at most one performer")}
	case !dir.Is(r.Performers[0].Code, OrgProvider):
		return []Issue{located(IssueValue, r.At, "performer[0]", "performer is not a provider known to this gateway")}
	}
	return nil
}

// CheckPatientNHSNumber: the Patient carries one valid NHS number.
func CheckPatientNHSNumber(p PatientView, relaxed bool) []Issue {
	if len(p.NHSNumbers) == 0 {
		return []Issue{located(IssueRequired, p.At, "identifier", "an identifier with system "+SystemNHSNumber+" is required")}
	}
	for _, n := range p.NHSNumbers[1:] {
		if n != p.NHSNumbers[0] {
			return []Issue{located(IssueValue, p.At, "identifier", "the Patient has two different NHS numbers")}
		}
	}
	if err := CheckNHSNumber(p.NHSNumbers[0], relaxed); err != nil {
		return []Issue{located(IssueValue, p.At, "identifier", err.Error())}
	}
	return nil
}

// CheckPatientName: the link worker needs a name to ask for.
func CheckPatientName(p PatientView) []Issue {
	if !p.HasName {
		return []Issue{located(IssueRequired, p.At, "name", "name is required")}
	}
	return nil
}

// CheckBirthDate: a valid date, not in the future.
func CheckBirthDate(p PatientView, now time.Time) []Issue {
	if p.BirthDate == "" {
		return []Issue{located(IssueRequired, p.At, "birthDate", "birthDate is required")}
	}
	d, err := ParseDate(p.BirthDate)
	if err != nil {
		return []Issue{located(IssueValue, p.At, "birthDate", "birthDate is "+err.Error())}
	}
	if d.Start.After(now) {
		return []Issue{located(IssueValue, p.At, "birthDate", "birthDate is in the future")}
	}
	return nil
}

// CheckContactRoute: at least one phone number, SMS number or email address
// (phone is what link workers use first).
func CheckContactRoute(p PatientView) []Issue {
	for _, t := range p.Telecom {
		switch t.System {
		case "phone", "sms", "email":
			if t.Value != "" {
				return nil
			}
		}
	}
	return []Issue{located(IssueRequired, p.At, "telecom", "at least one contact route (phone, sms or email, with a value) is required")}
}

// CheckReferralTask: a Task sent with the referral is a new fulfilment order
// for this ServiceRequest and Patient, from this practice.
func CheckReferralTask(t TaskView, practice string, dir Directory) []Issue {
	var out []Issue
	if t.Status != "requested" {
		out = append(out, located(IssueValue, t.At, "status", "a Task sent with a referral must be requested"))
	}
	if t.Intent != "order" {
		out = append(out, located(IssueValue, t.At, "intent", "a Task sent with a referral must have intent order"))
	}
	if !t.FocusIsRequest {
		out = append(out, located(IssueValue, t.At, "focus", "focus must reference the ServiceRequest of the Bundle"))
	}
	if t.ForPresent && !t.ForIsPatient {
		out = append(out, located(IssueValue, t.At, "for", "for must reference the referral's Patient"))
	}
	if t.Requester.Present && t.Requester.Code != practice {
		out = append(out, located(IssueValue, t.At, "requester", "requester must be the referring practice"))
	}
	if t.Owner.Present && !dir.Is(t.Owner.Code, OrgProvider) {
		out = append(out, located(IssueValue, t.At, "owner", "owner is not a provider known to this gateway"))
	}
	return out
}

func quote(s string) string { return "\"" + s + "\"" }
