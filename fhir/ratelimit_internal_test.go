package fhir

import (
	"fmt"
	"testing"
	"time"
)

// TestClientLimiterBounded: full buckets are dropped once the limiter holds
// sweepAbove clients, and a dropped client starts again with a full bucket.
func TestClientLimiterBounded(t *testing.T) {
	now := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	l := newClientLimiter(1, 2, func() time.Time { return now })
	for i := range sweepAbove {
		if d := l.take(fmt.Sprintf("c%d", i)); d != 0 {
			t.Fatalf("client %d waits %v on its first request", i, d)
		}
	}
	l.take("c0") // c0's bucket is empty now
	if len(l.clients) != sweepAbove {
		t.Fatalf("%d buckets, want %d", len(l.clients), sweepAbove)
	}
	now = now.Add(time.Second) // every bucket but c0's is full again
	l.take("new")
	if len(l.clients) != 2 {
		t.Errorf("%d buckets after the sweep, want 2 (c0, still refilling, and new)", len(l.clients))
	}
	if d := l.take("c0"); d != 0 {
		t.Errorf("c0 has a token after 1s, but waits %v", d)
	}
	if d := l.take("c0"); d != time.Second {
		t.Errorf("c0's bucket was not kept: wait %v, want 1s", d)
	}
	if newClientLimiter(0, 10, time.Now) != nil {
		t.Error("a rate of 0 made a limiter")
	}
}

// TestClientLimiterHoldsAtMost: however many keys are refilling at once,
// the limiter never holds more than holdAtMost buckets.
func TestClientLimiterHoldsAtMost(t *testing.T) {
	now := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	l := newClientLimiter(1.0/60, 1, func() time.Time { return now })
	for i := range holdAtMost + 10 {
		l.take(fmt.Sprintf("203.0.%d.%d", i/256, i%256)) // each bucket left empty
		if len(l.clients) > holdAtMost {
			t.Fatalf("%d buckets after %d keys, more than %d", len(l.clients), i+1, holdAtMost)
		}
	}
	// Sweeps come as the map doubles (1024, 2048 … 16384), not once per
	// new key: a flood of new addresses costs each a share of a sweep.
	if l.sweeps > 6 {
		t.Errorf("%d sweeps for %d keys", l.sweeps, holdAtMost+10)
	}
	if d := l.wait("203.0.0.0"); d != 0 {
		t.Errorf("a key dropped when the limiter started afresh waits %v", d)
	}
	if d := l.wait(fmt.Sprintf("203.0.%d.%d", (holdAtMost+9)/256, (holdAtMost+9)%256)); d <= 0 {
		t.Errorf("the last key's empty bucket does not make it wait")
	}
}

func TestAddressKey(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7":               "203.0.113.7",
		"::ffff:203.0.113.7":        "203.0.113.7",
		"2001:db8:1:2::1":           "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff:ffff::1": "2001:db8:1:2::/64",
		"2001:db8:1:3::1":           "2001:db8:1:3::/64",
		"fe80::1%eth0":              "fe80::/64",
		"not an address":            "not an address",
	} {
		if got := addressKey(in); got != want {
			t.Errorf("addressKey(%q) = %q, want %q", in, got, want)
		}
	}
}
