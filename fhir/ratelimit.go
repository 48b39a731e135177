package fhir

import (
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"github.com/spgateway/spgateway/gateway"
)

// sweepAbove is how many clients' buckets the limiter holds before it drops
// the full ones.
const sweepAbove = 1024

// clientLimiter is a token bucket per authenticated client. It lives in one
// process: behind a load balancer each replica allows a client the rate on
// its own. Memory is bounded by the clients active within one refill
// period: a full bucket is the same as a new one, so full buckets are
// dropped when the map grows past sweepAbove (and the clients themselves are
// the registered ones, a list from configuration).
type clientLimiter struct {
	limit   rate.Limit
	burst   int
	now     func() time.Time
	mu      sync.Mutex
	clients map[string]*rate.Limiter
}

func newClientLimiter(perSecond float64, burst int, now func() time.Time) *clientLimiter {
	if perSecond <= 0 {
		return nil
	}
	return &clientLimiter{limit: rate.Limit(perSecond), burst: max(burst, 1), now: now, clients: map[string]*rate.Limiter{}}
}

// take spends one of client's tokens, or returns how long until one is
// there (and spends nothing).
func (l *clientLimiter) take(client string) time.Duration {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.clients[client]
	if !ok {
		if len(l.clients) >= sweepAbove {
			for id, other := range l.clients {
				if other.TokensAt(now) >= float64(l.burst) {
					delete(l.clients, id)
				}
			}
		}
		lim = rate.NewLimiter(l.limit, l.burst)
		l.clients[client] = lim
	}
	r := lim.ReserveN(now, 1)
	d := r.DelayFrom(now)
	if d > 0 {
		r.CancelAt(now)
	}
	return d
}

// rateLimit answers 429 with Retry-After (whole seconds, at least 1) when
// the authenticated client has used up its tokens.
func (s *Server) rateLimit(c *gin.Context) {
	if s.limiter == nil {
		c.Next()
		return
	}
	if wait := s.limiter.take(principal(c).ClientID); wait > 0 {
		secs := max(int(math.Ceil(wait.Seconds())), 1)
		c.Header("Retry-After", strconv.Itoa(secs))
		s.writeError(c, gateway.Errorf(gateway.CodeRateLimited, "too many requests from this client: try again in %d s", secs))
		c.Abort()
		return
	}
	c.Next()
}
