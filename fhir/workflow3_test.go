package fhir_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// codesOnlyBundle is the referral Bundle whose Consent says the practice
// gets coded outcomes only.
func codesOnlyBundle(t testing.TB, identifier string) []byte {
	t.Helper()
	b := referralBundle(t, identifier, "")
	return bytes.Replace(b, []byte(`"category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IDSCL"}]}]`),
		[]byte(`"category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IDSCL"}]},`+
			`{"coding": [{"system": "https://fhir.spgateway.org/CodeSystem/consent-category", "code": "codes-only"}]}]`), 1)
}

const outputTypes = "http://hl7.org/fhir/us/sdoh-clinicalcare/CodeSystem/SDOHCC-CodeSystemTemporaryCodes"

// workNotes is what a link worker writes on a Task: notes, a description,
// a free-text summary and a coded outcome with text.
func workNotes(task map[string]any) {
	task["status"] = "in-progress"
	task["description"] = "Lives alone since her husband died; anxious about money."
	task["note"] = []any{map[string]any{"text": "Talked about her late husband for an hour."}}
	task["businessStatus"] = map[string]any{"coding": []any{map[string]any{"system": businessStatusSystem, "code": "first-contact-made"}}, "text": "Rang her at home"}
	task["output"] = []any{
		map[string]any{"type": coded(outputTypes, "additional-content", ""), "valueString": "Summary: low mood, debts, wants a befriender."},
		map[string]any{"type": coded(outputTypes, "resulting-activity", "what happened"),
			"valueCodeableConcept": map[string]any{"coding": []any{map[string]any{"system": snomed, "code": "871691000000100"}}, "text": "Offered the Tuesday group"}},
	}
}

func TestCodesOnlyConsent(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		ref := sendReferral(t, g, codesOnlyBundle(t, "CODES-1"))
		plain := newReferral(t, g, "PLAIN-1")
		g.mustChange(t, ref.task, keyPRV01, setStatus("accepted"))
		g.mustChange(t, ref.task, keyPRV01, workNotes)
		g.mustChange(t, plain.task, keyPRV01, setStatus("accepted"))
		g.mustChange(t, plain.task, keyPRV01, workNotes)

		free := []string{"husband", "anxious", "Summary", "Rang her", "Tuesday group", "what happened"}
		// The provider sees everything it wrote.
		full := g.get("/fhir/Task/"+ref.task, keyPRV01)
		for _, s := range free {
			if !bytes.Contains(full.body, []byte(s)) {
				t.Fatalf("provider's view lacks %q", s)
			}
		}
		// The practice sees the codes, and none of the text, wherever it looks.
		task, v := g.read(t, "/fhir/Task/"+ref.task, keyA81001)
		search := g.get("/fhir/Task?_id="+ref.task, keyA81001)
		history := g.get("/fhir/Task/"+ref.task+"/_history", keyA81001)
		vread := g.get(fmt.Sprintf("/fhir/Task/%s/_history/%d", ref.task, v), keyA81001)
		for name, body := range map[string][]byte{"read": mustJSON(t, task), "search": search.body, "history": history.body, "vread": vread.body} {
			for _, s := range free {
				if bytes.Contains(body, []byte(s)) {
					t.Errorf("practice's %s holds %q", name, s)
				}
			}
		}
		if got := outcomes(task); fmt.Sprint(got) != "[871691000000100 1362931000000106]" {
			t.Errorf("practice's outcomes: %v", got)
		}
		if str(task, "businessStatus", "coding", 0, "code") != "first-contact-made" || task["status"] != "in-progress" {
			t.Errorf("practice's statuses: %v %v", task["status"], task["businessStatus"])
		}
		// Without the codes-only consent the practice sees the notes.
		if r := g.get("/fhir/Task/"+plain.task, keyA81001); !bytes.Contains(r.body, []byte("Summary")) {
			t.Errorf("plain referral hides text from the practice")
		}
		// The practice can still cancel from its own (reduced) copy, and the
		// provider's notes stay.
		setStatusWithReason("cancelled", "other", "Patient moved away")(task)
		if r := g.put(t, "/fhir/Task/"+ref.task, keyA81001, v, task); r.status != 200 {
			t.Fatalf("practice cancels from the codes-only view: %d %s", r.status, r.body)
		}
		after := g.get("/fhir/Task/"+ref.task, keyPRV01)
		if !bytes.Contains(after.body, []byte("Summary")) || !bytes.Contains(after.body, []byte(`"cancelled"`)) {
			t.Errorf("after cancellation: %s", after.body)
		}
		if r := g.get("/fhir/Task/"+ref.task, keyA81001); bytes.Contains(r.body, []byte("moved away")) {
			t.Errorf("the practice's own reason text is text too, and codes-only: %s", r.body)
		}
	})
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const linkWorkers = "https://prv01.example.org/link-workers"

func linkWorker(system, value string) func(map[string]any) {
	return func(task map[string]any) {
		task["extension"] = []any{map[string]any{
			"url": "https://fhir.spgateway.org/StructureDefinition/link-worker",
			"valueReference": map[string]any{"type": "PractitionerRole",
				"identifier": map[string]any{"system": system, "value": value}, "display": "a link worker"},
		}}
	}
}

func reassignParams(from, to string) []byte {
	p := func(name, value string) string {
		if value == "" {
			return `{"name":"` + name + `","valueIdentifier":{"value":"x"}}`
		}
		return `{"name":"` + name + `","valueIdentifier":{"system":"` + linkWorkers + `","value":"` + value + `"}}`
	}
	return []byte(`{"resourceType":"Parameters","parameter":[` + p("from", from) + `,` + p("to", to) + `]}`)
}

// TestReassignCaseload: a departing link worker's 200 open Tasks move to
// another in one call; closed Tasks and other workers' stay.
func TestReassignCaseload(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		const n = 200
		open := caseload(t, g, "LW", "LW-17", n)
		closed := newReferral(t, g, "LW-CLOSED")
		g.mustChange(t, closed.task, keyPRV01, linkWorker(linkWorkers, "LW-17"))
		g.mustChange(t, closed.task, keyPRV01, setStatusWithReason("rejected", "no-capacity", ""))
		other := newReferral(t, g, "LW-OTHER")
		g.mustChange(t, other.task, keyPRV01, linkWorker(linkWorkers, "LW-99"))

		if r := g.post("/fhir/Task/$reassign", keyA81001, reassignParams("LW-17", "LW-23")); r.status != 403 {
			t.Errorf("practice hands over: %d", r.status)
		}
		if r := g.post("/fhir/Task/$reassign", keyPRV01, []byte(`{"resourceType":"Parameters","parameter":[{"name":"from","valueIdentifier":{"system":"`+linkWorkers+`","value":"LW-17"}}]}`)); r.status != 422 {
			t.Errorf("no to: %d %s", r.status, r.body)
		}
		if r := g.post("/fhir/Task/$reassign", keyPRV01, reassignParams("", "LW-23")); r.status != 422 || !names(t, r, "Parameters.parameter.from") {
			t.Errorf("from without system: %d %s", r.status, r.body)
		}
		if r := g.post("/fhir/Task/$reassign", keyPRV01, []byte(`{"resourceType":"Patient"}`)); r.status != 400 {
			t.Errorf("not Parameters: %d", r.status)
		}
		// Another provider's handover of the same identifier moves nothing of PRV01's.
		r := g.post("/fhir/Task/$reassign", keyPRV02, reassignParams("LW-17", "LW-23"))
		if r.status != 200 || str(r.json(t), "parameter", 0, "name") != "count" || r.json(t)["parameter"].([]any)[0].(map[string]any)["valueInteger"].(float64) != 0 {
			t.Errorf("PRV02: %d %s", r.status, r.body)
		}

		r = g.post("/fhir/Task/$reassign", keyPRV01, reassignParams("LW-17", "LW-23"))
		if r.status != 200 {
			t.Fatalf("reassign: %d %s", r.status, r.body)
		}
		params := r.json(t)["parameter"].([]any)
		if params[0].(map[string]any)["valueInteger"].(float64) != n || len(params) != n+1 {
			t.Fatalf("count %v, %d parameters", params[0], len(params))
		}
		moved := map[string]bool{}
		for _, p := range params[1:] {
			moved[strings.TrimPrefix(str(p, "valueReference", "reference"), "Task/")] = true
		}
		for _, id := range open {
			if !moved[id] {
				t.Fatalf("Task %s not in the answer", id)
			}
		}
		for _, id := range []string{open[0], open[n-1]} {
			task, v := g.read(t, "/fhir/Task/"+id, keyPRV01)
			if v != 3 || str(task, "extension", 0, "valueReference", "identifier", "value") != "LW-23" ||
				str(task, "meta", "extension", 0, "valueReference", "reference") != "Organization/PRV01" {
				t.Errorf("moved Task: version %d %v", v, task["extension"])
			}
		}
		for id, want := range map[string]string{closed.task: "LW-17", other.task: "LW-99"} {
			if task, _ := g.read(t, "/fhir/Task/"+id, keyPRV01); str(task, "extension", 0, "valueReference", "identifier", "value") != want {
				t.Errorf("Task %s should have stayed with %s: %v", id, want, task["extension"])
			}
		}
		// Nothing is left to move.
		r = g.post("/fhir/Task/$reassign", keyPRV01, reassignParams("LW-17", "LW-23"))
		if r.json(t)["parameter"].([]any)[0].(map[string]any)["valueInteger"].(float64) != 0 {
			t.Errorf("second handover: %s", r.body)
		}
	})
}
