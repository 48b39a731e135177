package fhir_test

// Several gateway processes on one database behave like one. Each test
// starts two complete gateways (e2eStart: its own store.Open, Service, FHIR
// server, httptest server and outbox worker) on the same database — the same
// PostgreSQL schema, or the same SQLite file — and drives them at once.

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// startReplicas starts two gateway processes on one new database of
// engine. Replica i delivers PRV01's case records to webhookURL+"/"+i, so
// a receiver can tell which replica sent what.
func startReplicas(t *testing.T, engine, webhookURL string, o e2eOptions) [2]*e2eGateway {
	t.Helper()
	cfg := storetest.Config(t, engine)
	var gs [2]*e2eGateway
	for i := range gs {
		o.webhookURL = fmt.Sprintf("%s/%d", webhookURL, i)
		gs[i] = e2eStart(t, cfg, o)
	}
	return gs
}

// TestReplicasConditionalCreate: one referral sent many times at once,
// alternately to each replica, as a transaction Bundle and as a
// ServiceRequest with If-None-Exist, is stored once: every answer names the
// same ServiceRequest, one of them as created.
func TestReplicasConditionalCreate(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		rcv := e2eNewReceiver(t, true, e2eOK)
		gs := startReplicas(t, engine, rcv.URL, e2eOptions{timeout: 5 * time.Second, lease: 10 * time.Second})
		const id = "REPLICA-CC-1"
		bundle := referralBundle(t, id, "9000000009")
		single := bytes.ReplaceAll(fixture(t, "service-request-contained-patient.json"), []byte("SP-2026-000124"), []byte(id))
		cond := "identifier=https://practice-a81001.example.org/referrals|" + id
		// Two processes writing one SQLite file at once stall for seconds
		// (8 such referrals took over a minute, 4 about five seconds): the
		// SQLite run is kept short. Replicas are for PostgreSQL.
		n := 24
		if engine == store.DriverSQLite {
			n = 4
		}
		results := race(n, func(i int) response {
			g := gs[i%2]
			if i/2%2 == 0 {
				return g.post("/fhir", keyA81001, bundle)
			}
			return g.post("/fhir/ServiceRequest", keyA81001, single, "If-None-Exist", cond)
		})
		created, named := 0, map[string]bool{}
		for i, r := range results {
			var sr, status string
			if i/2%2 == 0 {
				if r.status != http.StatusOK {
					t.Errorf("Bundle %d: %d %s", i, r.status, r.body)
					continue
				}
				entries := r.json(t)["entry"].([]any)
				sr, status = strings.Split(str(entries[3], "response", "location"), "/_history")[0], str(entries[3], "response", "status")
				if status == "201 Created" {
					created++
				}
			} else {
				switch r.status {
				case http.StatusCreated:
					created++
				case http.StatusOK:
				default:
					t.Errorf("ServiceRequest %d: %d %s", i, r.status, r.body)
					continue
				}
				sr = "ServiceRequest/" + str(r.json(t), "id")
			}
			named[sr] = true
		}
		if created != 1 || len(named) != 1 {
			t.Errorf("%d answers said created, %d ServiceRequests named (%v): want 1 and 1", created, len(named), named)
		}
		for i, g := range gs {
			got := counts(t, g.testGateway, keyA81001)
			for _, typ := range []string{"ServiceRequest", "Task", "Patient"} {
				if got[typ] != 1 {
					t.Errorf("replica %d sees %d %s, want 1 (%v)", i, got[typ], typ, got)
				}
			}
		}
		// One referral, one case record for PRV01.
		gs[0].settle(t)
		if events := gs[1].events(t, gateway.OutboxDelivered); len(events) != 1 {
			t.Errorf("%d case records delivered, want 1", len(events))
		}
	})
}

// TestReplicasIfMatch: many updates of the same Task version, sent at once
// through both replicas as PUTs and as PATCHes, are decided one at a time:
// one is stored (200), every other one is told the Task changed (412), and
// the Task moves on by exactly one version each round.
func TestReplicasIfMatch(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		rcv := e2eNewReceiver(t, true, e2eOK)
		gs := startReplicas(t, engine, rcv.URL, e2eOptions{timeout: 5 * time.Second, lease: 10 * time.Second})
		ref := newReferral(t, gs[0].testGateway, "REPLICA-IM-1")
		path := "/fhir/Task/" + ref.task
		const racers, rounds = 12, 3
		start := 0
		for round := range rounds {
			task, v := gs[round%2].read(t, path, keyPRV01)
			if round == 0 {
				start = v
			}
			bodies := make([]map[string]any, racers)
			for i := range racers {
				bodies[i] = clone(task)
				bodies[i]["note"] = []any{map[string]any{"text": fmt.Sprintf("put round %d racer %d", round, i)}}
			}
			results := race(racers, func(i int) response {
				return gs[i%2].put(t, path, keyPRV01, v, bodies[i])
			})
			w := oneWinner(t, results, v+1)
			for i, g := range gs {
				stored, sv := g.read(t, path, keyPRV01)
				if sv != v+1 || str(stored, "note", 0, "text") != fmt.Sprintf("put round %d racer %d", round, w) {
					t.Errorf("round %d, replica %d: version %d note %v; want version %d from racer %d", round, i, sv, stored["note"], v+1, w)
				}
			}
		}
		for round := range rounds {
			_, v := gs[round%2].read(t, path, keyPRV01)
			results := race(racers, func(i int) response {
				return gs[i%2].patchTask(t, ref.task, keyPRV01, v, []any{
					op("add", "/note", []any{map[string]any{"text": fmt.Sprintf("patch round %d racer %d", round, i)}}),
				})
			})
			w := oneWinner(t, results, v+1)
			stored, sv := gs[(round+1)%2].read(t, path, keyPRV01)
			if sv != v+1 || str(stored, "note", 0, "text") != fmt.Sprintf("patch round %d racer %d", round, w) {
				t.Errorf("patch round %d: version %d note %v; want version %d from racer %d", round, sv, stored["note"], v+1, w)
			}
		}
		if _, v := gs[1].read(t, path, keyPRV01); v != start+2*rounds {
			t.Errorf("the Task is at version %d after %d rounds from version %d", v, 2*rounds, start)
		}
		// A stale If-Match sent to the other replica than the one that
		// wrote is refused as well.
		task, v := gs[0].read(t, path, keyPRV01)
		if r := gs[0].put(t, path, keyPRV01, v, task); r.status != http.StatusOK {
			t.Fatalf("update: %d %s", r.status, r.body)
		}
		if r := gs[1].put(t, path, keyPRV01, v, task); !isConflict(t, r) {
			t.Errorf("stale If-Match through the other replica: %d %s", r.status, r.body)
		}
	})
}

// replicaReferrals sends n referrals from A81001 at once, alternating
// between the replicas, and returns them.
func replicaReferrals(t *testing.T, gs [2]*e2eGateway, prefix string, n int) []referral {
	t.Helper()
	refs := make([]referral, n)
	var wg sync.WaitGroup
	for i := range refs {
		wg.Go(func() { refs[i] = newReferral(t, gs[i%2].testGateway, fmt.Sprintf("%s-%02d", prefix, i)) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return refs
}

// TestReplicasOutbox: both replicas' workers deliver one outbox. With a
// receiver that always answers at once, every event is delivered exactly
// once (no event claimed by both), in order per Task; the workers' counts
// add up to the events. A practice's Subscription whose endpoint fails
// while both replicas deliver to it records the outage once, and is active
// again once it recovers.
func TestReplicasOutbox(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		var mu sync.Mutex
		down := true
		hooks := e2eNewReceiver(t, false, func(int, *http.Request, []byte) int {
			mu.Lock()
			defer mu.Unlock()
			if down {
				return http.StatusServiceUnavailable
			}
			return http.StatusOK
		})
		cases := e2eNewReceiver(t, true, e2eOK)
		gs := startReplicas(t, engine, cases.URL, e2eOptions{timeout: 5 * time.Second, lease: 10 * time.Second})
		sub := e2eSubscribe(t, gs[1], hooks.URL+"/notify", "")

		refs := replicaReferrals(t, gs, "REPLICA-OB", 12)
		var wg sync.WaitGroup
		for i, ref := range refs {
			wg.Go(func() {
				gs[i%2].mustChange(t, ref.task, keyPRV01, setStatus("received"))
				gs[(i+1)%2].mustChange(t, ref.task, keyPRV01, setStatus("accepted"))
				if i%3 == 0 {
					gs[i%2].mustChange(t, ref.task, keyA81001, setStatusWithReason("cancelled", "patient-declined", ""))
				}
			})
		}
		wg.Wait()
		e2eWait(t, "the Subscription in error", func() bool {
			return e2eSubscription(t, gs[0], sub)["status"] == gateway.SubscriptionError
		})
		mu.Lock()
		down = false
		mu.Unlock()
		if d := gs[0].settle(t); d[gateway.OutboxDead] != 0 {
			t.Fatalf("dead letters: %v", d)
		}
		e2eWait(t, "the Subscription active again", func() bool {
			s := e2eSubscription(t, gs[1], sub)
			return s["status"] == gateway.SubscriptionActive && s["error"] == nil
		})

		events := gs[1].events(t, gateway.OutboxDelivered)
		toCases := e2eTo(events, "provider")
		if len(toCases) != 12+4 { // 12 referrals, 4 cancellations
			t.Errorf("%d case records delivered, want 16", len(toCases))
		}
		got := e2eCheckDeliveries(t, toCases, cases.got(), e2ePayload)
		e2eCheckWebhooks(t, toCases, got)
		for id, rs := range got {
			if len(rs) != 1 {
				t.Errorf("delivery %s reached the receiver %d times, want once (claimed twice?)", id, len(rs))
			}
		}
		byReplica := map[string]int{}
		for _, r := range cases.got() {
			byReplica[r.path]++
		}
		delivered := gs[0].worker.Metrics().Delivered.Load() + gs[1].worker.Metrics().Delivered.Load()
		if int(delivered) != len(events) {
			t.Errorf("the workers count %d deliveries, the outbox %d events", delivered, len(events))
		}
		t.Logf("case records sent per replica: %v", byReplica)

		toSub := e2eTo(events, gateway.SubscriptionDestination(sub))
		if len(toSub) != 24 { // received and accepted, 12 Tasks
			t.Errorf("%d Subscription events, want 24", len(toSub))
		}
		e2eCheckDeliveries(t, toSub, hooks.got(), func(gateway.OutboxEvent) []byte { return []byte{} })
		// The Subscription's versions: no status written twice in a row
		// (each replica heard failures, and both saw the recovery).
		var statuses []string
		err := gs[0].store.View(context.Background(), func(v gateway.View) error {
			hist, err := v.History(context.Background(), "A81001", gateway.TypeSubscription, sub, 0, 100)
			for i := len(hist) - 1; i >= 0; i-- {
				statuses = append(statuses, hist[i].Index.Status)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(statuses) < 3 || statuses[0] != gateway.SubscriptionActive || !slices.Contains(statuses, gateway.SubscriptionError) ||
			statuses[len(statuses)-1] != gateway.SubscriptionActive {
			t.Errorf("Subscription versions' statuses %v: want active, at least one error, active last", statuses)
		}
		for i := 1; i < len(statuses); i++ {
			if statuses[i] == statuses[i-1] {
				t.Errorf("Subscription versions %d and %d both %s: %v", i, i+1, statuses[i], statuses)
			}
		}
	})
}

// TestReplicasLeaseTakeover: replica 0 dies while PRV01's receiver holds one
// of its deliveries (its store closed first, so it never finishes the
// lease, though the receiver then takes the request in). Replica 1, running
// all along, takes the event over once the lease runs out: every event is
// delivered, the held ones again under the same delivery id, in order per
// Task, and the cancellations sent to replica 1 afterwards follow their
// referrals.
func TestReplicasLeaseTakeover(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		var (
			gate     = make(chan struct{}) // closed: the receiver answers
			mu       sync.Mutex
			inflight = map[string]int{} // per replica path
		)
		rcv := e2eNewReceiver(t, true, func(_ int, r *http.Request, _ []byte) int {
			mu.Lock()
			inflight[r.URL.Path]++
			mu.Unlock()
			defer func() {
				mu.Lock()
				inflight[r.URL.Path]--
				mu.Unlock()
			}()
			select {
			case <-gate:
				return http.StatusOK
			case <-r.Context().Done():
				return e2eHang
			}
		})
		holding := func(path string) bool {
			mu.Lock()
			defer mu.Unlock()
			return inflight[path] > 0
		}
		gs := startReplicas(t, engine, rcv.URL, e2eOptions{timeout: 2 * time.Second, lease: 3 * time.Second})
		// Referrals through replica 0 (whose worker they wake) until its
		// worker holds a delivery.
		var refs []referral
		for i := 0; !holding("/0"); i++ {
			if i == 20 {
				t.Fatal("replica 0 held no delivery after 20 referrals")
			}
			refs = append(refs, newReferral(t, gs[0].testGateway, fmt.Sprintf("REPLICA-LT-%02d", i)))
			time.Sleep(20 * time.Millisecond)
		}
		gs[0].crash(func() { close(gate) })
		before := rcv.got()
		var held []string
		for _, r := range before {
			if r.path == "/0" && r.accepted() {
				held = append(held, r.delivery())
			}
		}
		if len(held) == 0 {
			t.Fatal("replica 0 had no delivery taken in when it went down")
		}
		for _, ref := range refs[:min(2, len(refs))] {
			gs[1].mustChange(t, ref.task, keyA81001, setStatusWithReason("cancelled", "duplicate", ""))
		}
		if d := gs[1].settle(t); d[gateway.OutboxDead] != 0 {
			t.Fatalf("dead letters: %v", d)
		}
		events := gs[1].events(t, gateway.OutboxDelivered)
		if want := len(refs) + min(2, len(refs)); len(events) != want {
			t.Fatalf("%d events delivered, want %d", len(events), want)
		}
		receipts := rcv.got()
		e2eCheckWebhooks(t, events, e2eCheckDeliveries(t, events, receipts, e2ePayload))
		for _, id := range held {
			again := false
			for _, r := range receipts[len(before):] {
				again = again || (r.delivery() == id && r.path == "/1" && r.accepted())
			}
			if !again {
				t.Errorf("delivery %s, held by replica 0 when it went down, was not delivered again by replica 1", id)
			}
		}
	})
}

// polled is a Task version a provider's poll returned.
type polled struct {
	id      string
	version int
	at      time.Time
}

// pollOnce is one poll of PRV01's Tasks changed after since (all, when
// zero), oldest first, its pages fetched alternately from the replicas
// starting with gs[first]: one snapshot, whichever replica serves a page.
func pollOnce(t *testing.T, gs [2]*e2eGateway, first int, since time.Time) []polled {
	t.Helper()
	path := "/fhir/Task?_sort=_lastUpdated&_count=4"
	if !since.IsZero() {
		path += "&_lastUpdated=" + url.QueryEscape("gt"+gateway.FormatInstant(since))
	}
	var out []polled
	for i := first; path != ""; i++ {
		g := gs[i%2]
		r := g.get(path, keyPRV01)
		if r.status != http.StatusOK {
			t.Fatalf("poll %s: %d %s", path, r.status, r.body)
		}
		res, _ := entries(t, r)
		for _, x := range res {
			at, err := time.Parse(time.RFC3339Nano, str(x, "meta", "lastUpdated"))
			if err != nil {
				t.Fatalf("lastUpdated: %v", err)
			}
			out = append(out, polled{id: str(x, "id"), version: versionOf(x), at: at})
		}
		next := link(t, r, "next")
		path = strings.TrimPrefix(next, g.base)
		if next != "" && path == next {
			t.Fatalf("next link %q is not on the replica that served the page (%s)", next, g.base)
		}
	}
	return out
}

// TestReplicasPollingCursor: while both replicas take referrals and Task
// changes, a provider polls Task?_lastUpdated=gt{last seen}&_sort=_lastUpdated,
// alternating replicas for polls and pages. No Task version is returned
// twice, and none is skipped: for every version any replica wrote, the
// first poll that returned anything written at or after it returned that
// Task at that version or a later one. That holds only if changes become
// visible in the order of their lastUpdated, whichever process wrote them.
func TestReplicasPollingCursor(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		rcv := e2eNewReceiver(t, true, e2eOK)
		gs := startReplicas(t, engine, rcv.URL, e2eOptions{timeout: 5 * time.Second, lease: 10 * time.Second})

		var (
			writers sync.WaitGroup
			done    = make(chan struct{})
		)
		const perWriter = 5
		for w := range 2 {
			writers.Go(func() {
				for i := range perWriter {
					ref := newReferral(t, gs[(w+i)%2].testGateway, fmt.Sprintf("REPLICA-PC-%d-%d", w, i))
					gs[(w+i+1)%2].mustChange(t, ref.task, keyPRV01, setStatus("received"))
					gs[(w+i)%2].mustChange(t, ref.task, keyPRV01, setStatus("accepted"))
					gs[(w+i+1)%2].mustChange(t, ref.task, keyPRV01, func(task map[string]any) {
						task["note"] = []any{map[string]any{"text": "called"}}
					})
				}
			})
		}
		go func() {
			writers.Wait()
			close(done)
		}()

		var (
			polls [][]polled
			since time.Time
		)
		for n, last := 0, false; !last; n++ {
			if n == 2000 {
				t.Fatal("the writers did not finish within 2000 polls")
			}
			select {
			case <-done:
				last = true // one more poll, after every write
			default:
			}
			p := pollOnce(t, gs, n%2, since)
			for _, x := range p {
				if !x.at.After(since) {
					t.Errorf("poll %d returned Task %s version %d at %v, not after the cursor %v", n, x.id, x.version, x.at, since)
				}
				since = x.at
			}
			polls = append(polls, p)
		}
		if t.Failed() {
			return
		}

		seen := map[string]int{} // "id/version" → poll
		for n, p := range polls {
			for _, x := range p {
				key := fmt.Sprintf("%s/%d", x.id, x.version)
				if m, ok := seen[key]; ok {
					t.Errorf("Task %s returned by polls %d and %d", key, m, n)
				}
				seen[key] = n
			}
		}
		// Every version written, from the store's history.
		final := pollOnce(t, gs, 0, time.Time{})
		if len(final) != 2*perWriter {
			t.Fatalf("%d Tasks, want %d", len(final), 2*perWriter)
		}
		versions := 0
		for _, task := range final {
			var hist []gateway.Resource
			if err := gs[1].store.View(context.Background(), func(v gateway.View) error {
				var err error
				hist, err = v.History(context.Background(), "PRV01", gateway.TypeTask, task.id, 0, 100)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			for _, h := range hist {
				versions++
				k := slices.IndexFunc(polls, func(p []polled) bool {
					return slices.ContainsFunc(p, func(x polled) bool { return !x.at.Before(h.LastUpdated) })
				})
				if k < 0 {
					t.Errorf("Task %s version %d (%v): no poll reached it", h.ID, h.Version, h.LastUpdated)
					continue
				}
				if !slices.ContainsFunc(polls[k], func(x polled) bool { return x.id == h.ID && x.version >= h.Version }) {
					t.Errorf("Task %s version %d (%v) skipped: poll %d returned later changes but not this Task", h.ID, h.Version, h.LastUpdated, k)
				}
			}
		}
		if versions != 2*perWriter*4 {
			t.Errorf("%d Task versions written, want %d", versions, 2*perWriter*4)
		}
		t.Logf("%d polls saw %d of %d Task versions", len(polls), len(seen), versions)
	})
}

// TestReplicasPROMSweep: both replicas run the due-PROM sweep at the same
// time, several times over: each due Task is marked once (one new version,
// one event per destination), and a later sweep marks nothing.
func TestReplicasPROMSweep(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		rcv := e2eNewReceiver(t, true, e2eOK)
		hooks := e2eNewReceiver(t, false, e2eOK)
		gs := startReplicas(t, engine, rcv.URL, e2eOptions{timeout: 5 * time.Second, lease: 10 * time.Second})
		e2eSubscribe(t, gs[0], hooks.URL+"/notify", "")
		refs := replicaReferrals(t, gs, "REPLICA-PROM", 4)
		baseline := gateway.FormatInstant(time.Now().Add(-time.Hour).Truncate(time.Second))
		before := map[string]int{}
		for i, ref := range refs {
			g := gs[i%2]
			g.mustChange(t, ref.task, keyPRV01, setStatus("accepted"))
			g.recordPROM(t, keyPRV01, promResponse(ref, "swemwbs", baseline, swemwbsAnswers(3, 3, 3, 3, 3, 3, 3)))
			_, before[ref.task] = g.read(t, "/fhir/Task/"+ref.task, keyPRV01)
		}
		gs[0].settle(t)
		eventsBefore := len(gs[0].events(t, gateway.OutboxDelivered))

		later := time.Now().AddDate(1, 0, 0)
		const sweeps = 6
		marked := make([]int, sweeps)
		errs := make([]error, sweeps)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range sweeps {
			wg.Go(func() {
				<-start
				marked[i], errs[i] = gs[i%2].svc.MarkPROMsDue(context.Background(), later)
			})
		}
		close(start)
		wg.Wait()
		total := 0
		for i := range sweeps {
			if errs[i] != nil {
				t.Errorf("sweep %d: %v", i, errs[i])
			}
			total += marked[i]
		}
		if total != len(refs) {
			t.Errorf("the sweeps marked %v Tasks, %d in all; want %d", marked, total, len(refs))
		}
		for i, ref := range refs {
			task, v := gs[(i+1)%2].read(t, "/fhir/Task/"+ref.task, keyA81001)
			if v != before[ref.task]+1 || businessStatus(task) != "follow-up-prom-due" {
				t.Errorf("Task %s: version %d (was %d), business status %q", ref.task, v, before[ref.task], businessStatus(task))
			}
		}
		for i := range gs {
			if n, err := gs[i].svc.MarkPROMsDue(context.Background(), later); n != 0 || err != nil {
				t.Errorf("a later sweep on replica %d marked %d (%v)", i, n, err)
			}
		}
		gs[1].settle(t)
		events := gs[1].events(t, gateway.OutboxDelivered)
		// One event per Task for PRV01 and one for the Subscription; no
		// change enqueued twice (e2eCheckDeliveries).
		if n := len(events) - eventsBefore; n != 2*len(refs) {
			t.Errorf("%d events for the marking, want %d", n, 2*len(refs))
		}
		e2eCheckDeliveries(t, e2eTo(events, "provider"), rcv.got(), e2ePayload)
	})
}
