package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/spgateway/spgateway/fhir"
	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/gatewaytest"
	"github.com/spgateway/spgateway/gateway/store"
	"github.com/spgateway/spgateway/gateway/store/storetest"
	"github.com/spgateway/spgateway/mapping"
)

const fixturePath = "../../testdata/fixtures/referral-bundle.json"

// newGateway serves the real gateway (router, service, store of engine)
// with the development organisations, routing and keys of SPEC 4.1, and
// returns its root URL.
func newGateway(t testing.TB, engine string) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	st := storetest.Open(t, engine, nil)
	svc, err := gateway.NewService(gateway.Config{
		Store:         st,
		Outbox:        st,
		Documents:     mapping.Documents{},
		Organizations: gatewaytest.Organizations(),
		Routing:       gatewaytest.Routing(),
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := fhir.NewServer(fhir.Config{BaseURL: base}, svc, gateway.NewStaticKeys(gatewaytest.Clients()))
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = h
	srv.Start()
	t.Cleanup(srv.Close)
	return base
}

// testTarget is a target on the development clients.
func testTarget(t testing.TB, base string, seedPerPractice int) *target {
	t.Helper()
	tgt, err := newTarget(options{url: base, practices: devPractices, providers: devProviders, fixture: fixturePath, conns: 4})
	if err != nil {
		t.Fatal(err)
	}
	tgt.seed = seedPerPractice
	return tgt
}

// send is one request outside any scenario.
func send(t testing.TB, method, url, key string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, b
}

// total is the number of resources a search finds (Bundle.total, counted
// on request).
func total(t testing.TB, base, path, key string) int {
	t.Helper()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	status, body := send(t, http.MethodGet, base+path+sep+"_total=accurate", key, nil)
	if status != http.StatusOK || !gjson.GetBytes(body, "total").Exists() {
		t.Fatalf("GET %s: %d %.300s", path, status, body)
	}
	return int(gjson.GetBytes(body, "total").Int())
}

// sane checks the figures every clean run must have.
func sane(t *testing.T, r *Result, requests int) {
	t.Helper()
	if r.Errors != 0 || r.Status.Errors() != 0 || r.FirstError != "" {
		t.Errorf("%s: %d errors %+v: %s", r.Scenario, r.Errors, r.Status, r.FirstError)
	}
	if r.Requests != requests || r.Status.OK != requests {
		t.Errorf("%s: %d requests, %d 2xx, want %d", r.Scenario, r.Requests, r.Status.OK, requests)
	}
	l := r.Latency
	if r.Throughput <= 0 || r.Seconds <= 0 || !(0 < l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max) {
		t.Errorf("%s: figures out of order: %.1f req/s in %.3fs, %+v", r.Scenario, r.Throughput, r.Seconds, l)
	}
	if want := float64(r.Requests) / r.Seconds; r.Throughput < want*0.999 || r.Throughput > want*1.001 {
		t.Errorf("%s: throughput %.1f, but %d requests in %.3fs", r.Scenario, r.Throughput, r.Requests, r.Seconds)
	}
}

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var out []time.Duration
		for _, n := range ns {
			out = append(out, time.Duration(n)*time.Millisecond)
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"none", nil, 50, 0},
		{"one value is every percentile", ms(7), 99, 7 * time.Millisecond},
		{"p50 of 1..100", hundred, 50, 50 * time.Millisecond},
		{"p90 of 1..100", hundred, 90, 90 * time.Millisecond},
		{"p99 of 1..100", hundred, 99, 99 * time.Millisecond},
		{"max of 1..100", hundred, 100, 100 * time.Millisecond},
		{"p99 of ten is the largest", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
		{"p50 of ten is the fifth", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 50, 5 * time.Millisecond},
		{"p50 of four rounds up", ms(1, 2, 3, 4), 51, 3 * time.Millisecond},
		{"p0 is the smallest", ms(3, 4), 0, 3 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
	// distribution sorts before it picks.
	got := distribution(ms(40, 10, 30, 20, 1000))
	if got != (Latency{P50: 30, P90: 1000, P99: 1000, Max: 1000}) {
		t.Errorf("distribution = %+v", got)
	}
	for _, tt := range []struct {
		xs   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tt.xs); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.xs, got, tt.want)
		}
	}
}

func TestCounts(t *testing.T) {
	var c Counts
	for _, s := range []int{200, 201, 412, 404, 422, 500, 503, 0, 304} {
		c.count(s)
	}
	want := Counts{OK: 2, Conflict412: 1, Client4xx: 2, Server5xx: 2, Transport: 1, Other: 1}
	if c != want {
		t.Errorf("counts %+v, want %+v", c, want)
	}
	if c.Errors() != 6 {
		t.Errorf("errors %d, want 6 (a 412 and 2xx are not errors)", c.Errors())
	}
}

func TestNHSNumbers(t *testing.T) {
	// The fixture's number, from its first nine digits.
	if s, ok := withCheckDigit(943476591); !ok || s != "9434765919" {
		t.Errorf("withCheckDigit(943476591) = %q, %v", s, ok)
	}
	// A prefix whose check digit would be 10 makes no NHS number: the
	// gateway refuses every last digit.
	var p uint64
	for p = 900000000; ; p++ {
		if _, ok := withCheckDigit(p); !ok {
			break
		}
	}
	for d := range 10 {
		if s := fmt.Sprintf("%09d%d", p, d); gateway.CheckNHSNumber(s, false) == nil {
			t.Fatalf("%s passes the check, but withCheckDigit refused its prefix", s)
		}
	}
	g, err := newNHSNumbers()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 20000 {
		s := g.Next()
		if err := gateway.CheckNHSNumber(s, false); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if seen[s] {
			t.Fatalf("%s given twice", s)
		}
		seen[s] = true
		// Any other last digit fails: the check digit is the only one.
		wrong := s[:9] + string(rune('0'+(s[9]-'0'+1)%10))
		if gateway.CheckNHSNumber(wrong, false) == nil {
			t.Fatalf("%s passes with the wrong check digit", wrong)
		}
	}
}

// TestReferralBuilder: the Bundles the tool sends are referrals the real
// gateway takes, each new (a new ServiceRequest and Patient), from the
// practice asked for.
func TestReferralBuilder(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		base := newGateway(t, engine)
		tgt := testTarget(t, base, 0)
		for _, p := range tgt.practices {
			a, b := tgt.referrals.Build(p.Org), tgt.referrals.Build(p.Org)
			ida := gjson.GetBytes(a, `entry.#(resource.resourceType=="ServiceRequest").resource.identifier.0.value`).String()
			idb := gjson.GetBytes(b, `entry.#(resource.resourceType=="ServiceRequest").resource.identifier.0.value`).String()
			nhsa := gjson.GetBytes(a, `entry.0.resource.identifier.0.value`).String()
			nhsb := gjson.GetBytes(b, `entry.0.resource.identifier.0.value`).String()
			if ida == idb || nhsa == nhsb || ida == fixtureIdentifier || nhsa == fixtureNHSNumber {
				t.Fatalf("%s: two Bundles share identifiers: %s %s, %s %s", p.Org, ida, idb, nhsa, nhsb)
			}
			if got := gjson.GetBytes(a, `entry.#(resource.resourceType=="ServiceRequest").resource.requester.identifier.value`).String(); got != p.Org {
				t.Errorf("requester %s, want %s", got, p.Org)
			}
			for _, body := range [][]byte{a, b} {
				status, resp := send(t, http.MethodPost, base+"/fhir", p.Key, body)
				if status != http.StatusOK {
					t.Fatalf("%s: %d %s", p.Org, status, resp)
				}
				for _, s := range gjson.GetBytes(resp, "entry.#.response.status").Array() {
					if !strings.HasPrefix(s.String(), "201") {
						t.Errorf("%s: entry %s, want every resource new: %s", p.Org, s, resp)
					}
				}
			}
		}
		// The practice code really is replaced: A81002's Bundle is not
		// A81001's to send.
		status, resp := send(t, http.MethodPost, base+"/fhir", gatewaytest.KeyA81001, tgt.referrals.Build("A81002"))
		if status != http.StatusForbidden || !strings.Contains(string(resp), "ServiceRequest.requester") {
			t.Errorf("another practice's Bundle: %d %s", status, resp)
		}
		if n := total(t, base, "/fhir/Task?owner=Organization/PRV02", gatewaytest.KeyPRV02); n != 2 {
			t.Errorf("PRV02 has %d Tasks, want 2 (routing by the practice code)", n)
		}
	})
}

func TestReferralBuilderRefusesOtherFixtures(t *testing.T) {
	good, err := os.ReadFile(fixturePath)
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string][]byte{
		"no referral number": bytes.ReplaceAll(good, []byte(fixtureIdentifier), []byte("X")),
		"no NHS number":      bytes.ReplaceAll(good, []byte(fixtureNHSNumber), []byte("X")),
		"no practice":        bytes.ReplaceAll(good, []byte(fixturePractice), []byte("X")),
		"not a transaction":  bytes.ReplaceAll(good, []byte(`"transaction"`), []byte(`"batch"`)),
	} {
		if _, err := newReferralBuilder(body); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestScenarios runs each gateway scenario against the real gateway: no
// errors, every request counted, and the work done is in the store.
func TestScenarios(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		base := newGateway(t, engine)
		tgt := testTarget(t, base, 60) // pages of 50 for each provider
		const n = 200
		o := runOptions{conns: 4, requests: n}
		for _, name := range []string{"intake", "poll", "update", "mixed"} {
			sc, err := newScenario(name)
			if err != nil {
				t.Fatal(err)
			}
			r, err := runScenario(context.Background(), name, sc, tgt, o)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			sane(t, r, n)
			switch name {
			case "intake":
				got := total(t, base, "/fhir/ServiceRequest", gatewaytest.KeyA81001) + total(t, base, "/fhir/ServiceRequest", gatewaytest.KeyA81002)
				if got != n {
					t.Errorf("intake: %d referrals stored, want %d", got, n)
				}
			case "poll":
				if r.PollPageTasks < 40 || r.PollPageTasks > pollCount {
					t.Errorf("poll: %.1f Tasks a page", r.PollPageTasks)
				}
			case "update":
				// Three updates a Task: 66 completed and the 67th accepted.
				completed := total(t, base, "/fhir/Task?owner=Organization/PRV01&status=completed", gatewaytest.KeyPRV01) +
					total(t, base, "/fhir/Task?owner=Organization/PRV02&status=completed", gatewaytest.KeyPRV02)
				if completed < n/3-4 || completed > n/3 {
					t.Errorf("update: %d Tasks completed by %d updates", completed, n)
				}
				if r.StoppedEarly {
					t.Errorf("update: ran out of Tasks")
				}
			case "mixed":
				for _, kind := range []string{"poll", "update", "intake"} {
					if r.Kinds[kind].Requests == 0 {
						t.Errorf("mixed: no %s requests: %+v", kind, r.Kinds)
					}
				}
				if k := r.Kinds; k["poll"].Requests < k["update"].Requests || k["update"].Requests < k["intake"].Requests {
					t.Errorf("mixed: polls ≫ updates > intakes does not hold: %+v", k)
				}
			}
		}
	})
}

// TestBaselines: the floors take the same Bundles without error, and the
// intake floor stores one row for each.
func TestBaselines(t *testing.T) {
	b, err := newBaseline(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	srv := httptest.NewServer(b.Handler())
	t.Cleanup(srv.Close)
	tgt := testTarget(t, "http://127.0.0.1:1", 0) // the gateway is not used
	tgt.baseline = srv.URL
	const n = 300
	for _, name := range []string{"baseline-intake", "baseline-hello"} {
		sc, _ := newScenario(name)
		r, err := runScenario(context.Background(), name, sc, tgt, runOptions{conns: 4, requests: n})
		if err != nil {
			t.Fatal(err)
		}
		sane(t, r, n)
	}
	var rows, distinct int
	if err := b.db.QueryRow(`SELECT count(*), count(DISTINCT identifier) FROM referrals WHERE status = 'active'`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != n || distinct != n {
		t.Errorf("baseline stored %d rows with %d identifiers, want %d", rows, distinct, n)
	}
	// Bad input is refused, not stored.
	for name, body := range map[string]string{
		"not JSON":          "{",
		"no ServiceRequest": `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient"}}]}`,
		"bad status":        `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"ServiceRequest","status":"bogus"}}]}`,
	} {
		if status, resp := send(t, http.MethodPost, srv.URL+baselineIntakePath, "", []byte(body)); status != http.StatusBadRequest {
			t.Errorf("%s: %d %s", name, status, resp)
		}
	}
}

// TestUpdateRaceIsNotAnError: a Task changed by someone else answers 412,
// counted apart from the errors.
func TestUpdateRaceIsNotAnError(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		base := newGateway(t, engine)
		tgt := testTarget(t, base, 3)
		u := &updates{pool: newTaskPool()}
		if err := u.prepare(context.Background(), tgt, 2); err != nil {
			t.Fatal(err)
		}
		// Another client accepts every Task first, and nothing new comes.
		tgt.seed = 0
		for _, tk := range u.pool.tasks {
			req, _ := http.NewRequest(http.MethodPatch, base+"/fhir/Task/"+tk.id, bytes.NewReader(patchAccept))
			req.Header.Set("Authorization", "Bearer "+tk.key)
			req.Header.Set("Content-Type", "application/json-patch+json")
			req.Header.Set("If-Match", fmt.Sprintf(`W/"%d"`, tk.version))
			res, err := http.DefaultClient.Do(req)
			if err != nil || res.StatusCode != http.StatusOK {
				t.Fatalf("accepting %s: %v %v", tk.id, err, res)
			}
			res.Body.Close()
		}
		r, err := runScenario(context.Background(), "update", u, tgt, runOptions{conns: 2, requests: 6})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status.Conflict412 != 6 || r.Errors != 0 || r.Status.OK != 0 {
			t.Errorf("stale updates: %+v, %d errors", r.Status, r.Errors)
		}
		// With the pool empty, the scenario stops and says so.
		r, err = runScenario(context.Background(), "update", u, tgt, runOptions{conns: 2, duration: time.Second})
		if err != nil || !r.StoppedEarly || r.Requests != 0 {
			t.Errorf("empty pool: %+v %v", r, err)
		}
	})
}

// TestPollNeedsFullPages: a poll run on too few Tasks refuses to start
// rather than measure short pages.
func TestPollNeedsFullPages(t *testing.T) {
	base := newGateway(t, "sqlite")
	tgt := testTarget(t, base, 10)
	_, err := runScenario(context.Background(), "poll", &polls{}, tgt, runOptions{conns: 2, requests: 10})
	if err == nil || !strings.Contains(err.Error(), "fewer than a page of 50") {
		t.Errorf("poll on 10 Tasks a provider: %v", err)
	}
}

// TestRun drives the command: a full run with ratios and JSON, and runs
// that fail loudly.
func TestRun(t *testing.T) {
	base := newGateway(t, "sqlite")
	common := []string{"-url", base, "-fixture", fixturePath, "-warmup", "0", "-c", "4", "-n", "100", "-seed", "50"}

	t.Run("ratios as JSON", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		args := append(append([]string{}, common...), "-json", "-runs", "2", "-pid", fmt.Sprint(os.Getpid()),
			"baseline-hello", "baseline-intake", "intake", "poll")
		if err := run(context.Background(), args, &stdout, &stderr); err != nil {
			t.Fatalf("%v\n%s", err, stderr.String())
		}
		var rep Report
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
			t.Fatalf("%v\n%s", err, stdout.String())
		}
		if len(rep.Rounds) != 2 || len(rep.Summary.Results) != 4 || rep.Errors != 0 || rep.Connections != 4 {
			t.Fatalf("report: %s", stdout.String())
		}
		for i, rd := range rep.Rounds {
			want := rd.Results[2].Throughput / rd.Results[1].Throughput
			if rd.Ratios.Intake != want || rd.Ratios.Poll <= 0 {
				t.Errorf("round %d ratios %+v, intake want %v", i, rd.Ratios, want)
			}
		}
		if rep.Summary.Ratios.Intake != (rep.Rounds[0].Ratios.Intake+rep.Rounds[1].Ratios.Intake)/2 {
			t.Errorf("summary ratio %v is not the median of the rounds", rep.Summary.Ratios.Intake)
		}
		if s := rep.Summary.Results[2]; s.Requests != 200 || s.PeakRSSMB <= 0 {
			t.Errorf("summary of intake: %d requests, %v MB", s.Requests, s.PeakRSSMB)
		}
		names := map[string]bool{}
		for _, tg := range rep.Targets {
			names[tg.Name] = true
		}
		for _, want := range []string{"intake rate", "poll rate", "intake p99", "poll p99", "gateway peak RSS"} {
			if !names[want] {
				t.Errorf("no target %q in %+v", want, rep.Targets)
			}
		}
	})

	t.Run("text", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), append(append([]string{}, common...), "baseline-hello"), &stdout, &stderr); err != nil {
			t.Fatalf("%v\n%s", err, stderr.String())
		}
		if !strings.Contains(stdout.String(), "baseline-hello") || !strings.Contains(stdout.String(), "p99 ms") {
			t.Errorf("output:\n%s", stdout.String())
		}
	})

	failing := []struct {
		name   string
		url    string
		args   []string
		counts func(Counts) int
	}{
		{"wrong keys: 401", base, []string{"-practices", "A81001=not-a-key-at-all"}, func(c Counts) int { return c.Client4xx }},
		{"server errors: 5xx", "", nil, func(c Counts) int { return c.Server5xx }},
		{"nobody listening: transport", "http://127.0.0.1:1", nil, func(c Counts) int { return c.Transport }},
	}
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "broken", http.StatusInternalServerError)
	}))
	t.Cleanup(broken.Close)
	failing[1].url = broken.URL
	for _, tt := range failing {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append(append([]string{}, common...), "-url", tt.url, "-n", "20", "-json")
			args = append(append(args, tt.args...), "intake")
			err := run(context.Background(), args, &stdout, &stderr)
			if !errors.Is(err, errRequestsFailed) || !strings.Contains(stderr.String(), "ERRORS: 20 requests failed") {
				t.Fatalf("err %v, stderr:\n%s", err, stderr.String())
			}
			var rep Report
			if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
			if got := tt.counts(rep.Summary.Results[0].Status); got != 20 || rep.Errors != 20 {
				t.Errorf("counted %d of 20 (%+v)", got, rep.Summary.Results[0].Status)
			}
		})
	}

	for name, args := range map[string][]string{
		"unknown scenario":    {"crash"},
		"no connections":      {"-c", "0", "intake"},
		"bad credentials":     {"-practices", "A81001", "intake"},
		"no duration":         {"-n", "0", "-d", "0", "intake"},
		"unknown flag":        {"-bogus"},
		"serve-baseline args": {"serve-baseline", "extra"},
	} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			all := args
			if args[0] != "serve-baseline" {
				all = append(append([]string{}, common...), args...)
			}
			if err := run(context.Background(), all, &stdout, &stderr); !errors.Is(err, errUsage) {
				t.Errorf("err %v, want a usage error", err)
			}
		})
	}
	t.Run("no fixture", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), append(append([]string{}, common...), "-fixture", "missing.json", "intake"), &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), "referral fixture") {
			t.Errorf("err %v", err)
		}
	})
}

func TestPeakRSS(t *testing.T) {
	mb, err := peakRSS(os.Getpid())
	if err != nil || mb <= 1 {
		t.Errorf("own peak RSS %v MB, %v", mb, err)
	}
	if _, err := peakRSS(1 << 30); err == nil {
		t.Error("no error for a process that does not exist")
	}
}

// TestBaselinePragmasAreTheStores: the baseline's SQLite pays what the
// gateway's store pays: its connection has the settings of the store's
// writer (store.SQLiteWriterDSN, read back as the connection has them),
// there is one of it, and the store's checkpointer copies its log back
// into the database file, as the connection itself never does.
func TestBaselinePragmasAreTheStores(t *testing.T) {
	dir := t.TempDir()
	b, err := newBaseline(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	writer, err := sql.Open("sqlite", store.SQLiteWriterDSN(filepath.Join(t.TempDir(), "store.db")))
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	// The pragmas of the store's options, and those they leave as SQLite's
	// defaults (a change there would differ too).
	for _, pragma := range []string{"journal_mode", "synchronous", "busy_timeout", "foreign_keys", "temp_store", "cache_size",
		"wal_autocheckpoint", "query_only"} {
		var got, want string
		if err := b.db.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil {
			t.Fatalf("baseline: PRAGMA %s: %v", pragma, err)
		}
		if err := writer.QueryRow("PRAGMA " + pragma).Scan(&want); err != nil {
			t.Fatalf("store's writer: PRAGMA %s: %v", pragma, err)
		}
		if got != want {
			t.Errorf("PRAGMA %s: the baseline has %s, the store's writer %s", pragma, got, want)
		}
	}
	if n := b.db.Stats().MaxOpenConnections; n != 1 {
		t.Errorf("the baseline has up to %d connections, want one writer like the store's", n)
	}

	// The table and a row reach the database file, which only a
	// checkpoint writes to.
	if err := b.insert(t.Context(), "r1", "REF-1", "active", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "baseline-*.db"))
	if err != nil || len(files) != 1 {
		t.Fatalf("the baseline's database: %v, %v", files, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		fi, err := os.Stat(files[0])
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() >= 3*4096 { // the header page, the table's and its key's
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the database file is %d bytes after 5s: the log is not checkpointed", fi.Size())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
