package fhir

import (
	"math"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"github.com/spgateway/spgateway/gateway"
)

// sweepAbove is how many keys' buckets the limiter holds before it drops
// the full ones; holdAtMost is how many it ever holds: past that, after a
// sweep, it starts afresh.
const (
	sweepAbove = 1024
	holdAtMost = 16384
)

// clientLimiter is a token bucket per key: an authenticated client, or the
// source address of failed authentications. It lives in one process: behind
// a load balancer each replica allows a key the rate on its own. Memory is
// bounded: a full bucket is the same as a new one, so full buckets are
// dropped when the map grows past sweepAbove; and should more than
// holdAtMost keys be refilling at once (a flood from that many addresses),
// the map starts afresh, which gives each of them its burst again but never
// holds more.
type clientLimiter struct {
	limit   rate.Limit
	burst   int
	now     func() time.Time
	mu      sync.Mutex
	clients map[string]*rate.Limiter
	sweepAt int // the next sweep's size: sweeps cost the map, so they come ever further apart
	sweeps  int // how many there have been, for tests
}

func newClientLimiter(perSecond float64, burst int, now func() time.Time) *clientLimiter {
	if perSecond <= 0 {
		return nil
	}
	return &clientLimiter{limit: rate.Limit(perSecond), burst: max(burst, 1), now: now, clients: map[string]*rate.Limiter{}, sweepAt: sweepAbove}
}

// take spends one of key's tokens, or returns how long until one is there
// (and spends nothing). A nil limiter allows everything.
func (l *clientLimiter) take(key string) time.Duration {
	if l == nil {
		return 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.bucket(key, now)
	r := lim.ReserveN(now, 1)
	d := r.DelayFrom(now)
	if d > 0 {
		r.CancelAt(now)
	}
	return d
}

// wait returns how long until key has a token, spending nothing.
func (l *clientLimiter) wait(key string) time.Duration {
	if l == nil {
		return 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.clients[key]
	if !ok {
		return 0
	}
	if missing := 1 - lim.TokensAt(now); missing > 0 {
		return time.Duration(missing / float64(l.limit) * float64(time.Second))
	}
	return 0
}

// bucket is key's bucket, made full if it has none; l.mu is held.
func (l *clientLimiter) bucket(key string, now time.Time) *rate.Limiter {
	if lim, ok := l.clients[key]; ok {
		return lim
	}
	if len(l.clients) >= l.sweepAt {
		l.sweeps++
		for id, other := range l.clients {
			if other.TokensAt(now) >= float64(l.burst) {
				delete(l.clients, id)
			}
		}
		if len(l.clients) >= holdAtMost {
			clear(l.clients)
		}
		// The next sweep when the map has doubled: a flood of new keys
		// whose buckets are not full costs each a share of one sweep,
		// not a sweep each.
		l.sweepAt = min(max(sweepAbove, 2*len(l.clients)), holdAtMost)
	}
	lim := rate.NewLimiter(l.limit, l.burst)
	l.clients[key] = lim
	return lim
}

// addressKey is the key of a source address for the failed-authentication
// limit: the address, or for IPv6 its /64, which one host can fill.
func addressKey(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	addr = addr.Unmap()
	if addr.Is4() {
		return addr.String()
	}
	p, _ := addr.Prefix(64) // a valid IPv6 address always has a /64
	return p.String()
}

// retryAfter sets Retry-After to wait in whole seconds, at least 1, and
// returns them.
func retryAfter(c *gin.Context, wait time.Duration) int {
	secs := max(int(math.Ceil(wait.Seconds())), 1)
	c.Header("Retry-After", strconv.Itoa(secs))
	return secs
}

// refuseCredentials answers a request whose credentials failed: 401, or
// 429 once its source address has failed more often than the
// failed-authentication limit allows. A 429 before authentication is not
// audited, so the limit bounds the audit rows a flood of bad credentials
// writes; a client with good credentials from the same address is never
// refused by it.
func (s *Server) refuseCredentials(c *gin.Context, err error) {
	if gateway.ErrorCode(err) != gateway.CodeUnauthorized {
		s.writeError(c, err) // the gateway's failure, not the client's
		c.Abort()
		return
	}
	if wait := s.failures.take(addressKey(c.ClientIP())); wait > 0 {
		secs := retryAfter(c, wait)
		err = gateway.Errorf(gateway.CodeRateLimited, "too many requests with failed credentials from this address: try again in %d s", secs)
	}
	s.writeError(c, err)
	c.Abort()
}

// rateLimit answers 429 with Retry-After (whole seconds, at least 1) when
// the authenticated client has used up its tokens.
func (s *Server) rateLimit(c *gin.Context) {
	if s.limiter == nil {
		c.Next()
		return
	}
	if wait := s.limiter.take(principal(c).ClientID); wait > 0 {
		secs := retryAfter(c, wait)
		s.writeError(c, gateway.Errorf(gateway.CodeRateLimited, "too many requests from this client: try again in %d s", secs))
		c.Abort()
		return
	}
	c.Next()
}
