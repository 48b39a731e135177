package fhir_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// The attack suite: every route, called by every client of the other
// tenant with every resource of this one, answers exactly as it does for an
// id that does not exist (404, or 403/405 where the role or type may not
// ask at all) with an OperationOutcome; searches, includes, chains, id
// lists and cursors return nothing of the other tenant; refused writes
// change nothing, enqueue nothing, and are audited as refusals.

// atkTenant is one practice, the provider its referrals go to, and what
// they hold.
type atkTenant struct {
	practice, provider       string // keys
	practiceOrg, providerOrg string
	practiceID, providerID   string // client ids
	ref                      referral
	nhs, identifier          string
	subscription             string
	ids                      map[string][]string // type → ids
}

// secrets are the strings of a tenant no other client may ever see.
func (tn *atkTenant) secrets() []string {
	out := []string{tn.nhs, tn.identifier}
	for _, ids := range tn.ids {
		out = append(out, ids...)
	}
	return out
}

// atkSeed makes a tenant's referral, accepts it, records a PROM and a case
// event, and subscribes the practice.
func atkSeed(t *testing.T, g *testGateway, tn *atkTenant, event string) {
	t.Helper()
	if tn.practiceOrg == "A81001" {
		tn.ref = newReferral(t, g, tn.identifier)
	} else {
		tn.ref = scReferA81002(t, g, tn.identifier)
	}
	g.mustChange(t, tn.ref.task, tn.provider, setStatus("accepted"))
	if r := g.post("/fhir/QuestionnaireResponse", tn.provider, promResponse(tn.ref, "swemwbs", scAnsweredAt(), swemwbsAnswers(3, 3, 3, 3, 3, 3, 3))); r.status != http.StatusCreated {
		t.Fatalf("PROM: %d %s", r.status, r.body)
	}
	scMustEvent(t, g, tn.ref.task, tn.provider, `{"event":"`+event+`"}`)
	sub := scSubscription(t, func(s map[string]any) { s["criteria"] = "Task?requester=Organization/" + tn.practiceOrg })
	r := g.post("/fhir/Subscription", tn.practice, sub)
	if r.status != http.StatusCreated {
		t.Fatalf("Subscription: %d %s", r.status, r.body)
	}
	tn.subscription = strings.Split(strings.TrimPrefix(r.header.Get("Location"), "/fhir/Subscription/"), "/")[0]
	tn.ids = map[string][]string{gateway.TypeSubscription: {tn.subscription}}
	for _, typ := range []string{"Task", "ServiceRequest", "Patient", "Condition", "Consent", "QuestionnaireResponse", "Observation"} {
		for _, key := range []string{tn.practice, tn.provider} {
			res, _ := entries(t, g.get("/fhir/"+typ+"?_count=500", key))
			for _, e := range res {
				if id := str(e, "id"); !slices.Contains(tn.ids[typ], id) {
					tn.ids[typ] = append(tn.ids[typ], id)
				}
			}
		}
	}
	for _, typ := range []string{"Task", "ServiceRequest", "Patient", "Condition", "Consent", "QuestionnaireResponse", "Observation"} {
		if len(tn.ids[typ]) == 0 {
			t.Fatalf("tenant %s has no %s", tn.practiceOrg, typ)
		}
	}
}

// atkWorld is two tenants on one gateway.
func atkWorld(t *testing.T, engine string) (*testGateway, *atkTenant, *atkTenant) {
	t.Helper()
	return atkPopulate(t, newGateway(t, engine, scWithCases(nil)))
}

// atkPopulate seeds the two tenants on a gateway with case records.
func atkPopulate(t *testing.T, g *testGateway) (*testGateway, *atkTenant, *atkTenant) {
	t.Helper()
	a := &atkTenant{practice: keyA81001, provider: keyPRV01, practiceOrg: "A81001", providerOrg: "PRV01",
		practiceID: "practice-a81001", providerID: "provider-prv01", nhs: "9434765919", identifier: "ATK-A-0001"}
	b := &atkTenant{practice: keyA81002, provider: keyPRV02, practiceOrg: "A81002", providerOrg: "PRV02",
		practiceID: "practice-a81002", providerID: "provider-prv02", nhs: "6541003238", identifier: "ATK-B-0001"}
	atkSeed(t, g, a, "CONTACT_ATTEMPT")
	atkSeed(t, g, b, "contacted")
	return g, a, b
}

// noSecrets fails when body holds any of the victim's strings.
func noSecrets(t *testing.T, what string, body []byte, victim *atkTenant) {
	t.Helper()
	for _, s := range victim.secrets() {
		if bytes.Contains(body, []byte(s)) {
			t.Errorf("%s: the answer holds %s of %s: %.300s", what, s, victim.practiceOrg, body)
		}
	}
}

// The route kinds of the attack table.
const (
	atkPublic      = "public"      // no tenant data: metadata, health, token endpoint
	atkInstance    = "instance"    // /fhir/:type/:id…: every victim resource
	atkTypeLevel   = "type"        // searches and creates: every type
	atkTransaction = "transaction" // the referral Bundle
	atkCaseList    = "case-list"
	atkCase        = "case" // /api/v1/cases/:id…: every victim Task
	atkReport      = "report"
	atkAdmin       = "admin" // operators only
)

// atkRoutes is every route the router has, with how it is attacked. A
// route without a row fails TestAttackEveryRouteHasARow.
var atkRoutes = map[string]string{
	"GET /healthz":                              atkPublic,
	"GET /readyz":                               atkPublic,
	"GET /fhir/metadata":                        atkPublic,
	"POST /fhir":                                atkTransaction,
	"POST /fhir/":                               atkTransaction,
	"GET /fhir/:type":                           atkTypeLevel,
	"POST /fhir/:type":                          atkTypeLevel,
	"POST /fhir/:type/_search":                  atkTypeLevel,
	"GET /fhir/:type/:id":                       atkInstance,
	"POST /fhir/:type/:id":                      atkInstance,
	"PUT /fhir/:type/:id":                       atkInstance,
	"PATCH /fhir/:type/:id":                     atkInstance,
	"DELETE /fhir/:type/:id":                    atkInstance,
	"GET /fhir/:type/:id/_history":              atkInstance,
	"GET /fhir/:type/:id/_history/:vid":         atkInstance,
	"GET /api/v1/reports/funnel":                atkReport,
	"GET /api/v1/reports/outcomes":              atkReport,
	"GET /api/v1/cases":                         atkCaseList,
	"GET /api/v1/cases/:id":                     atkCase,
	"POST /api/v1/cases/:id/events":             atkCase,
	"GET /api/v1/outbox":                        atkAdmin,
	"POST /api/v1/outbox/:id/redrive":           atkAdmin,
	"POST /oauth2/token":                        atkPublic,
	"GET /fhir/.well-known/smart-configuration": atkPublic,
}

func TestAttackEveryRouteHasARow(t *testing.T) {
	g := newGateway(t, storetest.Engines()[0])
	routes := g.fhir.Routes()
	if len(routes) < 20 {
		t.Fatalf("only %d routes: %v", len(routes), routes)
	}
	for _, r := range routes {
		if _, ok := atkRoutes[r]; !ok {
			t.Errorf("route %s has no row in the attack table", r)
		}
	}
}

// atkTypes are the resource types of the CapabilityStatement.
func atkTypes(t *testing.T, g *testGateway) []string {
	t.Helper()
	var types []string
	cs := g.get("/fhir/metadata", "").json(t)
	for _, r := range cs["rest"].([]any)[0].(map[string]any)["resource"].([]any) {
		types = append(types, r.(map[string]any)["type"].(string))
	}
	return types
}

// atkRequest is one instance-level request, with {id} for the id.
type atkRequest struct {
	method, path, body string
	headers            []string
}

func atkInstanceRequests(typ string, doc []byte) []atkRequest {
	body := fmt.Sprintf(`{"resourceType":%q,"id":"{id}","status":"cancelled"}`, typ)
	if doc != nil { // the victim's own document, revoked or cancelled
		var m map[string]any
		if err := json.Unmarshal(doc, &m); err == nil {
			m["id"] = "{id}"
			m["status"] = map[string]string{"ServiceRequest": "revoked", "Subscription": "off"}[typ]
			if m["status"] == "" {
				m["status"] = "cancelled"
			}
			delete(m, "meta")
			b, _ := json.Marshal(m)
			body = string(b)
		}
	}
	return []atkRequest{
		{method: "GET", path: "/fhir/" + typ + "/{id}"},
		{method: "GET", path: "/fhir/" + typ + "/{id}/_history"},
		{method: "GET", path: "/fhir/" + typ + "/{id}/_history/1"},
		{method: "PUT", path: "/fhir/" + typ + "/{id}", body: body, headers: []string{"If-Match", `W/"1"`}},
		{method: "PUT", path: "/fhir/" + typ + "/{id}", body: body},
		{method: "PATCH", path: "/fhir/" + typ + "/{id}", body: `[{"op":"replace","path":"/status","value":"cancelled"}]`,
			headers: []string{"Content-Type", "application/json-patch+json", "If-Match", `W/"2"`}},
		{method: "DELETE", path: "/fhir/" + typ + "/{id}"},
		{method: "POST", path: "/fhir/" + typ + "/{id}", body: `{"resourceType":"Parameters"}`},
	}
}

// atkSame checks that the answer about the victim's id is the answer
// about an id that does not exist, word for word once the ids are set
// aside: the caller learns nothing, not even that the id exists.
func atkSame(t *testing.T, what string, victim, missing response, victimID, missingID string) {
	t.Helper()
	if victim.status != missing.status {
		t.Errorf("%s: %d for the other tenant's id, %d for a missing one: %s", what, victim.status, missing.status, victim.body)
		return
	}
	switch victim.status {
	case http.StatusNotFound, http.StatusForbidden, http.StatusMethodNotAllowed,
		http.StatusPreconditionRequired: // If-Match is asked for before the id is looked up
	default:
		t.Errorf("%s: %d %s", what, victim.status, victim.body)
		return
	}
	vb := bytes.ReplaceAll(victim.body, []byte(victimID), []byte("{id}"))
	mb := bytes.ReplaceAll(missing.body, []byte(missingID), []byte("{id}"))
	if !bytes.Equal(vb, mb) {
		t.Errorf("%s: answers differ:\n%s\n%s", what, vb, mb)
	}
	if len(outcomeIssues(t, victim)) == 0 {
		t.Errorf("%s: no issue", what)
	}
}

// atkVersions reads every resource of a tenant as its owner: Type/id →
// versionId.
func atkVersions(t *testing.T, g *testGateway, tn *atkTenant, docs map[string][]byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	for typ, ids := range tn.ids {
		for _, id := range ids {
			var r response
			for _, key := range []string{tn.provider, tn.practice} {
				if r = g.get("/fhir/"+typ+"/"+id, key); r.status == http.StatusOK {
					break
				}
			}
			if r.status != http.StatusOK {
				t.Fatalf("owner reads %s/%s: %d", typ, id, r.status)
			}
			out[typ+"/"+id] = str(r.json(t), "meta", "versionId")
			if docs != nil {
				docs[typ+"/"+id] = r.body
			}
		}
	}
	return out
}

// TestAttackInstances: every instance route × every type × every resource
// of the other tenant × each of its clients.
func TestAttackInstances(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g, a, b := atkWorld(t, engine)
		types := atkTypes(t, g)
		docs := map[string][]byte{}
		before := map[*atkTenant]map[string]string{a: atkVersions(t, g, a, docs), b: atkVersions(t, g, b, docs)}
		outboxBefore := scListOutbox(t, g, "")
		const missingID = "0f0e0d0c-0b0a-4909-8807-060504030201"
		n := 0
		for _, pair := range [][2]*atkTenant{{a, b}, {b, a}} {
			attacker, victim := pair[0], pair[1]
			for _, key := range []string{attacker.practice, attacker.provider} {
				for _, typ := range types {
					ids := victim.ids[typ]
					if typ == gateway.TypeOrganization || typ == gateway.TypeQuestionnaire || typ == gateway.TypeAuditEvent {
						continue // shared or operator-only: below
					}
					if len(ids) == 0 {
						t.Fatalf("no %s of %s to attack", typ, victim.practiceOrg)
					}
					for _, id := range ids {
						for _, rq := range atkInstanceRequests(typ, docs[typ+"/"+id]) {
							send := func(id string) response {
								var body []byte
								if rq.body != "" {
									body = []byte(strings.ReplaceAll(rq.body, "{id}", id))
								}
								return g.do(rq.method, strings.ReplaceAll(rq.path, "{id}", id), key, body, rq.headers...)
							}
							what := fmt.Sprintf("%s %s as %s", rq.method, strings.ReplaceAll(rq.path, "{id}", id), key)
							vr := send(id)
							atkSame(t, what, vr, send(missingID), id, missingID)
							noSecrets(t, what, bytes.ReplaceAll(vr.body, []byte(id), nil), victim) // the id asked for may be echoed
							n++
						}
					}
				}
			}
		}
		t.Logf("%d cross-tenant instance requests", n)
		// Nothing changed, nothing was enqueued.
		for tn, vs := range before {
			if after := atkVersions(t, g, tn, nil); !maps.Equal(vs, after) {
				t.Errorf("%s's resources changed: %v → %v", tn.practiceOrg, vs, after)
			}
		}
		outboxAfter := scListOutbox(t, g, "")
		if !maps.Equal(outboxBefore.Depth, outboxAfter.Depth) || len(outboxBefore.Events) != len(outboxAfter.Events) {
			t.Errorf("the outbox changed: %v → %v", outboxBefore.Depth, outboxAfter.Depth)
		}
		// The trail shows the refusals, naming the victim's resource.
		refusals := map[string]bool{}
		for _, e := range g.trail(t) {
			if e.Outcome != gateway.OutcomeSuccess {
				for _, ent := range e.Entities {
					refusals[e.ClientID+" "+ent] = true
				}
			}
		}
		for _, pair := range [][2]*atkTenant{{a, b}, {b, a}} {
			for _, client := range []string{pair[0].practiceID, pair[0].providerID} {
				for _, ent := range []string{"Task/" + pair[1].ref.task, "ServiceRequest/" + pair[1].ref.request, "Patient/" + pair[1].ref.patient} {
					if !refusals[client+" "+ent] {
						t.Errorf("no refusal of %s for %s in the audit trail", ent, client)
					}
				}
			}
		}
	})
}

// atkSearches are searches aimed at the victim: by its ids, identifiers,
// NHS number (chained), organisations, includes and dates.
func atkSearches(victim *atkTenant) []string {
	nhs := url.QueryEscape("https://fhir.nhs.uk/Id/nhs-number|" + victim.nhs)
	all := func(typ string) string { return strings.Join(victim.ids[typ], ",") }
	return []string{
		"Task", "Task?_id=" + all("Task"), "Task?focus=ServiceRequest/" + victim.ref.request, "Task?patient=Patient/" + victim.ref.patient,
		"Task?patient.identifier=" + nhs, "Task?patient:identifier=" + nhs, "Task?patient.identifier=" + victim.nhs,
		"Task?requester=Organization/" + victim.practiceOrg, "Task?owner=Organization/" + victim.providerOrg,
		"Task?_include=Task:focus&_include=Task:patient", "Task?_id=" + all("Task") + "&_include=Task:focus&_include=Task:patient",
		"Task?_include=*", "Task?_revinclude=Task:focus", "Task?_lastUpdated=gt2000-01-01", "Task?_sort=-_lastUpdated&_total=accurate",
		"ServiceRequest?_id=" + all("ServiceRequest"), "ServiceRequest?identifier=" + victim.identifier,
		"ServiceRequest?patient.identifier=" + nhs, "ServiceRequest?patient:identifier=" + nhs,
		"ServiceRequest?requester=Organization/" + victim.practiceOrg, "ServiceRequest?performer=Organization/" + victim.providerOrg,
		"ServiceRequest?_revinclude=Task:focus",
		"Patient?_id=" + all("Patient"), "Patient?identifier=" + nhs, "Patient?identifier=" + victim.nhs,
		"Condition?_id=" + all("Condition"), "Condition?patient=Patient/" + victim.ref.patient, "Condition?patient.identifier=" + nhs,
		"Consent?_id=" + all("Consent"), "Consent?patient:identifier=" + nhs,
		"QuestionnaireResponse?_id=" + all("QuestionnaireResponse"), "QuestionnaireResponse?patient=Patient/" + victim.ref.patient,
		"QuestionnaireResponse?questionnaire=https://fhir.spgateway.org/Questionnaire/swemwbs",
		"Observation?_id=" + all("Observation"), "Observation?patient.identifier=" + nhs, "Observation?code=718466001",
		"AuditEvent?entity=Task/" + victim.ref.task, "AuditEvent?agent=" + victim.practiceOrg,
		"Subscription", "Subscription?_id=" + victim.subscription,
	}
}

// TestAttackSearches: every search aimed at the other tenant, by GET and
// POST _search, answers 200 with nothing of it, or a 4xx; and a cursor of
// the victim's search, used by another client or edited, gives nothing.
func TestAttackSearches(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g, a, b := atkWorld(t, engine)
		for _, pair := range [][2]*atkTenant{{a, b}, {b, a}} {
			attacker, victim := pair[0], pair[1]
			for _, key := range []string{attacker.practice, attacker.provider} {
				for _, q := range atkSearches(victim) {
					typ, query, _ := strings.Cut(q, "?")
					for _, r := range []response{
						g.get("/fhir/"+q, key),
						g.do("POST", "/fhir/"+typ+"/_search", key, []byte(query), "Content-Type", "application/x-www-form-urlencoded"),
					} {
						what := key + " " + q
						if r.status >= 500 || (r.status != http.StatusOK && (r.status < 400 || len(outcomeIssues(t, r)) == 0)) {
							t.Errorf("%s: %d %s", what, r.status, r.body)
						}
						noSecrets(t, what, atkWithoutLinks(t, r), victim)
					}
				}
			}
			// The victim's own next link, with its cursor, in another's hands.
			r := g.get("/fhir/Task?_count=1&_include=Task:focus", victim.provider)
			res, _ := entries(t, g.get("/fhir/Task?_count=500", victim.provider))
			if len(res) < 1 {
				t.Fatal("the victim sees no Task")
			}
			next := link(t, r, "next")
			self := link(t, r, "self")
			for _, l := range []string{next, self} {
				if l == "" {
					continue
				}
				u, err := url.Parse(l)
				if err != nil {
					t.Fatal(err)
				}
				for _, key := range []string{attacker.practice, attacker.provider} {
					for _, cur := range atkEditedCursors(u.Query().Get("_cursor")) {
						q := u.Query()
						q.Set("_cursor", cur)
						r := g.get(u.Path+"?"+q.Encode(), key)
						if r.status >= 500 {
							t.Errorf("cursor %q: %d %s", cur, r.status, r.body)
						}
						noSecrets(t, "a victim's cursor as "+key, atkWithoutLinks(t, r), victim)
					}
				}
			}
		}
	})
}

// atkWithoutLinks is a search answer without its links, which echo the
// caller's own query.
func atkWithoutLinks(t *testing.T, r response) []byte {
	t.Helper()
	if r.status != http.StatusOK {
		return r.body
	}
	m := r.json(t)
	delete(m, "link")
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// atkEditedCursors is a cursor as given, and edited: each byte changed,
// truncated, extended.
func atkEditedCursors(c string) []string {
	if c == "" {
		return []string{"AQ", "AQIDBAUG", "////", strings.Repeat("A", 101)}
	}
	out := []string{c, c[:len(c)/2], c + "AA"}
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return out
	}
	for i := range raw {
		for _, d := range []byte{1, 2, 0x40, 0x7f} {
			e := slices.Clone(raw)
			e[i] += d
			out = append(out, base64.RawURLEncoding.EncodeToString(e))
		}
	}
	return out
}

// TestAttackWritesIntoTheOtherTenant: creates that point at the other
// tenant's patient, referral or organisation are refused or made the
// caller's own, never attached to the victim.
func TestAttackWritesIntoTheOtherTenant(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g, a, b := atkWorld(t, engine)
		before := atkVersions(t, g, b, nil)
		// A PROM of PRV01 for B's referral and patient.
		const missing = "0f0e0d0c-0b0a-4909-8807-060504030201"
		answered := scAnsweredAt()
		r := g.post("/fhir/QuestionnaireResponse", a.provider, promResponse(b.ref, "swemwbs", answered, swemwbsAnswers(3, 3, 3, 3, 3, 3, 3)))
		m := g.post("/fhir/QuestionnaireResponse", a.provider, promResponse(referral{patient: missing, request: missing}, "swemwbs", answered, swemwbsAnswers(3, 3, 3, 3, 3, 3, 3)))
		r.body = bytes.ReplaceAll(bytes.ReplaceAll(r.body, []byte(b.ref.request), []byte(missing)), []byte(b.ref.patient), []byte(missing))
		atkSame(t, "PROM into B", r, m, missing, missing)
		noSecrets(t, "PROM into B", r.body, b)
		// A referral of A81001 about B's patient by reference.
		sr := `{"resourceType":"ServiceRequest","status":"active","intent":"order","identifier":[{"system":"https://fhir.nhs.uk/Id/A81001/referral","value":"ATK-X"}],` +
			`"subject":{"reference":"Patient/` + b.ref.patient + `"},"requester":{"reference":"Organization/A81001"},"authoredOn":"2026-01-01",` +
			`"code":{"coding":[{"system":"http://snomed.info/sct","code":"871731000000106"}]}}`
		r = g.post("/fhir/ServiceRequest", a.practice, []byte(sr))
		if r.status < 400 || r.status >= 500 {
			t.Errorf("referral about B's patient: %d %s", r.status, r.body)
		}
		noSecrets(t, "referral about B's patient", r.body, b)
		// A referral of A81001 claiming to come from A81002.
		r = g.post("/fhir", a.practice, []byte(strings.ReplaceAll(string(referralBundle(t, "ATK-X-2", "")), `"value": "A81001"`, `"value": "A81002"`)))
		if r.status != http.StatusForbidden || len(outcomeIssues(t, r)) == 0 {
			t.Errorf("referral as A81002: %d %s", r.status, r.body)
		}
		// A Subscription to the other practice's Tasks.
		r = g.post("/fhir/Subscription", a.practice, scSubscription(t, func(s map[string]any) { s["criteria"] = "Task?requester=Organization/A81002" }))
		if r.status != http.StatusUnprocessableEntity || !names(t, r, "Subscription.criteria") {
			t.Errorf("Subscription to A81002: %d %s", r.status, r.body)
		}
		if after := atkVersions(t, g, b, nil); !maps.Equal(before, after) {
			t.Errorf("B changed: %v → %v", before, after)
		}
		for _, key := range []string{b.practice, b.provider} {
			res, _ := entries(t, g.get("/fhir/ServiceRequest?_count=500", key))
			if len(res) != len(b.ids["ServiceRequest"]) {
				t.Errorf("%s now sees %d referrals", key, len(res))
			}
		}
	})
}

// TestAttackCaseAPIAndReports: the case API and reports hold nothing of the
// other tenant; practices may not use the case API, and only operators the
// outbox.
func TestAttackCaseAPIAndReports(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g, a, b := atkWorld(t, engine)
		const missing = "0f0e0d0c-0b0a-4909-8807-060504030201"
		for _, pair := range [][2]*atkTenant{{a, b}, {b, a}} {
			attacker, victim := pair[0], pair[1]
			for _, key := range []string{attacker.practice, attacker.provider} {
				for _, q := range []string{"", "?status=open", "?status=new,open,completed&count=500", "?since=2000-01-01T00:00:00Z"} {
					r := g.get("/api/v1/cases"+q, key)
					if r.status != http.StatusOK && r.status != http.StatusForbidden {
						t.Errorf("%s cases%s: %d %s", key, q, r.status, r.body)
					}
					noSecrets(t, key+" cases"+q, r.body, victim)
				}
				atkSame(t, key+" case", g.get("/api/v1/cases/"+victim.ref.task, key), g.get("/api/v1/cases/"+missing, key), victim.ref.task, missing)
				event := `{"event":"closed"}` // PRV02's vocabulary
				if key == keyPRV01 {
					event = `{"event":"CLOSED"}`
				}
				atkSame(t, key+" case event", scEvent(g, victim.ref.task, key, event), scEvent(g, missing, key, event), victim.ref.task, missing)
				for _, rep := range []string{"funnel", "outcomes"} {
					for _, q := range []string{"", "?provider=" + victim.providerOrg, "?practice=" + victim.practiceOrg, "?format=csv"} {
						r := g.get("/api/v1/reports/"+rep+q, key)
						if r.status >= 500 {
							t.Errorf("%s report %s%s: %d", key, rep, q, r.status)
						}
						noSecrets(t, key+" report "+rep+q, r.body, victim)
						if r.status == http.StatusOK && bytes.Contains(r.body, []byte(victim.providerOrg)) && key == attacker.provider {
							t.Errorf("%s report %s%s names %s: %s", key, rep, q, victim.providerOrg, r.body)
						}
					}
				}
				for _, rq := range [][2]string{{"GET", "/api/v1/outbox"}, {"POST", "/api/v1/outbox/" + missing + "/redrive"}} {
					if r := g.do(rq[0], rq[1], key, nil); r.status != http.StatusForbidden {
						t.Errorf("%s %s as %s: %d", rq[0], rq[1], key, r.status)
					}
				}
			}
		}
	})
}
