package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// Organisations and systems the tests use.
const (
	practiceA = "A81001"
	practiceB = "A81002"
	providerX = "PROV-X"
	providerY = "PROV-Y"
	stranger  = "STRANGER"
	sysLocal  = "https://practice.example/referral-number"
)

// t0 is the tests' epoch: the clocks they inject start here.
var t0 = time.Date(2026, 3, 15, 10, 0, 0, 0, time.UTC)

// clock is an injectable store clock: every reading returns the set time
// and then moves it on by step.
type clock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func newClock(start time.Time, step time.Duration) *clock { return &clock{t: start, step: step} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	c.t = c.t.Add(c.step)
	return t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// open opens a store on engine with a clock that ticks a second per write.
func open(t *testing.T, engine string) *store.Store {
	t.Helper()
	return storetest.Open(t, engine, newClock(t0, time.Second).Now)
}

// newResource returns version 1 of a resource with index x.
func newResource(typ, id string, x gateway.Index) *gateway.Resource {
	return &gateway.Resource{Type: typ, ID: id, Version: 1, Index: x}
}

// next returns the next version of r with index x.
func next(r *gateway.Resource, x gateway.Index) *gateway.Resource {
	return &gateway.Resource{Type: r.Type, ID: r.ID, Version: r.Version + 1, Index: x}
}

// body is the JSON the gateway stores for r written at now.
func body(r *gateway.Resource, now time.Time) []byte {
	return fmt.Appendf(nil, `{"resourceType":%q,"id":%q,"meta":{"versionId":"%d","lastUpdated":%q}}`,
		r.Type, r.ID, r.Version, gateway.FormatInstant(now))
}

// putTx puts r in tx with the body the gateway would write.
func putTx(ctx context.Context, tx gateway.Tx, r *gateway.Resource) error {
	r.Body = body(r, tx.Now())
	return tx.Put(ctx, r)
}

// put stores rs in one Update and fails the test if that fails.
func put(t *testing.T, s gateway.Store, rs ...*gateway.Resource) {
	t.Helper()
	err := s.Update(t.Context(), func(tx gateway.Tx) error {
		for _, r := range rs {
			if err := putTx(t.Context(), tx, r); err != nil {
				return fmt.Errorf("put %s/%s v%d: %w", r.Type, r.ID, r.Version, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
}

// tryPut stores r in its own Update and returns the error.
func tryPut(t *testing.T, s gateway.Store, r *gateway.Resource) error {
	t.Helper()
	return s.Update(t.Context(), func(tx gateway.Tx) error { return putTx(t.Context(), tx, r) })
}

// view runs fn in a View and fails the test if the View fails.
func view(t *testing.T, s gateway.Store, fn func(v gateway.View) error) {
	t.Helper()
	if err := s.View(t.Context(), fn); err != nil {
		t.Fatalf("View: %v", err)
	}
}

// get reads a resource through Get (org empty) or GetFor.
func get(t *testing.T, s gateway.Store, org, typ, id string, version int) (gateway.Resource, error) {
	t.Helper()
	var res gateway.Resource
	err := s.View(t.Context(), func(v gateway.View) error {
		var err error
		if org == "" {
			res, err = v.Get(t.Context(), typ, id, version)
		} else {
			res, err = v.GetFor(t.Context(), org, typ, id, version)
		}
		return err
	})
	return res, err
}

// mustGet is get that fails the test on an error.
func mustGet(t *testing.T, s gateway.Store, org, typ, id string, version int) gateway.Resource {
	t.Helper()
	res, err := get(t, s, org, typ, id, version)
	if err != nil {
		t.Fatalf("get %s %s/%s v%d: %v", org, typ, id, version, err)
	}
	return res
}

// wantNotFound fails the test unless err has CodeNotFound.
func wantNotFound(t *testing.T, err error, what string) {
	t.Helper()
	if gateway.ErrorCode(err) != gateway.CodeNotFound {
		t.Errorf("%s: err = %v (code %q), want not_found", what, err, gateway.ErrorCode(err))
	}
}

// wantConflict fails the test unless err is a *gateway.Error with
// CodeConflict that wraps cause.
func wantConflict(t *testing.T, err, cause error) {
	t.Helper()
	var ge *gateway.Error
	if !errors.As(err, &ge) {
		t.Fatalf("err = %v (%T), want a *gateway.Error", err, err)
	}
	if ge.Code != gateway.CodeConflict {
		t.Errorf("code = %q, want conflict (err %v)", ge.Code, err)
	}
	if !errors.Is(err, cause) {
		t.Errorf("err = %v, want it to wrap %q", err, cause)
	}
}

// sameVersion fails the test unless got is the stored form of want.
func sameVersion(t *testing.T, got gateway.Resource, want *gateway.Resource) {
	t.Helper()
	if got.Type != want.Type || got.ID != want.ID || got.Version != want.Version {
		t.Errorf("got %s/%s v%d, want %s/%s v%d", got.Type, got.ID, got.Version, want.Type, want.ID, want.Version)
	}
	if got.Seq != want.Seq {
		t.Errorf("%s/%s v%d: seq %d, want %d", got.Type, got.ID, got.Version, got.Seq, want.Seq)
	}
	if !got.LastUpdated.Equal(want.LastUpdated) {
		t.Errorf("%s/%s v%d: lastUpdated %v, want %v", got.Type, got.ID, got.Version, got.LastUpdated, want.LastUpdated)
	}
	if string(got.Body) != string(want.Body) {
		t.Errorf("%s/%s v%d: body %s, want %s", got.Type, got.ID, got.Version, got.Body, want.Body)
	}
}

// ids returns the ids of rs, in order.
func ids(rs []gateway.Resource) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func TestPutGet(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		s := open(t, engine)
		authored := time.Date(2026, 3, 1, 9, 30, 0, 123456000, time.UTC)
		x1 := gateway.Index{
			Practice: practiceA, Provider: providerX, PatientID: "pat-1", ReferralID: "sr-1",
			Status: "requested", BusinessStatus: "received",
			Key:         gateway.Identifier{System: sysLocal, Value: "REF-1"},
			Identifiers: []gateway.Identifier{{System: sysLocal, Value: "REF-1"}},
			Authored:    authored, Modified: authored.Add(time.Hour),
			ContentHash: "hash-1", Access: []string{practiceA, providerX},
		}
		v1 := newResource(gateway.TypeServiceRequest, "sr-1", x1)
		put(t, s, v1)
		if v1.Seq <= 0 {
			t.Fatalf("Put set seq %d, want > 0", v1.Seq)
		}

		t.Run("create", func(t *testing.T) {
			got := mustGet(t, s, "", gateway.TypeServiceRequest, "sr-1", 0)
			sameVersion(t, got, v1)
			want := x1
			want.Identifiers, want.Access = nil, nil // not read back
			if !indexEqual(got.Index, want) {
				t.Errorf("index = %+v, want %+v", got.Index, want)
			}
		})

		x2 := x1
		x2.Status, x2.BusinessStatus, x2.ContentHash = "active", "accepted", "hash-2"
		v2 := next(v1, x2)
		put(t, s, v2)
		x3 := x2
		x3.Status, x3.ContentHash = "completed", "hash-3"
		v3 := next(v2, x3)
		put(t, s, v3)

		t.Run("new versions", func(t *testing.T) {
			if !(v1.Seq < v2.Seq && v2.Seq < v3.Seq) {
				t.Errorf("seqs %d, %d, %d: want increasing", v1.Seq, v2.Seq, v3.Seq)
			}
			if !(v1.LastUpdated.Before(v2.LastUpdated) && v2.LastUpdated.Before(v3.LastUpdated)) {
				t.Errorf("lastUpdated %v, %v, %v: want increasing", v1.LastUpdated, v2.LastUpdated, v3.LastUpdated)
			}
			for _, org := range []string{"", practiceA} {
				got := mustGet(t, s, org, gateway.TypeServiceRequest, "sr-1", 0)
				sameVersion(t, got, v3)
				if got.Index.Status != "completed" {
					t.Errorf("current status %q, want completed", got.Index.Status)
				}
			}
		})

		t.Run("vread", func(t *testing.T) {
			for _, org := range []string{"", practiceA, providerX} {
				for _, want := range []*gateway.Resource{v1, v2, v3} {
					got := mustGet(t, s, org, gateway.TypeServiceRequest, "sr-1", want.Version)
					sameVersion(t, got, want)
				}
			}
			if got := mustGet(t, s, "", gateway.TypeServiceRequest, "sr-1", 1); got.Index.Status != "requested" {
				t.Errorf("version 1 status %q, want requested", got.Index.Status)
			}
		})

		t.Run("not found", func(t *testing.T) {
			for _, tc := range []struct {
				name, org, typ, id string
				version            int
			}{
				{"unknown id", "", gateway.TypeServiceRequest, "nope", 0},
				{"unknown id for org", practiceA, gateway.TypeServiceRequest, "nope", 0},
				{"unknown version", "", gateway.TypeServiceRequest, "sr-1", 4},
				{"unknown version for org", practiceA, gateway.TypeServiceRequest, "sr-1", 4},
				{"other type", "", gateway.TypeTask, "sr-1", 0},
				{"other type, version", "", gateway.TypeTask, "sr-1", 1},
			} {
				t.Run(tc.name, func(t *testing.T) {
					_, err := get(t, s, tc.org, tc.typ, tc.id, tc.version)
					wantNotFound(t, err, tc.name)
				})
			}
		})

		t.Run("view snapshot", func(t *testing.T) {
			view(t, s, func(v gateway.View) error {
				if v.Snapshot() != v3.Seq {
					t.Errorf("Snapshot() = %d, want the last write's seq %d", v.Snapshot(), v3.Seq)
				}
				return nil
			})
		})
	})
}

// indexEqual compares the indexed fields the store reads back.
func indexEqual(a, b gateway.Index) bool {
	return a.Practice == b.Practice && a.Provider == b.Provider && a.PatientID == b.PatientID &&
		a.ReferralID == b.ReferralID && a.Status == b.Status && a.BusinessStatus == b.BusinessStatus &&
		a.Key == b.Key && a.Authored.Equal(b.Authored) && a.Modified.Equal(b.Modified) &&
		a.ContentHash == b.ContentHash
}

func TestGetForTenancy(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		s := open(t, engine)
		v1 := newResource(gateway.TypeTask, "task-1", gateway.Index{Practice: practiceA, Access: []string{practiceA}})
		put(t, s, v1)
		v2 := next(v1, gateway.Index{Practice: practiceA, Status: "ready", Access: []string{practiceA}})
		put(t, s, v2)

		t.Run("owner reads every version", func(t *testing.T) {
			for _, version := range []int{0, 1, 2} {
				mustGet(t, s, practiceA, gateway.TypeTask, "task-1", version)
			}
		})
		t.Run("others read nothing", func(t *testing.T) {
			for _, org := range []string{providerX, practiceB, ""} {
				for _, version := range []int{0, 1, 2} {
					var res gateway.Resource
					err := s.View(t.Context(), func(v gateway.View) error {
						var err error
						res, err = v.GetFor(t.Context(), org, gateway.TypeTask, "task-1", version)
						return err
					})
					wantNotFound(t, err, fmt.Sprintf("GetFor(%q, v%d)", org, version))
					if res.ID != "" {
						t.Errorf("GetFor(%q, v%d) returned %s/%s", org, version, res.Type, res.ID)
					}
				}
			}
		})
		t.Run("Get ignores tenancy", func(t *testing.T) {
			mustGet(t, s, "", gateway.TypeTask, "task-1", 1)
		})

		err := s.Update(t.Context(), func(tx gateway.Tx) error {
			return tx.Grant(t.Context(), gateway.TypeTask, "task-1", providerX, "", "  ")
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Run("Grant widens access to every version", func(t *testing.T) {
			for _, version := range []int{0, 1, 2} {
				got := mustGet(t, s, providerX, gateway.TypeTask, "task-1", version)
				want := version
				if version == 0 {
					want = 2
				}
				if got.Version != want {
					t.Errorf("GetFor(provider, v%d) gave version %d", version, got.Version)
				}
			}
			_, err := get(t, s, practiceB, gateway.TypeTask, "task-1", 0)
			wantNotFound(t, err, "GetFor(other practice) after Grant")
		})
		t.Run("Grant does not write a version", func(t *testing.T) {
			got := mustGet(t, s, "", gateway.TypeTask, "task-1", 0)
			sameVersion(t, got, v2)
			view(t, s, func(v gateway.View) error {
				if v.Snapshot() != v2.Seq {
					t.Errorf("Snapshot() = %d after Grant, want %d", v.Snapshot(), v2.Seq)
				}
				return nil
			})
		})

		v3 := next(v2, gateway.Index{Practice: practiceA, Access: []string{practiceA, practiceB}})
		put(t, s, v3)
		t.Run("Put grants its access to every version", func(t *testing.T) {
			got := mustGet(t, s, practiceB, gateway.TypeTask, "task-1", 1)
			sameVersion(t, got, v1)
		})
	})
}

func TestPutStaleVersion(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		s := open(t, engine)
		x := gateway.Index{Practice: practiceA, Access: []string{practiceA}}
		v1 := newResource(gateway.TypePatient, "pat-1", x)
		put(t, s, v1)
		v2 := next(v1, x)
		put(t, s, v2)

		for _, tc := range []struct {
			name    string
			id      string
			version int
		}{
			{"version 1 of an existing resource", "pat-1", 1},
			{"a successor of a superseded version", "pat-1", 2},
			{"skipping a version", "pat-1", 4},
			{"version 2 of an unknown resource", "pat-new", 2},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := &gateway.Resource{Type: gateway.TypePatient, ID: tc.id, Version: tc.version, Index: x}
				wantConflict(t, tryPut(t, s, r), gateway.ErrStaleVersion)
				got := mustGet(t, s, "", gateway.TypePatient, "pat-1", 0)
				sameVersion(t, got, v2)
				_, err := get(t, s, "", gateway.TypePatient, "pat-new", 0)
				wantNotFound(t, err, "pat-new after a stale Put")
			})
		}
	})
}

func TestPutDuplicateKey(t *testing.T) {
	key := gateway.Identifier{System: gateway.SystemNHSNumber, Value: "9000000009"}
	other := gateway.Identifier{System: gateway.SystemNHSNumber, Value: "9000000017"}
	index := func(practice string, key gateway.Identifier) gateway.Index {
		return gateway.Index{Practice: practice, Key: key, Access: []string{practice}}
	}
	storetest.Each(t, func(t *testing.T, engine string) {
		for _, tc := range []struct {
			name    string
			typ     string
			x       gateway.Index
			wantDup bool
		}{
			{"same type, practice and key", gateway.TypePatient, index(practiceA, key), true},
			{"other practice", gateway.TypePatient, index(practiceB, key), false},
			{"other type", gateway.TypeServiceRequest, index(practiceA, key), false},
			{"other value", gateway.TypePatient, index(practiceA, other), false},
			{"other system", gateway.TypePatient, index(practiceA, gateway.Identifier{System: sysLocal, Value: key.Value}), false},
			{"no key", gateway.TypePatient, index(practiceA, gateway.Identifier{}), false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s := open(t, engine)
				holder := newResource(gateway.TypePatient, "holder", index(practiceA, key))
				put(t, s, holder)
				if tc.x.Key.Value == "" {
					put(t, s, newResource(gateway.TypePatient, "keyless", tc.x))
				}
				err := tryPut(t, s, newResource(tc.typ, "second", tc.x))
				if tc.wantDup {
					wantConflict(t, err, gateway.ErrDuplicateKey)
					_, err := get(t, s, "", tc.typ, "second", 0)
					wantNotFound(t, err, "the duplicate")
				} else if err != nil {
					t.Fatalf("Put: %v", err)
				}
				sameVersion(t, mustGet(t, s, "", gateway.TypePatient, "holder", 0), holder)
			})
		}

		t.Run("a new version keeps its own key", func(t *testing.T) {
			s := open(t, engine)
			v1 := newResource(gateway.TypePatient, "holder", index(practiceA, key))
			put(t, s, v1)
			v2 := next(v1, index(practiceA, key))
			put(t, s, v2)
			sameVersion(t, mustGet(t, s, "", gateway.TypePatient, "holder", 0), v2)
		})

		t.Run("a new version may not take another's key", func(t *testing.T) {
			s := open(t, engine)
			a := newResource(gateway.TypePatient, "a", index(practiceA, key))
			b := newResource(gateway.TypePatient, "b", index(practiceA, other))
			put(t, s, a, b)
			wantConflict(t, tryPut(t, s, next(b, index(practiceA, key))), gateway.ErrDuplicateKey)
			sameVersion(t, mustGet(t, s, "", gateway.TypePatient, "b", 0), b)
			_, err := get(t, s, "", gateway.TypePatient, "b", 2)
			wantNotFound(t, err, "b version 2")
		})

		t.Run("a key is free once its holder's current version has another", func(t *testing.T) {
			s := open(t, engine)
			v1 := newResource(gateway.TypePatient, "holder", index(practiceA, key))
			put(t, s, v1)
			v2 := next(v1, index(practiceA, other))
			put(t, s, v2)
			reuse := newResource(gateway.TypePatient, "reuser", index(practiceA, key))
			put(t, s, reuse)
			view(t, s, func(v gateway.View) error {
				got, err := v.GetByKey(t.Context(), gateway.TypePatient, practiceA, key)
				if err != nil {
					t.Fatalf("GetByKey(old key): %v", err)
				}
				sameVersion(t, got, reuse)
				got, err = v.GetByKey(t.Context(), gateway.TypePatient, practiceA, other)
				if err != nil {
					t.Fatalf("GetByKey(new key): %v", err)
				}
				sameVersion(t, got, v2)
				return nil
			})
			// The holder cannot go back to the key while another holds it.
			wantConflict(t, tryPut(t, s, next(v2, index(practiceA, key))), gateway.ErrDuplicateKey)
		})
	})
}

func TestUpdateRollsBack(t *testing.T) {
	key := gateway.Identifier{System: sysLocal, Value: "REF-1"}
	storetest.Each(t, func(t *testing.T, engine string) {
		s := open(t, engine)
		holder := newResource(gateway.TypeServiceRequest, "holder", gateway.Index{Practice: practiceA, Key: key, Access: []string{practiceA}})
		existing := newResource(gateway.TypeTask, "existing", gateway.Index{Practice: practiceA, Status: "requested", Access: []string{practiceA}})
		put(t, s, holder, existing)
		before := existing.Seq

		t.Run("duplicate key", func(t *testing.T) {
			err := s.Update(t.Context(), func(tx gateway.Tx) error {
				fresh := newResource(gateway.TypePatient, "fresh", gateway.Index{Practice: practiceA, Identifiers: []gateway.Identifier{{System: sysLocal, Value: "P"}}, Access: []string{practiceA}})
				if err := putTx(t.Context(), tx, fresh); err != nil {
					return err
				}
				if err := putTx(t.Context(), tx, next(existing, gateway.Index{Practice: practiceA, Status: "cancelled", Access: []string{practiceA}})); err != nil {
					return err
				}
				if err := tx.Grant(t.Context(), gateway.TypeTask, "existing", providerX); err != nil {
					return err
				}
				// Inside the transaction its own writes are visible.
				if _, err := tx.Get(t.Context(), gateway.TypePatient, "fresh", 0); err != nil {
					t.Errorf("Get of a resource written earlier in the transaction: %v", err)
				}
				return putTx(t.Context(), tx, newResource(gateway.TypeServiceRequest, "dup", gateway.Index{Practice: practiceA, Key: key, Access: []string{practiceA}}))
			})
			wantConflict(t, err, gateway.ErrDuplicateKey)
			wantRolledBack(t, s, existing, before)
		})

		t.Run("fn error", func(t *testing.T) {
			errStop := errors.New("stop")
			err := s.Update(t.Context(), func(tx gateway.Tx) error {
				if err := putTx(t.Context(), tx, newResource(gateway.TypePatient, "fresh", gateway.Index{Practice: practiceA, Access: []string{practiceA}})); err != nil {
					return err
				}
				if err := putTx(t.Context(), tx, next(existing, gateway.Index{Practice: practiceA, Status: "cancelled", Access: []string{practiceA}})); err != nil {
					return err
				}
				if err := tx.Grant(t.Context(), gateway.TypeTask, "existing", providerX); err != nil {
					return err
				}
				return errStop
			})
			if err != errStop {
				t.Errorf("Update returned %v, want fn's error as it is", err)
			}
			wantRolledBack(t, s, existing, before)
		})
	})
}

// wantRolledBack checks that a failed Update left no trace: no "fresh"
// Patient, existing still current at version 1 with no new access, and the
// change clock where it was.
func wantRolledBack(t *testing.T, s gateway.Store, existing *gateway.Resource, snapshot int64) {
	t.Helper()
	_, err := get(t, s, "", gateway.TypePatient, "fresh", 0)
	wantNotFound(t, err, "resource created in the failed transaction")
	sameVersion(t, mustGet(t, s, "", gateway.TypeTask, "existing", 0), existing)
	_, err = get(t, s, "", gateway.TypeTask, "existing", 2)
	wantNotFound(t, err, "version written in the failed transaction")
	_, err = get(t, s, providerX, gateway.TypeTask, "existing", 0)
	wantNotFound(t, err, "access granted in the failed transaction")
	view(t, s, func(v gateway.View) error {
		if v.Snapshot() != snapshot {
			t.Errorf("Snapshot() = %d after a failed Update, want %d", v.Snapshot(), snapshot)
		}
		page, err := v.Search(t.Context(), gateway.SearchQuery{Type: gateway.TypePatient, Org: practiceA, Total: true,
			Filters: []gateway.Filter{{Field: gateway.FieldIdentifier, Tokens: []gateway.Token{{System: sysLocal, Value: "P"}}}}})
		if err != nil {
			t.Fatalf("Search: %v", err)
		}
		if page.Total != 0 {
			t.Errorf("identifier of the failed transaction found %d times", page.Total)
		}
		return nil
	})
}

// A caller may handle a failed Put and go on: the Put must have left
// nothing behind, in particular not a resource without a current version.
func TestFailedPutLeavesTransactionUnchanged(t *testing.T) {
	key := gateway.Identifier{System: sysLocal, Value: "REF-1"}
	storetest.Each(t, func(t *testing.T, engine string) {
		s := open(t, engine)
		a := newResource(gateway.TypeServiceRequest, "a", gateway.Index{Practice: practiceA, Key: key, Access: []string{practiceA}})
		b := newResource(gateway.TypeServiceRequest, "b", gateway.Index{Practice: practiceA, Status: "draft", Access: []string{practiceA}})
		put(t, s, a, b)

		var later *gateway.Resource
		err := s.Update(t.Context(), func(tx gateway.Tx) error {
			err := putTx(t.Context(), tx, next(b, gateway.Index{Practice: practiceA, Key: key, Access: []string{practiceA}}))
			if !errors.Is(err, gateway.ErrDuplicateKey) {
				t.Errorf("Put of a version taking another's key: %v, want ErrDuplicateKey", err)
			}
			if got, err := tx.Get(t.Context(), gateway.TypeServiceRequest, "b", 0); err != nil {
				t.Errorf("b has no current version after the failed Put: %v", err)
			} else if got.Version != 1 {
				t.Errorf("b is at version %d after the failed Put, want 1", got.Version)
			}
			later = newResource(gateway.TypeTask, "later", gateway.Index{Practice: practiceA, Access: []string{practiceA}})
			return putTx(t.Context(), tx, later)
		})
		if err != nil {
			t.Fatalf("Update: %v", err)
		}
		sameVersion(t, mustGet(t, s, "", gateway.TypeServiceRequest, "b", 0), b)
		sameVersion(t, mustGet(t, s, "", gateway.TypeTask, "later", 0), later)
		// b can still move to version 2.
		put(t, s, next(b, gateway.Index{Practice: practiceA, Status: "active", Access: []string{practiceA}}))
	})
}

func TestConcurrentDuplicateKey(t *testing.T) {
	const n = 50
	key := gateway.Identifier{System: sysLocal, Value: "REF-RACE"}
	storetest.Each(t, func(t *testing.T, engine string) {
		s := open(t, engine)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				r := newResource(gateway.TypeServiceRequest, fmt.Sprintf("sr-%02d", i),
					gateway.Index{Practice: practiceA, Key: key, Access: []string{practiceA}})
				errs[i] = s.Update(context.Background(), func(tx gateway.Tx) error {
					return putTx(context.Background(), tx, r)
				})
			})
		}
		close(start)
		wg.Wait()

		winner := -1
		dups := 0
		for i, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Errorf("both sr-%02d and sr-%02d were stored", winner, i)
				}
				winner = i
			case errors.Is(err, gateway.ErrDuplicateKey) && gateway.ErrorCode(err) == gateway.CodeConflict:
				dups++
			default:
				t.Errorf("sr-%02d: %v, want nil or ErrDuplicateKey", i, err)
			}
		}
		if winner < 0 || dups != n-1 {
			t.Fatalf("%d duplicates and winner %d, want %d and one", dups, winner, n-1)
		}
		view(t, s, func(v gateway.View) error {
			page, err := v.Search(t.Context(), gateway.SearchQuery{Type: gateway.TypeServiceRequest, Org: practiceA, Count: n, Total: true})
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("sr-%02d", winner)
			if page.Total != 1 || !slices.Equal(ids(page.Matches), []string{want}) {
				t.Errorf("search found %d: %v, want [%s]", page.Total, ids(page.Matches), want)
			}
			got, err := v.GetByKey(t.Context(), gateway.TypeServiceRequest, practiceA, key)
			if err != nil || got.ID != want {
				t.Errorf("GetByKey = %s, %v; want %s", got.ID, err, want)
			}
			if v.Snapshot() != got.Seq {
				t.Errorf("Snapshot() = %d, want %d: failed writers must not advance the clock", v.Snapshot(), got.Seq)
			}
			return nil
		})
	})
}

func TestNow(t *testing.T) {
	start := time.Date(2026, 3, 15, 10, 0, 0, 1500, time.UTC) // 1.5µs past the second
	micro := func(us int) time.Time { return time.Date(2026, 3, 15, 10, 0, 0, us*1000, time.UTC) }
	steps := []struct {
		name  string
		clock time.Time
		want  time.Time
	}{
		{"first write: the clock, truncated to µs", start, micro(1)},
		{"clock stands still", start, micro(2)},
		{"clock goes back an hour", start.Add(-time.Hour), micro(3)},
		{"clock ahead by less than a µs after truncation", start.Add(2 * time.Microsecond), micro(4)},
		{"clock moves on", start.Add(10 * time.Second), time.Date(2026, 3, 15, 10, 0, 10, 1000, time.UTC)},
		{"clock back to the start", start, time.Date(2026, 3, 15, 10, 0, 10, 2000, time.UTC)},
	}
	storetest.Each(t, func(t *testing.T, engine string) {
		c := newClock(start, 0)
		cfg := storetest.Config(t, engine)
		cfg.Now = c.Now
		s, err := store.Open(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()

		var prev time.Time
		for i, step := range steps {
			c.Set(step.clock)
			var now time.Time
			r := newResource(gateway.TypeTask, fmt.Sprintf("task-%d", i), gateway.Index{Access: []string{practiceA}})
			err := s.Update(t.Context(), func(tx gateway.Tx) error {
				now = tx.Now()
				if err := putTx(t.Context(), tx, r); err != nil {
					return err
				}
				if !tx.Now().Equal(now) {
					t.Errorf("%s: Now changed within a transaction: %v then %v", step.name, now, tx.Now())
				}
				return nil
			})
			if err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
			if !now.Equal(step.want) || now.Location() != time.UTC {
				t.Errorf("%s: Now() = %v, want %v (UTC)", step.name, now, step.want)
			}
			if !now.After(prev) {
				t.Errorf("%s: Now() = %v, not after the previous %v", step.name, now, prev)
			}
			if !now.Equal(now.Truncate(time.Microsecond)) {
				t.Errorf("%s: Now() = %v has sub-µs digits", step.name, now)
			}
			if !r.LastUpdated.Equal(now) {
				t.Errorf("%s: Put set LastUpdated %v, want Now %v", step.name, r.LastUpdated, now)
			}
			got := mustGet(t, s, "", gateway.TypeTask, r.ID, 0)
			if !got.LastUpdated.Equal(now) {
				t.Errorf("%s: stored LastUpdated %v, want Now %v", step.name, got.LastUpdated, now)
			}
			prev = now
		}

		t.Run("an Update that writes nothing does not move the clock", func(t *testing.T) {
			c.Set(start.Add(time.Hour))
			if err := s.Update(t.Context(), func(gateway.Tx) error { return nil }); err != nil {
				t.Fatal(err)
			}
			c.Set(start)
			r := newResource(gateway.TypeTask, "after-empty", gateway.Index{})
			put(t, s, r)
			if want := prev.Add(time.Microsecond); !r.LastUpdated.Equal(want) {
				t.Errorf("LastUpdated %v, want %v", r.LastUpdated, want)
			}
			prev = r.LastUpdated
		})

		t.Run("the last write's time survives reopening", func(t *testing.T) {
			c2 := newClock(start.Add(-24*time.Hour), 0)
			cfg2 := cfg
			cfg2.Now = c2.Now
			s2, err := store.Open(t.Context(), cfg2)
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			r := newResource(gateway.TypeTask, "reopened", gateway.Index{})
			put(t, s2, r)
			if want := prev.Add(time.Microsecond); !r.LastUpdated.Equal(want) {
				t.Errorf("LastUpdated %v after reopening with an earlier clock, want %v", r.LastUpdated, want)
			}
		})
	})
}

func TestGetByKey(t *testing.T) {
	nhs := func(v string) gateway.Identifier {
		return gateway.Identifier{System: gateway.SystemNHSNumber, Value: v}
	}
	storetest.Each(t, func(t *testing.T, engine string) {
		s := open(t, engine)
		a1 := newResource(gateway.TypePatient, "pat-a", gateway.Index{Practice: practiceA, Key: nhs("9000000009"), Access: []string{practiceA}})
		b1 := newResource(gateway.TypePatient, "pat-b", gateway.Index{Practice: practiceB, Key: nhs("9000000009"), Access: []string{practiceB}})
		c1 := newResource(gateway.TypePatient, "pat-c", gateway.Index{Practice: practiceA, Key: nhs("9000000017"), Access: []string{practiceA}})
		put(t, s, a1, b1, c1)
		a2 := next(a1, gateway.Index{Practice: practiceA, Key: nhs("9000000009"), Status: "v2", Access: []string{practiceA}})
		c2 := next(c1, gateway.Index{Practice: practiceA, Key: nhs("9000000025"), Access: []string{practiceA}})
		put(t, s, a2, c2)

		for _, tc := range []struct {
			name     string
			typ      string
			practice string
			key      gateway.Identifier
			want     *gateway.Resource // nil: not found
		}{
			{"current version", gateway.TypePatient, practiceA, nhs("9000000009"), a2},
			{"the other practice's patient", gateway.TypePatient, practiceB, nhs("9000000009"), b1},
			{"key of the current version", gateway.TypePatient, practiceA, nhs("9000000025"), c2},
			{"key of an old version only", gateway.TypePatient, practiceA, nhs("9000000017"), nil},
			{"other type", gateway.TypeServiceRequest, practiceA, nhs("9000000009"), nil},
			{"other system", gateway.TypePatient, practiceA, gateway.Identifier{System: sysLocal, Value: "9000000009"}, nil},
			{"practice without it", gateway.TypePatient, practiceB, nhs("9000000025"), nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				view(t, s, func(v gateway.View) error {
					got, err := v.GetByKey(t.Context(), tc.typ, tc.practice, tc.key)
					if tc.want == nil {
						wantNotFound(t, err, "GetByKey")
						return nil
					}
					if err != nil {
						t.Fatalf("GetByKey: %v", err)
					}
					sameVersion(t, got, tc.want)
					if got.Index.Key != tc.key {
						t.Errorf("key %v, want %v", got.Index.Key, tc.key)
					}
					return nil
				})
			})
		}
	})
}

func TestByReferral(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		s := open(t, engine)
		about := func(referral string) gateway.Index {
			return gateway.Index{Practice: practiceA, ReferralID: referral, Access: []string{practiceA}}
		}
		sr := newResource(gateway.TypeServiceRequest, "sr-1", gateway.Index{Practice: practiceA, Access: []string{practiceA}})
		cond := newResource(gateway.TypeCondition, "cond-1", about("sr-1"))
		consent := newResource(gateway.TypeConsent, "consent-1", about("sr-1"))
		task1 := newResource(gateway.TypeTask, "task-1", about("sr-1"))
		otherTask := newResource(gateway.TypeTask, "task-2", about("sr-2"))
		put(t, s, sr, cond, consent, task1, otherTask)

		byReferral := func(id string) []gateway.Resource {
			var out []gateway.Resource
			view(t, s, func(v gateway.View) error {
				var err error
				out, err = v.ByReferral(t.Context(), id)
				return err
			})
			return out
		}
		check := func(got []gateway.Resource, want ...*gateway.Resource) {
			t.Helper()
			if len(got) != len(want) {
				t.Fatalf("ByReferral gave %v, want %d resources", ids(got), len(want))
			}
			for i := range want {
				sameVersion(t, got[i], want[i])
			}
		}

		t.Run("oldest first", func(t *testing.T) {
			check(byReferral("sr-1"), cond, consent, task1)
		})
		task2 := next(task1, about("sr-1"))
		put(t, s, task2)
		cond2 := next(cond, about("sr-other"))
		put(t, s, cond2)
		t.Run("current versions only", func(t *testing.T) {
			check(byReferral("sr-1"), consent, task2)
			check(byReferral("sr-other"), cond2)
		})
		t.Run("unknown referral", func(t *testing.T) {
			if got := byReferral("nope"); len(got) != 0 {
				t.Errorf("ByReferral(unknown) = %v", ids(got))
			}
		})
	})
}

func TestMigrateAndPing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		cfg := storetest.Config(t, engine)
		first, err := store.Open(t.Context(), cfg)
		if err != nil {
			t.Fatalf("first Open: %v", err)
		}
		defer first.Close()
		if err := first.Ping(t.Context()); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		r := newResource(gateway.TypePatient, "pat-1", gateway.Index{Practice: practiceA, Access: []string{practiceA}})
		put(t, first, r)

		second, err := store.Open(t.Context(), cfg)
		if err != nil {
			t.Fatalf("second Open of the same database: %v", err)
		}
		defer second.Close()
		if err := second.Migrate(t.Context()); err != nil {
			t.Fatalf("Migrate on an open store: %v", err)
		}
		if err := first.Migrate(t.Context()); err != nil {
			t.Fatalf("Migrate again on the first store: %v", err)
		}
		if err := second.Ping(t.Context()); err != nil {
			t.Fatalf("Ping after Migrate: %v", err)
		}
		sameVersion(t, mustGet(t, second, practiceA, gateway.TypePatient, "pat-1", 0), r)
		r2 := next(r, gateway.Index{Practice: practiceA, Access: []string{practiceA}})
		put(t, second, r2)
		if !(r2.Seq > r.Seq) {
			t.Errorf("seq after reopening %d, want > %d", r2.Seq, r.Seq)
		}
		sameVersion(t, mustGet(t, first, practiceA, gateway.TypePatient, "pat-1", 0), r2)

		t.Run("Ping fails once closed", func(t *testing.T) {
			if err := second.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := second.Ping(t.Context()); err == nil {
				t.Error("Ping on a closed store succeeded")
			}
		})
	})
}
