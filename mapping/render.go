package mapping

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/spgateway/spgateway/gateway"
)

// Render gives every document of the referral its id, meta and literal
// references, and builds the Task when the gateway creates it.
func (r *referral) Render(a gateway.Assignment) ([]gateway.Resource, *gateway.Resource, error) {
	if len(a.IDs) != len(r.docs) || len(a.Versions) != len(r.docs) {
		return nil, nil, fmt.Errorf("mapping: %d ids for %d documents", len(a.IDs), len(r.docs))
	}
	literal := map[string]string{}
	for i, d := range r.docs {
		if d.fullURL != "" {
			literal[d.fullURL] = d.typ + "/" + a.IDs[i]
		}
	}
	out := make([]gateway.Resource, len(r.docs))
	for i, d := range r.docs {
		body := d.raw
		var err error
		for _, ref := range d.refs {
			if to, ok := literal[ref.value]; ok {
				if body, err = sjson.SetBytes(body, ref.path, to); err != nil {
					return nil, nil, err
				}
			}
		}
		switch d.part {
		case gateway.PartRequest:
			body, err = r.renderRequest(body, a)
		case gateway.PartTask:
			body, err = renderReferralTask(body, a)
		}
		if err != nil {
			return nil, nil, err
		}
		if body, err = stamp(body, a.IDs[i], a.Versions[i], a.Now, a.ChangedBy, a.Requester); err != nil {
			return nil, nil, err
		}
		x := d.index
		if d.part == gateway.PartTask {
			x.Modified, x.CodesOnly, x.Authored = a.Now, r.codesOnly, a.Now
		}
		out[i] = gateway.Resource{Type: d.typ, ID: a.IDs[i], Version: a.Versions[i], LastUpdated: a.Now, Body: body, Index: x}
	}
	var task *gateway.Resource
	if a.TaskID != "" {
		body, err := NewTask(a, a.IDs[r.request])
		if err != nil {
			return nil, nil, err
		}
		if body, err = stamp(body, a.TaskID, 1, a.Now, a.ChangedBy, a.Requester); err != nil {
			return nil, nil, err
		}
		task = &gateway.Resource{Type: gateway.TypeTask, ID: a.TaskID, Version: 1, LastUpdated: a.Now, Body: body,
			Index: gateway.Index{Status: gateway.TaskRequested, Modified: a.Now, Authored: a.Now, CodesOnly: r.codesOnly}}
	}
	return out, task, nil
}

// orgReference sets the literal reference of the organisation reference at
// path, keeping the identifier and display the client sent, or writes a
// whole reference when there is none.
func orgReference(body []byte, path string, o gateway.Organization) ([]byte, error) {
	if gjson.GetBytes(body, path).IsObject() {
		return sjson.SetBytes(body, path+".reference", "Organization/"+o.Code)
	}
	return sjson.SetRawBytes(body, path, orgRefJSON(o))
}

func (r *referral) renderRequest(body []byte, a gateway.Assignment) ([]byte, error) {
	body, err := orgReference(body, "requester", a.Requester)
	if err != nil {
		return nil, err
	}
	if gjson.GetBytes(body, "performer.0").Exists() {
		if body, err = orgReference(body, "performer.0", a.Owner); err != nil {
			return nil, err
		}
	}
	switch r.subject {
	case gateway.SubjectByID, gateway.SubjectByIdentifier:
		return sjson.SetBytes(body, "subject.reference", "Patient/"+a.PatientID)
	case gateway.SubjectIncluded:
		if r.containedAt < 0 {
			return body, nil // a Bundle entry: resolved with the other references
		}
		// The contained Patient is stored as a resource of its own: refer
		// to it wherever the ServiceRequest did, and leave it out of
		// contained (a contained resource must be referred to from its
		// container).
		if body, err = sjson.SetBytes(body, "subject.reference", "Patient/"+a.PatientID); err != nil {
			return nil, err
		}
		for _, ref := range r.docs[r.request].refs {
			if ref.value == r.containedRef {
				if body, err = sjson.SetBytes(body, ref.path, "Patient/"+a.PatientID); err != nil {
					return nil, err
				}
			}
		}
		if body, err = sjson.DeleteBytes(body, "contained."+strconv.Itoa(r.containedAt)); err != nil {
			return nil, err
		}
		if c := gjson.GetBytes(body, "contained"); c.IsArray() && len(c.Array()) == 0 {
			return sjson.DeleteBytes(body, "contained")
		}
	}
	return body, nil
}

// renderReferralTask completes a Task the practice sent: literal requester,
// the owner chosen by routing, the patient, and the times the gateway keeps.
func renderReferralTask(body []byte, a gateway.Assignment) ([]byte, error) {
	body, err := orgReference(body, "requester", a.Requester)
	if err != nil {
		return nil, err
	}
	if body, err = orgReference(body, "owner", a.Owner); err != nil {
		return nil, err
	}
	if !gjson.GetBytes(body, "for").Exists() {
		if body, err = sjson.SetRawBytes(body, "for", mustJSON(refJSON{Reference: "Patient/" + a.PatientID})); err != nil {
			return nil, err
		}
	}
	if !gjson.GetBytes(body, "authoredOn").Exists() {
		if body, err = sjson.SetBytes(body, "authoredOn", gateway.FormatInstant(a.Now)); err != nil {
			return nil, err
		}
	}
	return sjson.SetBytes(body, "lastModified", gateway.FormatInstant(a.Now))
}

// The FHIR JSON the gateway writes itself is built from these small types,
// not the model library's, whose Task marshals invalid input/output.

type codingJSON struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

type conceptJSON struct {
	Coding []codingJSON `json:"coding,omitempty"`
	Text   string       `json:"text,omitempty"`
}

type identifierJSON struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value,omitempty"`
}

type refJSON struct {
	Reference  string          `json:"reference,omitempty"`
	Type       string          `json:"type,omitempty"`
	Identifier *identifierJSON `json:"identifier,omitempty"`
	Display    string          `json:"display,omitempty"`
}

type metaJSON struct {
	VersionID   string `json:"versionId"`
	LastUpdated string `json:"lastUpdated"`
}

func orgRefJSON(o gateway.Organization) []byte {
	return mustJSON(refJSON{
		Reference:  "Organization/" + o.Code,
		Identifier: &identifierJSON{System: gateway.SystemODS, Value: o.Code},
		Display:    o.Name,
	})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("mapping: marshal %T: %v", v, err)) // only our own plain types reach here
	}
	return b
}

type taskJSON struct {
	ResourceType string      `json:"resourceType"`
	ID           string      `json:"id"`
	Meta         metaJSON    `json:"meta"`
	Status       string      `json:"status"`
	Intent       string      `json:"intent"`
	Code         conceptJSON `json:"code"`
	Focus        refJSON     `json:"focus"`
	For          refJSON     `json:"for"`
	AuthoredOn   string      `json:"authoredOn"`
	LastModified string      `json:"lastModified"`
	Requester    refJSON     `json:"requester"`
	Owner        refJSON     `json:"owner"`
}

// NewTask builds the Task the gateway creates with a referral (SDOH Clinical
// Care pattern): a fulfilment order for the ServiceRequest, owned by the
// provider the referral was routed to.
func NewTask(a gateway.Assignment, requestID string) ([]byte, error) {
	now := gateway.FormatInstant(a.Now)
	return json.Marshal(taskJSON{
		ResourceType: gateway.TypeTask,
		ID:           a.TaskID,
		Meta:         metaJSON{VersionID: "1", LastUpdated: now},
		Status:       "requested",
		Intent:       "order",
		Code: conceptJSON{Coding: []codingJSON{{
			System: gateway.SystemTaskCode, Code: "fulfill", Display: "Fulfill the focal request",
		}}},
		Focus:        refJSON{Reference: gateway.TypeServiceRequest + "/" + requestID},
		For:          refJSON{Reference: gateway.TypePatient + "/" + a.PatientID},
		AuthoredOn:   now,
		LastModified: now,
		Requester:    refJSON{Reference: "Organization/" + a.Requester.Code, Identifier: &identifierJSON{System: gateway.SystemODS, Value: a.Requester.Code}, Display: a.Requester.Name},
		Owner:        refJSON{Reference: "Organization/" + a.Owner.Code, Identifier: &identifierJSON{System: gateway.SystemODS, Value: a.Owner.Code}, Display: a.Owner.Name},
	})
}
