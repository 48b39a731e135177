// Command spgateway-bench is a load generator for a running spgateway. It
// drives the gateway as simulated practices and providers would (intake,
// poll, update, mixed) and, side by side, two floors served by this binary
// (baseline-intake: a minimal gin handler that parses the ServiceRequest
// with the FHIR models and inserts one row into SQLite; baseline-hello: gin
// hello world), so that every run reports the gateway's rates as ratios of
// the floors measured on the same machine at the same time.
//
//	spgateway-bench [flags] [SCENARIO ...]   run scenarios (default: all) against -url
//	spgateway-bench serve-baseline [-listen ADDR] [-dir DIR]
//	                                         serve the baselines on their own
//
// Scenarios: baseline-hello, baseline-intake, intake, poll, update, mixed.
// Run it from the repository root (it reads the referral fixture from
// testdata/fixtures). It exits 1 when any request failed.
//
// It is the one package outside fhir/ and mapping/ that imports gin and the
// FHIR models (as r4, in baseline.go), which STYLE.md keeps behind those
// two: the baseline must be what a service would be without the gateway's
// layers, built on the same libraries, or its rates would not be a floor
// for the gateway's. The load itself goes over HTTP and uses neither.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "spgateway-bench:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage: spgateway-bench [flags] [" + strings.Join(scenarioNames, " | ") + " ...] | serve-baseline [flags]")

// errRequestsFailed says that the run saw failed requests.
var errRequestsFailed = errors.New("requests failed")

// The development clients of SPEC 4.1.
const (
	devPractices = "A81001=dev-practice-a81001,A81002=dev-practice-a81002"
	devProviders = "PRV01=dev-provider-prv01,PRV02=dev-provider-prv02"
)

// options are the flags of a load run.
type options struct {
	url, baselineURL     string
	practices, providers string
	fixture              string
	conns, requests      int
	duration, warmup     time.Duration
	seed, runs, pid      int
	json                 bool
	baselineDir          string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "serve-baseline" {
		return serveBaseline(ctx, args[1:], stdout, stderr)
	}
	var o options
	fs := flag.NewFlagSet("spgateway-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.url, "url", "http://127.0.0.1:8080", "the gateway's root URL")
	fs.StringVar(&o.practices, "practices", devPractices, "practice clients, CODE=KEY,... (codes the gateway's configuration knows)")
	fs.StringVar(&o.providers, "providers", devProviders, "provider clients, CODE=KEY,...")
	fs.StringVar(&o.fixture, "fixture", "testdata/fixtures/referral-bundle.json", "the referral Bundle to vary")
	fs.IntVar(&o.conns, "c", 32, "connections (each sends one request at a time)")
	fs.DurationVar(&o.duration, "d", 10*time.Second, "how long each scenario is measured")
	fs.IntVar(&o.requests, "n", 0, "requests per scenario instead of -d")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured load before each scenario")
	fs.IntVar(&o.seed, "seed", 100, "referrals sent per practice (unmeasured) before poll, update and mixed")
	fs.IntVar(&o.runs, "runs", 1, "rounds over the scenarios; figures are the median of the rounds")
	fs.IntVar(&o.pid, "pid", 0, "the gateway's process id, to report its peak RSS (Linux /proc)")
	fs.BoolVar(&o.json, "json", false, "write the report as JSON")
	fs.StringVar(&o.baselineURL, "baseline-url", "", "a baseline served by serve-baseline (default: one in this process)")
	fs.StringVar(&o.baselineDir, "baseline-dir", "", "where the in-process baseline keeps its SQLite file (default: a temporary folder)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	names := fs.Args()
	if len(names) == 0 {
		names = scenarioNames
	}
	rep, err := load(ctx, o, names)
	if err != nil {
		return err
	}
	if o.json {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		printText(stdout, rep)
	}
	if rep.Errors > 0 {
		fmt.Fprintf(stderr, "\n*** ERRORS: %d requests failed ***\n", rep.Errors)
		for _, r := range rep.Summary.Results {
			if r.Errors > 0 {
				fmt.Fprintf(stderr, "  %s: %d failed (4xx %d, 5xx %d, transport %d, other %d); first: %s\n",
					r.Scenario, r.Errors, r.Status.Client4xx, r.Status.Server5xx, r.Status.Transport, r.Status.Other, r.FirstError)
			}
		}
		return fmt.Errorf("%w: %d", errRequestsFailed, rep.Errors)
	}
	return nil
}

// load runs the named scenarios o.runs times.
func load(ctx context.Context, o options, names []string) (*Report, error) {
	if o.conns < 1 || o.runs < 1 || o.requests < 0 || o.seed < 0 || (o.requests == 0 && o.duration <= 0) {
		return nil, fmt.Errorf("%w: -c and -runs must be at least 1, and -n or -d positive", errUsage)
	}
	needBaseline := false
	for _, n := range names {
		if _, err := newScenario(n); err != nil {
			return nil, fmt.Errorf("%w: %w", errUsage, err)
		}
		needBaseline = needBaseline || strings.HasPrefix(n, "baseline-")
	}
	t, err := newTarget(o)
	if err != nil {
		return nil, err
	}
	if needBaseline && t.baseline == "" {
		dir := o.baselineDir
		if dir == "" {
			if dir, err = os.MkdirTemp("", "spgateway-bench-"); err != nil {
				return nil, err
			}
			defer os.RemoveAll(dir)
		}
		root, stop, err := startBaseline(dir)
		if err != nil {
			return nil, err
		}
		defer stop()
		t.baseline = root
	}
	rep := &Report{URL: o.url, Connections: o.conns}
	ro := runOptions{conns: o.conns, duration: o.duration, requests: o.requests, warmup: o.warmup}
	for range o.runs {
		var rd Round
		for _, n := range names {
			sc, _ := newScenario(n) // fresh state (Task pools) each round
			r, err := runScenario(ctx, n, sc, t, ro)
			if err != nil {
				return nil, err
			}
			if o.pid > 0 && !strings.HasPrefix(n, "baseline-") {
				if r.PeakRSSMB, err = peakRSS(o.pid); err != nil {
					return nil, err
				}
			}
			rd.Results = append(rd.Results, r)
		}
		rd.Ratios = ratios(rd.Results)
		rep.Rounds = append(rep.Rounds, rd)
	}
	rep.Summary = summariseRounds(rep.Rounds)
	rep.Targets = targets(rep.Summary)
	for _, r := range rep.Summary.Results {
		rep.Errors += r.Errors
	}
	return rep, nil
}

// newTarget reads the clients and the fixture.
func newTarget(o options) (*target, error) {
	practices, err := parseCredentials(o.practices)
	if err != nil {
		return nil, fmt.Errorf("%w: -practices: %w", errUsage, err)
	}
	providers, err := parseCredentials(o.providers)
	if err != nil {
		return nil, fmt.Errorf("%w: -providers: %w", errUsage, err)
	}
	fixture, err := os.ReadFile(o.fixture)
	if err != nil {
		return nil, fmt.Errorf("reading the referral fixture (run from the repository root, or set -fixture): %w", err)
	}
	rb, err := newReferralBuilder(fixture)
	if err != nil {
		return nil, err
	}
	return &target{
		base:      strings.TrimSuffix(o.url, "/"),
		baseline:  strings.TrimSuffix(o.baselineURL, "/"),
		client:    newClient(o.conns),
		practices: practices,
		providers: providers,
		referrals: rb,
		seed:      o.seed,
	}, nil
}

// parseCredentials reads CODE=KEY,CODE=KEY.
func parseCredentials(s string) ([]credential, error) {
	var out []credential
	for part := range strings.SplitSeq(s, ",") {
		org, key, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || org == "" || key == "" {
			return nil, fmt.Errorf("%q is not CODE=KEY", part)
		}
		out = append(out, credential{Org: org, Key: key})
	}
	return out, nil
}

// serveBaseline serves the baselines until ctx ends, for a run that wants
// them in a process of their own (-baseline-url).
func serveBaseline(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve-baseline", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8090", "address to listen on")
	dir := fs.String("dir", "./data/baseline", "folder for the baseline's SQLite file")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	b, err := newBaseline(*dir)
	if err != nil {
		return err
	}
	defer b.Close()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: b.Handler(), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "baseline listening on http://%s (%s, %s)\n", ln.Addr(), baselineIntakePath, baselineHelloPath)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
