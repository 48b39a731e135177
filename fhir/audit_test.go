package fhir_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spgateway/spgateway/fhir"
	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

func withTrustedProxies(proxies ...string) gatewayOption {
	return func(_ *gateway.Config, f *fhir.Config) { f.TrustedProxies = proxies }
}

// trail writes out the queued audit events and returns the whole trail,
// oldest first.
func (g *testGateway) trail(t testing.TB) []gateway.AuditEvent {
	t.Helper()
	ctx := context.Background()
	if err := g.audit.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var all []gateway.AuditEvent
	err := g.store.View(ctx, func(v gateway.View) error {
		page, err := v.AuditEvents(ctx, gateway.AuditQuery{Count: 1 << 20})
		all = page.Events
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(all)
	return all
}

// rawDB opens the gateway's database directly.
func (g *testGateway) rawDB(t testing.TB) *sql.DB {
	t.Helper()
	driver, dsn := "pgx", g.db.DSN
	if g.db.Driver == store.DriverSQLite {
		driver, dsn = "sqlite", "file:"+g.db.DSN+"?_pragma=busy_timeout(10000)"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// wantAudit is an audit event a request must leave.
type wantAudit struct {
	client   string
	role     gateway.Role
	org      string
	action   gateway.AuditAction
	typ      string
	outcome  string
	entities []string // all of them, and no others unless more is set
	more     bool
}

// audited sends a request with its own request id and checks the audit
// events it left: exactly want, from 127.0.0.1, with that request id.
func (g *testGateway) audited(t testing.TB, want []wantAudit, method, path, key string, body []byte, headers ...string) response {
	t.Helper()
	before := len(g.trail(t))
	id := fmt.Sprintf("audit-%d", time.Now().UnixNano())
	r := g.do(method, path, key, body, append(headers, "X-Request-Id", id)...)
	if r.header.Get("X-Request-Id") != id {
		t.Fatalf("%s %s: request id %q", method, path, r.header.Get("X-Request-Id"))
	}
	got := g.trail(t)[before:]
	if len(got) != len(want) {
		t.Fatalf("%s %s (%d): %d audit events, want %d: %+v", method, path, r.status, len(got), len(want), got)
	}
	for i, w := range want {
		e := got[i]
		if e.ClientID != w.client || e.Role != w.role || e.Org != w.org || e.Action != w.action ||
			e.ResourceType != w.typ || e.Outcome != w.outcome || e.SourceIP != "127.0.0.1" || e.RequestID != id || e.ID == "" {
			t.Errorf("%s %s (%d): audit event %+v, want %+v", method, path, r.status, e, w)
		}
		for _, ref := range w.entities {
			if !slices.Contains(e.Entities, ref) {
				t.Errorf("%s %s: audit entities %v lack %s", method, path, e.Entities, ref)
			}
		}
		if !w.more && len(e.Entities) != len(w.entities) {
			t.Errorf("%s %s: audit entities %v, want %v", method, path, e.Entities, w.entities)
		}
	}
	return r
}

func ok(client string, role gateway.Role, org string, action gateway.AuditAction, typ string, entities ...string) wantAudit {
	return wantAudit{client: client, role: role, org: org, action: action, typ: typ, outcome: gateway.OutcomeSuccess, entities: entities}
}

func refused(client string, role gateway.Role, org string, action gateway.AuditAction, typ string, code gateway.Code, entities ...string) wantAudit {
	return wantAudit{client: client, role: role, org: org, action: action, typ: typ, outcome: string(code), entities: entities}
}

const (
	practice = gateway.RolePractice
	provider = gateway.RoleProvider
	admin    = gateway.RoleAdmin
)

// TestAuditEveryInteraction drives each kind of access through the real
// router and checks the one audit event it leaves: who, role, organisation,
// action, the resources touched, outcome, source address and request id.
func TestAuditEveryInteraction(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine, scWithCases(nil))

		// Intake: every resource the transaction wrote.
		r := g.audited(t, []wantAudit{{client: "practice-a81001", role: practice, org: "A81001", action: gateway.AuditTransaction,
			typ: gateway.TypeServiceRequest, outcome: gateway.OutcomeSuccess, more: true}}, "POST", "/fhir", keyA81001, referralBundle(t, "AUDIT-1", ""))
		locs := responseLocations(t, r)
		tasks, _ := entries(t, g.get("/fhir/Task?_count=1", keyPRV01))
		task := "Task/" + str(tasks[0], "id")
		sr, patient := str(tasks[0], "focus", "reference"), str(tasks[0], "for", "reference")
		intake := g.trail(t)
		var written []string
		for _, e := range intake {
			if e.Action == gateway.AuditTransaction {
				written = e.Entities
			}
		}
		for _, loc := range locs {
			parts := strings.Split(loc, "/")
			if !slices.Contains(written, parts[0]+"/"+parts[1]) {
				t.Errorf("intake audit %v lacks %s", written, loc)
			}
		}
		if !slices.Contains(written, task) || !slices.Contains(written, sr) || !slices.Contains(written, patient) {
			t.Errorf("intake audit %v lacks the Task, ServiceRequest or Patient", written)
		}
		id := strings.TrimPrefix(task, "Task/")

		g.audited(t, []wantAudit{ok("provider-prv01", provider, "PRV01", gateway.AuditRead, "Task", task)}, "GET", "/fhir/"+task, keyPRV01, nil)
		g.audited(t, []wantAudit{ok("provider-prv01", provider, "PRV01", gateway.AuditVread, "Task", task)}, "GET", "/fhir/"+task+"/_history/1", keyPRV01, nil)
		g.audited(t, []wantAudit{ok("provider-prv01", provider, "PRV01", gateway.AuditSearch, "Task", task, sr, patient)},
			"GET", "/fhir/Task?_id="+id+"&_include=Task:focus&_include=Task:patient", keyPRV01, nil)
		g.audited(t, []wantAudit{ok("provider-prv01", provider, "PRV01", gateway.AuditHistory, "Task", task)}, "GET", "/fhir/"+task+"/_history", keyPRV01, nil)
		// A search that matches nothing touches nothing.
		g.audited(t, []wantAudit{ok("practice-a81002", practice, "A81002", gateway.AuditSearch, "Task")}, "GET", "/fhir/Task", keyA81002, nil)

		doc, v := g.read(t, "/fhir/"+task, keyPRV01)
		setStatus("accepted")(doc)
		g.audited(t, []wantAudit{ok("provider-prv01", provider, "PRV01", gateway.AuditUpdate, "Task", task)},
			"PUT", "/fhir/"+task, keyPRV01, mustJSON(t, doc), "If-Match", weakETag(v))
		g.audited(t, []wantAudit{ok("provider-prv01", provider, "PRV01", gateway.AuditPatch, "Task", task)},
			"PATCH", "/fhir/"+task, keyPRV01, mustJSON(t, []any{op("add", "/businessStatus", coded(businessStatusSystem, "first-contact-made", ""))}),
			"Content-Type", "application/json-patch+json", "If-Match", weakETag(v+1))
		g.mustChange(t, id, keyPRV01, linkWorker(linkWorkers, "LW-1"))
		g.audited(t, []wantAudit{ok("provider-prv01", provider, "PRV01", gateway.AuditOperation, "Task", task)},
			"POST", "/fhir/Task/$reassign", keyPRV01, reassignParams("LW-1", "LW-2"))

		ref := referral{task: id, request: strings.TrimPrefix(sr, "ServiceRequest/"), patient: strings.TrimPrefix(patient, "Patient/")}
		r = g.audited(t, []wantAudit{{client: "provider-prv01", role: provider, org: "PRV01", action: gateway.AuditCreate,
			typ: gateway.TypeQuestionnaireResponse, outcome: gateway.OutcomeSuccess, entities: []string{task}, more: true}},
			"POST", "/fhir/QuestionnaireResponse", keyPRV01, promResponse(ref, "swemwbs", scAnsweredAt(), swemwbsAnswers(3, 3, 3, 3, 3, 3, 3)))
		qr := "QuestionnaireResponse/" + str(r.json(t), "id")
		if e := g.trail(t); !slices.Contains(e[len(e)-1].Entities, qr) || len(e[len(e)-1].Entities) != 3 {
			t.Errorf("PROM audit entities %v: want the response, its Observation and the Task", e[len(e)-1].Entities)
		}

		r = g.audited(t, []wantAudit{{client: "practice-a81001", role: practice, org: "A81001", action: gateway.AuditCreate,
			typ: gateway.TypeSubscription, outcome: gateway.OutcomeSuccess, more: true}}, "POST", "/fhir/Subscription", keyA81001, scSubscription(t, nil))
		sub := "Subscription/" + str(r.json(t), "id")
		if e := g.trail(t); fmt.Sprint(e[len(e)-1].Entities) != "["+sub+"]" {
			t.Errorf("Subscription audit entities %v", e[len(e)-1].Entities)
		}
		g.audited(t, []wantAudit{ok("practice-a81001", practice, "A81001", gateway.AuditDelete, "Subscription", sub)}, "DELETE", "/fhir/"+sub, keyA81001, nil)

		g.audited(t, []wantAudit{{client: "provider-prv01", role: provider, org: "PRV01", action: gateway.AuditCaseList, typ: "Task",
			outcome: gateway.OutcomeSuccess, entities: []string{task, sr, patient}, more: true}}, "GET", "/api/v1/cases", keyPRV01, nil)
		// A case record shows everything the referral wrote, Conditions and
		// Consent included.
		shown := written
		g.audited(t, []wantAudit{{client: "provider-prv01", role: provider, org: "PRV01", action: gateway.AuditCaseRead, typ: "Task",
			outcome: gateway.OutcomeSuccess, entities: shown, more: true}}, "GET", "/api/v1/cases/"+id, keyPRV01, nil)
		// The event reads the case, updates the Task and answers with the
		// case: one event written with the update, and one for the rest of
		// the record it answers with.
		var rest []string
		for _, ref := range shown {
			if ref != task && ref != sr && ref != patient {
				rest = append(rest, ref)
			}
		}
		g.audited(t, []wantAudit{
			ok("provider-prv01", provider, "PRV01", gateway.AuditCaseEvent, "Task", task, sr, patient),
			ok("provider-prv01", provider, "PRV01", gateway.AuditCaseEvent, "Task", rest...),
		}, "POST", "/api/v1/cases/"+id+"/events", keyPRV01, []byte(`{"event":"CONTACTED"}`))
		g.audited(t, []wantAudit{ok("admin", admin, "", gateway.AuditReport, "")}, "GET",
			"/api/v1/reports/funnel?from=2020-01-01T00:00:00Z&to=2100-01-01T00:00:00Z", keyAdmin, nil)
		g.audited(t, []wantAudit{ok("provider-prv01", provider, "PRV01", gateway.AuditReport, "")}, "GET",
			"/api/v1/reports/outcomes?from=2020-01-01T00:00:00Z&to=2100-01-01T00:00:00Z", keyPRV01, nil)
		// A repeated referral writes nothing, and is audited as the create
		// it was, naming what it found.
		g.audited(t, []wantAudit{{client: "practice-a81001", role: practice, org: "A81001", action: gateway.AuditTransaction,
			typ: gateway.TypeServiceRequest, outcome: gateway.OutcomeSuccess, entities: []string{sr, task, patient}, more: true}},
			"POST", "/fhir", keyA81001, referralBundle(t, "AUDIT-1", ""))
	})
}

// TestAuditRefusals: 401, 403, 404 for a stranger's id, 412 and 422 are
// each audited with their outcome, and never as a success.
func TestAuditRefusals(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		ref := newReferral(t, g, "AUDIT-REFUSE")
		task := "Task/" + ref.task

		r := g.audited(t, []wantAudit{refused("", "", "", gateway.AuditRead, "Task", gateway.CodeUnauthorized, task)}, "GET", "/fhir/"+task, "", nil)
		if r.status != 401 {
			t.Errorf("no credential: %d", r.status)
		}
		g.audited(t, []wantAudit{refused("", "", "", gateway.AuditTransaction, "", gateway.CodeUnauthorized)}, "POST", "/fhir", "not-a-key", referralBundle(t, "X", ""))
		g.audited(t, []wantAudit{refused("", "", "", gateway.AuditCaseRead, "Task", gateway.CodeUnauthorized, task)}, "GET", "/api/v1/cases/"+ref.task, "nope", nil)
		// The metadata and health need no credentials and are no access.
		g.audited(t, nil, "GET", "/fhir/metadata", "", nil)
		g.audited(t, nil, "GET", "/healthz", "", nil)

		if r := g.audited(t, []wantAudit{refused("admin", admin, "", gateway.AuditSearch, "Task", gateway.CodeForbidden)}, "GET", "/fhir/Task", keyAdmin, nil); r.status != 403 {
			t.Errorf("admin searches Tasks: %d", r.status)
		}
		if r := g.audited(t, []wantAudit{refused("admin", admin, "", gateway.AuditRead, "Patient", gateway.CodeForbidden, "Patient/"+ref.patient)},
			"GET", "/fhir/Patient/"+ref.patient, keyAdmin, nil); r.status != 403 {
			t.Errorf("admin reads a Patient: %d", r.status)
		}
		if r := g.audited(t, []wantAudit{refused("provider-prv02", provider, "PRV02", gateway.AuditRead, "Task", gateway.CodeNotFound, task)},
			"GET", "/fhir/"+task, keyPRV02, nil); r.status != 404 {
			t.Errorf("stranger's id: %d", r.status)
		}
		g.audited(t, []wantAudit{refused("practice-a81002", practice, "A81002", gateway.AuditHistory, "Task", gateway.CodeNotFound, task)},
			"GET", "/fhir/"+task+"/_history", keyA81002, nil)
		// Refused by the edge before the service: still audited.
		g.audited(t, []wantAudit{refused("provider-prv01", provider, "PRV01", gateway.AuditSearch, "Task", gateway.CodeInvalid)},
			"GET", "/fhir/Task?_count=x", keyPRV01, nil)
		g.audited(t, []wantAudit{refused("provider-prv01", provider, "PRV01", gateway.AuditVread, "Task", gateway.CodeInvalid, task)},
			"GET", "/fhir/"+task+"/_history/zero", keyPRV01, nil)
		// A path that is no resource type is recorded without it.
		g.audited(t, []wantAudit{refused("provider-prv01", provider, "PRV01", gateway.AuditRead, "", gateway.CodeNotFound)},
			"GET", "/fhir/9434765919/9434765919", keyPRV01, nil)

		doc, v := g.read(t, "/fhir/"+task, keyPRV01)
		setStatus("accepted")(doc)
		if r := g.audited(t, []wantAudit{refused("provider-prv01", provider, "PRV01", gateway.AuditUpdate, "Task", gateway.CodePreconditionFailed, task)},
			"PUT", "/fhir/"+task, keyPRV01, mustJSON(t, doc), "If-Match", weakETag(v+5)); r.status != 412 {
			t.Errorf("stale If-Match: %d", r.status)
		}
		setStatus("rejected")(doc)
		if r := g.audited(t, []wantAudit{refused("provider-prv01", provider, "PRV01", gateway.AuditUpdate, "Task", gateway.CodeUnprocessable, task)},
			"PUT", "/fhir/"+task, keyPRV01, mustJSON(t, doc), "If-Match", weakETag(v)); r.status != 422 {
			t.Errorf("rejected without a reason: %d", r.status)
		}
		if r := g.audited(t, []wantAudit{refused("practice-a81001", practice, "A81001", gateway.AuditCreate, "QuestionnaireResponse", gateway.CodeForbidden)},
			"POST", "/fhir/QuestionnaireResponse", keyA81001, promResponse(ref, "swemwbs", scAnsweredAt(), swemwbsAnswers(3, 3, 3, 3, 3, 3, 3))); r.status != 403 {
			t.Errorf("practice records a PROM: %d", r.status)
		}
		if _, v2 := g.read(t, "/fhir/"+task, keyPRV01); v2 != v {
			t.Errorf("the refused updates changed the Task: version %d", v2)
		}
	})
}

// TestAuditAtomicWrites makes the database refuse a Task version after the
// service validated the update: the write and its success audit roll back
// together, and the failure is audited. A committed write is always seen
// with its audit, whatever else is being written at the same time.
func TestAuditAtomicWrites(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		ref := newReferral(t, g, "AUDIT-ATOMIC")
		task := "Task/" + ref.task
		db := g.rawDB(t)
		if engine == store.DriverSQLite {
			mustExec(t, db, `CREATE TRIGGER refuse_task BEFORE INSERT ON resource_versions WHEN NEW.type = 'Task' AND NEW.version > 1
				BEGIN SELECT RAISE(ABORT, 'refused for the test'); END`)
		} else {
			mustExec(t, db, `CREATE FUNCTION refuse_task() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN IF NEW.type = 'Task' AND NEW.version > 1 THEN RAISE EXCEPTION 'refused for the test'; END IF; RETURN NEW; END; $$`)
			mustExec(t, db, `CREATE TRIGGER refuse_task BEFORE INSERT ON resource_versions FOR EACH ROW EXECUTE FUNCTION refuse_task()`)
		}
		doc, v := g.read(t, "/fhir/"+task, keyPRV01)
		setStatus("accepted")(doc)
		if r := g.audited(t, []wantAudit{refused("provider-prv01", provider, "PRV01", gateway.AuditUpdate, "Task", gateway.CodeInternal, task)},
			"PUT", "/fhir/"+task, keyPRV01, mustJSON(t, doc), "If-Match", weakETag(v)); r.status != 500 {
			t.Fatalf("refused write: %d %s", r.status, r.body)
		}
		if _, v2 := g.read(t, "/fhir/"+task, keyPRV01); v2 != v {
			t.Errorf("the failed write is visible: version %d", v2)
		}
		for _, e := range g.trail(t) {
			if e.Action == gateway.AuditUpdate && e.Outcome == gateway.OutcomeSuccess {
				t.Errorf("a success is audited for a write that rolled back: %+v", e)
			}
		}
		mustExec(t, db, `DROP TRIGGER refuse_task`+map[bool]string{true: "", false: " ON resource_versions"}[engine == store.DriverSQLite])

		// Writers on several Tasks; a reader checks, in each snapshot,
		// that every version past the first has its success audit.
		const n = 4
		ids := []string{ref.task}
		for i := 1; i < n; i++ {
			ids = append(ids, newReferral(t, g, fmt.Sprintf("AUDIT-ATOMIC-%d", i)).task)
		}
		var (
			wg      sync.WaitGroup
			stop    atomic.Bool
			checked atomic.Int64
		)
		for _, id := range ids {
			wg.Go(func() {
				for _, step := range []func(map[string]any){setStatus("accepted"), setStatus("in-progress"), linkWorker(linkWorkers, "A"),
					linkWorker(linkWorkers, "B"), setStatusWithReason("on-hold", "other", "In hospital"), setStatus("in-progress")} {
					task, v := g.read(t, "/fhir/Task/"+id, keyPRV01)
					step(task)
					if r := g.put(t, "/fhir/Task/"+id, keyPRV01, v, task); r.status != 200 {
						t.Errorf("update: %d %s", r.status, r.body)
					}
				}
			})
		}
		ctx := context.Background()
		var reader sync.WaitGroup
		reader.Go(func() {
			for !stop.Load() {
				err := g.store.View(ctx, func(v gateway.View) error {
					for _, id := range ids {
						cur, err := v.Get(ctx, gateway.TypeTask, id, 0)
						if err != nil {
							return err
						}
						page, err := v.AuditEvents(ctx, gateway.AuditQuery{Entities: [][]string{{"Task/" + id}}, Count: 1000})
						if err != nil {
							return err
						}
						writes := 0
						for _, e := range page.Events {
							if e.Outcome == gateway.OutcomeSuccess && e.Action == gateway.AuditUpdate {
								writes++
							}
						}
						if writes != cur.Version-1 {
							t.Errorf("Task/%s at version %d has %d update audits", id, cur.Version, writes)
						}
					}
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				checked.Add(1)
			}
		})
		wg.Wait()
		stop.Store(true)
		reader.Wait()
		if checked.Load() == 0 {
			t.Error("the reader never checked")
		}
	})
}

func mustExec(t testing.TB, db *sql.DB, q string) {
	t.Helper()
	if _, err := db.Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// TestAuditTrailAppendOnly: the database refuses to change or delete an
// audit event.
func TestAuditTrailAppendOnly(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		newReferral(t, g, "AUDIT-APPEND")
		if len(g.trail(t)) == 0 {
			t.Fatal("no audit events")
		}
		db := g.rawDB(t)
		for _, q := range []string{`UPDATE audit_events SET outcome = 'success'`, `DELETE FROM audit_events`,
			`UPDATE audit_refs SET ref = 'Task/x'`, `DELETE FROM audit_refs`} {
			if _, err := db.Exec(q); err == nil || !strings.Contains(err.Error(), "append-only") {
				t.Errorf("%s: %v", q, err)
			}
		}
	})
}

// TestAuditSourceAddress: the TCP peer is the source, unless the request
// comes through a configured trusted proxy.
func TestAuditSourceAddress(t *testing.T) {
	for _, c := range []struct {
		name    string
		proxies []string
		want    string
	}{
		{"no trusted proxy", nil, "127.0.0.1"},
		{"trusted proxy", []string{"127.0.0.1/32"}, "203.0.113.7"},
		{"another proxy trusted", []string{"10.0.0.0/8"}, "127.0.0.1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newGateway(t, "sqlite", withTrustedProxies(c.proxies...))
			g.do("GET", "/fhir/Task", keyPRV01, nil, "X-Forwarded-For", "203.0.113.7")
			trail := g.trail(t)
			if len(trail) != 1 || trail[0].SourceIP != c.want {
				t.Errorf("trail %+v, want source %s", trail, c.want)
			}
		})
	}
	if _, err := fhir.NewServer(fhir.Config{BaseURL: "http://x", TrustedProxies: []string{"not an address"}},
		newGateway(t, "sqlite").svc, devKeys()); err == nil {
		t.Error("a bad trusted proxy is accepted")
	}
}

// TestAuditNoPatientData runs a referral's flow, with NHS numbers in
// search query strings, and scans every stored audit row for patient data.
func TestAuditNoPatientData(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine, scWithCases(nil))
		ref := newReferral(t, g, "AUDIT-PRIVATE")
		nhs := "https://fhir.nhs.uk/Id/nhs-number|9434765919"
		g.get("/fhir/Patient?identifier="+url.QueryEscape(nhs), keyA81001)
		g.get("/fhir/Task?patient:identifier="+url.QueryEscape(nhs), keyPRV01)
		g.get("/fhir/Task?patient.identifier="+url.QueryEscape(nhs), keyAdmin)
		g.get("/fhir/Patient?identifier="+url.QueryEscape(nhs), "")
		g.do("POST", "/fhir/Patient/_search", keyA81001, []byte("identifier="+url.QueryEscape(nhs)), "Content-Type", "application/x-www-form-urlencoded")
		g.get("/fhir/Patient/"+ref.patient, keyPRV01)
		g.mustChange(t, ref.task, keyPRV01, setStatus("accepted"))
		g.get("/api/v1/cases/"+ref.task, keyPRV01)
		scMustEvent(t, g, ref.task, keyPRV01, `{"event":"CONTACT_ATTEMPT","note":"Called Irene Testpatient on 07700 900123"}`)
		g.get("/fhir/AuditEvent", keyAdmin)
		g.trail(t)

		db := g.rawDB(t)
		var dump strings.Builder
		for _, q := range []string{`SELECT id, client_id, role, org, action, resource_type, outcome, source_ip, request_id, entities FROM audit_events`,
			`SELECT ref, CAST(audit_seq AS TEXT) FROM audit_refs`} {
			rows, err := db.Query(q)
			if err != nil {
				t.Fatal(err)
			}
			names, err := rows.Columns()
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for rows.Next() {
				cols := make([]string, len(names))
				ptrs := make([]any, len(cols))
				for i := range cols {
					ptrs[i] = &cols[i]
				}
				if err := rows.Scan(ptrs...); err != nil {
					t.Fatal(err)
				}
				dump.WriteString(strings.Join(cols, "\t") + "\n")
				n++
			}
			rows.Close()
			if n == 0 {
				t.Fatalf("%s: no rows", q)
			}
		}
		for _, leak := range []string{"9434765919", "943 476 5919", "Irene", "Testpatient", "07700", "900123", "irene.", "?", "=", "identifier", "nhs-number"} {
			if strings.Contains(dump.String(), leak) {
				t.Errorf("the audit trail holds %q:\n%s", leak, dump.String())
			}
		}
	})
}

// TestAuditEventSearch: agent, entity and date with each prefix, paging,
// bad values, and who may ask.
func TestAuditEventSearch(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		clock := &handClock{now: time.Date(2027, 3, 1, 9, 0, 0, 0, time.UTC)}
		g := newGateway(t, engine, withNow(clock.Now))
		a := newReferral(t, g, "AUDIT-SEARCH-A")
		clock.set(time.Date(2027, 3, 2, 9, 0, 0, 0, time.UTC))
		g.get("/fhir/Task/"+a.task, keyPRV01)
		clock.set(time.Date(2027, 3, 3, 9, 0, 0, 0, time.UTC))
		g.get("/fhir/ServiceRequest/"+a.request, keyA81001)
		g.get("/fhir/Task/"+a.task, keyPRV02) // a stranger: 404
		g.trail(t)

		// search returns the AuditEvents of a search as admin, each valid
		// FHIR (checked by do), newest first.
		search := func(query string) []map[string]any {
			t.Helper()
			r := g.get("/fhir/AuditEvent"+query, keyAdmin)
			if r.status != 200 {
				t.Fatalf("AuditEvent%s: %d %s", query, r.status, r.body)
			}
			res, _ := entries(t, r)
			return res
		}
		who := func(res []map[string]any) []string {
			var out []string
			for _, e := range res {
				out = append(out, str(e, "agent", 0, "altId")+" "+str(e, "subtype", 0, "code")+" "+str(e, "outcome"))
			}
			return out
		}
		for _, c := range []struct {
			query string
			want  []string
		}{
			{"?agent=provider-prv01", []string{"provider-prv01 read 0"}},
			{"?agent=Organization/PRV01", []string{"provider-prv01 read 0"}},
			{"?agent=" + url.QueryEscape(g.base+"/fhir/Organization/PRV02"), []string{"provider-prv02 read 4"}},
			{"?agent=PRV02,practice-a81001", []string{"provider-prv02 read 4", "practice-a81001 read 0", "practice-a81001 search-type 0", "practice-a81001 transaction 0"}},
			{"?agent=PRV02&agent=practice-a81001", nil},
			{"?agent=nobody", nil},
			{"?entity=Task/" + a.task, []string{"provider-prv02 read 4", "provider-prv01 read 0", "practice-a81001 search-type 0", "practice-a81001 transaction 0"}},
			{"?entity=Task/" + a.task + "&agent=PRV01", []string{"provider-prv01 read 0"}},
			{"?entity=ServiceRequest/" + a.request + ",Patient/" + a.patient, []string{"practice-a81001 read 0", "practice-a81001 transaction 0"}},
			{"?entity=Task/unknown", nil},
			{"?date=2027-03-02", []string{"provider-prv01 read 0"}},
			{"?date=eq2027-03-02", []string{"provider-prv01 read 0"}},
			{"?date=ge2027-03-02&agent=PRV01", []string{"provider-prv01 read 0"}},
			{"?date=gt2027-03-02&agent=PRV01,PRV02", []string{"provider-prv02 read 4"}},
			{"?date=lt2027-03-02&agent=practice-a81001", []string{"practice-a81001 search-type 0", "practice-a81001 transaction 0"}},
			{"?date=le2027-03-02&agent=PRV01,A81001", []string{"provider-prv01 read 0", "practice-a81001 search-type 0", "practice-a81001 transaction 0"}},
			{"?date=ge2027-03-02&date=lt2027-03-03", []string{"provider-prv01 read 0"}},
			{"?date=gt2027-03-02T09:00:00Z&date=le2027-03-03T09:00:00Z&agent=A81001", []string{"practice-a81001 read 0"}},
			{"?date=2027-03-01", []string{"practice-a81001 search-type 0", "practice-a81001 transaction 0"}},
			{"?unknown=1&agent=nobody", nil},
		} {
			// Each search is audited too: only events before the searches
			// (dated up to 2027-03-03 09:00) are looked at.
			got := who(search(c.query + "&date=le2027-03-03T09:00:00Z"))
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("%s: %v, want %v", c.query, got, c.want)
			}
		}
		// The searches themselves are in the trail, with what they returned.
		var returned []string
		for _, e := range search("?agent=PRV01,PRV02") {
			returned = append(returned, "AuditEvent/"+str(e, "id"))
		}
		last := g.trail(t)
		if e := last[len(last)-1]; e.ClientID != "admin" || e.Action != gateway.AuditSearch || e.ResourceType != gateway.TypeAuditEvent ||
			len(returned) != 2 || fmt.Sprint(e.Entities) != fmt.Sprint(returned) {
			t.Errorf("search returning %v audited as %+v", returned, e)
		}

		// A read, and its refusals.
		all := search("?_count=500")
		first := str(all[0], "id")
		r := g.get("/fhir/AuditEvent/"+first, keyAdmin)
		if r.status != 200 || str(r.json(t), "id") != first || r.header.Get("ETag") != `W/"1"` {
			t.Errorf("read: %d %s", r.status, r.body)
		}
		for _, c := range []struct {
			name, path, key string
			status          int
		}{
			{"unknown id", "/fhir/AuditEvent/" + gateway.NewUUID(), keyAdmin, 404},
			{"practice search", "/fhir/AuditEvent", keyA81001, 403},
			{"provider read", "/fhir/AuditEvent/" + first, keyPRV01, 403},
			{"no credential", "/fhir/AuditEvent", "", 401},
			{"vread", "/fhir/AuditEvent/" + first + "/_history/1", keyAdmin, 405},
			{"bad date", "/fhir/AuditEvent?date=yesterday", keyAdmin, 400},
			{"bad prefix", "/fhir/AuditEvent?date=xx2027-01-01", keyAdmin, 400},
			{"date alternatives", "/fhir/AuditEvent?date=2027-01-01,2027-01-02", keyAdmin, 400},
			{"entity without type", "/fhir/AuditEvent?entity=" + a.task, keyAdmin, 400},
			{"entity bad id", "/fhir/AuditEvent?entity=Task/a%20b", keyAdmin, 400},
			{"agent with a space", "/fhir/AuditEvent?agent=a%20b", keyAdmin, 400},
			{"negative count", "/fhir/AuditEvent?_count=-1", keyAdmin, 400},
			{"bad count", "/fhir/AuditEvent?_count=many", keyAdmin, 400},
			{"bad cursor", "/fhir/AuditEvent?_cursor=abc", keyAdmin, 400},
			{"strict unknown", "/fhir/AuditEvent?patient=x", keyAdmin, 400},
		} {
			headers := []string{}
			if strings.HasPrefix(c.name, "strict") {
				headers = append(headers, "Prefer", "handling=strict")
			}
			r := g.do("GET", c.path, c.key, nil, headers...)
			if r.status != c.status || len(outcomeIssues(t, r)) == 0 {
				t.Errorf("%s: %d %s", c.name, r.status, r.body)
			}
		}
		outcomes := map[string]int{}
		for _, e := range g.trail(t) {
			if e.ResourceType == gateway.TypeAuditEvent && e.Outcome != gateway.OutcomeSuccess {
				outcomes[e.ClientID+" "+e.Outcome]++
			}
		}
		if want := "map[ unauthorized:1 admin invalid:10 admin method_not_allowed:1 admin not_found:1 practice-a81001 forbidden:1 provider-prv01 forbidden:1]"; fmt.Sprint(outcomes) != want {
			t.Errorf("refused AuditEvent accesses audited as %v, want %v", outcomes, want)
		}
		// A cursor belongs to its search.
		next := link(t, g.get("/fhir/AuditEvent?_count=1&agent=PRV01", keyAdmin), "next")
		if next == "" {
			t.Fatal("no next link")
		}
		u, _ := url.Parse(next)
		if r := g.get("/fhir/AuditEvent?_count=1&agent=PRV02&_cursor="+u.Query().Get("_cursor"), keyAdmin); r.status != 400 {
			t.Errorf("cursor of another search: %d", r.status)
		}
	})
}

// providerReads sends a referral and has its provider read the Task n
// times, for a trail to search.
func providerReads(t testing.TB, g *testGateway, identifier string, n int) referral {
	t.Helper()
	ref := newReferral(t, g, identifier)
	for range n {
		g.get("/fhir/Task/"+ref.task, keyPRV01)
	}
	return ref
}

// TestAuditEventTotal: an AuditEvent search counts like every other
// search: _count=0 asks for the count alone (Bundle.total, no entries),
// _total=accurate counts and carries the count to later pages, a first page
// holding every match gives its size, and _total=none leaves it out.
func TestAuditEventTotal(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		providerReads(t, g, "AUDIT-TOTAL", 5)
		g.trail(t)
		hasTotal := func(r response) bool {
			t.Helper()
			_, ok := r.json(t)["total"]
			return ok
		}
		r := g.get("/fhir/AuditEvent?agent=PRV01&_count=0", keyAdmin)
		if res, _ := entries(t, r); r.status != 200 || len(res) != 0 || total(t, r) != 5 {
			t.Errorf("_count=0: %d %s", r.status, r.body)
		}
		if n := total(t, g.do("POST", "/fhir/AuditEvent/_search", keyAdmin, []byte("agent=PRV01&_count=0"),
			"Content-Type", "application/x-www-form-urlencoded")); n != 5 {
			t.Errorf("_count=0 in a _search form: total %d, want 5", n)
		}
		r = g.get("/fhir/AuditEvent?agent=PRV01&_count=0&_total=none", keyAdmin)
		if res, _ := entries(t, r); r.status != 200 || len(res) != 0 || hasTotal(r) {
			t.Errorf("_count=0&_total=none: %d %s", r.status, r.body)
		}
		if n := total(t, g.get("/fhir/AuditEvent?agent=PRV01&_count=10", keyAdmin)); n != 5 {
			t.Errorf("one page: total %d, want 5", n)
		}
		if r := g.get("/fhir/AuditEvent?agent=PRV01&_count=2", keyAdmin); hasTotal(r) {
			t.Errorf("several pages, not counted: %s", r.body)
		}
		r = g.get("/fhir/AuditEvent?agent=PRV01&_count=2&_total=accurate", keyAdmin)
		paged := 0
		for pages := 0; ; pages++ {
			if pages > 5 {
				t.Fatal("paging does not end")
			}
			if res, _ := entries(t, r); r.status != 200 || total(t, r) != 5 {
				t.Fatalf("_total=accurate, page %d: %d %s", pages, r.status, r.body)
			} else {
				paged += len(res)
			}
			next := link(t, r, "next")
			if next == "" {
				break
			}
			r = g.get(strings.TrimPrefix(next, g.base), keyAdmin)
		}
		if paged != 5 {
			t.Errorf("_total=accurate paged %d events, want 5", paged)
		}
		for _, q := range []string{"_total=exact", "_sort=_lastUpdated", "_include=AuditEvent:agent"} {
			if r := g.get("/fhir/AuditEvent?agent=PRV01&"+q, keyAdmin); r.status != 400 {
				t.Errorf("%s: %d %s", q, r.status, r.body)
			}
		}
		if r := g.get("/fhir/AuditEvent?agent=PRV01&_sort=-_lastUpdated", keyAdmin); r.status != 200 {
			t.Errorf("_sort=-_lastUpdated: %d %s", r.status, r.body)
		}
	})
}

// TestAuditEventConditionalRead: an AuditEvent never changes, so it is read
// like any resource at version 1: ETag, Last-Modified, and 304 to a client
// that has it. Each read, answered 304 or not, is audited.
func TestAuditEventConditionalRead(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		newReferral(t, g, "AUDIT-READ")
		trail := g.trail(t)
		ev := trail[len(trail)-1]
		path := "/fhir/AuditEvent/" + ev.ID
		r := g.get(path, keyAdmin)
		if r.status != 200 || r.header.Get("ETag") != `W/"1"` || str(r.json(t), "meta", "versionId") != "1" {
			t.Fatalf("read: %d ETag %q %s", r.status, r.header.Get("ETag"), r.body)
		}
		lm, err := http.ParseTime(r.header.Get("Last-Modified"))
		if err != nil || !lm.Equal(ev.Recorded.Truncate(time.Second)) {
			t.Errorf("Last-Modified %q, recorded %s", r.header.Get("Last-Modified"), ev.Recorded)
		}
		httpDate := func(t time.Time) string { return t.UTC().Format(http.TimeFormat) }
		for _, c := range []struct {
			name    string
			headers []string
			status  int
		}{
			{"If-None-Match version 1", []string{"If-None-Match", `W/"1"`}, 304},
			{"If-None-Match a list", []string{"If-None-Match", `W/"3", "1"`}, 304},
			{"If-None-Match another version", []string{"If-None-Match", `W/"2"`}, 200},
			{"If-Modified-Since its Last-Modified", []string{"If-Modified-Since", r.header.Get("Last-Modified")}, 304},
			{"If-Modified-Since before", []string{"If-Modified-Since", httpDate(ev.Recorded.Add(-time.Hour))}, 200},
		} {
			before := len(g.trail(t))
			r := g.do(http.MethodGet, path, keyAdmin, nil, c.headers...)
			if r.status != c.status || r.header.Get("ETag") != `W/"1"` || c.status == 304 && len(r.body) != 0 {
				t.Errorf("%s: %d ETag %q %s, want %d", c.name, r.status, r.header.Get("ETag"), r.body, c.status)
			}
			got := g.trail(t)[before:]
			if len(got) != 1 || got[0].Action != gateway.AuditRead || got[0].ResourceType != gateway.TypeAuditEvent ||
				fmt.Sprint(got[0].Entities) != "[AuditEvent/"+ev.ID+"]" || got[0].Outcome != gateway.OutcomeSuccess {
				t.Errorf("%s: audited as %+v", c.name, got)
			}
		}
		// The conditional read is still for operators only.
		if r := g.do(http.MethodGet, path, keyPRV01, nil, "If-None-Match", `W/"1"`); r.status != 403 {
			t.Errorf("provider's conditional read: %d %s", r.status, r.body)
		}
	})
}

// TestAuditEventPaging pages through the trail while others keep adding to
// it: every event there when the first page was read comes exactly once,
// newest first, and nothing newer slips in.
func TestAuditEventPaging(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		ref := providerReads(t, g, "AUDIT-PAGE", 40)
		before := g.trail(t)
		var (
			stop atomic.Bool
			wg   sync.WaitGroup
		)
		wg.Go(func() {
			for !stop.Load() {
				g.get("/fhir/Task/"+ref.task, keyPRV01)
				if err := g.audit.Flush(context.Background()); err != nil {
					t.Error(err)
				}
			}
		})
		var got []string
		path := "/fhir/AuditEvent?_count=7&agent=PRV01"
		for pages := 0; path != ""; pages++ {
			if pages > 100 {
				t.Fatal("paging does not end")
			}
			r := g.get(strings.TrimPrefix(path, g.base), keyAdmin)
			if r.status != 200 {
				t.Fatalf("%s: %d %s", path, r.status, r.body)
			}
			res, _ := entries(t, r)
			if len(res) > 7 {
				t.Fatalf("page of %d", len(res))
			}
			for _, e := range res {
				got = append(got, str(e, "id"))
			}
			path = link(t, r, "next")
		}
		stop.Store(true)
		wg.Wait()
		var want []string
		for i := len(before) - 1; i >= 0; i-- {
			if before[i].ClientID == "provider-prv01" {
				want = append(want, before[i].ID)
			}
		}
		// Events added after the first page are newer than every one
		// paged: they would come first, and none may.
		if len(got) < len(want) || fmt.Sprint(got[len(got)-len(want):]) != fmt.Sprint(want) {
			t.Fatalf("paged %d events, want the %d there before, in order", len(got), len(want))
		}
		seen := map[string]bool{}
		for _, id := range got {
			if seen[id] {
				t.Errorf("%s comes twice", id)
			}
			seen[id] = true
		}
	})
}
