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
