package mapping

import (
	"fmt"
	"net/url"
	"reflect"
	"strconv"
	"strings"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/spgateway/spgateway/gateway"
)

// MaxReferralEntries caps the entries of a referral Bundle: a referral is a
// handful of resources, and a cap keeps the work per request bounded.
const MaxReferralEntries = 50

// acceptedTypes are the resource types a referral may carry, with their
// model types for decoding.
var acceptedTypes = map[string]reflect.Type{
	gateway.TypePatient:        reflect.TypeFor[r4.Patient](),
	gateway.TypeServiceRequest: reflect.TypeFor[r4.ServiceRequest](),
	gateway.TypeCondition:      reflect.TypeFor[r4.Condition](),
	gateway.TypeConsent:        reflect.TypeFor[r4.Consent](),
	gateway.TypeTask:           reflect.TypeFor[r4.Task](),
}

// doc is one resource of a referral as the client sent it.
type doc struct {
	typ     string
	fullURL string
	raw     []byte   // compacted
	at      []string // FHIRPath bases
	refs    []reference
	part    gateway.Part
	index   gateway.Index // content fields, known at parse time
	// contained marks the Patient taken out of ServiceRequest.contained.
	contained bool
}

// referral implements gateway.Renderer for a parsed referral.
type referral struct {
	docs    []doc
	request int // index of the ServiceRequest
	subject gateway.SubjectKind
	// containedAt is the index in ServiceRequest.contained of the Patient
	// sent contained, or -1; containedRef is the local reference to it
	// ("#id").
	containedAt  int
	containedRef string
	// codesOnly: the referral's Consent says the practice gets coded
	// outcomes only.
	codesOnly bool
}

func invalid(typ gateway.IssueType, exprs []string, format string, args ...any) *gateway.Error {
	return &gateway.Error{Code: gateway.CodeInvalid, Issues: []gateway.Issue{{Type: typ, Expression: exprs, Message: fmt.Sprintf(format, args...)}}}
}

func unprocessable(typ gateway.IssueType, exprs []string, format string, args ...any) gateway.Issue {
	return gateway.Issue{Type: typ, Expression: exprs, Message: fmt.Sprintf(format, args...)}
}

func under(bases []string, elem string) []string {
	out := make([]string, len(bases))
	for i, b := range bases {
		out[i] = b + "." + elem
	}
	return out
}

// ParseTransaction reads a practice's referral sent as a transaction Bundle:
// one ServiceRequest, the Patient it is for (or a reference to a known one),
// optionally Conditions and a Consent it refers to, and a Task. Entries refer
// to each other by fullUrl (urn:uuid). It returns CodeInvalid (400) for what
// is not a FHIR Bundle and CodeUnprocessable (422) for a Bundle that is not a
// referral; the referral's own rules are the service's.
func ParseTransaction(body []byte) (*gateway.Referral, error) {
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return nil, invalid(gateway.IssueStructure, []string{"Bundle"}, "the body must be a FHIR resource (a JSON object)")
	}
	if rt := root.Get("resourceType").String(); rt != gateway.TypeBundle {
		return nil, invalid(gateway.IssueStructure, []string{"Bundle"}, "resourceType is %q: this endpoint takes a transaction Bundle", rt)
	}
	switch t := root.Get("type"); {
	case !t.Exists():
		return nil, gateway.Unprocessable([]gateway.Issue{unprocessable(gateway.IssueRequired, []string{"Bundle.type"}, "type is required")})
	case t.String() != "transaction":
		return nil, gateway.Unprocessable([]gateway.Issue{unprocessable(gateway.IssueValue, []string{"Bundle.type"},
			"Bundle.type is %q: a referral is sent as a transaction", t.String())})
	}
	bundle, err := r4.UnmarshalBundle(body)
	if err != nil {
		return nil, decodeProblem(reflect.TypeFor[r4.Bundle](), []string{"Bundle"}, err)
	}
	if err := checkKeys(body, []string{"Bundle"}); err != nil {
		return nil, err
	}
	switch n := len(bundle.Entry); {
	case n == 0:
		return nil, gateway.Unprocessable([]gateway.Issue{unprocessable(gateway.IssueRequired, []string{"Bundle.entry"}, "the Bundle has no entries")})
	case n > MaxReferralEntries:
		return nil, gateway.Unprocessable([]gateway.Issue{unprocessable(gateway.IssueTooLong, []string{"Bundle.entry"},
			"a referral Bundle holds at most %d entries", MaxReferralEntries)})
	}

	r := &referral{request: -1, containedAt: -1}
	var issues []gateway.Issue
	models := make([]any, len(bundle.Entry))
	fullURLs := map[string]int{}
	for i, e := range bundle.Entry {
		base := "Bundle.entry[" + strconv.Itoa(i) + "]"
		if e.Request == nil {
			issues = append(issues, unprocessable(gateway.IssueRequired, []string{base + ".request"}, "each entry needs a request"))
			continue
		}
		if e.Request.Method != r4.HTTPVerbPOST {
			issues = append(issues, unprocessable(gateway.IssueNotSupported, []string{base + ".request.method"},
				"only POST (create) entries are accepted in a referral, not %s", e.Request.Method.Code()))
			continue
		}
		if len(e.Resource) == 0 {
			issues = append(issues, unprocessable(gateway.IssueRequired, []string{base + ".resource"}, "each entry needs a resource"))
			continue
		}
		rt := gjson.GetBytes(e.Resource, "resourceType").String()
		model, ok := acceptedTypes[rt]
		if !ok {
			issues = append(issues, unprocessable(gateway.IssueNotSupported, []string{base + ".resource"},
				"%q resources are not accepted in a referral Bundle", rt))
			continue
		}
		if u := strings.TrimSuffix(e.Request.Url, "/"); u != rt {
			issues = append(issues, unprocessable(gateway.IssueValue, []string{base + ".request.url"},
				"request.url must be %q, the type of the entry's resource", rt))
			continue
		}
		at := []string{rt, base + ".resource"}
		m, err := decode(rt, e.Resource)
		if err != nil {
			return nil, decodeProblem(model, at, err)
		}
		raw, err := compact(e.Resource)
		if err != nil {
			return nil, invalid(gateway.IssueStructure, at, "the resource is not valid JSON")
		}
		d := doc{typ: rt, fullURL: str(e.FullUrl), raw: raw, at: at, refs: references(raw)}
		if d.fullURL != "" {
			if j, dup := fullURLs[d.fullURL]; dup {
				issues = append(issues, unprocessable(gateway.IssueValue, []string{base + ".fullUrl"}, "fullUrl repeats that of entry %d", j))
			}
			fullURLs[d.fullURL] = i
		}
		if inx := str(e.Request.IfNoneExist); inx != "" {
			if is := checkIfNoneExist(rt, m, inx, []string{base + ".request.ifNoneExist"}); is != nil {
				issues = append(issues, *is)
			}
		}
		r.docs = append(r.docs, d)
		models[len(r.docs)-1] = m
	}
	if len(issues) > 0 {
		return nil, gateway.Unprocessable(issues)
	}
	// Local references must name an entry of the Bundle.
	for _, d := range r.docs {
		for _, ref := range d.refs {
			if strings.HasPrefix(ref.value, "urn:") {
				if _, ok := fullURLs[ref.value]; !ok {
					issues = append(issues, unprocessable(gateway.IssueValue, under(d.at, ref.element),
						"%s does not resolve to an entry of the Bundle", ref.value))
				}
			}
		}
	}
	if len(issues) > 0 {
		return nil, gateway.Unprocessable(issues)
	}
	return r.build(models[:len(r.docs)], fullURLs)
}

// ParseServiceRequest reads a referral sent as a single ServiceRequest whose
// subject is a contained Patient, Patient/{id}, or an NHS number.
// ifNoneExist is the If-None-Exist header, if any.
func ParseServiceRequest(body []byte, ifNoneExist string) (*gateway.Referral, error) {
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return nil, invalid(gateway.IssueStructure, []string{"ServiceRequest"}, "the body must be a FHIR resource (a JSON object)")
	}
	if rt := root.Get("resourceType").String(); rt != gateway.TypeServiceRequest {
		return nil, invalid(gateway.IssueStructure, []string{"ServiceRequest"}, "resourceType is %q: this endpoint takes a ServiceRequest", rt)
	}
	at := []string{gateway.TypeServiceRequest}
	m, err := decode(gateway.TypeServiceRequest, body)
	if err != nil {
		return nil, decodeProblem(acceptedTypes[gateway.TypeServiceRequest], at, err)
	}
	if err := checkKeys(body, at); err != nil {
		return nil, err
	}
	raw, err := compact(body)
	if err != nil {
		return nil, invalid(gateway.IssueStructure, at, "the resource is not valid JSON")
	}
	if ifNoneExist != "" {
		if is := checkIfNoneExist(gateway.TypeServiceRequest, m, ifNoneExist, []string{"ServiceRequest.identifier"}); is != nil {
			return nil, gateway.Unprocessable([]gateway.Issue{*is})
		}
	}
	r := &referral{request: -1, containedAt: -1}
	r.docs = []doc{{typ: gateway.TypeServiceRequest, raw: raw, at: at, refs: references(raw)}}
	return r.build([]any{m}, nil)
}

func decode(typ string, raw []byte) (any, error) {
	switch typ {
	case gateway.TypePatient:
		m, err := r4.UnmarshalPatient(raw)
		return &m, err
	case gateway.TypeServiceRequest:
		m, err := r4.UnmarshalServiceRequest(raw)
		return &m, err
	case gateway.TypeCondition:
		m, err := r4.UnmarshalCondition(raw)
		return &m, err
	case gateway.TypeConsent:
		m, err := r4.UnmarshalConsent(raw)
		return &m, err
	case gateway.TypeTask:
		m, err := r4.UnmarshalTask(raw)
		return &m, err
	}
	return nil, fmt.Errorf("unsupported type %s", typ)
}

// checkIfNoneExist accepts conditional creates only on the natural keys the
// gateway de-duplicates by anyway: the referral identifier and the NHS number.
func checkIfNoneExist(typ string, model any, criteria string, exprs []string) *gateway.Issue {
	q, err := url.ParseQuery(criteria)
	values := q["identifier"]
	if err != nil || len(q) != 1 || len(values) != 1 {
		is := unprocessable(gateway.IssueNotSupported, exprs, "conditional create is supported on identifier=system|value only")
		return &is
	}
	system, value, _ := strings.Cut(values[0], "|")
	var want []gateway.Identifier
	switch m := model.(type) {
	case *r4.ServiceRequest:
		if ids := identifiers(m.Identifier); len(ids) > 0 {
			want = ids[:1]
		}
	case *r4.Patient:
		for _, id := range identifiers(m.Identifier) {
			if id.System == gateway.SystemNHSNumber {
				want = append(want, id)
			}
		}
	default:
		is := unprocessable(gateway.IssueNotSupported, exprs, "conditional create is not supported for %s in a referral", typ)
		return &is
	}
	for _, id := range want {
		if id.System == system && id.Value == value {
			return nil
		}
	}
	is := unprocessable(gateway.IssueValue, exprs, "the conditional create criteria must be the resource's own identifier (system|value)")
	return &is
}

// build checks how the resources of a referral refer to each other and
// derives the views the rules read.
func (r *referral) build(models []any, fullURLs map[string]int) (*gateway.Referral, error) {
	var issues []gateway.Issue
	patient, task := -1, -1
	for i, d := range r.docs {
		switch d.typ {
		case gateway.TypeServiceRequest:
			if r.request >= 0 {
				issues = append(issues, unprocessable(gateway.IssueValue, []string{d.at[len(d.at)-1]}, "a referral Bundle holds exactly one ServiceRequest"))
			}
			r.request = i
		case gateway.TypePatient:
			if patient >= 0 {
				issues = append(issues, unprocessable(gateway.IssueValue, []string{d.at[len(d.at)-1]}, "a referral is for one Patient"))
			}
			patient = i
		case gateway.TypeTask:
			if task >= 0 {
				issues = append(issues, unprocessable(gateway.IssueValue, []string{d.at[len(d.at)-1]}, "a referral Bundle holds at most one Task"))
			}
			task = i
		}
	}
	if r.request < 0 {
		issues = append(issues, unprocessable(gateway.IssueRequired, []string{"Bundle.entry"}, "a referral Bundle holds exactly one ServiceRequest"))
	}
	if len(issues) > 0 {
		return nil, gateway.Unprocessable(issues)
	}
	// target resolves a reference to the index of an entry, or -1.
	target := func(ref string) int {
		if i, ok := fullURLs[ref]; ok && ref != "" {
			return i
		}
		return -1
	}
	refersTo := func(d doc, j int) bool {
		for _, ref := range d.refs {
			if target(ref.value) == j {
				return true
			}
		}
		return false
	}

	sr := models[r.request].(*r4.ServiceRequest)
	srDoc := &r.docs[r.request]
	srDoc.part = gateway.PartRequest
	out := &gateway.Referral{Render: r}
	view := gateway.RequestView{
		At:          srDoc.at,
		Identifiers: identifiers(sr.Identifier),
		Status:      gjson.GetBytes(srDoc.raw, "status").String(),
		Intent:      gjson.GetBytes(srDoc.raw, "intent").String(),
		Codes:       codings(sr.Code),
		AuthoredOn:  str(sr.AuthoredOn),
		Requester:   orgRef(sr.Requester),
		Reasons:     codings(ptrs(sr.ReasonCode)...),
	}
	for i := range sr.Performer {
		view.Performers = append(view.Performers, orgRef(&sr.Performer[i]))
	}
	for _, rr := range sr.ReasonReference {
		if j := target(str(rr.Reference)); j >= 0 {
			if c, ok := models[j].(*r4.Condition); ok {
				view.Reasons = append(view.Reasons, codings(c.Code)...)
			}
		}
	}
	srDoc.index.Status = view.Status
	if len(view.Identifiers) > 0 {
		srDoc.index.Key = view.Identifiers[0]
	}
	srDoc.index.Identifiers = view.Identifiers
	if p, err := gateway.ParseDateTime(view.AuthoredOn); err == nil {
		srDoc.index.Authored = p.Start
	}

	// The subject.
	subj := sr.Subject
	ref := str(subj.Reference)
	switch {
	case !gjson.GetBytes(srDoc.raw, "subject").Exists():
		view.Subject.Kind = gateway.SubjectMissing
	case target(ref) >= 0:
		view.Subject.Kind = gateway.SubjectUnresolved
		if j := target(ref); j == patient {
			view.Subject.Kind = gateway.SubjectIncluded
			out.Patient = patientView(models[j].(*r4.Patient), r.docs[j].at)
		}
	case strings.HasPrefix(ref, "#"):
		view.Subject.Kind = gateway.SubjectUnresolved
		if p, at, ok := r.containedPatient(ref[1:]); ok {
			view.Subject.Kind = gateway.SubjectIncluded
			out.Patient = patientView(p, at)
		}
	case strings.HasPrefix(ref, "Patient/") && !strings.Contains(ref[len("Patient/"):], "/"):
		view.Subject = gateway.SubjectRef{Kind: gateway.SubjectByID, ID: ref[len("Patient/"):]}
	case ref == "":
		if n, ok := nhsNumberOf(subj); ok {
			view.Subject = gateway.SubjectRef{Kind: gateway.SubjectByIdentifier, NHSNumber: n}
		} else {
			view.Subject.Kind = gateway.SubjectUnsupported
		}
	default:
		view.Subject.Kind = gateway.SubjectUnsupported
	}
	r.subject = view.Subject.Kind
	out.Request = view

	// The other entries must belong to the referral.
	for i := range r.docs {
		d := &r.docs[i]
		if d.contained {
			continue
		}
		switch d.typ {
		case gateway.TypePatient:
			d.part = gateway.PartPatient
			// When the subject itself is wrong, the subject rule says so.
			if subjectUsable(view.Subject.Kind) && target(str(sr.Subject.Reference)) != i {
				issues = append(issues, unprocessable(gateway.IssueValue, d.at, "this Patient is not the ServiceRequest's subject"))
			}
			d.index = patientIndex(models[i].(*r4.Patient), d.raw)
		case gateway.TypeCondition, gateway.TypeConsent:
			d.part = gateway.PartSupporting
			if !refersTo(*srDoc, i) {
				issues = append(issues, unprocessable(gateway.IssueValue, d.at,
					"this %s is not referred to by the ServiceRequest (reasonReference or supportingInfo)", d.typ))
			}
			for _, ref := range d.refs {
				if j := target(ref.value); j >= 0 && r.docs[j].typ == gateway.TypePatient && j != patient {
					issues = append(issues, unprocessable(gateway.IssueValue, under(d.at, ref.element), "must refer to the referral's Patient"))
				}
			}
			d.index.Identifiers = identifiersOf(models[i])
			if c, ok := models[i].(*r4.Consent); ok && consentCodesOnly(c) {
				r.codesOnly = true
			}
		case gateway.TypeTask:
			d.part = gateway.PartTask
			t := models[i].(*r4.Task)
			tv := &gateway.TaskView{
				At:             d.at,
				Status:         gjson.GetBytes(d.raw, "status").String(),
				Intent:         t.Intent,
				FocusIsRequest: t.Focus != nil && target(str(t.Focus.Reference)) == r.request,
				ForPresent:     t.For != nil,
				ForIsPatient:   t.For != nil && patient >= 0 && target(str(t.For.Reference)) == patient,
				Requester:      orgRef(t.Requester),
				Owner:          orgRef(t.Owner),
			}
			out.Task = tv
			d.index.Status = tv.Status
			d.index.Identifiers = identifiers(t.Identifier)
		}
	}
	if len(issues) > 0 {
		return nil, gateway.Unprocessable(issues)
	}
	for _, d := range r.docs {
		out.Entries = append(out.Entries, gateway.Entry{Type: d.typ, Part: d.part})
	}
	return out, nil
}

// consentCodesOnly reports whether a Consent limits what the practice hears
// back to coded outcomes (category codes-only of the gateway's system).
func consentCodesOnly(c *r4.Consent) bool {
	for _, cat := range c.Category {
		for _, cd := range cat.Coding {
			if str(cd.System) == gateway.SystemConsentCategory && str(cd.Code) == gateway.ConsentCodesOnly {
				return true
			}
		}
	}
	return false
}

func subjectUsable(k gateway.SubjectKind) bool {
	return k == gateway.SubjectIncluded || k == gateway.SubjectByID || k == gateway.SubjectByIdentifier
}

// containedPatient finds the Patient with local id in the ServiceRequest's
// contained resources and adds it as a document of the referral.
func (r *referral) containedPatient(id string) (*r4.Patient, []string, bool) {
	sr := &r.docs[r.request]
	var found gjson.Result
	at := -1
	i := 0
	gjson.GetBytes(sr.raw, "contained").ForEach(func(_, c gjson.Result) bool {
		if c.Get("id").String() == id && c.Get("resourceType").String() == gateway.TypePatient {
			found, at = c, i
			return false
		}
		i++
		return true
	})
	if at < 0 {
		return nil, nil, false
	}
	bases := []string{gateway.TypePatient}
	for _, b := range sr.at {
		bases = append(bases, b+".contained["+strconv.Itoa(at)+"]")
	}
	raw, err := sjson.DeleteBytes([]byte(found.Raw), "id")
	if err != nil {
		return nil, nil, false
	}
	p, err := r4.UnmarshalPatient(raw)
	if err != nil {
		return nil, nil, false
	}
	r.containedAt, r.containedRef = at, "#"+id
	// The contained Patient becomes a resource of its own, whose references
	// to entries of a Bundle are resolved like those of the entries.
	r.docs = append(r.docs, doc{typ: gateway.TypePatient, raw: raw, at: bases, refs: references(raw), part: gateway.PartPatient,
		index: patientIndex(&p, raw), contained: true})
	return &p, bases, true
}

func patientIndex(p *r4.Patient, raw []byte) gateway.Index {
	x := gateway.Index{Identifiers: identifiers(p.Identifier), ContentHash: contentHash(raw)}
	for _, id := range x.Identifiers {
		if id.System == gateway.SystemNHSNumber {
			x.Key = id
			break
		}
	}
	return x
}

func identifiersOf(model any) []gateway.Identifier {
	switch m := model.(type) {
	case *r4.Condition:
		return identifiers(m.Identifier)
	case *r4.Consent:
		return identifiers(m.Identifier)
	}
	return nil
}

func ptrs[T any](s []T) []*T {
	out := make([]*T, len(s))
	for i := range s {
		out[i] = &s[i]
	}
	return out
}
