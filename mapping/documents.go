package mapping

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"time"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/spgateway/spgateway/gateway"
)

// Documents implements gateway.Documents on FHIR JSON.
type Documents struct{}

var _ gateway.Documents = Documents{}

// serverManaged are the elements the gateway sets on every version,
// whatever a client sends.
var serverManaged = map[string]bool{"id": true, "meta": true, "lastModified": true}

// Task reads the state of a Task body.
func (Documents) Task(body []byte) (gateway.TaskState, error) {
	at := []string{gateway.TypeTask}
	if err := checkResource(body, gateway.TypeTask); err != nil {
		return gateway.TaskState{}, err
	}
	t, err := r4.UnmarshalTask(body)
	if err != nil {
		return gateway.TaskState{}, decodeProblem(reflect.TypeFor[r4.Task](), at, err)
	}
	st := gateway.TaskState{Status: gjson.GetBytes(body, "status").String()}
	if st.Status == "" {
		return gateway.TaskState{}, gateway.Unprocessable([]gateway.Issue{unprocessable(gateway.IssueRequired, []string{"Task.status"}, "status is required")})
	}
	if t.StatusReason != nil {
		st.StatusReason = &gateway.Reason{Codes: codings(t.StatusReason), Text: str(t.StatusReason.Text)}
	}
	if t.BusinessStatus != nil {
		st.BusinessStatus = codings(t.BusinessStatus)
		if st.BusinessStatus == nil {
			st.BusinessStatus = []gateway.Coding{}
		}
	}
	st.LinkWorker = linkWorkerOf(gjson.GetBytes(body, "extension"))
	i := 0
	gjson.GetBytes(body, "output").ForEach(func(_, out gjson.Result) bool {
		el := "Task.output[" + strconv.Itoa(i) + "]"
		i++
		typ := ""
		out.Get("type.coding").ForEach(func(_, c gjson.Result) bool {
			if c.Get("system").String() == gateway.SystemOutputType {
				typ = c.Get("code").String()
			}
			return typ == ""
		})
		switch typ {
		case gateway.OutputResultingActivity:
			var codes []gateway.Coding
			out.Get("valueCodeableConcept.coding").ForEach(func(_, c gjson.Result) bool {
				codes = append(codes, gateway.Coding{System: c.Get("system").String(), Code: c.Get("code").String()})
				return true
			})
			if len(codes) == 0 {
				st.OutputIssues = append(st.OutputIssues, gateway.Issue{Type: gateway.IssueRequired, Expression: []string{el + ".value"},
					Message: "an output of type resulting-activity carries a coded outcome in valueCodeableConcept (SNOMED CT)"})
			}
			st.Outcomes = append(st.Outcomes, codes...)
		case gateway.OutputAdditionalContent:
		default:
			st.OutputIssues = append(st.OutputIssues, gateway.Issue{Type: gateway.IssueCodeInvalid, Expression: []string{el + ".type"},
				Message: "output.type is resulting-activity or additional-content, from " + gateway.SystemOutputType})
		}
		return true
	})
	return st, nil
}

// linkWorkerOf finds the link worker extension among extensions.
func linkWorkerOf(extensions gjson.Result) gateway.Identifier {
	var id gateway.Identifier
	extensions.ForEach(func(_, e gjson.Result) bool {
		if e.Get("url").String() == gateway.ExtensionLinkWorker {
			id = gateway.Identifier{
				System: e.Get("valueReference.identifier.system").String(),
				Value:  e.Get("valueReference.identifier.value").String(),
			}
			return false
		}
		return true
	})
	return id
}

// Request reads a ServiceRequest's status and the reason of its
// request-statusReason extension.
func (Documents) Request(body []byte) (string, *gateway.Reason, error) {
	if err := checkResource(body, gateway.TypeServiceRequest); err != nil {
		return "", nil, err
	}
	if _, err := r4.UnmarshalServiceRequest(body); err != nil {
		return "", nil, decodeProblem(acceptedTypes[gateway.TypeServiceRequest], []string{gateway.TypeServiceRequest}, err)
	}
	var reason *gateway.Reason
	gjson.GetBytes(body, "extension").ForEach(func(_, e gjson.Result) bool {
		if e.Get("url").String() != gateway.ExtensionRequestStatusReason {
			return true
		}
		v := e.Get("valueCodeableConcept")
		reason = &gateway.Reason{Text: v.Get("text").String()}
		v.Get("coding").ForEach(func(_, c gjson.Result) bool {
			reason.Codes = append(reason.Codes, gateway.Coding{System: c.Get("system").String(), Code: c.Get("code").String()})
			return true
		})
		return false
	})
	return gjson.GetBytes(body, "status").String(), reason, nil
}

// checkResource refuses a body that is not a JSON object of resource type
// typ, or that repeats a property name.
func checkResource(body []byte, typ string) error {
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return invalid(gateway.IssueStructure, []string{typ}, "the body must be a FHIR resource (a JSON object)")
	}
	if rt := root.Get("resourceType").String(); rt != typ {
		return invalid(gateway.IssueStructure, []string{typ}, "resourceType is %q, not %s", rt, typ)
	}
	return checkKeys(body, []string{typ})
}

// Changed lists the top-level elements whose values differ between two
// versions, compared as JSON values (so key order and spacing do not
// count), leaving out what the server manages.
func (Documents) Changed(old, new []byte) ([]string, error) {
	a, err := members(old)
	if err != nil {
		return nil, err
	}
	b, err := members(new)
	if err != nil {
		return nil, err
	}
	var changed []string
	seen := map[string]bool{}
	for _, m := range [][]string{a.order, b.order} {
		for _, k := range m {
			if seen[k] || serverManaged[k] {
				continue
			}
			seen[k] = true
			if !reflect.DeepEqual(a.values[k], b.values[k]) {
				changed = append(changed, k)
			}
		}
	}
	return changed, nil
}

type objectMembers struct {
	order  []string
	values map[string]any
}

func members(doc []byte) (objectMembers, error) {
	m := objectMembers{values: map[string]any{}}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(doc, &raw); err != nil {
		return m, invalid(gateway.IssueStructure, nil, "the body is not a JSON object")
	}
	gjson.ParseBytes(doc).ForEach(func(k, _ gjson.Result) bool {
		m.order = append(m.order, k.String())
		return true
	})
	for k, v := range raw {
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.UseNumber()
		var x any
		if err := dec.Decode(&x); err != nil {
			return m, invalid(gateway.IssueStructure, nil, "the body is not valid JSON")
		}
		m.values[k] = x
	}
	return m, nil
}

// snomedDisplay are the terms of the outcome codes the gateway adds.
var snomedDisplay = map[string]string{
	gateway.SNOMEDSeenByLinkWorker:          "Seen by social prescribing link worker",
	gateway.SNOMEDSocialPrescribingDeclined: "Social prescribing declined",
	gateway.SNOMEDCaseClosed:                "Social prescribing case closed",
}

type outputJSON struct {
	Type                 conceptJSON `json:"type"`
	ValueCodeableConcept conceptJSON `json:"valueCodeableConcept"`
}

type extensionJSON struct {
	URL                  string       `json:"url"`
	ValueReference       *refJSON     `json:"valueReference,omitempty"`
	ValueCodeableConcept *conceptJSON `json:"valueCodeableConcept,omitempty"`
	ValueInteger         *int         `json:"valueInteger,omitempty"`
	ValueDateTime        string       `json:"valueDateTime,omitempty"`
}

type annotationJSON struct {
	AuthorString string `json:"authorString,omitempty"`
	Time         string `json:"time"`
	Text         string `json:"text"`
}

type contentOutputJSON struct {
	Type           conceptJSON `json:"type"`
	ValueReference refJSON     `json:"valueReference"`
}

func reasonJSON(r *gateway.Reason) conceptJSON {
	c := conceptJSON{Text: r.Text}
	for _, cd := range r.Codes {
		c.Coding = append(c.Coding, codingJSON{System: cd.System, Code: cd.Code})
	}
	return c
}

// WriteTask renders the next version of a Task.
func (Documents) WriteTask(body []byte, e gateway.TaskEdit) ([]byte, error) {
	body, err := compact(body)
	if err != nil {
		return nil, err
	}
	if e.Status != "" {
		if body, err = sjson.SetBytes(body, "status", e.Status); err != nil {
			return nil, err
		}
	}
	if e.Reason != nil {
		if body, err = sjson.SetRawBytes(body, "statusReason", mustJSON(reasonJSON(e.Reason))); err != nil {
			return nil, err
		}
	}
	for _, c := range e.AddOutcomes {
		out := outputJSON{
			Type:                 conceptJSON{Coding: []codingJSON{{System: gateway.SystemOutputType, Code: gateway.OutputResultingActivity, Display: "Resulting Activity"}}},
			ValueCodeableConcept: conceptJSON{Coding: []codingJSON{{System: c.System, Code: c.Code, Display: snomedDisplay[c.Code]}}},
		}
		if body, err = sjson.SetRawBytes(body, "output.-1", mustJSON(out)); err != nil {
			return nil, err
		}
	}
	for _, ref := range e.AddContent {
		out := contentOutputJSON{
			Type:           conceptJSON{Coding: []codingJSON{{System: gateway.SystemOutputType, Code: gateway.OutputAdditionalContent, Display: "Additional Content"}}},
			ValueReference: refJSON{Reference: ref},
		}
		if body, err = sjson.SetRawBytes(body, "output.-1", mustJSON(out)); err != nil {
			return nil, err
		}
	}
	if e.BusinessStatus != "" {
		bs := conceptJSON{Coding: []codingJSON{{System: gateway.SystemBusinessStatus, Code: e.BusinessStatus}}}
		if body, err = sjson.SetRawBytes(body, "businessStatus", mustJSON(bs)); err != nil {
			return nil, err
		}
	}
	if e.PROMDue != nil {
		if e.PROMDue.IsZero() {
			body, err = removeExtension(body, "extension", gateway.ExtensionPROMDue)
		} else {
			ext := extensionJSON{URL: gateway.ExtensionPROMDue, ValueDateTime: gateway.FormatInstant(*e.PROMDue)}
			body, err = replaceExtension(body, "extension", gateway.ExtensionPROMDue, mustJSON(ext))
		}
		if err != nil {
			return nil, err
		}
	}
	if e.LinkWorker != nil {
		ext := extensionJSON{URL: gateway.ExtensionLinkWorker, ValueReference: &refJSON{
			Type:       "PractitionerRole",
			Identifier: &identifierJSON{System: e.LinkWorker.System, Value: e.LinkWorker.Value},
		}}
		if body, err = replaceExtension(body, "extension", gateway.ExtensionLinkWorker, mustJSON(ext)); err != nil {
			return nil, err
		}
	}
	if e.AddNote != "" {
		note := annotationJSON{Text: e.AddNote, Time: gateway.FormatInstant(e.Now), AuthorString: e.ChangedBy.ClientID}
		if body, err = sjson.SetRawBytes(body, "note.-1", mustJSON(note)); err != nil {
			return nil, err
		}
	}
	if body, err = sjson.SetBytes(body, "lastModified", gateway.FormatInstant(e.Now)); err != nil {
		return nil, err
	}
	return stamp(body, e.ID, e.Version, e.Now, e.ChangedBy, e.ChangedAt)
}

// WriteRequest renders the next version of a ServiceRequest: its status,
// and the reason, unless the practice gave one itself.
func (d Documents) WriteRequest(body []byte, e gateway.RequestEdit) ([]byte, error) {
	body, err := compact(body)
	if err != nil {
		return nil, err
	}
	if body, err = sjson.SetBytes(body, "status", e.Status); err != nil {
		return nil, err
	}
	if _, given, _ := d.Request(body); given == nil && e.Reason != nil {
		ext := extensionJSON{URL: gateway.ExtensionRequestStatusReason, ValueCodeableConcept: ptr(reasonJSON(e.Reason))}
		if body, err = replaceExtension(body, "extension", gateway.ExtensionRequestStatusReason, mustJSON(ext)); err != nil {
			return nil, err
		}
	}
	return stamp(body, e.ID, e.Version, e.Now, e.ChangedBy, e.ChangedAt)
}

func ptr[T any](v T) *T { return &v }

// replaceExtension puts ext in the extension array at path, in place of
// any extension with the same url.
func replaceExtension(body []byte, path, url string, ext []byte) ([]byte, error) {
	var kept [][]byte
	gjson.GetBytes(body, path).ForEach(func(_, e gjson.Result) bool {
		if e.Get("url").String() != url {
			kept = append(kept, []byte(e.Raw))
		}
		return true
	})
	kept = append(kept, ext)
	return sjson.SetRawBytes(body, path, append(append([]byte{'['}, bytes.Join(kept, []byte{','})...), ']'))
}

// removeExtension drops the extensions with url from the array at path
// (and the array, when nothing is left).
func removeExtension(body []byte, path, url string) ([]byte, error) {
	exts := gjson.GetBytes(body, path)
	if !exts.Exists() {
		return body, nil
	}
	var kept [][]byte
	exts.ForEach(func(_, e gjson.Result) bool {
		if e.Get("url").String() != url {
			kept = append(kept, []byte(e.Raw))
		}
		return true
	})
	if len(kept) == 0 {
		return sjson.DeleteBytes(body, path)
	}
	return sjson.SetRawBytes(body, path, append(append([]byte{'['}, bytes.Join(kept, []byte{','})...), ']'))
}

// stamp sets id and meta of a version the gateway writes, with who wrote
// it: a meta extension naming the organisation and the client.
func stamp(body []byte, id string, version int, now time.Time, by gateway.Principal, at gateway.Organization) ([]byte, error) {
	body, err := setServerFields(body, id, version, gateway.FormatInstant(now))
	if err != nil {
		return nil, err
	}
	var who *refJSON
	switch {
	case at.Code != "":
		who = &refJSON{
			Reference:  "Organization/" + at.Code,
			Identifier: &identifierJSON{System: gateway.SystemODS, Value: at.Code},
			Display:    by.ClientID,
		}
	case by.ClientID != "":
		who = &refJSON{Display: by.ClientID} // the gateway itself (its PROM schedule)
	default:
		return body, nil
	}
	ext := extensionJSON{URL: gateway.ExtensionChangedBy, ValueReference: who}
	return replaceExtension(body, "meta.extension", gateway.ExtensionChangedBy, mustJSON(ext))
}

// CodesOnly strips a Task to what a practice whose patient shares codes only
// may see: coded outcomes and statuses, no notes, descriptions or text.
func (Documents) CodesOnly(body []byte) ([]byte, error) {
	var err error
	for _, path := range []string{"note", "description", "input", "statusReason.text", "businessStatus.text"} {
		if body, err = sjson.DeleteBytes(body, path); err != nil {
			return nil, err
		}
	}
	var kept [][]byte
	gjson.GetBytes(body, "output").ForEach(func(_, out gjson.Result) bool {
		switch {
		case out.Get("valueCodeableConcept").Exists():
			o, _ := sjson.DeleteBytes([]byte(out.Raw), "valueCodeableConcept.text")
			o, _ = sjson.DeleteBytes(o, "type.text")
			kept = append(kept, o)
		case out.Get("valueReference").Exists():
			o, _ := sjson.DeleteBytes([]byte(out.Raw), "valueReference.display")
			kept = append(kept, o)
		}
		return true
	})
	if len(kept) == 0 {
		return sjson.DeleteBytes(body, "output")
	}
	return sjson.SetRawBytes(body, "output", append(append([]byte{'['}, bytes.Join(kept, []byte{','})...), ']'))
}
