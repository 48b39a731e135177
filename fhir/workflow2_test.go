package fhir_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// weakETag is the ETag of a version, W/"n".
func weakETag(version int) string { return fmt.Sprintf(`W/"%d"`, version) }

// patchTask sends a JSON Patch of the Task with If-Match: W/"version" (none
// when version is 0). ops is marshalled unless it is already raw bytes.
func (g *testGateway) patchTask(t testing.TB, id, key string, version int, ops any, headers ...string) response {
	t.Helper()
	b, ok := ops.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(ops); err != nil {
			t.Fatal(err)
		}
	}
	headers = append([]string{"Content-Type", "application/json-patch+json"}, headers...)
	if version > 0 {
		headers = append(headers, "If-Match", weakETag(version))
	}
	return g.do(http.MethodPatch, "/fhir/Task/"+id, key, b, headers...)
}

// op is one JSON Patch operation.
func op(operation, path string, value any) map[string]any {
	o := map[string]any{"op": operation, "path": path}
	if value != nil {
		o["value"] = value
	}
	return o
}

// versionOf is the meta.versionId of a resource as a number (0 if none).
func versionOf(res map[string]any) int {
	n, _ := strconv.Atoi(str(res, "meta", "versionId"))
	return n
}

// sameJSON reports whether two documents are equal as JSON values.
func sameJSON(t testing.TB, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	return reflect.DeepEqual(x, y)
}

// isConflict reports whether r is a 412 whose OperationOutcome has only
// conflict issues.
func isConflict(t testing.TB, r response) bool {
	t.Helper()
	if r.status != http.StatusPreconditionFailed {
		return false
	}
	issues := outcomeIssues(t, r)
	for _, is := range issues {
		if is["code"] != "conflict" {
			return false
		}
	}
	return len(issues) > 0
}

// race sends every request at once, as far as goroutines allow, and
// returns the responses in order.
func race(n int, send func(i int) response) []response {
	out := make([]response, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			out[i] = send(i)
		})
	}
	close(start)
	wg.Wait()
	return out
}

// oneWinner checks that exactly one of the raced responses is a 200 at
// version want, and every other one a 412 conflict. It returns the winner.
func oneWinner(t testing.TB, results []response, want int) int {
	t.Helper()
	winner := -1
	for i, r := range results {
		switch {
		case r.status == http.StatusOK:
			if winner >= 0 {
				t.Errorf("racers %d and %d both won", winner, i)
			}
			winner = i
			if got := versionOf(r.json(t)); got != want || r.header.Get("ETag") != weakETag(want) {
				t.Errorf("winner %d wrote version %d (ETag %s), want %d", i, got, r.header.Get("ETag"), want)
			}
		case !isConflict(t, r):
			t.Errorf("racer %d: %d %s, want 200 or 412 conflict", i, r.status, r.body)
		}
	}
	if winner < 0 {
		t.Fatalf("no racer won: %v", results)
	}
	return winner
}

// TestConcurrentTaskUpdates: updates sent at once with the same If-Match
// are decided one at a time: one is stored, the others are told the Task
// changed, and nothing of theirs is stored or merged.
func TestConcurrentTaskUpdates(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		ref := newReferral(t, g, "RACE-1")
		path := "/fhir/Task/" + ref.task
		const racers = 8
		edits := []func(task map[string]any, round, i int){
			// Notes alone.
			func(task map[string]any, round, i int) {
				task["note"] = []any{map[string]any{"text": fmt.Sprintf("round %d racer %d", round, i)}}
			},
			// Business status and a note.
			func(task map[string]any, round, i int) {
				task["businessStatus"] = coded(businessStatusSystem, []string{"awaiting-contact", "contact-attempted"}[i%2], "")
				task["note"] = []any{map[string]any{"text": fmt.Sprintf("round %d racer %d", round, i)}}
			},
			// Status: half accept, half only receive.
			func(task map[string]any, round, i int) {
				task["status"] = []string{"accepted", "received"}[i%2]
				task["note"] = []any{map[string]any{"text": fmt.Sprintf("round %d racer %d", round, i)}}
			},
		}
		for round, edit := range edits {
			task, v := g.read(t, path, keyPRV01)
			bodies := make([][]byte, racers)
			for i := range racers {
				doc := clone(task)
				edit(doc, round, i)
				bodies[i], _ = json.Marshal(doc)
			}
			results := race(racers, func(i int) response {
				return g.do(http.MethodPut, path, keyPRV01, bodies[i], "If-Match", weakETag(v))
			})
			w := oneWinner(t, results, v+1)
			stored, sv := g.read(t, path, keyPRV01)
			if sv != v+1 {
				t.Fatalf("round %d: the Task is at version %d, want %d", round, sv, v+1)
			}
			want := clone(task)
			edit(want, round, w)
			for _, el := range []string{"status", "businessStatus", "note"} {
				if !reflect.DeepEqual(stored[el], want[el]) {
					t.Errorf("round %d: stored %s %v, the winner sent %v", round, el, stored[el], want[el])
				}
			}
			if !sameJSON(t, results[w].body, g.get(path, keyPRV01).body) {
				t.Errorf("round %d: the stored Task is not the one the winner was answered with", round)
			}
		}
		if _, v := g.read(t, path, keyPRV01); v != 1+len(edits) {
			t.Errorf("%d rounds wrote up to version %d", len(edits), v)
		}

		// Two patches of the same version: one applies, the other is
		// refused whole.
		for round := range 3 {
			task, v := g.read(t, path, keyPRV01)
			results := race(2, func(i int) response {
				return g.patchTask(t, ref.task, keyPRV01, v, []any{
					op("add", "/note", []any{map[string]any{"text": fmt.Sprintf("patch round %d racer %d", round, i)}}),
					op("add", "/businessStatus", coded(businessStatusSystem, []string{"awaiting-contact", "contact-attempted"}[i], "")),
				})
			})
			w := oneWinner(t, results, v+1)
			stored, sv := g.read(t, path, keyPRV01)
			if sv != v+1 {
				t.Fatalf("patch round %d: version %d, want %d", round, sv, v+1)
			}
			if got := str(stored, "note", 0, "text"); got != fmt.Sprintf("patch round %d racer %d", round, w) || len(stored["note"].([]any)) != 1 {
				t.Errorf("patch round %d: notes %v, winner %d", round, stored["note"], w)
			}
			if got := str(stored, "businessStatus", "coding", 0, "code"); got != []string{"awaiting-contact", "contact-attempted"}[w] {
				t.Errorf("patch round %d: businessStatus %s, winner %d", round, got, w)
			}
			if stored["status"] != task["status"] {
				t.Errorf("patch round %d: status %v, was %v", round, stored["status"], task["status"])
			}
		}
	})
}

// TestTaskHistory: every version of a Task, newest first, with who wrote
// it, paged without repeats or gaps, and for its parties only.
func TestTaskHistory(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		ref := newReferral(t, g, "HIST-1")
		path := "/fhir/Task/" + ref.task

		// What the provider saw at each version, and who wrote it.
		first, _ := g.read(t, path, keyPRV01)
		seen := []map[string]any{nil, first}
		by := []string{"", "Organization/A81001"}
		for _, edit := range []func(map[string]any){
			setStatus("received"),
			setStatus("accepted"),
			func(task map[string]any) {
				task["status"] = "in-progress"
				task["businessStatus"] = coded(businessStatusSystem, "first-contact-made", "")
			},
			func(task map[string]any) { task["note"] = []any{map[string]any{"text": "Walking group on Tuesdays."}} },
		} {
			seen = append(seen, g.mustChange(t, ref.task, keyPRV01, edit))
			by = append(by, "Organization/PRV01")
		}
		g.mustChange(t, ref.task, keyA81001, setStatusWithReason("cancelled", "referred-elsewhere", "Seen by the practice team"))
		last, n := g.read(t, path, keyPRV01)
		seen = append(seen, last)
		by = append(by, "Organization/A81001")
		if n != 6 {
			t.Fatalf("the Task is at version %d, want 6", n)
		}
		statuses := []string{"", "requested", "received", "accepted", "in-progress", "in-progress", "cancelled"}

		r := g.get(path+"/_history", keyPRV01)
		if r.status != 200 || str(r.json(t), "type") != "history" {
			t.Fatalf("history: %d %s", r.status, r.body)
		}
		list, _ := r.json(t)["entry"].([]any)
		if len(list) != n {
			t.Fatalf("%d history entries, want %d", len(list), n)
		}
		for i, e := range list {
			v := n - i // newest first
			res, _ := e.(map[string]any)["resource"].(map[string]any)
			if versionOf(res) != v {
				t.Errorf("entry %d is version %d, want %d", i, versionOf(res), v)
				continue
			}
			if str(e, "fullUrl") != g.base+"/fhir/Task/"+ref.task {
				t.Errorf("version %d: fullUrl %s", v, str(e, "fullUrl"))
			}
			method, url, status := "PUT", "Task/"+ref.task, "200 OK"
			if v == 1 {
				method, url, status = "POST", "Task", "201 Created"
			}
			if str(e, "request", "method") != method || str(e, "request", "url") != url {
				t.Errorf("version %d: request %v", v, e.(map[string]any)["request"])
			}
			if str(e, "response", "status") != status || str(e, "response", "etag") != weakETag(v) ||
				str(e, "response", "lastModified") != str(res, "meta", "lastUpdated") {
				t.Errorf("version %d: response %v, lastUpdated %s", v, e.(map[string]any)["response"], str(res, "meta", "lastUpdated"))
			}
			if res["status"] != statuses[v] {
				t.Errorf("version %d: status %v, want %s", v, res["status"], statuses[v])
			}
			if got := str(res, "meta", "extension", 0, "valueReference", "reference"); got != by[v] ||
				str(res, "meta", "extension", 0, "url") != "https://fhir.spgateway.org/StructureDefinition/changed-by" {
				t.Errorf("version %d: changed by %v, want %s", v, res["meta"], by[v])
			}
			if !reflect.DeepEqual(res, seen[v]) {
				t.Errorf("version %d in the history differs from what was written:\n got %v\nwant %v", v, res, seen[v])
			}
			vr := g.get(fmt.Sprintf("%s/_history/%d", path, v), keyPRV01)
			if vr.status != 200 || !reflect.DeepEqual(vr.json(t), res) || vr.header.Get("ETag") != weakETag(v) {
				t.Errorf("vread %d: %d %s", v, vr.status, vr.body)
			}
		}
		// Each version's lastUpdated is later than the one before.
		for i := 1; i < len(list); i++ {
			newer, older := str(list[i-1], "resource", "meta", "lastUpdated"), str(list[i], "resource", "meta", "lastUpdated")
			if newer <= older {
				t.Errorf("lastUpdated %s of a newer version is not after %s", newer, older)
			}
		}

		// Pages of two: every version once, in order.
		var versions []int
		pages := 0
		for next := path + "/_history?_count=2"; next != ""; pages++ {
			r := g.get(next, keyPRV01)
			if r.status != 200 {
				t.Fatalf("%s: %d %s", next, r.status, r.body)
			}
			res, _ := entries(t, r)
			if len(res) > 2 {
				t.Errorf("%d entries on a page of 2", len(res))
			}
			for _, x := range res {
				versions = append(versions, versionOf(x))
			}
			next = link(t, r, "next")
			if next != "" && !strings.Contains(next, "_before=") {
				t.Errorf("next link without _before: %s", next)
			}
			next = strings.TrimPrefix(next, g.base)
			if pages > n {
				t.Fatalf("history pages do not end")
			}
		}
		if fmt.Sprint(versions) != "[6 5 4 3 2 1]" || pages != 3 {
			t.Errorf("paged history: versions %v in %d pages", versions, pages)
		}

		// The practice sees the same versions; nobody else sees any.
		if r := g.get(path+"/_history", keyA81001); r.status != 200 || len(r.json(t)["entry"].([]any)) != n {
			t.Errorf("practice's history: %d %s", r.status, r.body)
		}
		for _, key := range []string{keyA81002, keyPRV02} {
			if r := g.get(path+"/_history", key); r.status != 404 {
				t.Errorf("history for a stranger: %d %s", r.status, r.body)
			}
			if r := g.get(path+"/_history/1", key); r.status != 404 {
				t.Errorf("vread for a stranger: %d %s", r.status, r.body)
			}
		}

		// The cancellation revoked the ServiceRequest: two versions.
		r = g.get("/fhir/ServiceRequest/"+ref.request+"/_history", keyA81001)
		srs, _ := entries(t, r)
		if r.status != 200 || len(srs) != 2 || srs[0]["status"] != "revoked" || versionOf(srs[0]) != 2 ||
			srs[1]["status"] != "active" || versionOf(srs[1]) != 1 {
			t.Fatalf("ServiceRequest history: %d %s", r.status, r.body)
		}
		if str(srs[0], "meta", "extension", 0, "valueReference", "reference") != "Organization/A81001" {
			t.Errorf("revoked by %v", srs[0]["meta"])
		}
	})
}

// TestConditionalRead: a client that has the current version is told so
// (304) instead of being sent it again.
func TestConditionalRead(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		ref := newReferral(t, g, "COND-1")
		path := "/fhir/Task/" + ref.task
		get := func(headers ...string) response { return g.do(http.MethodGet, path, keyA81001, nil, headers...) }
		notModified := func(what string, r response, version int) {
			t.Helper()
			if r.status != 304 || len(r.body) != 0 || r.header.Get("ETag") != weakETag(version) {
				t.Errorf("%s: %d ETag %s %s, want 304 with no body", what, r.status, r.header.Get("ETag"), r.body)
			}
		}
		fresh := func(what string, r response, version int) {
			t.Helper()
			if r.status != 200 || r.header.Get("ETag") != weakETag(version) || versionOf(r.json(t)) != version {
				t.Errorf("%s: %d ETag %s, want 200 with version %d", what, r.status, r.header.Get("ETag"), version)
			}
		}

		notModified("If-None-Match the current version", get("If-None-Match", `W/"1"`), 1)
		notModified("strong form", get("If-None-Match", `"1"`), 1)
		fresh("If-None-Match another version", get("If-None-Match", `W/"2"`), 1)
		if r := g.do(http.MethodGet, path, keyA81002, nil, "If-None-Match", `W/"1"`); r.status != 404 {
			t.Errorf("a stranger's conditional read: %d", r.status)
		}

		g.mustChange(t, ref.task, keyPRV01, setStatus("accepted"))
		fresh("after an update", get("If-None-Match", `W/"1"`), 2)
		notModified("a list naming the current version", get("If-None-Match", `W/"7", W/"2"`), 2)
		fresh("a list naming others", get("If-None-Match", `W/"7", W/"1"`), 2)

		r := get()
		lastUpdated, err := time.Parse(time.RFC3339Nano, str(r.json(t), "meta", "lastUpdated"))
		if err != nil {
			t.Fatal(err)
		}
		if lm, err := http.ParseTime(r.header.Get("Last-Modified")); err != nil || !lm.Equal(lastUpdated.Truncate(time.Second)) {
			t.Errorf("Last-Modified %q for lastUpdated %s", r.header.Get("Last-Modified"), lastUpdated)
		}
		httpDate := func(t time.Time) string { return t.UTC().Format(http.TimeFormat) }
		notModified("If-Modified-Since after the change", get("If-Modified-Since", httpDate(lastUpdated.Add(time.Second))), 2)
		notModified("If-Modified-Since its Last-Modified", get("If-Modified-Since", r.header.Get("Last-Modified")), 2)
		fresh("If-Modified-Since before the change", get("If-Modified-Since", httpDate(lastUpdated.Add(-time.Second))), 2)

		// If-None-Match decides when both are sent.
		fresh("stale If-None-Match, recent If-Modified-Since",
			get("If-None-Match", `W/"1"`, "If-Modified-Since", httpDate(lastUpdated.Add(time.Hour))), 2)
		notModified("current If-None-Match, old If-Modified-Since",
			get("If-None-Match", `W/"2"`, "If-Modified-Since", httpDate(lastUpdated.Add(-time.Hour))), 2)
	})
}

// TestTaskPatch: a JSON Patch is an update like a PUT, with the same rules.
func TestTaskPatch(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		ref := newReferral(t, g, "PATCH-1")
		path := "/fhir/Task/" + ref.task

		r := g.patchTask(t, ref.task, keyPRV01, 1, []any{op("replace", "/status", "accepted")})
		if r.status != 200 || str(r.json(t), "status") != "accepted" || versionOf(r.json(t)) != 2 || r.header.Get("ETag") != `W/"2"` {
			t.Fatalf("accept: %d %s", r.status, r.body)
		}
		if r := g.patchTask(t, ref.task, keyPRV01, 2, []any{op("replace", "/status", "completed")}); r.status != 409 || !names(t, r, "Task.status") {
			t.Errorf("accepted to completed: %d %s", r.status, r.body)
		}
		r = g.patchTask(t, ref.task, keyPRV01, 2, []any{op("add", "/businessStatus", coded(businessStatusSystem, "first-contact-made", ""))})
		if r.status != 200 || versionOf(r.json(t)) != 3 || fmt.Sprint(outcomes(r.json(t))) != "[1362931000000106]" {
			t.Fatalf("first contact: %d %s", r.status, r.body)
		}

		cases := []struct {
			name    string
			key     string
			version int
			body    any
			headers []string
			status  int
			code    string // issue code
			expr    string
		}{
			{"failing test", keyPRV01, 3, []any{op("test", "/status", "requested"), op("replace", "/status", "in-progress")}, nil, 422, "invariant", ""},
			{"not an array", keyPRV01, 3, op("replace", "/status", "in-progress"), nil, 400, "invalid", ""},
			{"not JSON", keyPRV01, 3, []byte(`[{"op":"replace",`), nil, 400, "invalid", ""},
			{"FHIR JSON", keyPRV01, 3, []any{op("replace", "/status", "in-progress")}, []string{"Content-Type", "application/fhir+json"}, 415, "not-supported", ""},
			{"no If-Match", keyPRV01, 0, []any{op("replace", "/status", "in-progress")}, nil, 428, "required", ""},
			{"stale If-Match", keyPRV01, 2, []any{op("replace", "/status", "in-progress")}, nil, 412, "conflict", ""},
			{"future If-Match", keyPRV01, 4, []any{op("replace", "/status", "in-progress")}, nil, 412, "conflict", ""},
			{"provider changes for", keyPRV01, 3, []any{op("replace", "/for", map[string]any{"reference": "Patient/someone-else"})}, nil, 403, "business-rule", "Task.for"},
			{"provider removes status", keyPRV01, 3, []any{op("remove", "/status", nil)}, nil, 422, "", "Task.status"},
			{"patch changes id", keyPRV01, 3, []any{op("replace", "/id", "another")}, nil, 400, "", "Task.id"},
			{"practice accepts", keyA81001, 3, []any{op("replace", "/status", "in-progress")}, nil, 403, "business-rule", "Task.status"},
			{"another provider", keyPRV02, 3, []any{op("replace", "/status", "in-progress")}, nil, 404, "not-found", ""},
			{"another practice", keyA81002, 3, []any{op("replace", "/status", "cancelled")}, nil, 404, "not-found", ""},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				r := g.patchTask(t, ref.task, c.key, c.version, c.body, c.headers...)
				if r.status != c.status {
					t.Fatalf("%d, want %d: %s", r.status, c.status, r.body)
				}
				issues := outcomeIssues(t, r)
				if c.code != "" && issues[0]["code"] != c.code {
					t.Errorf("issue code %v, want %s: %s", issues[0]["code"], c.code, r.body)
				}
				if c.expr != "" && !names(t, r, c.expr) {
					t.Errorf("no issue names %s: %s", c.expr, r.body)
				}
			})
		}
		if _, v := g.read(t, path, keyPRV01); v != 3 {
			t.Fatalf("refused patches wrote version %d", v)
		}

		// The practice cancels by patch; the referral is revoked with it.
		r = g.patchTask(t, ref.task, keyA81001, 3, []any{
			op("replace", "/status", "cancelled"),
			op("add", "/statusReason", coded(statusReasonSystem, "duplicate", "Sent twice")),
		})
		if r.status != 200 || str(r.json(t), "status") != "cancelled" || versionOf(r.json(t)) != 4 ||
			str(r.json(t), "statusReason", "coding", 0, "code") != "duplicate" {
			t.Fatalf("practice cancels: %d %s", r.status, r.body)
		}
		sr, sv := g.read(t, "/fhir/ServiceRequest/"+ref.request, keyA81001)
		if sr["status"] != "revoked" || sv != 2 {
			t.Errorf("ServiceRequest after the patch: version %d, %v", sv, sr["status"])
		}
		if task, _ := g.read(t, path, keyPRV01); fmt.Sprint(outcomes(task)) != "[1362931000000106]" || task["status"] != "cancelled" {
			t.Errorf("the provider's Task after cancellation: %v", task)
		}
	})
}

// pollSeen is one version of a Task as a poll returned it.
type pollSeen struct {
	id      string
	version int
	body    map[string]any
}

// TestPracticePollsEveryChangeOnce: a practice that polls for Tasks changed
// after the latest change it has seen gets every version that is current
// when it polls, once, in order, while a provider keeps working the Tasks.
//
// No change can slip between two polls. Writers take the change clock's
// lock before anything else, and each transaction stamps its versions
// (meta.lastUpdated, and Task.lastModified) with a time strictly after the
// clock's last time, under that lock. So a change committed after a poll's
// snapshot, even one committed while the poll was paging, is later than
// every version that poll saw, hence later than the poller's new T, and the
// next poll's gt T finds it. A version the poll did see is not after T, so
// no later poll returns it again.
func TestPracticePollsEveryChangeOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		for _, param := range []string{"_lastUpdated", "modified"} {
			t.Run(param, func(t *testing.T) { pollWhileWorked(t, engine, param) })
		}
	})
}

func pollWhileWorked(t *testing.T, engine, param string) {
	g := newGateway(t, engine)
	const tasks = 10
	refer(t, g, "POLL", tasks)
	all, _ := pageAll(t, g, "/fhir/Task?_count=500", keyPRV01, nil)
	if len(all) != tasks {
		t.Fatalf("%d tasks", len(all))
	}

	// Link workers of the provider (goroutines) work the Tasks at once,
	// each taking every Task one step further in turn, from a different
	// Task on, so they often change the same Task together (and retry on
	// 412); one of them also sends a new referral now and then. Each write
	// is counted and signalled, so the poller can wait for one.
	const workers, referrals = 3, 3
	var (
		wg              sync.WaitGroup
		writes, retries atomic.Int64
		wrote           = make(chan struct{}, 1)
		done            = make(chan struct{})
	)
	written := func() {
		writes.Add(1)
		select {
		case wrote <- struct{}{}:
		default: // a signal is pending already
		}
	}
	for w := range workers {
		wg.Go(func() {
			for round := 0; ; round++ {
				moved := false
				for i := range all {
					ok, did := advanceTask(t, g, all[(i+w*tasks/workers)%tasks], &retries)
					if !ok {
						return
					}
					if did {
						moved = true
						written()
					}
				}
				if w == 0 && round < referrals {
					r := g.post("/fhir", keyA81001, referralBundle(t, fmt.Sprintf("POLL-NEW-%d", round), ""))
					if r.status != 200 {
						t.Errorf("new referral: %d %s", r.status, r.body)
						return
					}
					moved = true
					written()
				}
				if !moved {
					return
				}
			}
		})
	}
	go func() { wg.Wait(); close(done) }()
	defer func() { <-done }() // a failed poll still waits for the writers
	// waitForWrite returns once more than after writes have completed, or
	// the writers are done.
	waitForWrite := func(after int64) {
		for writes.Load() <= after {
			select {
			case <-wrote:
			case <-done:
				return
			}
		}
	}

	var seen []pollSeen
	since := "2000-01-01T00:00:00.000000Z"
	polls, paged := 0, 0
	poll := func() {
		polls++
		latest := since
		next := "/fhir/Task?requester=Organization/A81001&" + param + "=gt" + url.QueryEscape(since) + "&_count=5"
		for next != "" {
			before := writes.Load()
			r := g.get(next, keyA81001)
			if r.status != 200 {
				t.Fatalf("poll %s: %d %s", next, r.status, r.body)
			}
			res, modes := entries(t, r)
			for i, x := range res {
				if modes[i] != "match" {
					continue
				}
				seen = append(seen, pollSeen{str(x, "id"), versionOf(x), x})
				stamp := str(x, "meta", "lastUpdated")
				if param == "modified" {
					stamp = str(x, "lastModified")
				}
				if stamp <= since {
					t.Errorf("%s=gt%s returned Task/%s at %s", param, since, str(x, "id"), stamp)
				}
				if stamp > latest {
					latest = stamp
				}
			}
			next = strings.TrimPrefix(link(t, r, "next"), g.base)
			if next != "" {
				// Let a write complete before the next page: the later
				// pages keep the first page's snapshot and do not show
				// it, so the next poll must.
				paged++
				waitForWrite(before)
			}
		}
		since = latest
	}
	// Poll until the writers are done: at once, or after a few more writes
	// (0 to 7 in turn), so that some polls find more than a page.
	for i := 0; ; i++ {
		select {
		case <-done:
		default:
			waitForWrite(writes.Load() + int64(i%8) - 1)
			poll()
			continue
		}
		break
	}
	poll() // after the last write
	if t.Failed() {
		return
	}

	// Every version once, each Task's in increasing order.
	last := map[string]int{}
	type idVersion struct {
		id      string
		version int
	}
	once := map[idVersion]bool{}
	for _, s := range seen {
		key := idVersion{s.id, s.version}
		if once[key] {
			t.Errorf("Task/%s version %d seen twice", s.id, s.version)
		}
		once[key] = true
		if s.version <= last[s.id] {
			t.Errorf("Task/%s: version %d seen after version %d", s.id, s.version, last[s.id])
		}
		last[s.id] = s.version
		// It really was that version.
		r := g.get(fmt.Sprintf("/fhir/Task/%s/_history/%d", s.id, s.version), keyA81001)
		if r.status != 200 || !reflect.DeepEqual(r.json(t), s.body) {
			t.Errorf("Task/%s version %d as polled differs from its vread: %d\n got %v\nvread %s", s.id, s.version, r.status, s.body, r.body)
		}
		if s.body["lastModified"] != str(s.body, "meta", "lastUpdated") {
			t.Errorf("Task/%s version %d: lastModified %v, lastUpdated %s", s.id, s.version, s.body["lastModified"], str(s.body, "meta", "lastUpdated"))
		}
	}
	// The poller ends up with the current version of every Task.
	now, _ := pageAll(t, g, "/fhir/Task?requester=Organization/A81001&_count=500", keyA81001, nil)
	if len(now) != tasks+referrals {
		t.Errorf("%d Tasks in the end, want %d", len(now), tasks+referrals)
	}
	if want := tasks*6 + referrals; writes.Load() != int64(want) {
		t.Errorf("%d writes, want %d", writes.Load(), want)
	}
	worked := map[string]bool{}
	for _, id := range all {
		worked[id] = true
	}
	for _, id := range now {
		task, v := g.read(t, "/fhir/Task/"+id, keyA81001)
		if want := map[bool]string{true: "completed", false: "requested"}[worked[id]]; task["status"] != want {
			t.Errorf("Task/%s ends %v, want %s", id, task["status"], want)
		}
		if last[id] != v {
			t.Errorf("Task/%s is at version %d; the poller last saw version %d", id, v, last[id])
		}
	}
	t.Logf("%d writes (%d retried after 412), %d polls following %d next links, %d versions seen",
		writes.Load(), retries.Load(), polls, paged, len(seen))
}

// nextStep is the provider's next change of a Task on its way to
// completed, or nil when it is there.
func nextStep(task map[string]any) func(map[string]any) {
	switch task["status"] {
	case "requested":
		return setStatus("received")
	case "received":
		return setStatus("accepted")
	case "accepted":
		return func(task map[string]any) {
			task["status"] = "in-progress"
			task["businessStatus"] = coded(businessStatusSystem, "first-contact-made", "")
		}
	case "in-progress":
		switch {
		case task["note"] == nil:
			return func(task map[string]any) { task["note"] = []any{map[string]any{"text": "Met at the library."}} }
		case str(task, "businessStatus", "coding", 0, "code") != "baseline-prom-complete":
			return func(task map[string]any) {
				task["businessStatus"] = coded(businessStatusSystem, "baseline-prom-complete", "")
			}
		}
		return setStatus("completed")
	}
	return nil
}

// advanceTask takes the Task one step further as the provider, reading it
// again (and counting a retry) while someone else's change gets in first.
// It reports whether it
// went without error and whether it changed the Task, and reports errors
// with t.Errorf, so it may run in another goroutine.
func advanceTask(t testing.TB, g *testGateway, id string, retries *atomic.Int64) (ok, changed bool) {
	path := "/fhir/Task/" + id
	for range 20 {
		r := g.get(path, keyPRV01)
		if r.status != 200 {
			t.Errorf("read %s: %d %s", path, r.status, r.body)
			return false, false
		}
		task := r.json(t)
		step := nextStep(task)
		if step == nil {
			return true, false
		}
		step(task)
		body, _ := json.Marshal(task)
		r = g.do(http.MethodPut, path, keyPRV01, body, "If-Match", r.header.Get("ETag"))
		switch r.status {
		case 200:
			return true, true
		case 412:
			retries.Add(1)
			continue
		default:
			t.Errorf("update %s: %d %s", path, r.status, r.body)
			return false, false
		}
	}
	t.Errorf("update %s: still stale after 20 tries", path)
	return false, false
}

// TestTaskAfterFinalStatus: once completed, rejected, failed or cancelled,
// a Task does not change, whoever asks and however.
func TestTaskAfterFinalStatus(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		finals := map[string][]struct {
			key  string
			edit func(map[string]any)
		}{
			"completed": {
				{keyPRV01, setStatus("accepted")},
				{keyPRV01, setStatus("in-progress")},
				{keyPRV01, setStatus("completed")},
			},
			"rejected": {{keyPRV01, setStatusWithReason("rejected", "out-of-area", "")}},
			"failed": {
				{keyPRV01, setStatus("accepted")},
				{keyPRV01, setStatusWithReason("failed", "unable-to-contact", "")},
			},
			"cancelled": {{keyA81001, setStatusWithReason("cancelled", "duplicate", "")}},
		}
		for final, steps := range finals {
			t.Run(final, func(t *testing.T) {
				ref := newReferral(t, g, "FINAL-"+final)
				path := "/fhir/Task/" + ref.task
				for _, s := range steps {
					g.mustChange(t, ref.task, s.key, s.edit)
				}
				task, v := g.read(t, path, keyPRV01)
				if task["status"] != final {
					t.Fatalf("status %v, want %s", task["status"], final)
				}
				refused := func(what string, r response) {
					t.Helper()
					if r.status != 409 || !names(t, r, "Task.status") || outcomeIssues(t, r)[0]["code"] != "business-rule" {
						t.Errorf("%s: %d %s, want 409 naming Task.status", what, r.status, r.body)
					}
				}
				noted := clone(task)
				noted["note"] = []any{map[string]any{"text": "late"}}
				refused("PUT a note", g.put(t, path, keyPRV01, v, noted))
				refused("PUT the same", g.put(t, path, keyPRV01, v, task))
				refused("PATCH a note", g.patchTask(t, ref.task, keyPRV01, v, []any{op("add", "/note", noted["note"])}))
				refused("practice cancels", g.change(t, ref.task, keyA81001, setStatusWithReason("cancelled", "other", "changed our minds")))
				refused("practice patches", g.patchTask(t, ref.task, keyA81001, v, []any{
					op("replace", "/status", "cancelled"), op("add", "/statusReason", coded(statusReasonSystem, "duplicate", "")),
				}))
				if _, after := g.read(t, path, keyPRV01); after != v {
					t.Errorf("refused changes wrote version %d", after)
				}
			})
		}
	})
}
