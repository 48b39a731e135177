package main

import (
	"math"
	"slices"
	"time"
)

// recorder collects what one worker saw; workers never share one, so it
// needs no lock. The runner merges them at the end.
type recorder struct {
	latencies  map[string][]time.Duration // by request kind
	counts     Counts
	pages      int // poll pages read
	matches    int // Tasks (search mode match) on them
	firstError string
}

func newRecorder() *recorder {
	return &recorder{latencies: map[string][]time.Duration{}}
}

// Counts classifies responses. A 412 is a lost If-Match race, expected when
// two clients change one Task, so it is counted apart from the errors.
type Counts struct {
	OK          int `json:"2xx"`
	Conflict412 int `json:"412"`
	Client4xx   int `json:"4xx"`
	Server5xx   int `json:"5xx"`
	Other       int `json:"other"` // 1xx and 3xx: not what any scenario expects
	Transport   int `json:"transport"`
}

// Errors is every outcome that means the run did not do what it meant to.
func (c Counts) Errors() int { return c.Client4xx + c.Server5xx + c.Other + c.Transport }

func (c *Counts) add(o Counts) {
	c.OK += o.OK
	c.Conflict412 += o.Conflict412
	c.Client4xx += o.Client4xx
	c.Server5xx += o.Server5xx
	c.Other += o.Other
	c.Transport += o.Transport
}

// count records one response status (0 for a transport error).
func (c *Counts) count(status int) {
	switch {
	case status == 0:
		c.Transport++
	case status >= 200 && status < 300:
		c.OK++
	case status == 412:
		c.Conflict412++
	case status >= 400 && status < 500:
		c.Client4xx++
	case status >= 500:
		c.Server5xx++
	default:
		c.Other++
	}
}

// Latency is a latency distribution in milliseconds.
type Latency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// percentile is the nearest-rank percentile p (0 < p ≤ 100) of sorted: the
// smallest value with at least p% of the values at or below it. It is 0 for
// no values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// distribution sorts ds in place and summarises it.
func distribution(ds []time.Duration) Latency {
	slices.Sort(ds)
	return Latency{
		P50: ms(percentile(ds, 50)),
		P90: ms(percentile(ds, 90)),
		P99: ms(percentile(ds, 99)),
		Max: ms(percentile(ds, 100)),
	}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// median is the median of xs (the mean of the middle two for an even
// count), 0 for none. xs is not changed.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
