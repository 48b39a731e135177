package store_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway/store"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// TestUseJTI: an assertion id is accepted once per client, also when two
// store instances (two replicas) race with it; other clients' ids do not
// collide; purging forgets only expired ids.
func TestUseJTI(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		cfg := storetest.Config(t, engine)
		a, err := store.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		b, err := store.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

		use := func(s *store.Store, client, jti string, exp time.Time) bool {
			t.Helper()
			ok, err := s.UseJTI(ctx, client, jti, exp)
			if err != nil {
				t.Fatal(err)
			}
			return ok
		}
		if !use(a, "c1", "j1", now.Add(time.Minute)) {
			t.Fatal("first use of j1 refused")
		}
		if use(a, "c1", "j1", now.Add(time.Minute)) {
			t.Error("second use of j1 on the same store accepted")
		}
		if use(b, "c1", "j1", now.Add(time.Minute)) {
			t.Error("second use of j1 through another store instance accepted")
		}
		if !use(b, "c2", "j1", now.Add(time.Minute)) {
			t.Error("another client's j1 refused")
		}
		if !use(a, "c1", "j-old", now.Add(-time.Minute)) {
			t.Fatal("j-old refused")
		}

		// Two replicas, many concurrent attempts at one id: exactly one wins.
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := a
				if i%2 == 1 {
					s = b
				}
				ok, err := s.UseJTI(ctx, "c3", "race", now.Add(time.Minute))
				if err != nil {
					t.Error(err)
				}
				if ok {
					wins.Add(1)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Errorf("%d concurrent uses of one jti won, want 1", wins.Load())
		}

		n, err := b.PurgeJTIs(ctx, now)
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("purged %d rows, want 1 (j-old)", n)
		}
		if !use(a, "c1", "j-old", now.Add(time.Minute)) {
			t.Error("a purged id is still refused")
		}
		if use(a, "c1", "j1", now.Add(time.Minute)) {
			t.Error("an unexpired id was purged")
		}
	})
}
