package fhir_test

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// TestInvalidFixtures sends every file of testdata/fixtures/invalid as
// practice A81001 and checks the status and element that EXPECTED.tsv gives,
// and that nothing was stored.
func TestInvalidFixtures(t *testing.T) {
	dir := filepath.Join("..", "testdata", "fixtures", "invalid")
	f, err := os.Open(filepath.Join(dir, "EXPECTED.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type expectation struct {
		statuses []int
		expr     string
	}
	want := map[string]expectation{}
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) < 2 {
			continue
		}
		var e expectation
		for _, s := range strings.Split(cols[1], "|") {
			n, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("EXPECTED.tsv: %q", sc.Text())
			}
			e.statuses = append(e.statuses, n)
		}
		if len(cols) > 2 {
			e.expr = cols[2]
		}
		want[cols[0]] = e
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) != len(want) || len(files) == 0 {
		t.Fatalf("%d fixtures, %d expectations: every file needs one", len(files), len(want))
	}
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		for _, file := range files {
			name := filepath.Base(file)
			t.Run(name, func(t *testing.T) {
				e, ok := want[name]
				if !ok {
					t.Fatalf("%s has no line in EXPECTED.tsv", name)
				}
				body, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				r := g.post("/fhir", keyA81001, body)
				if !slices.Contains(e.statuses, r.status) {
					t.Fatalf("status %d, want %v: %s", r.status, e.statuses, r.body)
				}
				if e.expr != "" && !names(t, r, e.expr) {
					t.Errorf("no issue names %s: %s", e.expr, r.body)
				}
			})
		}
		// Nothing of any of them was stored.
		for _, typ := range []string{"ServiceRequest", "Task", "Patient", "Condition", "Consent"} {
			for _, key := range []string{keyA81001, keyPRV01} {
				if n := total(t, g.get("/fhir/"+typ, key)); n != 0 {
					t.Errorf("%s: %d stored after invalid referrals", typ, n)
				}
			}
		}
	})
}

// total reads Bundle.total.
func total(t testing.TB, r response) int {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("search: %d %s", r.status, r.body)
	}
	n, ok := r.json(t)["total"].(float64)
	if !ok {
		t.Fatalf("no total: %s", r.body)
	}
	return int(n)
}

// TestValidFixtures: both valid fixtures are accepted and routed to PRV01,
// which finds them by polling.
func TestValidFixtures(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)

		r := g.post("/fhir", keyA81001, fixture(t, "referral-bundle.json"))
		if r.status != 200 {
			t.Fatalf("bundle: %d %s", r.status, r.body)
		}
		m := r.json(t)
		if m["type"] != "transaction-response" {
			t.Fatalf("type %v", m["type"])
		}
		resp := m["entry"].([]any)
		if len(resp) != 4 {
			t.Fatalf("%d response entries for 4 request entries", len(resp))
		}
		for i, typ := range []string{"Patient", "Condition", "Consent", "ServiceRequest"} {
			e := resp[i].(map[string]any)["response"].(map[string]any)
			if e["status"] != "201 Created" || !strings.HasPrefix(e["location"].(string), typ+"/") || e["etag"] != `W/"1"` {
				t.Errorf("entry %d: %v", i, e)
			}
		}
		srLoc := str(resp[3], "response", "location")
		srID := strings.Split(srLoc, "/")[1]

		r = g.post("/fhir/ServiceRequest", keyA81001, fixture(t, "service-request-contained-patient.json"))
		if r.status != 201 {
			t.Fatalf("contained: %d %s", r.status, r.body)
		}
		if loc := r.header.Get("Location"); !strings.HasPrefix(loc, "/fhir/ServiceRequest/") || !strings.HasSuffix(loc, "/_history/1") {
			t.Errorf("Location %q", loc)
		}
		if r.header.Get("ETag") != `W/"1"` || r.header.Get("Last-Modified") == "" {
			t.Errorf("headers %v", r.header)
		}
		sr := r.json(t)
		if sr["contained"] != nil {
			t.Errorf("the contained Patient stays contained: %s", r.body)
		}
		if ref := str(sr, "subject", "reference"); !strings.HasPrefix(ref, "Patient/") {
			t.Errorf("subject %q", ref)
		}

		// PRV01 polls and finds both Tasks, with their referrals.
		r = g.get("/fhir/Task?owner=Organization/PRV01&status=requested&_include=Task:focus&_include=Task:patient", keyPRV01)
		res, modes := entries(t, r)
		var tasks, srs, patients int
		for i, x := range res {
			switch x["resourceType"] {
			case "Task":
				tasks++
				if modes[i] != "match" || str(x, "owner", "reference") != "Organization/PRV01" ||
					str(x, "requester", "reference") != "Organization/A81001" || x["status"] != "requested" {
					t.Errorf("task %v", x)
				}
			case "ServiceRequest":
				srs++
			case "Patient":
				patients++
			}
		}
		if tasks != 2 || srs != 2 || patients != 2 {
			t.Errorf("poll: %d tasks, %d referrals, %d patients: %s", tasks, srs, patients, r.body)
		}

		// The provider reads the referral, its patient and reason.
		r = g.get("/fhir/ServiceRequest/"+srID, keyPRV01)
		if r.status != 200 {
			t.Fatalf("read: %d %s", r.status, r.body)
		}
		sr = r.json(t)
		for _, ref := range []string{str(sr, "subject", "reference"), str(sr, "reasonReference", 0, "reference"), str(sr, "supportingInfo", 0, "reference")} {
			if strings.HasPrefix(ref, "urn:") || ref == "" {
				t.Fatalf("reference not resolved: %q", ref)
			}
			if r := g.get("/fhir/"+ref, keyPRV01); r.status != 200 {
				t.Errorf("provider reads %s: %d", ref, r.status)
			}
		}
		if str(sr, "requester", "reference") != "Organization/A81001" || str(sr, "requester", "display") != "Example Road Surgery" ||
			str(sr, "requester", "identifier", "value") != "A81001" {
			t.Errorf("requester %v", sr["requester"])
		}
		// PRV02 sees none of it.
		if n := total(t, g.get("/fhir/Task", keyPRV02)); n != 0 {
			t.Errorf("PRV02 sees %d tasks", n)
		}
	})
}
