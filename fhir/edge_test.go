package fhir_test

import (
	"bytes"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/spgateway/spgateway/gateway/store/storetest"
)

func TestAuthentication(t *testing.T) {
	g := newGateway(t, "sqlite")
	for _, c := range []struct{ name, header string }{
		{"no header", ""},
		{"unknown key", "Bearer not-a-key"},
		{"empty bearer", "Bearer "},
		{"basic scheme", "Basic ZGV2LXByYWN0aWNlLWE4MTAwMTp4"},
		{"key without scheme", keyA81001},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, path := range []string{"/fhir/Task", "/fhir/ServiceRequest/x", "/fhir/Organization/A81001"} {
				var r response
				if c.header == "" {
					r = g.get(path, "")
				} else {
					r = g.do("GET", path, "", nil, "Authorization", c.header)
				}
				if r.status != 401 || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
					t.Fatalf("%s: %d %v", path, r.status, r.header)
				}
				if is := outcomeIssues(t, r); is[0]["code"] != "login" {
					t.Errorf("issue code %v", is[0]["code"])
				}
			}
			if r := g.post("/fhir", "", fixture(t, "referral-bundle.json"), "Authorization", c.header); r.status != 401 {
				t.Errorf("transaction: %d", r.status)
			}
		})
	}
	// The CapabilityStatement needs no credentials and lists what is there.
	r := g.get("/fhir/metadata", "")
	cs := r.json(t)
	if r.status != 200 || cs["resourceType"] != "CapabilityStatement" || cs["fhirVersion"] != "4.0.1" {
		t.Fatalf("metadata: %d %s", r.status, r.body)
	}
	for _, want := range []string{`"Task:focus"`, `"Task:patient"`, `"transaction"`, `"business-status"`, `"conditionalCreate":true`,
		`"update"`, `"patch"`, `"history-instance"`, `"name":"reassign"`, `"patchFormat":["application/json-patch+json"]`,
		`"type":"AuditEvent"`} {
		if !bytes.Contains(r.body, []byte(want)) {
			t.Errorf("metadata lacks %s", want)
		}
	}
	for _, absent := range []string{`"history-type"`, `"history-system"`, `"Practitioner"`} {
		if bytes.Contains(r.body, []byte(absent)) {
			t.Errorf("metadata claims %s, which is not implemented", absent)
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if r := g.get(path, ""); r.status != 200 {
			t.Errorf("%s: %d", path, r.status)
		}
	}
}

func TestContentNegotiation(t *testing.T) {
	g := newGateway(t, "sqlite")
	for _, c := range []struct {
		name    string
		path    string
		headers []string
		status  int
		ctype   string
	}{
		{"no Accept", "/fhir/Task", nil, 200, "application/fhir+json"},
		{"FHIR JSON", "/fhir/Task", []string{"Accept", "application/fhir+json"}, 200, "application/fhir+json"},
		{"plain JSON", "/fhir/Task", []string{"Accept", "application/json"}, 200, "application/json"},
		{"anything", "/fhir/Task", []string{"Accept", "text/html, */*;q=0.1"}, 200, "application/fhir+json"},
		{"_format=json", "/fhir/Task?_format=json", []string{"Accept", "application/fhir+xml"}, 200, "application/fhir+json"},
		{"XML", "/fhir/Task", []string{"Accept", "application/fhir+xml"}, 415, ""},
		{"HTML only", "/fhir/metadata", []string{"Accept", "text/html"}, 415, ""},
		{"_format=xml", "/fhir/Task?_format=xml", nil, 415, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := g.do("GET", c.path, keyPRV01, nil, c.headers...)
			if r.status != c.status {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if c.ctype != "" && !strings.HasPrefix(r.header.Get("Content-Type"), c.ctype) {
				t.Errorf("Content-Type %q", r.header.Get("Content-Type"))
			}
			if r.status == 415 && outcomeIssues(t, r)[0]["code"] != "not-supported" {
				t.Errorf("415 issue %s", r.body)
			}
		})
	}
	for _, ct := range []string{"application/fhir+xml", "text/plain", ""} {
		r := g.do("POST", "/fhir", keyA81001, fixture(t, "referral-bundle.json"), "Content-Type", ct)
		if r.status != 415 {
			t.Errorf("Content-Type %q: %d", ct, r.status)
		}
	}
	r := g.do("POST", "/fhir/", keyA81001, fixture(t, "referral-bundle.json"), "Content-Type", "application/json; charset=utf-8")
	if r.status != 200 {
		t.Errorf("POST /fhir/ with application/json: %d %s", r.status, r.body)
	}
}

func TestLimitsAndBadInput(t *testing.T) {
	g := newGateway(t, "sqlite", withLimits(8<<10, 16, 50, 500))
	big := append([]byte(`{"resourceType":"Bundle","type":"transaction","entry":[],"pad":"`), bytes.Repeat([]byte("x"), 9<<10)...)
	big = append(big, `"}`...)
	if r := g.post("/fhir", keyA81001, big); r.status != 413 || outcomeIssues(t, r)[0]["code"] != "too-long" {
		t.Errorf("large body: %d %s", r.status, r.body)
	}
	// Without Content-Length the limit holds while reading.
	req, _ := http.NewRequest("POST", g.base+"/fhir", struct{ *bytes.Reader }{bytes.NewReader(big)})
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+keyA81001)
	res, err := g.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 413 {
		t.Errorf("chunked large body: %d", res.StatusCode)
	}
	deep := strings.Repeat("[", 17) + strings.Repeat("]", 17)
	if r := g.post("/fhir", keyA81001, []byte(deep)); r.status != 400 {
		t.Errorf("deep JSON: %d", r.status)
	}
	for name, body := range map[string]string{
		"not JSON":       "{",
		"array":          "[1,2]",
		"string":         `"Bundle"`,
		"no type":        `{"entry":[]}`,
		"trailing":       `{"resourceType":"Bundle","type":"transaction"} x`,
		"wrong shape":    `{"resourceType":"Bundle","type":"transaction","entry":{"resource":1}}`,
		"resource shape": `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":[],"request":{"method":"POST","url":"Patient"}}]}`,
		"bad method":     `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient"},"request":{"method":"FETCH","url":"Patient"}}]}`,
		"empty":          ``,
	} {
		r := g.post("/fhir", keyA81001, []byte(body))
		if r.status != 400 && r.status != 422 {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
	for name, body := range map[string]string{
		"empty bundle":    `{"resourceType":"Bundle","type":"transaction"}`,
		"batch":           `{"resourceType":"Bundle","type":"batch","entry":[]}`,
		"no request":      `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient"}}]}`,
		"PUT entry":       `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient"},"request":{"method":"PUT","url":"Patient/1"}}]}`,
		"url mismatch":    `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Condition"}}]}`,
		"no referral":     `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]}`,
		"two referrals":   string(bytes.Replace(fixture(t, "referral-bundle.json"), []byte(`"entry": [`), append([]byte(`"entry": [`), srEntry+","...), 1)),
		"stray Condition": strayCondition(t),
	} {
		r := g.post("/fhir", keyA81001, []byte(body))
		if r.status != 422 {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
}

const srEntry = `{"fullUrl":"urn:uuid:aa1c2a52-3d4e-4b8a-9a61-2f0c8d7e1a04","resource":{"resourceType":"ServiceRequest","status":"active","intent":"order"},"request":{"method":"POST","url":"ServiceRequest"}}`

// strayCondition is the referral Bundle with a Condition the ServiceRequest
// does not refer to.
func strayCondition(t *testing.T) string {
	b := fixture(t, "referral-bundle.json")
	b = bytes.Replace(b, []byte(`"reasonReference": [{"reference": "urn:uuid:6f1c2a52-3d4e-4b8a-9a61-2f0c8d7e1a02"}],`), nil, 1)
	return string(b)
}

// TestSearchSizeLimits: a search too big for the database is refused with
// 400, not passed on to fail there.
func TestSearchSizeLimits(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine, withLimits(4<<20, 64, 50, 500))
		ids := strings.TrimSuffix(strings.Repeat("x,", 101), ",")
		if r := g.get("/fhir/Task?_id="+ids, keyPRV01); r.status != 400 {
			t.Errorf("101 ids: %d", r.status)
		}
		if r := g.get("/fhir/Task?_id="+strings.TrimSuffix(strings.Repeat("x,", 100), ","), keyPRV01); r.status != 200 {
			t.Errorf("100 ids: %d %s", r.status, r.body)
		}
		many := strings.TrimSuffix(strings.Repeat("status=requested&", 33), "&")
		if r := g.get("/fhir/Task?"+many, keyPRV01); r.status != 400 {
			t.Errorf("33 parameters: %d", r.status)
		}
		// The same through a form body, which has no URL length limit.
		form := strings.TrimSuffix(strings.Repeat("_id="+strings.Repeat("y", 30)+"&", 3000), "&")
		r := g.do("POST", "/fhir/Task/_search", keyPRV01, []byte(form), "Content-Type", "application/x-www-form-urlencoded")
		if r.status != 400 {
			t.Errorf("3000 _id parameters by form: %d", r.status)
		}
	})
}

func TestMethodsAndTypes(t *testing.T) {
	g := newGateway(t, "sqlite")
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/fhir/Foo", 404},
		{"GET", "/fhir/Foo/1", 404},
		{"GET", "/fhir/Encounter", 404},
		{"POST", "/fhir/Observation", 405},
		{"POST", "/fhir/Patient", 405},
		{"POST", "/fhir/Task", 405},
		{"PUT", "/fhir/Patient/abc", 405},
		{"PUT", "/fhir/Organization/A81001", 405},
		{"PATCH", "/fhir/ServiceRequest/abc", 405},
		{"DELETE", "/fhir/ServiceRequest/abc", 405},
		{"DELETE", "/fhir/Task/abc", 405},
		{"POST", "/fhir/Task/abc", 405},
		{"POST", "/fhir/Task/$everything", 404},
		{"PATCH", "/fhir/Task/abc", 428},
		{"GET", "/fhir/Task/not%20an%20id", 404},
		{"GET", "/fhir/Task/abc/_history/zero", 400},
		{"GET", "/fhir/Task/abc/_history/0", 400},
		{"GET", "/nowhere", 404},
	} {
		var body []byte
		if c.method == "POST" || c.method == "PUT" || c.method == "PATCH" {
			body = []byte(`{"resourceType":"Patient"}`)
		}
		var headers []string
		if c.method == "PATCH" {
			body = []byte(`[]`)
			headers = []string{"Content-Type", "application/json-patch+json"}
		}
		r := g.do(c.method, c.path, keyA81001, body, headers...)
		if r.status != c.status {
			t.Errorf("%s %s: %d, want %d: %s", c.method, c.path, r.status, c.status, r.body)
			continue
		}
		if strings.HasPrefix(c.path, "/fhir") && len(outcomeIssues(t, r)) == 0 {
			t.Errorf("%s %s: no issue", c.method, c.path)
		}
		if c.status == 405 && r.header.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", c.method, c.path)
		}
	}
}

func TestPrefer(t *testing.T) {
	g := newGateway(t, "sqlite")
	sr := fixture(t, "service-request-contained-patient.json")
	r := g.post("/fhir/ServiceRequest", keyA81001, sr, "Prefer", "return=minimal")
	if r.status != 201 || len(r.body) != 0 || r.header.Get("Location") == "" {
		t.Errorf("minimal: %d %q", r.status, r.body)
	}
	r = g.post("/fhir/ServiceRequest", keyA81001, sr, "Prefer", "return=OperationOutcome")
	if r.status != 200 || outcomeIssues(t, r)[0]["severity"] != "information" {
		t.Errorf("OperationOutcome: %d %s", r.status, r.body)
	}
	r = g.post("/fhir", keyA81001, fixture(t, "referral-bundle.json"))
	for _, e := range r.json(t)["entry"].([]any) {
		if e.(map[string]any)["resource"] != nil {
			t.Errorf("transaction default is minimal: %v", e)
		}
	}
	r = g.post("/fhir", keyA81001, fixture(t, "referral-bundle.json"), "Prefer", "return=representation")
	for _, e := range r.json(t)["entry"].([]any) {
		if str(e, "resource", "id") == "" || str(e, "resource", "meta", "versionId") != "1" {
			t.Errorf("representation: %v", e)
		}
	}
	r = g.post("/fhir", keyA81001, fixture(t, "referral-bundle.json"), "Prefer", "return=OperationOutcome")
	for _, e := range r.json(t)["entry"].([]any) {
		if str(e, "response", "outcome", "resourceType") != "OperationOutcome" {
			t.Errorf("outcome: %v", e)
		}
	}
}

// TestCreatedAnswer: every create (a referral as a ServiceRequest, a PROM,
// a Subscription) answers alike: 201 with Location and Content-Location
// naming the new version, its ETag and Last-Modified, and the body Prefer:
// return= asks for (the resource by default).
func TestCreatedAnswer(t *testing.T) {
	g := newGateway(t, "sqlite")
	idPattern := regexp.MustCompile(`^[A-Za-z0-9.-]{1,64}$`)
	n := 0
	creates := []struct {
		typ, key string
		body     func() []byte
	}{
		{"ServiceRequest", keyA81001, func() []byte {
			n++
			return bytes.ReplaceAll(fixture(t, "service-request-contained-patient.json"), []byte("SP-2026-000124"), []byte(fmt.Sprintf("CREATED-%d", n)))
		}},
		{"QuestionnaireResponse", keyPRV01, func() []byte {
			n++
			ref := newReferral(t, g, fmt.Sprintf("CREATED-PROM-%d", n))
			g.mustChange(t, ref.task, keyPRV01, setStatus("accepted"))
			return promResponse(ref, "swemwbs", "2026-11-16T10:00:00Z", swemwbsAnswers(3, 3, 3, 3, 3, 3, 3))
		}},
		{"Subscription", keyA81001, func() []byte { return scSubscription(t, nil) }},
	}
	for _, c := range creates {
		for _, ret := range []string{"", "representation", "minimal", "OperationOutcome"} {
			var headers []string
			if ret != "" {
				headers = []string{"Prefer", "return=" + ret}
			}
			r := g.post("/fhir/"+c.typ, c.key, c.body(), headers...)
			loc := r.header.Get("Location")
			id := strings.TrimSuffix(strings.TrimPrefix(loc, "/fhir/"+c.typ+"/"), "/_history/1")
			if r.status != http.StatusCreated || !idPattern.MatchString(id) || r.header.Get("Content-Location") != loc ||
				r.header.Get("ETag") != `W/"1"` {
				t.Errorf("%s %q: %d Location %q Content-Location %q ETag %q", c.typ, ret, r.status, loc,
					r.header.Get("Content-Location"), r.header.Get("ETag"))
			}
			if _, err := http.ParseTime(r.header.Get("Last-Modified")); err != nil {
				t.Errorf("%s %q: Last-Modified %q", c.typ, ret, r.header.Get("Last-Modified"))
			}
			switch ret {
			case "minimal":
				if len(r.body) != 0 {
					t.Errorf("%s minimal: %s", c.typ, r.body)
				}
			case "OperationOutcome":
				if outcomeIssues(t, r)[0]["severity"] != "information" {
					t.Errorf("%s OperationOutcome: %s", c.typ, r.body)
				}
			default:
				if doc := r.json(t); doc["resourceType"] != c.typ || doc["id"] != id {
					t.Errorf("%s %q: %s", c.typ, ret, r.body)
				}
			}
		}
	}
}

// TestPageSizes: every page-size parameter (a search's and a history's
// _count, the case list's count, the outbox's limit) is read alike: absent,
// the endpoint's default; given, once and a whole number no less than the
// endpoint's least (0 for a search, which then counts, 1 elsewhere), else
// 400 naming it; above the endpoint's most, cut to it.
func TestPageSizes(t *testing.T) {
	g := newGateway(t, "sqlite", scWithCases(nil))
	ref := newReferral(t, g, "PAGE-SIZES")
	history := "/fhir/Task/" + ref.task + "/_history"
	for _, c := range []struct {
		path, key string
		status    int
		message   string
	}{
		{"/fhir/Task?_count=0", keyPRV01, 200, ""},
		{"/fhir/Task?_count=100000", keyPRV01, 200, ""},
		{"/fhir/Task?_count=-1", keyPRV01, 400, "_count must be a whole number ≥ 0"},
		{"/fhir/Task?_count=", keyPRV01, 400, "_count must be a whole number ≥ 0"},
		{"/fhir/Task?_count=1&_count=2", keyPRV01, 400, "_count may be given once"},
		{history + "?_count=1", keyPRV01, 200, ""},
		{history + "?_count=100000", keyPRV01, 200, ""},
		{history + "?_count=0", keyPRV01, 400, "_count must be a whole number ≥ 1"},
		{history + "?_count=x", keyPRV01, 400, "_count must be a whole number ≥ 1"},
		{history + "?_count=", keyPRV01, 400, "_count must be a whole number ≥ 1"},
		{history + "?_count=1&_count=2", keyPRV01, 400, "_count may be given once"},
		{"/api/v1/cases?count=1", keyPRV01, 200, ""},
		{"/api/v1/cases?count=0", keyPRV01, 400, "count must be a whole number ≥ 1"},
		{"/api/v1/cases?count=", keyPRV01, 400, "count must be a whole number ≥ 1"},
		{"/api/v1/cases?count=1&count=2", keyPRV01, 400, "count may be given once"},
		{"/api/v1/outbox?limit=1", keyAdmin, 200, ""},
		{"/api/v1/outbox?limit=0", keyAdmin, 400, "limit must be a whole number ≥ 1"},
		{"/api/v1/outbox?limit=", keyAdmin, 400, "limit must be a whole number ≥ 1"},
		{"/api/v1/outbox?limit=1&limit=2", keyAdmin, 400, "limit may be given once"},
	} {
		r := g.get(c.path, c.key)
		if r.status != c.status || c.status == 400 && str(outcomeIssues(t, r)[0], "diagnostics") != c.message {
			t.Errorf("%s: %d %s, want %d %q", c.path, r.status, r.body, c.status, c.message)
		}
	}
	// A search's and a history's _count are cut to limits.max_count, and
	// their links say so.
	for _, path := range []string{"/fhir/Task?_count=100000", history + "?_count=100000"} {
		if self := link(t, g.get(path, keyPRV01), "self"); !strings.Contains(self, "_count=500") {
			t.Errorf("%s: self link %s", path, self)
		}
	}
}

func TestIfNoneExist(t *testing.T) {
	g := newGateway(t, "sqlite")
	sr := fixture(t, "service-request-contained-patient.json")
	good := "identifier=https://practice-a81001.example.org/referrals|SP-2026-000124"
	if r := g.post("/fhir/ServiceRequest", keyA81001, sr, "If-None-Exist", good); r.status != 201 {
		t.Errorf("%d %s", r.status, r.body)
	}
	if r := g.post("/fhir/ServiceRequest", keyA81001, sr, "If-None-Exist", good); r.status != 200 {
		t.Errorf("repeat: %d", r.status)
	}
	for _, bad := range []string{"identifier=https://practice-a81001.example.org/referrals|OTHER", "status=active", "%zz"} {
		if r := g.post("/fhir/ServiceRequest", keyA81001, sr, "If-None-Exist", bad); r.status != 422 {
			t.Errorf("%s: %d %s", bad, r.status, r.body)
		}
	}
	bundle := bytes.Replace(fixture(t, "referral-bundle.json"), []byte(`|SP-2026-000123"}`), []byte(`|SP-2026-999999"}`), 1)
	if r := g.post("/fhir", keyA81001, bundle); r.status != 422 || !names(t, r, "Bundle.entry[3].request.ifNoneExist") {
		t.Errorf("bundle ifNoneExist mismatch: %d %s", r.status, r.body)
	}
}
