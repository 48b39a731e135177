package gateway_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway"
)

// The paths of the resources in a referral Bundle, as the FHIR edge gives
// them to the rules.
var (
	requestAt = []string{"ServiceRequest", "Bundle.entry[1].resource"}
	patientAt = []string{"Patient", "Bundle.entry[0].resource"}
	taskAt    = []string{"Task", "Bundle.entry[2].resource"}
)

const (
	practice      = "A81001"
	otherPractice = "A81002"
	provider      = "provider-a"
)

var directory = gateway.NewDirectory([]gateway.Organization{
	{Code: practice, Name: "Practice One", Kind: gateway.OrgPractice},
	{Code: otherPractice, Name: "Practice Two", Kind: gateway.OrgPractice},
	{Code: provider, Name: "Provider A", Kind: gateway.OrgProvider},
	{Code: "provider-b", Name: "Provider B", Kind: gateway.OrgProvider},
})

// want is one expected issue: its type and the element it names under each
// base path.
type want struct {
	typ  gateway.IssueType
	elem string
}

// assertIssues checks that got holds exactly the wanted issues, in order,
// each located under every path of at and carrying a message.
func assertIssues(t *testing.T, got []gateway.Issue, at []string, wants ...want) {
	t.Helper()
	if len(got) != len(wants) {
		t.Fatalf("got %d issues %+v, want %d %+v", len(got), got, len(wants), wants)
	}
	for i, w := range wants {
		var expr []string
		for _, base := range at {
			expr = append(expr, base+"."+w.elem)
		}
		if got[i].Type != w.typ {
			t.Errorf("issue %d: type %q, want %q", i, got[i].Type, w.typ)
		}
		if !slices.Equal(got[i].Expression, expr) {
			t.Errorf("issue %d: expression %q, want %q", i, got[i].Expression, expr)
		}
		if got[i].Message == "" {
			t.Errorf("issue %d: no message", i)
		}
	}
}

func validRequest() gateway.RequestView {
	return gateway.RequestView{
		At:          requestAt,
		Identifiers: []gateway.Identifier{{System: "https://fhir.a81001.example/referral", Value: "R-0001"}},
		Status:      "active",
		Intent:      "order",
		Codes:       []gateway.Coding{{System: gateway.SystemSNOMED, Code: gateway.SNOMEDSocialPrescribingReferral}},
		AuthoredOn:  "2026-03-14T09:26:53Z",
		Requester:   gateway.OrgRef{Present: true, Code: practice},
		Subject:     gateway.SubjectRef{Kind: gateway.SubjectIncluded},
	}
}

func validPatient() gateway.PatientView {
	return gateway.PatientView{
		At:         patientAt,
		NHSNumbers: []string{"9434765919"},
		HasName:    true,
		BirthDate:  "1961-04-17",
		Telecom:    []gateway.ContactPoint{{System: "phone", Value: "0191 496 0000"}},
		Postcode:   "NE4 5XX",
	}
}

func TestCheckRequester(t *testing.T) {
	tests := []struct {
		name      string
		requester gateway.OrgRef
		code      gateway.Code // "" when the requester is accepted
		want      want
	}{
		{name: "accepted: requester is the caller's practice", requester: gateway.OrgRef{Present: true, Code: practice}},
		{name: "rejected: requester missing", requester: gateway.OrgRef{},
			code: gateway.CodeUnprocessable, want: want{gateway.IssueRequired, "requester"}},
		{name: "rejected: requester names no practice", requester: gateway.OrgRef{Present: true},
			code: gateway.CodeUnprocessable, want: want{gateway.IssueValue, "requester"}},
		{name: "forbidden: requester is another practice", requester: gateway.OrgRef{Present: true, Code: otherPractice},
			code: gateway.CodeForbidden, want: want{gateway.IssueBusinessRule, "requester"}},
		{name: "forbidden: requester is a provider", requester: gateway.OrgRef{Present: true, Code: provider},
			code: gateway.CodeForbidden, want: want{gateway.IssueBusinessRule, "requester"}},
		{name: "forbidden: requester code differs in case", requester: gateway.OrgRef{Present: true, Code: "a81001"},
			code: gateway.CodeForbidden, want: want{gateway.IssueBusinessRule, "requester"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRequest()
			r.Requester = tt.requester
			err := gateway.CheckRequester(r, practice)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("CheckRequester: %v, want no error", err)
				}
				return
			}
			var e *gateway.Error
			if !errors.As(err, &e) {
				t.Fatalf("CheckRequester = %v, want a *gateway.Error", err)
			}
			if e.Code != tt.code {
				t.Errorf("code %q, want %q", e.Code, tt.code)
			}
			assertIssues(t, e.Issues, requestAt, tt.want)
		})
	}
}

func TestCheckRequestStatus(t *testing.T) {
	tests := []struct {
		name   string
		status string
		want   []want
	}{
		{name: "accepted: status active", status: "active"},
		{name: "rejected: status missing", status: "", want: []want{{gateway.IssueRequired, "status"}}},
		{name: "rejected: status draft", status: "draft", want: []want{{gateway.IssueValue, "status"}}},
		{name: "rejected: status revoked", status: "revoked", want: []want{{gateway.IssueValue, "status"}}},
		{name: "rejected: status completed", status: "completed", want: []want{{gateway.IssueValue, "status"}}},
		{name: "rejected: status Active (codes are case-sensitive)", status: "Active", want: []want{{gateway.IssueValue, "status"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRequest()
			r.Status = tt.status
			assertIssues(t, gateway.CheckRequestStatus(r), requestAt, tt.want...)
		})
	}
}

func TestCheckRequestIntent(t *testing.T) {
	tests := []struct {
		name   string
		intent string
		want   []want
	}{
		{name: "accepted: intent order", intent: "order"},
		{name: "rejected: intent missing", intent: "", want: []want{{gateway.IssueRequired, "intent"}}},
		{name: "rejected: intent proposal", intent: "proposal", want: []want{{gateway.IssueValue, "intent"}}},
		{name: "rejected: intent plan", intent: "plan", want: []want{{gateway.IssueValue, "intent"}}},
		{name: "rejected: intent original-order", intent: "original-order", want: []want{{gateway.IssueValue, "intent"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRequest()
			r.Intent = tt.intent
			assertIssues(t, gateway.CheckRequestIntent(r), requestAt, tt.want...)
		})
	}
}

func TestCheckRequestCode(t *testing.T) {
	referral := gateway.Coding{System: gateway.SystemSNOMED, Code: gateway.SNOMEDSocialPrescribingReferral}
	tests := []struct {
		name  string
		codes []gateway.Coding
		want  []want
	}{
		{name: "accepted: SNOMED referral to social prescribing", codes: []gateway.Coding{referral}},
		{name: "accepted: referral code among others", codes: []gateway.Coding{
			{System: "http://read.info/ctv3", Code: "XaXXX"}, referral}},
		{name: "rejected: code missing", codes: nil, want: []want{{gateway.IssueRequired, "code"}}},
		{name: "rejected: SNOMED signposting, not referral", codes: []gateway.Coding{
			{System: gateway.SystemSNOMED, Code: "1084281000000109"}}, want: []want{{gateway.IssueCodeInvalid, "code"}}},
		{name: "rejected: referral code in another system", codes: []gateway.Coding{
			{System: "http://example.org/codes", Code: gateway.SNOMEDSocialPrescribingReferral}}, want: []want{{gateway.IssueCodeInvalid, "code"}}},
		{name: "rejected: referral code without system", codes: []gateway.Coding{
			{Code: gateway.SNOMEDSocialPrescribingReferral}}, want: []want{{gateway.IssueCodeInvalid, "code"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRequest()
			r.Codes = tt.codes
			assertIssues(t, gateway.CheckRequestCode(r), requestAt, tt.want...)
		})
	}
}

func TestCheckAuthoredOn(t *testing.T) {
	tests := []struct {
		name       string
		authoredOn string
		want       []want
	}{
		{name: "accepted: authoredOn instant", authoredOn: "2026-03-14T09:26:53Z"},
		{name: "accepted: authoredOn with offset and fraction", authoredOn: "2026-03-14T10:26:53.123+01:00"},
		{name: "accepted: authoredOn date only", authoredOn: "2026-03-14"},
		{name: "rejected: authoredOn missing", authoredOn: "", want: []want{{gateway.IssueRequired, "authoredOn"}}},
		{name: "rejected: authoredOn without zone", authoredOn: "2026-03-14T09:26:53", want: []want{{gateway.IssueValue, "authoredOn"}}},
		{name: "rejected: authoredOn 14/03/2026", authoredOn: "14/03/2026", want: []want{{gateway.IssueValue, "authoredOn"}}},
		{name: "rejected: authoredOn 2026-02-30", authoredOn: "2026-02-30", want: []want{{gateway.IssueValue, "authoredOn"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRequest()
			r.AuthoredOn = tt.authoredOn
			assertIssues(t, gateway.CheckAuthoredOn(r), requestAt, tt.want...)
		})
	}
}

func TestCheckReferralIdentifier(t *testing.T) {
	tests := []struct {
		name string
		ids  []gateway.Identifier
		want []want
	}{
		{name: "accepted: identifier with system and value", ids: []gateway.Identifier{{System: "https://fhir.a81001.example/referral", Value: "R-0001"}}},
		{name: "rejected: identifier missing", ids: nil, want: []want{{gateway.IssueRequired, "identifier"}}},
		{name: "rejected: identifier without system", ids: []gateway.Identifier{{Value: "R-0001"}}, want: []want{{gateway.IssueValue, "identifier[0]"}}},
		{name: "rejected: identifier without value", ids: []gateway.Identifier{{System: "https://fhir.a81001.example/referral"}}, want: []want{{gateway.IssueValue, "identifier[0]"}}},
		{name: "rejected: first identifier incomplete, second complete", ids: []gateway.Identifier{
			{Value: "R-0001"}, {System: "https://fhir.a81001.example/referral", Value: "R-0001"}}, want: []want{{gateway.IssueValue, "identifier[0]"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRequest()
			r.Identifiers = tt.ids
			assertIssues(t, gateway.CheckReferralIdentifier(r), requestAt, tt.want...)
		})
	}
}

func TestCheckSubject(t *testing.T) {
	tests := []struct {
		name    string
		subject gateway.SubjectRef
		want    []want
	}{
		{name: "accepted: subject is a Patient sent with the referral", subject: gateway.SubjectRef{Kind: gateway.SubjectIncluded}},
		{name: "accepted: subject by NHS number", subject: gateway.SubjectRef{Kind: gateway.SubjectByIdentifier, NHSNumber: "9434765919"}},
		{name: "accepted: subject Patient/{id}", subject: gateway.SubjectRef{Kind: gateway.SubjectByID, ID: "p1"}},
		{name: "rejected: subject missing", subject: gateway.SubjectRef{Kind: gateway.SubjectMissing}, want: []want{{gateway.IssueRequired, "subject"}}},
		{name: "rejected: subject does not resolve", subject: gateway.SubjectRef{Kind: gateway.SubjectUnresolved}, want: []want{{gateway.IssueValue, "subject"}}},
		{name: "rejected: subject on another server", subject: gateway.SubjectRef{Kind: gateway.SubjectUnsupported}, want: []want{{gateway.IssueValue, "subject"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRequest()
			r.Subject = tt.subject
			assertIssues(t, gateway.CheckSubject(r), requestAt, tt.want...)
		})
	}
}

func TestCheckPerformer(t *testing.T) {
	tests := []struct {
		name       string
		performers []gateway.OrgRef
		want       []want
	}{
		{name: "accepted: no performer (routing decides)", performers: nil},
		{name: "accepted: one configured provider", performers: []gateway.OrgRef{{Present: true, Code: provider}}},
		{name: "rejected: two performers", performers: []gateway.OrgRef{{Present: true, Code: provider}, {Present: true, Code: "provider-b"}},
			want: []want{{gateway.IssueValue, "performer"}}},
		{name: "rejected: performer unknown", performers: []gateway.OrgRef{{Present: true, Code: "provider-z"}},
			want: []want{{gateway.IssueValue, "performer[0]"}}},
		{name: "rejected: performer is a practice", performers: []gateway.OrgRef{{Present: true, Code: practice}},
			want: []want{{gateway.IssueValue, "performer[0]"}}},
		{name: "rejected: performer names no organisation", performers: []gateway.OrgRef{{Present: true}},
			want: []want{{gateway.IssueValue, "performer[0]"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRequest()
			r.Performers = tt.performers
			assertIssues(t, gateway.CheckPerformer(r, directory), requestAt, tt.want...)
		})
	}
}

func TestCheckPatientNHSNumber(t *testing.T) {
	tests := []struct {
		name    string
		numbers []string
		relaxed bool
		want    []want
		message string // the message of the one issue, when it matters
	}{
		{name: "accepted: valid NHS number", numbers: []string{"9434765919"}},
		{name: "accepted: the same NHS number twice", numbers: []string{"9434765919", "9434765919"}},
		{name: "accepted relaxed: 3478526985 check digit", numbers: []string{"3478526985"}, relaxed: true},
		{name: "rejected: NHS number missing", numbers: nil, want: []want{{gateway.IssueRequired, "identifier"}}},
		{name: "rejected: two different NHS numbers", numbers: []string{"9434765919", "9000000009"}, want: []want{{gateway.IssueValue, "identifier"}}},
		{name: "rejected: 3478526985 check digit", numbers: []string{"3478526985"},
			want: []want{{gateway.IssueValue, "identifier"}}, message: gateway.ErrNHSNumberCheckDigit.Error()},
		{name: "rejected: NHS number with spaces", numbers: []string{"943 476 5919"},
			want: []want{{gateway.IssueValue, "identifier"}}, message: gateway.ErrNHSNumberFormat.Error()},
		{name: "rejected relaxed: NHS number with spaces", numbers: []string{"943 476 5919"}, relaxed: true,
			want: []want{{gateway.IssueValue, "identifier"}}, message: gateway.ErrNHSNumberFormat.Error()},
		{name: "rejected relaxed: 9000000050 check 10", numbers: []string{"9000000050"}, relaxed: true,
			want: []want{{gateway.IssueValue, "identifier"}}, message: gateway.ErrNHSNumberCheckDigit.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := validPatient()
			p.NHSNumbers = tt.numbers
			got := gateway.CheckPatientNHSNumber(p, tt.relaxed)
			assertIssues(t, got, patientAt, tt.want...)
			if tt.message != "" && got[0].Message != tt.message {
				t.Errorf("message %q, want %q", got[0].Message, tt.message)
			}
		})
	}
}

func TestCheckPatientNHSNumberExpression(t *testing.T) {
	p := validPatient()
	p.NHSNumbers = []string{"3478526985"}
	got := gateway.CheckPatientNHSNumber(p, false)
	want := []string{"Patient.identifier", "Bundle.entry[0].resource.identifier"}
	if len(got) != 1 || !slices.Equal(got[0].Expression, want) {
		t.Fatalf("issues %+v, want one with expression %q", got, want)
	}
}

func TestCheckPatientName(t *testing.T) {
	tests := []struct {
		name    string
		hasName bool
		want    []want
	}{
		{name: "accepted: name present", hasName: true},
		{name: "rejected: name missing", hasName: false, want: []want{{gateway.IssueRequired, "name"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := validPatient()
			p.HasName = tt.hasName
			assertIssues(t, gateway.CheckPatientName(p), patientAt, tt.want...)
		})
	}
}

func TestCheckBirthDate(t *testing.T) {
	now := time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)
	tests := []struct {
		name      string
		birthDate string
		want      []want
	}{
		{name: "accepted: birthDate 1961-04-17", birthDate: "1961-04-17"},
		{name: "accepted: birthDate year only", birthDate: "1961"},
		{name: "accepted: birthDate year and month", birthDate: "1961-04"},
		{name: "accepted: born today", birthDate: "2026-03-14"},
		{name: "accepted: born this month", birthDate: "2026-03"},
		{name: "accepted: born this year", birthDate: "2026"},
		{name: "rejected: birthDate missing", birthDate: "", want: []want{{gateway.IssueRequired, "birthDate"}}},
		{name: "rejected: birthDate tomorrow", birthDate: "2026-03-15", want: []want{{gateway.IssueValue, "birthDate"}}},
		{name: "rejected: birthDate next month", birthDate: "2026-04", want: []want{{gateway.IssueValue, "birthDate"}}},
		{name: "rejected: birthDate next year", birthDate: "2027", want: []want{{gateway.IssueValue, "birthDate"}}},
		{name: "rejected: birthDate 17/04/1961", birthDate: "17/04/1961", want: []want{{gateway.IssueValue, "birthDate"}}},
		{name: "rejected: birthDate 1961-02-30", birthDate: "1961-02-30", want: []want{{gateway.IssueValue, "birthDate"}}},
		{name: "rejected: birthDate with a time", birthDate: "1961-04-17T00:00:00Z", want: []want{{gateway.IssueValue, "birthDate"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := validPatient()
			p.BirthDate = tt.birthDate
			assertIssues(t, gateway.CheckBirthDate(p, now), patientAt, tt.want...)
		})
	}
}

func TestCheckContactRoute(t *testing.T) {
	tests := []struct {
		name    string
		telecom []gateway.ContactPoint
		want    []want
	}{
		{name: "accepted: phone", telecom: []gateway.ContactPoint{{System: "phone", Value: "0191 496 0000"}}},
		{name: "accepted: sms", telecom: []gateway.ContactPoint{{System: "sms", Value: "07700 900000"}}},
		{name: "accepted: email", telecom: []gateway.ContactPoint{{System: "email", Value: "pat@example.org"}}},
		{name: "accepted: fax, then phone", telecom: []gateway.ContactPoint{{System: "fax", Value: "0191 496 0001"}, {System: "phone", Value: "0191 496 0000"}}},
		{name: "accepted: empty phone, then email", telecom: []gateway.ContactPoint{{System: "phone"}, {System: "email", Value: "pat@example.org"}}},
		{name: "rejected: telecom missing", telecom: nil, want: []want{{gateway.IssueRequired, "telecom"}}},
		{name: "rejected: phone without value", telecom: []gateway.ContactPoint{{System: "phone"}}, want: []want{{gateway.IssueRequired, "telecom"}}},
		{name: "rejected: only fax, pager and url", telecom: []gateway.ContactPoint{
			{System: "fax", Value: "0191 496 0001"}, {System: "pager", Value: "1234"}, {System: "url", Value: "https://example.org"}},
			want: []want{{gateway.IssueRequired, "telecom"}}},
		{name: "rejected: value without system", telecom: []gateway.ContactPoint{{Value: "0191 496 0000"}}, want: []want{{gateway.IssueRequired, "telecom"}}},
		{name: "rejected: Phone (codes are case-sensitive)", telecom: []gateway.ContactPoint{{System: "Phone", Value: "0191 496 0000"}}, want: []want{{gateway.IssueRequired, "telecom"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := validPatient()
			p.Telecom = tt.telecom
			assertIssues(t, gateway.CheckContactRoute(p), patientAt, tt.want...)
		})
	}
}

func TestCheckReferralTask(t *testing.T) {
	valid := func() gateway.TaskView {
		return gateway.TaskView{At: taskAt, Status: "requested", Intent: "order", FocusIsRequest: true}
	}
	tests := []struct {
		name   string
		change func(*gateway.TaskView)
		want   []want
	}{
		{name: "accepted: minimal Task", change: func(*gateway.TaskView) {}},
		{name: "accepted: Task with for, requester and owner", change: func(v *gateway.TaskView) {
			v.ForPresent, v.ForIsPatient = true, true
			v.Requester = gateway.OrgRef{Present: true, Code: practice}
			v.Owner = gateway.OrgRef{Present: true, Code: provider}
		}},
		{name: "rejected: Task status accepted", change: func(v *gateway.TaskView) { v.Status = "accepted" },
			want: []want{{gateway.IssueValue, "status"}}},
		{name: "rejected: Task status missing", change: func(v *gateway.TaskView) { v.Status = "" },
			want: []want{{gateway.IssueValue, "status"}}},
		{name: "rejected: Task intent plan", change: func(v *gateway.TaskView) { v.Intent = "plan" },
			want: []want{{gateway.IssueValue, "intent"}}},
		{name: "rejected: Task focus not the ServiceRequest", change: func(v *gateway.TaskView) { v.FocusIsRequest = false },
			want: []want{{gateway.IssueValue, "focus"}}},
		{name: "rejected: Task for not the Patient", change: func(v *gateway.TaskView) { v.ForPresent = true },
			want: []want{{gateway.IssueValue, "for"}}},
		{name: "rejected: Task requester another practice", change: func(v *gateway.TaskView) {
			v.Requester = gateway.OrgRef{Present: true, Code: otherPractice}
		}, want: []want{{gateway.IssueValue, "requester"}}},
		{name: "rejected: Task requester names no practice", change: func(v *gateway.TaskView) {
			v.Requester = gateway.OrgRef{Present: true}
		}, want: []want{{gateway.IssueValue, "requester"}}},
		{name: "rejected: Task owner unknown", change: func(v *gateway.TaskView) {
			v.Owner = gateway.OrgRef{Present: true, Code: "provider-z"}
		}, want: []want{{gateway.IssueValue, "owner"}}},
		{name: "rejected: Task owner is a practice", change: func(v *gateway.TaskView) {
			v.Owner = gateway.OrgRef{Present: true, Code: practice}
		}, want: []want{{gateway.IssueValue, "owner"}}},
		{name: "rejected: everything wrong at once, in element order", change: func(v *gateway.TaskView) {
			*v = gateway.TaskView{At: taskAt, Status: "draft", Intent: "proposal", ForPresent: true,
				Requester: gateway.OrgRef{Present: true, Code: otherPractice}, Owner: gateway.OrgRef{Present: true, Code: "provider-z"}}
		}, want: []want{
			{gateway.IssueValue, "status"}, {gateway.IssueValue, "intent"}, {gateway.IssueValue, "focus"},
			{gateway.IssueValue, "for"}, {gateway.IssueValue, "requester"}, {gateway.IssueValue, "owner"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := valid()
			tt.change(&v)
			assertIssues(t, gateway.CheckReferralTask(v, practice, directory), taskAt, tt.want...)
		})
	}
}

// TestRulesAcceptValidReferral runs every rule on one valid referral.
func TestRulesAcceptValidReferral(t *testing.T) {
	r, p := validRequest(), validPatient()
	now := time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)
	if err := gateway.CheckRequester(r, practice); err != nil {
		t.Errorf("CheckRequester: %v", err)
	}
	for name, issues := range map[string][]gateway.Issue{
		"CheckRequestStatus":      gateway.CheckRequestStatus(r),
		"CheckRequestIntent":      gateway.CheckRequestIntent(r),
		"CheckRequestCode":        gateway.CheckRequestCode(r),
		"CheckAuthoredOn":         gateway.CheckAuthoredOn(r),
		"CheckReferralIdentifier": gateway.CheckReferralIdentifier(r),
		"CheckSubject":            gateway.CheckSubject(r),
		"CheckPerformer":          gateway.CheckPerformer(r, directory),
		"CheckPatientNHSNumber":   gateway.CheckPatientNHSNumber(p, false),
		"CheckPatientName":        gateway.CheckPatientName(p),
		"CheckBirthDate":          gateway.CheckBirthDate(p, now),
		"CheckContactRoute":       gateway.CheckContactRoute(p),
	} {
		if len(issues) != 0 {
			t.Errorf("%s: %+v, want no issue", name, issues)
		}
	}
}
