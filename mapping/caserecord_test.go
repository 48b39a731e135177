package mapping_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/spgateway/spgateway/fhir/fhirtest"
	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/mapping"
)

// Two providers configured differently, rendering the same referral.
const (
	providerA = "PRV01" // many fields, UPPER_SNAKE names, UK dates, reasons by category
	providerB = "PRV02" // a handful of fields, its own names, only the reasons it handles
	providerF = "PRV03" // its own FHIR server
)

// The SNOMED CT codes of the test referral: one in its reasonCode that
// neither provider maps, one in its reasonCode both map, and its
// Condition's.
const (
	snomedSocialIsolation = "422650009"
	snomedDepression      = "35489007"
	snomedDiabetes        = "44054006"
)

func mappingA() mapping.ProviderMapping {
	fields := []string{"case_id", "referral_number", "status", "business_status", "status_reason", "referred_at", "received_at",
		"last_updated", "priority", "practice_code", "practice_name", "nhs_number", "given_name", "family_name", "birth_date",
		"gender", "phone", "email", "address_line", "city", "postcode", "language", "reason_codes", "reason_text", "notes",
		"codes_only_consent", "link_worker", "prom_due"}
	rename := map[string]string{}
	for _, f := range fields {
		rename[f] = strings.ToUpper(f)
	}
	rename["case_id"], rename["nhs_number"], rename["reason_codes"] = "CASE_REF", "NHS_NO", "NEEDS"
	return mapping.ProviderMapping{
		Fields: fields,
		Rename: rename,
		Codes: map[string]mapping.CodeTable{
			"reason_codes": {Map: map[string]string{snomedDiabetes: "Long-term condition", snomedDepression: "Mental health"}, Default: "Other"},
			"gender":       {Map: map[string]string{"female": "F", "male": "M"}, Default: "U"},
			"status": {Map: map[string]string{gateway.TaskRequested: "NEW", gateway.TaskAccepted: "OPEN", gateway.TaskInProgress: "OPEN",
				gateway.TaskCompleted: "CLOSED"}, Default: "OTHER"},
		},
		DateFormat: mapping.DateUK,
		Events: map[string]mapping.EventMapping{
			"ACCEPT":          {Status: gateway.TaskAccepted},
			"DECLINE":         {Status: gateway.TaskRejected, Reason: gateway.ReasonPatientDeclined},
			"NO_CONTACT":      {Status: gateway.TaskRejected, Reason: "unable-to-contact"},
			"CONTACT_ATTEMPT": {BusinessStatus: "contact-attempted"},
			"CONTACTED":       {Status: gateway.TaskInProgress, BusinessStatus: gateway.BusinessFirstContactMade},
			"CLOSED":          {Status: gateway.TaskCompleted, BusinessStatus: "case-closed"},
			"WITHDRAWN":       {Status: gateway.TaskFailed, Reason: gateway.ReasonOther},
			"NOTE":            {},
			"PROM":            {PROM: true},
		},
	}
}

func mappingB() mapping.ProviderMapping {
	return mapping.ProviderMapping{
		Fields: []string{"case_id", "referral_number", "given_name", "phone", "reason_codes"},
		Rename: map[string]string{"case_id": "caseRef", "referral_number": "referralNo", "given_name": "firstName", "phone": "mobile",
			"reason_codes": "needs",
			// Named, but not allowed: they never leave the gateway.
			"nhs_number": "nhsNo", "notes": "comments", "family_name": "surname"},
		Codes: map[string]mapping.CodeTable{
			"reason_codes": {Map: map[string]string{snomedDepression: "mental-health", snomedDiabetes: "long-term-condition"}},
			"gender":       {Map: map[string]string{"female": "f"}, Default: "x"},
		},
		Events: map[string]mapping.EventMapping{
			"accepted":        {Status: gateway.TaskAccepted},
			"declined":        {Status: gateway.TaskRejected, Reason: gateway.ReasonPatientDeclined},
			"no-contact":      {Status: gateway.TaskFailed, Reason: "unable-to-contact"},
			"contacted":       {BusinessStatus: gateway.BusinessFirstContactMade},
			"closed":          {Status: gateway.TaskCompleted},
			"wellbeing-score": {PROM: true},
		},
	}
}

func caseRecords() mapping.CaseRecords {
	return mapping.CaseRecords{Providers: map[string]mapping.ProviderMapping{
		providerA: mappingA(),
		providerB: mappingB(),
		providerF: {Format: mapping.FormatFHIR, Events: map[string]mapping.EventMapping{"ACCEPT": {Status: gateway.TaskAccepted}}},
	}}
}

// caseBundle is the referral fixture with coded reasons added to the
// ServiceRequest.
func caseBundle(t testing.TB) []byte {
	t.Helper()
	b := readFixture(t, "referral-bundle.json")
	b = setRaw(t, b, "entry.3.resource.reasonCode.0.coding",
		`[{"system":"http://snomed.info/sct","code":"`+snomedSocialIsolation+`","display":"Social isolation"}]`)
	return setRaw(t, b, "entry.3.resource.reasonCode.-1",
		`{"coding":[{"system":"http://snomed.info/sct","code":"`+snomedDepression+`","display":"Depressive disorder"}],"text":"Low mood"}`)
}

// referralDocs renders bundle with the fixed assignment and returns its
// documents with the Task the gateway created.
func referralDocs(t *testing.T, bundle []byte) gateway.ReferralDocuments {
	t.Helper()
	_, docs, task := render(t, "referral", bundle)
	if task == nil {
		t.Fatal("no Task rendered")
	}
	d := gateway.ReferralDocuments{Task: *task}
	for _, r := range docs {
		switch r.Type {
		case gateway.TypeServiceRequest:
			d.Request = r
		case gateway.TypePatient:
			d.Patient = r
		default:
			d.Related = append(d.Related, r)
		}
	}
	return d
}

// accepted is d with its Task accepted by the provider as the service
// writes it: a link worker, first contact made, the next PROM due.
func accepted(t *testing.T, d gateway.ReferralDocuments) gateway.ReferralDocuments {
	t.Helper()
	now := fixedNow.Add(26 * time.Hour)
	due := now.Add(12 * 7 * 24 * time.Hour)
	body, err := mapping.Documents{}.WriteTask(d.Task.Body, gateway.TaskEdit{ID: d.Task.ID, Version: 2, Now: now,
		Status: gateway.TaskInProgress, BusinessStatus: gateway.BusinessFirstContactMade, PROMDue: &due,
		LinkWorker: &gateway.Identifier{System: "https://prv01.example.org/link-workers", Value: "LW-042"},
		AddNote:    "Spoke to Irene; first meeting booked.",
		ChangedBy:  gateway.Principal{ClientID: "provider-prv01", Role: gateway.RoleProvider, Org: providerA}, ChangedAt: provider})
	if err != nil {
		t.Fatal(err)
	}
	d.Task.Body, d.Task.Version = body, 2
	return d
}

func renderCase(t *testing.T, c mapping.CaseRecords, provider string, d gateway.ReferralDocuments) []byte {
	t.Helper()
	out, err := c.Render(provider, d)
	if err != nil {
		t.Fatalf("Render %s: %v", provider, err)
	}
	if !json.Valid(out) {
		t.Fatalf("Render %s: not JSON:\n%s", provider, out)
	}
	var compacted bytes.Buffer
	if err := json.Compact(&compacted, out); err != nil || !bytes.Equal(compacted.Bytes(), out) {
		t.Errorf("Render %s: not compact JSON:\n%s", provider, out)
	}
	return out
}

// keysOf lists the top-level keys of a JSON object, in order.
func keysOf(t *testing.T, doc []byte) []string {
	t.Helper()
	keys := []string{}
	gjson.ParseBytes(doc).ForEach(func(k, v gjson.Result) bool {
		keys = append(keys, k.String())
		if v.Type == gjson.Null || v.Type == gjson.String && v.String() == "" || v.IsArray() && len(v.Array()) == 0 {
			t.Errorf("%s is written empty: %s", k.String(), v.Raw)
		}
		return true
	})
	return keys
}

// checkGolden compares got with the golden file name under
// testdata/golden/cases, or rewrites it with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", "cases", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s (run go test -update after an intended change):\n%s", name, path, diffLines(string(want), string(got)))
	}
}

// indented shows a document in a golden file; indenting keeps key order.
func indented(t *testing.T, doc []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Indent(&b, doc, "", "  "); err != nil {
		t.Fatal(err)
	}
	b.WriteByte('\n')
	return b.Bytes()
}

func TestCaseRecordGolden(t *testing.T) {
	records := caseRecords()
	for _, p := range []string{providerA, providerB} {
		if err := mapping.CheckProviderMapping(records.Providers[p]); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	d := accepted(t, referralDocs(t, caseBundle(t)))
	for _, c := range []struct{ provider, golden string }{
		{providerA, "provider-a.golden.json"},
		{providerB, "provider-b.golden.json"},
	} {
		t.Run(c.provider, func(t *testing.T) {
			checkGolden(t, c.golden, indented(t, renderCase(t, records, c.provider, d)))
		})
	}
	t.Run("fhir", func(t *testing.T) {
		out := renderCase(t, records, providerF, d)
		fhirtest.Valid(t, out)
		checkGolden(t, "fhir.golden.json", indented(t, out))
	})
}

func TestCaseRecordProviderA(t *testing.T) {
	d := accepted(t, referralDocs(t, caseBundle(t)))
	out := renderCase(t, caseRecords(), providerA, d)
	m := mappingA()
	var want []string
	for _, f := range m.Fields {
		if f != "status_reason" { // an open Task has none
			want = append(want, m.Rename[f])
		}
	}
	if got := keysOf(t, out); !slices.Equal(got, want) {
		t.Errorf("keys %q, want %q", got, want)
	}
	for key, value := range map[string]string{
		"CASE_REF":        "task-1",
		"REFERRAL_NUMBER": "SP-2026-000123",
		"STATUS":          "OPEN",
		"BUSINESS_STATUS": gateway.BusinessFirstContactMade,
		"REFERRED_AT":     "20/11/2026",
		"RECEIVED_AT":     gateway.FormatInstant(fixedNow),
		"LAST_UPDATED":    gateway.FormatInstant(fixedNow.Add(26 * time.Hour)),
		"PRACTICE_CODE":   "A81001",
		"PRACTICE_NAME":   "Example Road Surgery",
		"NHS_NO":          "9434765919",
		"GIVEN_NAME":      "Irene",
		"FAMILY_NAME":     "Testpatient",
		"BIRTH_DATE":      "17/04/1961",
		"GENDER":          "F",
		"PHONE":           "07700 900123",
		"EMAIL":           "irene.testpatient@example.org",
		"ADDRESS_LINE":    "12 Example Terrace",
		"POSTCODE":        "NE4 5XX",
		"LANGUAGE":        "en-GB",
		"REASON_TEXT":     "Socially isolated since bereavement; struggling to manage diabetes; Low mood",
		"NOTES":           "Prefers a phone call after 2pm. Hard of hearing: speak clearly.",
		"LINK_WORKER":     "LW-042",
		"PROM_DUE":        gateway.FormatInstant(fixedNow.Add(26*time.Hour + 12*7*24*time.Hour)),
	} {
		if got := gjson.GetBytes(out, key); got.Type != gjson.String || got.String() != value {
			t.Errorf("%s = %s, want %q", key, got.Raw, value)
		}
	}
	// Each code translated, in the referral's order; unmapped ones take
	// the default.
	if got := gjson.GetBytes(out, "NEEDS").Raw; got != `["Other","Mental health","Long-term condition"]` {
		t.Errorf("NEEDS = %s", got)
	}
	if got := gjson.GetBytes(out, "CODES_ONLY_CONSENT"); got.Type != gjson.False {
		t.Errorf("CODES_ONLY_CONSENT = %s, want false", got.Raw)
	}
	// The note the provider added to the Task is not the referral's notes.
	if bytes.Contains(out, []byte("first meeting booked")) {
		t.Errorf("the Task's own note is in the case record:\n%s", out)
	}
}

func TestCaseRecordProviderBMinimal(t *testing.T) {
	d := accepted(t, referralDocs(t, caseBundle(t)))
	out := renderCase(t, caseRecords(), providerB, d)
	if got, want := keysOf(t, out), []string{"caseRef", "referralNo", "firstName", "mobile", "needs"}; !slices.Equal(got, want) {
		t.Errorf("keys %q, want %q", got, want)
	}
	// The social isolation code maps to nothing and there is no default:
	// it is left out.
	if got := gjson.GetBytes(out, "needs").Raw; got != `["mental-health","long-term-condition"]` {
		t.Errorf("needs = %s", got)
	}
	for _, secret := range []string{"9434765919", "nhs", "Testpatient", "surname", "1961", "12 Example Terrace", "NE4 5XX",
		"Newcastle", "Prefers a phone call", "Socially isolated", "Low mood", "irene.testpatient", "comments", "female", `"f"`, `"x"`} {
		if bytes.Contains(bytes.ToLower(out), bytes.ToLower([]byte(secret))) {
			t.Errorf("provider B's record holds %q:\n%s", secret, out)
		}
	}

	// Without reason_codes among its fields, its renaming and code table
	// for them change nothing: the field never appears.
	four := mappingB()
	four.Fields = four.Fields[:4]
	c := mapping.CaseRecords{Providers: map[string]mapping.ProviderMapping{providerB: four}}
	out = renderCase(t, c, providerB, d)
	if got, want := keysOf(t, out), []string{"caseRef", "referralNo", "firstName", "mobile"}; !slices.Equal(got, want) {
		t.Errorf("keys %q, want %q:\n%s", got, want, out)
	}
	if bytes.Contains(out, []byte("mental-health")) || bytes.Contains(out, []byte(snomedDepression)) {
		t.Errorf("reasons leak:\n%s", out)
	}
}

func TestCaseRecordAbsentValues(t *testing.T) {
	bundle := caseBundle(t)
	bundle = del(t, bundle, "entry.0.resource.telecom.1") // no email
	bundle = del(t, bundle, "entry.0.resource.address")
	bundle = del(t, bundle, "entry.0.resource.communication")
	bundle = del(t, bundle, "entry.3.resource.note")
	bundle = set(t, bundle, "entry.0.resource.name.0.given", []string{}) // an empty list is no name
	d := referralDocs(t, bundle)                                         // the new Task: no link worker, business status, reason or PROM due
	all := mapping.ProviderMapping{Fields: mapping.NeutralFields()}
	c := mapping.CaseRecords{Providers: map[string]mapping.ProviderMapping{"X": all}}
	out := renderCase(t, c, "X", d)
	keys := keysOf(t, out)
	for _, absent := range []string{"email", "address_line", "city", "postcode", "language", "notes", "given_name",
		"link_worker", "business_status", "status_reason", "prom_due"} {
		if slices.Contains(keys, absent) {
			t.Errorf("%s is written: %s", absent, gjson.GetBytes(out, absent).Raw)
		}
	}
	for _, present := range []string{"case_id", "referral_id", "status", "family_name", "phone", "reason_codes", "codes_only_consent"} {
		if !slices.Contains(keys, present) {
			t.Errorf("%s is missing:\n%s", present, out)
		}
	}
	wantString(t, out, "status", gateway.TaskRequested)
	wantString(t, out, "referred_at", "2026-11-20")
	wantString(t, out, "birth_date", "1961-04-17")
	if got := gjson.GetBytes(out, "reason_codes").Raw; got != `["`+snomedSocialIsolation+`","`+snomedDepression+`","`+snomedDiabetes+`"]` {
		t.Errorf("reason_codes = %s", got)
	}

	// A code translated to nothing leaves the field out.
	all.Codes = map[string]mapping.CodeTable{"gender": {Map: map[string]string{"male": "M"}}, "reason_codes": {Map: map[string]string{}}}
	c.Providers["X"] = all
	out = renderCase(t, c, "X", d)
	for _, absent := range []string{"gender", "reason_codes"} {
		if gjson.GetBytes(out, absent).Exists() {
			t.Errorf("%s is written: %s", absent, gjson.GetBytes(out, absent).Raw)
		}
	}
}

func TestCaseRecordFieldsAndFormats(t *testing.T) {
	d := accepted(t, referralDocs(t, caseBundle(t)))
	tests := []struct {
		name string
		m    mapping.ProviderMapping
		want string
	}{
		{name: "no fields", m: mapping.ProviderMapping{Fields: []string{}, Rename: map[string]string{"nhs_number": "NHS"}}, want: `{}`},
		{name: "nil fields", m: mapping.ProviderMapping{}, want: `{}`},
		{name: "order of Fields",
			m:    mapping.ProviderMapping{Fields: []string{"postcode", "case_id", "birth_date", "codes_only_consent"}},
			want: `{"postcode":"NE4 5XX","case_id":"task-1","birth_date":"1961-04-17","codes_only_consent":false}`},
		{name: "reversed",
			m:    mapping.ProviderMapping{Fields: []string{"codes_only_consent", "birth_date", "case_id", "postcode"}},
			want: `{"codes_only_consent":false,"birth_date":"1961-04-17","case_id":"task-1","postcode":"NE4 5XX"}`},
		{name: "ISO dates", m: mapping.ProviderMapping{Fields: []string{"birth_date", "referred_at"}, DateFormat: mapping.DateISO},
			want: `{"birth_date":"1961-04-17","referred_at":"2026-11-20"}`},
		{name: "UK dates; instants stay RFC 3339 UTC",
			m:    mapping.ProviderMapping{Fields: []string{"birth_date", "referred_at", "received_at"}, DateFormat: mapping.DateUK},
			want: `{"birth_date":"17/04/1961","referred_at":"20/11/2026","received_at":"2026-11-23T10:00:00.000000Z"}`},
		{name: "codes mapping to one category once",
			m: mapping.ProviderMapping{Fields: []string{"reason_codes"}, Codes: map[string]mapping.CodeTable{"reason_codes": {
				Map: map[string]string{snomedDepression: "health", snomedDiabetes: "health"}, Default: "social"}}},
			want: `{"reason_codes":["social","health"]}`},
		{name: "text written as it is",
			m:    mapping.ProviderMapping{Fields: []string{"notes"}},
			want: `{"notes":"Prefers a phone call after 2pm. Hard of hearing: speak clearly."}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mapping.CaseRecords{Providers: map[string]mapping.ProviderMapping{"X": tc.m}}
			if got := string(renderCase(t, c, "X", d)); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// The date of the referral is the date the practice wrote, in its own
// offset; instants are written in UTC.
func TestCaseRecordDates(t *testing.T) {
	bundle := set(t, caseBundle(t), "entry.3.resource.authoredOn", "2026-07-01T00:30:00+01:00")
	bundle = set(t, bundle, "entry.0.resource.birthDate", "1961-04")
	d := referralDocs(t, bundle)
	m := mapping.ProviderMapping{Fields: []string{"referred_at", "birth_date"}, DateFormat: mapping.DateUK}
	c := mapping.CaseRecords{Providers: map[string]mapping.ProviderMapping{"X": m}}
	if got, want := string(renderCase(t, c, "X", d)), `{"referred_at":"01/07/2026","birth_date":"04/1961"}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// A closed case carries its status reason; a status the table does not
// map takes its default.
func TestCaseRecordStatusReason(t *testing.T) {
	d := referralDocs(t, caseBundle(t))
	body, err := mapping.Documents{}.WriteTask(d.Task.Body, gateway.TaskEdit{ID: d.Task.ID, Version: 2, Now: fixedNow.Add(time.Hour),
		Status: gateway.TaskRejected, Reason: &gateway.Reason{Codes: []gateway.Coding{{System: gateway.SystemStatusReason,
			Code: gateway.ReasonPatientDeclined}}, Text: "Does not want support now"}})
	if err != nil {
		t.Fatal(err)
	}
	d.Task.Body = body
	m := mappingA()
	m.Fields = []string{"status", "status_reason", "case_id"}
	c := mapping.CaseRecords{Providers: map[string]mapping.ProviderMapping{"X": m}}
	if got, want := string(renderCase(t, c, "X", d)), `{"STATUS":"OTHER","STATUS_REASON":"patient-declined","CASE_REF":"task-1"}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestCaseRecordCodesOnlyConsent(t *testing.T) {
	bundle := setRaw(t, caseBundle(t), "entry.2.resource.category.-1",
		`{"coding":[{"system":"`+gateway.SystemConsentCategory+`","code":"`+gateway.ConsentCodesOnly+`"}]}`)
	d := referralDocs(t, bundle)
	c := mapping.CaseRecords{Providers: map[string]mapping.ProviderMapping{"X": {Fields: []string{"codes_only_consent"}}}}
	if got := string(renderCase(t, c, "X", d)); got != `{"codes_only_consent":true}` {
		t.Errorf("got %s", got)
	}
}

func TestCaseRecordFHIR(t *testing.T) {
	d := accepted(t, referralDocs(t, caseBundle(t)))
	out := renderCase(t, caseRecords(), providerF, d)
	fhirtest.Valid(t, out)
	wantString(t, out, "type", "transaction")
	entries := gjson.GetBytes(out, "entry").Array()
	want := []string{"Patient/patient-1", "Condition/condition-1", "Consent/consent-1", "ServiceRequest/sr-1", "Task/task-1"}
	if len(entries) != len(want) {
		t.Fatalf("%d entries, want %d", len(entries), len(want))
	}
	stored := append([]gateway.Resource{d.Patient}, append(d.Related, d.Request, d.Task)...)
	for i, e := range entries {
		// No fullUrl: R4 wants it absolute; a PUT entry is named by request.url.
		if e.Get("fullUrl").Exists() || e.Get("request.url").String() != want[i] || e.Get("request.method").String() != "PUT" {
			t.Errorf("entry %d: %s", i, e.Raw)
		}
		if e.Get("resource").Raw != string(stored[i].Body) {
			t.Errorf("entry %d: the resource is not the stored body:\n%s\n%s", i, e.Get("resource").Raw, stored[i].Body)
		}
	}
}

func TestCaseRecordUnknownProvider(t *testing.T) {
	d := referralDocs(t, caseBundle(t))
	if _, err := caseRecords().Render("NOPE", d); err == nil {
		t.Error("rendered for a provider without a mapping")
	}
	c := mapping.CaseRecords{Providers: map[string]mapping.ProviderMapping{"X": {Format: "csv", Fields: []string{"case_id"}}}}
	if _, err := c.Render("X", d); err == nil {
		t.Error("rendered in an unknown format")
	}
}

// The renaming is checked by CheckProviderMapping; a clash that reaches
// Render anyway is an error, not an object with a key twice.
func TestCaseRecordRenameClash(t *testing.T) {
	d := referralDocs(t, caseBundle(t))
	m := mapping.ProviderMapping{Fields: []string{"given_name", "family_name"}, Rename: map[string]string{"given_name": "name", "family_name": "name"}}
	c := mapping.CaseRecords{Providers: map[string]mapping.ProviderMapping{"X": m}}
	if out, err := c.Render("X", d); err == nil {
		t.Errorf("rendered %s", out)
	}
}

func TestCaseEvents(t *testing.T) {
	records := caseRecords()
	reason := func(code, text string) *gateway.Reason {
		return &gateway.Reason{Codes: []gateway.Coding{{System: gateway.SystemStatusReason, Code: code}}, Text: text}
	}
	tests := []struct {
		provider, body string
		want           gateway.CaseEvent
	}{
		{providerA, `{"event":"ACCEPT"}`, gateway.CaseEvent{Status: gateway.TaskAccepted}},
		{providerA, `{"event":"ACCEPT","note":"Allocated to Sam."}`, gateway.CaseEvent{Status: gateway.TaskAccepted, Note: "Allocated to Sam."}},
		{providerA, `{"event":"DECLINE","reason_text":"Does not want support now"}`,
			gateway.CaseEvent{Status: gateway.TaskRejected, Reason: reason(gateway.ReasonPatientDeclined, "Does not want support now")}},
		{providerA, `{"event":"NO_CONTACT","note":"Three calls, two letters"}`,
			gateway.CaseEvent{Status: gateway.TaskRejected, Reason: reason("unable-to-contact", ""), Note: "Three calls, two letters"}},
		{providerA, `{"event":"CONTACT_ATTEMPT"}`, gateway.CaseEvent{BusinessStatus: "contact-attempted"}},
		{providerA, `{"event":"CONTACTED","note":null}`,
			gateway.CaseEvent{Status: gateway.TaskInProgress, BusinessStatus: gateway.BusinessFirstContactMade}},
		{providerA, `{"event":"CLOSED","note":"Goals met"}`,
			gateway.CaseEvent{Status: gateway.TaskCompleted, BusinessStatus: "case-closed", Note: "Goals met"}},
		{providerA, `{"event":"WITHDRAWN","reason_text":"Moved away"}`,
			gateway.CaseEvent{Status: gateway.TaskFailed, Reason: reason(gateway.ReasonOther, "Moved away")}},
		{providerA, `{"event":"NOTE","note":"Left a voicemail <ok> & \u00e9"}`, gateway.CaseEvent{Note: "Left a voicemail <ok> & é"}},
		{providerB, `{"event":"accepted"}`, gateway.CaseEvent{Status: gateway.TaskAccepted}},
		{providerB, `{"event":"declined","reason_text":"Has support elsewhere"}`,
			gateway.CaseEvent{Status: gateway.TaskRejected, Reason: reason(gateway.ReasonPatientDeclined, "Has support elsewhere")}},
		{providerB, `{"event":"no-contact"}`, gateway.CaseEvent{Status: gateway.TaskFailed, Reason: reason("unable-to-contact", "")}},
		{providerB, `{"event":"contacted"}`, gateway.CaseEvent{BusinessStatus: gateway.BusinessFirstContactMade}},
		{providerB, `{"event":"closed"}`, gateway.CaseEvent{Status: gateway.TaskCompleted}},
		{providerF, `{"event":"ACCEPT"}`, gateway.CaseEvent{Status: gateway.TaskAccepted}},
	}
	for _, tc := range tests {
		t.Run(tc.provider+" "+tc.body, func(t *testing.T) {
			got, err := records.Event(tc.provider, []byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v (reason %+v)\nwant %+v (reason %+v)", got, got.Reason, tc.want, tc.want.Reason)
			}
		})
	}
}

// TestCaseEventsGolden: every event of both providers, in their own
// vocabularies, read as the Task change it makes (the reverse mapping), as
// a golden file per provider.
func TestCaseEventsGolden(t *testing.T) {
	records := caseRecords()
	for _, c := range []struct{ provider, golden string }{
		{providerA, "events-provider-a.golden.json"},
		{providerB, "events-provider-b.golden.json"},
	} {
		t.Run(c.provider, func(t *testing.T) {
			m := records.Providers[c.provider]
			type row struct {
				Event  json.RawMessage    `json:"event"`
				Change *gateway.CaseEvent `json:"change"`
			}
			var rows []row
			for _, name := range slices.Sorted(maps.Keys(m.Events)) {
				if m.Events[name].PROM {
					continue // TestCaseEventPROM and prom-event.golden.json
				}
				body := fmt.Sprintf(`{"event":%q,"note":"Spoke on the phone"}`, name)
				if m.Events[name].Reason != "" {
					body = fmt.Sprintf(`{"event":%q,"note":"Spoke on the phone","reason_text":"As the patient said"}`, name)
				}
				got, err := records.Event(c.provider, []byte(body))
				if err != nil {
					t.Fatalf("%s: %v", body, err)
				}
				rows = append(rows, row{Event: json.RawMessage(body), Change: &got})
			}
			out, err := json.Marshal(rows)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, c.golden, indented(t, out))
		})
	}
}

func given(linkID string, v int) gateway.Answer {
	return gateway.Answer{LinkID: linkID, Value: v, Given: true}
}

func unanswered(linkID string) gateway.Answer { return gateway.Answer{LinkID: linkID} }

func TestCaseEventPROM(t *testing.T) {
	records := caseRecords()
	answers := `{"1":3,"2":4,"3":2,"6":5,"7":3,"9":4,"11":3}`
	tests := []struct {
		name, provider, body string
		questionnaire        string
		answers              []gateway.Answer
	}{
		{name: "by instrument id", provider: providerA,
			body:          `{"event":"PROM","instrument":"swemwbs","answered_at":"2026-11-20T10:00:00Z","answers":` + answers + `}`,
			questionnaire: "https://fhir.spgateway.org/Questionnaire/swemwbs",
			answers: []gateway.Answer{given("1", 3), given("2", 4), given("3", 2), given("6", 5), given("7", 3),
				given("9", 4), given("11", 3)}},
		{name: "by canonical URL with a version", provider: providerB,
			body:          `{"event":"wellbeing-score","instrument":"https://fhir.spgateway.org/Questionnaire/ons4|1","answered_at":"2026-11-20","answers":{"life-satisfaction":7,"worthwhile":"8","happy-yesterday":6.5,"anxious-yesterday":99999999999}}`,
			questionnaire: "https://fhir.spgateway.org/Questionnaire/ons4",
			answers: []gateway.Answer{given("life-satisfaction", 7), unanswered("worthwhile"), unanswered("happy-yesterday"),
				unanswered("anxious-yesterday")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := records.Event(tc.provider, []byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if ev.Status != "" || ev.Reason != nil || ev.BusinessStatus != "" || ev.Note != "" || ev.PROM == nil {
				t.Fatalf("event %+v", ev)
			}
			p := ev.PROM
			if p.Questionnaire != tc.questionnaire || p.Status != "completed" || p.Authored != gjson.Get(tc.body, "answered_at").String() ||
				p.SubjectID != "" || p.BasedOnID != "" || p.Render == nil {
				t.Errorf("PROM %+v", p)
			}
			if !reflect.DeepEqual(p.Answers, tc.answers) {
				t.Errorf("answers %+v, want %+v", p.Answers, tc.answers)
			}
		})
	}

	// The response as the service stores it: subject and referral from
	// the assignment, scored as one sent in FHIR.
	ev, err := records.Event(providerA, []byte(tests[0].body))
	if err != nil {
		t.Fatal(err)
	}
	in := gateway.BuiltInInstruments()[0]
	if issues := gateway.CheckAnswers(in, ev.PROM.Answers); len(issues) > 0 {
		t.Fatalf("answers refused: %+v", issues)
	}
	score, err := gateway.ScoreAnswers(in, ev.PROM.Answers)
	if err != nil {
		t.Fatal(err)
	}
	qr, obs, err := ev.PROM.Render.Render(gateway.PROMAssignment{ResponseID: "qr-1", ObservationID: "obs-1", Now: fixedNow,
		Instrument: in, Score: score, PatientID: "patient-1", ReferralID: "sr-1",
		ChangedBy: gateway.Principal{ClientID: "provider-prv01", Role: gateway.RoleProvider, Org: providerA}, ChangedAt: provider})
	if err != nil {
		t.Fatal(err)
	}
	fhirtest.Valid(t, qr)
	fhirtest.Valid(t, obs)
	wantString(t, qr, "subject.reference", "Patient/patient-1")
	wantString(t, qr, "basedOn.0.reference", "ServiceRequest/sr-1")
	wantString(t, qr, "questionnaire", in.URL)
	wantString(t, obs, "derivedFrom.0.reference", "QuestionnaireResponse/qr-1")
	// The response parses back as the same PROM.
	back, err := mapping.ParseQuestionnaireResponse(qr)
	if err != nil {
		t.Fatal(err)
	}
	if back.SubjectID != "patient-1" || back.BasedOnID != "sr-1" || !reflect.DeepEqual(back.Answers, ev.PROM.Answers) {
		t.Errorf("parsed back: %+v", back)
	}
	checkGolden(t, "prom-event.golden.json", indented(t, []byte(`{"response":`+string(qr)+`,"observation":`+string(obs)+`}`)))
}

func TestCaseEventRefused(t *testing.T) {
	records := caseRecords()
	tests := []struct {
		name, provider, body string
		code                 gateway.Code
		expr                 string
	}{
		{"unknown event", providerA, `{"event":"accepted"}`, gateway.CodeUnprocessable, "event"},
		{"another provider's event", providerB, `{"event":"ACCEPT"}`, gateway.CodeUnprocessable, "event"},
		{"unknown provider", "NOPE", `{"event":"ACCEPT"}`, gateway.CodeUnprocessable, "event"},
		{"provider without events", providerF, `{"event":"DECLINE"}`, gateway.CodeUnprocessable, "event"},
		{"no event", providerA, `{"note":"hello"}`, gateway.CodeUnprocessable, "event"},
		{"empty event", providerA, `{"event":""}`, gateway.CodeUnprocessable, "event"},
		{"null event", providerA, `{"event":null}`, gateway.CodeUnprocessable, "event"},
		{"bad JSON", providerA, `{"event":"ACCEPT"`, gateway.CodeInvalid, ""},
		{"not JSON", providerA, `ACCEPT`, gateway.CodeInvalid, ""},
		{"empty body", providerA, ``, gateway.CodeInvalid, ""},
		{"an array", providerA, `[{"event":"ACCEPT"}]`, gateway.CodeInvalid, ""},
		{"event a number", providerA, `{"event":1}`, gateway.CodeInvalid, "event"},
		{"note an object", providerA, `{"event":"ACCEPT","note":{"text":"x"}}`, gateway.CodeInvalid, "note"},
		{"answers an array", providerA, `{"event":"PROM","answers":[3,4]}`, gateway.CodeInvalid, "answers"},
		{"unknown member", providerA, `{"event":"ACCEPT","notes":"typo"}`, gateway.CodeInvalid, "notes"},
		{"repeated member", providerA, `{"event":"ACCEPT","event":"DECLINE"}`, gateway.CodeInvalid, "event"},
		{"reason text for an event without a reason", providerA, `{"event":"ACCEPT","reason_text":"x"}`, gateway.CodeUnprocessable, "reason_text"},
		{"answers with an event that is not a PROM", providerA, `{"event":"CLOSED","answers":{"1":3}}`, gateway.CodeUnprocessable, "answers"},
		{"instrument with an event that is not a PROM", providerB, `{"event":"closed","instrument":"swemwbs"}`, gateway.CodeUnprocessable, "instrument"},
		{"a note with a PROM", providerA, `{"event":"PROM","note":"x","instrument":"swemwbs","answered_at":"2026-11-20T10:00:00Z","answers":{"1":3}}`,
			gateway.CodeUnprocessable, "note"},
		{"a note event without a note", providerA, `{"event":"NOTE"}`, gateway.CodeUnprocessable, "note"},
		{"a note event with an empty note", providerA, `{"event":"NOTE","note":""}`, gateway.CodeUnprocessable, "note"},
		{"PROM without instrument", providerA, `{"event":"PROM","answered_at":"2026-11-20T10:00:00Z","answers":{"1":3}}`, gateway.CodeUnprocessable, "instrument"},
		{"PROM without answered_at", providerA, `{"event":"PROM","instrument":"swemwbs","answers":{"1":3}}`, gateway.CodeUnprocessable, "answered_at"},
		{"PROM with a bad answered_at", providerA, `{"event":"PROM","instrument":"swemwbs","answered_at":"20/11/2026","answers":{"1":3}}`,
			gateway.CodeUnprocessable, "answered_at"},
		{"PROM without answers", providerA, `{"event":"PROM","instrument":"swemwbs","answered_at":"2026-11-20T10:00:00Z","answers":{}}`,
			gateway.CodeUnprocessable, "answers"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := records.Event(tc.provider, []byte(tc.body))
			if got := gateway.ErrorCode(err); got != tc.code {
				t.Fatalf("code %q, want %q: %v (event %+v)", got, tc.code, err, ev)
			}
			var ge *gateway.Error
			if !errors.As(err, &ge) || len(ge.Issues) == 0 {
				t.Fatalf("no issues: %v", err)
			}
			if tc.expr == "" {
				return
			}
			if len(ge.Issues[0].Expression) == 0 || ge.Issues[0].Expression[0] != tc.expr {
				t.Errorf("issues %+v, want one naming %q", ge.Issues, tc.expr)
			}
		})
	}
}

func TestCheckProviderMapping(t *testing.T) {
	fields := []string{"case_id", "given_name"}
	tests := []struct {
		name string
		m    mapping.ProviderMapping
		want []string // substrings of the error; none: valid
	}{
		{name: "provider A", m: mappingA()},
		{name: "provider B", m: mappingB()},
		{name: "FHIR", m: mapping.ProviderMapping{Format: mapping.FormatFHIR}},
		{name: "every field", m: mapping.ProviderMapping{Format: mapping.FormatCaseRecord, Fields: mapping.NeutralFields(), DateFormat: mapping.DateISO}},
		{name: "rename to the name of a field not listed", m: mapping.ProviderMapping{Fields: fields, Rename: map[string]string{"given_name": "notes"}}},
		{name: "swapped names", m: mapping.ProviderMapping{Fields: fields, Rename: map[string]string{"given_name": "case_id", "case_id": "given_name"}}},
		{name: "no fields", m: mapping.ProviderMapping{}, want: []string{"fields: a case record needs at least one field"}},
		{name: "unknown field", m: mapping.ProviderMapping{Fields: []string{"case_id", "nhs_no"}}, want: []string{`unknown field "nhs_no"`}},
		{name: "field twice", m: mapping.ProviderMapping{Fields: []string{"case_id", "phone", "phone"}}, want: []string{`"phone" is listed twice`}},
		{name: "two fields renamed alike", m: mapping.ProviderMapping{Fields: fields, Rename: map[string]string{"case_id": "ID", "given_name": "ID"}},
			want: []string{`"case_id" and "given_name" would both be written as "ID"`}},
		{name: "renamed to another field's name", m: mapping.ProviderMapping{Fields: fields, Rename: map[string]string{"given_name": "case_id"}},
			want: []string{`would both be written as "case_id"`}},
		{name: "rename of an unknown field", m: mapping.ProviderMapping{Fields: fields, Rename: map[string]string{"surname": "SURNAME"}},
			want: []string{`rename: unknown field "surname"`}},
		{name: "rename to nothing", m: mapping.ProviderMapping{Fields: fields, Rename: map[string]string{"case_id": ""}},
			want: []string{`"case_id" is renamed to an empty name`}},
		{name: "codes for a text field", m: mapping.ProviderMapping{Fields: fields, Codes: map[string]mapping.CodeTable{"given_name": {Default: "x"}}},
			want: []string{`codes: "given_name" holds no codes`}},
		{name: "codes for an unknown field", m: mapping.ProviderMapping{Fields: fields, Codes: map[string]mapping.CodeTable{"reasons": {}}},
			want: []string{`codes: unknown field "reasons"`}},
		{name: "unknown date format", m: mapping.ProviderMapping{Fields: fields, DateFormat: "us"}, want: []string{`date_format: "us"`}},
		{name: "unknown format", m: mapping.ProviderMapping{Format: "csv", Fields: fields}, want: []string{`format: "csv"`}},
		{name: "event a provider may not send", m: mapping.ProviderMapping{Fields: fields, Events: map[string]mapping.EventMapping{"WITHDRAW": {Status: "cancelled", Reason: "other"}}},
			want: []string{"events: WITHDRAW: a provider may not set a Task to cancelled"}},
		{name: "event to requested", m: mapping.ProviderMapping{Fields: fields, Events: map[string]mapping.EventMapping{"RESET": {Status: "requested"}}},
			want: []string{"events: RESET: a provider may not set a Task to requested"}},
		{name: "FHIR with fields", m: mapping.ProviderMapping{Format: mapping.FormatFHIR, Fields: fields}, want: []string{"do not apply"}},
		{name: "unknown status", m: mapping.ProviderMapping{Fields: fields, Events: map[string]mapping.EventMapping{"DONE": {Status: "done"}}},
			want: []string{`DONE: "done" is not a Task status`}},
		{name: "unknown reason", m: mapping.ProviderMapping{Fields: fields, Events: map[string]mapping.EventMapping{"NO": {Status: "rejected", Reason: "declined"}}},
			want: []string{`NO: "declined" is not a code of ` + gateway.SystemStatusReason}},
		{name: "unknown business status", m: mapping.ProviderMapping{Fields: fields, Events: map[string]mapping.EventMapping{"SEEN": {BusinessStatus: "seen"}}},
			want: []string{`SEEN: "seen" is not a code of ` + gateway.SystemBusinessStatus}},
		{name: "PROM that sets a status", m: mapping.ProviderMapping{Fields: fields, Events: map[string]mapping.EventMapping{"SCORE": {PROM: true, BusinessStatus: "case-closed"}}},
			want: []string{"SCORE: a PROM event records the PROM only"}},
		{name: "event without a name", m: mapping.ProviderMapping{Fields: fields, Events: map[string]mapping.EventMapping{"": {Status: "accepted"}}},
			want: []string{"an event has an empty name"}},
		{name: "all at once", m: mapping.ProviderMapping{Fields: []string{"x", "case_id", "case_id"}, DateFormat: "us",
			Events: map[string]mapping.EventMapping{"A": {Status: "b"}}},
			want: []string{`unknown field "x"`, `"case_id" is listed twice`, `date_format: "us"`, `A: "b" is not a Task status`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := mapping.CheckProviderMapping(tc.m)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestNeutralFields(t *testing.T) {
	got := mapping.NeutralFields()
	want := []string{"case_id", "referral_id", "referral_number", "status", "business_status", "status_reason", "referred_at",
		"received_at", "last_updated", "priority", "practice_code", "practice_name", "nhs_number", "given_name", "family_name",
		"birth_date", "gender", "phone", "email", "address_line", "city", "postcode", "language", "reason_codes", "reason_text",
		"notes", "codes_only_consent", "link_worker", "prom_due"}
	if !slices.Equal(got, want) {
		t.Errorf("NeutralFields() = %q", got)
	}
	got[0] = "changed"
	if mapping.NeutralFields()[0] != "case_id" {
		t.Error("NeutralFields returns the package's own slice")
	}
}

// FuzzCaseEvent: any body is read or refused with CodeInvalid or
// CodeUnprocessable, never a panic; what is read is a change the mapping
// says, or a PROM whose response renders as valid JSON with the assigned
// subject and referral.
func FuzzCaseEvent(f *testing.F) {
	for _, b := range []string{
		`{"event":"ACCEPT","note":"Allocated"}`,
		`{"event":"DECLINE","reason_text":"No"}`,
		`{"event":"PROM","instrument":"swemwbs","answered_at":"2026-11-20T10:00:00Z","answers":{"1":3,"2":"x","3":1.5,"4":-2}}`,
		`{"event":"PROM","instrument":"https://fhir.spgateway.org/Questionnaire/ons4|1","answered_at":"2026-11-20","answers":{"a":1}}`,
		`{"event":"wellbeing-score","instrument":"x","answered_at":"2026","answers":{"\u0000":1}}`,
		`{"event":"closed","note":"\ud800"}`,
		`{"event":"ACCEPT","event":"x"}`,
		`{"":1}`,
		`[]`,
		`null`,
		`{"event":"NOTE","note":null,"answers":null}`,
	} {
		f.Add(providerA, []byte(b))
		f.Add(providerB, []byte(b))
	}
	f.Add("NOPE", []byte(`{"event":"ACCEPT"}`))
	records := caseRecords()
	f.Fuzz(func(t *testing.T, provider string, body []byte) {
		ev, err := records.Event(provider, body)
		if err != nil {
			wantParseError(t, err)
			return
		}
		name := gjson.GetBytes(body, "event").String()
		m, ok := records.Providers[provider].Events[name]
		if !ok {
			t.Fatalf("read an event %q %s does not know: %+v", name, provider, ev)
		}
		if !m.PROM {
			if ev.PROM != nil || ev.Status != m.Status || ev.BusinessStatus != m.BusinessStatus || (ev.Reason != nil) != (m.Reason != "") {
				t.Fatalf("event %+v from mapping %+v", ev, m)
			}
			return
		}
		if ev.PROM == nil || ev.PROM.Render == nil || ev.Status != "" || ev.Reason != nil || ev.BusinessStatus != "" || ev.Note != "" {
			t.Fatalf("PROM event %+v", ev)
		}
		qr, obs, err := ev.PROM.Render.Render(gateway.PROMAssignment{ResponseID: "qr1", ObservationID: "o1", Now: fixedNow,
			Instrument: gateway.BuiltInInstruments()[0], PatientID: "p1", ReferralID: "s1"})
		if err != nil {
			t.Fatalf("render: %v", err)
		}
		if !json.Valid(qr) || !json.Valid(obs) || gjson.GetBytes(qr, "subject.reference").String() != "Patient/p1" ||
			gjson.GetBytes(qr, "basedOn.0.reference").String() != "ServiceRequest/s1" {
			t.Fatalf("rendered:\n%s\n%s", qr, obs)
		}
		if _, err := mapping.ParseQuestionnaireResponse(qr); err != nil {
			t.Fatalf("the rendered response does not parse: %v\n%s", err, qr)
		}
	})
}
