package fhir_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spgateway/spgateway/fhir"
	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/oauth"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

func withRate(perSecond float64, burst int) gatewayOption {
	return func(_ *gateway.Config, f *fhir.Config) { f.RatePerSecond, f.RateBurst = perSecond, burst }
}

// wantThrottled checks a 429: Retry-After in whole seconds and an
// OperationOutcome with issue code throttled.
func wantThrottled(t *testing.T, r response, retryAfter string) {
	t.Helper()
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429\n%s", r.status, r.body)
	}
	if got := r.header.Get("Retry-After"); got != retryAfter {
		t.Errorf("Retry-After %q, want %q", got, retryAfter)
	}
	oo := r.json(t)
	issues, _ := oo["issue"].([]any)
	if oo["resourceType"] != "OperationOutcome" || len(issues) != 1 {
		t.Fatalf("body is not an OperationOutcome with one issue: %s", r.body)
	}
	is := issues[0].(map[string]any)
	if is["code"] != "throttled" || is["severity"] != "error" || !strings.Contains(is["diagnostics"].(string), "too many requests") {
		t.Errorf("issue %v, want an error coded throttled", is)
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		t0 := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
		clk := &handClock{now: t0}
		g := newGateway(t, engine, withNow(clk.Now), withRate(1, 3))

		// The burst, spent on /fhir and /api/v1 alike (PRV01 has no case
		// records in this configuration: its handler answers 403).
		for i, tc := range []struct {
			path   string
			status int
		}{{"/fhir/Task", http.StatusOK}, {"/api/v1/cases", http.StatusForbidden}, {"/fhir/Task?status=requested", http.StatusOK}} {
			if r := g.get(tc.path, keyPRV01); r.status != tc.status {
				t.Fatalf("request %d (%s) within the burst: status %d, want %d\n%s", i+1, tc.path, r.status, tc.status, r.body)
			}
		}
		wantThrottled(t, g.get("/fhir/Task", keyPRV01), "1")
		wantThrottled(t, g.get("/api/v1/cases", keyPRV01), "1")
		wantThrottled(t, g.get("/fhir/Task/nonesuch", keyPRV01), "1") // throttled before the handler runs

		t.Run("another client is not throttled", func(t *testing.T) {
			if r := g.get("/fhir/Task", keyPRV02); r.status != http.StatusOK {
				t.Errorf("PRV02: status %d, want 200", r.status)
			}
		})
		t.Run("metadata and health are not limited", func(t *testing.T) {
			for _, path := range []string{"/fhir/metadata", "/healthz", "/readyz"} {
				for range 5 {
					if r := g.get(path, keyPRV01); r.status != http.StatusOK {
						t.Fatalf("%s: status %d, want 200", path, r.status)
					}
				}
			}
		})
		t.Run("a refused request spends no token", func(t *testing.T) {
			clk.set(t0.Add(time.Second)) // one token back
			if r := g.get("/fhir/Task", keyPRV01); r.status != http.StatusOK {
				t.Fatalf("after 1s: status %d, want 200\n%s", r.status, r.body)
			}
			wantThrottled(t, g.get("/fhir/Task", keyPRV01), "1")
		})
		t.Run("the bucket refills", func(t *testing.T) {
			clk.set(t0.Add(time.Hour))
			for i := range 3 {
				if r := g.get("/fhir/Task", keyPRV01); r.status != http.StatusOK {
					t.Fatalf("request %d after refilling: status %d", i+1, r.status)
				}
			}
			wantThrottled(t, g.get("/fhir/Task", keyPRV01), "1")
		})
		t.Run("an unauthenticated request is refused before the limit", func(t *testing.T) {
			if r := g.get("/fhir/Task", ""); r.status != http.StatusUnauthorized {
				t.Errorf("status %d, want 401", r.status)
			}
		})
	})
}

// TestRateLimitRetryAfter: the wait is rounded up to whole seconds.
func TestRateLimitRetryAfter(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	clk := &handClock{now: t0}
	g := newGateway(t, "sqlite", withNow(clk.Now), withRate(0.3, 1))
	if r := g.get("/fhir/Task", keyA81001); r.status != http.StatusOK {
		t.Fatalf("first request: status %d", r.status)
	}
	wantThrottled(t, g.get("/fhir/Task", keyA81001), "4") // 3.33s
	clk.set(t0.Add(3 * time.Second))
	wantThrottled(t, g.get("/fhir/Task", keyA81001), "1") // 0.33s
	clk.set(t0.Add(3400 * time.Millisecond))
	if r := g.get("/fhir/Task", keyA81001); r.status != http.StatusOK {
		t.Errorf("after the wait: status %d, want 200", r.status)
	}
}

func TestRateLimitOff(t *testing.T) {
	t.Parallel()
	g := newGateway(t, "sqlite", withRate(0, 0))
	for i := range 50 {
		if r := g.get("/fhir/Task", keyPRV01); r.status != http.StatusOK {
			t.Fatalf("request %d with the limit off: status %d", i+1, r.status)
		}
	}
}

func withFailedAuth(perMinute float64, burst int) gatewayOption {
	return func(_ *gateway.Config, f *fhir.Config) { f.FailedAuthPerMinute, f.FailedAuthBurst = perMinute, burst }
}

// TestFailedAuthLimit: each source address may fail authentication a burst
// of times, then gets 429 (not audited) until its bucket refills; good
// credentials from the same address are served all along, and other
// addresses have buckets of their own (an IPv6 host its /64).
func TestFailedAuthLimit(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		t0 := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
		clk := &handClock{now: t0}
		g := newGateway(t, engine, withNow(clk.Now), withTrustedProxies("127.0.0.1"), withFailedAuth(60, 3))
		from := func(addr string) []string { return []string{"X-Forwarded-For", addr} }
		outcomes := func(before int) map[string]int {
			n := map[string]int{}
			for _, e := range g.trail(t)[before:] {
				n[e.Outcome]++
			}
			return n
		}
		before := len(g.trail(t))

		// Three failures: no credential, an unknown key, a forged token.
		for i, key := range []string{"", "not-a-key", "eyJhbGciOiJub25lIn0.e30."} {
			if r := g.do("GET", "/fhir/Task", key, nil, from("203.0.113.7")...); r.status != http.StatusUnauthorized {
				t.Fatalf("failure %d within the burst: status %d, want 401\n%s", i+1, r.status, r.body)
			}
		}
		wantThrottled(t, g.do("GET", "/fhir/Task", "not-a-key", nil, from("203.0.113.7")...), "1")
		wantThrottled(t, g.do("GET", "/api/v1/cases", "", nil, from("203.0.113.7")...), "1")
		if r := g.do("GET", "/fhir/Task", keyPRV01, nil, from("203.0.113.7")...); r.status != http.StatusOK {
			t.Errorf("good credentials from a throttled address: status %d, want 200\n%s", r.status, r.body)
		}
		if r := g.do("GET", "/fhir/Task", "not-a-key", nil, from("198.51.100.1")...); r.status != http.StatusUnauthorized {
			t.Errorf("another address: status %d, want 401", r.status)
		}
		// One 401 per failure within a burst and the read: the 429s
		// wrote nothing.
		if got := outcomes(before); got["unauthorized"] != 4 || got["success"] != 1 || len(got) != 2 {
			t.Errorf("audit outcomes %v, want 4 unauthorized and 1 success only", got)
		}

		clk.set(t0.Add(time.Second)) // one token back
		if r := g.do("GET", "/fhir/Task", "not-a-key", nil, from("203.0.113.7")...); r.status != http.StatusUnauthorized {
			t.Errorf("after 1s: status %d, want 401", r.status)
		}
		wantThrottled(t, g.do("GET", "/fhir/Task", "not-a-key", nil, from("203.0.113.7")...), "1")

		// IPv6: one /64 is one bucket, whichever of its addresses fails.
		for i, addr := range []string{"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::9"} {
			if r := g.do("GET", "/fhir/Task", "not-a-key", nil, from(addr)...); r.status != http.StatusUnauthorized {
				t.Fatalf("IPv6 failure %d: status %d, want 401", i+1, r.status)
			}
		}
		wantThrottled(t, g.do("GET", "/fhir/Task", "not-a-key", nil, from("2001:db8:1:2::77")...), "1")
		if r := g.do("GET", "/fhir/Task", "not-a-key", nil, from("2001:db8:1:3::1")...); r.status != http.StatusUnauthorized {
			t.Errorf("another /64: status %d, want 401", r.status)
		}
	})
}

// TestFailedAuthLimitOff: without the limit every failure is a 401.
func TestFailedAuthLimitOff(t *testing.T) {
	g := newGateway(t, "sqlite")
	for i := range 50 {
		if r := g.get("/fhir/Task", "not-a-key"); r.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: status %d, want 401", i+1, r.status)
		}
	}
}

// TestFailedTokenRequestsLimit: refused token requests spend the address's
// bucket; once it is empty the token endpoint refuses the address outright,
// a valid assertion included, until it refills.
func TestFailedTokenRequestsLimit(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		o := newOAuthSetup(t, engine)
		o.edit = func(c *fhir.Config) { c.FailedAuthPerMinute, c.FailedAuthBurst, c.Now = 60, 2, o.clock.Now }
		g := o.start(t)
		for i := range 2 {
			r := g.token(tokenForm("not.a.jwt"))
			oauthErr(t, r, http.StatusUnauthorized, oauth.ErrInvalidClient, "")
			if t.Failed() {
				t.Fatalf("failure %d within the burst", i+1)
			}
		}
		r := g.token(tokenForm(assertion(t, "provider-prv01")))
		oauthErr(t, r, http.StatusTooManyRequests, oauth.ErrInvalidRequest, "too many failed token requests from this address")
		if got := r.header.Get("Retry-After"); got != "1" {
			t.Errorf("Retry-After %q, want 1", got)
		}
		// The same address's failures on the FHIR API share the bucket.
		wantThrottled(t, g.get("/fhir/Task", "not-a-key"), "1")

		o.clock.Advance(time.Second)
		if r := g.token(tokenForm(assertion(t, "provider-prv01"))); r.status != http.StatusOK {
			t.Errorf("after the refill: %d %s", r.status, r.body)
		}
		// A token issued spends nothing: the next refusal is a 401.
		oauthErr(t, g.token(tokenForm("not.a.jwt")), http.StatusUnauthorized, oauth.ErrInvalidClient, "")
	})
}
