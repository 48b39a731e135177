package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spgateway/spgateway/adapters/webhook"
	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/gatewaytest"
	"github.com/spgateway/spgateway/gateway/store"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// The crash test runs only when asked (CI asks): it takes tens of seconds.
const (
	crashTestVariable = "SPGATEWAY_CRASH_TEST"
	// crashSeedVariable replays a run's kill schedule (the log gives the
	// seed); the load's interleaving is not replayed.
	crashSeedVariable = "SPGATEWAY_CRASH_SEED"
	// crashChildVariable makes the test binary run as the gateway: main,
	// with the arguments and environment the test gave it.
	crashChildVariable = "SPGATEWAY_CRASH_CHILD"
)

// TestMain lets the crash test start this test binary as the gateway
// process. It re-executes itself rather than building ./cmd/spgateway: the
// binary is already built (with the race detector when the tests run with
// -race, so recovery after a crash is race-checked too), main is the real
// main, and the test needs no Go toolchain at run time.
func TestMain(m *testing.M) {
	if os.Getenv(crashChildVariable) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The crash test's shape: how many times the gateway is killed, and how
// long the load runs between kills.
const (
	crashKills = 5
	crashMinUp = 700 * time.Millisecond
	crashMaxUp = 2500 * time.Millisecond
	// crashMinWrites is how many writes each run acknowledges at least
	// before it is killed.
	crashMinWrites = 10
	crashIntakers  = 4
	crashUpdaters  = 4
	// crashReplay is the share of referrals a practice sends again after
	// it got its answer: the second answer must be the first referral.
	crashReplay = 0.1
	// crashImpatient is the share of referrals and updates whose first
	// sending gives up before its answer (then the client sends it again):
	// besides the kills, a second way a stored write's answer is lost.
	crashImpatient = 0.1
	// crashSearchSample is how many referrals are also searched for
	// through the API; the database check covers them all.
	crashSearchSample = 100
)

const (
	nhsSystem       = "https://fhir.nhs.uk/Id/nhs-number"
	crashSubHeader  = "Authorization: Bearer subscription-secret"
	crashSubToken   = "Bearer subscription-secret"
	crashProviderA  = gatewaytest.KeyPRV01
	crashProviderB  = gatewaytest.KeyPRV02
	crashPracticeA  = gatewaytest.KeyA81001
	crashPracticeB  = gatewaytest.KeyA81002
	referralFixture = "../../testdata/fixtures/referral-bundle.json"
)

// TestCrashRecovery starts the gateway as a process of its own and drives
// referrals and Task updates at it from several clients while killing it
// with SIGKILL at random moments, restarting it on the same database each
// time. Clients retry after a connection error, as real ones do (a
// practice resends the same referral). Then it checks that nothing a 2xx
// answered was lost or doubled: each referral is there once, with one
// Task and one Patient; each acknowledged Task update is in the Task's
// history; each acknowledged write has its audit event; and every outbox
// event was delivered, each under one delivery id.
func TestCrashRecovery(t *testing.T) {
	if os.Getenv(crashTestVariable) != "1" {
		t.Skipf("the crash test runs only with %s=1 (CI sets it): it kills and restarts the gateway for tens of seconds", crashTestVariable)
	}
	storetest.Each(t, testCrashRecovery)
}

func testCrashRecovery(t *testing.T, engine string) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(crashSeedVariable); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s: %v", crashSeedVariable, err)
		}
	}
	t.Logf("kill schedule seed %d (replay with %s=%d)", seed, crashSeedVariable, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))

	recv := newCrashReceiver(rng.Uint64())
	hook := httptest.NewServer(recv)
	defer hook.Close()

	dbcfg := storetest.Config(t, engine)
	g := newCrashGateway(t, engine, dbcfg.DSN, hook.URL)
	g.start()
	defer g.stopIfRunning()

	// Practice A81001 hears of its Tasks' changes through a Subscription,
	// so Task updates fill the outbox as well as new referrals.
	c := newCrashClient(t, g.base, rng.Uint64())
	sub, err := json.Marshal(map[string]any{
		"resourceType": "Subscription", "status": "requested", "reason": "crash test",
		"criteria": "Task?requester=Organization/A81001",
		"channel": map[string]any{"type": "rest-hook", "endpoint": hook.URL + "/sub",
			"payload": "application/fhir+json", "header": []string{crashSubHeader}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res := c.must(http.MethodPost, "/fhir/Subscription", crashPracticeA, sub, nil); res.status != http.StatusCreated {
		t.Fatalf("creating the Subscription: %d %s", res.status, res.body)
	}

	// The load, until stopLoad: intakes feed the updaters' queue.
	loadCtx, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range crashIntakers {
		wg.Go(func() {
			for n := 0; loadCtx.Err() == nil; n++ {
				c.intake(loadCtx, []string{crashPracticeA, crashPracticeB}[(i+n)%2])
			}
		})
	}
	for range crashUpdaters {
		wg.Go(func() {
			for {
				select {
				case ref := <-c.tasks:
					c.work(loadCtx, ref)
				case <-loadCtx.Done():
					return
				}
			}
		})
	}
	started := time.Now()
	for i := range crashKills {
		// Each run lives a random while, and long enough to have taken
		// writes: a kill lands on a gateway under load, however slow the
		// machine.
		acked := c.referralCount() + c.updateCount()
		time.Sleep(crashMinUp + time.Duration(rng.Int64N(int64(crashMaxUp-crashMinUp))))
		for deadline := time.Now().Add(30 * time.Second); c.referralCount()+c.updateCount() < acked+crashMinWrites && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		g.kill()
		at := time.Since(started)
		g.start()
		t.Logf("kill %d at %s (up again in %s): %d referrals and %d updates acknowledged so far", i+1,
			at.Round(time.Millisecond), (time.Since(started) - at).Round(time.Millisecond), c.referralCount(), c.updateCount())
	}
	time.Sleep(crashMinUp)
	stopLoad()
	wg.Wait()
	t.Logf("load over after %s: %d referrals, %d replays, %d Task updates acknowledged; %d requests failed at the connection and were retried; %d writes landed without their answer",
		time.Since(started).Round(time.Millisecond), c.referralCount(), c.replays.Load(), c.updateCount(), c.retried.Load(), c.lost.Load())
	if c.referralCount() < crashKills*crashMinWrites/2 || c.updateCount() < crashKills*crashMinWrites/2 {
		t.Fatalf("too little load to prove anything: %d referrals, %d updates", c.referralCount(), c.updateCount())
	}
	if c.retried.Load() == 0 {
		t.Error("no request met a killed gateway: the kills proved nothing")
	}

	db := openCrashDB(t, engine, dbcfg.DSN)
	waitOutboxDrained(t, db, 30*time.Second)
	checkReferrals(t, c, db)
	checkUpdates(t, c)
	checkAudit(t, c, db)
	checkDeliveries(t, recv, db)
	g.stop()
}

// crashGateway is the gateway process, started and killed again and again
// on one database and one port.
type crashGateway struct {
	t    *testing.T
	env  []string
	base string
	logs *syncBuffer // every run's standard output and error
	cmd  *exec.Cmd
	runs int
	read int // how much of logs checkLogs has read
}

func newCrashGateway(t *testing.T, engine, dsn, hookURL string) *crashGateway {
	t.Helper()
	data, err := os.ReadFile(developmentFile)
	if err != nil {
		t.Fatal(err)
	}
	const anchor = "    # Uncomment to have PRV01's referrals written as files under ./data:\n"
	text := strings.Replace(string(data), anchor,
		"    delivery: {adapter: webhook, url: \""+hookURL+"/hook\", secret_env: PRV01_WEBHOOK_SECRET, timeout: 2s}\n"+anchor, 1)
	if text == string(data) {
		t.Fatal("the development configuration changed: no place for PRV01's delivery")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	// The child sees none of the test's own SPGATEWAY_ variables, only these.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SPGATEWAY_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		crashChildVariable+"=1",
		"SPGATEWAY_CONFIG="+writeConfig(t, text),
		"SPGATEWAY_DATABASE_DRIVER="+engine,
		"SPGATEWAY_DATABASE_DSN="+dsn,
		"SPGATEWAY_SERVER_LISTEN="+addr,
		"SPGATEWAY_SERVER_BASE_URL=http://"+addr,
		"SPGATEWAY_SERVER_SHUTDOWN_TIMEOUT=5s",
		"SPGATEWAY_LOG_FORMAT=json",
		"SPGATEWAY_LOG_LEVEL=warn",
		"SPGATEWAY_TELEMETRY_METRICS_ENABLED=false",
		// Retries and leases short enough to drain within the test: an
		// event claimed by a killed process waits out its lease.
		"SPGATEWAY_OUTBOX_POLL=100ms",
		"SPGATEWAY_OUTBOX_LEASE=3s",
		"SPGATEWAY_OUTBOX_TIMEOUT=2s",
		"SPGATEWAY_OUTBOX_BASE_DELAY=100ms",
		"SPGATEWAY_OUTBOX_MAX_DELAY=1s",
		"SPGATEWAY_OUTBOX_MAX_ATTEMPTS=50",
		"PRV01_WEBHOOK_SECRET="+testSecret,
	)
	return &crashGateway{t: t, env: env, base: "http://" + addr, logs: &syncBuffer{}}
}

// start runs the gateway and waits until it is ready.
func (g *crashGateway) start() {
	g.t.Helper()
	g.runs++
	cmd := exec.Command(os.Args[0], "serve")
	cmd.Env = g.env
	fmt.Fprintf(g.logs, "--- run %d\n", g.runs)
	cmd.Stdout, cmd.Stderr = g.logs, g.logs
	if err := cmd.Start(); err != nil {
		g.t.Fatalf("starting the gateway: %v", err)
	}
	g.cmd = cmd
	if err := waitReady(g.base+"/readyz", 60*time.Second); err != nil {
		g.kill()
		g.t.Fatalf("run %d: %v\n%s", g.runs, err, g.logs)
	}
}

// kill ends the gateway with SIGKILL: no shutdown, nothing flushed.
func (g *crashGateway) kill() {
	g.t.Helper()
	if err := g.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		g.t.Fatalf("kill: %v", err)
	}
	err := g.cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		g.t.Errorf("run %d ended before it was killed: %v\n%s", g.runs, err, g.logs)
	}
	g.cmd = nil
	g.checkLogs()
}

// stop ends the gateway as an operator does, with SIGTERM; it must stop
// cleanly.
func (g *crashGateway) stop() {
	g.t.Helper()
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		g.t.Fatalf("stop: %v", err)
	}
	if err := g.cmd.Wait(); err != nil {
		g.t.Errorf("run %d did not stop cleanly: %v\n%s", g.runs, err, g.logs)
	}
	g.cmd = nil
	g.checkLogs()
}

func (g *crashGateway) stopIfRunning() {
	if g.cmd != nil {
		_ = g.cmd.Process.Signal(syscall.SIGKILL)
		_ = g.cmd.Wait()
	}
}

// checkLogs fails the test on a data race the child's race detector found,
// or an error it logged, since the last check. A request whose client gave
// up is logged as information, not as an error.
func (g *crashGateway) checkLogs() {
	g.t.Helper()
	all := g.logs.String()
	logs := all[g.read:]
	g.read = len(all)
	if strings.Contains(logs, "WARNING: DATA RACE") {
		g.t.Fatalf("the gateway has a data race:\n%s", logs)
	}
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"level":"ERROR"`) {
			g.t.Errorf("the gateway logged an error: %s", line)
		}
	}
}

// crashReferral is a referral a practice sent and got a 2xx for.
type crashReferral struct {
	practiceKey string
	system      string // of the referral identifier
	identifier  string
	nhsNumber   string
	requestID   string // of the 2xx
	created     bool   // the 2xx created it (not a resend of one stored)
	requestRef  string // ServiceRequest/{id}
	patientRef  string // Patient/{id}
}

// crashUpdate is a Task update that got a 2xx.
type crashUpdate struct {
	task      string // its id
	version   int    // the version the 2xx's ETag named
	status    string
	requestID string
}

// taskRef is a referral whose Task an updater is to work.
type taskRef struct {
	requestRef  string
	providerKey string
}

// crashClient is every client of the test: practices sending referrals and
// providers working Tasks, recording what got a 2xx.
type crashClient struct {
	t       *testing.T
	base    string
	http    *http.Client
	fixture string
	nhs     atomic.Uint64 // the next nine-digit NHS number prefix
	mark    string
	seq     atomic.Uint64
	tasks   chan taskRef

	mu        sync.Mutex
	referrals []crashReferral
	updates   []crashUpdate
	rng       *rand.Rand

	retried atomic.Int64
	replays atomic.Int64
	// lost counts writes that landed but whose answer the kill took: a
	// resent referral answered as stored before, an update found done.
	lost atomic.Int64
}

func newCrashClient(t *testing.T, base string, seed uint64) *crashClient {
	t.Helper()
	fixture, err := os.ReadFile(referralFixture)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"SP-2026-000123", "9434765919", "A81001", "a81001"} {
		if !bytes.Contains(fixture, []byte(want)) {
			t.Fatalf("the referral fixture has changed: no %q to replace", want)
		}
	}
	c := &crashClient{
		t: t, base: base, fixture: string(fixture), tasks: make(chan taskRef, 100_000),
		mark: strconv.FormatUint(seed%1_000_000, 36), rng: rand.New(rand.NewPCG(seed, 1)),
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}},
	}
	c.nhs.Store(900_000_000 + seed%90_000_000)
	return c
}

// nextNHSNumber returns a valid NHS number not used before in the run: a
// nine-digit prefix and the check digit the gateway accepts.
func (c *crashClient) nextNHSNumber() string {
	for {
		prefix := fmt.Sprintf("%09d", c.nhs.Add(1)%1_000_000_000)
		for d := range 10 {
			if s := prefix + strconv.Itoa(d); gateway.CheckNHSNumber(s, false) == nil {
				return s
			}
		}
	}
}

type crashResponse struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request with a fresh X-Request-Id, which it returns.
func (c *crashClient) do(method, path, key string, body []byte, header map[string]string) (crashResponse, string, error) {
	return c.doContext(context.Background(), method, path, key, body, header)
}

func (c *crashClient) doContext(ctx context.Context, method, path, key string, body []byte, header map[string]string) (crashResponse, string, error) {
	id := fmt.Sprintf("crash-%s-%d", c.mark, c.seq.Add(1))
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return crashResponse{}, id, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("X-Request-Id", id)
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return crashResponse{}, id, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return crashResponse{}, id, err
	}
	return crashResponse{status: res.StatusCode, header: res.Header, body: b}, id, nil
}

// must sends a request until it gets an answer, as a client does while the
// gateway restarts; a 5xx counts as no answer (a dying gateway may give
// one). It gives up, failing the test, after a minute.
func (c *crashClient) must(method, path, key string, body []byte, header map[string]string) crashResponse {
	res, _ := c.mustWithID(method, path, key, body, header)
	return res
}

func (c *crashClient) mustWithID(method, path, key string, body []byte, header map[string]string) (crashResponse, string) {
	deadline := time.Now().Add(time.Minute)
	for {
		res, id, err := c.do(method, path, key, body, header)
		if err == nil && res.status < 500 {
			return res, id
		}
		if time.Now().After(deadline) {
			c.t.Errorf("%s %s: no answer after a minute: %v %d %s", method, path, err, res.status, res.body)
			return crashResponse{status: 599}, id
		}
		c.retried.Add(1)
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *crashClient) chance(p float64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rng.Float64() < p
}

// impatient sends a request that gives up after a few milliseconds, as a
// client with a short timeout does: it may or may not have been stored.
func (c *crashClient) impatient(method, path, key string, body []byte, header map[string]string) {
	c.mu.Lock()
	wait := time.Duration(2+c.rng.IntN(40)) * time.Millisecond
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, _, _ = c.doContext(ctx, method, path, key, body, header)
}

// intake sends one new referral from the practice with key, resending the
// same Bundle until it is answered, and records it; now and then it sends
// it once more and checks the answer is the same referral.
func (c *crashClient) intake(ctx context.Context, key string) {
	practice := strings.ToUpper(strings.TrimPrefix(key, "dev-practice-"))
	identifier := fmt.Sprintf("CRASH-%s-%d", c.mark, c.seq.Add(1))
	nhs := c.nextNHSNumber()
	body := strings.NewReplacer("SP-2026-000123", identifier, "9434765919", nhs,
		"A81001", practice, "a81001", strings.ToLower(practice)).Replace(c.fixture)
	if c.chance(crashImpatient) {
		c.impatient(http.MethodPost, "/fhir", key, []byte(body), nil)
	}
	res, id := c.mustWithID(http.MethodPost, "/fhir", key, []byte(body), nil)
	if res.status != http.StatusOK {
		if res.status != 599 {
			c.t.Errorf("referral %s: %d %s", identifier, res.status, res.body)
		}
		return
	}
	r, err := readTransactionResponse(res.body)
	if err != nil {
		c.t.Errorf("referral %s: %v\n%s", identifier, err, res.body)
		return
	}
	r.practiceKey, r.identifier, r.nhsNumber, r.requestID = key, identifier, nhs, id
	if !r.created {
		c.lost.Add(1) // the identifier is new: an earlier attempt (killed or given up) stored it
	}
	r.system = "https://practice-" + strings.ToLower(practice) + ".example.org/referrals"
	c.mu.Lock()
	c.referrals = append(c.referrals, r)
	c.mu.Unlock()
	provider := crashProviderA
	if practice != "A81001" {
		provider = crashProviderB
	}
	select {
	case c.tasks <- taskRef{requestRef: r.requestRef, providerKey: provider}:
	default:
	}
	if ctx.Err() == nil && c.chance(crashReplay) {
		c.replays.Add(1)
		res := c.must(http.MethodPost, "/fhir", key, []byte(body), nil)
		again, err := readTransactionResponse(res.body)
		switch {
		case res.status != http.StatusOK || err != nil:
			c.t.Errorf("referral %s sent again: %d %v %s", identifier, res.status, err, res.body)
		case again.created || again.requestRef != r.requestRef || again.patientRef != r.patientRef:
			c.t.Errorf("referral %s sent again became %s (%s), not %s (%s)", identifier, again.requestRef, again.patientRef, r.requestRef, r.patientRef)
		}
	}
}

// readTransactionResponse finds the ServiceRequest and Patient of a referral
// Bundle's answer, and whether the ServiceRequest was created by it.
func readTransactionResponse(body []byte) (crashReferral, error) {
	var b struct {
		Type  string `json:"type"`
		Entry []struct {
			Response struct {
				Status   string `json:"status"`
				Location string `json:"location"`
			} `json:"response"`
		} `json:"entry"`
	}
	var r crashReferral
	if err := json.Unmarshal(body, &b); err != nil || b.Type != "transaction-response" {
		return r, fmt.Errorf("not a transaction-response Bundle: %v", err)
	}
	for _, e := range b.Entry {
		parts := strings.Split(e.Response.Location, "/")
		if len(parts) < 2 {
			continue
		}
		ref := parts[0] + "/" + parts[1]
		switch parts[0] {
		case gateway.TypeServiceRequest:
			r.requestRef, r.created = ref, e.Response.Status == "201 Created"
		case gateway.TypePatient:
			r.patientRef = ref
		}
	}
	if r.requestRef == "" || r.patientRef == "" {
		return r, errors.New("the answer names no ServiceRequest or no Patient")
	}
	return r, nil
}

// crashTask is what an updater knows of a Task.
type crashTask struct {
	id      string
	version int
	status  string
}

// readTask reads a Task's current version and status, through restarts.
func (c *crashClient) readTask(key, path string) (crashTask, bool) {
	res := c.must(http.MethodGet, path, key, nil, nil)
	if res.status != http.StatusOK {
		c.t.Errorf("GET %s: %d %s", path, res.status, res.body)
		return crashTask{}, false
	}
	var doc struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		Status       string `json:"status"`
		Meta         struct {
			VersionID string `json:"versionId"`
		} `json:"meta"`
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(res.body, &doc); err != nil {
		c.t.Errorf("GET %s: %v", path, err)
		return crashTask{}, false
	}
	if doc.ResourceType == gateway.TypeBundle {
		if len(doc.Entry) != 1 {
			c.t.Errorf("GET %s: %d Tasks, want 1", path, len(doc.Entry))
			return crashTask{}, false
		}
		if err := json.Unmarshal(doc.Entry[0].Resource, &doc); err != nil {
			c.t.Errorf("GET %s: %v", path, err)
			return crashTask{}, false
		}
	}
	v, err := strconv.Atoi(doc.Meta.VersionID)
	if err != nil || doc.ID == "" {
		c.t.Errorf("GET %s: no Task id or version: %s", path, res.body)
		return crashTask{}, false
	}
	return crashTask{id: doc.ID, version: v, status: doc.Status}, true
}

// The updates a provider makes to each Task, in order, as JSON Patches.
var crashSteps = []struct {
	status string
	patch  string
}{
	{"accepted", `[{"op":"replace","path":"/status","value":"accepted"}]`},
	{"in-progress", `[{"op":"replace","path":"/status","value":"in-progress"},{"op":"add","path":"/businessStatus","value":{"coding":[{"system":"https://fhir.spgateway.org/CodeSystem/business-status","code":"first-contact-made"}]}}]`},
	{"completed", `[{"op":"replace","path":"/status","value":"completed"}]`},
}

// work takes the referral's Task from requested to completed with If-Match,
// as its provider does. After a connection error or a 412 it reads the
// Task again, as a client that does not know whether its update landed
// must: the update is done if the Task has its status.
func (c *crashClient) work(ctx context.Context, ref taskRef) {
	tk, ok := c.readTask(ref.providerKey, "/fhir/Task?focus="+url.QueryEscape(ref.requestRef))
	if !ok {
		return
	}
	path := "/fhir/Task/" + tk.id
	for i := 0; i < len(crashSteps) && ctx.Err() == nil; {
		step := crashSteps[i]
		header := map[string]string{"Content-Type": "application/json-patch+json", "If-Match": `W/"` + strconv.Itoa(tk.version) + `"`}
		if c.chance(crashImpatient) {
			c.impatient(http.MethodPatch, path, ref.providerKey, []byte(step.patch), header)
		}
		res, id, err := c.do(http.MethodPatch, path, ref.providerKey, []byte(step.patch), header)
		switch {
		case err == nil && res.status == http.StatusOK:
			v, ok := parseETag(res.header.Get("ETag"))
			if !ok || v <= tk.version {
				c.t.Errorf("PATCH %s to %s: ETag %q after version %d", path, step.status, res.header.Get("ETag"), tk.version)
				return
			}
			c.mu.Lock()
			c.updates = append(c.updates, crashUpdate{task: tk.id, version: v, status: step.status, requestID: id})
			c.mu.Unlock()
			tk.version = v
			i++
		case err != nil || res.status >= 500 || res.status == http.StatusPreconditionFailed:
			if err != nil || res.status >= 500 {
				c.retried.Add(1)
				time.Sleep(20 * time.Millisecond)
			}
			if tk, ok = c.readTask(ref.providerKey, path); !ok {
				return
			}
			if tk.status == step.status {
				c.lost.Add(1)
				i++ // it landed; the answer was lost
			}
		default:
			c.t.Errorf("PATCH %s to %s: %d %s", path, step.status, res.status, res.body)
			return
		}
	}
}

// parseETag reads W/"n".
func parseETag(tag string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(tag, `W/"`), `"`))
	return n, err == nil
}

func (c *crashClient) referralCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.referrals)
}

func (c *crashClient) updateCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.updates)
}

// parallel runs fn for each of n items on 8 goroutines.
func parallel(n int, fn func(i int)) {
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		})
	}
	wg.Wait()
}

// crashDelivery is one request the receiver took.
type crashDelivery struct {
	id          string
	destination string // "provider:PRV01" or "subscription"
	taskVersion string
	about       string // the case or Task the delivery is about
}

// crashReceiver is PRV01's webhook and A81001's Subscription endpoint. It
// checks each delivery's signature (or the Subscription's header), records
// it, and fails one in twenty to make the outbox retry.
type crashReceiver struct {
	mu         sync.Mutex
	rng        *rand.Rand
	deliveries []crashDelivery
	refused    []string
}

func newCrashReceiver(seed uint64) *crashReceiver {
	return &crashReceiver{rng: rand.New(rand.NewPCG(seed, 2))}
}

func (r *crashReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	d := crashDelivery{id: req.Header.Get(webhook.HeaderDelivery), taskVersion: req.Header.Get(webhook.HeaderTaskVersion)}
	var problem string
	switch {
	case req.URL.Path == "/hook":
		d.destination = gateway.ProviderDestination("PRV01")
		if err := webhook.Verify([]byte(testSecret), req.Header.Get(webhook.HeaderTimestamp), req.Header.Get(webhook.HeaderSignature), body, time.Now(), 0); err != nil {
			problem = "webhook delivery " + d.id + ": " + err.Error()
		}
		var rec map[string]any
		if err := json.Unmarshal(body, &rec); err != nil {
			problem = "webhook delivery " + d.id + " is not JSON"
		}
		d.about, _ = rec["CASE_REF"].(string)
	case strings.HasPrefix(req.URL.Path, "/sub/Task/"):
		d.destination = "subscription"
		d.about = strings.TrimPrefix(req.URL.Path, "/sub/Task/")
		if req.Header.Get("Authorization") != crashSubToken {
			problem = "Subscription delivery " + d.id + " without the Subscription's header"
		}
	default:
		problem = req.Method + " " + req.URL.Path + ": not a delivery"
	}
	if d.id == "" || d.about == "" {
		problem = req.URL.Path + ": a delivery with no id or subject"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if problem != "" {
		r.refused = append(r.refused, problem)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if r.rng.IntN(20) == 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	r.deliveries = append(r.deliveries, d)
	w.WriteHeader(http.StatusNoContent)
}

// crashDB reads the gateway's database directly, for what the API does not
// show: every row, every version.
type crashDB struct {
	t  *testing.T
	db *sql.DB
}

func openCrashDB(t *testing.T, engine, dsn string) *crashDB {
	t.Helper()
	driver := "pgx"
	if engine == store.DriverSQLite {
		driver, dsn = "sqlite", "file:"+filepath.ToSlash(dsn)+"?_pragma=busy_timeout(5000)&_pragma=query_only(1)"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &crashDB{t: t, db: db}
}

// rows runs query and returns every row's columns as strings.
func (d *crashDB) rows(query string) [][]string {
	d.t.Helper()
	rows, err := d.db.Query(query)
	if err != nil {
		d.t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out [][]string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			d.t.Fatalf("%s: %v", query, err)
		}
		row := make([]string, len(cols))
		for i, v := range vals {
			row[i] = v.String
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		d.t.Fatalf("%s: %v", query, err)
	}
	return out
}

// waitOutboxDrained waits until every outbox event is delivered.
func waitOutboxDrained(t *testing.T, db *crashDB, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		rows := db.rows(`SELECT status, COUNT(*) FROM outbox GROUP BY status`)
		left := 0
		for _, r := range rows {
			if r[0] != gateway.OutboxDelivered {
				n, _ := strconv.Atoi(r[1])
				left += n
			}
		}
		if left == 0 {
			t.Logf("outbox drained: %v", rows)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the outbox did not drain within %s: %v", within, rows)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// distinct groups the second column's values by the first's.
func distinct(rows [][]string) map[string][]string {
	m := map[string][]string{}
	for _, r := range rows {
		if !slices.Contains(m[r[0]], r[1]) {
			m[r[0]] = append(m[r[0]], r[1])
		}
	}
	return m
}

// checkReferrals: every referral that got a 2xx is there, found by its
// identifier, once, with one Task and one Patient, in every version ever
// stored, not only the current ones.
func checkReferrals(t *testing.T, c *crashClient, db *crashDB) {
	t.Helper()
	requests := distinct(db.rows(`SELECT i.value, v.id FROM resource_tokens i JOIN resource_versions v ON v.seq = i.seq WHERE i.param = 'identifier' AND v.type = 'ServiceRequest'`))
	patients := distinct(db.rows(`SELECT i.value, v.id FROM resource_tokens i JOIN resource_versions v ON v.seq = i.seq WHERE i.param = 'identifier' AND v.type = 'Patient'`))
	tasks := distinct(db.rows(`SELECT referral_id, id FROM resource_versions WHERE type = 'Task'`))
	// Every client resent its referral until it was answered, so the
	// database holds the acknowledged referrals and nothing besides: one
	// of each resource a referral writes.
	counts := map[string]string{}
	for _, r := range db.rows(`SELECT type, COUNT(DISTINCT id) FROM resource_versions GROUP BY type`) {
		counts[r[0]] = r[1]
	}
	for _, typ := range []string{gateway.TypeServiceRequest, gateway.TypeTask, gateway.TypePatient, "Condition", "Consent"} {
		if counts[typ] != strconv.Itoa(len(c.referrals)) {
			t.Errorf("%q resources of type %s for %d referrals", counts[typ], typ, len(c.referrals))
		}
	}
	for _, r := range c.referrals {
		if ids := requests[r.identifier]; len(ids) != 1 || "ServiceRequest/"+ids[0] != r.requestRef {
			t.Errorf("referral %s: ServiceRequests %v in the database, want only %s", r.identifier, ids, r.requestRef)
		}
		if ids := patients[r.nhsNumber]; len(ids) != 1 || "Patient/"+ids[0] != r.patientRef {
			t.Errorf("referral %s: Patients %v with its NHS number, want only %s", r.identifier, ids, r.patientRef)
		}
		if ids := tasks[strings.TrimPrefix(r.requestRef, "ServiceRequest/")]; len(ids) != 1 {
			t.Errorf("referral %s: Tasks %v, want one", r.identifier, ids)
		}
	}
	// And through the API, as the practice finds them: a sample, since an
	// identifier search costs more than the database's look-up above.
	sample := slices.Clone(c.referrals)
	c.rng.Shuffle(len(sample), func(i, j int) { sample[i], sample[j] = sample[j], sample[i] })
	sample = sample[:min(len(sample), crashSearchSample)]
	parallel(len(sample), func(i int) {
		r := sample[i]
		for _, q := range []struct{ path, want string }{
			{"/fhir/ServiceRequest?identifier=" + url.QueryEscape(r.system+"|"+r.identifier), r.requestRef},
			{"/fhir/Patient?identifier=" + url.QueryEscape(nhsSystem+"|"+r.nhsNumber), r.patientRef},
		} {
			res := c.must(http.MethodGet, q.path, r.practiceKey, nil, nil)
			var page struct {
				Entry []struct {
					FullURL string `json:"fullUrl"`
					Search  struct {
						Mode string `json:"mode"`
					} `json:"search"`
				} `json:"entry"`
			}
			_ = json.Unmarshal(res.body, &page)
			var found []string
			for _, e := range page.Entry {
				if e.Search.Mode == "match" {
					found = append(found, e.FullURL)
				}
			}
			if res.status != http.StatusOK || len(found) != 1 || !strings.HasSuffix(found[0], "/"+q.want) {
				t.Errorf("GET %s: %d, matches %v, want only %s", q.path, res.status, found, q.want)
			}
		}
	})
}

// checkUpdates: every Task update that got a 2xx is in the Task's history,
// at the version its ETag named, with the status it set.
func checkUpdates(t *testing.T, c *crashClient) {
	t.Helper()
	byTask := map[string][]crashUpdate{}
	for _, u := range c.updates {
		byTask[u.task] = append(byTask[u.task], u)
	}
	ids := make([]string, 0, len(byTask))
	for id := range byTask {
		ids = append(ids, id)
	}
	keys := []string{crashProviderA, crashProviderB}
	parallel(len(ids), func(i int) {
		id := ids[i]
		var res crashResponse
		for _, key := range keys { // the owner's key reads it; the other gets 404
			if res = c.must(http.MethodGet, "/fhir/Task/"+id+"/_history?_count=100", key, nil, nil); res.status == http.StatusOK {
				break
			}
		}
		var hist struct {
			Entry []struct {
				Resource struct {
					Status string `json:"status"`
					Meta   struct {
						VersionID string `json:"versionId"`
					} `json:"meta"`
				} `json:"resource"`
			} `json:"entry"`
		}
		_ = json.Unmarshal(res.body, &hist)
		versions := map[string]string{}
		for _, e := range hist.Entry {
			versions[e.Resource.Meta.VersionID] = e.Resource.Status
		}
		for _, u := range byTask[id] {
			if got, ok := versions[strconv.Itoa(u.version)]; !ok || got != u.status {
				t.Errorf("Task %s: update to %s acknowledged as version %d; the history has %v (%d)", id, u.status, u.version, versions, res.status)
			}
		}
	})
}

// checkAudit: every write that got a 2xx has its audit event, written with
// it, naming what it wrote. A referral sent again and answered with the
// stored one wrote nothing; its first, created, answer is what is checked.
func checkAudit(t *testing.T, c *crashClient, db *crashDB) {
	t.Helper()
	audited := map[string][]string{} // request id → entities, of successes
	for _, r := range db.rows(`SELECT e.request_id, n.ref FROM audit_events e JOIN audit_refs n ON n.audit_seq = e.seq WHERE e.outcome = 'success'`) {
		audited[r[0]] = append(audited[r[0]], r[1])
	}
	checked := 0
	for _, r := range c.referrals {
		if !r.created {
			continue // its write's answer was lost; the retry found it
		}
		checked++
		if refs := audited[r.requestID]; !slices.Contains(refs, r.requestRef) || !slices.Contains(refs, r.patientRef) {
			t.Errorf("referral %s (request %s): audited entities %v, want %s and %s", r.identifier, r.requestID, refs, r.requestRef, r.patientRef)
		}
	}
	for _, u := range c.updates {
		checked++
		if refs := audited[u.requestID]; !slices.Contains(refs, "Task/"+u.task) {
			t.Errorf("Task %s update to %s (request %s): audited entities %v", u.task, u.status, u.requestID, refs)
		}
	}
	if checked == 0 {
		t.Error("no acknowledged write to check the audit trail for")
	}
}

// checkDeliveries: every outbox event was delivered at least once, under
// its own id; a repeat carried the same id; no event is doubled (two
// events for one change), and nothing was delivered that is not in the
// outbox.
func checkDeliveries(t *testing.T, recv *crashReceiver, db *crashDB) {
	t.Helper()
	recv.mu.Lock()
	defer recv.mu.Unlock()
	for _, p := range recv.refused {
		t.Errorf("receiver: %s", p)
	}
	type change struct{ destination, about, version string }
	events := map[string]change{}
	byChange := map[change][]string{}
	for _, r := range db.rows(`SELECT id, destination, kind, order_key, task_version, status FROM outbox`) {
		ch := change{r[1], r[3], r[4]}
		if strings.HasPrefix(ch.destination, gateway.DestinationSubscription+":") {
			ch.destination = "subscription"
		}
		events[r[0]] = ch
		byChange[ch] = append(byChange[ch], r[0])
		if r[5] != gateway.OutboxDelivered {
			t.Errorf("outbox event %s (%s) is %s", r[0], r[2], r[5])
		}
	}
	for ch, ids := range byChange {
		if len(ids) > 1 {
			t.Errorf("%d outbox events for one change %v: %v", len(ids), ch, ids)
		}
	}
	got := map[string]int{}
	for _, d := range recv.deliveries {
		got[d.id]++
		ch, ok := events[d.id]
		switch {
		case !ok:
			t.Errorf("delivery %s (%s %s) is of no outbox event", d.id, d.destination, d.about)
		case ch != change{d.destination, d.about, d.taskVersion}:
			t.Errorf("delivery %s went to %s about %s version %s; its event is for %s about %s version %s",
				d.id, d.destination, d.about, d.taskVersion, ch.destination, ch.about, ch.version)
		}
	}
	repeats := 0
	for id := range events {
		switch n := got[id]; {
		case n == 0:
			t.Errorf("outbox event %s %v was never delivered", id, events[id])
		case n > 1:
			repeats++
		}
	}
	t.Logf("%d outbox events, %d deliveries received, %d events delivered more than once (same id each time)", len(events), len(recv.deliveries), repeats)
	if len(events) == 0 {
		t.Error("the outbox is empty: nothing was delivered to check")
	}
}
