package mapping

import (
	"encoding/json"
	"reflect"
	"strings"
	"time"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"
	"github.com/tidwall/gjson"

	"github.com/spgateway/spgateway/gateway"
)

// ParseQuestionnaireResponse reads a PROM a provider sends. It returns
// CodeInvalid for what is not a QuestionnaireResponse; the rules (known
// instrument, answers, referral) are the service's.
func ParseQuestionnaireResponse(body []byte) (*gateway.PROMResponse, error) {
	const typ = gateway.TypeQuestionnaireResponse
	if err := checkResource(body, typ); err != nil {
		return nil, err
	}
	qr, err := r4.UnmarshalQuestionnaireResponse(body)
	if err != nil {
		return nil, decodeProblem(reflect.TypeFor[r4.QuestionnaireResponse](), []string{typ}, err)
	}
	raw, err := compact(body)
	if err != nil {
		return nil, invalid(gateway.IssueStructure, []string{typ}, "the resource is not valid JSON")
	}
	r := &gateway.PROMResponse{
		Questionnaire: cutVersion(str(qr.Questionnaire)),
		Status:        gjson.GetBytes(raw, "status").String(),
		Authored:      str(qr.Authored),
		Render:        &promDocs{raw: raw},
	}
	if qr.Subject != nil {
		r.SubjectID = literalID(str(qr.Subject.Reference), gateway.TypePatient)
	}
	if len(qr.BasedOn) == 1 {
		r.BasedOnID = literalID(str(qr.BasedOn[0].Reference), gateway.TypeServiceRequest)
	}
	for _, it := range qr.Item {
		a := gateway.Answer{LinkID: it.LinkId}
		if len(it.Answer) == 1 && it.Answer[0].ValueInteger != nil {
			a.Value, a.Given = *it.Answer[0].ValueInteger, true
		}
		r.Answers = append(r.Answers, a)
	}
	return r, nil
}

// literalID returns id of a literal reference typ/id, or "".
func literalID(ref, typ string) string {
	id, ok := strings.CutPrefix(ref, typ+"/")
	if !ok || id == "" || strings.Contains(id, "/") {
		return ""
	}
	return id
}

func cutVersion(canonical string) string {
	url, _, _ := strings.Cut(canonical, "|")
	return url
}

// promDocs renders a scored PROM.
type promDocs struct {
	raw []byte
}

type quantityJSON struct {
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	System string  `json:"system"`
	Code   string  `json:"code"`
}

type componentJSON struct {
	Code         conceptJSON `json:"code"`
	ValueInteger int         `json:"valueInteger"`
}

type observationJSON struct {
	ResourceType      string          `json:"resourceType"`
	ID                string          `json:"id"`
	Meta              metaJSON        `json:"meta"`
	BasedOn           []refJSON       `json:"basedOn"`
	Status            string          `json:"status"`
	Category          []conceptJSON   `json:"category"`
	Code              conceptJSON     `json:"code"`
	Subject           refJSON         `json:"subject"`
	EffectiveDateTime string          `json:"effectiveDateTime"`
	Issued            string          `json:"issued"`
	ValueQuantity     *quantityJSON   `json:"valueQuantity,omitempty"`
	DerivedFrom       []refJSON       `json:"derivedFrom"`
	Component         []componentJSON `json:"component,omitempty"`
}

func codeConcept(codes []gateway.Coding, text string) conceptJSON {
	c := conceptJSON{Text: text}
	for _, cd := range codes {
		c.Coding = append(c.Coding, codingJSON{System: cd.System, Code: cd.Code})
	}
	return c
}

// Render stores the QuestionnaireResponse as the provider sent it, with id
// and meta, and builds the Observation of its score: the score as
// valueQuantity (or none, for an instrument of separate answers), the parts
// as components, derivedFrom the response.
func (d *promDocs) Render(a gateway.PROMAssignment) ([]byte, []byte, error) {
	qr, err := stamp(d.raw, a.ResponseID, 1, a.Now, a.ChangedBy, a.ChangedAt)
	if err != nil {
		return nil, nil, err
	}
	effective := gjson.GetBytes(d.raw, "authored").String()
	obs := observationJSON{
		ResourceType: gateway.TypeObservation,
		ID:           a.ObservationID,
		Meta:         metaJSON{VersionID: "1", LastUpdated: gateway.FormatInstant(a.Now)},
		BasedOn:      []refJSON{{Reference: gateway.TypeServiceRequest + "/" + a.ReferralID}},
		Status:       "final",
		Category: []conceptJSON{{Coding: []codingJSON{{System: "http://terminology.hl7.org/CodeSystem/observation-category",
			Code: "survey", Display: "Survey"}}}},
		Code:              codeConcept(a.Instrument.Codes, a.Instrument.Title+" score"),
		Subject:           refJSON{Reference: gateway.TypePatient + "/" + a.PatientID},
		EffectiveDateTime: effective,
		Issued:            gateway.FormatInstant(a.Now),
		DerivedFrom:       []refJSON{{Reference: gateway.TypeQuestionnaireResponse + "/" + a.ResponseID}},
	}
	if a.Score.HasValue {
		obs.ValueQuantity = &quantityJSON{Value: a.Score.Value, Unit: "score", System: "http://unitsofmeasure.org", Code: "{score}"}
	}
	for _, c := range a.Score.Components {
		obs.Component = append(obs.Component, componentJSON{Code: codeConcept([]gateway.Coding{c.Code}, ""), ValueInteger: c.Value})
	}
	body, err := json.Marshal(obs)
	if err != nil {
		return nil, nil, err
	}
	if body, err = stamp(body, a.ObservationID, 1, a.Now, a.ChangedBy, a.ChangedAt); err != nil {
		return nil, nil, err
	}
	return qr, body, nil
}

type questionnaireItemJSON struct {
	LinkID    string          `json:"linkId"`
	Text      string          `json:"text"`
	Type      string          `json:"type"`
	Required  bool            `json:"required"`
	Extension []extensionJSON `json:"extension"`
}

type questionnaireJSON struct {
	ResourceType string                  `json:"resourceType"`
	ID           string                  `json:"id"`
	Meta         metaJSON                `json:"meta"`
	URL          string                  `json:"url"`
	Name         string                  `json:"name"`
	Title        string                  `json:"title"`
	Status       string                  `json:"status"`
	SubjectType  []string                `json:"subjectType"`
	Code         []codingJSON            `json:"code,omitempty"`
	Item         []questionnaireItemJSON `json:"item"`
}

// Questionnaire publishes an instrument: each item by linkId and short
// label, an integer from its min to its max.
func Questionnaire(in gateway.Instrument, since time.Time) []byte {
	q := questionnaireJSON{
		ResourceType: gateway.TypeQuestionnaire,
		ID:           in.ID,
		Meta:         metaJSON{VersionID: "1", LastUpdated: gateway.FormatInstant(since)},
		URL:          in.URL,
		Name:         strings.ToUpper(in.ID[:1]) + in.ID[1:],
		Title:        in.Title,
		Status:       "active",
		SubjectType:  []string{gateway.TypePatient},
	}
	for _, c := range in.Codes {
		q.Code = append(q.Code, codingJSON{System: c.System, Code: c.Code})
	}
	for _, it := range in.Items {
		min, max := it.Min, it.Max
		q.Item = append(q.Item, questionnaireItemJSON{LinkID: it.LinkID, Text: it.Label, Type: "integer", Required: true,
			Extension: []extensionJSON{
				{URL: "http://hl7.org/fhir/StructureDefinition/minValue", ValueInteger: &min},
				{URL: "http://hl7.org/fhir/StructureDefinition/maxValue", ValueInteger: &max},
			}})
	}
	return mustJSON(q)
}
