package fhir

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/spgateway/spgateway/gateway"
)

// The reports API (/api/v1/reports) is plain JSON, or CSV for
// spreadsheets (Accept: text/csv, or ?format=csv). Errors are
// OperationOutcomes, like the FHIR API's.

const mediaCSV = "text/csv"

// reportQuery reads from, to (FHIR dates or dateTimes; the default is the
// twelve months to now) and, for operators, provider. A date stands for the
// whole day (or month, or year), so to=2026-06-30 takes in all of 30 June; a
// dateTime is the instant, and the period ends before it.
func (s *Server) reportQuery(c *gin.Context) (gateway.ReportQuery, error) {
	now := s.cfg.Now().UTC()
	q := gateway.ReportQuery{From: now.AddDate(-1, 0, 0), To: now, Provider: c.Query("provider")}
	for _, p := range []struct {
		name string
		at   *time.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		if v := c.Query(p.name); v != "" {
			period, err := gateway.ParseDateTime(strings.ReplaceAll(v, " ", "+"))
			if err != nil {
				return q, gateway.Problem(gateway.CodeInvalid, gateway.IssueValue, p.name, "%s: %v", p.name, err)
			}
			*p.at = period.Start
			if p.name == "to" && !strings.Contains(v, "T") {
				*p.at = period.End
			}
		}
	}
	return q, nil
}

func wantsCSV(c *gin.Context) bool {
	if f := c.Query("format"); f != "" {
		return f == "csv"
	}
	for _, part := range strings.Split(c.GetHeader("Accept"), ",") {
		if strings.HasPrefix(strings.TrimSpace(part), mediaCSV) {
			return true
		}
	}
	return false
}

type reportJSON struct {
	From      string `json:"from"`
	To        string `json:"to"`
	Generated string `json:"generated"`
	Rows      any    `json:"rows"`
}

func (s *Server) writeReport(c *gin.Context, q gateway.ReportQuery, rows any, header []string, records [][]string) error {
	if wantsCSV(c) {
		var b bytes.Buffer
		w := csv.NewWriter(&b)
		_ = w.Write(header)
		_ = w.WriteAll(records) // a bytes.Buffer does not fail
		c.Data(http.StatusOK, mediaCSV+"; charset=utf-8", b.Bytes())
		return nil
	}
	body, err := json.Marshal(reportJSON{From: gateway.FormatInstant(q.From), To: gateway.FormatInstant(q.To),
		Generated: gateway.FormatInstant(s.cfg.Now()), Rows: rows})
	if err != nil {
		return gateway.Internal("report", err)
	}
	c.Data(http.StatusOK, mediaJSON+"; charset=utf-8", body)
	return nil
}

func optional(v *float64, digits int) string {
	if v == nil {
		return ""
	}
	return strconv.FormatFloat(*v, 'f', digits, 64)
}

// funnelReport answers GET /api/v1/reports/funnel: per practice and
// provider, referrals sent, accepted, rejected (by reason) and cancelled,
// and the median hours to acceptance and to first contact.
func (s *Server) funnelReport(c *gin.Context) error {
	q, err := s.reportQuery(c)
	if err != nil {
		return err
	}
	rows, err := s.svc.FunnelReport(c.Request.Context(), principal(c), q)
	if err != nil {
		return err
	}
	if rows == nil {
		rows = []gateway.FunnelRow{}
	}
	header := []string{"practice", "provider", "sent", "accepted", "rejected", "cancelled",
		"median_hours_to_acceptance", "median_hours_to_first_contact"}
	for _, r := range gateway.StatusReasons {
		header = append(header, "rejected_"+r)
	}
	var records [][]string
	for _, r := range rows {
		rec := []string{r.Practice, r.Provider, strconv.Itoa(r.Sent), strconv.Itoa(r.Accepted), strconv.Itoa(r.Rejected),
			strconv.Itoa(r.Cancelled), optional(r.MedianHoursToAcceptance, 2), optional(r.MedianHoursToFirstContact, 2)}
		for _, reason := range gateway.StatusReasons {
			rec = append(rec, strconv.Itoa(r.RejectedByReason[reason]))
		}
		records = append(records, rec)
	}
	return s.writeReport(c, q, rows, header, records)
}

// outcomesReport answers GET /api/v1/reports/outcomes: per provider and
// instrument, PROMs done, due and overdue, the completion rate and the mean
// change from baseline.
func (s *Server) outcomesReport(c *gin.Context) error {
	q, err := s.reportQuery(c)
	if err != nil {
		return err
	}
	rows, err := s.svc.OutcomesReport(c.Request.Context(), principal(c), q)
	if err != nil {
		return err
	}
	if rows == nil {
		rows = []gateway.OutcomeRow{}
	}
	header := []string{"provider", "instrument", "done", "due", "overdue", "completion_rate", "mean_change", "with_change"}
	var records [][]string
	for _, r := range rows {
		records = append(records, []string{r.Provider, r.Instrument, strconv.Itoa(r.Done), strconv.Itoa(r.Due),
			strconv.Itoa(r.Overdue), optional(r.CompletionRate, 4), optional(r.MeanChange, 2), strconv.Itoa(r.WithChange)})
	}
	return s.writeReport(c, q, rows, header, records)
}
