package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// The scenarios, in the order a full run takes them: the floors first, then
// the gateway, intake before the scenarios that need referrals.
var scenarioNames = []string{"baseline-hello", "baseline-intake", "intake", "poll", "update", "mixed"}

// newScenario returns the scenario called name.
func newScenario(name string) (scenario, error) {
	switch name {
	case "intake":
		return intake{}, nil
	case "poll":
		return &polls{}, nil
	case "update":
		return &updates{pool: newTaskPool()}, nil
	case "mixed":
		pool := newTaskPool()
		return &mixed{polls: polls{pool: pool}, updates: updates{pool: pool}}, nil
	case "baseline-intake":
		return baselineIntake{}, nil
	case "baseline-hello":
		return baselineHello{}, nil
	}
	return nil, fmt.Errorf("unknown scenario %q (want one of %s)", name, strings.Join(scenarioNames, ", "))
}

// The mixed scenario's day, in requests out of 100: providers poll far more
// than they change Tasks, and each referral is changed about three times
// (accepted, in progress, completed), so updates are three times intakes.
const (
	mixedPolls   = 80
	mixedUpdates = 15
	mixedIntakes = 5
)

// intake posts referral Bundles, each a new referral for a new patient,
// from practices chosen at random.
type intake struct{}

func (intake) prepare(context.Context, *target, int) error { return nil }

func (intake) step(w *worker) bool {
	p := w.t.practices[w.rng.IntN(len(w.t.practices))]
	w.do("intake", http.MethodPost, w.t.base+"/fhir", p.Key, w.t.referrals.Build(p.Org))
	return true
}

// baselineIntake sends the same Bundles to the baseline's minimal handler.
type baselineIntake struct{}

func (baselineIntake) prepare(context.Context, *target, int) error { return nil }

func (baselineIntake) step(w *worker) bool {
	p := w.t.practices[w.rng.IntN(len(w.t.practices))]
	w.do("baseline-intake", http.MethodPost, w.t.baseline+baselineIntakePath, "", w.t.referrals.Build(p.Org))
	return true
}

// baselineHello asks the baseline's hello-world handler.
type baselineHello struct{}

func (baselineHello) prepare(context.Context, *target, int) error { return nil }

func (baselineHello) step(w *worker) bool {
	w.do("baseline-hello", http.MethodGet, w.t.baseline+baselineHelloPath, "", nil)
	return true
}

// pollPath is a provider's poll for new referrals: a page of 50 Tasks with
// their ServiceRequests and Patients.
func pollPath(provider string, count int) string {
	return "/fhir/Task?owner=Organization/" + url.QueryEscape(provider) +
		"&status=requested&_include=Task:focus&_include=Task:patient&_count=" + strconv.Itoa(count)
}

const pollCount = 50

// polls has each worker poll as one provider, following next links to the
// last page and starting again. With a pool, the Tasks it finds go into the
// pool to be worked.
type polls struct {
	pool *taskPool
}

func (p *polls) prepare(ctx context.Context, t *target, conns int) error {
	if err := seed(ctx, t, conns); err != nil {
		return err
	}
	return checkPages(t)
}

func (p *polls) step(w *worker) bool {
	prov := w.t.providers[w.id%len(w.t.providers)]
	u := w.next
	if u == "" {
		u = w.t.base + pollPath(prov.Org, pollCount)
	}
	w.next = ""
	status, _, body := w.do("poll", http.MethodGet, u, prov.Key, nil)
	if status != http.StatusOK {
		return true
	}
	matches := 0
	gjson.GetBytes(body, "entry").ForEach(func(_, e gjson.Result) bool {
		if e.Get("search.mode").String() == "match" {
			matches++
			if p.pool != nil {
				p.pool.offer(&task{id: e.Get("resource.id").String(), version: int(e.Get("resource.meta.versionId").Int()), key: prov.Key})
			}
		}
		return true
	})
	if w.rec != nil {
		w.rec.pages++
		w.rec.matches += matches
	}
	if next := gjson.GetBytes(body, `link.#(relation=="next").url`).String(); next != "" {
		w.next = rebase(w.t.base, next)
	}
	return true
}

// rebase points a link the gateway wrote (with its configured base URL) at
// the address this tool reaches it by.
func rebase(base, link string) string {
	u, err := url.Parse(link)
	if err != nil {
		return ""
	}
	return base + u.RequestURI()
}

// checkPages makes sure each provider's first poll page is full, so that
// the poll scenario measures pages of 50 Tasks.
func checkPages(t *target) error {
	w := &worker{t: t}
	for _, prov := range t.providers {
		status, _, body := w.do("check", http.MethodGet, t.base+pollPath(prov.Org, pollCount), prov.Key, nil)
		if status != http.StatusOK {
			return fmt.Errorf("provider %s cannot poll: %d %.300s", prov.Org, status, body)
		}
		n := 0
		gjson.GetBytes(body, "entry.#.search.mode").ForEach(func(_, m gjson.Result) bool {
			if m.String() == "match" {
				n++
			}
			return true
		})
		if n < pollCount {
			return fmt.Errorf("provider %s has %d new Tasks, fewer than a page of %d: raise -seed, or check that routing sends it referrals from the practices given", prov.Org, n, pollCount)
		}
	}
	return nil
}

// seed sends t.seed referrals from each practice, unmeasured, so that the
// providers have Tasks to poll and update.
func seed(ctx context.Context, t *target, conns int) error {
	jobs := make(chan credential)
	errc := make(chan error, conns)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			w := &worker{id: i, t: t}
			for p := range jobs {
				if status, _, body := w.do("seed", http.MethodPost, t.base+"/fhir", p.Key, t.referrals.Build(p.Org)); status != http.StatusOK {
					errc <- fmt.Errorf("seeding a referral from %s: %d %.300s", p.Org, status, body)
					for range jobs {
					}
					return
				}
			}
		})
	}
feed:
	for range t.seed {
		for _, p := range t.practices {
			select {
			case jobs <- p:
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	return ctx.Err()
}

// task is a Task being moved through its lifecycle by one worker.
type task struct {
	id      string
	version int
	key     string // its owner's key
	step    int    // updates done
	body    []byte // the last version, for the PUT
}

// taskPool holds the Tasks found and not yet taken, each once.
type taskPool struct {
	mu    sync.Mutex
	seen  map[string]bool
	tasks []*task
}

func newTaskPool() *taskPool { return &taskPool{seen: map[string]bool{}} }

func (p *taskPool) offer(tk *task) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if tk.id == "" || p.seen[tk.id] {
		return
	}
	p.seen[tk.id] = true
	p.tasks = append(p.tasks, tk)
}

// take returns the oldest Task not yet taken, or nil.
func (p *taskPool) take() *task {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.tasks) == 0 {
		return nil
	}
	tk := p.tasks[0]
	p.tasks = p.tasks[1:]
	return tk
}

// fill pages through every new Task of each provider (unmeasured) into the
// pool.
func (p *taskPool) fill(t *target) error {
	w := &worker{t: t}
	for _, prov := range t.providers {
		u := t.base + "/fhir/Task?owner=Organization/" + url.QueryEscape(prov.Org) + "&status=requested&_count=500"
		for u != "" {
			status, _, body := w.do("fill", http.MethodGet, u, prov.Key, nil)
			if status != http.StatusOK {
				return fmt.Errorf("listing %s's Tasks: %d %.300s", prov.Org, status, body)
			}
			gjson.GetBytes(body, "entry").ForEach(func(_, e gjson.Result) bool {
				p.offer(&task{id: e.Get("resource.id").String(), version: int(e.Get("resource.meta.versionId").Int()), key: prov.Key})
				return true
			})
			u = ""
			if next := gjson.GetBytes(body, `link.#(relation=="next").url`).String(); next != "" {
				u = rebase(t.base, next)
			}
		}
	}
	return nil
}

// updates moves Tasks through their lifecycle as their owner would: accept
// (JSON Patch), start work with first contact made (JSON Patch), complete
// (PUT of the whole Task), each with If-Match on the version it read. A 412
// (someone else changed the Task) drops the Task; so does an error.
type updates struct {
	pool *taskPool
}

func (u *updates) prepare(ctx context.Context, t *target, conns int) error {
	if err := seed(ctx, t, conns); err != nil {
		return err
	}
	return u.pool.fill(t)
}

const businessStatusSystem = "https://fhir.spgateway.org/CodeSystem/business-status"

// The JSON Patches of the first two updates.
var (
	patchAccept  = []byte(`[{"op":"replace","path":"/status","value":"accepted"}]`)
	patchProgess = []byte(`[{"op":"replace","path":"/status","value":"in-progress"},` +
		`{"op":"add","path":"/businessStatus","value":{"coding":[{"system":"` + businessStatusSystem + `","code":"first-contact-made"}]}}]`)
)

// errNoBody is a response to a Task update that held no Task to update next.
var errNoBody = errors.New("the update's response holds no Task")

func (u *updates) step(w *worker) bool {
	if w.task == nil {
		if w.task = u.pool.take(); w.task == nil {
			return false
		}
	}
	tk := w.task
	path := w.t.base + "/fhir/Task/" + tk.id
	ifMatch := fmt.Sprintf(`W/"%d"`, tk.version)
	var status int
	var header http.Header
	var body []byte
	switch tk.step {
	case 0:
		status, header, body = w.do("update", http.MethodPatch, path, tk.key, patchAccept, "Content-Type", "application/json-patch+json", "If-Match", ifMatch)
	case 1:
		status, header, body = w.do("update", http.MethodPatch, path, tk.key, patchProgess, "Content-Type", "application/json-patch+json", "If-Match", ifMatch)
	default:
		doc, err := sjson.SetBytes(tk.body, "status", "completed")
		if err != nil || len(tk.body) == 0 {
			w.fail("update", 0, []byte(errNoBody.Error()))
			w.task = nil
			return true
		}
		status, header, body = w.do("update", http.MethodPut, path, tk.key, doc, "If-Match", ifMatch)
	}
	if status != http.StatusOK {
		w.task = nil
		return true
	}
	tk.step++
	tk.body = body
	tk.version, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(header.Get("ETag"), `W/"`), `"`))
	if tk.step == 3 {
		w.task = nil
	}
	return true
}

// mixed is a day at the gateway: polls ≫ updates > intakes, in the ratio
// mixedPolls : mixedUpdates : mixedIntakes. The Tasks the polls find are
// the ones the updates work; while there are none, an update turn polls.
type mixed struct {
	polls   polls
	updates updates
}

func (m *mixed) prepare(ctx context.Context, t *target, conns int) error {
	return m.polls.prepare(ctx, t, conns)
}

func (m *mixed) step(w *worker) bool {
	switch n := w.rng.IntN(mixedPolls + mixedUpdates + mixedIntakes); {
	case n < mixedPolls:
		return m.polls.step(w)
	case n < mixedPolls+mixedUpdates:
		if m.updates.step(w) {
			return true
		}
		return m.polls.step(w)
	default:
		return intake{}.step(w)
	}
}
