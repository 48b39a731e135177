package mapping_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/mapping"
)

const fuzzResponse = `{"resourceType":"QuestionnaireResponse","questionnaire":"https://fhir.spgateway.org/Questionnaire/swemwbs|1",` +
	`"status":"completed","subject":{"reference":"Patient/p1"},"basedOn":[{"reference":"ServiceRequest/s1"}],` +
	`"authored":"2026-11-20T10:00:00Z","item":[{"linkId":"1","answer":[{"valueInteger":3}]},{"linkId":"2","answer":[{"valueString":"x"}]},` +
	`{"linkId":"3","answer":[{"valueInteger":1},{"valueInteger":2}]}]}`

// FuzzParseQuestionnaireResponse: any body either is refused with the
// gateway's own 400 or parses into a response whose references are ids (no
// slashes) and whose answers are marked given only with an integer; the
// documents rendered from it are valid JSON naming the ids assigned.
func FuzzParseQuestionnaireResponse(f *testing.F) {
	f.Add([]byte(fuzzResponse))
	f.Add([]byte(`{"resourceType":"QuestionnaireResponse","status":"in-progress","item":[{"linkId":"a","item":[{"linkId":"b"}]}]}`))
	f.Add([]byte(`{"resourceType":"QuestionnaireResponse","subject":{"reference":"Patient/a/b"},"basedOn":[{"reference":"x"},{"reference":"y"}]}`))
	f.Add([]byte(`{"resourceType":"QuestionnaireResponse","status":5}`))
	f.Add([]byte(`{"resourceType":"Patient"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if !json.Valid(body) {
			return // refused before any of this runs
		}
		r, err := mapping.ParseQuestionnaireResponse(body)
		if err != nil {
			if c := gateway.ErrorCode(err); c != gateway.CodeInvalid {
				t.Fatalf("error code %s: %v", c, err)
			}
			return
		}
		for _, id := range []string{r.SubjectID, r.BasedOnID} {
			for _, c := range id {
				if c == '/' {
					t.Fatalf("reference id %q holds a slash", id)
				}
			}
		}
		in := gateway.BuiltInInstruments()[0]
		score := gateway.Score{Value: 19.25, HasValue: true, Raw: 21, Components: []gateway.ScoreComponent{{Code: in.RawCode, Value: 21}}}
		qr, obs, err := r.Render.Render(gateway.PROMAssignment{ResponseID: "qr1", ObservationID: "o1", Now: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC),
			Instrument: in, Score: score, PatientID: "p1", ReferralID: "s1", ChangedBy: gateway.Principal{ClientID: "c"}, ChangedAt: gateway.Organization{Code: "PRV01"}})
		if err != nil {
			return // an odd document sjson cannot edit: the service reports it as internal
		}
		if !json.Valid(qr) || !json.Valid(obs) || gjson.GetBytes(qr, "id").String() != "qr1" || gjson.GetBytes(obs, "id").String() != "o1" ||
			gjson.GetBytes(obs, "derivedFrom.0.reference").String() != "QuestionnaireResponse/qr1" {
			t.Fatalf("rendered:\n%s\n%s", qr, obs)
		}
	})
}
