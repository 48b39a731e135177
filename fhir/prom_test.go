package fhir_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// promResponse builds a QuestionnaireResponse for the referral ref with the
// given answers (linkId → value).
func promResponse(ref referral, instrument, authored string, answers [][2]any) []byte {
	var items []string
	for _, a := range answers {
		items = append(items, fmt.Sprintf(`{"linkId":%q,"answer":[{"valueInteger":%d}]}`, a[0], a[1]))
	}
	return []byte(`{"resourceType":"QuestionnaireResponse","questionnaire":"https://fhir.spgateway.org/Questionnaire/` + instrument + `",` +
		`"status":"completed","subject":{"reference":"Patient/` + ref.patient + `"},"basedOn":[{"reference":"ServiceRequest/` + ref.request + `"}],` +
		`"authored":"` + authored + `","item":[` + strings.Join(items, ",") + `]}`)
}

func swemwbsAnswers(values ...int) [][2]any {
	links := []string{"1", "2", "3", "6", "7", "9", "11"}
	out := make([][2]any, len(links))
	for i, l := range links {
		out[i] = [2]any{l, values[i]}
	}
	return out
}

// TestPROMsScoredAndLinked records a baseline SWEMWBS and a follow-up
// WEMWBS and ONS4 for an accepted referral, and checks the stored
// Observations and the Task's outputs and business status.
func TestPROMsScoredAndLinked(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		ref := newReferral(t, g, "PROM-1")
		g.mustChange(t, ref.task, keyPRV01, setStatus("accepted"))

		// SWEMWBS raw 21 → metric 19.25.
		r := g.post("/fhir/QuestionnaireResponse", keyPRV01, promResponse(ref, "swemwbs", "2026-11-16T10:00:00Z", swemwbsAnswers(3, 3, 3, 3, 3, 3, 3)))
		if r.status != 201 || !strings.HasPrefix(r.header.Get("Location"), "/fhir/QuestionnaireResponse/") {
			t.Fatalf("baseline: %d %s", r.status, r.body)
		}
		task, v := g.read(t, "/fhir/Task/"+ref.task, keyA81001)
		if v != 3 || str(task, "businessStatus", "coding", 0, "code") != "baseline-prom-complete" {
			t.Fatalf("after the baseline: version %d %v", v, task["businessStatus"])
		}
		var refs []string
		for _, o := range task["output"].([]any) {
			if str(o, "type", "coding", 0, "code") == "additional-content" {
				refs = append(refs, str(o, "valueReference", "reference"))
			}
		}
		if len(refs) != 2 || !strings.HasPrefix(refs[0], "QuestionnaireResponse/") || !strings.HasPrefix(refs[1], "Observation/") {
			t.Fatalf("outputs %v", refs)
		}
		obs, _ := g.read(t, "/fhir/"+refs[1], keyA81001)
		if str(obs, "code", "coding", 0, "code") != "718466001" || obs["valueQuantity"].(map[string]any)["value"].(float64) != 19.25 ||
			obs["component"].([]any)[0].(map[string]any)["valueInteger"].(float64) != 21 ||
			str(obs, "derivedFrom", 0, "reference") != refs[0] || str(obs, "subject", "reference") != "Patient/"+ref.patient ||
			str(obs, "effectiveDateTime") != "2026-11-16T10:00:00Z" {
			t.Errorf("SWEMWBS observation: %v", obs)
		}
		// The next PROM is a follow-up six months after the baseline.
		due := ""
		for _, e := range task["extension"].([]any) {
			if str(e, "url") == "https://fhir.spgateway.org/StructureDefinition/prom-due" {
				due = str(e, "valueDateTime")
			}
		}
		if !strings.HasPrefix(due, "2027-05-16T10:00:00") {
			t.Errorf("next PROM due %q, want six months after the baseline", due)
		}

		// WEMWBS: the sum.
		var wem [][2]any
		for i := 1; i <= 14; i++ {
			wem = append(wem, [2]any{fmt.Sprint(i), 4})
		}
		if r := g.post("/fhir/QuestionnaireResponse", keyPRV01, promResponse(ref, "wemwbs", "2026-11-17T10:00:00Z", wem)); r.status != 201 {
			t.Fatalf("wemwbs: %d %s", r.status, r.body)
		}
		// ONS4: four components, no value.
		ons := [][2]any{{"life-satisfaction", 7}, {"worthwhile", 8}, {"happy-yesterday", 6}, {"anxious-yesterday", 3}}
		if r := g.post("/fhir/QuestionnaireResponse", keyPRV01, promResponse(ref, "ons4", "2026-11-17T11:00:00Z", ons)); r.status != 201 {
			t.Fatalf("ons4: %d %s", r.status, r.body)
		}
		res, _ := entries(t, g.get("/fhir/Observation?patient=Patient/"+ref.patient+"&_sort=_lastUpdated", keyA81001))
		if len(res) != 3 {
			t.Fatalf("%d observations", len(res))
		}
		if res[1]["valueQuantity"].(map[string]any)["value"].(float64) != 56 || str(res[1], "code", "coding", 0, "code") != "718426000" {
			t.Errorf("WEMWBS: %v", res[1])
		}
		if res[2]["valueQuantity"] != nil || len(res[2]["component"].([]any)) != 4 || str(res[2], "code", "coding", 0, "code") != "ons4" {
			t.Errorf("ONS4: %v", res[2])
		}
		task, v = g.read(t, "/fhir/Task/"+ref.task, keyPRV01)
		if v != 5 || str(task, "businessStatus", "coding", 0, "code") != "follow-up-prom-complete" {
			t.Errorf("after follow-ups: version %d %v", v, task["businessStatus"])
		}
		if n := total(t, g.get("/fhir/Observation?code=http://snomed.info/sct|718466001", keyPRV01)); n != 1 {
			t.Errorf("Observation?code: %d", n)
		}
		if n := total(t, g.get("/fhir/QuestionnaireResponse?questionnaire=Questionnaire/ons4", keyA81001)); n != 1 {
			t.Errorf("QuestionnaireResponse?questionnaire: %d", n)
		}
		if n := total(t, g.get("/fhir/QuestionnaireResponse?patient="+ref.patient, keyA81002)); n != 0 {
			t.Errorf("another practice sees %d responses", n)
		}
		// Closing the Task ends its schedule: no PROM is due any more.
		g.mustChange(t, ref.task, keyPRV01, setStatus("in-progress"))
		task = g.mustChange(t, ref.task, keyPRV01, setStatus("completed"))
		exts, _ := task["extension"].([]any)
		for _, e := range exts {
			if str(e, "url") == "https://fhir.spgateway.org/StructureDefinition/prom-due" {
				t.Errorf("a completed Task still has a PROM due: %v", e)
			}
		}
		// The instruments are published.
		q := g.get("/fhir/Questionnaire?url=https://fhir.spgateway.org/Questionnaire/swemwbs", keyAdmin)
		if qs, _ := entries(t, q); len(qs) != 1 || len(qs[0]["item"].([]any)) != 7 {
			t.Errorf("Questionnaire search: %s", q.body)
		}
	})
}
