package fhir_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// counts returns how many resources of each referral type a client sees.
func counts(t testing.TB, g *testGateway, key string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, typ := range []string{"ServiceRequest", "Task", "Patient", "Condition", "Consent"} {
		out[typ] = total(t, g.get("/fhir/"+typ, key))
	}
	return out
}

func responseLocations(t testing.TB, r response) []string {
	t.Helper()
	var out []string
	for _, e := range r.json(t)["entry"].([]any) {
		out = append(out, str(e, "response", "location"))
	}
	return out
}

func TestRepeatedReferralWritesNothing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		body := fixture(t, "referral-bundle.json")
		first := g.post("/fhir", keyA81001, body)
		if first.status != 200 {
			t.Fatalf("%d %s", first.status, first.body)
		}
		before := counts(t, g, keyA81001)
		second := g.post("/fhir", keyA81001, body)
		if second.status != 200 {
			t.Fatalf("%d %s", second.status, second.body)
		}
		a, b := responseLocations(t, first), responseLocations(t, second)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("the retry names other resources:\n%v\n%v", a, b)
		}
		for _, e := range second.json(t)["entry"].([]any) {
			if s := str(e, "response", "status"); s != "200 OK" {
				t.Errorf("retry entry status %q, want 200 OK", s)
			}
		}
		if after := counts(t, g, keyA81001); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("the retry wrote: %v → %v", before, after)
		}
		want := map[string]int{"ServiceRequest": 1, "Task": 1, "Patient": 1, "Condition": 1, "Consent": 1}
		if fmt.Sprint(before) != fmt.Sprint(want) {
			t.Errorf("after one referral: %v", before)
		}

		// The single-resource create answers a repeat with 200 and the
		// existing ServiceRequest.
		sr := fixture(t, "service-request-contained-patient.json")
		r1 := g.post("/fhir/ServiceRequest", keyA81001, sr)
		r2 := g.post("/fhir/ServiceRequest", keyA81001, sr)
		if r1.status != 201 || r2.status != 200 || r1.header.Get("Location") != r2.header.Get("Location") {
			t.Errorf("create %d %q, repeat %d %q", r1.status, r1.header.Get("Location"), r2.status, r2.header.Get("Location"))
		}
		if n := total(t, g.get("/fhir/Task", keyA81001)); n != 2 {
			t.Errorf("%d tasks after two referrals and two repeats", n)
		}

		// Validation comes before de-duplication: a repeat that breaks a
		// rule is refused.
		broken := bytes.Replace(body, []byte(`"intent": "order"`), []byte(`"intent": "plan"`), 1)
		if r := g.post("/fhir", keyA81001, broken); r.status != 422 {
			t.Errorf("invalid repeat: %d", r.status)
		}
	})
}

func TestConcurrentIdenticalReferralsMakeOne(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		body := fixture(t, "referral-bundle.json")
		const n = 50
		var wg sync.WaitGroup
		results := make([]response, n)
		for i := range n {
			wg.Go(func() { results[i] = g.post("/fhir", keyA81001, body) })
		}
		wg.Wait()
		var created int
		locations := map[string]bool{}
		for _, r := range results {
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			locs := responseLocations(t, r)
			locations[locs[3]] = true
			if str(r.json(t)["entry"].([]any)[3], "response", "status") == "201 Created" {
				created++
			}
		}
		if created != 1 || len(locations) != 1 {
			t.Errorf("%d created, %d distinct ServiceRequests named", created, len(locations))
		}
		want := map[string]int{"ServiceRequest": 1, "Task": 1, "Patient": 1, "Condition": 1, "Consent": 1}
		if got := counts(t, g, keyA81001); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("stored %v", got)
		}
	})
}

// TestTransactionIsAtomic: a Bundle with one bad entry stores nothing, not
// even the good ones before it.
func TestTransactionIsAtomic(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		cases := map[string][]byte{
			// the last entry is bad: the first three are fine
			"bad ServiceRequest": bytes.Replace(fixture(t, "referral-bundle.json"), []byte(`"authoredOn": "2026-11-20T10:15:00Z",`), nil, 1),
			// a Task that does not fit the referral
			"bad Task": taskBundle(t, `"status": "accepted"`),
			// an entry the gateway does not take
			"extra entry": bytes.Replace(fixture(t, "referral-bundle.json"), []byte(`"entry": [`),
				[]byte(`"entry": [{"fullUrl":"urn:uuid:0d6f0b6e-0000-4000-8000-000000000001","resource":{"resourceType":"Observation","status":"final","code":{"text":"x"}},"request":{"method":"POST","url":"Observation"}},`), 1),
		}
		for name, body := range cases {
			t.Run(name, func(t *testing.T) {
				if r := g.post("/fhir", keyA81001, body); r.status != 422 {
					t.Fatalf("%d %s", r.status, r.body)
				}
			})
		}
		for typ, n := range counts(t, g, keyA81001) {
			if n != 0 {
				t.Errorf("%d %s stored", n, typ)
			}
		}
	})
}

// taskBundle is the referral Bundle with a Task entry whose status part is
// given.
func taskBundle(t testing.TB, status string) []byte {
	t.Helper()
	task := `{"fullUrl":"urn:uuid:6f1c2a52-3d4e-4b8a-9a61-2f0c8d7e1a05","resource":{"resourceType":"Task",` + status +
		`,"intent":"order","focus":{"reference":"urn:uuid:6f1c2a52-3d4e-4b8a-9a61-2f0c8d7e1a04"},` +
		`"for":{"reference":"urn:uuid:6f1c2a52-3d4e-4b8a-9a61-2f0c8d7e1a01"}},"request":{"method":"POST","url":"Task"}}`
	b := fixture(t, "referral-bundle.json")
	i := bytes.LastIndex(b, []byte("]"))
	return append(append(append([]byte{}, b[:i]...), []byte(","+task)...), b[i:]...)
}

func TestReferralWithItsOwnTask(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		r := g.post("/fhir", keyA81001, taskBundle(t, `"status": "requested"`), "Prefer", "return=representation")
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		resp := r.json(t)["entry"].([]any)
		if len(resp) != 5 {
			t.Fatalf("%d entries", len(resp))
		}
		task := resp[4].(map[string]any)["resource"]
		if str(task, "owner", "reference") != "Organization/PRV01" || str(task, "requester", "reference") != "Organization/A81001" ||
			!strings.HasPrefix(str(task, "focus", "reference"), "ServiceRequest/") || !strings.HasPrefix(str(task, "for", "reference"), "Patient/") {
			t.Errorf("the practice's Task was not completed: %v", task)
		}
		if n := total(t, g.get("/fhir/Task", keyPRV01)); n != 1 {
			t.Errorf("%d tasks: the gateway must not add a second", n)
		}
	})
}

func TestTenancy(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		r := g.post("/fhir", keyA81001, fixture(t, "referral-bundle.json"), "Prefer", "return=representation")
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		var own []string // Type/id of every resource of A81001's referral
		for _, l := range responseLocations(t, r) {
			own = append(own, strings.Join(strings.Split(l, "/")[:2], "/"))
		}
		task := g.get("/fhir/Task", keyA81001)
		res, _ := entries(t, task)
		own = append(own, "Task/"+str(res[0], "id"))

		for _, path := range own {
			for _, who := range []struct {
				key  string
				want int
			}{{keyA81001, 200}, {keyPRV01, 200}, {keyA81002, 404}, {keyPRV02, 404}} {
				if r := g.get("/fhir/"+path, who.key); r.status != who.want {
					t.Errorf("%s reads %s: %d, want %d", who.key, path, r.status, who.want)
				} else if r.status == 404 && outcomeIssues(t, r)[0]["code"] != "not-found" {
					t.Errorf("404 without a not-found issue: %s", r.body)
				}
				if r := g.get("/fhir/"+path+"/_history/1", who.key); r.status != who.want {
					t.Errorf("%s vreads %s: %d, want %d", who.key, path, r.status, who.want)
				}
			}
		}
		// Searches of the others find nothing, whatever they ask for.
		for _, key := range []string{keyA81002, keyPRV02} {
			for _, q := range []string{
				"/fhir/Task", "/fhir/Task?requester=Organization/A81001", "/fhir/Task?owner=Organization/PRV01",
				"/fhir/ServiceRequest", "/fhir/ServiceRequest?identifier=SP-2026-000123",
				"/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919",
				"/fhir/ServiceRequest?patient.identifier=9434765919",
				"/fhir/Condition", "/fhir/Consent",
				"/fhir/Task?_include=Task:focus&_include=Task:patient",
			} {
				r := g.get(q, key)
				if res, _ := entries(t, r); total(t, r) != 0 || len(res) != 0 {
					t.Errorf("%s searching %s: %s", key, q, r.body)
				}
			}
		}
		// An admin does not read patient data at all.
		if r := g.get("/fhir/Task", keyAdmin); r.status != http.StatusForbidden {
			t.Errorf("admin search: %d", r.status)
		}
		// A provider may not send referrals.
		if r := g.post("/fhir", keyPRV01, fixture(t, "referral-bundle.json")); r.status != http.StatusForbidden {
			t.Errorf("provider posts a referral: %d %s", r.status, r.body)
		}
	})
}

func TestKnownPatient(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		first := g.post("/fhir", keyA81001, fixture(t, "referral-bundle.json"))
		patientLoc := responseLocations(t, first)[0]
		patient := strings.Join(strings.Split(patientLoc, "/")[:2], "/")

		// The same details again in a new referral: same Patient, no new version.
		r := g.post("/fhir", keyA81001, referralBundle(t, "SP-2026-000200", ""))
		if loc := responseLocations(t, r)[0]; loc != patient+"/_history/1" {
			t.Errorf("unchanged patient: %s", loc)
		}
		if s := str(r.json(t)["entry"].([]any)[0], "response", "status"); s != "200 OK" {
			t.Errorf("unchanged patient status %s", s)
		}
		// New details: a new version of the same Patient.
		moved := bytes.Replace(referralBundle(t, "SP-2026-000201", ""), []byte("NE4 5XX"), []byte("NE5 1AA"), 1)
		r = g.post("/fhir", keyA81001, moved)
		if loc := responseLocations(t, r)[0]; loc != patient+"/_history/2" {
			t.Errorf("changed patient: %s", loc)
		}
		if n := total(t, g.get("/fhir/Patient", keyA81001)); n != 1 {
			t.Errorf("%d patients", n)
		}
		v1 := g.get("/fhir/"+patient+"/_history/1", keyA81001)
		v2 := g.get("/fhir/"+patient, keyA81001)
		if !bytes.Contains(v1.body, []byte("NE4 5XX")) || !bytes.Contains(v2.body, []byte("NE5 1AA")) || v2.header.Get("ETag") != `W/"2"` {
			t.Errorf("versions: %s / %s", v1.body, v2.body)
		}
		if r := g.get("/fhir/"+patient+"/_history/3", keyA81001); r.status != 404 {
			t.Errorf("vread of a version that does not exist: %d", r.status)
		}

		// A referral naming the patient by NHS number only.
		byNHS := fmt.Sprintf(`{"resourceType":"ServiceRequest","identifier":[{"system":"https://practice-a81001.example.org/referrals","value":"SP-2026-000300"}],
			"status":"active","intent":"order","code":{"coding":[{"system":"http://snomed.info/sct","code":"871731000000106"}]},
			"subject":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"%s"}},"authoredOn":"2026-11-21T09:00:00Z",
			"requester":{"reference":"Organization/A81001"}}`, "9434765919")
		r = g.post("/fhir/ServiceRequest", keyA81001, []byte(byNHS))
		if r.status != 201 || str(r.json(t), "subject", "reference") != patient || str(r.json(t), "subject", "identifier", "value") != "9434765919" {
			t.Errorf("by NHS number: %d %s", r.status, r.body)
		}
		// Another practice cannot refer by this practice's patient.
		other := strings.ReplaceAll(byNHS, "A81001", "A81002")
		r = g.post("/fhir/ServiceRequest", keyA81002, []byte(other))
		if r.status != 422 || !names(t, r, "ServiceRequest.subject") {
			t.Errorf("other practice by NHS number: %d %s", r.status, r.body)
		}
		r = g.post("/fhir/ServiceRequest", keyA81002, []byte(strings.Replace(other,
			`{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}}`, `{"reference":"`+patient+`"}`, 1)))
		if r.status != 422 || !names(t, r, "ServiceRequest.subject") {
			t.Errorf("other practice by Patient id: %d %s", r.status, r.body)
		}
	})
}
