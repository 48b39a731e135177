package store

import (
	"context"
	"database/sql"
	"time"

	"github.com/spgateway/spgateway/gateway"
)

// The reports are computed in SQL that both engines run as it is: medians
// come from window functions (no percentile function in SQLite), times are
// microseconds, and averages are cast to DOUBLE PRECISION (a REAL in
// SQLite). They read the current versions only, and the milestones the
// gateway keeps on each Task (accepted_at, first_contact_at, prom_due …).

// openTaskStatuses are the statuses of a Task still being worked.
const openTaskStatuses = `('requested', 'received', 'accepted', 'in-progress', 'on-hold')`

// scope adds the provider limit of q to a query on alias v.
func scope(w *query, q gateway.ReportQuery) {
	if q.Provider != "" {
		w.add("v.provider = ?", q.Provider)
	}
}

// Funnel counts referrals (by their Task) created in the period, per
// practice and provider.
func (v *view) Funnel(ctx context.Context, q gateway.ReportQuery) ([]gateway.FunnelRow, error) {
	var w query
	w.add("v.type = 'Task' AND v.superseded_seq IS NULL")
	w.add("v.authored >= ? AND v.authored < ?", q.From.UnixMicro(), q.To.UnixMicro())
	scope(&w, q)
	var counts []struct {
		Practice  string `db:"practice"`
		Provider  string `db:"provider"`
		Sent      int    `db:"sent"`
		Accepted  int    `db:"accepted"`
		Rejected  int    `db:"rejected"`
		Cancelled int    `db:"cancelled"`
	}
	if err := v.selectAll(ctx, &counts, `SELECT v.practice, v.provider, COUNT(*) AS sent,
		SUM(CASE WHEN v.accepted_at IS NOT NULL THEN 1 ELSE 0 END) AS accepted,
		SUM(CASE WHEN v.status = 'rejected' THEN 1 ELSE 0 END) AS rejected,
		SUM(CASE WHEN v.status = 'cancelled' THEN 1 ELSE 0 END) AS cancelled
		FROM resource_versions v WHERE `+w.sql()+` GROUP BY v.practice, v.provider ORDER BY v.practice, v.provider`, w.args...); err != nil {
		return nil, gateway.Internal("store.Funnel", err)
	}
	rows := make([]gateway.FunnelRow, len(counts))
	find := map[[2]string]*gateway.FunnelRow{}
	for i, c := range counts {
		rows[i] = gateway.FunnelRow{Practice: c.Practice, Provider: c.Provider, Sent: c.Sent, Accepted: c.Accepted,
			Rejected: c.Rejected, Cancelled: c.Cancelled, RejectedByReason: map[string]int{}}
		find[[2]string{c.Practice, c.Provider}] = &rows[i]
	}
	var reasons []struct {
		Practice string `db:"practice"`
		Provider string `db:"provider"`
		Reason   string `db:"reason"`
		N        int    `db:"n"`
	}
	if err := v.selectAll(ctx, &reasons, `SELECT v.practice, v.provider, COALESCE(v.status_reason, '') AS reason, COUNT(*) AS n
		FROM resource_versions v WHERE `+w.sql()+` AND v.status = 'rejected'
		GROUP BY v.practice, v.provider, COALESCE(v.status_reason, '')`, w.args...); err != nil {
		return nil, gateway.Internal("store.Funnel", err)
	}
	for _, r := range reasons {
		find[[2]string{r.Practice, r.Provider}].RejectedByReason[r.Reason] = r.N
	}
	for _, m := range []struct {
		column string
		set    func(*gateway.FunnelRow, *float64)
	}{
		{"accepted_at", func(r *gateway.FunnelRow, h *float64) { r.MedianHoursToAcceptance = h }},
		{"first_contact_at", func(r *gateway.FunnelRow, h *float64) { r.MedianHoursToFirstContact = h }},
	} {
		medians, err := v.medians(ctx, m.column, w)
		if err != nil {
			return nil, err
		}
		for _, md := range medians {
			hours := md.Micros / float64(time.Hour/time.Microsecond)
			m.set(find[[2]string{md.Practice, md.Provider}], &hours)
		}
	}
	return rows, nil
}

type median struct {
	Practice string  `db:"practice"`
	Provider string  `db:"provider"`
	Micros   float64 `db:"micros"`
}

// medians returns, per practice and provider, the median of column −
// authored (in microseconds) over the Tasks of w where column is set. The
// median of an even number of values is the mean of the middle two.
func (v *view) medians(ctx context.Context, column string, w query) ([]median, error) {
	var out []median
	err := v.selectAll(ctx, &out, `WITH d AS (
			SELECT v.practice, v.provider, v.`+column+` - v.authored AS dur,
				ROW_NUMBER() OVER (PARTITION BY v.practice, v.provider ORDER BY v.`+column+` - v.authored) AS rn,
				COUNT(*) OVER (PARTITION BY v.practice, v.provider) AS n
			FROM resource_versions v WHERE `+w.sql()+` AND v.`+column+` IS NOT NULL)
		SELECT practice, provider, CAST(AVG(dur) AS DOUBLE PRECISION) AS micros FROM d
		WHERE rn IN ((n + 1) / 2, (n + 2) / 2) GROUP BY practice, provider`, w.args...)
	if err != nil {
		return nil, gateway.Internal("store.Funnel", err)
	}
	return out, nil
}

// Outcomes computes the PROM parts of the outcomes report.
func (v *view) Outcomes(ctx context.Context, q gateway.ReportQuery) ([]gateway.PROMCount, []gateway.PROMChange, []gateway.PROMSchedule, error) {
	var counts []gateway.PROMCount
	var w query
	w.add("v.type = 'Observation' AND v.superseded_seq IS NULL")
	w.add("v.authored >= ? AND v.authored < ?", q.From.UnixMicro(), q.To.UnixMicro())
	scope(&w, q)
	var done []struct {
		Provider      string `db:"provider"`
		Questionnaire string `db:"questionnaire"`
		N             int    `db:"n"`
	}
	if err := v.selectAll(ctx, &done, `SELECT v.provider, v.questionnaire, COUNT(*) AS n FROM resource_versions v
		WHERE `+w.sql()+` GROUP BY v.provider, v.questionnaire`, w.args...); err != nil {
		return nil, nil, nil, gateway.Internal("store.Outcomes", err)
	}
	for _, d := range done {
		counts = append(counts, gateway.PROMCount{Provider: d.Provider, Instrument: d.Questionnaire, Done: d.N})
	}

	// Change from baseline: the first and the latest score of each referral
	// and instrument, for referrals with two scores or more whose latest is
	// in the period.
	var all query
	all.add("v.type = 'Observation' AND v.superseded_seq IS NULL AND v.score IS NOT NULL")
	scope(&all, q)
	var changes []struct {
		Provider      string  `db:"provider"`
		Questionnaire string  `db:"questionnaire"`
		Mean          float64 `db:"mean"`
		N             int     `db:"n"`
	}
	args := append(append([]any{}, all.args...), q.From.UnixMicro(), q.To.UnixMicro())
	if err := v.selectAll(ctx, &changes, `WITH o AS (
			SELECT v.provider, v.questionnaire, v.referral_id, v.score, v.authored,
				ROW_NUMBER() OVER (PARTITION BY v.referral_id, v.questionnaire ORDER BY v.authored, v.seq) AS first_rn,
				ROW_NUMBER() OVER (PARTITION BY v.referral_id, v.questionnaire ORDER BY v.authored DESC, v.seq DESC) AS last_rn
			FROM resource_versions v WHERE `+all.sql()+`),
		pairs AS (
			SELECT f.provider, f.questionnaire, l.score - f.score AS change, l.authored AS last_at
			FROM o f JOIN o l ON l.referral_id = f.referral_id AND l.questionnaire = f.questionnaire AND l.last_rn = 1
			WHERE f.first_rn = 1 AND l.first_rn > 1)
		SELECT provider, questionnaire, CAST(AVG(change) AS DOUBLE PRECISION) AS mean, COUNT(*) AS n FROM pairs
		WHERE last_at >= ? AND last_at < ? GROUP BY provider, questionnaire`, args...); err != nil {
		return nil, nil, nil, gateway.Internal("store.Outcomes", err)
	}
	var out []gateway.PROMChange
	for _, c := range changes {
		out = append(out, gateway.PROMChange{Provider: c.Provider, Instrument: c.Questionnaire, MeanChange: c.Mean, N: c.N})
	}

	// What is due and overdue, from the next-PROM date of each open Task.
	end := q.To
	if q.Now.Before(end) {
		end = q.Now
	}
	var t query
	t.add("v.type = 'Task' AND v.superseded_seq IS NULL AND v.prom_due IS NOT NULL AND v.status IN " + openTaskStatuses)
	scope(&t, q)
	var sched []struct {
		Provider string        `db:"provider"`
		Due      sql.NullInt64 `db:"due"`
		Overdue  sql.NullInt64 `db:"overdue"`
	}
	args = append([]any{q.From.UnixMicro(), q.To.UnixMicro(), end.UnixMicro()}, t.args...)
	if err := v.selectAll(ctx, &sched, `SELECT v.provider,
			SUM(CASE WHEN v.prom_due >= ? AND v.prom_due < ? THEN 1 ELSE 0 END) AS due,
			SUM(CASE WHEN v.prom_due < ? THEN 1 ELSE 0 END) AS overdue
		FROM resource_versions v WHERE `+t.sql()+` GROUP BY v.provider`, args...); err != nil {
		return nil, nil, nil, gateway.Internal("store.Outcomes", err)
	}
	var schedule []gateway.PROMSchedule
	for _, s := range sched {
		if s.Due.Int64 == 0 && s.Overdue.Int64 == 0 {
			// Open Tasks with nothing due in the period or overdue are not
			// part of the period's schedule: no row of zeros.
			continue
		}
		schedule = append(schedule, gateway.PROMSchedule{Provider: s.Provider, Due: int(s.Due.Int64), Overdue: int(s.Overdue.Int64)})
	}
	return counts, out, schedule, nil
}
