package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/spgateway/spgateway/gateway"
)

// Case records are for providers that do not speak FHIR. A referral's
// stored documents are read into one neutral record (the fields below);
// each provider's mapping then keeps only the fields it allows, in its own
// order, names, codes and date format. The reverse mapping reads the
// provider's events, named in its own vocabulary, as Task changes or PROMs.

// The formats of a provider's documents.
const (
	// FormatCaseRecord is a flat JSON case record (the default).
	FormatCaseRecord = "case-record"
	// FormatFHIR is a FHIR transaction Bundle of the referral's documents,
	// for a provider with its own FHIR server.
	FormatFHIR = "fhir"
)

// The date formats of a case record.
const (
	DateISO = "iso" // 2006-01-02 (the default)
	DateUK  = "uk"  // 02/01/2006
)

// ProviderMapping is one provider's case-record configuration.
type ProviderMapping struct {
	// Format is FormatCaseRecord ("" too) or FormatFHIR: a transaction
	// Bundle for a provider with its own FHIR server, to which Fields,
	// Rename, Codes and DateFormat do not apply.
	Format string
	// Fields is the allow-list: neutral field names, in output order
	// (required for case records). A field not listed never leaves the
	// gateway, whatever Rename and Codes say of it.
	Fields []string
	// Rename maps a neutral name to the provider's name.
	Rename map[string]string
	// Codes maps a neutral field that holds codes to the translation of
	// its codes (SNOMED CT for reason_codes, FHIR or gateway codes for the
	// others) into the provider's categories.
	Codes map[string]CodeTable
	// DateFormat is DateISO ("" too) or DateUK for dates (birth_date,
	// referred_at). Instants stay RFC 3339 in UTC.
	DateFormat string
	// Events maps the provider's event names to what they mean.
	Events map[string]EventMapping
}

// CodeTable translates codes. A code not in Map becomes Default; when
// Default is "" it is left out.
type CodeTable struct {
	Map     map[string]string
	Default string
}

// EventMapping is what one of a provider's events does to its case: a
// Task change (any of Status, Reason — a code of the gateway's
// status-reason system — and BusinessStatus, plus the event's note), or,
// when PROM is set, a PROM to record and nothing else.
type EventMapping struct {
	Status         string
	Reason         string
	BusinessStatus string
	PROM           bool
}

// CaseRecords implements gateway.CaseRecords from each provider's mapping,
// by provider code.
type CaseRecords struct {
	Providers map[string]ProviderMapping
}

var _ gateway.CaseRecords = CaseRecords{}

// fieldKind says what a neutral field holds, and so how a mapping may
// change it.
type fieldKind int

const (
	kindText    fieldKind = iota // free text or an identifier, passed as it is
	kindCode                     // one code: a code table may translate it
	kindCodes                    // a list of codes: a code table translates each
	kindDate                     // a FHIR date: written in the DateFormat
	kindInstant                  // an instant: RFC 3339 UTC (a date when only a date is known)
	kindBool
)

// neutralFields are the fields of the neutral record, in their canonical
// order. Values come from the stored FHIR JSON; a value that is absent (or
// not of the FHIR type expected) is left out of the record, never written
// as null or "".
var neutralFields = []struct {
	name string
	kind fieldKind
}{
	{"case_id", kindText},            // Task id: the case, in the case API's URLs
	{"referral_id", kindText},        // ServiceRequest id
	{"referral_number", kindText},    // ServiceRequest.identifier[0].value: the practice's referral number
	{"status", kindCode},             // Task.status
	{"business_status", kindCode},    // Task.businessStatus: its code of the gateway's business-status system
	{"status_reason", kindCode},      // Task.statusReason: its code of the gateway's status-reason system
	{"referred_at", kindDate},        // ServiceRequest.authoredOn, as a date (the date the practice wrote)
	{"received_at", kindInstant},     // Task.authoredOn: when the gateway received the referral
	{"last_updated", kindInstant},    // Task.meta.lastUpdated: the case's last change
	{"priority", kindCode},           // ServiceRequest.priority
	{"practice_code", kindText},      // ServiceRequest.requester: ODS code (identifier, else Organization/{code})
	{"practice_name", kindText},      // ServiceRequest.requester.display
	{"nhs_number", kindText},         // Patient.identifier of the NHS number system
	{"given_name", kindText},         // Patient.name (official, else first): given names joined " "
	{"family_name", kindText},        // Patient.name (official, else first): family
	{"birth_date", kindDate},         // Patient.birthDate
	{"gender", kindCode},             // Patient.gender
	{"phone", kindText},              // Patient.telecom: the first of system phone
	{"email", kindText},              // Patient.telecom: the first of system email
	{"address_line", kindText},       // Patient.address (home, else first): lines joined ", "
	{"city", kindText},               // Patient.address (home, else first): city
	{"postcode", kindText},           // Patient.address (home, else first): postalCode
	{"language", kindCode},           // Patient.communication (preferred, else first): language.coding[0].code
	{"reason_codes", kindCodes},      // SNOMED CT codes of ServiceRequest.reasonCode and of the Conditions' code, without repeats
	{"reason_text", kindText},        // ServiceRequest.reasonCode texts joined "; "
	{"notes", kindText},              // ServiceRequest.note texts joined "\n"
	{"codes_only_consent", kindBool}, // the patient shares coded outcomes only with the practice (Consent category codes-only); always present
	{"link_worker", kindText},        // Task link-worker extension: the link worker's identifier value
	{"prom_due", kindInstant},        // Task prom-due extension: when the next PROM is due
}

// NeutralFields lists every field a case record can hold, for
// configuration checks.
func NeutralFields() []string {
	out := make([]string, len(neutralFields))
	for i, f := range neutralFields {
		out[i] = f.name
	}
	return out
}

func fieldKindOf(name string) (fieldKind, bool) {
	for _, f := range neutralFields {
		if f.name == name {
			return f.kind, true
		}
	}
	return 0, false
}

// Has reports whether provider has a mapping.
func (c CaseRecords) Has(provider string) bool {
	_, ok := c.Providers[provider]
	return ok
}

// Render returns the provider's document for a referral: its case record,
// or for FormatFHIR a transaction Bundle. A provider without a mapping is
// an error (the configuration check should have caught it).
func (c CaseRecords) Render(provider string, r gateway.ReferralDocuments) ([]byte, error) {
	m, ok := c.Providers[provider]
	if !ok {
		return nil, fmt.Errorf("mapping: no case-record mapping for provider %q", provider)
	}
	switch m.Format {
	case "", FormatCaseRecord:
		return m.caseRecord(neutralRecord(r))
	case FormatFHIR:
		return transactionBundle(r)
	}
	return nil, fmt.Errorf("mapping: provider %q: unknown format %q", provider, m.Format)
}

// caseRecord writes the allowed fields of rec, in Fields order, under the
// provider's names, as one compact JSON object. Keys are written in order
// by hand: a map would not keep it.
func (m ProviderMapping) caseRecord(rec map[string]any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	written := map[string]bool{}
	for _, name := range m.Fields {
		kind, known := fieldKindOf(name)
		v, ok := rec[name]
		if !known || !ok {
			continue
		}
		if v, ok = m.providerValue(name, kind, v); !ok {
			continue
		}
		key := name
		if to := m.Rename[name]; to != "" {
			key = to
		}
		if written[key] {
			return nil, fmt.Errorf("mapping: two fields of the case record are named %q", key)
		}
		written[key] = true
		k, err := marshalValue(key)
		if err != nil {
			return nil, err
		}
		val, err := marshalValue(v)
		if err != nil {
			return nil, err
		}
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(val)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// providerValue translates a neutral value into the provider's vocabulary
// and date format. It returns false when nothing is left to write.
func (m ProviderMapping) providerValue(name string, kind fieldKind, v any) (any, bool) {
	table, translate := m.Codes[name]
	switch kind {
	case kindCode:
		if !translate {
			return v, true
		}
		s := table.translate(v.(string))
		return s, s != ""
	case kindCodes:
		codes := v.([]string)
		if !translate {
			return codes, true
		}
		var out []string
		for _, c := range codes {
			if s := table.translate(c); s != "" && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
		return out, len(out) > 0
	case kindDate:
		return formatDate(v.(string), m.DateFormat), true
	case kindInstant:
		if s := v.(string); !strings.Contains(s, "T") {
			return formatDate(s, m.DateFormat), true
		}
	}
	return v, true
}

func (t CodeTable) translate(code string) string {
	if s, ok := t.Map[code]; ok {
		return s
	}
	return t.Default
}

// formatDate writes a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD) in format:
// DateUK gives DD/MM/YYYY (MM/YYYY, YYYY for partial dates).
func formatDate(date, format string) string {
	if format != DateUK {
		return date
	}
	parts := strings.Split(date, "-")
	slices.Reverse(parts)
	return strings.Join(parts, "/")
}

// marshalValue writes one JSON value, leaving <, > and & as they are.
func marshalValue(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'}), nil
}

// neutralRecord reads the neutral fields of a referral from its stored
// documents: string values, []string for reason_codes, a bool for
// codes_only_consent. Absent values have no entry.
func neutralRecord(r gateway.ReferralDocuments) map[string]any {
	rec := map[string]any{}
	put := func(name, v string) {
		if v != "" {
			rec[name] = v
		}
	}
	task := gjson.ParseBytes(r.Task.Body)
	sr := gjson.ParseBytes(r.Request.Body)
	pt := gjson.ParseBytes(r.Patient.Body)

	put("case_id", firstOf(r.Task.ID, stringOf(task.Get("id"))))
	put("referral_id", firstOf(r.Request.ID, stringOf(sr.Get("id"))))
	put("referral_number", stringOf(sr.Get("identifier.0.value")))
	put("status", stringOf(task.Get("status")))
	put("business_status", codeOf(task.Get("businessStatus"), gateway.SystemBusinessStatus))
	put("status_reason", codeOf(task.Get("statusReason"), gateway.SystemStatusReason))
	if d := stringOf(sr.Get("authoredOn")); d != "" {
		if date, _, _ := strings.Cut(d, "T"); validDate(date) {
			put("referred_at", date)
		}
	}
	put("received_at", instantOf(task.Get("authoredOn")))
	put("last_updated", instantOf(task.Get("meta.lastUpdated")))
	put("priority", stringOf(sr.Get("priority")))

	requester := sr.Get("requester")
	if stringOf(requester.Get("identifier.system")) == gateway.SystemODS {
		put("practice_code", stringOf(requester.Get("identifier.value")))
	} else if code, ok := strings.CutPrefix(stringOf(requester.Get("reference")), "Organization/"); ok && !strings.Contains(code, "/") {
		put("practice_code", code)
	}
	put("practice_name", stringOf(requester.Get("display")))

	pt.Get("identifier").ForEach(func(_, id gjson.Result) bool {
		if stringOf(id.Get("system")) == gateway.SystemNHSNumber {
			put("nhs_number", stringOf(id.Get("value")))
			return false
		}
		return true
	})
	if name := preferred(pt.Get("name"), "use", "official"); name.Exists() {
		put("given_name", joinStrings(name.Get("given"), "", " "))
		put("family_name", stringOf(name.Get("family")))
	}
	if d := stringOf(pt.Get("birthDate")); validDate(d) {
		put("birth_date", d)
	}
	put("gender", stringOf(pt.Get("gender")))
	pt.Get("telecom").ForEach(func(_, cp gjson.Result) bool {
		switch name := stringOf(cp.Get("system")); name {
		case "phone", "email":
			if _, done := rec[name]; !done {
				put(name, stringOf(cp.Get("value")))
			}
		}
		return true
	})
	if addr := preferred(pt.Get("address"), "use", "home"); addr.Exists() {
		put("address_line", joinStrings(addr.Get("line"), "", ", "))
		put("city", stringOf(addr.Get("city")))
		put("postcode", stringOf(addr.Get("postalCode")))
	}
	if comm := preferredFlag(pt.Get("communication"), "preferred"); comm.Exists() {
		put("language", stringOf(comm.Get("language.coding.0.code")))
	}

	var codes []string
	addCodes := func(concept gjson.Result) {
		concept.Get("coding").ForEach(func(_, c gjson.Result) bool {
			if code := stringOf(c.Get("code")); code != "" && stringOf(c.Get("system")) == gateway.SystemSNOMED && !slices.Contains(codes, code) {
				codes = append(codes, code)
			}
			return true
		})
	}
	sr.Get("reasonCode").ForEach(func(_, rc gjson.Result) bool {
		addCodes(rc)
		return true
	})
	codesOnly := r.Task.Index.CodesOnly
	for _, rel := range r.Related {
		doc := gjson.ParseBytes(rel.Body)
		switch rel.Type {
		case gateway.TypeCondition:
			addCodes(doc.Get("code"))
		case gateway.TypeConsent:
			doc.Get("category").ForEach(func(_, cat gjson.Result) bool {
				if codeOf(cat, gateway.SystemConsentCategory) == gateway.ConsentCodesOnly {
					codesOnly = true
				}
				return true
			})
		}
	}
	if len(codes) > 0 {
		rec["reason_codes"] = codes
	}
	put("reason_text", joinStrings(sr.Get("reasonCode"), "text", "; "))
	put("notes", joinStrings(sr.Get("note"), "text", "\n"))
	rec["codes_only_consent"] = codesOnly

	task.Get("extension").ForEach(func(_, e gjson.Result) bool {
		switch stringOf(e.Get("url")) {
		case gateway.ExtensionLinkWorker:
			put("link_worker", stringOf(e.Get("valueReference.identifier.value")))
		case gateway.ExtensionPROMDue:
			put("prom_due", instantOf(e.Get("valueDateTime")))
		}
		return true
	})
	return rec
}

// stringOf is v when it is a JSON string, else "".
func stringOf(v gjson.Result) string {
	if v.Type != gjson.String {
		return ""
	}
	return v.String()
}

// firstOf returns the first of its arguments that is not "".
func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// codeOf returns the code of the coding of system in a CodeableConcept.
func codeOf(concept gjson.Result, system string) string {
	code := ""
	concept.Get("coding").ForEach(func(_, c gjson.Result) bool {
		if stringOf(c.Get("system")) == system {
			code = stringOf(c.Get("code"))
			return false
		}
		return true
	})
	return code
}

// preferred returns the element of list whose key is want, else the first.
func preferred(list gjson.Result, key, want string) gjson.Result {
	var first, found gjson.Result
	list.ForEach(func(_, v gjson.Result) bool {
		if !first.Exists() {
			first = v
		}
		if stringOf(v.Get(key)) == want {
			found = v
			return false
		}
		return true
	})
	if found.Exists() {
		return found
	}
	return first
}

// preferredFlag returns the element of list whose boolean flag is true,
// else the first.
func preferredFlag(list gjson.Result, flag string) gjson.Result {
	var first, found gjson.Result
	list.ForEach(func(_, v gjson.Result) bool {
		if !first.Exists() {
			first = v
		}
		if v.Get(flag).Type == gjson.True {
			found = v
			return false
		}
		return true
	})
	if found.Exists() {
		return found
	}
	return first
}

// joinStrings joins the non-empty strings of list (at key of each element,
// or the elements themselves when key is "") with sep.
func joinStrings(list gjson.Result, key, sep string) string {
	var parts []string
	list.ForEach(func(_, v gjson.Result) bool {
		if key != "" {
			v = v.Get(key)
		}
		if s := stringOf(v); s != "" {
			parts = append(parts, s)
		}
		return true
	})
	return strings.Join(parts, sep)
}

func validDate(s string) bool {
	_, err := gateway.ParseDate(s)
	return err == nil
}

// instantOf reads a FHIR dateTime or instant: RFC 3339 in UTC when it has a
// time, the date as it is when it has only a date, "" when it is neither.
func instantOf(v gjson.Result) string {
	s := stringOf(v)
	p, err := gateway.ParseDateTime(s)
	switch {
	case err != nil:
		return ""
	case !strings.Contains(s, "T"):
		return s
	}
	return gateway.FormatInstant(p.Start)
}

// transactionBundle puts the referral's stored documents, as they are, in a
// transaction Bundle of PUTs, those referred to before those that refer to
// them: Patient, Conditions and Consent, ServiceRequest, Task. It is
// written by hand so that each body keeps its bytes.
func transactionBundle(r gateway.ReferralDocuments) ([]byte, error) {
	docs := []gateway.Resource{r.Patient}
	for _, rel := range r.Related {
		if rel.Type == gateway.TypeCondition || rel.Type == gateway.TypeConsent {
			docs = append(docs, rel)
		}
	}
	docs = append(docs, r.Request, r.Task)
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"Bundle","type":"transaction","entry":[`)
	for i, d := range docs {
		body, err := compact(d.Body)
		if err != nil || !gjson.ParseBytes(body).IsObject() {
			return nil, fmt.Errorf("mapping: the stored %s/%s is not a JSON object", d.Type, d.ID)
		}
		typ := firstOf(d.Type, stringOf(gjson.GetBytes(body, "resourceType")))
		id := firstOf(d.ID, stringOf(gjson.GetBytes(body, "id")))
		if typ == "" || id == "" {
			return nil, fmt.Errorf("mapping: a stored document of the referral has no type or id")
		}
		ref, err := marshalValue(typ + "/" + id)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			b.WriteByte(',')
		}
		// No fullUrl: R4 wants it absolute, and a PUT entry is named by
		// its request.url.
		b.WriteString(`{"resource":`)
		b.Write(body)
		b.WriteString(`,"request":{"method":"PUT","url":`)
		b.Write(ref)
		b.WriteString(`}}`)
	}
	b.WriteString(`]}`)
	return b.Bytes(), nil
}

// Event reads a provider's event: a JSON object
//
//	{"event": "ACCEPT", "reason_text": "…", "note": "…"}
//	{"event": "PROM", "instrument": "swemwbs", "answered_at": "2026-11-20T10:00:00Z", "answers": {"1": 3, "2": 4}}
//
// It returns CodeInvalid for what is not such an object (malformed JSON, a
// member of the wrong JSON type, an unknown or repeated member), and
// CodeUnprocessable for an event the provider's mapping does not know (or
// a provider without one), naming "event", or for members the event cannot
// carry, naming them. reason_text goes with an event that sets a reason,
// note with one that changes the Task; instrument, answered_at and answers
// with a PROM, and only with one. An event that only adds a note needs one.
func (c CaseRecords) Event(provider string, body []byte) (gateway.CaseEvent, error) {
	in, err := readEvent(body)
	if err != nil {
		return gateway.CaseEvent{}, err
	}
	m, ok := c.Providers[provider]
	if !ok || len(m.Events) == 0 {
		return gateway.CaseEvent{}, eventProblem(gateway.IssueNotSupported, "event", "no case events are configured for this provider")
	}
	if in.event == "" {
		return gateway.CaseEvent{}, eventProblem(gateway.IssueRequired, "event", "event is required: the name of what happened")
	}
	em, ok := m.Events[in.event]
	if !ok {
		names := make([]string, 0, len(m.Events))
		for name := range m.Events {
			names = append(names, name)
		}
		slices.Sort(names)
		return gateway.CaseEvent{}, eventProblem(gateway.IssueCodeInvalid, "event", "%q is not an event of this provider (%s)", in.event, strings.Join(names, ", "))
	}
	var issues []gateway.Issue
	refuse := func(member string, present bool, why string) {
		if present {
			issues = append(issues, gateway.Issue{Type: gateway.IssueBusinessRule, Expression: []string{member},
				Message: fmt.Sprintf("%s: the %s event %s", member, in.event, why)})
		}
	}
	if em.PROM {
		refuse("reason_text", in.reasonText != "", "records a PROM and has no reason")
		refuse("note", in.note != "", "records a PROM and takes no note")
		p, problems := in.prom()
		if len(problems) > 0 || len(issues) > 0 {
			return gateway.CaseEvent{}, gateway.Unprocessable(append(issues, problems...))
		}
		return gateway.CaseEvent{PROM: p}, nil
	}
	refuse("reason_text", in.reasonText != "" && em.Reason == "", "gives no reason")
	for _, member := range []string{"instrument", "answered_at", "answers"} {
		refuse(member, in.present[member], "is not a PROM")
	}
	if em == (EventMapping{}) && in.note == "" {
		issues = append(issues, gateway.Issue{Type: gateway.IssueRequired, Expression: []string{"note"},
			Message: fmt.Sprintf("note is required: the %s event adds a note and changes nothing else", in.event)})
	}
	if err := gateway.Unprocessable(issues); err != nil {
		return gateway.CaseEvent{}, err
	}
	ev := gateway.CaseEvent{Status: em.Status, BusinessStatus: em.BusinessStatus, Note: in.note}
	if em.Reason != "" {
		ev.Reason = &gateway.Reason{Codes: []gateway.Coding{{System: gateway.SystemStatusReason, Code: em.Reason}}, Text: in.reasonText}
	}
	return ev, nil
}

func eventProblem(typ gateway.IssueType, member, format string, args ...any) error {
	return gateway.Unprocessable([]gateway.Issue{{Type: typ, Expression: []string{member}, Message: fmt.Sprintf(format, args...)}})
}

// eventBody is a provider's event as sent.
type eventBody struct {
	event, reasonText, note, instrument, answeredAt string
	answers                                         []gateway.Answer
	// present marks the members sent (null counts as absent).
	present map[string]bool
}

// readEvent reads the members of an event body, checking their JSON types.
func readEvent(body []byte) (eventBody, error) {
	in := eventBody{present: map[string]bool{}}
	if !json.Valid(body) {
		return in, invalid(gateway.IssueStructure, nil, "the event is not valid JSON")
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return in, invalid(gateway.IssueStructure, nil, "the event must be a JSON object")
	}
	if k, repeated := badKey(body); repeated {
		if k == "" {
			return in, invalid(gateway.IssueStructure, nil, "a JSON property has an empty name")
		}
		return in, invalid(gateway.IssueStructure, []string{k}, "the property %q appears twice", k)
	}
	strs := map[string]*string{"event": &in.event, "reason_text": &in.reasonText, "note": &in.note,
		"instrument": &in.instrument, "answered_at": &in.answeredAt}
	var err error
	root.ForEach(func(k, v gjson.Result) bool {
		name := k.String()
		if v.Type == gjson.Null {
			return true
		}
		if p, ok := strs[name]; ok {
			if v.Type != gjson.String {
				err = invalid(gateway.IssueStructure, []string{name}, "%s must be a string", name)
				return false
			}
			if e := json.Unmarshal([]byte(v.Raw), p); e != nil {
				err = invalid(gateway.IssueStructure, []string{name}, "%s is not a valid JSON string", name)
				return false
			}
			in.present[name] = true
			return true
		}
		if name != "answers" {
			err = invalid(gateway.IssueStructure, []string{name}, "%q is not a member of an event (event, reason_text, note, instrument, answered_at, answers)", name)
			return false
		}
		if !v.IsObject() {
			err = invalid(gateway.IssueStructure, []string{name}, "answers must be an object of item linkId to integer answer")
			return false
		}
		in.present[name] = true
		in.answers = []gateway.Answer{}
		v.ForEach(func(id, a gjson.Result) bool {
			ans := gateway.Answer{LinkID: id.String()}
			if a.Type == gjson.Number {
				if n, e := strconv.ParseInt(a.Raw, 10, 32); e == nil {
					ans.Value, ans.Given = int(n), true
				}
			}
			in.answers = append(in.answers, ans)
			return true
		})
		return true
	})
	return in, err
}

// instrumentBase is where the gateway's instruments have their canonical
// URLs: an event may name an instrument by its id.
const instrumentBase = gateway.CanonicalBase + "Questionnaire/"

// prom reads a PROM event's response, or says what it lacks.
func (in eventBody) prom() (*gateway.PROMResponse, []gateway.Issue) {
	var issues []gateway.Issue
	required := func(member, what string) {
		issues = append(issues, gateway.Issue{Type: gateway.IssueRequired, Expression: []string{member}, Message: member + " is required: " + what})
	}
	if in.instrument == "" {
		required("instrument", "the instrument answered, by id (swemwbs) or canonical URL")
	}
	if in.answeredAt == "" {
		required("answered_at", "when the patient answered")
	} else if _, err := gateway.ParseDateTime(in.answeredAt); err != nil {
		issues = append(issues, gateway.Issue{Type: gateway.IssueValue, Expression: []string{"answered_at"}, Message: "answered_at is " + err.Error()})
	}
	if len(in.answers) == 0 {
		required("answers", "each item's linkId with its integer answer")
	}
	if len(issues) > 0 {
		return nil, issues
	}
	questionnaire := in.instrument
	if strings.Contains(questionnaire, "://") || strings.HasPrefix(questionnaire, "urn:") {
		questionnaire = cutVersion(questionnaire)
	} else {
		questionnaire = instrumentBase + questionnaire
	}
	p := &casePROM{questionnaire: questionnaire, authored: in.answeredAt, answers: in.answers}
	return &gateway.PROMResponse{Questionnaire: questionnaire, Status: "completed", Authored: in.answeredAt,
		Answers: slices.Clone(in.answers), Render: p}, nil
}

// casePROM renders a PROM sent as a case event: the QuestionnaireResponse
// built from it, then stored and scored as one sent in FHIR is.
type casePROM struct {
	questionnaire, authored string
	answers                 []gateway.Answer
}

type answerJSON struct {
	ValueInteger int `json:"valueInteger"`
}

type responseItemJSON struct {
	LinkID string       `json:"linkId"`
	Answer []answerJSON `json:"answer,omitempty"`
}

type responseJSON struct {
	ResourceType  string             `json:"resourceType"`
	Questionnaire string             `json:"questionnaire"`
	Status        string             `json:"status"`
	Subject       refJSON            `json:"subject"`
	BasedOn       []refJSON          `json:"basedOn"`
	Authored      string             `json:"authored"`
	Item          []responseItemJSON `json:"item,omitempty"`
}

// Render builds the QuestionnaireResponse, with the subject and referral
// the service assigned, and renders it as promDocs does.
func (p *casePROM) Render(a gateway.PROMAssignment) ([]byte, []byte, error) {
	qr := responseJSON{
		ResourceType:  gateway.TypeQuestionnaireResponse,
		Questionnaire: p.questionnaire,
		Status:        "completed",
		Subject:       refJSON{Reference: gateway.TypePatient + "/" + a.PatientID},
		BasedOn:       []refJSON{{Reference: gateway.TypeServiceRequest + "/" + a.ReferralID}},
		Authored:      p.authored,
	}
	for _, ans := range p.answers {
		item := responseItemJSON{LinkID: ans.LinkID}
		if ans.Given {
			item.Answer = []answerJSON{{ValueInteger: ans.Value}}
		}
		qr.Item = append(qr.Item, item)
	}
	raw, err := json.Marshal(qr)
	if err != nil {
		return nil, nil, err
	}
	return (&promDocs{raw: raw}).Render(a)
}

// CheckProviderMapping reports what is wrong with a mapping: an unknown
// format or date format; for case records, no fields, an unknown or
// repeated field, a rename of an unknown field or to an empty name or a
// name another field has, a code table for a field that holds no codes;
// for FHIR, case-record settings that would not apply; and events with an
// empty name, unknown status, status-reason or business-status codes, or a
// PROM that also sets a status (the PROM is all that is recorded).
func CheckProviderMapping(m ProviderMapping) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch m.Format {
	case "", FormatCaseRecord:
		if len(m.Fields) == 0 {
			bad("fields: a case record needs at least one field (%s)", strings.Join(NeutralFields(), ", "))
		}
		keys := map[string]string{} // provider name → neutral field
		for _, f := range m.Fields {
			if _, ok := fieldKindOf(f); !ok {
				bad("fields: unknown field %q", f)
				continue
			}
			key := f
			if to, ok := m.Rename[f]; ok {
				key = to
			}
			if other, ok := keys[key]; ok {
				if other == f {
					bad("fields: %q is listed twice", f)
				} else {
					bad("rename: %q and %q would both be written as %q", other, f, key)
				}
				continue
			}
			keys[key] = f
		}
		for _, from := range sortedKeys(m.Rename) {
			if _, ok := fieldKindOf(from); !ok {
				bad("rename: unknown field %q", from)
			}
			if m.Rename[from] == "" {
				bad("rename: %q is renamed to an empty name", from)
			}
		}
		for _, f := range sortedKeys(m.Codes) {
			switch kind, ok := fieldKindOf(f); {
			case !ok:
				bad("codes: unknown field %q", f)
			case kind != kindCode && kind != kindCodes:
				bad("codes: %q holds no codes to translate", f)
			}
		}
		switch m.DateFormat {
		case "", DateISO, DateUK:
		default:
			bad("date_format: %q is not %s or %s", m.DateFormat, DateISO, DateUK)
		}
	case FormatFHIR:
		if len(m.Fields) > 0 || len(m.Rename) > 0 || len(m.Codes) > 0 || m.DateFormat != "" {
			bad("format fhir sends the whole referral as FHIR: fields, rename, codes and date_format do not apply")
		}
	default:
		bad("format: %q is not %s or %s", m.Format, FormatCaseRecord, FormatFHIR)
	}
	for _, name := range sortedKeys(m.Events) {
		e := m.Events[name]
		if name == "" {
			bad("events: an event has an empty name")
		}
		if e.Status != "" && !slices.Contains(gateway.TaskStatuses, e.Status) {
			bad("events: %s: %q is not a Task status", name, e.Status)
		} else if e.Status != "" && !gateway.MaySet(gateway.TaskOwner, e.Status) {
			bad("events: %s: a provider may not set a Task to %s", name, e.Status)
		}
		if e.Reason != "" && !slices.Contains(gateway.StatusReasons, e.Reason) {
			bad("events: %s: %q is not a code of %s", name, e.Reason, gateway.SystemStatusReason)
		}
		if e.BusinessStatus != "" && !slices.Contains(gateway.BusinessStatuses, e.BusinessStatus) {
			bad("events: %s: %q is not a code of %s", name, e.BusinessStatus, gateway.SystemBusinessStatus)
		}
		if e.PROM && (e.Status != "" || e.Reason != "" || e.BusinessStatus != "") {
			bad("events: %s: a PROM event records the PROM only (the gateway sets the business status): no status, reason or business status", name)
		}
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
