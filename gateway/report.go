package gateway

import (
	"context"
	"slices"
	"strings"
	"time"
)

// ReportQuery is the period and scope of a report. Referrals count in the
// period their Task was created in; PROMs in the period they were answered
// in.
type ReportQuery struct {
	From, To time.Time
	// Provider limits the report to one provider; empty means all.
	Provider string
	// Now is when the report is made: what is overdue is overdue now.
	Now time.Time
}

// FunnelRow is the referral funnel of one practice and provider.
type FunnelRow struct {
	Practice  string `json:"practice"`
	Provider  string `json:"provider"`
	Sent      int    `json:"sent"`
	Accepted  int    `json:"accepted"`
	Rejected  int    `json:"rejected"`
	Cancelled int    `json:"cancelled"`
	// RejectedByReason counts rejections by status-reason code.
	RejectedByReason map[string]int `json:"rejected_by_reason"`
	// Medians over the referrals that got there, in hours; nil when none.
	MedianHoursToAcceptance   *float64 `json:"median_hours_to_acceptance"`
	MedianHoursToFirstContact *float64 `json:"median_hours_to_first_contact"`
}

// OutcomeRow is the PROM record of one provider and instrument.
type OutcomeRow struct {
	Provider   string `json:"provider"`
	Instrument string `json:"instrument"`
	// Done: PROMs answered in the period. Due: open Tasks whose next PROM
	// falls due in the period. Overdue: open Tasks whose next PROM was due
	// before the end of the period (or now, if sooner). Due and overdue
	// count for the instrument of the provider's programme.
	Done    int `json:"done"`
	Due     int `json:"due"`
	Overdue int `json:"overdue"`
	// CompletionRate is done / (done + overdue); nil when both are 0.
	CompletionRate *float64 `json:"completion_rate"`
	// MeanChange is the mean of (latest − first score) over referrals with
	// two scores or more whose latest falls in the period; nil when none.
	// Instruments without a single score (ONS4) have none.
	MeanChange    *float64 `json:"mean_change"`
	WithChange    int      `json:"with_change"`
	instrumentURL string
}

// PROMCount, PROMChange and PROMSchedule are the parts of the outcomes
// report the store computes.
type PROMCount struct {
	Provider, Instrument string // instrument canonical URL
	Done                 int
}

type PROMChange struct {
	Provider, Instrument string
	MeanChange           float64
	N                    int
}

type PROMSchedule struct {
	Provider     string
	Due, Overdue int
}

// Reports computes reports in the database.
type Reports interface {
	// Funnel returns a row per practice and provider with referrals in the
	// period.
	Funnel(ctx context.Context, q ReportQuery) ([]FunnelRow, error)
	// Outcomes returns the PROM counts, changes and schedule of the period.
	Outcomes(ctx context.Context, q ReportQuery) ([]PROMCount, []PROMChange, []PROMSchedule, error)
}

// reportScope gives a report's provider: a provider sees its own; an admin
// all of them, or the one it asks for. Practices get no reports here.
func reportScope(p Principal, q *ReportQuery) error {
	switch p.Role {
	case RoleProvider:
		if q.Provider != "" && q.Provider != p.Org {
			return Errorf(CodeForbidden, "a provider sees its own reports only")
		}
		q.Provider = p.Org
	case RoleAdmin:
	default:
		return Errorf(CodeForbidden, "reports are for providers and operators")
	}
	if !q.From.Before(q.To) {
		return Problem(CodeInvalid, IssueValue, "to", "the period must end after it starts")
	}
	return nil
}

// FunnelReport returns the referral funnel over a period, per practice and
// provider.
func (s *Service) FunnelReport(ctx context.Context, p Principal, q ReportQuery) (_ []FunnelRow, err error) {
	a, ctx := s.begin(ctx, p, AuditReport, "")
	defer func() { err = a.end(ctx, err) }()
	if err := reportScope(p, &q); err != nil {
		return nil, err
	}
	q.Now = s.now()
	var rows []FunnelRow
	err = s.store.View(ctx, func(v View) error {
		var err error
		rows, err = v.Funnel(ctx, q)
		return err
	})
	return rows, err
}

// OutcomesReport returns PROMs done, due and overdue, the completion rate
// and the mean change from baseline, per provider and instrument.
func (s *Service) OutcomesReport(ctx context.Context, p Principal, q ReportQuery) (_ []OutcomeRow, err error) {
	a, ctx := s.begin(ctx, p, AuditReport, "")
	defer func() { err = a.end(ctx, err) }()
	if err := reportScope(p, &q); err != nil {
		return nil, err
	}
	q.Now = s.now()
	var (
		counts   []PROMCount
		changes  []PROMChange
		schedule []PROMSchedule
	)
	err = s.store.View(ctx, func(v View) error {
		var err error
		counts, changes, schedule, err = v.Outcomes(ctx, q)
		return err
	})
	if err != nil {
		return nil, err
	}
	var rows []*OutcomeRow
	row := func(provider, url string) *OutcomeRow {
		for _, r := range rows {
			if r.Provider == provider && r.instrumentURL == url {
				return r
			}
		}
		in, _ := s.instrument(url)
		r := &OutcomeRow{Provider: provider, Instrument: in.ID, instrumentURL: url}
		if r.Instrument == "" {
			r.Instrument = url
		}
		rows = append(rows, r)
		return r
	}
	for _, c := range counts {
		row(c.Provider, c.Instrument).Done = c.Done
	}
	for _, c := range changes {
		r := row(c.Provider, c.Instrument)
		mean := c.MeanChange
		r.MeanChange, r.WithChange = &mean, c.N
	}
	for _, sc := range schedule {
		in, _ := s.instrument(s.programme(sc.Provider).Instrument)
		r := row(sc.Provider, in.URL)
		r.Due, r.Overdue = sc.Due, sc.Overdue
	}
	out := make([]OutcomeRow, len(rows))
	for i, r := range rows {
		if n := r.Done + r.Overdue; n > 0 {
			rate := float64(r.Done) / float64(n)
			r.CompletionRate = &rate
		}
		out[i] = *r
	}
	slices.SortFunc(out, func(a, b OutcomeRow) int {
		if c := strings.Compare(a.Provider, b.Provider); c != 0 {
			return c
		}
		return strings.Compare(a.Instrument, b.Instrument)
	})
	return out, nil
}
