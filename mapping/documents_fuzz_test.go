package mapping_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/mapping"
)

const fuzzTask = `{"resourceType":"Task","id":"t1","meta":{"versionId":"2","lastUpdated":"2026-11-23T10:00:00.000000Z"},` +
	`"status":"in-progress","intent":"order","businessStatus":{"coding":[{"system":"https://fhir.spgateway.org/CodeSystem/business-status","code":"first-contact-made"}],"text":"rang"},` +
	`"statusReason":{"coding":[{"system":"https://fhir.spgateway.org/CodeSystem/status-reason","code":"other"}],"text":"why"},` +
	`"note":[{"text":"a note"}],"description":"d","extension":[{"url":"https://fhir.spgateway.org/StructureDefinition/link-worker","valueReference":{"identifier":{"system":"s","value":"v"}}}],` +
	`"output":[{"type":{"coding":[{"system":"http://hl7.org/fhir/us/sdoh-clinicalcare/CodeSystem/SDOHCC-CodeSystemTemporaryCodes","code":"resulting-activity"}]},"valueCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"1362931000000106"}],"text":"t"}},` +
	`{"type":{"coding":[{"system":"http://hl7.org/fhir/us/sdoh-clinicalcare/CodeSystem/SDOHCC-CodeSystemTemporaryCodes","code":"additional-content"}]},"valueString":"summary"}]}`

// FuzzTaskDocument feeds any body through what the workflow does with a
// Task: read its state, compare it with a stored version, write the next
// version and the codes-only view. Errors must be the gateway's own (400 or
// 422); what is written must be JSON with the id, version and changes asked
// for, and the codes-only view must hold no notes.
func FuzzTaskDocument(f *testing.F) {
	f.Add([]byte(fuzzTask))
	f.Add([]byte(`{"resourceType":"Task","status":"requested"}`))
	f.Add([]byte(`{"resourceType":"Task","status":"bogus"}`))
	f.Add([]byte(`{"resourceType":"Task","status":"accepted","output":[{"type":{"text":"x"}}],"extension":[]}`))
	f.Add([]byte(`{"resourceType":"Patient"}`))
	f.Add([]byte(`[1,2]`))
	docs := mapping.Documents{}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !json.Valid(body) {
			return // the edge refuses it before any of this runs
		}
		st, err := docs.Task(body)
		if err != nil {
			if c := gateway.ErrorCode(err); c != gateway.CodeInvalid && c != gateway.CodeUnprocessable {
				t.Fatalf("Task: error code %s: %v", c, err)
			}
			return
		}
		if st.Status == "" {
			t.Fatal("a Task without a status was accepted")
		}
		changed, err := docs.Changed([]byte(fuzzTask), body)
		if err != nil {
			t.Fatalf("Changed on two readable Tasks: %v", err)
		}
		if slices.Contains(changed, "id") || slices.Contains(changed, "meta") || slices.Contains(changed, "lastModified") {
			t.Fatalf("server-managed elements reported changed: %v", changed)
		}
		if again, _ := docs.Changed(body, body); len(again) != 0 {
			t.Fatalf("a body differs from itself in %v", again)
		}
		now := time.Date(2026, 11, 23, 11, 0, 0, 0, time.UTC)
		out, err := docs.WriteTask(body, gateway.TaskEdit{
			ID: "t1", Version: 3, Now: now, Status: "on-hold",
			Reason:      &gateway.Reason{Codes: []gateway.Coding{{System: gateway.SystemStatusReason, Code: "other"}}, Text: "x"},
			AddOutcomes: []gateway.Coding{{System: gateway.SystemSNOMED, Code: gateway.SNOMEDCaseClosed}},
			LinkWorker:  &gateway.Identifier{System: "s", Value: "w"},
			ChangedBy:   gateway.Principal{ClientID: "c"}, ChangedAt: gateway.Organization{Code: "PRV01"},
		})
		if err != nil {
			return // sjson cannot edit every odd document; the service reports it as internal
		}
		if !json.Valid(out) {
			t.Fatalf("WriteTask wrote invalid JSON: %s", out)
		}
		w := gjson.ParseBytes(out)
		if w.Get("id").String() != "t1" || w.Get("meta.versionId").String() != "3" || w.Get("status").String() != "on-hold" ||
			w.Get("lastModified").String() != gateway.FormatInstant(now) {
			t.Fatalf("WriteTask: %s", out)
		}
		next, err := docs.Task(out)
		if err != nil {
			t.Fatalf("the written Task does not read back: %v\n%s", err, out)
		}
		if next.LinkWorker != (gateway.Identifier{System: "s", Value: "w"}) {
			t.Fatalf("link worker %v", next.LinkWorker)
		}
		view, err := docs.CodesOnly(out)
		if err != nil {
			return
		}
		v := gjson.ParseBytes(view)
		if !json.Valid(view) || v.Get("note").Exists() || v.Get("description").Exists() || v.Get("statusReason.text").Exists() {
			t.Fatalf("codes-only view: %s", view)
		}
	})
}
