package fhir_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/spgateway/spgateway/fhir"
	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store/storetest"
	"github.com/spgateway/spgateway/mapping"
)

// Two providers with case records, configured differently: PRV01 takes
// many fields under UPPER_SNAKE names with UK dates and its own categories;
// PRV02 a handful under its own names.

const (
	scSnomedDiabetes   = "44054006" // the fixture's Condition
	scSnomedDepression = "35489007"
)

func scMappingPRV01() mapping.ProviderMapping {
	fields := []string{"case_id", "referral_number", "status", "business_status", "status_reason", "referred_at", "received_at",
		"last_updated", "priority", "practice_code", "nhs_number", "given_name", "family_name", "birth_date", "gender", "phone",
		"reason_codes", "notes", "codes_only_consent", "link_worker", "prom_due"}
	rename := map[string]string{}
	for _, f := range fields {
		rename[f] = strings.ToUpper(f)
	}
	rename["case_id"], rename["nhs_number"], rename["reason_codes"] = "CASE_REF", "NHS_NO", "NEEDS"
	return mapping.ProviderMapping{
		Fields: fields,
		Rename: rename,
		Codes: map[string]mapping.CodeTable{
			"reason_codes": {Map: map[string]string{scSnomedDiabetes: "Long-term condition", scSnomedDepression: "Mental health"}, Default: "Other"},
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
			"PAUSE":           {Status: gateway.TaskOnHold, Reason: gateway.ReasonOther},
			"RESUME":          {Status: gateway.TaskInProgress},
			"CLOSED":          {Status: gateway.TaskCompleted, BusinessStatus: "case-closed"},
			"WITHDRAWN":       {Status: gateway.TaskFailed, Reason: gateway.ReasonOther},
			"NOTE":            {},
			"PROM":            {PROM: true},
		},
	}
}

func scMappingPRV02() mapping.ProviderMapping {
	return mapping.ProviderMapping{
		Fields: []string{"case_id", "referral_number", "given_name", "phone", "reason_codes", "status"},
		Rename: map[string]string{"case_id": "caseRef", "referral_number": "referralNo", "given_name": "firstName", "phone": "mobile",
			"reason_codes": "needs", "status": "state",
			// Named, but not allowed: they never leave the gateway.
			"nhs_number": "nhsNo", "notes": "comments", "family_name": "surname", "birth_date": "dob"},
		Codes: map[string]mapping.CodeTable{
			"reason_codes": {Map: map[string]string{scSnomedDepression: "mental-health", scSnomedDiabetes: "long-term-condition"}},
			"status": {Map: map[string]string{gateway.TaskRequested: "new", gateway.TaskAccepted: "active", gateway.TaskInProgress: "active",
				gateway.TaskRejected: "declined", gateway.TaskFailed: "closed", gateway.TaskCompleted: "closed"}, Default: "other"},
		},
		Events: map[string]mapping.EventMapping{
			"accepted":        {Status: gateway.TaskAccepted},
			"declined":        {Status: gateway.TaskRejected, Reason: gateway.ReasonPatientDeclined},
			"no-contact":      {Status: gateway.TaskFailed, Reason: "unable-to-contact"},
			"contacted":       {BusinessStatus: gateway.BusinessFirstContactMade},
			"started":         {Status: gateway.TaskInProgress},
			"closed":          {Status: gateway.TaskCompleted},
			"wellbeing-score": {PROM: true},
		},
	}
}

// scWithCases configures case records for the providers named (both when
// none is), and pushes those of push.
func scWithCases(providers []string, push ...string) gatewayOption {
	return func(g *gateway.Config, _ *fhir.Config) {
		all := map[string]mapping.ProviderMapping{"PRV01": scMappingPRV01(), "PRV02": scMappingPRV02()}
		if len(providers) == 0 {
			providers = []string{"PRV01", "PRV02"}
		}
		m := map[string]mapping.ProviderMapping{}
		for _, p := range providers {
			m[p] = all[p]
		}
		g.Cases = mapping.CaseRecords{Providers: m}
		g.PushProviders = push
	}
}

// scReferA81002 sends the fixture as a referral of A81002 (routed to PRV02)
// and returns its ids.
func scReferA81002(t testing.TB, g *testGateway, identifier string) referral {
	t.Helper()
	body := []byte(strings.ReplaceAll(string(referralBundle(t, identifier, "6541003238")), "A81001", "A81002"))
	r := g.post("/fhir", keyA81002, body)
	if r.status != http.StatusOK {
		t.Fatalf("A81002 referral: %d %s", r.status, r.body)
	}
	var ref referral
	for _, loc := range responseLocations(t, r) {
		parts := strings.Split(loc, "/")
		switch parts[0] {
		case "ServiceRequest":
			ref.request = parts[1]
		case "Patient":
			ref.patient = parts[1]
		}
	}
	tasks, _ := entries(t, g.get("/fhir/Task?focus=ServiceRequest/"+ref.request, keyA81002))
	if len(tasks) != 1 {
		t.Fatalf("%d tasks for the A81002 referral", len(tasks))
	}
	ref.task = str(tasks[0], "id")
	return ref
}

// scCase reads a case record as key; it must answer 200.
func scCase(t testing.TB, g *testGateway, id, key string) (map[string]any, []byte) {
	t.Helper()
	r := g.get("/api/v1/cases/"+id, key)
	if r.status != http.StatusOK {
		t.Fatalf("case %s: %d %s", id, r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("case %s: Content-Type %q", id, ct)
	}
	return r.json(t), r.body
}

// scEvent posts a case event.
func scEvent(g *testGateway, id, key, body string) response {
	g.t.Helper()
	return g.post("/api/v1/cases/"+id+"/events", key, []byte(body))
}

// scMustEvent posts a case event that must succeed and returns the case
// record it answers with.
func scMustEvent(t testing.TB, g *testGateway, id, key, body string) map[string]any {
	t.Helper()
	r := scEvent(g, id, key, body)
	if r.status != http.StatusOK {
		t.Fatalf("event %s: %d %s", body, r.status, r.body)
	}
	return r.json(t)
}

// scKeys returns the member names of a JSON object in document order.
func scKeys(body []byte) []string {
	var keys []string
	gjson.ParseBytes(body).ForEach(func(k, _ gjson.Result) bool {
		keys = append(keys, k.String())
		return true
	})
	return keys
}

// scNotes returns the texts of a Task's notes.
func scNotes(task map[string]any) []string {
	var out []string
	list, _ := task["note"].([]any)
	for _, n := range list {
		out = append(out, str(n, "text"))
	}
	return out
}

// scAnsweredAt is a time the patient answered: an hour ago.
func scAnsweredAt() string { return time.Now().UTC().Add(-time.Hour).Format(time.RFC3339) }

// scList is one page of the case list.
type scList struct {
	Cases []json.RawMessage `json:"cases"`
	Next  string            `json:"next"`
}

func scListCases(t testing.TB, g *testGateway, query, key string) scList {
	t.Helper()
	r := g.get("/api/v1/cases"+query, key)
	if r.status != http.StatusOK {
		t.Fatalf("cases%s: %d %s", query, r.status, r.body)
	}
	var l scList
	if err := json.Unmarshal(r.body, &l); err != nil {
		t.Fatalf("cases%s: %v %s", query, err, r.body)
	}
	if l.Cases == nil {
		t.Errorf("cases%s: no cases array: %s", query, r.body)
	}
	return l
}

// scIDs returns the values of member key of each record.
func scIDs(records []json.RawMessage, key string) []string {
	var out []string
	for _, r := range records {
		out = append(out, gjson.GetBytes(r, key).String())
	}
	return out
}

// TestCaseRecordFields: each provider reads its case record in its own
// names, codes and date format, with only the fields it is allowed.
func TestCaseRecordFields(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine, scWithCases(nil))
		a := newReferral(t, g, "CASE-A-1")
		b := scReferA81002(t, g, "CASE-B-1")

		rec, body := scCase(t, g, a.task, keyPRV01)
		task, _ := g.read(t, "/fhir/Task/"+a.task, keyPRV01)
		want := map[string]any{
			"CASE_REF": a.task, "REFERRAL_NUMBER": "CASE-A-1", "STATUS": "NEW", "REFERRED_AT": "20/11/2026",
			"RECEIVED_AT": str(task, "authoredOn"), "LAST_UPDATED": str(task, "meta", "lastUpdated"), "PRIORITY": "routine",
			"PRACTICE_CODE": "A81001", "NHS_NO": "9434765919", "GIVEN_NAME": "Irene", "FAMILY_NAME": "Testpatient",
			"BIRTH_DATE": "17/04/1961", "GENDER": "F", "PHONE": "07700 900123", "NEEDS": []any{"Long-term condition"},
			"NOTES": "Prefers a phone call after 2pm. Hard of hearing: speak clearly.", "CODES_ONLY_CONSENT": false,
		}
		for k, v := range want {
			if fmt.Sprint(rec[k]) != fmt.Sprint(v) {
				t.Errorf("PRV01 %s = %v, want %v", k, rec[k], v)
			}
		}
		// Only allowed fields, under the provider's names, in its order.
		m := scMappingPRV01()
		var order []string
		for _, f := range m.Fields {
			order = append(order, m.Rename[f])
		}
		keys := scKeys(body)
		last := -1
		for _, k := range keys {
			i := slices.Index(order, k)
			if i < 0 {
				t.Errorf("PRV01 record has %q, which its mapping does not allow", k)
			}
			if i <= last {
				t.Errorf("PRV01 record: %q out of order in %v", k, keys)
			}
			last = i
		}
		for _, neutral := range []string{"case_id", "nhs_number", "given_name", "email", "address_line", "postcode", "reason_text"} {
			if _, ok := rec[neutral]; ok {
				t.Errorf("PRV01 record has neutral field %q", neutral)
			}
		}
		for _, secret := range []string{"irene.testpatient@example.org", "NE4 5XX", "12 Example Terrace", "Socially isolated"} {
			if strings.Contains(string(body), secret) {
				t.Errorf("PRV01 record holds %q, which it is not allowed", secret)
			}
		}

		// PRV02: exactly its five fields (and the status), nothing else.
		_, body = scCase(t, g, b.task, keyPRV02)
		wantB := `{"caseRef":"` + b.task + `","referralNo":"CASE-B-1","firstName":"Irene","mobile":"07700 900123","needs":["long-term-condition"],"state":"new"}`
		if string(body) != wantB {
			t.Errorf("PRV02 record\n got %s\nwant %s", body, wantB)
		}
		for _, secret := range []string{"6541003238", "Testpatient", "1961-04-17", "17/04/1961", "nhsNo", "surname", "comments", "dob", "Prefers a phone call"} {
			if strings.Contains(string(body), secret) {
				t.Errorf("PRV02 record holds %q", secret)
			}
		}

		// The record follows the Task: accepted and contacted through FHIR.
		g.mustChange(t, a.task, keyPRV01, setStatus("accepted"))
		task = g.mustChange(t, a.task, keyPRV01, func(task map[string]any) {
			task["status"] = "in-progress"
			task["businessStatus"] = coded(businessStatusSystem, "first-contact-made", "")
		})
		rec, _ = scCase(t, g, a.task, keyPRV01)
		if rec["STATUS"] != "OPEN" || rec["BUSINESS_STATUS"] != "first-contact-made" || rec["LAST_UPDATED"] != str(task, "meta", "lastUpdated") {
			t.Errorf("PRV01 record after first contact: %v", rec)
		}
		if _, ok := rec["PROM_DUE"]; !ok {
			t.Errorf("PRV01 record of an accepted case has no PROM_DUE: %v", rec)
		}
	})
}

// TestCaseEvents: each provider's events, in its own vocabulary, go through
// the Task workflow; the FHIR Task shows each change.
func TestCaseEvents(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine, scWithCases(nil))

		// PRV01: accept, try to contact, make contact, record a PROM,
		// pause, resume, note, close.
		a := newReferral(t, g, "EV-A-1")
		rec := scMustEvent(t, g, a.task, keyPRV01, `{"event":"ACCEPT","note":"Allocated to Sam."}`)
		if rec["STATUS"] != "OPEN" || rec["CASE_REF"] != a.task {
			t.Errorf("ACCEPT answered %v", rec)
		}
		task, v := g.read(t, "/fhir/Task/"+a.task, keyPRV01)
		if task["status"] != "accepted" || v != 2 || !slices.Contains(scNotes(task), "Allocated to Sam.") {
			t.Errorf("after ACCEPT: version %d %v %v", v, task["status"], task["note"])
		}
		for _, n := range task["note"].([]any) {
			if str(n, "text") == "Allocated to Sam." && str(n, "authorString") == "" {
				t.Errorf("the case event's note has no author: %v", n)
			}
		}
		if str(task, "meta", "extension", 0, "valueReference", "reference") != "Organization/PRV01" {
			t.Errorf("who changed it: %v", task["meta"])
		}
		if _, ok := promDue(t, task); !ok {
			t.Errorf("accepted through the case API, but no PROM due: %v", task["extension"])
		}

		scMustEvent(t, g, a.task, keyPRV01, `{"event":"CONTACT_ATTEMPT","note":"No answer, left a voicemail"}`)
		task, v = g.read(t, "/fhir/Task/"+a.task, keyPRV01)
		if task["status"] != "accepted" || businessStatus(task) != "contact-attempted" || v != 3 {
			t.Errorf("after CONTACT_ATTEMPT: version %d %v %v", v, task["status"], task["businessStatus"])
		}

		rec = scMustEvent(t, g, a.task, keyPRV01, `{"event":"CONTACTED"}`)
		task, v = g.read(t, "/fhir/Task/"+a.task, keyPRV01)
		if task["status"] != "in-progress" || businessStatus(task) != "first-contact-made" || v != 4 {
			t.Errorf("after CONTACTED: version %d %v %v", v, task["status"], task["businessStatus"])
		}
		if got := outcomes(task); fmt.Sprint(got) != "[1362931000000106]" {
			t.Errorf("first contact through the case API: outcomes %v", got)
		}
		if rec["BUSINESS_STATUS"] != "first-contact-made" {
			t.Errorf("CONTACTED answered %v", rec)
		}

		// A PROM: SWEMWBS all 3s is raw 21, metric 19.25.
		rec = scMustEvent(t, g, a.task, keyPRV01, `{"event":"PROM","instrument":"swemwbs","answered_at":"`+scAnsweredAt()+
			`","answers":{"1":3,"2":3,"3":3,"6":3,"7":3,"9":3,"11":3}}`)
		task, v = g.read(t, "/fhir/Task/"+a.task, keyPRV01)
		refs := contentRefs(task)
		if v != 5 || task["status"] != "in-progress" || businessStatus(task) != "baseline-prom-complete" || len(refs) != 2 ||
			refTypes(refs) != "[QuestionnaireResponse Observation]" {
			t.Fatalf("after PROM: version %d %v %v %v", v, task["status"], task["businessStatus"], refs)
		}
		obs, _ := g.read(t, "/fhir/"+refs[1], keyA81001)
		if str(obs, "code", "coding", 0, "code") != "718466001" || obs["valueQuantity"].(map[string]any)["value"].(float64) != 19.25 {
			t.Errorf("PROM Observation %v", obs)
		}
		qr, _ := g.read(t, "/fhir/"+refs[0], keyPRV01)
		if str(qr, "subject", "reference") != "Patient/"+a.patient || str(qr, "basedOn", 0, "reference") != "ServiceRequest/"+a.request ||
			str(qr, "questionnaire") != "https://fhir.spgateway.org/Questionnaire/swemwbs" {
			t.Errorf("PROM response %v", qr)
		}
		if rec["BUSINESS_STATUS"] != "baseline-prom-complete" {
			t.Errorf("PROM answered %v", rec)
		}

		scMustEvent(t, g, a.task, keyPRV01, `{"event":"PAUSE","reason_text":"Patient in hospital"}`)
		task, _ = g.read(t, "/fhir/Task/"+a.task, keyPRV01)
		if task["status"] != "on-hold" || str(task, "statusReason", "coding", 0, "code") != "other" || str(task, "statusReason", "text") != "Patient in hospital" {
			t.Errorf("after PAUSE: %v %v", task["status"], task["statusReason"])
		}
		scMustEvent(t, g, a.task, keyPRV01, `{"event":"RESUME"}`)
		scMustEvent(t, g, a.task, keyPRV01, `{"event":"NOTE","note":"Joined the Tuesday walking group <3 & more"}`)
		task, _ = g.read(t, "/fhir/Task/"+a.task, keyPRV01)
		if task["status"] != "in-progress" || !slices.Contains(scNotes(task), "Joined the Tuesday walking group <3 & more") {
			t.Errorf("after RESUME and NOTE: %v %v", task["status"], task["note"])
		}

		rec = scMustEvent(t, g, a.task, keyPRV01, `{"event":"CLOSED","note":"Goals met"}`)
		task, v = g.read(t, "/fhir/Task/"+a.task, keyPRV01)
		if task["status"] != "completed" || businessStatus(task) != "case-closed" || !slices.Contains(scNotes(task), "Goals met") {
			t.Errorf("after CLOSED: %v %v", task["status"], task["businessStatus"])
		}
		if got := outcomes(task); fmt.Sprint(got) != "[1362931000000106 1362721000000106]" {
			t.Errorf("completed through the case API: outcomes %v", got)
		}
		if rec["STATUS"] != "CLOSED" {
			t.Errorf("CLOSED answered %v", rec)
		}
		// The practice sees the outcome.
		if pt, _ := g.read(t, "/fhir/Task/"+a.task, keyA81001); pt["status"] != "completed" {
			t.Errorf("practice sees %v", pt["status"])
		}
		// Nothing changes a final Task: 409, naming the status.
		for _, ev := range []string{`{"event":"ACCEPT"}`, `{"event":"NOTE","note":"late"}`, `{"event":"CONTACTED"}`,
			`{"event":"PROM","instrument":"swemwbs","answered_at":"` + scAnsweredAt() + `","answers":{"1":3,"2":3,"3":3,"6":3,"7":3,"9":3,"11":3}}`} {
			r := scEvent(g, a.task, keyPRV01, ev)
			scRefused(t, "after CLOSED "+ev, r, http.StatusConflict, "")
			if !names(t, r, "Task.status") && !names(t, r, "QuestionnaireResponse.basedOn") {
				t.Errorf("after CLOSED %s: names neither the status nor the referral: %s", ev, r.body)
			}
		}
		if _, after := g.read(t, "/fhir/Task/"+a.task, keyPRV01); after != v {
			t.Errorf("refused events wrote version %d (was %d)", after, v)
		}

		// Rejections carry the reason, and its text.
		d := newReferral(t, g, "EV-A-2")
		rec = scMustEvent(t, g, d.task, keyPRV01, `{"event":"DECLINE","reason_text":"Does not want support now"}`)
		task, _ = g.read(t, "/fhir/Task/"+d.task, keyPRV01)
		if task["status"] != "rejected" || str(task, "statusReason", "coding", 0, "system") != statusReasonSystem ||
			str(task, "statusReason", "coding", 0, "code") != "patient-declined" || str(task, "statusReason", "text") != "Does not want support now" {
			t.Errorf("after DECLINE: %v %v", task["status"], task["statusReason"])
		}
		if got := outcomes(task); fmt.Sprint(got) != "[871711000000103]" {
			t.Errorf("declined through the case API: outcomes %v", got)
		}
		if rec["STATUS"] != "OTHER" || rec["STATUS_REASON"] != "patient-declined" {
			t.Errorf("DECLINE answered %v", rec)
		}
		n := newReferral(t, g, "EV-A-3")
		scMustEvent(t, g, n.task, keyPRV01, `{"event":"NO_CONTACT","note":"Three calls, two letters"}`)
		task, _ = g.read(t, "/fhir/Task/"+n.task, keyPRV01)
		if task["status"] != "rejected" || str(task, "statusReason", "coding", 0, "code") != "unable-to-contact" ||
			!slices.Contains(scNotes(task), "Three calls, two letters") {
			t.Errorf("after NO_CONTACT: %v %v %v", task["status"], task["statusReason"], task["note"])
		}
		// Failed, once accepted.
		w := newReferral(t, g, "EV-A-4")
		scMustEvent(t, g, w.task, keyPRV01, `{"event":"ACCEPT"}`)
		scMustEvent(t, g, w.task, keyPRV01, `{"event":"WITHDRAWN","reason_text":"Moved away"}`)
		task, _ = g.read(t, "/fhir/Task/"+w.task, keyPRV01)
		if task["status"] != "failed" || str(task, "statusReason", "coding", 0, "code") != "other" || str(task, "statusReason", "text") != "Moved away" {
			t.Errorf("after WITHDRAWN: %v %v", task["status"], task["statusReason"])
		}
		// A status reason of other needs its text, as through FHIR.
		w2 := newReferral(t, g, "EV-A-5")
		scMustEvent(t, g, w2.task, keyPRV01, `{"event":"ACCEPT"}`)
		scRefused(t, "WITHDRAWN without text", scEvent(g, w2.task, keyPRV01, `{"event":"WITHDRAWN"}`), http.StatusUnprocessableEntity, "Task.statusReason")

		// PRV02, in its own vocabulary: accept, contact (business status
		// only), an ONS4 PROM by canonical URL, start, close.
		b := scReferA81002(t, g, "EV-B-1")
		rec = scMustEvent(t, g, b.task, keyPRV02, `{"event":"accepted"}`)
		if rec["state"] != "active" || rec["caseRef"] != b.task {
			t.Errorf("accepted answered %v", rec)
		}
		scMustEvent(t, g, b.task, keyPRV02, `{"event":"contacted","note":"Spoke on the phone"}`)
		task, _ = g.read(t, "/fhir/Task/"+b.task, keyPRV02)
		if task["status"] != "accepted" || businessStatus(task) != "first-contact-made" {
			t.Errorf("PRV02 after contacted: %v %v", task["status"], task["businessStatus"])
		}
		scMustEvent(t, g, b.task, keyPRV02, `{"event":"wellbeing-score","instrument":"https://fhir.spgateway.org/Questionnaire/ons4|1","answered_at":"`+
			scAnsweredAt()+`","answers":{"life-satisfaction":7,"worthwhile":8,"happy-yesterday":6,"anxious-yesterday":3}}`)
		task, _ = g.read(t, "/fhir/Task/"+b.task, keyPRV02)
		refs = contentRefs(task)
		if businessStatus(task) != "baseline-prom-complete" || refTypes(refs) != "[QuestionnaireResponse Observation]" {
			t.Fatalf("PRV02 after wellbeing-score: %v %v", task["businessStatus"], refs)
		}
		obs, _ = g.read(t, "/fhir/"+refs[1], keyPRV02)
		if comps, _ := obs["component"].([]any); len(comps) != 4 {
			t.Errorf("ONS4 Observation components: %v", obs["component"])
		}
		// Closing needs the work started first.
		scRefused(t, "PRV02 closes an accepted case", scEvent(g, b.task, keyPRV02, `{"event":"closed"}`), http.StatusConflict, "Task.status")
		scMustEvent(t, g, b.task, keyPRV02, `{"event":"started"}`)
		scMustEvent(t, g, b.task, keyPRV02, `{"event":"closed"}`)
		if task, _ = g.read(t, "/fhir/Task/"+b.task, keyA81002); task["status"] != "completed" {
			t.Errorf("PRV02 after closed: %v", task["status"])
		}
		b2 := scReferA81002(t, g, "EV-B-2")
		rec = scMustEvent(t, g, b2.task, keyPRV02, `{"event":"declined","reason_text":"Has support elsewhere"}`)
		if rec["state"] != "declined" {
			t.Errorf("declined answered %v", rec)
		}
		task, _ = g.read(t, "/fhir/Task/"+b2.task, keyPRV02)
		if task["status"] != "rejected" || str(task, "statusReason", "coding", 0, "code") != "patient-declined" {
			t.Errorf("PRV02 after declined: %v %v", task["status"], task["statusReason"])
		}
	})
}

// TestCaseEventRefused: events the workflow or the provider's vocabulary
// does not allow are refused with the status and an OperationOutcome naming
// what is wrong, and change nothing.
func TestCaseEventRefused(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine, scWithCases(nil))
		a := newReferral(t, g, "REF-EV-1")
		b := scReferA81002(t, g, "REF-EV-2")
		prom := func(answers string) string {
			return `{"event":"PROM","instrument":"swemwbs","answered_at":"` + scAnsweredAt() + `","answers":` + answers + `}`
		}
		cases := []struct {
			name   string
			id     string
			key    string
			body   string
			status int
			expr   string
		}{
			// Illegal transitions from requested: 409.
			{"close a new case", a.task, keyPRV01, `{"event":"CLOSED"}`, 409, "Task.status"},
			{"contact before accepting", a.task, keyPRV01, `{"event":"CONTACTED"}`, 409, "Task.status"},
			{"fail before accepting", a.task, keyPRV01, `{"event":"WITHDRAWN","reason_text":"Moved away"}`, 409, "Task.status"},
			{"pause before accepting", a.task, keyPRV01, `{"event":"PAUSE","reason_text":"x"}`, 409, "Task.status"},
			{"PROM before accepting", a.task, keyPRV01, prom(`{"1":3,"2":3,"3":3,"6":3,"7":3,"9":3,"11":3}`), 409, "QuestionnaireResponse.basedOn"},
			{"PRV02 closes a new case", b.task, keyPRV02, `{"event":"closed"}`, 409, "Task.status"},
			// Events the provider's mapping does not know: 422 naming event.
			{"unknown event", a.task, keyPRV01, `{"event":"TELEPORT"}`, 422, "event"},
			{"another provider's vocabulary", a.task, keyPRV01, `{"event":"accepted"}`, 422, "event"},
			{"PRV01's vocabulary from PRV02", b.task, keyPRV02, `{"event":"ACCEPT"}`, 422, "event"},
			{"no event", a.task, keyPRV01, `{"note":"hello"}`, 422, "event"},
			{"empty event", a.task, keyPRV01, `{"event":""}`, 422, "event"},
			// Members the event cannot carry: 422 naming them.
			{"reason for an event without one", a.task, keyPRV01, `{"event":"ACCEPT","reason_text":"because"}`, 422, "reason_text"},
			{"answers with a status event", a.task, keyPRV01, `{"event":"ACCEPT","answers":{"1":3}}`, 422, "answers"},
			{"a note event without a note", a.task, keyPRV01, `{"event":"NOTE"}`, 422, "note"},
			{"PROM without answers", a.task, keyPRV01, `{"event":"PROM","instrument":"swemwbs","answered_at":"2026-11-20T10:00:00Z"}`, 422, "answers"},
			{"PROM with a bad date", a.task, keyPRV01, `{"event":"PROM","instrument":"swemwbs","answered_at":"20/11/2026","answers":{"1":3}}`, 422, "answered_at"},
			// Not an event at all: 400.
			{"not JSON", a.task, keyPRV01, `ACCEPT`, 400, ""},
			{"truncated JSON", a.task, keyPRV01, `{"event":"ACCEPT"`, 400, ""},
			{"an array", a.task, keyPRV01, `[{"event":"ACCEPT"}]`, 400, ""},
			{"event a number", a.task, keyPRV01, `{"event":1}`, 400, "event"},
			{"unknown member", a.task, keyPRV01, `{"event":"ACCEPT","notes":"typo"}`, 400, "notes"},
			{"repeated member", a.task, keyPRV01, `{"event":"ACCEPT","event":"DECLINE"}`, 400, "event"},
			// Unknown cases: 404.
			{"unknown case", "no-such-case", keyPRV01, `{"event":"ACCEPT"}`, 404, ""},
			{"a ServiceRequest id", a.request, keyPRV01, `{"event":"ACCEPT"}`, 404, ""},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				scRefused(t, c.name, scEvent(g, c.id, c.key, c.body), c.status, c.expr)
			})
		}
		// None of them changed either Task.
		for _, x := range []struct{ id, key string }{{a.task, keyPRV01}, {b.task, keyPRV02}} {
			if task, v := g.read(t, "/fhir/Task/"+x.id, x.key); v != 1 || task["status"] != "requested" {
				t.Errorf("refused events changed Task %s: version %d %v", x.id, v, task["status"])
			}
		}

		// Once accepted, a PROM with a bad answer is refused with 422,
		// naming the item.
		scMustEvent(t, g, a.task, keyPRV01, `{"event":"ACCEPT"}`)
		r := scEvent(g, a.task, keyPRV01, prom(`{"1":9,"2":3,"3":3,"6":3,"7":3,"9":3,"11":3}`))
		scRefused(t, "PROM answer out of range", r, http.StatusUnprocessableEntity, "QuestionnaireResponse.item.where(linkId='1').answer")
		r = scEvent(g, a.task, keyPRV01, `{"event":"PROM","instrument":"no-such-scale","answered_at":"`+scAnsweredAt()+`","answers":{"1":3}}`)
		scRefused(t, "unknown instrument", r, http.StatusUnprocessableEntity, "QuestionnaireResponse.questionnaire")
		future := time.Now().UTC().Add(24 * time.Hour).Format(time.RFC3339)
		r = scEvent(g, a.task, keyPRV01, `{"event":"PROM","instrument":"swemwbs","answered_at":"`+future+`","answers":{"1":3,"2":3,"3":3,"6":3,"7":3,"9":3,"11":3}}`)
		scRefused(t, "PROM answered tomorrow", r, http.StatusUnprocessableEntity, "QuestionnaireResponse.authored")
		// Accepting again is no change (from == to) and not refused; going
		// back is not a step.
		scRefused(t, "decline once accepted", scEvent(g, a.task, keyPRV01, `{"event":"DECLINE","reason_text":"x"}`), http.StatusConflict, "Task.status")
		if task, v := g.read(t, "/fhir/Task/"+a.task, keyPRV01); v != 2 || task["status"] != "accepted" {
			t.Errorf("refused events after ACCEPT changed the Task: version %d %v", v, task["status"])
		}
	})
}

// TestCaseTenancy: the case API is for providers with case records, each
// to its own cases.
func TestCaseTenancy(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine, scWithCases(nil))
		a := newReferral(t, g, "TEN-A-1")
		b := scReferA81002(t, g, "TEN-B-1")

		// A stranger's case is unknown.
		scRefused(t, "PRV02 reads PRV01's case", g.get("/api/v1/cases/"+a.task, keyPRV02), http.StatusNotFound, "")
		scRefused(t, "PRV01 reads PRV02's case", g.get("/api/v1/cases/"+b.task, keyPRV01), http.StatusNotFound, "")
		scRefused(t, "PRV02 events PRV01's case", scEvent(g, a.task, keyPRV02, `{"event":"accepted"}`), http.StatusNotFound, "")
		scRefused(t, "PRV02 PROM on PRV01's case", scEvent(g, a.task, keyPRV02, `{"event":"wellbeing-score","instrument":"ons4","answered_at":"`+
			scAnsweredAt()+`","answers":{"life-satisfaction":7,"worthwhile":8,"happy-yesterday":6,"anxious-yesterday":3}}`), http.StatusNotFound, "")
		scRefused(t, "PRV01 events PRV02's case", scEvent(g, b.task, keyPRV01, `{"event":"ACCEPT"}`), http.StatusNotFound, "")
		if l := scListCases(t, g, "", keyPRV01); fmt.Sprint(scIDs(l.Cases, "CASE_REF")) != fmt.Sprint([]string{a.task}) {
			t.Errorf("PRV01 lists %s", l.Cases)
		}
		if l := scListCases(t, g, "", keyPRV02); fmt.Sprint(scIDs(l.Cases, "caseRef")) != fmt.Sprint([]string{b.task}) {
			t.Errorf("PRV02 lists %s", l.Cases)
		}

		// Practices and operators may not use it at all; nobody without a
		// key.
		for _, who := range []struct {
			name, key string
			status    int
		}{
			{"practice", keyA81001, http.StatusForbidden},
			{"other practice", keyA81002, http.StatusForbidden},
			{"admin", keyAdmin, http.StatusForbidden},
			{"no key", "", http.StatusUnauthorized},
			{"unknown key", "not-a-key", http.StatusUnauthorized},
		} {
			scRefused(t, who.name+" lists", g.get("/api/v1/cases", who.key), who.status, "")
			scRefused(t, who.name+" reads", g.get("/api/v1/cases/"+a.task, who.key), who.status, "")
			scRefused(t, who.name+" events", scEvent(g, a.task, who.key, `{"event":"ACCEPT"}`), who.status, "")
		}
		if r := g.get("/api/v1/cases", ""); r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("401 without WWW-Authenticate")
		}
		for _, x := range []struct{ id, key string }{{a.task, keyPRV01}, {b.task, keyPRV02}} {
			if task, v := g.read(t, "/fhir/Task/"+x.id, x.key); v != 1 || task["status"] != "requested" {
				t.Errorf("refused events changed Task %s: version %d %v", x.id, v, task["status"])
			}
		}

		// A provider without a case-record mapping uses FHIR.
		only := newGateway(t, engine, scWithCases([]string{"PRV01"}))
		c := scReferA81002(t, only, "TEN-B-2")
		scRefused(t, "unmapped provider lists", only.get("/api/v1/cases", keyPRV02), http.StatusForbidden, "")
		scRefused(t, "unmapped provider reads", only.get("/api/v1/cases/"+c.task, keyPRV02), http.StatusForbidden, "")
		scRefused(t, "unmapped provider events", scEvent(only, c.task, keyPRV02, `{"event":"accepted"}`), http.StatusForbidden, "")
		if task, v := only.read(t, "/fhir/Task/"+c.task, keyPRV02); v != 1 || task["status"] != "requested" {
			t.Errorf("unmapped provider's event changed the Task: version %d %v", v, task["status"])
		}
		none := newGateway(t, engine)
		d := newReferral(t, none, "TEN-A-2")
		scRefused(t, "no case records lists", none.get("/api/v1/cases", keyPRV01), http.StatusForbidden, "")
		scRefused(t, "no case records reads", none.get("/api/v1/cases/"+d.task, keyPRV01), http.StatusForbidden, "")
		scRefused(t, "no case records events", scEvent(none, d.task, keyPRV01, `{"event":"ACCEPT"}`), http.StatusForbidden, "")
	})
}

// TestCaseList: the list filters by status, pages by count and cursor,
// and refuses what it does not understand.
func TestCaseList(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine, scWithCases(nil), withLimits(1<<20, 64, 3, 5))
		var refs []referral
		for i := range 7 {
			refs = append(refs, newReferral(t, g, fmt.Sprintf("LIST-%d", i)))
		}
		scReferA81002(t, g, "LIST-B") // PRV02's, never in PRV01's list
		// 0 accepted, 1 in progress, 2 rejected, 3 completed; 4-6 new.
		scMustEvent(t, g, refs[0].task, keyPRV01, `{"event":"ACCEPT"}`)
		scMustEvent(t, g, refs[1].task, keyPRV01, `{"event":"ACCEPT"}`)
		scMustEvent(t, g, refs[1].task, keyPRV01, `{"event":"CONTACTED"}`)
		scMustEvent(t, g, refs[2].task, keyPRV01, `{"event":"DECLINE"}`)
		scMustEvent(t, g, refs[3].task, keyPRV01, `{"event":"ACCEPT"}`)
		scMustEvent(t, g, refs[3].task, keyPRV01, `{"event":"CONTACTED"}`)
		scMustEvent(t, g, refs[3].task, keyPRV01, `{"event":"CLOSED"}`)
		ids := func(i ...int) []string {
			var out []string
			for _, n := range i {
				out = append(out, refs[n].task)
			}
			return out
		}
		all := func(query string) []string {
			t.Helper()
			var out []string
			for page := 0; ; page++ {
				l := scListCases(t, g, query, keyPRV01)
				out = append(out, scIDs(l.Cases, "CASE_REF")...)
				if l.Next == "" {
					return out
				}
				if len(l.Cases) == 0 || page > 20 {
					t.Fatalf("%s: a next link after page %d of %d cases", query, page, len(l.Cases))
				}
				q, _ := url.ParseQuery(strings.TrimPrefix(query, "?"))
				q.Set("cursor", l.Next)
				query = "?" + q.Encode()
			}
		}
		// Oldest change first: the new cases in the order they came, the
		// changed ones in the order of their last change.
		for _, c := range []struct {
			query string
			want  []string
		}{
			{"", ids(4, 5, 6, 0, 1, 2, 3)},
			{"?status=new", ids(4, 5, 6)},
			{"?status=requested", ids(4, 5, 6)},
			{"?status=open", ids(4, 5, 6, 0, 1)},
			{"?status=accepted", ids(0)},
			{"?status=in-progress,completed", ids(1, 3)},
			{"?status=rejected", ids(2)},
			{"?status=new,accepted", ids(4, 5, 6, 0)},
			{"?status=cancelled", nil},
			{"?status=new&count=1", ids(4, 5, 6)},
			{"?count=2", ids(4, 5, 6, 0, 1, 2, 3)},
		} {
			if got := all(c.query); fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("cases%s: got %v, want %v", c.query, got, c.want)
			}
		}
		// Page sizes: the default, the cap, and the last page.
		if l := scListCases(t, g, "", keyPRV01); len(l.Cases) != 3 || l.Next == "" {
			t.Errorf("default page: %d cases, next %q", len(l.Cases), l.Next)
		}
		if l := scListCases(t, g, "?count=100", keyPRV01); len(l.Cases) != 5 || l.Next == "" {
			t.Errorf("count over the cap: %d cases, next %q", len(l.Cases), l.Next)
		}
		if l := scListCases(t, g, "?count=7", keyPRV01); len(l.Cases) != 5 {
			t.Errorf("count=7 with a cap of 5: %d cases", len(l.Cases))
		}
		if l := scListCases(t, g, "?status=new&count=3", keyPRV01); len(l.Cases) != 3 || l.Next != "" {
			t.Errorf("exactly one page: %d cases, next %q", len(l.Cases), l.Next)
		}
		r := g.get("/api/v1/cases?status=cancelled", keyPRV01)
		if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != `{"cases":[]}` {
			t.Errorf("no cases: %d %s", r.status, r.body)
		}
		// Each listed record is the record GET /api/v1/cases/{id} answers.
		l := scListCases(t, g, "?status=in-progress", keyPRV01)
		if _, one := scCase(t, g, refs[1].task, keyPRV01); len(l.Cases) != 1 || string(l.Cases[0]) != string(one) {
			t.Errorf("listed record %s\n   read record %s", l.Cases, one)
		}

		// Refusals: 400 naming the parameter.
		first := scListCases(t, g, "?status=new&count=1", keyPRV01)
		for _, c := range []struct {
			query, expr string
		}{
			{"?status=bogus", "status"},
			{"?status=new,bogus", "status"},
			{"?status=NEW", "status"},
			{"?count=0", ""},
			{"?count=-1", ""},
			{"?count=ten", ""},
			{"?count=1.5", ""},
			{"?cursor=bogus", ""},
			{"?cursor=" + strings.Repeat("A", 200), ""},
			// A cursor belongs to its list.
			{"?status=open&cursor=" + first.Next, ""},
			{"?cursor=" + first.Next, ""},
		} {
			r := g.get("/api/v1/cases"+c.query, keyPRV01)
			scRefused(t, "cases"+c.query, r, http.StatusBadRequest, c.expr)
			if r.status == http.StatusBadRequest && scIssueText(t, r) == "" {
				t.Errorf("cases%s: no diagnostics: %s", c.query, r.body)
			}
		}
		// The same cursor with its own list goes on.
		if l := scListCases(t, g, "?status=new&count=1&cursor="+first.Next, keyPRV01); fmt.Sprint(scIDs(l.Cases, "CASE_REF")) != fmt.Sprint(ids(5)) {
			t.Errorf("second page: %s", l.Cases)
		}
	})
}

// TestCasePagingWhileWriting: paging through the cases while referrals
// arrive and cases change returns every case of the first page's moment
// exactly once, in order, and none that came later.
func TestCasePagingWhileWriting(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine, scWithCases(nil))
		for i := range 10 {
			newReferral(t, g, fmt.Sprintf("PAGE-%d", i))
		}
		for _, status := range []string{"new", ""} {
			t.Run("status="+status, func(t *testing.T) {
				query := "?count=3"
				if status != "" {
					query += "&status=" + status
				}
				before := scIDs(scListCases(t, g, "?count=100&status="+status, keyPRV01).Cases, "CASE_REF")
				var got []string
				pages, round := 0, 0
				next := query
				for next != "" {
					l := scListCases(t, g, next, keyPRV01)
					pages++
					got = append(got, scIDs(l.Cases, "CASE_REF")...)
					if l.Next == "" {
						break
					}
					next = query + "&cursor=" + url.QueryEscape(l.Next)
					// Between pages: a new referral, and a change to a case
					// not yet listed and to one already listed.
					round++
					newReferral(t, g, fmt.Sprintf("PAGE-%s-%d", status, round))
					if len(got) < len(before) {
						scMustEvent(t, g, before[len(before)-1], keyPRV01, `{"event":"NOTE","note":"seen"}`)
					}
					scMustEvent(t, g, got[0], keyPRV01, `{"event":"NOTE","note":"again"}`)
					if pages > 20 {
						t.Fatal("too many pages")
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(before) {
					t.Errorf("pages skipped, repeated or added cases:\n got %v\nwant %v", got, before)
				}
				if want := (len(before) + 2) / 3; pages != want {
					t.Errorf("%d pages for %d cases at 3 a page, want %d", pages, len(before), want)
				}
				// A new list sees the writes.
				after := scIDs(scListCases(t, g, "?count=100&status="+status, keyPRV01).Cases, "CASE_REF")
				if len(after) <= len(before) {
					t.Errorf("writes during paging not visible to a new list: %d then %d", len(before), len(after))
				}
			})
		}
	})
}

// TestCasePush: a referral routed to a provider whose case records are
// pushed enqueues its case record for it; the provider's own changes are
// not pushed back.
func TestCasePush(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine, scWithCases(nil, "PRV01"))
		toPRV01 := func() []gateway.OutboxEvent {
			return scTo(scOutbox(t, g, gateway.OutboxPending), gateway.ProviderDestination("PRV01"))
		}

		a := newReferral(t, g, "PUSH-1")
		events := toPRV01()
		if len(events) != 1 {
			t.Fatalf("%d events for PRV01 after a referral: %+v", len(events), scOutbox(t, g, gateway.OutboxPending))
		}
		e := events[0]
		if e.Destination != "provider:PRV01" || e.Kind != gateway.EventCaseRecord || e.OrderKey != a.task || e.TaskVersion != 1 ||
			e.Status != gateway.OutboxPending || e.ID == "" {
			t.Errorf("event %+v", e)
		}
		_, rec := scCase(t, g, a.task, keyPRV01)
		if string(e.Payload) != string(rec) {
			t.Errorf("payload is not the provider's case record:\n got %s\nwant %s", e.Payload, rec)
		}
		if gjson.GetBytes(e.Payload, "NHS_NO").String() != "9434765919" || gjson.GetBytes(e.Payload, "nhs_number").Exists() {
			t.Errorf("payload not in the provider's names: %s", e.Payload)
		}

		// The provider's own changes, through the case API, FHIR or a
		// PROM, are not pushed back to it.
		scMustEvent(t, g, a.task, keyPRV01, `{"event":"ACCEPT"}`)
		g.mustChange(t, a.task, keyPRV01, func(task map[string]any) {
			task["status"] = "in-progress"
			task["businessStatus"] = coded(businessStatusSystem, "first-contact-made", "")
		})
		scMustEvent(t, g, a.task, keyPRV01, `{"event":"PROM","instrument":"swemwbs","answered_at":"`+scAnsweredAt()+
			`","answers":{"1":3,"2":3,"3":3,"6":3,"7":3,"9":3,"11":3}}`)
		if got := toPRV01(); len(got) != 1 {
			t.Errorf("the provider's own changes were pushed to it: %+v", got[1:])
		}

		// The practice's change is.
		task := g.mustChange(t, a.task, keyA81001, setStatusWithReason("cancelled", "referred-elsewhere", "Seen by the practice team"))
		events = toPRV01()
		if len(events) != 2 {
			t.Fatalf("%d events after the practice cancelled", len(events))
		}
		e = events[1]
		if e.OrderKey != a.task || e.TaskVersion != versionOf(task) || e.Kind != gateway.EventCaseRecord || e.Seq <= events[0].Seq {
			t.Errorf("event after cancelling %+v (Task version %d)", e, versionOf(task))
		}
		_, rec = scCase(t, g, a.task, keyPRV01)
		if string(e.Payload) != string(rec) || gjson.GetBytes(e.Payload, "STATUS").String() != "OTHER" ||
			gjson.GetBytes(e.Payload, "STATUS_REASON").String() != "referred-elsewhere" {
			t.Errorf("payload after cancelling:\n got %s\nwant %s", e.Payload, rec)
		}
		// So is revoking a referral.
		b := newReferral(t, g, "PUSH-2")
		sr, _ := g.read(t, "/fhir/ServiceRequest/"+b.request, keyA81001)
		sr["status"] = "entered-in-error"
		if r := g.put(t, "/fhir/ServiceRequest/"+b.request, keyA81001, 0, sr); r.status != http.StatusOK {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		var forB []gateway.OutboxEvent
		for _, e := range toPRV01() {
			if e.OrderKey == b.task {
				forB = append(forB, e)
			}
		}
		if len(forB) != 2 || forB[0].TaskVersion != 1 || forB[1].TaskVersion != 2 ||
			gjson.GetBytes(forB[1].Payload, "STATUS").String() != "OTHER" {
			t.Errorf("events for a revoked referral: %+v", forB)
		}

		// New details of a known patient: the provider gets the case
		// records of the patient's other open referrals again, with them;
		// closed ones are not sent again.
		open1 := newReferral(t, g, "PUSH-4")
		count := len(toPRV01())
		newer := sendReferral(t, g, []byte(strings.ReplaceAll(string(referralBundle(t, "PUSH-5", "")), "07700 900123", "07700 900999")))
		if newer.patient != open1.patient {
			t.Fatalf("the second referral is for another patient: %s, %s", newer.patient, open1.patient)
		}
		got := toPRV01()[count:]
		byTask := map[string][]gateway.OutboxEvent{}
		for _, e := range got {
			byTask[e.OrderKey] = append(byTask[e.OrderKey], e)
		}
		if len(got) != 2 || len(byTask[newer.task]) != 1 || len(byTask[open1.task]) != 1 {
			t.Fatalf("events after new patient details: %+v", got)
		}
		for id, es := range byTask {
			_, rec := scCase(t, g, id, keyPRV01)
			if string(es[0].Payload) != string(rec) || gjson.GetBytes(es[0].Payload, "PHONE").String() != "07700 900999" {
				t.Errorf("case %s pushed %s\nwant %s", id, es[0].Payload, rec)
			}
		}

		// New details the provider's record does not hold (PRV01 gets no
		// email): what it has is not sent again under a new delivery id.
		count = len(toPRV01())
		body := strings.ReplaceAll(string(referralBundle(t, "PUSH-6", "")), "07700 900123", "07700 900999")
		third := sendReferral(t, g, []byte(strings.ReplaceAll(body, "irene.testpatient@example.org", "irene@example.net")))
		if third.patient != open1.patient {
			t.Fatalf("the third referral is for another patient")
		}
		if got := toPRV01()[count:]; len(got) != 1 || got[0].OrderKey != third.task {
			t.Errorf("events after details PRV01 does not hold: %+v", got)
		}

		// PRV02 polls: nothing is pushed to it.
		c := scReferA81002(t, g, "PUSH-3")
		scMustEvent(t, g, c.task, keyPRV02, `{"event":"accepted"}`)
		g.mustChange(t, c.task, keyA81002, setStatusWithReason("cancelled", "duplicate", ""))
		for _, e := range scOutbox(t, g, gateway.OutboxPending) {
			if e.Destination != "provider:PRV01" {
				t.Errorf("event for %s: %+v", e.Destination, e)
			}
		}
	})
}

// TestCaseListSince: since keeps the cases changed at or after it, pages
// with its own cursor, and is refused when it is not a FHIR dateTime.
func TestCaseListSince(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		t0 := time.Date(2027, 3, 1, 9, 0, 0, 0, time.UTC)
		clk := &handClock{now: t0}
		g := newGateway(t, engine, scWithCases(nil), withNow(clk.Now), withLimits(1<<20, 64, 2, 5))
		var refs []referral
		for i := range 4 {
			clk.set(t0.Add(time.Duration(i) * time.Hour)) // 09:00, 10:00, 11:00, 12:00
			refs = append(refs, newReferral(t, g, fmt.Sprintf("SINCE-%d", i)))
		}
		clk.set(t0.Add(24 * time.Hour)) // the next day, case 0 accepted
		scMustEvent(t, g, refs[0].task, keyPRV01, `{"event":"ACCEPT"}`)

		list := func(query string) []string {
			t.Helper()
			var out []string
			for page := 0; ; page++ {
				l := scListCases(t, g, query, keyPRV01)
				out = append(out, scIDs(l.Cases, "CASE_REF")...)
				if l.Next == "" || page > 10 {
					return out
				}
				q, _ := url.ParseQuery(strings.TrimPrefix(query, "?"))
				q.Set("cursor", l.Next)
				query = "?" + q.Encode()
			}
		}
		ids := func(i ...int) []string {
			var out []string
			for _, n := range i {
				out = append(out, refs[n].task)
			}
			return out
		}
		for _, c := range []struct {
			query string
			want  []string
		}{
			{"?since=2027-03-01T10:00:00Z", ids(1, 2, 3, 0)},              // at or after: case 1 changed at 10:00
			{"?since=2027-03-01T10:00:00.000001Z", ids(2, 3, 0)},          // just after
			{"?since=2027-03-01T11:30:00%2B01:00", ids(2, 3, 0)},          // 10:30 UTC, offset encoded
			{"?since=2027-03-01T11:30:00+01:00", ids(2, 3, 0)},            // unencoded: the + arrives as a space
			{"?since=2027-03-02", ids(0)},                                 // a date: from its start
			{"?since=2027-03-02T09:00:00Z&status=new", nil},               // case 0 is accepted
			{"?since=2027-03-01T11:00:00Z&status=new&count=1", ids(2, 3)}, // paged
			{"?since=2028-01-01T00:00:00Z", nil},                          // nothing yet
		} {
			if got := list(c.query); fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("cases%s: got %v, want %v", c.query, got, c.want)
			}
		}

		// A cursor belongs to its query, since included.
		l := scListCases(t, g, "?since=2027-03-01T09:00:00Z", keyPRV01)
		if l.Next == "" {
			t.Fatal("no next link")
		}
		for _, q := range []string{"?cursor=" + url.QueryEscape(l.Next), "?since=2027-03-01T10:00:00Z&cursor=" + url.QueryEscape(l.Next)} {
			r := g.get("/api/v1/cases"+q, keyPRV01)
			if r.status != http.StatusBadRequest || !strings.Contains(outcomeIssues(t, r)[0]["diagnostics"].(string), "cursor") {
				t.Errorf("cases%s: %d %s", q, r.status, r.body)
			}
		}
		for _, bad := range []string{"yesterday", "2027-13-01", "2027-03-01T10:00", "gt2027-03-01"} {
			r := g.get("/api/v1/cases?since="+url.QueryEscape(bad), keyPRV01)
			if r.status != http.StatusBadRequest {
				t.Errorf("since=%s: %d %s", bad, r.status, r.body)
				continue
			}
			if is := outcomeIssues(t, r); len(is) != 1 || !strings.HasPrefix(is[0]["diagnostics"].(string), "since: ") {
				t.Errorf("since=%s: %s", bad, r.body)
			}
		}
	})
}
