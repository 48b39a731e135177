package fhir_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// referral is one referral as the tests refer to it.
type referral struct {
	task, request, patient string
}

// newReferral sends the fixture Bundle with its own identifier and returns
// the ids of its Task, ServiceRequest and Patient.
func newReferral(t testing.TB, g *testGateway, identifier string) referral {
	t.Helper()
	return sendReferral(t, g, referralBundle(t, identifier, ""))
}

func sendReferral(t testing.TB, g *testGateway, body []byte) referral {
	t.Helper()
	r := g.post("/fhir", keyA81001, body)
	if r.status != 200 {
		t.Fatalf("referral: %d %s", r.status, r.body)
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
	tasks, _ := entries(t, g.get("/fhir/Task?focus=ServiceRequest/"+ref.request, keyA81001))
	if len(tasks) != 1 {
		t.Fatalf("%d tasks for the referral", len(tasks))
	}
	ref.task = str(tasks[0], "id")
	return ref
}

// read returns a resource as key sees it, with its version.
func (g *testGateway) read(t testing.TB, path, key string) (map[string]any, int) {
	t.Helper()
	r := g.get(path, key)
	if r.status != 200 {
		t.Fatalf("read %s: %d %s", path, r.status, r.body)
	}
	m := r.json(t)
	var v int
	fmt.Sscanf(str(m, "meta", "versionId"), "%d", &v)
	return m, v
}

// put sends doc as the next version of path with If-Match: W/"version"
// (none when version is 0).
func (g *testGateway) put(t testing.TB, path, key string, version int, doc map[string]any, headers ...string) response {
	t.Helper()
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if version > 0 {
		headers = append(headers, "If-Match", fmt.Sprintf(`W/"%d"`, version))
	}
	return g.do("PUT", path, key, b, headers...)
}

// change reads the Task as key, applies edit, and sends it back.
func (g *testGateway) change(t testing.TB, id, key string, edit func(task map[string]any)) response {
	t.Helper()
	task, v := g.read(t, "/fhir/Task/"+id, key)
	edit(task)
	return g.put(t, "/fhir/Task/"+id, key, v, task)
}

// mustChange is change that must succeed.
func (g *testGateway) mustChange(t testing.TB, id, key string, edit func(task map[string]any)) map[string]any {
	t.Helper()
	r := g.change(t, id, key, edit)
	if r.status != 200 {
		t.Fatalf("update: %d %s", r.status, r.body)
	}
	return r.json(t)
}

func coded(system, code, text string) map[string]any {
	c := map[string]any{"coding": []any{map[string]any{"system": system, "code": code}}}
	if text != "" {
		c["text"] = text
	}
	return c
}

const (
	statusReasonSystem   = "https://fhir.spgateway.org/CodeSystem/status-reason"
	businessStatusSystem = "https://fhir.spgateway.org/CodeSystem/business-status"
	snomed               = "http://snomed.info/sct"
)

func setStatus(status string) func(map[string]any) {
	return func(task map[string]any) { task["status"] = status }
}

func setStatusWithReason(status, reason, text string) func(map[string]any) {
	return func(task map[string]any) {
		task["status"] = status
		task["statusReason"] = coded(statusReasonSystem, reason, text)
	}
}

// outcomes lists the SNOMED CT codes of a Task's resulting-activity outputs.
func outcomes(task map[string]any) []string {
	var out []string
	list, _ := task["output"].([]any)
	for _, o := range list {
		if str(o, "type", "coding", 0, "code") == "resulting-activity" && str(o, "valueCodeableConcept", "coding", 0, "system") == snomed {
			out = append(out, str(o, "valueCodeableConcept", "coding", 0, "code"))
		}
	}
	return out
}

// TestTaskLifecycle: the provider accepts, makes first contact, works and
// completes the referral; the gateway adds the outcome codes; the practice
// sees them.
func TestTaskLifecycle(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		ref := newReferral(t, g, "LIFE-1")

		g.mustChange(t, ref.task, keyPRV01, setStatus("received"))
		task := g.mustChange(t, ref.task, keyPRV01, setStatus("accepted"))
		if task["status"] != "accepted" || str(task, "meta", "versionId") != "3" {
			t.Fatalf("accepted: %v", task)
		}
		task = g.mustChange(t, ref.task, keyPRV01, func(task map[string]any) {
			task["status"] = "in-progress"
			task["businessStatus"] = coded(businessStatusSystem, "first-contact-made", "")
		})
		if got := outcomes(task); fmt.Sprint(got) != "[1362931000000106]" {
			t.Errorf("first contact: outcomes %v", got)
		}
		// Another change keeps the code, and does not add it twice.
		task = g.mustChange(t, ref.task, keyPRV01, func(task map[string]any) {
			task["note"] = []any{map[string]any{"text": "Joined the Tuesday walking group."}}
		})
		if got := outcomes(task); fmt.Sprint(got) != "[1362931000000106]" {
			t.Errorf("later change: outcomes %v", got)
		}
		task = g.mustChange(t, ref.task, keyPRV01, setStatus("completed"))
		if got := outcomes(task); fmt.Sprint(got) != "[1362931000000106 1362721000000106]" {
			t.Errorf("completed: outcomes %v", got)
		}
		if str(task, "meta", "extension", 0, "valueReference", "reference") != "Organization/PRV01" ||
			str(task, "meta", "extension", 0, "valueReference", "display") != "provider-prv01" {
			t.Errorf("who changed it: %v", task["meta"])
		}
		if task["lastModified"] != str(task, "meta", "lastUpdated") {
			t.Errorf("lastModified %v, lastUpdated %v", task["lastModified"], str(task, "meta", "lastUpdated"))
		}

		// The practice polls and finds the outcome.
		res, _ := entries(t, g.get("/fhir/Task?requester=Organization/A81001&status=completed", keyA81001))
		if len(res) != 1 || fmt.Sprint(outcomes(res[0])) != "[1362931000000106 1362721000000106]" {
			t.Fatalf("practice poll: %v", res)
		}
		// Nothing changes after a final status.
		r := g.change(t, ref.task, keyPRV01, func(task map[string]any) { task["note"] = []any{map[string]any{"text": "late"}} })
		if r.status != 409 || !names(t, r, "Task.status") {
			t.Errorf("change after completed: %d %s", r.status, r.body)
		}
		r = g.change(t, ref.task, keyA81001, setStatusWithReason("cancelled", "other", "changed my mind"))
		if r.status != 409 {
			t.Errorf("cancel after completed: %d %s", r.status, r.body)
		}
	})
}

// TestTaskRejectedAsDeclined: rejection needs a reason; declined adds the
// SNOMED CT code for the GP record.
func TestTaskRejectedAsDeclined(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		ref := newReferral(t, g, "DECL-1")
		r := g.change(t, ref.task, keyPRV01, setStatus("rejected"))
		if r.status != 422 || !names(t, r, "Task.statusReason") {
			t.Fatalf("rejected without a reason: %d %s", r.status, r.body)
		}
		task := g.mustChange(t, ref.task, keyPRV01, setStatusWithReason("rejected", "patient-declined", "Does not want to be contacted"))
		if got := outcomes(task); fmt.Sprint(got) != "[871711000000103]" {
			t.Errorf("declined: outcomes %v", got)
		}
		other := newReferral(t, g, "DECL-2")
		task = g.mustChange(t, other.task, keyPRV01, setStatusWithReason("rejected", "out-of-area", ""))
		if got := outcomes(task); len(got) != 0 {
			t.Errorf("out of area: outcomes %v", got)
		}
	})
}

// TestTaskUpdateRefusals breaks each rule of a Task update once and checks
// the status and the element the OperationOutcome names.
func TestTaskUpdateRefusals(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		ref := newReferral(t, g, "REF-1")
		path := "/fhir/Task/" + ref.task
		task, v := g.read(t, path, keyPRV01)

		// If-Match is required, must name a version, and must be current.
		if r := g.put(t, path, keyPRV01, 0, task); r.status != 428 {
			t.Errorf("no If-Match: %d %s", r.status, r.body)
		}
		if r := g.put(t, path, keyPRV01, 0, task, "If-Match", "yesterday"); r.status != 400 {
			t.Errorf("bad If-Match: %d", r.status)
		}
		if r := g.put(t, path, keyPRV01, v+1, task); r.status != 412 || outcomeIssues(t, r)[0]["code"] != "conflict" {
			t.Errorf("future If-Match: %d %s", r.status, r.body)
		}
		// The id in the body is the id in the URL.
		wrong := clone(task)
		wrong["id"] = "another"
		if r := g.put(t, path, keyPRV01, v, wrong); r.status != 400 || !names(t, r, "Task.id") {
			t.Errorf("id mismatch: %d %s", r.status, r.body)
		}
		cases := []struct {
			name   string
			key    string
			edit   func(map[string]any)
			status int
			expr   string
		}{
			{"provider changes for", keyPRV01, func(m map[string]any) { m["for"] = map[string]any{"reference": "Patient/someone-else"} }, 403, "Task.for"},
			{"provider changes focus", keyPRV01, func(m map[string]any) { m["focus"] = map[string]any{"reference": "ServiceRequest/x"} }, 403, "Task.focus"},
			{"provider changes requester", keyPRV01, func(m map[string]any) { m["requester"] = map[string]any{"reference": "Organization/A81002"} }, 403, "Task.requester"},
			{"provider changes owner", keyPRV01, func(m map[string]any) { m["owner"] = map[string]any{"reference": "Organization/PRV02"} }, 403, "Task.owner"},
			{"provider cancels", keyPRV01, setStatusWithReason("cancelled", "no-capacity", ""), 403, "Task.status"},
			{"practice accepts", keyA81001, setStatus("accepted"), 403, "Task.status"},
			{"practice adds a note", keyA81001, func(m map[string]any) { m["note"] = []any{map[string]any{"text": "x"}} }, 403, "Task.note"},
			{"practice sets a reason without cancelling", keyA81001, func(m map[string]any) {
				m["statusReason"] = coded(statusReasonSystem, "duplicate", "")
			}, 403, "Task.statusReason"},
			{"provider skips to completed", keyPRV01, setStatus("completed"), 409, "Task.status"},
			{"provider sets draft", keyPRV01, setStatus("draft"), 403, "Task.status"},
			{"unknown status", keyPRV01, setStatus("bogus"), 400, "Task.status"},
			{"no status", keyPRV01, func(m map[string]any) { delete(m, "status") }, 422, "Task.status"},
			{"cancel without reason", keyA81001, setStatus("cancelled"), 422, "Task.statusReason"},
			{"reason from another system", keyA81001, func(m map[string]any) {
				m["status"] = "cancelled"
				m["statusReason"] = coded("http://example.org/reasons", "moved", "")
			}, 422, "Task.statusReason"},
			{"reason other without text", keyA81001, setStatusWithReason("cancelled", "other", ""), 422, "Task.statusReason"},
			{"unknown business status", keyPRV01, func(m map[string]any) { m["businessStatus"] = coded(businessStatusSystem, "tea-drunk", "") }, 422, "Task.businessStatus"},
			{"business status of another system", keyPRV01, func(m map[string]any) { m["businessStatus"] = coded("http://example.org", "x", "") }, 422, "Task.businessStatus"},
			{"output of unknown type", keyPRV01, func(m map[string]any) {
				m["output"] = []any{map[string]any{"type": coded("http://example.org", "x", ""), "valueString": "y"}}
			}, 422, "Task.output[0].type"},
			{"outcome without a code", keyPRV01, func(m map[string]any) {
				m["output"] = []any{map[string]any{"type": coded("http://hl7.org/fhir/us/sdoh-clinicalcare/CodeSystem/SDOHCC-CodeSystemTemporaryCodes", "resulting-activity", ""), "valueString": "y"}}
			}, 422, "Task.output[0].value"},
			{"another provider", keyPRV02, setStatus("accepted"), 404, ""},
			{"another practice", keyA81002, setStatusWithReason("cancelled", "duplicate", ""), 404, ""},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				doc := clone(task)
				c.edit(doc)
				r := g.put(t, path, c.key, v, doc)
				if r.status != c.status {
					t.Fatalf("%d, want %d: %s", r.status, c.status, r.body)
				}
				if c.expr != "" && !names(t, r, c.expr) {
					t.Errorf("no issue names %s: %s", c.expr, r.body)
				}
				if msg := str(outcomeIssues(t, r)[0], "diagnostics"); msg == "" {
					t.Errorf("no diagnostics: %s", r.body)
				}
			})
		}
		// None of them changed the Task.
		if _, after := g.read(t, path, keyPRV01); after != v {
			t.Errorf("refused updates wrote version %d", after)
		}
		// Admins do not touch Tasks.
		if r := g.put(t, path, keyAdmin, v, task); r.status != 403 {
			t.Errorf("admin: %d", r.status)
		}
	})
}

func clone(m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	var out map[string]any
	json.Unmarshal(b, &out)
	return out
}

// TestCancellation: the practice cancels through the Task or by revoking the
// ServiceRequest; either way both change in one transaction, and the
// provider sees it in its next poll.
func TestCancellation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)

		// Through the Task.
		a := newReferral(t, g, "CAN-1")
		g.mustChange(t, a.task, keyPRV01, setStatus("accepted"))
		task := g.mustChange(t, a.task, keyA81001, setStatusWithReason("cancelled", "referred-elsewhere", "Now seen by the practice's own team"))
		if task["status"] != "cancelled" || str(task, "statusReason", "coding", 0, "code") != "referred-elsewhere" {
			t.Fatalf("cancelled: %v", task)
		}
		sr, sv := g.read(t, "/fhir/ServiceRequest/"+a.request, keyPRV01)
		if sr["status"] != "revoked" || sv != 2 || str(sr, "extension", 0, "valueCodeableConcept", "coding", 0, "code") != "referred-elsewhere" {
			t.Errorf("ServiceRequest after the Task was cancelled: %v", sr)
		}
		res, _ := entries(t, g.get("/fhir/Task?owner=Organization/PRV01&status=cancelled", keyPRV01))
		if len(res) != 1 || str(res[0], "id") != a.task {
			t.Errorf("provider's poll: %v", res)
		}

		// By revoking the ServiceRequest.
		b := newReferral(t, g, "CAN-2")
		sr, sv = g.read(t, "/fhir/ServiceRequest/"+b.request, keyA81001)
		sr["status"] = "revoked"
		if r := g.put(t, "/fhir/ServiceRequest/"+b.request, keyA81001, sv, sr); r.status != 422 || !names(t, r, "ServiceRequest.extension") {
			t.Errorf("revoked without a reason: %d %s", r.status, r.body)
		}
		sr["extension"] = []any{map[string]any{"url": "http://hl7.org/fhir/StructureDefinition/request-statusReason",
			"valueCodeableConcept": coded(statusReasonSystem, "patient-declined", "Patient phoned the surgery")}}
		if r := g.put(t, "/fhir/ServiceRequest/"+b.request, keyPRV01, sv, sr); r.status != 403 {
			t.Errorf("provider revokes: %d", r.status)
		}
		if r := g.put(t, "/fhir/ServiceRequest/"+b.request, keyA81001, sv+1, sr); r.status != 412 {
			t.Errorf("stale If-Match: %d", r.status)
		}
		r := g.put(t, "/fhir/ServiceRequest/"+b.request, keyA81001, 0, sr) // If-Match is optional here
		if r.status != 200 || str(r.json(t), "status") != "revoked" || r.header.Get("ETag") != `W/"2"` {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		task, _ = g.read(t, "/fhir/Task/"+b.task, keyPRV01)
		if task["status"] != "cancelled" || str(task, "statusReason", "coding", 0, "code") != "patient-declined" ||
			str(task, "statusReason", "text") != "Patient phoned the surgery" {
			t.Errorf("Task after revocation: %v", task)
		}
		if got := outcomes(task); fmt.Sprint(got) != "[871711000000103]" {
			t.Errorf("declined by revocation: outcomes %v", got)
		}
		// A revoked referral is final.
		if r := g.put(t, "/fhir/ServiceRequest/"+b.request, keyA81001, 0, sr); r.status != 200 {
			t.Errorf("the same again (no change): %d %s", r.status, r.body)
		}
		sr["status"] = "active"
		if r := g.put(t, "/fhir/ServiceRequest/"+b.request, keyA81001, 0, sr); r.status != 409 || !names(t, r, "ServiceRequest.status") {
			t.Errorf("reactivate: %d %s", r.status, r.body)
		}

		// A referral cannot be edited, only revoked; nor revoked once its
		// Task is final.
		c := newReferral(t, g, "CAN-3")
		sr, sv = g.read(t, "/fhir/ServiceRequest/"+c.request, keyA81001)
		edited := clone(sr)
		edited["note"] = []any{map[string]any{"text": "changed"}}
		if r := g.put(t, "/fhir/ServiceRequest/"+c.request, keyA81001, sv, edited); r.status != 403 || !names(t, r, "ServiceRequest.note") {
			t.Errorf("edit: %d %s", r.status, r.body)
		}
		g.mustChange(t, c.task, keyPRV01, setStatusWithReason("rejected", "not-eligible", ""))
		sr["status"] = "revoked"
		sr["extension"] = []any{map[string]any{"url": "http://hl7.org/fhir/StructureDefinition/request-statusReason",
			"valueCodeableConcept": coded(statusReasonSystem, "duplicate", "")}}
		if r := g.put(t, "/fhir/ServiceRequest/"+c.request, keyA81001, 0, sr); r.status != 409 {
			t.Errorf("revoke after rejection: %d %s", r.status, r.body)
		}
		// entered-in-error needs no reason.
		d := newReferral(t, g, "CAN-4")
		sr, _ = g.read(t, "/fhir/ServiceRequest/"+d.request, keyA81001)
		sr["status"] = "entered-in-error"
		if r := g.put(t, "/fhir/ServiceRequest/"+d.request, keyA81001, 0, sr); r.status != 200 {
			t.Errorf("entered-in-error: %d %s", r.status, r.body)
		}
		if task, _ := g.read(t, "/fhir/Task/"+d.task, keyA81001); task["status"] != "cancelled" {
			t.Errorf("Task after entered-in-error: %v", task["status"])
		}
	})
}
