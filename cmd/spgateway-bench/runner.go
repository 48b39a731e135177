package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// credential is one simulated client: its organisation's code and its
// bearer key.
type credential struct {
	Org, Key string
}

// target is what the scenarios talk to: the gateway (and, for the
// baselines, the baseline server) and the simulated clients.
type target struct {
	base      string // gateway root, e.g. http://127.0.0.1:8080
	baseline  string // baseline server root
	client    *http.Client
	practices []credential
	providers []credential
	referrals *referralBuilder
	seed      int // referrals sent per practice before poll, update and mixed
}

func newClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// scenario is a kind of load. Each call of step sends exactly one request
// through the worker; it returns false when the scenario has nothing left
// to send (the update scenario out of Tasks).
type scenario interface {
	prepare(ctx context.Context, t *target, conns int) error
	step(w *worker) bool
}

// worker is one connection's client, sending one request at a time. Its
// fields keep the state a scenario carries from one request to the next.
type worker struct {
	id  int
	t   *target
	rng *rand.Rand
	rec *recorder // nil while warming up

	next string // poll: the next page, "" to start again
	task *task  // update: the Task being worked, nil for none
}

// do sends a request and reads the whole response, timing it when
// recording. status is 0 for a transport error.
func (w *worker) do(kind, method, url, key string, body []byte, headers ...string) (status int, header http.Header, resp []byte) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		w.fail(kind, 0, []byte(err.Error()))
		return 0, nil, nil
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	req.Header.Set("Accept", "application/fhir+json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	start := time.Now()
	res, err := w.t.client.Do(req)
	if err == nil {
		resp, err = io.ReadAll(res.Body)
		res.Body.Close()
	}
	elapsed := time.Since(start)
	if err != nil {
		w.fail(kind, 0, []byte(err.Error()))
		return 0, nil, nil
	}
	if w.rec != nil {
		w.rec.latencies[kind] = append(w.rec.latencies[kind], elapsed)
		w.rec.counts.count(res.StatusCode)
	}
	if res.StatusCode >= 300 && res.StatusCode != http.StatusPreconditionFailed {
		w.fail(kind, res.StatusCode, resp)
	}
	return res.StatusCode, res.Header, resp
}

// fail keeps the first error a worker saw, to be shown with the figures.
// A transport error is counted here, as it has no status to count.
func (w *worker) fail(kind string, status int, body []byte) {
	if w.rec == nil {
		return
	}
	if status == 0 {
		w.rec.latencies[kind] = append(w.rec.latencies[kind], 0)
		w.rec.counts.count(0)
	}
	if w.rec.firstError == "" {
		const limit = 300
		if len(body) > limit {
			body = body[:limit]
		}
		w.rec.firstError = fmt.Sprintf("%s: %d %s", kind, status, body)
	}
}

// runOptions says how long and how hard to run.
type runOptions struct {
	conns    int
	duration time.Duration // used when requests is 0
	requests int
	warmup   time.Duration
}

// runScenario prepares sc, warms up, then measures: conns workers each
// sending requests one after another until the duration has passed or the
// request count is reached.
func runScenario(ctx context.Context, name string, sc scenario, t *target, o runOptions) (*Result, error) {
	if err := sc.prepare(ctx, t, o.conns); err != nil {
		return nil, fmt.Errorf("%s: preparing: %w", name, err)
	}
	workers := make([]*worker, o.conns)
	for i := range workers {
		workers[i] = &worker{id: i, t: t, rng: rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))}
	}
	if o.warmup > 0 {
		phase(ctx, sc, workers, o.warmup, 0)
	}
	for _, w := range workers {
		w.rec = newRecorder()
	}
	start := time.Now()
	exhausted := phase(ctx, sc, workers, o.duration, o.requests)
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	recs := make([]*recorder, len(workers))
	for i, w := range workers {
		recs[i] = w.rec
	}
	r := summarise(name, recs, elapsed)
	r.Connections = o.conns
	r.StoppedEarly = exhausted
	return r, nil
}

// phase runs the workers until d has passed (when limit is 0) or limit
// requests have been sent. It reports whether the scenario ran out of work.
func phase(ctx context.Context, sc scenario, workers []*worker, d time.Duration, limit int) bool {
	var stop, exhausted atomic.Bool
	var issued atomic.Int64
	if limit == 0 {
		timer := time.AfterFunc(d, func() { stop.Store(true) })
		defer timer.Stop()
	}
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			for !stop.Load() && ctx.Err() == nil {
				if limit > 0 && issued.Add(1) > int64(limit) {
					return
				}
				if !sc.step(w) {
					exhausted.Store(true)
					return
				}
			}
		})
	}
	wg.Wait()
	return exhausted.Load()
}

// summarise merges the workers' records into a Result.
func summarise(name string, recs []*recorder, elapsed time.Duration) *Result {
	r := &Result{Scenario: name, Seconds: elapsed.Seconds()}
	var all []time.Duration
	byKind := map[string][]time.Duration{}
	pages, matches := 0, 0
	for _, rec := range recs {
		r.Status.add(rec.counts)
		for kind, ds := range rec.latencies {
			byKind[kind] = append(byKind[kind], ds...)
			all = append(all, ds...)
		}
		pages += rec.pages
		matches += rec.matches
		if r.FirstError == "" {
			r.FirstError = rec.firstError
		}
	}
	r.Requests = len(all)
	if elapsed > 0 {
		r.Throughput = float64(r.Requests) / elapsed.Seconds()
	}
	r.Latency = distribution(all)
	r.Errors = r.Status.Errors()
	if len(byKind) > 1 {
		r.Kinds = map[string]KindResult{}
		for kind, ds := range byKind {
			r.Kinds[kind] = KindResult{Requests: len(ds), Latency: distribution(ds)}
		}
	}
	if pages > 0 {
		r.PollPageTasks = float64(matches) / float64(pages)
	}
	return r
}
