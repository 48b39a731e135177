package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// written is one committed version, as its writer saw it.
type written struct {
	id       string
	version  int
	seq      int64
	provider string
	body     string
}

// ledger records every committed version, independently of the store, so
// the paging test can say what a search at a snapshot must return.
type ledger struct {
	mu  sync.Mutex
	all []written
}

func (l *ledger) add(rs ...*gateway.Resource) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range rs {
		l.all = append(l.all, written{r.ID, r.Version, r.Seq, r.Index.Provider, string(r.Body)})
	}
}

// at returns each resource's version current at change snap.
func (l *ledger) at(snap int64) map[string]written {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]written{}
	for _, w := range l.all {
		if w.seq <= snap && w.seq > out[w.id].seq {
			out[w.id] = w
		}
	}
	return out
}

// after returns the versions written after change snap.
func (l *ledger) after(snap int64) []written {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []written
	for _, w := range l.all {
		if w.seq > snap {
			out = append(out, w)
		}
	}
	return out
}

// TestSearchPagingUnderWrites pages through a search while other goroutines
// insert resources and write new versions of the ones being paged: every
// resource that matched at the first page's snapshot must come exactly
// once, at its version then, and nothing written later may appear.
func TestSearchPagingUnderWrites(t *testing.T) {
	const (
		seeded   = 60
		pageSize = 7
		updaters = 2
		inserter = 2
	)
	storetest.Each(t, func(t *testing.T, engine string) {
		for _, descending := range []bool{false, true} {
			name := "ascending"
			if descending {
				name = "descending"
			}
			t.Run(name, func(t *testing.T) {
				s := open(t, engine)
				var led ledger
				provider := func(i int) string { // most match the search, some do not
					if i%4 == 3 {
						return providerY
					}
					return providerX
				}
				index := func(p string) gateway.Index {
					return gateway.Index{Practice: practiceA, Provider: p, Status: "requested", Access: []string{reader}}
				}
				for batch := 0; batch < seeded; batch += 10 {
					var rs []*gateway.Resource
					for i := batch; i < batch+10; i++ {
						rs = append(rs, newResource(gateway.TypeTask, fmt.Sprintf("seed-%02d", i), index(provider(i))))
					}
					put(t, s, rs...)
					led.add(rs...)
				}

				ctx, stop := context.WithCancel(context.Background())
				var wg sync.WaitGroup
				// Stop the writers however the test ends (before the store
				// closes: cleanups run last in, first out).
				t.Cleanup(func() { stop(); wg.Wait() })
				progress := make([]atomic.Int64, updaters+inserter)
				for w := range updaters + inserter {
					wg.Go(func() {
						for n := 0; ctx.Err() == nil; n++ {
							var r *gateway.Resource
							err := s.Update(ctx, func(tx gateway.Tx) error {
								if w < updaters {
									id := fmt.Sprintf("seed-%02d", rand.IntN(seeded))
									cur, err := tx.Get(ctx, gateway.TypeTask, id, 0)
									if err != nil {
										return err
									}
									r = next(&cur, index(provider(rand.IntN(4))))
								} else {
									r = newResource(gateway.TypeTask, fmt.Sprintf("new-%d-%d", w, n), index(provider(n)))
								}
								return putTx(ctx, tx, r)
							})
							if ctx.Err() != nil {
								return
							}
							if err != nil {
								t.Errorf("writer %d: %v", w, err)
								return
							}
							led.add(r)
							progress[w].Add(1)
						}
					})
				}
				// waitForWriters returns once every writer has committed
				// again, so each page sees writes since the last.
				waitForWriters := func() {
					var target [updaters + inserter]int64
					for w := range progress {
						target[w] = progress[w].Load() + 1
					}
					deadline := time.Now().Add(10 * time.Second)
					for w := range progress {
						for progress[w].Load() < target[w] {
							if time.Now().After(deadline) {
								t.Fatalf("writer %d made no progress", w)
							}
							time.Sleep(time.Millisecond)
						}
					}
				}

				q := gateway.SearchQuery{
					Type: gateway.TypeTask, Org: reader, Count: pageSize, Total: true, Descending: descending,
					Filters: []gateway.Filter{values(gateway.FieldProvider, providerX)},
				}
				var (
					matches []gateway.Resource
					snap    int64
					total   int
				)
				waitForWriters()
				for pages := 0; ; pages++ {
					// Paging ends once it has passed every match at the
					// snapshot (the inserters may have added many before
					// it, on a loaded machine).
					if pages > 0 && pages > total/pageSize+1 {
						t.Fatalf("paging does not end: page %d of %d matches at %d a page", pages, total, pageSize)
					}
					page := search(t, s, q)
					if pages == 0 {
						snap, total = page.Snapshot, page.Total
					} else if page.Snapshot != snap || page.Total != total {
						t.Errorf("page %d: snapshot %d, total %d; the first page had %d, %d", pages, page.Snapshot, page.Total, snap, total)
					}
					if len(page.Matches) == 0 || len(page.Matches) > pageSize {
						t.Fatalf("page %d holds %d matches", pages, len(page.Matches))
					}
					matches = append(matches, page.Matches...)
					if !page.More {
						break
					}
					q.Snapshot, q.After = page.Snapshot, page.Matches[len(page.Matches)-1].Seq
					waitForWriters()
				}
				stop()
				wg.Wait()

				want := map[string]written{}
				for id, w := range led.at(snap) {
					if w.provider == providerX {
						want[id] = w
					}
				}
				if total != len(want) {
					t.Errorf("Total %d, want %d", total, len(want))
				}
				seen := map[string]bool{}
				for i, m := range matches {
					if seen[m.ID] {
						t.Errorf("%s repeated", m.ID)
					}
					seen[m.ID] = true
					w, ok := want[m.ID]
					switch {
					case m.Seq > snap:
						t.Errorf("%s v%d (seq %d) was written after the snapshot %d", m.ID, m.Version, m.Seq, snap)
					case !ok:
						t.Errorf("%s v%d did not match at the snapshot", m.ID, m.Version)
					case m.Version != w.version || m.Seq != w.seq || string(m.Body) != w.body:
						t.Errorf("%s: got v%d (seq %d), want v%d (seq %d) as at the snapshot", m.ID, m.Version, m.Seq, w.version, w.seq)
					}
					if i > 0 && (matches[i-1].Seq < m.Seq) == descending {
						t.Errorf("seq %d then %d: out of order", matches[i-1].Seq, m.Seq)
					}
				}
				for id := range want {
					if !seen[id] {
						t.Errorf("%s skipped", id)
					}
				}

				// The test means something only if matching rows changed
				// and new ones arrived while it paged.
				var updated, inserted int
				for _, w := range led.after(snap) {
					if _, ok := want[w.id]; ok {
						updated++
					} else if w.version == 1 && w.provider == providerX {
						inserted++
					}
				}
				if updated == 0 || inserted == 0 {
					t.Errorf("while paging: %d updates of matching rows and %d matching inserts, want some of each", updated, inserted)
				}
				t.Logf("%d matches at snapshot %d; %d updates and %d inserts of matches after it", len(want), snap, updated, inserted)
			})
		}
	})
}
