package fhir_test

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// refer posts n referrals from A81001 with identifiers prefix-0..n-1, each
// for its own patient.
func refer(t testing.TB, g *testGateway, prefix string, n int) {
	t.Helper()
	for i := range n {
		r := g.post("/fhir", keyA81001, referralBundle(t, fmt.Sprintf("%s-%d", prefix, i), ""))
		if r.status != 200 {
			t.Fatalf("referral %d: %d %s", i, r.status, r.body)
		}
	}
}

// pageAll follows next links from path and returns the ids of the matches,
// in order, and the number of pages.
func pageAll(t testing.TB, g *testGateway, path, key string, between func()) ([]string, int) {
	t.Helper()
	var ids []string
	pages := 0
	for path != "" {
		r := g.get(path, key)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
		pages++
		res, modes := entries(t, r)
		for i, x := range res {
			if modes[i] == "match" {
				ids = append(ids, str(x, "id"))
			}
		}
		next := link(t, r, "next")
		path = strings.TrimPrefix(next, g.base)
		if between != nil && path != "" {
			between()
		}
	}
	return ids, pages
}

// TestPagingWhileOthersWrite pages through the Tasks while referrals keep
// arriving: every Task that existed at the first page comes exactly once;
// none written later slips in.
func TestPagingWhileOthersWrite(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		refer(t, g, "SEED", 40)
		before, _ := pageAll(t, g, "/fhir/Task?_count=500", keyPRV01, nil)
		if len(before) != 40 {
			t.Fatalf("%d tasks seeded", len(before))
		}
		for _, sort := range []string{"_lastUpdated", "-_lastUpdated"} {
			t.Run(sort, func(t *testing.T) {
				var wg sync.WaitGroup
				round := 0
				between := func() {
					round++
					// Writes land between every two pages, concurrently
					// with the next page's read.
					prefix := fmt.Sprintf("%s-%d", sort, round)
					wg.Go(func() { refer(t, g, prefix, 2) })
				}
				got, pages := pageAll(t, g, "/fhir/Task?_count=7&_sort="+sort, keyPRV01, between)
				wg.Wait()
				if want := (len(before) + 6) / 7; pages != want {
					t.Errorf("%d pages for %d tasks at 7 a page, want %d", pages, len(before), want)
				}
				want := slices.Clone(before)
				if sort == "-_lastUpdated" {
					slices.Reverse(want)
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("pages skipped, repeated or added tasks:\n got %v\nwant %v", got, want)
				}
			})
			// The next search sees what was written meanwhile.
			now, _ := pageAll(t, g, "/fhir/Task?_count=500", keyPRV01, nil)
			if len(now) <= len(before) {
				t.Errorf("later writes not visible to a new search")
			}
			before = now
		}
	})
}

func TestSearchParameters(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		var mu sync.Mutex
		clock := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
		now := func() time.Time { mu.Lock(); defer mu.Unlock(); clock = clock.Add(time.Minute); return clock }
		g := newGateway(t, engine, withNow(now))
		// Three referrals: two for one patient, one for another; plus one
		// from the other practice.
		for _, x := range []struct{ id, nhs string }{{"R1", ""}, {"R2", ""}, {"R3", "9000000009"}} {
			if r := g.post("/fhir", keyA81001, referralBundle(t, x.id, x.nhs)); r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
		}
		other := strings.ReplaceAll(string(referralBundle(t, "R4", "6541003238")), "A81001", "A81002")
		if r := g.post("/fhir", keyA81002, []byte(other)); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		tasks, _ := entries(t, g.get("/fhir/Task?_sort=_lastUpdated", keyA81001))
		srs, _ := entries(t, g.get("/fhir/ServiceRequest?_sort=_lastUpdated", keyA81001))
		patients, _ := entries(t, g.get("/fhir/Patient?_sort=_lastUpdated", keyA81001))
		if len(tasks) != 3 || len(srs) != 3 || len(patients) != 2 {
			t.Fatalf("%d tasks, %d referrals, %d patients", len(tasks), len(srs), len(patients))
		}
		id := func(r map[string]any) string { return str(r, "id") }
		lastUpdated := str(tasks[1], "meta", "lastUpdated")
		authored := str(srs[0], "authoredOn")
		cases := []struct {
			query string
			key   string
			want  []string
		}{
			{"/fhir/Task?_id=" + id(tasks[0]) + "," + id(tasks[2]), keyA81001, []string{id(tasks[0]), id(tasks[2])}},
			{"/fhir/Task?status=requested", keyPRV01, []string{id(tasks[0]), id(tasks[1]), id(tasks[2])}},
			{"/fhir/Task?status=completed", keyPRV01, nil},
			{"/fhir/Task?status=http://hl7.org/fhir/task-status|requested&status=requested", keyPRV01, nil},
			{"/fhir/Task?owner=PRV01", keyPRV01, []string{id(tasks[0]), id(tasks[1]), id(tasks[2])}},
			{"/fhir/Task?owner:identifier=https://fhir.nhs.uk/Id/ods-organization-code|PRV01", keyPRV01, []string{id(tasks[0]), id(tasks[1]), id(tasks[2])}},
			{"/fhir/Task?owner=Organization/PRV02", keyPRV01, nil},
			{"/fhir/Task?owner=Patient/PRV01", keyPRV01, nil},
			{"/fhir/Task?requester=Organization/A81001&owner=Organization/PRV01", keyA81001, []string{id(tasks[0]), id(tasks[1]), id(tasks[2])}},
			{"/fhir/Task?focus=ServiceRequest/" + id(srs[1]), keyPRV01, []string{id(tasks[1])}},
			{"/fhir/Task?patient=Patient/" + id(patients[1]), keyPRV01, []string{id(tasks[2])}},
			{"/fhir/Task?patient=" + url.QueryEscape(g.base+"/fhir/Patient/"+id(patients[0])), keyPRV01, []string{id(tasks[0]), id(tasks[1])}},
			{"/fhir/Task?business-status=first-contact-made", keyPRV01, nil},
			{"/fhir/Task?_lastUpdated=gt" + url.QueryEscape(lastUpdated), keyPRV01, []string{id(tasks[2])}},
			{"/fhir/Task?_lastUpdated=le" + url.QueryEscape(lastUpdated), keyPRV01, []string{id(tasks[0]), id(tasks[1])}},
			{"/fhir/Task?_lastUpdated=eq" + lastUpdated[:10], keyPRV01, []string{id(tasks[0]), id(tasks[1]), id(tasks[2])}},
			{"/fhir/Task?_lastUpdated=lt2026-11-23", keyPRV01, nil},
			{"/fhir/Task?modified=gt" + url.QueryEscape(lastUpdated), keyPRV01, []string{id(tasks[2])}},
			{"/fhir/ServiceRequest?identifier=https://practice-a81001.example.org/referrals|R2", keyPRV01, []string{id(srs[1])}},
			{"/fhir/ServiceRequest?identifier=R3", keyA81001, []string{id(srs[2])}},
			{"/fhir/ServiceRequest?identifier=https://practice-a81001.example.org/referrals|", keyA81001, []string{id(srs[0]), id(srs[1]), id(srs[2])}},
			{"/fhir/ServiceRequest?identifier=https://elsewhere.example.org|R3", keyA81001, nil},
			{"/fhir/ServiceRequest?patient.identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009", keyPRV01, []string{id(srs[2])}},
			{"/fhir/ServiceRequest?patient:identifier=9434765919", keyPRV01, []string{id(srs[0]), id(srs[1])}},
			{"/fhir/ServiceRequest?patient:identifier=6541003238", keyPRV01, nil},
			{"/fhir/ServiceRequest?status=active&requester=A81001&performer=PRV01", keyPRV01, []string{id(srs[0]), id(srs[1]), id(srs[2])}},
			{"/fhir/ServiceRequest?authored=" + authored, keyA81001, []string{id(srs[0]), id(srs[1]), id(srs[2])}},
			{"/fhir/ServiceRequest?authored=gt" + authored[:10], keyA81001, nil},
			{"/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009", keyPRV01, []string{id(patients[1])}},
		}
		for _, c := range cases {
			t.Run(c.query, func(t *testing.T) {
				r := g.get(c.query, c.key)
				res, _ := entries(t, r)
				var got []string
				for _, x := range res {
					got = append(got, id(x))
				}
				if fmt.Sprint(got) != fmt.Sprint(c.want) || total(t, r) != len(c.want) {
					t.Errorf("got %v (total %d), want %v", got, total(t, r), c.want)
				}
			})
		}
		// The Condition of the third referral is found by its patient.
		for _, key := range []string{keyA81001, keyPRV01} {
			conds, _ := entries(t, g.get("/fhir/Condition?patient=Patient/"+id(patients[1]), key))
			if len(conds) != 1 || str(conds[0], "subject", "reference") != "Patient/"+id(patients[1]) {
				t.Errorf("conditions of the second patient: %v", conds)
			}
		}
		if n := total(t, g.get("/fhir/Condition?patient=Patient/"+id(patients[1]), keyA81002)); n != 0 {
			t.Errorf("another practice finds %d conditions", n)
		}
	})
}

func TestSearchResultParameters(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine, withLimits(1<<20, 64, 3, 5))
		refer(t, g, "P", 7)

		r := g.get("/fhir/Task?_total=accurate", keyPRV01)
		if res, _ := entries(t, r); len(res) != 3 || total(t, r) != 7 || link(t, r, "next") == "" {
			t.Errorf("default page: %d entries, total %d", len(res), total(t, r))
		}
		r = g.get("/fhir/Task?_count=100", keyPRV01)
		if res, _ := entries(t, r); len(res) != 5 || !strings.Contains(link(t, r, "self"), "_count=5") {
			t.Errorf("_count over the cap: %d entries, self %s", len(res), link(t, r, "self"))
		}
		r = g.get("/fhir/Task?_count=0", keyPRV01)
		if res, _ := entries(t, r); len(res) != 0 || total(t, r) != 7 || link(t, r, "next") != "" {
			t.Errorf("_count=0: %s", r.body)
		}
		r = g.get("/fhir/Task?_total=none&_count=5", keyPRV01)
		if _, ok := r.json(t)["total"]; ok {
			t.Errorf("_total=none still counted")
		}
		// The total counted on the first page is carried to the next.
		r = g.get("/fhir/Task?_count=5&_total=accurate", keyPRV01)
		next := g.get(strings.TrimPrefix(link(t, r, "next"), g.base), keyPRV01)
		if total(t, next) != 7 {
			t.Errorf("second page total %d", total(t, next))
		}
		// Unknown parameters are ignored and left out of the self link…
		r = g.get("/fhir/Task?colour=blue&_count=2", keyPRV01)
		if r.status != 200 || strings.Contains(link(t, r, "self"), "colour") {
			t.Errorf("unknown parameter: %d self %s", r.status, link(t, r, "self"))
		}
		// …unless the client asks for strict handling.
		r = g.do("GET", "/fhir/Task?colour=blue", keyPRV01, nil, "Prefer", "handling=strict")
		if r.status != 400 {
			t.Errorf("strict unknown parameter: %d", r.status)
		}
		for _, q := range []string{
			"_count=-1", "_count=ten", "_count=1&_count=2", "_sort=status", "_include=Task:owner", "_total=some",
			"_lastUpdated=2026-13-01", "_lastUpdated=ap2026-11-23", "_lastUpdated=gt2026-11-23T10:00", "owner:missing=true",
			"_cursor=bogus", "patient.name=Smith", "status:not=requested",
		} {
			r := g.get("/fhir/Task?"+q, keyPRV01)
			if r.status != 400 || outcomeIssues(t, r)[0]["diagnostics"] == "" {
				t.Errorf("%s: %d %s", q, r.status, r.body)
			}
		}
		// A cursor belongs to its search.
		r = g.get("/fhir/Task?_count=2&status=requested", keyPRV01)
		u, _ := url.Parse(link(t, r, "next"))
		if r := g.get("/fhir/Task?status=completed&_cursor="+u.Query().Get("_cursor"), keyPRV01); r.status != 400 {
			t.Errorf("cursor reused on another search: %d", r.status)
		}
		// POST _search takes the parameters as a form.
		r = g.do("POST", "/fhir/Task/_search", keyPRV01, []byte("status=requested&_count=2&_total=accurate"), "Content-Type", "application/x-www-form-urlencoded")
		if res, _ := entries(t, r); r.status != 200 || len(res) != 2 || total(t, r) != 7 {
			t.Errorf("POST _search: %d %s", r.status, r.body)
		}
	})
}

func TestOrganizations(t *testing.T) {
	g := newGateway(t, "sqlite")
	r := g.get("/fhir/Organization/A81001", keyPRV01)
	if r.status != 200 || str(r.json(t), "name") != "Example Road Surgery" || r.header.Get("ETag") != `W/"1"` {
		t.Errorf("read: %d %s", r.status, r.body)
	}
	if r := g.get("/fhir/Organization/A81001/_history/1", keyAdmin); r.status != 200 {
		t.Errorf("vread: %d", r.status)
	}
	if r := g.get("/fhir/Organization/NOPE", keyPRV01); r.status != 404 {
		t.Errorf("unknown: %d", r.status)
	}
	for q, want := range map[string]int{
		"":                     4,
		"?name=river":          2,
		"?name:contains=link":  1,
		"?name:exact=Tyneside": 0,
		"?identifier=https://fhir.nhs.uk/Id/ods-organization-code|PRV02": 1,
		"?_id=A81001,A81002": 2,
	} {
		if n := total(t, g.get("/fhir/Organization"+q, keyA81002)); n != want {
			t.Errorf("Organization%s: %d, want %d", q, n, want)
		}
	}
}

// TestSearchTotal: Bundle.total is counted when asked for (_total=accurate,
// or _count=0) and carried to later pages; by default (and for
// _total=estimate) it is given only when the first page holds every match;
// _total=none leaves it out. Paging returns every match once whatever the
// _total.
func TestSearchTotal(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		refer(t, g, "T", 7)
		hasTotal := func(r response) bool {
			t.Helper()
			_, ok := r.json(t)["total"]
			return ok
		}
		all, _ := pageAll(t, g, "/fhir/Task?_count=50", keyPRV01, nil)
		if len(all) != 7 {
			t.Fatalf("one page: %d Tasks, want 7", len(all))
		}
		for _, tc := range []struct {
			name, query string
			first       int // total on the first page; -1 none
			later       int // total on later pages; -1 none
		}{
			{"default, one page", "_count=10", 7, -1},
			{"default, one full page", "_count=7", 7, -1}, // the store reads one more row to know
			{"default, several pages", "_count=3", -1, -1},
			{"estimate, several pages", "_count=3&_total=estimate", -1, -1},
			{"estimate, one page", "_count=10&_total=estimate", 7, -1},
			{"accurate, several pages", "_count=3&_total=accurate", 7, 7},
			{"accurate, one page", "_count=10&_total=accurate", 7, -1},
			{"none, one page", "_count=10&_total=none", -1, -1},
			{"none, several pages", "_count=3&_total=none", -1, -1},
			{"default, no match", "status=completed", 0, -1},
			{"accurate, no match", "status=completed&_total=accurate", 0, -1},
			{"accurate, descending", "_count=2&_total=accurate&_sort=-_lastUpdated", 7, 7},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := g.get("/fhir/Task?"+tc.query, keyPRV01)
				if r.status != 200 {
					t.Fatalf("%d %s", r.status, r.body)
				}
				if got := hasTotal(r); got != (tc.first >= 0) || got && total(t, r) != tc.first {
					t.Errorf("first page: total present %v (%s), want %d", got, r.body[:min(len(r.body), 80)], tc.first)
				}
				for next := link(t, r, "next"); next != ""; {
					r := g.get(strings.TrimPrefix(next, g.base), keyPRV01)
					if got := hasTotal(r); got != (tc.later >= 0) || got && total(t, r) != tc.later {
						t.Errorf("later page: total present %v, want %d", got, tc.later)
					}
					next = link(t, r, "next")
				}
				ids, _ := pageAll(t, g, "/fhir/Task?"+tc.query, keyPRV01, nil)
				want := all
				if strings.Contains(tc.query, "status=completed") {
					want = nil
				}
				if strings.Contains(tc.query, "_sort=-") {
					want = slices.Clone(all)
					slices.Reverse(want)
				}
				if !slices.Equal(ids, want) {
					t.Errorf("paged %v, want %v", ids, want)
				}
			})
		}
		// _count=0 asks for the count alone, unless _total=none.
		r := g.get("/fhir/Task?_count=0", keyPRV01)
		if res, _ := entries(t, r); len(res) != 0 || total(t, r) != 7 {
			t.Errorf("_count=0: %s", r.body)
		}
		r = g.get("/fhir/Task?_count=0&_total=none", keyPRV01)
		if res, _ := entries(t, r); r.status != 200 || len(res) != 0 || hasTotal(r) {
			t.Errorf("_count=0&_total=none: %d %s", r.status, r.body)
		}
		// The total is the count at the first page's snapshot: referrals
		// made while paging change neither it nor the pages.
		r = g.get("/fhir/Task?_count=3&_total=accurate", keyPRV01)
		refer(t, g, "U", 2)
		ids, _ := pageAll(t, g, strings.TrimPrefix(link(t, r, "next"), g.base), keyPRV01, nil)
		if total(t, r) != 7 || len(ids) != 4 {
			t.Errorf("while others write: total %d, %d on later pages, want 7 and 4", total(t, r), len(ids))
		}
		if n := total(t, g.get("/fhir/Task?_count=3&_total=accurate", keyPRV01)); n != 9 {
			t.Errorf("after the writes: total %d, want 9", n)
		}
		// Tenancy: another provider's count is its own.
		if n := total(t, g.get("/fhir/Task?_total=accurate&_count=1", keyPRV02)); n != 0 {
			t.Errorf("PRV02 counts %d of PRV01's Tasks", n)
		}
		// Bad values.
		for _, q := range []string{"_total=ACCURATE", "_total=exact", "_total=", "_total=none&_total=accurate"} {
			r := g.get("/fhir/Task?"+q, keyPRV01)
			if r.status != 400 || !strings.Contains(str(outcomeIssues(t, r)[0], "diagnostics"), "_total") {
				t.Errorf("%s: %d %s", q, r.status, r.body)
			}
		}
	})
}
