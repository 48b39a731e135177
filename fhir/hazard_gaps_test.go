package fhir_test

// End-to-end tests of hazard-log mitigations that no other test drove over
// HTTP: a referral no rule routes (H01), a Task owner that contradicts the
// performer (H03), a rejection followed to the practice's poll and
// Subscription (H07), and the caseload handover's cap and all-or-nothing
// write (H12).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/spgateway/spgateway/fhir"
	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// withRouting replaces the development routing rules.
func withRouting(rules ...gateway.RoutingRule) gatewayOption {
	return func(g *gateway.Config, _ *fhir.Config) { g.Routing = rules }
}

// withPerformer names provider as the performer of the referral Bundle's
// ServiceRequest.
func withPerformer(t testing.TB, bundle []byte, provider string) []byte {
	t.Helper()
	const at = `"authoredOn"`
	if bytes.Count(bundle, []byte(at)) != 1 {
		t.Fatalf("the Bundle has no single %s to put the performer before", at)
	}
	return bytes.Replace(bundle, []byte(at), []byte(`"performer": [{"reference": "Organization/`+provider+`"}], `+at), 1)
}

// referralTypes are the resource types a referral writes.
var referralTypes = []string{"ServiceRequest", "Task", "Patient", "Condition", "Consent"}

// storedNothing checks that none of the clients with keys finds any
// resource of a referral.
func storedNothing(t testing.TB, g *testGateway, keys ...string) {
	t.Helper()
	for _, typ := range referralTypes {
		for _, key := range keys {
			if n := total(t, g.get("/fhir/"+typ, key)); n != 0 {
				t.Errorf("%s finds %d %s after a refused referral", key, n, typ)
			}
		}
	}
}

// createdAll checks that every entry of a transaction response was created.
func createdAll(t testing.TB, r response) {
	t.Helper()
	for i, e := range r.json(t)["entry"].([]any) {
		if s := str(e, "response", "status"); s != "201 Created" {
			t.Errorf("entry %d: %s, want 201 Created (something of a refused attempt was kept)", i, s)
		}
	}
}

// oneIssue checks that r is an OperationOutcome with a single error issue
// of code, naming expr, whose diagnostics contain text.
func oneIssue(t testing.TB, what string, r response, status int, code, expr, text string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: %d, want %d: %s", what, r.status, status, r.body)
	}
	issues := outcomeIssues(t, r)
	if len(issues) != 1 {
		t.Fatalf("%s: %d issues, want 1: %s", what, len(issues), r.body)
	}
	is := issues[0]
	if is["severity"] != "error" || is["code"] != code || !names(t, r, expr) || !strings.Contains(str(is, "diagnostics"), text) {
		t.Errorf("%s: issue %v, want code %s naming %s with %q", what, is, code, expr, text)
	}
}

// TestUnroutedReferralRefused (H01): with rules that route A81001's
// referrals only from postcode district NE4, a referral from elsewhere that
// names no performer is 422 naming ServiceRequest.performer, as a Bundle
// and as a single ServiceRequest; the refusal is audited; no resource is
// stored for anyone and no provider is sent anything. The practice can then
// send it with a performer, and the same rules route an NE4 referral.
func TestUnroutedReferralRefused(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine, scWithCases(nil, "PRV01", "PRV02"), withRouting(
			gateway.RoutingRule{Practice: "A81001", PostcodeDistricts: []string{"NE4"}, Provider: "PRV01"},
			gateway.RoutingRule{Practice: "A81002", Provider: "PRV02"},
		))
		const why = "no routing rule sends this referral to a provider"
		outOfArea := bytes.ReplaceAll(referralBundle(t, "H01-1", ""), []byte("NE4 5XX"), []byte("DH1 3LE"))
		r := g.audited(t, []wantAudit{refused("practice-a81001", practice, "A81001", gateway.AuditTransaction, "ServiceRequest", gateway.CodeUnprocessable)},
			"POST", "/fhir", keyA81001, outOfArea)
		oneIssue(t, "Bundle", r, http.StatusUnprocessableEntity, "business-rule", "ServiceRequest.performer", why)
		if !names(t, r, "Bundle.entry[3].resource.performer") {
			t.Errorf("the issue does not locate the Bundle entry: %s", r.body)
		}
		// The single ServiceRequest's contained Patient lives in NE15.
		r = g.audited(t, []wantAudit{refused("practice-a81001", practice, "A81001", gateway.AuditCreate, "ServiceRequest", gateway.CodeUnprocessable)},
			"POST", "/fhir/ServiceRequest", keyA81001, fixture(t, "service-request-contained-patient.json"))
		oneIssue(t, "ServiceRequest", r, http.StatusUnprocessableEntity, "business-rule", "ServiceRequest.performer", why)

		storedNothing(t, g, keyA81001, keyA81002, keyPRV01, keyPRV02)
		if events := scOutbox(t, g, gateway.OutboxPending); len(events) != 0 {
			t.Errorf("a refused referral was sent on: %+v", events)
		}
		for _, e := range g.trail(t) {
			if e.Outcome == gateway.OutcomeSuccess && e.Action != gateway.AuditSearch {
				t.Errorf("a success is audited for a refused referral: %+v", e)
			}
		}

		// As the diagnostics advise: the same referral with a performer is
		// a new referral, every entry created.
		r = g.post("/fhir", keyA81001, withPerformer(t, outOfArea, "PRV01"))
		if r.status != http.StatusOK {
			t.Fatalf("with a performer: %d %s", r.status, r.body)
		}
		createdAll(t, r)
		// The rules do route: an NE4 referral goes to PRV01 without a
		// performer.
		if r := g.post("/fhir", keyA81001, referralBundle(t, "H01-2", "")); r.status != http.StatusOK {
			t.Fatalf("NE4 referral: %d %s", r.status, r.body)
		}
		if n := total(t, g.get("/fhir/Task?owner=Organization/PRV01", keyPRV01)); n != 2 {
			t.Errorf("PRV01 has %d Tasks, want 2", n)
		}
		if n := total(t, g.get("/fhir/Task", keyPRV02)); n != 0 {
			t.Errorf("PRV02 has %d Tasks, want 0", n)
		}
	})
}

// TestTaskOwnerContradictsPerformer (H03): a Bundle whose Task names another
// owner than its ServiceRequest's performer is 422 naming Task.owner,
// whichever of the two the routing rules would have chosen and however the
// owner is written; the refusal is audited; nothing is stored and neither
// provider is sent anything. A Task whose owner agrees with the performer
// goes to that provider.
func TestTaskOwnerContradictsPerformer(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine, scWithCases(nil, "PRV01", "PRV02"))
		bundle := func(performer, owner string) []byte {
			return withPerformer(t, taskBundle(t, `"status": "requested", "owner": `+owner), performer)
		}
		const why = "the Task's owner and the ServiceRequest's performer name different providers"
		for _, c := range []struct {
			name, performer, owner string
		}{
			{"owner PRV02, performer PRV01 (the rule's choice)", "PRV01", `{"reference": "Organization/PRV02"}`},
			{"owner PRV01 (the rule's choice), performer PRV02", "PRV02", `{"reference": "Organization/PRV01"}`},
			{"owner by ODS code", "PRV01", `{"identifier": {"system": "` + gateway.SystemODS + `", "value": "PRV02"}}`},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := g.audited(t, []wantAudit{refused("practice-a81001", practice, "A81001", gateway.AuditTransaction, "ServiceRequest", gateway.CodeUnprocessable)},
					"POST", "/fhir", keyA81001, bundle(c.performer, c.owner))
				oneIssue(t, c.name, r, http.StatusUnprocessableEntity, "value", "Task.owner", why)
				if !names(t, r, "Bundle.entry[4].resource.owner") {
					t.Errorf("the issue does not locate the Bundle entry: %s", r.body)
				}
			})
		}
		storedNothing(t, g, keyA81001, keyPRV01, keyPRV02)
		if events := scOutbox(t, g, gateway.OutboxPending); len(events) != 0 {
			t.Errorf("a refused referral was sent on: %+v", events)
		}

		// Owner and performer agree on PRV02, against the rule for A81001:
		// the referral goes to PRV02 only.
		r := g.post("/fhir", keyA81001, bundle("PRV02", `{"reference": "Organization/PRV02"}`), "Prefer", "return=representation")
		if r.status != http.StatusOK {
			t.Fatalf("owner and performer agree: %d %s", r.status, r.body)
		}
		createdAll(t, r)
		task := r.json(t)["entry"].([]any)[4].(map[string]any)["resource"]
		if str(task, "owner", "reference") != "Organization/PRV02" {
			t.Errorf("Task owner %v", task)
		}
		if n := total(t, g.get("/fhir/Task", keyPRV02)); n != 1 {
			t.Errorf("PRV02 has %d Tasks, want 1", n)
		}
		if n := total(t, g.get("/fhir/Task", keyPRV01)); n != 0 {
			t.Errorf("PRV01 has %d Tasks, want 0", n)
		}
		events := scOutbox(t, g, gateway.OutboxPending)
		if len(events) != 1 || events[0].Destination != gateway.ProviderDestination("PRV02") {
			t.Errorf("deliveries %+v, want one to PRV02", events)
		}
	})
}

// practicePoll is one poll of the practice for its Tasks changed after
// since (README, step 6). It returns them and the greatest lastUpdated seen
// (since, when none).
func practicePoll(t testing.TB, g *testGateway, since string) (map[string]map[string]any, string) {
	t.Helper()
	r := g.get("/fhir/Task?requester=Organization/A81001&_count=500&_lastUpdated=gt"+url.QueryEscape(since), keyA81001)
	if r.status != http.StatusOK {
		t.Fatalf("practice poll: %d %s", r.status, r.body)
	}
	if link(t, r, "next") != "" {
		t.Fatalf("practice poll: more than one page")
	}
	res, _ := entries(t, r)
	out := map[string]map[string]any{}
	for _, task := range res {
		out[str(task, "id")] = task
		if lu := str(task, "meta", "lastUpdated"); lu > since {
			since = lu
		}
	}
	return out, since
}

// TestRejectionReachesPractice (H07): the provider rejects two referrals,
// one by PUT and one by JSON Patch, each with If-Match and a coded reason
// (an update without If-Match is 428 and tells nobody). The practice's next
// poll finds exactly those two Tasks, rejected, with their reasons (and the
// declined outcome code); its rest-hook Subscription, delivered by the
// outbox worker, receives each rejected version at its endpoint.
func TestRejectionReachesPractice(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		hooks := e2eNewReceiver(t, false, e2eOK)
		cases := e2eNewReceiver(t, true, e2eOK)
		g := e2eStart(t, storetest.Config(t, engine), e2eOptions{webhookURL: cases.URL})
		sub := e2eSubscribe(t, g, hooks.URL+"/fhir", "application/fhir+json")
		outOfArea := newReferral(t, g.testGateway, "H07-1")
		declined := newReferral(t, g.testGateway, "H07-2")
		seen, since := practicePoll(t, g.testGateway, "2000-01-01T00:00:00.000000Z")
		if len(seen) != 2 || seen[outOfArea.task]["status"] != "requested" || seen[declined.task]["status"] != "requested" {
			t.Fatalf("first poll: %v", seen)
		}

		// The workflow needs If-Match: without it nothing changes.
		task, v := g.read(t, "/fhir/Task/"+outOfArea.task, keyPRV01)
		setStatusWithReason("rejected", "out-of-area", "Lives outside our area")(task)
		if r := g.put(t, "/fhir/Task/"+outOfArea.task, keyPRV01, 0, task); r.status != http.StatusPreconditionRequired {
			t.Fatalf("PUT without If-Match: %d %s", r.status, r.body)
		}
		if seen, _ := practicePoll(t, g.testGateway, since); len(seen) != 0 {
			t.Fatalf("the practice sees a refused update: %v", seen)
		}
		if r := g.put(t, "/fhir/Task/"+outOfArea.task, keyPRV01, v, task); r.status != http.StatusOK {
			t.Fatalf("reject by PUT: %d %s", r.status, r.body)
		}
		r := g.patchTask(t, declined.task, keyPRV01, 1, []any{
			op("replace", "/status", "rejected"),
			op("add", "/statusReason", coded(statusReasonSystem, gateway.ReasonPatientDeclined, "Does not want to be contacted")),
		})
		if r.status != http.StatusOK {
			t.Fatalf("reject by PATCH: %d %s", r.status, r.body)
		}

		// The practice's poll.
		seen, _ = practicePoll(t, g.testGateway, since)
		if len(seen) != 2 {
			t.Fatalf("the poll after the rejections finds %d Tasks, want 2", len(seen))
		}
		want := map[string]string{outOfArea.task: "out-of-area", declined.task: gateway.ReasonPatientDeclined}
		for id, reason := range want {
			task := seen[id]
			if task["status"] != "rejected" || versionOf(task) != 2 || str(task, "statusReason", "coding", 0, "system") != statusReasonSystem ||
				str(task, "statusReason", "coding", 0, "code") != reason {
				t.Errorf("practice polls Task %s: status %v, version %d, reason %v", id, task["status"], versionOf(task), task["statusReason"])
			}
		}
		if got := outcomes(seen[declined.task]); !slices.Equal(got, []string{"871711000000103"}) {
			t.Errorf("declined Task's outcomes as polled: %v", got)
		}

		// The Subscription: every rejected version PUT to the endpoint.
		if d := g.settle(t); d[gateway.OutboxDead] != 0 {
			t.Fatalf("dead letters: %v", d)
		}
		got := map[string]map[string]any{}
		for _, rec := range hooks.got() {
			var task map[string]any
			if err := json.Unmarshal(rec.body, &task); err != nil {
				t.Fatalf("delivery body: %v", err)
			}
			id := str(task, "id")
			if rec.method != http.MethodPut || rec.path != "/fhir/Task/"+id || !rec.accepted() || rec.version() != versionOf(task) {
				t.Errorf("delivery %s %s, version header %d, Task version %d", rec.method, rec.path, rec.version(), versionOf(task))
			}
			if _, dup := got[id]; dup {
				t.Errorf("Task %s delivered twice", id)
			}
			got[id] = task
		}
		if len(got) != 2 {
			t.Fatalf("the Subscription received %d Tasks, want 2: %v", len(got), got)
		}
		for id, reason := range want {
			task := got[id]
			if task["status"] != "rejected" || versionOf(task) != 2 || str(task, "statusReason", "coding", 0, "code") != reason {
				t.Errorf("Subscription receives Task %s: status %v, version %d, reason %v", id, task["status"], versionOf(task), task["statusReason"])
			}
		}
		if s := e2eSubscription(t, g, sub); s["status"] != gateway.SubscriptionActive {
			t.Errorf("Subscription status %v", s["status"])
		}
	})
}

// reassigned returns the count and the Task ids a $reassign answered.
func reassigned(t testing.TB, r response) (int, []string) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("$reassign: %d %s", r.status, r.body)
	}
	params := r.json(t)["parameter"].([]any)
	n, _ := params[0].(map[string]any)["valueInteger"].(float64)
	var ids []string
	for _, p := range params[1:] {
		ids = append(ids, strings.TrimPrefix(str(p, "valueReference", "reference"), "Task/"))
	}
	return int(n), ids
}

// caseload sends n referrals, identifiers prefix-0 on, and gives each Task
// to PRV01's link worker; it returns the Tasks' ids in that order.
func caseload(t testing.TB, g *testGateway, prefix, worker string, n int) []string {
	t.Helper()
	var tasks []string
	for i := range n {
		ref := newReferral(t, g, fmt.Sprintf("%s-%d", prefix, i))
		g.mustChange(t, ref.task, keyPRV01, linkWorker(linkWorkers, worker))
		tasks = append(tasks, ref.task)
	}
	return tasks
}

// linkWorkerOf is the value of a Task's link worker identifier.
func linkWorkerOf(task map[string]any) string {
	return str(task, "extension", 0, "valueReference", "identifier", "value")
}

// lastChange is the time of the store's latest write, as _lastUpdated
// takes it.
func lastChange(t testing.TB, g *testGateway) string {
	t.Helper()
	r := g.get("/fhir/Task?_sort=-_lastUpdated&_count=1", keyPRV01)
	res, _ := entries(t, r)
	if len(res) != 1 {
		t.Fatalf("no Task: %s", r.body)
	}
	return str(res[0], "meta", "lastUpdated")
}

// changedSince counts the Tasks PRV01 finds changed after since.
func changedSince(t testing.TB, g *testGateway, since string) int {
	t.Helper()
	return total(t, g.get("/fhir/Task?_count=1&_total=accurate&_lastUpdated=gt"+url.QueryEscape(since), keyPRV01))
}

// cloneTask stores n copies of PRV01's Task id, as version 1 under new ids,
// in one store transaction: a caseload of thousands without thousands of
// intakes over HTTP. The copies are Tasks of the same referral, with the
// same link worker and status.
func cloneTask(t testing.TB, g *testGateway, id string, n int) {
	t.Helper()
	ctx := context.Background()
	err := g.store.Update(ctx, func(tx gateway.Tx) error {
		cur, err := tx.GetFor(ctx, "PRV01", gateway.TypeTask, id, 0)
		if err != nil {
			return err
		}
		var doc map[string]any
		if err := json.Unmarshal(cur.Body, &doc); err != nil {
			return err
		}
		meta := doc["meta"].(map[string]any)
		meta["versionId"], meta["lastUpdated"] = "1", gateway.FormatInstant(tx.Now())
		for i := range n {
			doc["id"] = fmt.Sprintf("%s-copy-%d", id, i)
			body, err := json.Marshal(doc)
			if err != nil {
				return err
			}
			c := gateway.Resource{Type: gateway.TypeTask, ID: doc["id"].(string), Version: 1, Body: body, Index: cur.Index}
			c.Index.Access = []string{"A81001", "PRV01"}
			if err := tx.Put(ctx, &c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReassignOverMaxRefused (H12): a link worker holding one open Task more
// than gateway.MaxReassign cannot be handed over: 422 too-long naming the
// from parameter, audited, and not one Task changes. (Moving MaxReassign
// Tasks at once takes over a minute under the race detector, so the cap
// itself is not moved here; TestReassignCaseload moves 200.)
func TestReassignOverMaxRefused(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		first := newReferral(t, g, "H12-MAX")
		g.mustChange(t, first.task, keyPRV01, linkWorker(linkWorkers, "LW-FULL"))
		cloneTask(t, g, first.task, gateway.MaxReassign)
		if n := total(t, g.get("/fhir/Task?status=requested&_count=1&_total=accurate", keyPRV01)); n != gateway.MaxReassign+1 {
			t.Fatalf("%d open Tasks, want %d", n, gateway.MaxReassign+1)
		}
		mark := lastChange(t, g)

		r := g.audited(t, []wantAudit{refused("provider-prv01", provider, "PRV01", gateway.AuditOperation, "Task", gateway.CodeUnprocessable)},
			"POST", "/fhir/Task/$reassign", keyPRV01, reassignParams("LW-FULL", "LW-NEW"))
		oneIssue(t, "over the cap", r, http.StatusUnprocessableEntity, "too-long", "Parameters.parameter.from",
			fmt.Sprintf("more than %d open Tasks", gateway.MaxReassign))
		if n := changedSince(t, g, mark); n != 0 {
			t.Fatalf("the refused handover changed %d Tasks", n)
		}
		for _, id := range []string{first.task, first.task + "-copy-0", fmt.Sprintf("%s-copy-%d", first.task, gateway.MaxReassign-1)} {
			want := 1 // a copy
			if id == first.task {
				want = 2
			}
			if task, v := g.read(t, "/fhir/Task/"+id, keyPRV01); linkWorkerOf(task) != "LW-FULL" || v != want {
				t.Errorf("Task %s after the refusal: version %d, link worker %s", id, v, linkWorkerOf(task))
			}
		}
	})
}

// refuseTaskVersion makes the database refuse to store a version after the
// current one of Task id, as a disk or constraint failure would; the
// returned function removes the refusal.
func refuseTaskVersion(t testing.TB, g *testGateway, id string, current int) func() {
	t.Helper()
	db := g.rawDB(t)
	cond := fmt.Sprintf(`NEW.type = 'Task' AND NEW.id = '%s' AND NEW.version > %d`, id, current)
	if g.db.Driver == store.DriverSQLite {
		mustExec(t, db, `CREATE TRIGGER refuse_handover BEFORE INSERT ON resource_versions WHEN `+cond+`
			BEGIN SELECT RAISE(ABORT, 'refused for the test'); END`)
		return func() { mustExec(t, db, `DROP TRIGGER refuse_handover`) }
	}
	mustExec(t, db, `CREATE FUNCTION refuse_handover() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF `+cond+` THEN RAISE EXCEPTION 'refused for the test'; END IF; RETURN NEW; END; $$`)
	mustExec(t, db, `CREATE TRIGGER refuse_handover BEFORE INSERT ON resource_versions FOR EACH ROW EXECUTE FUNCTION refuse_handover()`)
	return func() {
		mustExec(t, db, `DROP TRIGGER refuse_handover ON resource_versions`)
		mustExec(t, db, `DROP FUNCTION refuse_handover()`)
	}
}

// TestReassignFailingHalfWay (H12): the database refuses the last Task of a
// handover after every other Task's new version was written in its
// transaction. The answer is 500 without the database's words, the failure
// is audited, and every Task is as it was: version, link worker, and no
// notification to the practice's Subscription. Once the database takes
// writes again the same handover moves every Task, the refused one last. A
// provider's update racing a handover lands wholly before it (and the
// handover moves the updated Task, or leaves it if the update closed it) or
// is 412: never half of each.
func TestReassignFailingHalfWay(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		scSubscribe(t, g, keyA81001, scSubscription(t, nil))
		const n = 12
		tasks := caseload(t, g, "H12-HALF", "LW-OLD", n)
		last := tasks[n-1] // the latest change: the handover's last write
		notified := len(scOutbox(t, g, gateway.OutboxPending))
		mark := lastChange(t, g)

		restore := refuseTaskVersion(t, g, last, 2)
		audits := len(g.trail(t))
		r := g.post("/fhir/Task/$reassign", keyPRV01, reassignParams("LW-OLD", "LW-NEW"))
		if r.status != http.StatusInternalServerError || bytes.Contains(r.body, []byte("refused for the test")) {
			t.Fatalf("handover failing half way: %d %s", r.status, r.body)
		}
		if c := changedSince(t, g, mark); c != 0 {
			t.Errorf("the failed handover changed %d Tasks", c)
		}
		for _, id := range tasks {
			if task, v := g.read(t, "/fhir/Task/"+id, keyPRV01); v != 2 || linkWorkerOf(task) != "LW-OLD" {
				t.Errorf("Task %s after the failed handover: version %d, link worker %s", id, v, linkWorkerOf(task))
			}
		}
		if after := len(scOutbox(t, g, gateway.OutboxPending)); after != notified {
			t.Errorf("the failed handover notified the practice %d times", after-notified)
		}
		var handovers []gateway.AuditEvent // the checks since read and searched
		for _, e := range g.trail(t)[audits:] {
			if e.Action == gateway.AuditOperation {
				handovers = append(handovers, e)
			}
		}
		if len(handovers) != 1 || handovers[0].Outcome != string(gateway.CodeInternal) || handovers[0].ClientID != "provider-prv01" {
			t.Errorf("audit of the failed handover: %+v", handovers)
		}
		restore()

		count, ids := reassigned(t, g.post("/fhir/Task/$reassign", keyPRV01, reassignParams("LW-OLD", "LW-NEW")))
		if count != n || len(ids) != n || ids[n-1] != last {
			t.Fatalf("handover after the failure: %d moved, in order %v; want %d, %s last", count, ids, n, last)
		}
		for _, id := range tasks {
			if task, v := g.read(t, "/fhir/Task/"+id, keyPRV01); v != 3 || linkWorkerOf(task) != "LW-NEW" {
				t.Errorf("Task %s after the handover: version %d, link worker %s", id, v, linkWorkerOf(task))
			}
		}
		if after := len(scOutbox(t, g, gateway.OutboxPending)); after != notified+n {
			t.Errorf("the handover notified the practice %d times, want %d", after-notified, n)
		}

		// A provider's rejection, from the version it read before, races
		// the handover back.
		racer := tasks[n/2]
		task, v := g.read(t, "/fhir/Task/"+racer, keyPRV01)
		setStatusWithReason("rejected", "no-capacity", "")(task)
		var (
			wg     sync.WaitGroup
			update response
			back   response
		)
		wg.Go(func() { update = g.put(t, "/fhir/Task/"+racer, keyPRV01, v, task) })
		wg.Go(func() { back = g.post("/fhir/Task/$reassign", keyPRV01, reassignParams("LW-NEW", "LW-OLD")) })
		wg.Wait()
		_, ids = reassigned(t, back)
		final, fv := g.read(t, "/fhir/Task/"+racer, keyPRV01)
		switch update.status {
		case http.StatusOK: // before the handover, which left the rejected Task
			if final["status"] != "rejected" || linkWorkerOf(final) != "LW-NEW" || fv != 4 || slices.Contains(ids, racer) || len(ids) != n-1 {
				t.Errorf("update first: Task %v version %d with %s; handover moved %d, racer among them %v",
					final["status"], fv, linkWorkerOf(final), len(ids), slices.Contains(ids, racer))
			}
		case http.StatusPreconditionFailed: // after the handover, which moved the Task
			if final["status"] != "requested" || linkWorkerOf(final) != "LW-OLD" || fv != 4 || !slices.Contains(ids, racer) || len(ids) != n {
				t.Errorf("handover first: Task %v version %d with %s; handover moved %d", final["status"], fv, linkWorkerOf(final), len(ids))
			}
		default:
			t.Errorf("racing update: %d %s", update.status, update.body)
		}
	})
}
