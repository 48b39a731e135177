package fhir

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

// TestReportPeriod: a date stands for the whole day (month, year), so a
// date given as to takes it in; a dateTime is an instant.
func TestReportPeriod(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	s := &Server{cfg: Config{Now: func() time.Time { return now }}}
	for _, c := range []struct {
		query    string
		from, to time.Time
	}{
		{"", now.AddDate(-1, 0, 0), now},
		{"from=2026-06-01&to=2026-06-30", time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)},
		{"from=2026-06&to=2026-06", time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)},
		{"from=2026&to=2026", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"from=2026-06-01T00:00:00Z&to=2026-07-01T00:00:00Z", time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)},
		{"to=2026-06-30T12:00:00%2B01:00", now.AddDate(-1, 0, 0), time.Date(2026, 6, 30, 11, 0, 0, 0, time.UTC)},
	} {
		c1, _ := gin.CreateTestContext(httptest.NewRecorder())
		c1.Request = httptest.NewRequest("GET", "/api/v1/reports/funnel?"+c.query, nil)
		q, err := s.reportQuery(c1)
		if err != nil {
			t.Fatalf("%s: %v", c.query, err)
		}
		if !q.From.Equal(c.from) || !q.To.Equal(c.to) {
			t.Errorf("%s: [%v, %v), want [%v, %v)", c.query, q.From, q.To, c.from, c.to)
		}
	}
}
