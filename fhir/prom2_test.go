package fhir_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spgateway/spgateway/fhir"
	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

const promDueURL = "https://fhir.spgateway.org/StructureDefinition/prom-due"

// handClock is a clock the test moves by hand; withNow gives it to the
// whole gateway.
type handClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *handClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *handClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// withInstrument adds a configured PROM instrument.
func withInstrument(in gateway.Instrument) gatewayOption {
	return func(g *gateway.Config, _ *fhir.Config) { g.Instruments = append(g.Instruments, in) }
}

// decoded is a JSON document as a generic map.
func decoded(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return m
}

// promDue returns the Task's prom-due extension as a time, and whether it
// is there.
func promDue(t testing.TB, task map[string]any) (time.Time, bool) {
	t.Helper()
	exts, _ := task["extension"].([]any)
	found, due := 0, time.Time{}
	for _, e := range exts {
		if str(e, "url") != promDueURL {
			continue
		}
		found++
		v, err := time.Parse(time.RFC3339Nano, str(e, "valueDateTime"))
		if err != nil {
			t.Fatalf("prom-due %q: %v", str(e, "valueDateTime"), err)
		}
		due = v
	}
	if found > 1 {
		t.Fatalf("%d prom-due extensions: %v", found, exts)
	}
	return due, found == 1
}

// contentRefs lists the references of a Task's additional-content outputs.
func contentRefs(task map[string]any) []string {
	var refs []string
	list, _ := task["output"].([]any)
	for _, o := range list {
		if str(o, "type", "coding", 0, "code") == "additional-content" {
			refs = append(refs, str(o, "valueReference", "reference"))
		}
	}
	return refs
}

// refTypes is the resource types of references, e.g. [QuestionnaireResponse Observation].
func refTypes(refs []string) string {
	var types []string
	for _, r := range refs {
		typ, _, _ := strings.Cut(r, "/")
		types = append(types, typ)
	}
	return fmt.Sprint(types)
}

// businessStatus is the code of a Task's businessStatus.
func businessStatus(task map[string]any) string {
	return str(task, "businessStatus", "coding", 0, "code")
}

// recordPROM posts a PROM that must be accepted, and returns the id of the
// stored QuestionnaireResponse.
func (g *testGateway) recordPROM(t testing.TB, key string, body []byte) string {
	t.Helper()
	r := g.post("/fhir/QuestionnaireResponse", key, body)
	if r.status != 201 {
		t.Fatalf("PROM: %d %s", r.status, r.body)
	}
	return str(r.json(t), "id")
}

// TestPROMRefusals breaks each rule of recording a PROM once and checks the
// status, the issue code and the element the OperationOutcome names, and
// that nothing was stored.
func TestPROMRefusals(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		now := time.Date(2027, 1, 10, 12, 0, 0, 0, time.UTC)
		g := newGateway(t, engine, withNow(func() time.Time { return now }))

		open := newReferral(t, g, "PROMREF-OPEN")
		g.mustChange(t, open.task, keyPRV01, setStatus("accepted"))
		requested := newReferral(t, g, "PROMREF-REQUESTED")
		received := newReferral(t, g, "PROMREF-RECEIVED")
		g.mustChange(t, received.task, keyPRV01, setStatus("received"))
		completed := newReferral(t, g, "PROMREF-COMPLETED")
		g.mustChange(t, completed.task, keyPRV01, setStatus("accepted"))
		g.mustChange(t, completed.task, keyPRV01, setStatus("in-progress"))
		g.mustChange(t, completed.task, keyPRV01, setStatus("completed"))
		rejected := newReferral(t, g, "PROMREF-REJECTED")
		g.mustChange(t, rejected.task, keyPRV01, setStatusWithReason("rejected", "no-capacity", ""))
		cancelled := newReferral(t, g, "PROMREF-CANCELLED")
		g.mustChange(t, cancelled.task, keyPRV01, setStatus("accepted"))
		g.mustChange(t, cancelled.task, keyA81001, setStatusWithReason("cancelled", "duplicate", ""))
		// Another patient, referred by the same practice to the same provider.
		other := sendReferral(t, g, referralBundle(t, "PROMREF-OTHER", "6541003238"))
		if other.patient == open.patient {
			t.Fatalf("the other referral has the same Patient %s", other.patient)
		}

		valid := promResponse(open, "swemwbs", "2027-01-09T10:00:00Z", swemwbsAnswers(3, 3, 3, 3, 3, 3, 3))
		// The document every case breaks is accepted as it is.
		g.recordPROM(t, keyPRV01, valid)

		tasks := []referral{open, requested, received, completed, rejected, cancelled, other}
		versions := map[string]int{}
		for _, ref := range tasks {
			_, versions[ref.task] = g.read(t, "/fhir/Task/"+ref.task, keyPRV01)
		}
		counts := func() [2]int {
			return [2]int{total(t, g.get("/fhir/QuestionnaireResponse", keyPRV01)), total(t, g.get("/fhir/Observation", keyPRV01))}
		}
		before := counts()
		if before != [2]int{1, 1} {
			t.Fatalf("after one PROM the provider has %v responses and observations", before)
		}

		// forReferral points the response at another referral and its Patient.
		forReferral := func(ref referral) func(map[string]any) {
			return func(m map[string]any) {
				m["subject"] = map[string]any{"reference": "Patient/" + ref.patient}
				m["basedOn"] = []any{map[string]any{"reference": "ServiceRequest/" + ref.request}}
			}
		}
		item := func(linkID string, answer map[string]any) map[string]any {
			return map[string]any{"linkId": linkID, "answer": []any{answer}}
		}
		// setAnswer replaces the answer to linkID.
		setAnswer := func(linkID string, answer map[string]any) func(map[string]any) {
			return func(m map[string]any) {
				for _, it := range m["item"].([]any) {
					if it := it.(map[string]any); it["linkId"] == linkID {
						it["answer"] = []any{answer}
					}
				}
			}
		}
		const inItem = "QuestionnaireResponse.item.where(linkId='"
		cases := []struct {
			name   string
			key    string
			edit   func(map[string]any)
			raw    func([]byte) []byte
			status int
			code   string
			expr   string
		}{
			{name: "another provider", key: keyPRV02, status: 404, code: "not-found"},
			{name: "a practice", key: keyA81001, status: 403, code: "forbidden"},
			{name: "Task requested", edit: forReferral(requested), status: 409, code: "business-rule", expr: "QuestionnaireResponse.basedOn"},
			{name: "Task received", edit: forReferral(received), status: 409, code: "business-rule", expr: "QuestionnaireResponse.basedOn"},
			{name: "Task completed", edit: forReferral(completed), status: 409, code: "business-rule", expr: "QuestionnaireResponse.basedOn"},
			{name: "Task rejected", edit: forReferral(rejected), status: 409, code: "business-rule", expr: "QuestionnaireResponse.basedOn"},
			{name: "Task cancelled", edit: forReferral(cancelled), status: 409, code: "business-rule", expr: "QuestionnaireResponse.basedOn"},
			{name: "unknown questionnaire", edit: func(m map[string]any) {
				m["questionnaire"] = "https://fhir.spgateway.org/Questionnaire/phq9"
			}, status: 422, code: "value", expr: "QuestionnaireResponse.questionnaire"},
			{name: "questionnaire of another publisher", edit: func(m map[string]any) {
				m["questionnaire"] = "https://example.org/Questionnaire/swemwbs"
			}, status: 422, code: "value", expr: "QuestionnaireResponse.questionnaire"},
			{name: "status in-progress", edit: func(m map[string]any) { m["status"] = "in-progress" },
				status: 422, code: "value", expr: "QuestionnaireResponse.status"},
			{name: "authored missing", edit: func(m map[string]any) { delete(m, "authored") },
				status: 422, code: "required", expr: "QuestionnaireResponse.authored"},
			{name: "authored not a dateTime", edit: func(m map[string]any) { m["authored"] = "last Tuesday" },
				status: 422, code: "value", expr: "QuestionnaireResponse.authored"},
			{name: "authored an impossible date", edit: func(m map[string]any) { m["authored"] = "2027-02-30T10:00:00Z" },
				status: 422, code: "value", expr: "QuestionnaireResponse.authored"},
			{name: "authored in the future", edit: func(m map[string]any) {
				m["authored"] = gateway.FormatInstant(now.Add(6 * time.Minute))
			}, status: 422, code: "value", expr: "QuestionnaireResponse.authored"},
			{name: "subject missing", edit: func(m map[string]any) { delete(m, "subject") },
				status: 422, code: "required", expr: "QuestionnaireResponse.subject"},
			{name: "subject not a Patient", edit: func(m map[string]any) {
				m["subject"] = map[string]any{"reference": "Group/" + open.patient}
			}, status: 422, code: "required", expr: "QuestionnaireResponse.subject"},
			{name: "subject another Patient", edit: func(m map[string]any) {
				m["subject"] = map[string]any{"reference": "Patient/" + other.patient}
			}, status: 422, code: "value", expr: "QuestionnaireResponse.subject"},
			{name: "basedOn missing", edit: func(m map[string]any) { delete(m, "basedOn") },
				status: 422, code: "required", expr: "QuestionnaireResponse.basedOn"},
			{name: "basedOn two referrals", edit: func(m map[string]any) {
				m["basedOn"] = append(m["basedOn"].([]any), map[string]any{"reference": "ServiceRequest/" + other.request})
			}, status: 422, code: "required", expr: "QuestionnaireResponse.basedOn"},
			{name: "answer out of range", edit: setAnswer("6", map[string]any{"valueInteger": 6}),
				status: 422, code: "value", expr: inItem + "6').answer"},
			{name: "answer below range", edit: setAnswer("1", map[string]any{"valueInteger": 0}),
				status: 422, code: "value", expr: inItem + "1').answer"},
			{name: "item missing", edit: func(m map[string]any) {
				items := m["item"].([]any)
				m["item"] = items[:len(items)-1] // item 11
			}, status: 422, code: "required", expr: inItem + "11')"},
			{name: "unknown linkId", edit: func(m map[string]any) {
				m["item"] = append(m["item"].([]any), item("4", map[string]any{"valueInteger": 3}))
			}, status: 422, code: "value", expr: inItem + "4')"},
			{name: "item answered twice", edit: func(m map[string]any) {
				m["item"] = append(m["item"].([]any), item("3", map[string]any{"valueInteger": 3}))
			}, status: 422, code: "value", expr: inItem + "3')"},
			{name: "valueString", edit: setAnswer("7", map[string]any{"valueString": "3"}),
				status: 422, code: "required", expr: inItem + "7').answer"},
			{name: "two answers to one item", edit: func(m map[string]any) {
				for _, it := range m["item"].([]any) {
					if it := it.(map[string]any); it["linkId"] == "9" {
						it["answer"] = []any{map[string]any{"valueInteger": 2}, map[string]any{"valueInteger": 4}}
					}
				}
			}, status: 422, code: "required", expr: inItem + "9').answer"},
			{name: "not a QuestionnaireResponse", edit: func(m map[string]any) { m["resourceType"] = "Patient" },
				status: 400, code: "structure", expr: "QuestionnaireResponse"},
			{name: "status not a code", edit: func(m map[string]any) { m["status"] = 5 },
				status: 400, code: "structure", expr: "QuestionnaireResponse.status"},
			{name: "unknown status code", edit: func(m map[string]any) { m["status"] = "finished" },
				status: 400, code: "structure", expr: "QuestionnaireResponse.status"},
			{name: "duplicate JSON key", raw: func(b []byte) []byte {
				return bytes.Replace(b, []byte(`"status":"completed"`), []byte(`"status":"completed","status":"completed"`), 1)
			}, status: 400, code: "structure", expr: "QuestionnaireResponse"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				body := valid
				if c.edit != nil {
					doc := decoded(t, valid)
					c.edit(doc)
					body = mustJSON(t, doc)
				}
				if c.raw != nil {
					if body = c.raw(valid); bytes.Equal(body, valid) {
						t.Fatal("the case changed nothing")
					}
				}
				key := c.key
				if key == "" {
					key = keyPRV01
				}
				r := g.post("/fhir/QuestionnaireResponse", key, body)
				if r.status != c.status {
					t.Fatalf("%d, want %d: %s", r.status, c.status, r.body)
				}
				issues := outcomeIssues(t, r)
				if len(issues) != 1 {
					t.Errorf("%d issues, want one: %s", len(issues), r.body)
				}
				if issues[0]["code"] != c.code || str(issues[0], "diagnostics") == "" {
					t.Errorf("issue %v, want code %s and diagnostics", issues[0], c.code)
				}
				if c.expr != "" && !names(t, r, c.expr) {
					t.Errorf("no issue names %s: %s", c.expr, r.body)
				}
				if got := counts(); got != before {
					t.Errorf("responses and observations %v, was %v", got, before)
				}
				for _, ref := range tasks {
					if _, v := g.read(t, "/fhir/Task/"+ref.task, keyPRV01); v != versions[ref.task] {
						t.Errorf("Task %s at version %d, was %d", ref.task, v, versions[ref.task])
					}
				}
			})
		}

		// The clock's tolerance: five minutes ahead is still accepted.
		doc := decoded(t, valid)
		doc["authored"] = gateway.FormatInstant(now.Add(4 * time.Minute))
		g.recordPROM(t, keyPRV01, mustJSON(t, doc))
		if got := counts(); got != [2]int{2, 2} {
			t.Errorf("after a second PROM: %v", got)
		}
	})
}

// TestPROMScheduleOverHTTP follows one referral through its PROM schedule
// on a clock moved by hand: the baseline is due 30 days after acceptance,
// follow-ups every six months after the baseline; the gateway marks a
// follow-up due, both parties find it, and a PROM or closing the Task clears
// it.
func TestPROMScheduleOverHTTP(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		t0 := time.Date(2027, 1, 4, 9, 0, 0, 0, time.UTC)
		clk := &handClock{now: t0}
		g := newGateway(t, engine, withNow(clk.Now))
		ref := newReferral(t, g, "SCHED-1")
		bystander := newReferral(t, g, "SCHED-2") // accepted, never a PROM
		path := "/fhir/Task/" + ref.task

		// Accepted: the baseline is due 30 days on.
		accepted := t0.Add(time.Hour)
		clk.set(accepted)
		task := g.mustChange(t, ref.task, keyPRV01, setStatus("accepted"))
		if due, ok := promDue(t, task); !ok || !due.Equal(accepted.AddDate(0, 0, 30)) {
			t.Fatalf("baseline due %v (%v), want %v", due, ok, accepted.AddDate(0, 0, 30))
		}
		g.mustChange(t, bystander.task, keyPRV01, setStatus("accepted"))

		clk.set(t0.AddDate(0, 0, 1))
		task = g.mustChange(t, ref.task, keyPRV01, func(task map[string]any) {
			task["status"] = "in-progress"
			task["businessStatus"] = coded(businessStatusSystem, "first-contact-made", "")
		})
		if due, ok := promDue(t, task); !ok || !due.Equal(accepted.AddDate(0, 0, 30)) {
			t.Errorf("after first contact the baseline is due %v (%v)", due, ok)
		}

		// The baseline: the first follow-up is due six months after it.
		baseline := t0.AddDate(0, 0, 2)
		clk.set(baseline.Add(time.Hour))
		g.recordPROM(t, keyPRV01, promResponse(ref, "swemwbs", gateway.FormatInstant(baseline), swemwbsAnswers(3, 3, 3, 3, 3, 3, 3)))
		task, v := g.read(t, path, keyPRV01)
		firstDue := baseline.AddDate(0, 6, 0)
		if due, ok := promDue(t, task); !ok || !due.Equal(firstDue) || businessStatus(task) != "baseline-prom-complete" {
			t.Fatalf("after the baseline: due %v (%v), business status %q", due, ok, businessStatus(task))
		}

		// Not yet due: nothing is marked.
		if n, err := g.svc.MarkPROMsDue(ctx, firstDue.Add(-time.Minute)); err != nil || n != 0 {
			t.Fatalf("a minute early: %d marked, %v", n, err)
		}
		// Past due: marked once, as a new version by the gateway.
		clk.set(firstDue.AddDate(0, 0, 1))
		if n, err := g.svc.MarkPROMsDue(ctx, clk.Now()); err != nil || n != 1 {
			t.Fatalf("past due: %d marked, %v", n, err)
		}
		task, mv := g.read(t, path, keyPRV01)
		if mv != v+1 || businessStatus(task) != "follow-up-prom-due" || task["status"] != "in-progress" {
			t.Fatalf("marked: version %d (was %d), %q %v", mv, v, businessStatus(task), task["status"])
		}
		if due, ok := promDue(t, task); !ok || !due.Equal(firstDue) {
			t.Errorf("marking moved the due date to %v (%v)", due, ok)
		}
		if by := str(task, "meta", "extension", 0, "valueReference", "display"); !strings.Contains(by, "PROM schedule") {
			t.Errorf("marked by %q", by)
		}
		const dueSearch = "/fhir/Task?business-status=follow-up-prom-due"
		for _, key := range []string{keyPRV01, keyA81001} {
			res, _ := entries(t, g.get(dueSearch, key))
			if len(res) != 1 || str(res[0], "id") != ref.task {
				t.Errorf("%s finds %d Tasks with a follow-up due", key, len(res))
			}
		}
		if n := total(t, g.get("/fhir/Task?business-status="+businessStatusSystem+"|follow-up-prom-due", keyPRV01)); n != 1 {
			t.Errorf("with the system: %d", n)
		}
		for _, key := range []string{keyPRV02, keyA81002} {
			if n := total(t, g.get(dueSearch, key)); n != 0 {
				t.Errorf("%s finds %d", key, n)
			}
		}
		if n, err := g.svc.MarkPROMsDue(ctx, clk.Now()); err != nil || n != 0 {
			t.Errorf("again: %d marked, %v", n, err)
		}
		if _, again := g.read(t, path, keyPRV01); again != mv {
			t.Errorf("the second sweep wrote version %d", again)
		}
		// The link worker chases the PROM by phone and says so; the sweep has
		// marked this follow-up already and leaves the provider's status be.
		clk.set(clk.Now().Add(time.Hour))
		chased := g.mustChange(t, ref.task, keyPRV01, func(task map[string]any) {
			task["businessStatus"] = coded(businessStatusSystem, "contact-attempted", "")
		})
		_, cv := g.read(t, path, keyPRV01)
		if n, err := g.svc.MarkPROMsDue(ctx, clk.Now()); err != nil || n != 0 {
			t.Errorf("after the provider's contact attempt: %d marked, %v", n, err)
		}
		if task, after := g.read(t, path, keyPRV01); after != cv || businessStatus(task) != "contact-attempted" {
			t.Errorf("the sweep overwrote the provider's business status: version %d (was %d), %q", after, cv, businessStatus(task))
		}
		if due, ok := promDue(t, chased); !ok || !due.Equal(firstDue) {
			t.Errorf("the provider's change moved the due date to %v (%v)", due, ok)
		}

		// The follow-up: the next is due twelve months after the baseline.
		followUp := clk.Now().Add(-time.Hour)
		g.recordPROM(t, keyPRV01, promResponse(ref, "swemwbs", gateway.FormatInstant(followUp), swemwbsAnswers(4, 4, 4, 4, 4, 4, 4)))
		task, _ = g.read(t, path, keyPRV01)
		if due, ok := promDue(t, task); !ok || !due.Equal(baseline.AddDate(0, 12, 0)) || businessStatus(task) != "follow-up-prom-complete" {
			t.Errorf("after the follow-up: due %v (%v), business status %q", due, ok, businessStatus(task))
		}
		if n := total(t, g.get(dueSearch, keyPRV01)); n != 0 {
			t.Errorf("after the follow-up the search finds %d", n)
		}
		refs := contentRefs(task)
		if refTypes(refs) != "[QuestionnaireResponse Observation QuestionnaireResponse Observation]" {
			t.Fatalf("outputs %v", refs)
		}
		for i, want := range []float64{19.25, 25.03} { // raw 21 and 28
			obs, _ := g.read(t, "/fhir/"+refs[2*i+1], keyA81001)
			if obs["valueQuantity"].(map[string]any)["value"].(float64) != want || str(obs, "derivedFrom", 0, "reference") != refs[2*i] {
				t.Errorf("PROM %d: %v", i, obs)
			}
		}
		if got := outcomes(task); fmt.Sprint(got) != "[1362931000000106]" {
			t.Errorf("outcomes %v", got)
		}

		// Completed: nothing more is due, and the sweep leaves it alone.
		clk.set(clk.Now().AddDate(0, 0, 1))
		task = g.mustChange(t, ref.task, keyPRV01, setStatus("completed"))
		if due, ok := promDue(t, task); ok {
			t.Errorf("a completed Task has a PROM due %v", due)
		}
		if got := outcomes(task); fmt.Sprint(got) != "[1362931000000106 1362721000000106]" {
			t.Errorf("completed: outcomes %v", got)
		}
		if got := contentRefs(task); fmt.Sprint(got) != fmt.Sprint(refs) {
			t.Errorf("completed: outputs %v, were %v", got, refs)
		}
		_, cv = g.read(t, path, keyPRV01)
		if n, err := g.svc.MarkPROMsDue(ctx, t0.AddDate(5, 0, 0)); err != nil || n != 0 {
			t.Errorf("years later: %d marked, %v", n, err)
		}
		if _, after := g.read(t, path, keyPRV01); after != cv {
			t.Errorf("the sweep wrote version %d of a completed Task", after)
		}
		// The bystander's baseline is overdue, but only follow-ups are marked.
		if b, _ := g.read(t, "/fhir/Task/"+bystander.task, keyPRV01); businessStatus(b) != "" {
			t.Errorf("bystander: %q", businessStatus(b))
		}
	})
}

// TestPROMAfterCancellation: once the practice cancels, no PROM is taken;
// the PROMs recorded before stay linked and readable, also in the practice's
// codes-only view.
func TestPROMAfterCancellation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		ref := sendReferral(t, g, codesOnlyBundle(t, "PROMCAN-1"))
		g.mustChange(t, ref.task, keyPRV01, setStatus("accepted"))
		g.mustChange(t, ref.task, keyPRV01, workNotes)
		qr1 := g.recordPROM(t, keyPRV01, promResponse(ref, "swemwbs", "2026-11-16T10:00:00Z", swemwbsAnswers(2, 2, 2, 2, 2, 2, 2)))
		qr2 := g.recordPROM(t, keyPRV01, promResponse(ref, "ons4", "2026-11-16T10:05:00Z",
			[][2]any{{"life-satisfaction", 5}, {"worthwhile", 6}, {"happy-yesterday", 4}, {"anxious-yesterday", 7}}))

		task := g.mustChange(t, ref.task, keyA81001, setStatusWithReason("cancelled", "referred-elsewhere", ""))
		if task["status"] != "cancelled" {
			t.Fatalf("cancelled: %v", task["status"])
		}
		if due, ok := promDue(t, task); ok {
			t.Errorf("a cancelled Task has a PROM due %v", due)
		}
		_, v := g.read(t, "/fhir/Task/"+ref.task, keyPRV01)
		r := g.post("/fhir/QuestionnaireResponse", keyPRV01, promResponse(ref, "swemwbs", "2026-11-17T10:00:00Z", swemwbsAnswers(3, 3, 3, 3, 3, 3, 3)))
		if r.status != 409 || !names(t, r, "QuestionnaireResponse.basedOn") {
			t.Fatalf("PROM after cancellation: %d %s", r.status, r.body)
		}
		if _, after := g.read(t, "/fhir/Task/"+ref.task, keyPRV01); after != v {
			t.Errorf("the refused PROM wrote Task version %d", after)
		}
		for _, typ := range []string{"QuestionnaireResponse", "Observation"} {
			if n := total(t, g.get("/fhir/"+typ+"?patient="+ref.patient, keyPRV01)); n != 2 {
				t.Errorf("%d %s resources", n, typ)
			}
		}

		// The practice's codes-only view keeps the references to the PROMs
		// and drops the free text.
		r = g.get("/fhir/Task/"+ref.task, keyA81001)
		for _, s := range []string{"husband", "Summary", "Rang her"} {
			if bytes.Contains(r.body, []byte(s)) {
				t.Errorf("the practice's view holds %q", s)
			}
		}
		task = r.json(t)
		refs := contentRefs(task)
		if refTypes(refs) != "[QuestionnaireResponse Observation QuestionnaireResponse Observation]" ||
			refs[0] != "QuestionnaireResponse/"+qr1 || refs[2] != "QuestionnaireResponse/"+qr2 {
			t.Fatalf("practice's outputs %v", refs)
		}
		for _, ref := range refs {
			doc, _ := g.read(t, "/fhir/"+ref, keyA81001)
			if str(doc, "resourceType")+"/"+str(doc, "id") != ref {
				t.Errorf("read %s: %v", ref, doc)
			}
			if r := g.get("/fhir/"+ref, keyA81002); r.status != 404 {
				t.Errorf("another practice reads %s: %d", ref, r.status)
			}
		}
		obs, _ := g.read(t, "/fhir/"+refs[1], keyA81001)
		if obs["valueQuantity"].(map[string]any)["value"].(float64) != 15.32 { // raw 14
			t.Errorf("SWEMWBS: %v", obs["valueQuantity"])
		}
		if obs, _ = g.read(t, "/fhir/"+refs[3], keyA81001); len(obs["component"].([]any)) != 4 {
			t.Errorf("ONS4: %v", obs["component"])
		}
		if n := total(t, g.get("/fhir/Observation?patient="+ref.patient, keyA81001)); n != 2 {
			t.Errorf("the practice finds %d Observations", n)
		}
	})
}

// TestConfiguredInstrument: an instrument from configuration is published,
// taken, scored by its rule and searchable like the built-in ones.
func TestConfiguredInstrument(t *testing.T) {
	const (
		url    = "https://instruments.example.org/Questionnaire/coping3"
		system = "https://instruments.example.org/CodeSystem/scores"
	)
	coping := gateway.Instrument{
		ID: "coping3", URL: url, Title: "Coping (three items)",
		Items: []gateway.Item{
			{LinkID: "sleep", Label: "Sleeping well", Min: 0, Max: 4},
			{LinkID: "money", Label: "Managing money", Min: 0, Max: 4},
			{LinkID: "people", Label: "Seeing people", Min: 0, Max: 4},
		},
		Scoring: gateway.ScoreSum,
		Codes:   []gateway.Coding{{System: system, Code: "coping3-total"}},
	}
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine, withInstrument(coping))

		// Published: by url, by id, and in the list.
		q := g.get("/fhir/Questionnaire?url="+url, keyPRV01)
		qs, _ := entries(t, q)
		if len(qs) != 1 || str(qs[0], "id") != "coping3" || str(qs[0], "url") != url {
			t.Fatalf("Questionnaire?url: %s", q.body)
		}
		read, _ := g.read(t, "/fhir/Questionnaire/coping3", keyA81001)
		if fmt.Sprint(read) != fmt.Sprint(qs[0]) {
			t.Errorf("read and search differ:\n%v\n%v", read, qs[0])
		}
		items, _ := read["item"].([]any)
		if len(items) != 3 {
			t.Fatalf("items %v", read["item"])
		}
		for i, want := range []string{"sleep", "money", "people"} {
			it := items[i].(map[string]any)
			bounds := map[string]float64{}
			for _, e := range it["extension"].([]any) {
				e := e.(map[string]any)
				bounds[e["url"].(string)] = e["valueInteger"].(float64)
			}
			if it["linkId"] != want || it["type"] != "integer" ||
				fmt.Sprint(bounds) != "map[http://hl7.org/fhir/StructureDefinition/maxValue:4 http://hl7.org/fhir/StructureDefinition/minValue:0]" {
				t.Errorf("item %d: %v", i, it)
			}
		}
		if n := total(t, g.get("/fhir/Questionnaire", keyPRV01)); n != 4 {
			t.Errorf("%d instruments published", n)
		}
		if n := total(t, g.get("/fhir/Questionnaire?_id=coping3", keyPRV01)); n != 1 {
			t.Errorf("Questionnaire?_id: %d", n)
		}

		ref := newReferral(t, g, "COPING-1")
		g.mustChange(t, ref.task, keyPRV01, setStatus("accepted"))
		answers := func(sleep, money, people int) [][2]any {
			return [][2]any{{"sleep", sleep}, {"money", money}, {"people", people}}
		}
		instrumentBody := func(canonical, authored string, a [][2]any) []byte {
			b := promResponse(ref, "coping3", authored, a)
			return bytes.Replace(b, []byte("https://fhir.spgateway.org/Questionnaire/coping3"), []byte(canonical), 1)
		}
		// Its own ranges.
		r := g.post("/fhir/QuestionnaireResponse", keyPRV01, instrumentBody(url, "2026-11-16T10:00:00Z", answers(1, 5, 0)))
		if r.status != 422 || !names(t, r, "QuestionnaireResponse.item.where(linkId='money').answer") {
			t.Errorf("answer 5: %d %s", r.status, r.body)
		}
		// Scored by the sum, with its own code.
		g.recordPROM(t, keyPRV01, instrumentBody(url, "2026-11-16T10:00:00Z", answers(1, 4, 0)))
		g.recordPROM(t, keyPRV01, instrumentBody(url+"|1.0", "2026-11-17T10:00:00Z", answers(4, 4, 4)))
		g.recordPROM(t, keyPRV01, promResponse(ref, "swemwbs", "2026-11-17T11:00:00Z", swemwbsAnswers(3, 3, 3, 3, 3, 3, 3)))

		task, _ := g.read(t, "/fhir/Task/"+ref.task, keyPRV01)
		refs := contentRefs(task)
		if len(refs) != 6 || businessStatus(task) != "follow-up-prom-complete" {
			t.Fatalf("outputs %v, business status %q", refs, businessStatus(task))
		}
		for i, want := range []float64{5, 12} {
			obs, _ := g.read(t, "/fhir/"+refs[2*i+1], keyA81001)
			if obs["valueQuantity"].(map[string]any)["value"].(float64) != want || obs["component"] != nil ||
				str(obs, "code", "coding", 0, "system") != system || str(obs, "code", "coding", 0, "code") != "coping3-total" ||
				!strings.HasPrefix(str(obs, "code", "text"), "Coping (three items)") {
				t.Errorf("observation %d: %v", i, obs)
			}
		}

		for _, c := range []struct {
			path string
			want int
		}{
			{"/fhir/QuestionnaireResponse?questionnaire=Questionnaire/coping3", 2},
			{"/fhir/QuestionnaireResponse?questionnaire=coping3", 2},
			{"/fhir/QuestionnaireResponse?questionnaire=" + url, 2},
			{"/fhir/QuestionnaireResponse?questionnaire=Questionnaire/swemwbs", 1},
			{"/fhir/QuestionnaireResponse", 3},
			{"/fhir/Observation?code=" + system + "|coping3-total", 2},
			{"/fhir/Observation?code=coping3-total", 2},
			{"/fhir/Observation?code=http://snomed.info/sct|coping3-total", 0},
			{"/fhir/Observation?code=http://snomed.info/sct|718466001", 1},
			{"/fhir/Observation", 3},
		} {
			for _, key := range []string{keyPRV01, keyA81001} {
				if n := total(t, g.get(c.path, key)); n != c.want {
					t.Errorf("%s as %s: %d, want %d", c.path, key, n, c.want)
				}
			}
		}
	})
}

// TestPROMBaselineIsEarliestAnswered: a form answered earlier but entered
// later becomes the baseline, and the schedule runs from it.
func TestPROMBaselineIsEarliestAnswered(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		clock := &handClock{now: time.Date(2026, 10, 1, 9, 0, 0, 0, time.UTC)}
		g := newGateway(t, engine, withNow(clock.Now))
		ref := newReferral(t, g, "EARLY-1")
		g.mustChange(t, ref.task, keyPRV01, setStatus("accepted"))
		clock.set(time.Date(2026, 10, 21, 9, 0, 0, 0, time.UTC))
		g.recordPROM(t, keyPRV01, promResponse(ref, "swemwbs", "2026-10-20T10:00:00Z", swemwbsAnswers(3, 3, 3, 3, 3, 3, 3)))
		task, _ := g.read(t, "/fhir/Task/"+ref.task, keyPRV01)
		if due, _ := promDue(t, task); !due.Equal(time.Date(2027, 4, 20, 10, 0, 0, 0, time.UTC)) {
			t.Fatalf("after the first form: due %v", due)
		}
		// The form answered on 13 October is entered a week late.
		g.recordPROM(t, keyPRV01, promResponse(ref, "swemwbs", "2026-10-13T10:00:00Z", swemwbsAnswers(2, 2, 2, 2, 2, 2, 2)))
		task, _ = g.read(t, "/fhir/Task/"+ref.task, keyPRV01)
		// Two PROMs done, baseline 13 October: the next is 12 months on.
		if due, _ := promDue(t, task); !due.Equal(time.Date(2027, 10, 13, 10, 0, 0, 0, time.UTC)) {
			t.Errorf("after the earlier form: due %v, want 2027-10-13T10:00Z", due)
		}
	})
}
