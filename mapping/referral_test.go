package mapping_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/spgateway/spgateway/fhir/fhirtest"
	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/mapping"
)

var update = flag.Bool("update", false, "rewrite golden files")

const fixtures = "../testdata/fixtures"

var (
	fixedNow  = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	practice  = gateway.Organization{Code: "A81001", Name: "Example Road Surgery", Kind: gateway.OrgPractice}
	provider  = gateway.Organization{Code: "PRV01", Name: "Tyneside Link Workers", Kind: gateway.OrgProvider}
	directory = gateway.NewDirectory([]gateway.Organization{practice, provider})
)

// The fullUrls of referral-bundle.json.
const (
	urnPatient   = "urn:uuid:6f1c2a52-3d4e-4b8a-9a61-2f0c8d7e1a01"
	urnCondition = "urn:uuid:6f1c2a52-3d4e-4b8a-9a61-2f0c8d7e1a02"
	urnConsent   = "urn:uuid:6f1c2a52-3d4e-4b8a-9a61-2f0c8d7e1a03"
	urnRequest   = "urn:uuid:6f1c2a52-3d4e-4b8a-9a61-2f0c8d7e1a04"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// idPrefixes name the ids the tests assign: patient-1, sr-1, condition-1…
var idPrefixes = map[string]string{
	gateway.TypePatient:        "patient",
	gateway.TypeServiceRequest: "sr",
	gateway.TypeCondition:      "condition",
	gateway.TypeConsent:        "consent",
	gateway.TypeTask:           "task",
}

// assignment is what the service would decide for r, with fixed ids: the
// n-th entry of a type gets {prefix}-{n}, the patient is patient-1 and the
// gateway's Task is task-1 unless r carries its own.
func assignment(r *gateway.Referral) gateway.Assignment {
	a := gateway.Assignment{
		Now:       fixedNow,
		IDs:       make([]string, len(r.Entries)),
		Versions:  make([]int, len(r.Entries)),
		PatientID: "patient-1",
		Requester: practice,
		Owner:     provider,
	}
	seen := map[string]int{}
	for i, e := range r.Entries {
		seen[e.Type]++
		prefix := idPrefixes[e.Type]
		if prefix == "" {
			prefix = strings.ToLower(e.Type)
		}
		a.IDs[i], a.Versions[i] = prefix+"-"+strconv.Itoa(seen[e.Type]), 1
	}
	if r.Task == nil {
		a.TaskID = "task-1"
	}
	return a
}

// render parses a valid fixture and renders it with the fixed assignment.
func render(t *testing.T, name string, body []byte) (*gateway.Referral, []gateway.Resource, *gateway.Resource) {
	t.Helper()
	var (
		r   *gateway.Referral
		err error
	)
	if gjson.GetBytes(body, "resourceType").String() == gateway.TypeBundle {
		r, err = mapping.ParseTransaction(body)
	} else {
		r, err = mapping.ParseServiceRequest(body, "")
	}
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	docs, task, err := r.Render.Render(assignment(r))
	if err != nil {
		t.Fatalf("%s: Render: %v", name, err)
	}
	return r, docs, task
}

func set(t testing.TB, doc []byte, path string, v any) []byte {
	t.Helper()
	out, err := sjson.SetBytes(doc, path, v)
	if err != nil {
		t.Fatalf("set %s: %v", path, err)
	}
	return out
}

func setRaw(t testing.TB, doc []byte, path, raw string) []byte {
	t.Helper()
	out, err := sjson.SetRawBytes(doc, path, []byte(raw))
	if err != nil {
		t.Fatalf("set %s: %v", path, err)
	}
	return out
}

func del(t testing.TB, doc []byte, path string) []byte {
	t.Helper()
	out, err := sjson.DeleteBytes(doc, path)
	if err != nil {
		t.Fatalf("delete %s: %v", path, err)
	}
	return out
}

// byType returns the rendered resource of typ, failing when there is not
// exactly one.
func byType(t *testing.T, docs []gateway.Resource, typ string) gateway.Resource {
	t.Helper()
	var found []gateway.Resource
	for _, d := range docs {
		if d.Type == typ {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %s resources rendered, want 1", len(found), typ)
	}
	return found[0]
}

// wantString fails unless the element at path of doc is the string want.
func wantString(t *testing.T, doc []byte, path, want string) {
	t.Helper()
	if got := gjson.GetBytes(doc, path); got.Type != gjson.String || got.String() != want {
		t.Errorf("%s = %s, want %q", path, got.Raw, want)
	}
}

// goldenResource is one rendered resource as the golden files show it.
type goldenResource struct {
	Role        string          `json:"role"` // "entry" or "task"
	Type        string          `json:"type"`
	ID          string          `json:"id"`
	Version     int             `json:"version"`
	LastUpdated string          `json:"lastUpdated"`
	Index       goldenIndex     `json:"index"`
	Body        json.RawMessage `json:"body"`
}

type goldenIndex struct {
	Practice       string             `json:"practice,omitempty"`
	Provider       string             `json:"provider,omitempty"`
	PatientID      string             `json:"patientId,omitempty"`
	ReferralID     string             `json:"referralId,omitempty"`
	Status         string             `json:"status,omitempty"`
	BusinessStatus string             `json:"businessStatus,omitempty"`
	Key            *goldenIdentifier  `json:"key,omitempty"`
	Identifiers    []goldenIdentifier `json:"identifiers,omitempty"`
	Authored       string             `json:"authored,omitempty"`
	Modified       string             `json:"modified,omitempty"`
	ContentHash    string             `json:"contentHash,omitempty"`
	Access         []string           `json:"access,omitempty"`
}

type goldenIdentifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

func instant(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return gateway.FormatInstant(t)
}

func golden(role string, r gateway.Resource) goldenResource {
	x := r.Index
	g := goldenIndex{
		Practice: x.Practice, Provider: x.Provider, PatientID: x.PatientID, ReferralID: x.ReferralID,
		Status: x.Status, BusinessStatus: x.BusinessStatus,
		Authored: instant(x.Authored), Modified: instant(x.Modified), ContentHash: x.ContentHash, Access: x.Access,
	}
	for _, id := range x.Identifiers {
		g.Identifiers = append(g.Identifiers, goldenIdentifier(id))
	}
	if x.Key != (gateway.Identifier{}) {
		k := goldenIdentifier(x.Key)
		g.Key = &k
	}
	return goldenResource{Role: role, Type: r.Type, ID: r.ID, Version: r.Version, LastUpdated: instant(r.LastUpdated), Index: g, Body: r.Body}
}

// TestRenderGolden renders each valid fixture with a fixed assignment and
// compares every resource, body and index, with testdata/golden. Run with
// -update to rewrite the files after an intended change.
func TestRenderGolden(t *testing.T) {
	for _, name := range []string{"referral-bundle.json", "service-request-contained-patient.json"} {
		t.Run(name, func(t *testing.T) {
			_, docs, task := render(t, name, readFixture(t, name))
			var out []goldenResource
			for _, d := range docs {
				fhirtest.Valid(t, d.Body)
				out = append(out, golden("entry", d))
			}
			if task == nil {
				t.Fatal("no Task rendered")
			}
			fhirtest.Valid(t, task.Body)
			out = append(out, golden("task", *task))
			got, err := json.MarshalIndent(out, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", "golden", strings.TrimSuffix(name, ".json")+".golden.json")
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
				t.Errorf("rendered %s differs from %s (run go test -update after an intended change):\n%s", name, path, diffLines(string(want), string(got)))
			}
		})
	}
}

// diffLines shows the first lines where want and got differ.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 10; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + strconv.Itoa(i+1) + ":\n- " + wl + "\n+ " + gl + "\n")
			shown++
		}
	}
	return b.String()
}

func TestRenderBundle(t *testing.T) {
	r, docs, task := render(t, "referral-bundle.json", readFixture(t, "referral-bundle.json"))
	wantEntries := []gateway.Entry{
		{Type: gateway.TypePatient, Part: gateway.PartPatient},
		{Type: gateway.TypeCondition, Part: gateway.PartSupporting},
		{Type: gateway.TypeConsent, Part: gateway.PartSupporting},
		{Type: gateway.TypeServiceRequest, Part: gateway.PartRequest},
	}
	if len(r.Entries) != len(wantEntries) {
		t.Fatalf("entries %+v, want %+v", r.Entries, wantEntries)
	}
	for i, e := range wantEntries {
		if r.Entries[i] != e {
			t.Errorf("entry %d is %+v, want %+v", i, r.Entries[i], e)
		}
	}
	if r.Request.Subject.Kind != gateway.SubjectIncluded || r.Patient == nil || r.Task != nil {
		t.Errorf("subject %+v, patient %v, task %v", r.Request.Subject, r.Patient, r.Task)
	}

	sr := byType(t, docs, gateway.TypeServiceRequest)
	wantString(t, sr.Body, "id", "sr-1")
	wantString(t, sr.Body, "subject.reference", "Patient/patient-1")
	wantString(t, sr.Body, "reasonReference.0.reference", "Condition/condition-1")
	wantString(t, sr.Body, "supportingInfo.0.reference", "Consent/consent-1")
	wantString(t, sr.Body, "requester.reference", "Organization/A81001")
	wantString(t, sr.Body, "requester.identifier.system", gateway.SystemODS)
	wantString(t, sr.Body, "requester.identifier.value", "A81001")
	wantString(t, sr.Body, "requester.display", "Example Road Surgery")
	wantString(t, sr.Body, "meta.versionId", "1")
	wantString(t, sr.Body, "meta.lastUpdated", gateway.FormatInstant(fixedNow))
	wantString(t, sr.Body, "meta.profile.0", "https://fhir.hl7.org.uk/StructureDefinition/UKCore-ServiceRequest")
	if sr.Index.Key != (gateway.Identifier{System: "https://practice-a81001.example.org/referrals", Value: "SP-2026-000123"}) ||
		sr.Index.Status != "active" || !sr.Index.Authored.Equal(time.Date(2026, 11, 20, 10, 15, 0, 0, time.UTC)) {
		t.Errorf("ServiceRequest index %+v", sr.Index)
	}

	pt := byType(t, docs, gateway.TypePatient)
	wantString(t, pt.Body, "id", "patient-1")
	if pt.Index.Key != (gateway.Identifier{System: gateway.SystemNHSNumber, Value: "9434765919"}) || pt.Index.ContentHash == "" {
		t.Errorf("Patient index %+v", pt.Index)
	}
	cond := byType(t, docs, gateway.TypeCondition)
	wantString(t, cond.Body, "id", "condition-1")
	wantString(t, cond.Body, "subject.reference", "Patient/patient-1")
	consent := byType(t, docs, gateway.TypeConsent)
	wantString(t, consent.Body, "id", "consent-1")
	wantString(t, consent.Body, "patient.reference", "Patient/patient-1")

	for _, d := range append(docs, *task) {
		if strings.Contains(string(d.Body), "urn:uuid:") {
			t.Errorf("%s/%s keeps a urn:uuid reference:\n%s", d.Type, d.ID, d.Body)
		}
		fhirtest.Valid(t, d.Body)
	}
	checkTask(t, task)
}

// checkTask checks the Task the gateway creates for sr-1 and patient-1.
func checkTask(t *testing.T, task *gateway.Resource) {
	t.Helper()
	if task == nil {
		t.Fatal("no Task rendered")
	}
	if task.Type != gateway.TypeTask || task.ID != "task-1" || task.Version != 1 || task.Index.Status != "requested" || !task.Index.Modified.Equal(fixedNow) {
		t.Errorf("Task %s/%s v%d, index %+v", task.Type, task.ID, task.Version, task.Index)
	}
	b := task.Body
	wantString(t, b, "resourceType", "Task")
	wantString(t, b, "id", "task-1")
	wantString(t, b, "meta.versionId", "1")
	wantString(t, b, "status", "requested")
	wantString(t, b, "intent", "order")
	wantString(t, b, "code.coding.0.system", gateway.SystemTaskCode)
	wantString(t, b, "code.coding.0.code", "fulfill")
	wantString(t, b, "focus.reference", "ServiceRequest/sr-1")
	wantString(t, b, "for.reference", "Patient/patient-1")
	wantString(t, b, "requester.reference", "Organization/A81001")
	wantString(t, b, "owner.reference", "Organization/PRV01")
	wantString(t, b, "owner.display", "Tyneside Link Workers")
	for _, path := range []string{"authoredOn", "lastModified"} {
		got, err := time.Parse(time.RFC3339Nano, gjson.GetBytes(b, path).String())
		if err != nil || !got.Equal(fixedNow) {
			t.Errorf("Task.%s = %s, want %v", path, gjson.GetBytes(b, path).Raw, fixedNow)
		}
	}
	fhirtest.Valid(t, b)
}

func TestRenderContainedPatient(t *testing.T) {
	body := readFixture(t, "service-request-contained-patient.json")
	r, docs, task := render(t, "service-request-contained-patient.json", body)
	if len(r.Entries) != 2 || r.Entries[0].Part != gateway.PartRequest || r.Entries[1] != (gateway.Entry{Type: gateway.TypePatient, Part: gateway.PartPatient}) {
		t.Fatalf("entries %+v", r.Entries)
	}
	if r.Request.Subject.Kind != gateway.SubjectIncluded || r.Patient == nil {
		t.Fatalf("subject %+v, patient %v", r.Request.Subject, r.Patient)
	}
	if got := r.Patient.At; len(got) != 2 || got[0] != "Patient" || got[1] != "ServiceRequest.contained[0]" {
		t.Errorf("Patient at %q", got)
	}

	sr := byType(t, docs, gateway.TypeServiceRequest)
	wantString(t, sr.Body, "id", "sr-1")
	wantString(t, sr.Body, "subject.reference", "Patient/patient-1")
	wantString(t, sr.Body, "requester.reference", "Organization/A81001")
	wantString(t, sr.Body, "requester.identifier.value", "A81001")
	wantString(t, sr.Body, "requester.display", "Example Road Surgery")
	if c := gjson.GetBytes(sr.Body, "contained"); c.Exists() {
		t.Errorf("the ServiceRequest keeps contained %s", c.Raw)
	}
	if strings.Contains(string(sr.Body), `"#patient"`) {
		t.Errorf("the ServiceRequest still refers to #patient:\n%s", sr.Body)
	}

	pt := byType(t, docs, gateway.TypePatient)
	wantString(t, pt.Body, "resourceType", "Patient")
	wantString(t, pt.Body, "id", "patient-1")
	if strings.Contains(string(pt.Body), `"id":"patient"`) {
		t.Errorf("the Patient keeps its local id:\n%s", pt.Body)
	}
	wantString(t, pt.Body, "identifier.0.value", "9000000009")
	// The contained Patient's elements come through as they were sent.
	sent := gjson.GetBytes(body, "contained.0")
	for _, path := range []string{"identifier", "name", "gender", "birthDate", "telecom", "address", "communication", "generalPractitioner"} {
		if got, want := compactRaw(t, gjson.GetBytes(pt.Body, path).Raw), compactRaw(t, sent.Get(path).Raw); got != want {
			t.Errorf("Patient.%s = %s, want %s", path, got, want)
		}
	}
	if pt.Index.Key != (gateway.Identifier{System: gateway.SystemNHSNumber, Value: "9000000009"}) {
		t.Errorf("Patient index %+v", pt.Index)
	}
	for _, d := range docs {
		fhirtest.Valid(t, d.Body)
	}
	checkTask(t, task)
}

func compactRaw(t *testing.T, raw string) string {
	t.Helper()
	if raw == "" {
		return ""
	}
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(raw)); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// patientHash parses a bundle and returns its Patient's content hash.
func patientHash(t *testing.T, body []byte) string {
	t.Helper()
	_, docs, _ := render(t, "bundle", body)
	return byType(t, docs, gateway.TypePatient).Index.ContentHash
}

func TestPatientContentHash(t *testing.T) {
	bundle := readFixture(t, "referral-bundle.json")
	first := patientHash(t, bundle)
	if first == "" {
		t.Fatal("no content hash")
	}
	var indented bytes.Buffer
	if err := json.Indent(&indented, bundle, "", "\t"); err != nil {
		t.Fatal(err)
	}
	same := map[string][]byte{
		"sent again":                 bundle,
		"other whitespace":           indented.Bytes(),
		"other referral details":     set(t, bundle, "entry.3.resource.note.0.text", "Call in the morning."),
		"client id on the Patient":   set(t, bundle, "entry.0.resource.id", "local-1"),
		"other fullUrl of a Patient": bytes.ReplaceAll(bundle, []byte(urnPatient), []byte("urn:uuid:0a0a0a0a-0000-4000-8000-000000000001")),
	}
	for name, body := range same {
		if got := patientHash(t, body); got != first {
			t.Errorf("%s: hash %s, want %s", name, got, first)
		}
	}
	changed := map[string][]byte{
		"phone":    set(t, bundle, "entry.0.resource.telecom.0.value", "07700 900999"),
		"address":  set(t, bundle, "entry.0.resource.address.0.postalCode", "NE1 1XX"),
		"name":     set(t, bundle, "entry.0.resource.name.0.given.0", "Irena"),
		"language": del(t, bundle, "entry.0.resource.communication"),
		"extension": setRaw(t, bundle, "entry.0.resource._birthDate",
			`{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1961-04-17T08:30:00+01:00"}]}`),
	}
	for name, body := range changed {
		if got := patientHash(t, body); got == first {
			t.Errorf("%s changed, the hash did not", name)
		}
	}

	// The same Patient sent contained hashes as it does sent alone.
	sr := readFixture(t, "service-request-contained-patient.json")
	_, docs, _ := render(t, "contained", sr)
	contained := byType(t, docs, gateway.TypePatient).Index.ContentHash
	_, docs, _ = render(t, "contained again", sr)
	if again := byType(t, docs, gateway.TypePatient).Index.ContentHash; again != contained {
		t.Errorf("contained Patient sent twice: %s, then %s", contained, again)
	}
	_, docs, _ = render(t, "contained, other phone", set(t, sr, "contained.0.telecom.0.value", "0191 496 0999"))
	if other := byType(t, docs, gateway.TypePatient).Index.ContentHash; other == contained {
		t.Error("contained Patient changed, the hash did not")
	}
}

// Extensions the client sent, primitive extensions included, are stored as
// they came.
func TestRenderKeepsExtensions(t *testing.T) {
	const (
		ethnicity = `[{"url":"https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory","valueCodeableConcept":{"coding":[{"system":"https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategory","code":"A","display":"British, Mixed British"}]}}]`
		birthTime = `{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1961-04-17T08:30:00+01:00"}]}`
		srExt     = `[{"url":"https://fhir.example.org/StructureDefinition/referral-channel","valueString":"EMIS"}]`
		authored  = `{"extension":[{"url":"https://fhir.example.org/StructureDefinition/entered-by","valueString":"reception"}]}`
		modifier  = `[{"url":"https://fhir.example.org/StructureDefinition/urgent-safeguarding","valueBoolean":false}]`
	)
	bundle := readFixture(t, "referral-bundle.json")
	bundle = setRaw(t, bundle, "entry.0.resource.extension", ethnicity)
	bundle = setRaw(t, bundle, "entry.0.resource._birthDate", birthTime)
	bundle = setRaw(t, bundle, "entry.3.resource.extension", srExt)
	bundle = setRaw(t, bundle, "entry.3.resource._authoredOn", authored)
	bundle = setRaw(t, bundle, "entry.3.resource.modifierExtension", modifier)

	sr := readFixture(t, "service-request-contained-patient.json")
	sr = setRaw(t, sr, "contained.0.extension", ethnicity)
	sr = setRaw(t, sr, "contained.0._birthDate", birthTime)
	sr = setRaw(t, sr, "extension", srExt)
	sr = setRaw(t, sr, "_authoredOn", authored)

	tests := []struct {
		name string
		body []byte
		want map[string]map[string]string // type → path → raw JSON
	}{
		{"bundle", bundle, map[string]map[string]string{
			gateway.TypePatient:        {"extension": ethnicity, "_birthDate": birthTime, "birthDate": `"1961-04-17"`},
			gateway.TypeServiceRequest: {"extension": srExt, "_authoredOn": authored, "modifierExtension": modifier, "authoredOn": `"2026-11-20T10:15:00Z"`},
		}},
		{"contained", sr, map[string]map[string]string{
			gateway.TypePatient:        {"extension": ethnicity, "_birthDate": birthTime, "birthDate": `"1958-09-02"`},
			gateway.TypeServiceRequest: {"extension": srExt, "_authoredOn": authored},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, docs, _ := render(t, tt.name, tt.body)
			for typ, paths := range tt.want {
				d := byType(t, docs, typ)
				for path, want := range paths {
					if got := gjson.GetBytes(d.Body, path).Raw; got != want {
						t.Errorf("%s.%s = %s, want %s", typ, path, got, want)
					}
				}
				fhirtest.Valid(t, d.Body)
			}
		})
	}
}

// withTask adds to a referral Bundle the Task a practice may send with it.
func withTask(t testing.TB, bundle []byte) []byte {
	t.Helper()
	return setRaw(t, bundle, "entry.-1", `{"fullUrl":"urn:uuid:6f1c2a52-3d4e-4b8a-9a61-2f0c8d7e1a05","resource":{"resourceType":"Task",`+
		`"status":"requested","intent":"order","code":{"coding":[{"system":"http://hl7.org/fhir/CodeSystem/task-code","code":"fulfill"}]},`+
		`"focus":{"reference":"`+urnRequest+`"},"for":{"reference":"`+urnPatient+`"},"authoredOn":"2026-11-20T10:15:00Z",`+
		`"requester":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"A81001"}}},"request":{"method":"POST","url":"Task"}}`)
}

// bundleWithContainedPatient is a Bundle of a ServiceRequest whose Patient
// is contained, and a Condition it gives as the reason; the contained
// Patient refers to the Condition by its fullUrl.
func bundleWithContainedPatient(t testing.TB) []byte {
	t.Helper()
	sr := readFixture(t, "service-request-contained-patient.json")
	sr = setRaw(t, sr, "reasonReference", `[{"reference":"`+urnCondition+`"}]`)
	sr = setRaw(t, sr, "contained.0.extension",
		`[{"url":"https://fhir.example.org/StructureDefinition/registered-condition","valueReference":{"reference":"`+urnCondition+`"}}]`)
	cond := gjson.GetBytes(readFixture(t, "referral-bundle.json"), "entry.1").Raw
	b := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[]}`)
	b = setRaw(t, b, "entry.-1", cond)
	b = del(t, b, "entry.0.resource.subject")
	b = setRaw(t, b, "entry.-1", `{"fullUrl":"`+urnRequest+`","request":{"method":"POST","url":"ServiceRequest"}}`)
	return setRaw(t, b, "entry.1.resource", string(sr))
}

func TestRenderReferralTask(t *testing.T) {
	r, docs, task := render(t, "bundle with Task", withTask(t, readFixture(t, "referral-bundle.json")))
	if task != nil || r.Task == nil {
		t.Fatalf("task rendered %v, referral task %+v", task, r.Task)
	}
	if !r.Task.FocusIsRequest || !r.Task.ForIsPatient || r.Task.Requester.Code != "A81001" {
		t.Errorf("task view %+v", r.Task)
	}
	if is := gateway.CheckReferralTask(*r.Task, practice.Code, directory); len(is) != 0 {
		t.Errorf("issues %+v", is)
	}
	tk := byType(t, docs, gateway.TypeTask)
	wantString(t, tk.Body, "id", "task-1")
	wantString(t, tk.Body, "focus.reference", "ServiceRequest/sr-1")
	wantString(t, tk.Body, "for.reference", "Patient/patient-1")
	wantString(t, tk.Body, "requester.reference", "Organization/A81001")
	wantString(t, tk.Body, "requester.identifier.value", "A81001")
	wantString(t, tk.Body, "owner.reference", "Organization/PRV01")
	wantString(t, tk.Body, "authoredOn", "2026-11-20T10:15:00Z")
	wantString(t, tk.Body, "lastModified", gateway.FormatInstant(fixedNow))
	if tk.Index.Status != "requested" || !tk.Index.Modified.Equal(fixedNow) {
		t.Errorf("Task index %+v", tk.Index)
	}
	fhirtest.Valid(t, tk.Body)
}

// A contained Patient sent in a Bundle becomes a resource of its own; the
// references it makes to entries of the Bundle are resolved like any other.
func TestRenderContainedPatientInBundle(t *testing.T) {
	r, docs, _ := render(t, "bundle", bundleWithContainedPatient(t))
	if r.Request.Subject.Kind != gateway.SubjectIncluded || r.Patient == nil {
		t.Fatalf("subject %+v", r.Request.Subject)
	}
	// The Condition's code is a reason, as well as the reasonCode.
	var codes []string
	for _, c := range r.Request.Reasons {
		codes = append(codes, c.Code)
	}
	if strings.Join(codes, ",") != "13645005,44054006" {
		t.Errorf("reasons %+v", r.Request.Reasons)
	}
	pt := byType(t, docs, gateway.TypePatient)
	wantString(t, pt.Body, "id", "patient-1")
	wantString(t, pt.Body, "extension.0.valueReference.reference", "Condition/condition-1")
	sr := byType(t, docs, gateway.TypeServiceRequest)
	wantString(t, sr.Body, "subject.reference", "Patient/patient-1")
	wantString(t, sr.Body, "reasonReference.0.reference", "Condition/condition-1")
	for _, d := range docs {
		if strings.Contains(string(d.Body), "urn:uuid:") {
			t.Errorf("%s/%s keeps a urn:uuid reference:\n%s", d.Type, d.ID, d.Body)
		}
	}
}

// parseCase is a request the mapping refuses, or one it reads whose
// problem a rule of the gateway then finds.
type parseCase struct {
	name        string
	bundle      []byte // sent to ParseTransaction, or
	request     []byte // sent to ParseServiceRequest with ifNoneExist
	ifNoneExist string
	// rule, when set, finds the problem in a referral that parses.
	rule func(*gateway.Referral) []gateway.Issue
	code gateway.Code
	expr string // the first expression of the first issue
}

func parseCases(t testing.TB) []parseCase {
	t.Helper()
	bundle := readFixture(t, "referral-bundle.json")
	sr := readFixture(t, "service-request-contained-patient.json")
	entry := func(i int) string { return gjson.GetBytes(bundle, "entry."+strconv.Itoa(i)).Raw }
	add := func(raw string) []byte { return setRaw(t, bundle, "entry.-1", raw) }
	subject := func(r *gateway.Referral) []gateway.Issue { return gateway.CheckSubject(r.Request) }
	task := func(r *gateway.Referral) []gateway.Issue {
		if r.Task == nil {
			return nil
		}
		return gateway.CheckReferralTask(*r.Task, practice.Code, directory)
	}
	const nhsSubject = `{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}}`
	observation := `{"fullUrl":"urn:uuid:6f1c2a52-3d4e-4b8a-9a61-2f0c8d7e1a09","resource":{"resourceType":"Observation","status":"final","code":{"text":"x"}},"request":{"method":"POST","url":"Observation"}}`
	many := bundle
	for i := len(gjson.GetBytes(bundle, "entry").Array()); i <= mapping.MaxReferralEntries; i++ {
		many = setRaw(t, many, "entry.-1", `{"resource":{"resourceType":"Condition","subject":{"reference":"`+urnPatient+`"}},"request":{"method":"POST","url":"Condition"}}`)
	}
	return []parseCase{
		{name: "entry not POST", bundle: set(t, bundle, "entry.0.request.method", "PUT"),
			code: gateway.CodeUnprocessable, expr: "Bundle.entry[0].request.method"},
		{name: "entry without request", bundle: del(t, bundle, "entry.0.request"),
			code: gateway.CodeUnprocessable, expr: "Bundle.entry[0].request"},
		{name: "entry without resource", bundle: del(t, bundle, "entry.2.resource"),
			code: gateway.CodeUnprocessable, expr: "Bundle.entry[2].resource"},
		{name: "request.url of another type", bundle: set(t, bundle, "entry.1.request.url", "Patient"),
			code: gateway.CodeUnprocessable, expr: "Bundle.entry[1].request.url"},
		{name: "request.url with an id", bundle: set(t, bundle, "entry.1.request.url", "Condition/123"),
			code: gateway.CodeUnprocessable, expr: "Bundle.entry[1].request.url"},
		{name: "duplicate fullUrl", bundle: set(t, bundle, "entry.2.fullUrl", urnCondition),
			code: gateway.CodeUnprocessable, expr: "Bundle.entry[2].fullUrl"},
		{name: "two ServiceRequests", bundle: add(string(del(t, set(t, set(t, []byte(entry(3)), "fullUrl", "urn:uuid:6f1c2a52-3d4e-4b8a-9a61-2f0c8d7e1a05"),
			"resource.identifier.0.value", "SP-2026-000999"), "request.ifNoneExist"))),
			code: gateway.CodeUnprocessable, expr: "Bundle.entry[4].resource"},
		{name: "two Patients", bundle: add(string(set(t, []byte(entry(0)), "fullUrl", "urn:uuid:6f1c2a52-3d4e-4b8a-9a61-2f0c8d7e1a06"))),
			code: gateway.CodeUnprocessable, expr: "Bundle.entry[4].resource"},
		{name: "no ServiceRequest", bundle: del(t, del(t, del(t, bundle, "entry.3"), "entry.2"), "entry.1"),
			code: gateway.CodeUnprocessable, expr: "Bundle.entry"},
		{name: "no entries", bundle: setRaw(t, bundle, "entry", `[]`),
			code: gateway.CodeUnprocessable, expr: "Bundle.entry"},
		{name: "too many entries", bundle: many,
			code: gateway.CodeUnprocessable, expr: "Bundle.entry"},
		{name: "Patient not the subject (NHS number)", bundle: setRaw(t, bundle, "entry.3.resource.subject", nhsSubject),
			code: gateway.CodeUnprocessable, expr: "Patient"},
		{name: "Patient not the subject (Patient/id)", bundle: setRaw(t, bundle, "entry.3.resource.subject", `{"reference":"Patient/p1"}`),
			code: gateway.CodeUnprocessable, expr: "Patient"},
		{name: "Condition not referred to", bundle: del(t, bundle, "entry.3.resource.reasonReference"),
			code: gateway.CodeUnprocessable, expr: "Condition"},
		{name: "Consent not referred to", bundle: del(t, bundle, "entry.3.resource.supportingInfo"),
			code: gateway.CodeUnprocessable, expr: "Consent"},
		{name: "Condition reference that resolves to nothing", bundle: set(t, bundle, "entry.1.resource.subject.reference", "urn:uuid:00000000-0000-4000-8000-000000000000"),
			code: gateway.CodeUnprocessable, expr: "Condition.subject"},
		{name: "Task whose focus is not the ServiceRequest", bundle: set(t, withTask(t, bundle), "entry.4.resource.focus.reference", urnCondition),
			rule: task, code: gateway.CodeUnprocessable, expr: "Task.focus"},
		{name: "Task for another resource", bundle: set(t, withTask(t, bundle), "entry.4.resource.for.reference", urnConsent),
			rule: task, code: gateway.CodeUnprocessable, expr: "Task.for"},
		{name: "two Tasks", bundle: setRaw(t, withTask(t, bundle), "entry.-1",
			string(set(t, []byte(gjson.GetBytes(withTask(t, bundle), "entry.4").Raw), "fullUrl", "urn:uuid:6f1c2a52-3d4e-4b8a-9a61-2f0c8d7e1a07"))),
			code: gateway.CodeUnprocessable, expr: "Bundle.entry[5].resource"},
		{name: "unknown resource type in an entry", bundle: add(observation),
			code: gateway.CodeUnprocessable, expr: "Bundle.entry[4].resource"},
		{name: "not a resource type", bundle: add(strings.ReplaceAll(observation, "Observation", "Nonsense")),
			code: gateway.CodeUnprocessable, expr: "Bundle.entry[4].resource"},
		{name: "bad enum: Patient.gender", bundle: set(t, bundle, "entry.0.resource.gender", "x"),
			code: gateway.CodeInvalid, expr: "Patient.gender"},
		{name: "bad enum: Patient.telecom.system", bundle: set(t, bundle, "entry.0.resource.telecom.0.system", "pager-ish"),
			code: gateway.CodeInvalid, expr: "Patient.telecom.system"},
		{name: "bad enum: ServiceRequest.status", request: set(t, sr, "status", "bogus"),
			code: gateway.CodeInvalid, expr: "ServiceRequest.status"},
		{name: "JSON type: subject.reference a number", bundle: set(t, bundle, "entry.3.resource.subject.reference", 5),
			code: gateway.CodeInvalid, expr: "ServiceRequest.subject.reference"},
		{name: "JSON type: subject.reference a number, single ServiceRequest", request: set(t, sr, "subject.reference", 5),
			code: gateway.CodeInvalid, expr: "ServiceRequest.subject.reference"},
		{name: "JSON type: Bundle.entry an object", bundle: setRaw(t, bundle, "entry", `{}`),
			code: gateway.CodeInvalid, expr: "Bundle.entry"},
		{name: "repeated property: id", request: prepend(sr, `"id":"a","id":"b"`),
			code: gateway.CodeInvalid, expr: "ServiceRequest"},
		{name: "repeated property: status, read differently by first and last", request: prepend(sr, `"status":"draft"`),
			code: gateway.CodeInvalid, expr: "ServiceRequest"},
		{name: "repeated property, one spelled with an escape", request: prepend(sr, `"st\u0061tus":"active"`),
			code: gateway.CodeInvalid, expr: "ServiceRequest"},
		{name: "repeated property in a contained Patient", request: bytes.Replace(sr, []byte(`"gender": "male"`), []byte(`"gender": "male", "gender": "female"`), 1),
			code: gateway.CodeInvalid, expr: "ServiceRequest"},
		{name: "repeated property: meta of an entry", bundle: bytes.Replace(bundle, []byte(`"resourceType": "Condition",`), []byte(`"resourceType": "Condition", "meta": {}, "meta": {"versionId": "9"},`), 1),
			code: gateway.CodeInvalid, expr: "Bundle"},
		{name: "repeated property: request of an entry", bundle: bytes.Replace(bundle, []byte(`"request": {"method": "POST", "url": "Consent"}`),
			[]byte(`"request": {"method": "POST", "url": "Consent"}, "request": {"method": "POST", "url": "Consent"}`), 1),
			code: gateway.CodeInvalid, expr: "Bundle"},
		{name: "property without a name", request: prepend(sr, `"":{"reference":"#patient"}`),
			code: gateway.CodeInvalid, expr: "ServiceRequest"},
		{name: "property without a name in an entry", bundle: bytes.Replace(bundle, []byte(`"resourceType": "Condition",`), []byte(`"resourceType": "Condition", "": {"reference": "`+urnPatient+`"},`), 1),
			code: gateway.CodeInvalid, expr: "Bundle"},
		{name: "a Bundle that is not an object", bundle: []byte(`[{"resourceType":"Bundle"}]`),
			code: gateway.CodeInvalid, expr: "Bundle"},
		{name: "a ServiceRequest sent as a transaction", bundle: sr,
			code: gateway.CodeInvalid, expr: "Bundle"},
		{name: "a Bundle sent as a ServiceRequest", request: bundle,
			code: gateway.CodeInvalid, expr: "ServiceRequest"},
		{name: "contained reference that names nothing", request: set(t, sr, "subject.reference", "#nobody"),
			rule: subject, code: gateway.CodeUnprocessable, expr: "ServiceRequest.subject"},
		{name: "contained reference to a non-Patient", request: set(t, set(t, sr, "contained.0.resourceType", "RelatedPerson"), "contained.0.patient.reference", "Patient/p1"),
			rule: subject, code: gateway.CodeUnprocessable, expr: "ServiceRequest.subject"},
		{name: "subject on another server", request: set(t, sr, "subject.reference", "https://other.example.org/fhir/Patient/123"),
			rule: subject, code: gateway.CodeUnprocessable, expr: "ServiceRequest.subject"},
		{name: "subject of another type", request: set(t, sr, "subject.reference", "Group/123"),
			rule: subject, code: gateway.CodeUnprocessable, expr: "ServiceRequest.subject"},
		{name: "subject on another server, in a Bundle", bundle: set(t, bundle, "entry.3.resource.subject.reference", "https://other.example.org/fhir/Patient/123"),
			rule: subject, code: gateway.CodeUnprocessable, expr: "ServiceRequest.subject"},
		{name: "If-None-Exist: another identifier", request: sr, ifNoneExist: "identifier=https://practice-a81001.example.org/referrals|SP-2026-000999",
			code: gateway.CodeUnprocessable, expr: "ServiceRequest.identifier"},
		{name: "If-None-Exist: another system", request: sr, ifNoneExist: "identifier=https://elsewhere.example.org|SP-2026-000124",
			code: gateway.CodeUnprocessable, expr: "ServiceRequest.identifier"},
		{name: "If-None-Exist: value without system", request: sr, ifNoneExist: "identifier=SP-2026-000124",
			code: gateway.CodeUnprocessable, expr: "ServiceRequest.identifier"},
		{name: "If-None-Exist: not by identifier", request: sr, ifNoneExist: "_id=abc",
			code: gateway.CodeUnprocessable, expr: "ServiceRequest.identifier"},
		{name: "If-None-Exist: two criteria", request: sr, ifNoneExist: "identifier=https://practice-a81001.example.org/referrals|SP-2026-000124&status=active",
			code: gateway.CodeUnprocessable, expr: "ServiceRequest.identifier"},
		{name: "If-None-Exist: not a query", request: sr, ifNoneExist: "identifier=%zz",
			code: gateway.CodeUnprocessable, expr: "ServiceRequest.identifier"},
		{name: "ifNoneExist: another referral identifier", bundle: set(t, bundle, "entry.3.request.ifNoneExist", "identifier=https://practice-a81001.example.org/referrals|SP-2026-000999"),
			code: gateway.CodeUnprocessable, expr: "Bundle.entry[3].request.ifNoneExist"},
		{name: "ifNoneExist: another NHS number", bundle: set(t, bundle, "entry.0.request.ifNoneExist", "identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009"),
			code: gateway.CodeUnprocessable, expr: "Bundle.entry[0].request.ifNoneExist"},
		{name: "ifNoneExist: on a Condition", bundle: set(t, bundle, "entry.1.request.ifNoneExist", "identifier=x|y"),
			code: gateway.CodeUnprocessable, expr: "Bundle.entry[1].request.ifNoneExist"},
	}
}

// prepend adds members at the start of the JSON object doc.
func prepend(doc []byte, members string) []byte {
	i := bytes.IndexByte(doc, '{')
	return []byte(string(doc[:i+1]) + members + "," + string(doc[i+1:]))
}

func TestParseErrors(t *testing.T) {
	for _, c := range parseCases(t) {
		t.Run(c.name, func(t *testing.T) {
			var (
				r   *gateway.Referral
				err error
			)
			if c.bundle != nil {
				r, err = mapping.ParseTransaction(c.bundle)
			} else {
				r, err = mapping.ParseServiceRequest(c.request, c.ifNoneExist)
			}
			if c.rule != nil {
				if err != nil {
					t.Fatalf("parse: %v (the rule should find the problem)", err)
				}
				err = gateway.Unprocessable(c.rule(r))
			}
			if got := gateway.ErrorCode(err); got != c.code {
				t.Fatalf("code %q, want %q: %v", got, c.code, err)
			}
			var ge *gateway.Error
			if !errors.As(err, &ge) || len(ge.Issues) == 0 || len(ge.Issues[0].Expression) == 0 {
				t.Fatalf("no located issue: %v", err)
			}
			if got := ge.Issues[0].Expression[0]; got != c.expr {
				t.Errorf("expression %q, want %q (issues %+v)", got, c.expr, ge.Issues)
			}
		})
	}
}

// The conditional creates the gateway accepts: the resource's own natural key.
func TestIfNoneExistAccepted(t *testing.T) {
	sr := readFixture(t, "service-request-contained-patient.json")
	if _, err := mapping.ParseServiceRequest(sr, "identifier=https://practice-a81001.example.org/referrals|SP-2026-000124"); err != nil {
		t.Errorf("ServiceRequest: %v", err)
	}
	bundle := readFixture(t, "referral-bundle.json")
	bundle = set(t, bundle, "entry.0.request.ifNoneExist", "identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919")
	if _, err := mapping.ParseTransaction(bundle); err != nil {
		t.Errorf("Bundle: %v", err)
	}
}
