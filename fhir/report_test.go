package fhir_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// The reports are checked against numbers worked out by hand from a
// scenario whose every time is set by a clock the test moves: referrals
// from both practices with known histories, and PROMs with hand-chosen
// answers.

// reportFunnelRow and reportOutcomeRow are the rows of the reports as the
// API documents them (fhir/reports.go, gateway/report.go).
type reportFunnelRow struct {
	Practice                  string         `json:"practice"`
	Provider                  string         `json:"provider"`
	Sent                      int            `json:"sent"`
	Accepted                  int            `json:"accepted"`
	Rejected                  int            `json:"rejected"`
	Cancelled                 int            `json:"cancelled"`
	RejectedByReason          map[string]int `json:"rejected_by_reason"`
	MedianHoursToAcceptance   *float64       `json:"median_hours_to_acceptance"`
	MedianHoursToFirstContact *float64       `json:"median_hours_to_first_contact"`
}

type reportOutcomeRow struct {
	Provider       string   `json:"provider"`
	Instrument     string   `json:"instrument"`
	Done           int      `json:"done"`
	Due            int      `json:"due"`
	Overdue        int      `json:"overdue"`
	CompletionRate *float64 `json:"completion_rate"`
	MeanChange     *float64 `json:"mean_change"`
	WithChange     int      `json:"with_change"`
}

type reportDoc[R any] struct {
	From      string `json:"from"`
	To        string `json:"to"`
	Generated string `json:"generated"`
	Rows      []R    `json:"rows"`
}

var (
	reportFunnelKeys  = []string{"accepted", "cancelled", "median_hours_to_acceptance", "median_hours_to_first_contact", "practice", "provider", "rejected", "rejected_by_reason", "sent"}
	reportOutcomeKeys = []string{"completion_rate", "done", "due", "instrument", "mean_change", "overdue", "provider", "with_change"}

	reportFunnelHeader = []string{"practice", "provider", "sent", "accepted", "rejected", "cancelled",
		"median_hours_to_acceptance", "median_hours_to_first_contact",
		"rejected_patient-declined", "rejected_unable-to-contact", "rejected_not-eligible", "rejected_out-of-area",
		"rejected_no-capacity", "rejected_duplicate", "rejected_referred-elsewhere", "rejected_other"}
	reportOutcomeHeader = []string{"provider", "instrument", "done", "due", "overdue", "completion_rate", "mean_change", "with_change"}
)

// reportTolerance is how far a float of a report may be from the value
// worked out by hand (the CSV rounds to 2 or 4 decimals).
const reportTolerance = 0.005

func reportNum(v float64) *float64 { return &v }

// reportClock is the gateway's clock; the test moves it by hand.
type reportClock struct {
	mu sync.Mutex
	at time.Time
}

func (c *reportClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at
}

// reportScenario seeds referrals and PROMs, each at the time the clock is
// set to.
type reportScenario struct {
	t     *testing.T
	g     *testGateway
	clock *reportClock
}

// at sets the clock; time only moves forward.
func (s reportScenario) at(when string) {
	s.t.Helper()
	next, err := time.Parse(time.RFC3339, when)
	if err != nil {
		s.t.Fatal(err)
	}
	s.clock.mu.Lock()
	defer s.clock.mu.Unlock()
	if next.Before(s.clock.at) {
		s.t.Fatalf("the clock goes back from %s to %s", s.clock.at, next)
	}
	s.clock.at = next
}

// refer sends a referral from practice (A81001 with its key, or A81002 with
// the fixture's A81001 replaced and its own key) and returns its ids.
func (s reportScenario) refer(practice, identifier string) referral {
	s.t.Helper()
	body, key := referralBundle(s.t, identifier, ""), keyA81001
	if practice == "A81002" {
		body, key = []byte(strings.ReplaceAll(string(referralBundle(s.t, identifier, "6541003238")), "A81001", "A81002")), keyA81002
	}
	r := s.g.post("/fhir", key, body)
	if r.status != 200 {
		s.t.Fatalf("referral %s: %d %s", identifier, r.status, r.body)
	}
	var ref referral
	for _, loc := range responseLocations(s.t, r) {
		parts := strings.Split(loc, "/")
		switch parts[0] {
		case "ServiceRequest":
			ref.request = parts[1]
		case "Patient":
			ref.patient = parts[1]
		}
	}
	tasks, _ := entries(s.t, s.g.get("/fhir/Task?focus=ServiceRequest/"+ref.request, key))
	if len(tasks) != 1 {
		s.t.Fatalf("referral %s: %d tasks", identifier, len(tasks))
	}
	ref.task = str(tasks[0], "id")
	return ref
}

func (s reportScenario) change(ref referral, key string, edit func(map[string]any)) {
	s.t.Helper()
	s.g.mustChange(s.t, ref.task, key, edit)
}

func (s reportScenario) firstContact(ref referral, key string) {
	s.t.Helper()
	s.change(ref, key, func(task map[string]any) {
		task["status"] = "in-progress"
		task["businessStatus"] = coded(businessStatusSystem, "first-contact-made", "")
	})
}

// prom records a PROM answered now.
func (s reportScenario) prom(ref referral, key, instrument string, answers [][2]any) {
	s.t.Helper()
	s.promAnswered(ref, key, instrument, s.clock.now().Format(time.RFC3339), answers)
}

// promAnswered records now a PROM answered at authored.
func (s reportScenario) promAnswered(ref referral, key, instrument, authored string, answers [][2]any) {
	s.t.Helper()
	if r := s.g.post("/fhir/QuestionnaireResponse", key, promResponse(ref, instrument, authored, answers)); r.status != 201 {
		s.t.Fatalf("%s at %s: %d %s", instrument, authored, r.status, r.body)
	}
}

// reportWEMWBS answers items 1–7 with high and 8–14 with low.
func reportWEMWBS(high, low int) [][2]any {
	var out [][2]any
	for i := 1; i <= 14; i++ {
		v := low
		if i <= 7 {
			v = high
		}
		out = append(out, [2]any{strconv.Itoa(i), v})
	}
	return out
}

func reportONS4(life, worthwhile, happy, anxious int) [][2]any {
	return [][2]any{{"life-satisfaction", life}, {"worthwhile", worthwhile}, {"happy-yesterday", happy}, {"anxious-yesterday", anxious}}
}

// seed builds the scenario, in time order. Delays are from the Task's
// creation. Every referral of A81001 goes to PRV01, of A81002 to PRV02.
// Without a programme, both providers use SWEMWBS, baseline 30 days after
// acceptance, follow-ups 6 months apart from the baseline.
func (s reportScenario) seed() {
	// PRE-1 (A81001), created before the period. Accepted +1h. SWEMWBS
	// baseline raw 20 → 18.59 (before the period), follow-up raw 24 → 21.54
	// on 2026-06-10: change 2.95, counted (its latest is in the period).
	// Two PROMs done: next due baseline + 12 months = 2026-12-10T10:00.
	s.at("2025-12-01T09:00:00Z")
	pre := s.refer("A81001", "PRE-1")
	s.at("2025-12-01T10:00:00Z")
	s.change(pre, keyPRV01, setStatus("accepted"))
	s.at("2025-12-10T10:00:00Z")
	s.prom(pre, keyPRV01, "swemwbs", swemwbsAnswers(3, 3, 3, 3, 3, 3, 2)) // raw 20

	// A1: accepted +2h, first contact +5h; SWEMWBS 21 → 19.25 on 02-10,
	// 28 → 25.03 on 08-10: change 5.78; next due 2027-02-10.
	s.at("2026-02-02T09:00:00Z")
	a1 := s.refer("A81001", "A1")
	s.at("2026-02-02T11:00:00Z")
	s.change(a1, keyPRV01, setStatus("accepted"))
	s.at("2026-02-02T14:00:00Z")
	s.firstContact(a1, keyPRV01)
	s.at("2026-02-10T10:00:00Z")
	s.prom(a1, keyPRV01, "swemwbs", swemwbsAnswers(3, 3, 3, 3, 3, 3, 3)) // raw 21

	// R1: rejected out-of-area.
	s.at("2026-02-16T09:00:00Z")
	r1 := s.refer("A81001", "R1")
	s.at("2026-02-16T12:00:00Z")
	s.change(r1, keyPRV01, setStatusWithReason("rejected", "out-of-area", ""))

	// A2: accepted +6h, first contact +30h; SWEMWBS 14 → 15.32 on 03-10,
	// 17 → 16.88 on 09-10: change 1.56; next due 2027-03-10.
	s.at("2026-03-02T09:00:00Z")
	a2 := s.refer("A81001", "A2")
	s.at("2026-03-02T15:00:00Z")
	s.change(a2, keyPRV01, setStatus("accepted"))
	s.at("2026-03-03T15:00:00Z")
	s.firstContact(a2, keyPRV01)
	s.at("2026-03-10T10:00:00Z")
	s.prom(a2, keyPRV01, "swemwbs", swemwbsAnswers(2, 2, 2, 2, 2, 2, 2)) // raw 14

	// R2: rejected out-of-area.
	s.at("2026-03-16T09:00:00Z")
	r2 := s.refer("A81001", "R2")
	s.at("2026-03-17T09:00:00Z")
	s.change(r2, keyPRV01, setStatusWithReason("rejected", "out-of-area", ""))

	// A3: accepted +10h, nothing after: the baseline is due 30 days after
	// acceptance, 2026-05-01T19:00, and overdue by the report.
	s.at("2026-04-01T09:00:00Z")
	a3 := s.refer("A81001", "A3")
	s.at("2026-04-01T19:00:00Z")
	s.change(a3, keyPRV01, setStatus("accepted"))

	// C1: cancelled by the practice (a duplicate), never accepted.
	s.at("2026-04-15T09:00:00Z")
	c1 := s.refer("A81001", "C1")
	s.at("2026-04-15T10:00:00Z")
	s.change(c1, keyA81001, setStatusWithReason("cancelled", "duplicate", ""))

	// A4: accepted +30h, first contact +48h; WEMWBS 42 on 05-10 and 49 on
	// 11-10: change 7; ONS4 on 11-12 and 11-19 (no score). Four PROMs
	// done: next due baseline + 24 months, 2028-05-10.
	s.at("2026-05-04T09:00:00Z")
	a4 := s.refer("A81001", "A4")
	s.at("2026-05-05T15:00:00Z")
	s.change(a4, keyPRV01, setStatus("accepted"))
	s.at("2026-05-06T09:00:00Z")
	s.firstContact(a4, keyPRV01)
	s.at("2026-05-10T10:00:00Z")
	s.prom(a4, keyPRV01, "wemwbs", reportWEMWBS(3, 3)) // 14 × 3 = 42

	// B1 (A81002): accepted +4h, no first contact; SWEMWBS 14 → 15.32 on
	// 06-05, no follow-up: next due 2026-12-05T10:00, after the report time.
	s.at("2026-06-01T09:00:00Z")
	b1 := s.refer("A81002", "B1")
	s.at("2026-06-01T13:00:00Z")
	s.change(b1, keyPRV02, setStatus("accepted"))
	s.at("2026-06-05T10:00:00Z")
	s.prom(b1, keyPRV02, "swemwbs", swemwbsAnswers(2, 2, 2, 2, 2, 2, 2)) // raw 14

	// PRE-1's follow-up.
	s.at("2026-06-10T10:00:00Z")
	s.prom(pre, keyPRV01, "swemwbs", swemwbsAnswers(4, 4, 4, 3, 3, 3, 3)) // raw 24

	// R3: rejected no-capacity.
	s.at("2026-06-15T09:00:00Z")
	r3 := s.refer("A81001", "R3")
	s.at("2026-06-15T17:00:00Z")
	s.change(r3, keyPRV01, setStatusWithReason("rejected", "no-capacity", ""))

	// B2: accepted +12h, then cancelled by the practice: accepted and
	// cancelled; closed, so nothing is due.
	s.at("2026-07-01T09:00:00Z")
	b2 := s.refer("A81002", "B2")
	s.at("2026-07-01T21:00:00Z")
	s.change(b2, keyPRV02, setStatus("accepted"))
	s.at("2026-07-20T09:00:00Z")
	s.change(b2, keyA81002, setStatusWithReason("cancelled", "referred-elsewhere", ""))

	// B3: accepted +20h, nothing after: baseline due 2026-09-03T05:00,
	// overdue by the report.
	s.at("2026-08-03T09:00:00Z")
	b3 := s.refer("A81002", "B3")
	s.at("2026-08-04T05:00:00Z")
	s.change(b3, keyPRV02, setStatus("accepted"))

	// A1's follow-up.
	s.at("2026-08-10T10:00:00Z")
	s.prom(a1, keyPRV01, "swemwbs", swemwbsAnswers(4, 4, 4, 4, 4, 4, 4)) // raw 28

	// B4: rejected no-capacity.
	s.at("2026-09-01T09:00:00Z")
	b4 := s.refer("A81002", "B4")
	s.at("2026-09-01T11:00:00Z")
	s.change(b4, keyPRV02, setStatusWithReason("rejected", "no-capacity", ""))

	// A2's follow-up.
	s.at("2026-09-10T10:00:00Z")
	s.prom(a2, keyPRV01, "swemwbs", swemwbsAnswers(3, 3, 3, 2, 2, 2, 2)) // raw 17

	// Q1: still requested.
	s.at("2026-10-01T09:00:00Z")
	s.refer("A81001", "Q1")

	// B5: accepted +16h. SWEMWBS raw 21 → 19.25 answered on 10-20, then,
	// entered a week later, a paper form answered earlier, on 10-13: raw
	// 14 → 15.32. By when they were answered the first is 15.32 and the
	// latest 19.25: change 3.93. With two done, the next PROM is due in
	// 2027 (a year after the baseline): neither due nor overdue.
	s.at("2026-10-05T09:00:00Z")
	b5 := s.refer("A81002", "B5")
	s.at("2026-10-06T01:00:00Z")
	s.change(b5, keyPRV02, setStatus("accepted"))
	s.at("2026-10-20T10:00:00Z")
	s.prom(b5, keyPRV02, "swemwbs", swemwbsAnswers(3, 3, 3, 3, 3, 3, 3)) // raw 21
	s.at("2026-10-27T10:00:00Z")
	s.promAnswered(b5, keyPRV02, "swemwbs", "2026-10-13T10:00:00Z", swemwbsAnswers(2, 2, 2, 2, 2, 2, 2)) // raw 14

	// A4's follow-ups.
	s.at("2026-11-10T10:00:00Z")
	s.prom(a4, keyPRV01, "wemwbs", reportWEMWBS(4, 3)) // 7 × 4 + 7 × 3 = 49
	s.at("2026-11-12T10:00:00Z")
	s.prom(a4, keyPRV01, "ons4", reportONS4(5, 6, 5, 4))
	s.at("2026-11-19T10:00:00Z")
	s.prom(a4, keyPRV01, "ons4", reportONS4(7, 8, 7, 2))

	// The reports are made at midnight on 1 December 2026.
	s.at("2026-12-01T00:00:00Z")
}

// TestReports checks the funnel and outcomes reports against numbers worked
// out by hand, their scope by caller, their period, and their CSV.
func TestReports(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		clock := &reportClock{at: time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC)}
		g := newGateway(t, engine, withNow(clock.now))

		// Nothing yet: no rows, in JSON and in CSV.
		for _, path := range []string{"/api/v1/reports/funnel", "/api/v1/reports/outcomes"} {
			r := g.get(path, keyAdmin)
			if r.status != 200 || !bytes.Contains(r.body, []byte(`"rows":[]`)) {
				t.Errorf("%s with no data: %d %s", path, r.status, r.body)
			}
		}
		reportSeed := reportScenario{t: t, g: g, clock: clock}
		reportSeed.seed()

		const (
			period = "from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z"
			// March to June, for the period checks.
			spring = "from=2026-03-01T00:00:00Z&to=2026-07-01T00:00:00Z"
		)

		// The funnel over 2026 (PRE-1, created 2025-12-01, is outside).
		//
		// A81001/PRV01: A1 A2 A3 A4 R1 R2 R3 C1 Q1 = 9 sent; accepted A1–A4
		// = 4; rejected R1 R2 (out-of-area), R3 (no-capacity) = 3;
		// cancelled C1 = 1 (its reason, duplicate, is no rejection).
		// Hours to acceptance 2, 6, 10, 30: even, median (6 + 10) / 2 = 8.
		// Hours to first contact 5 (A1), 30 (A2), 48 (A4): median 30.
		//
		// A81002/PRV02: B1 B2 B3 B4 B5 = 5 sent; accepted B1 B2 B3 B5 = 4
		// (B2 before it was cancelled); rejected B4 (no-capacity) = 1;
		// cancelled B2 = 1. Hours to acceptance 4, 12, 16, 20: even, median
		// (12 + 16) / 2 = 14. No first contact: null.
		funnel2026 := []reportFunnelRow{
			{Practice: "A81001", Provider: "PRV01", Sent: 9, Accepted: 4, Rejected: 3, Cancelled: 1,
				RejectedByReason:        map[string]int{"out-of-area": 2, "no-capacity": 1},
				MedianHoursToAcceptance: reportNum(8), MedianHoursToFirstContact: reportNum(30)},
			{Practice: "A81002", Provider: "PRV02", Sent: 5, Accepted: 4, Rejected: 1, Cancelled: 1,
				RejectedByReason:        map[string]int{"no-capacity": 1},
				MedianHoursToAcceptance: reportNum(14), MedianHoursToFirstContact: nil},
		}

		// The outcomes over 2026, made on 2026-12-01 (before the end of the
		// period, so overdue is due before 2026-12-01).
		//
		// PRV01 swemwbs: done A1 ×2, A2 ×2, PRE-1's follow-up = 5 (PRE-1's
		// baseline, 2025-12-10, is outside). Next due: PRE-1 2026-12-10
		// (due), A3 2026-05-01 (due and overdue), A1 2027-02-10, A2
		// 2027-03-10, A4 2028-05-10 (neither); Q1 never accepted, C1 and the
		// rejections closed: due 2, overdue 1. Completion 5 / (5 + 1) =
		// 0.83333…. Changes: A1 25.03 − 19.25 = 5.78, A2 16.88 − 15.32 =
		// 1.56, PRE-1 21.54 − 18.59 = 2.95: mean 10.29 / 3 = 3.43, 3 of them.
		// PRV01 wemwbs: done 2; change 49 − 42 = 7, 1 of them; nothing due
		// (the programme's instrument is SWEMWBS): completion 2 / 2 = 1.
		// PRV01 ons4: done 2; no score, no change; completion 1.
		// PRV02 swemwbs: done B1, B5 ×2 = 3. Next due: B1 2026-12-05 (due,
		// not yet overdue), B3 2026-09-03 (due and overdue), B5 in 2027
		// (neither); B2 closed: due 2, overdue 1. Completion 3 / (3 + 1) =
		// 0.75. Changes: B5 19.25 − 15.32 = 3.93 (B1 has one score): mean
		// 3.93, 1 of them.
		outcomes2026 := []reportOutcomeRow{
			{Provider: "PRV01", Instrument: "ons4", Done: 2, Due: 0, Overdue: 0, CompletionRate: reportNum(1), MeanChange: nil, WithChange: 0},
			{Provider: "PRV01", Instrument: "swemwbs", Done: 5, Due: 2, Overdue: 1, CompletionRate: reportNum(0.8333), MeanChange: reportNum(3.43), WithChange: 3},
			{Provider: "PRV01", Instrument: "wemwbs", Done: 2, Due: 0, Overdue: 0, CompletionRate: reportNum(1), MeanChange: reportNum(7), WithChange: 1},
			{Provider: "PRV02", Instrument: "swemwbs", Done: 3, Due: 2, Overdue: 1, CompletionRate: reportNum(0.75), MeanChange: reportNum(3.93), WithChange: 1},
		}

		// The admin sees every row.
		f := reportFunnel(t, g, "/api/v1/reports/funnel?"+period, keyAdmin)
		reportCheckFunnel(t, "funnel 2026", f.Rows, funnel2026)
		reportCheckInstants(t, "funnel 2026", f.From, f.To, f.Generated, "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z", "2026-12-01T00:00:00Z")
		o := reportOutcomes(t, g, "/api/v1/reports/outcomes?"+period, keyAdmin)
		reportCheckOutcomes(t, "outcomes 2026", o.Rows, outcomes2026)
		reportCheckInstants(t, "outcomes 2026", o.From, o.To, o.Generated, "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z", "2026-12-01T00:00:00Z")

		// An admin may ask for one provider; a provider gets its own, with
		// or without asking.
		for _, c := range []struct {
			name, query, key string
			funnel           []reportFunnelRow
			outcomes         []reportOutcomeRow
		}{
			{"admin, PRV02", "&provider=PRV02", keyAdmin, funnel2026[1:], outcomes2026[3:]},
			{"admin, PRV01", "&provider=PRV01", keyAdmin, funnel2026[:1], outcomes2026[:3]},
			{"PRV01", "", keyPRV01, funnel2026[:1], outcomes2026[:3]},
			{"PRV01 asking for itself", "&provider=PRV01", keyPRV01, funnel2026[:1], outcomes2026[:3]},
			{"PRV02", "", keyPRV02, funnel2026[1:], outcomes2026[3:]},
		} {
			reportCheckFunnel(t, "funnel, "+c.name, reportFunnel(t, g, "/api/v1/reports/funnel?"+period+c.query, c.key).Rows, c.funnel)
			reportCheckOutcomes(t, "outcomes, "+c.name, reportOutcomes(t, g, "/api/v1/reports/outcomes?"+period+c.query, c.key).Rows, c.outcomes)
		}

		// Refusals: another provider's report, a practice, no key, a period
		// that ends before it starts (or as it starts), a malformed date.
		for _, path := range []string{"/api/v1/reports/funnel", "/api/v1/reports/outcomes"} {
			for _, c := range []struct {
				name, query, key string
				status           int
				expr             string
			}{
				{"PRV01 asking for PRV02", "?" + period + "&provider=PRV02", keyPRV01, 403, ""},
				{"PRV02 asking for PRV01", "?" + period + "&provider=PRV01", keyPRV02, 403, ""},
				{"practice", "?" + period, keyA81001, 403, ""},
				{"other practice", "", keyA81002, 403, ""},
				{"practice asking for its provider", "?provider=PRV01", keyA81001, 403, ""},
				{"no key", "?" + period, "", 401, ""},
				{"to before from", "?from=2026-07-01T00:00:00Z&to=2026-03-01T00:00:00Z", keyAdmin, 400, "to"},
				{"to equal to from", "?from=2026-07-01T00:00:00Z&to=2026-07-01T00:00:00Z", keyAdmin, 400, "to"},
				{"malformed from", "?from=2026-13-45&to=2027-01-01T00:00:00Z", keyAdmin, 400, "from"},
				{"from as words", "?from=yesterday", keyAdmin, 400, "from"},
				{"malformed to", "?from=2026-01-01&to=2026-02-30T00:00:00Z", keyAdmin, 400, "to"},
			} {
				r := g.get(path+c.query, c.key)
				if r.status != c.status {
					t.Errorf("%s, %s: %d %s", path, c.name, r.status, r.body)
					continue
				}
				if len(outcomeIssues(t, r)) == 0 {
					t.Errorf("%s, %s: an OperationOutcome without issues: %s", path, c.name, r.body)
				}
				if c.expr != "" && !names(t, r, c.expr) {
					t.Errorf("%s, %s: the outcome does not name %s: %s", path, c.name, c.expr, r.body)
				}
				// The same refusal in CSV is still an OperationOutcome.
				if rc := g.do(http.MethodGet, path+c.query, c.key, nil, "Accept", "text/csv"); rc.status != c.status || len(outcomeIssues(t, rc)) == 0 {
					t.Errorf("%s, %s, CSV: %d %s", path, c.name, rc.status, rc.body)
				}
			}
		}

		// The period: March to June 2026.
		//
		// Funnel, A81001/PRV01: A2 (03-02), R2 (03-16), A3 (04-01), C1
		// (04-15), A4 (05-04), R3 (06-15) = 6 sent (A1 and R1 in February,
		// Q1 in October, are outside); accepted A2 A3 A4 = 3, hours 6, 10,
		// 30: median 10; rejected R2 (out-of-area), R3 (no-capacity) = 2;
		// cancelled C1 = 1; first contact A2 30, A4 48: even, median
		// (30 + 48) / 2 = 39.
		// A81002/PRV02: B1 (06-01) = 1 sent, accepted +4h: median 4;
		// nothing rejected: rejected_by_reason {}; no first contact.
		funnelSpring := []reportFunnelRow{
			{Practice: "A81001", Provider: "PRV01", Sent: 6, Accepted: 3, Rejected: 2, Cancelled: 1,
				RejectedByReason:        map[string]int{"out-of-area": 1, "no-capacity": 1},
				MedianHoursToAcceptance: reportNum(10), MedianHoursToFirstContact: reportNum(39)},
			{Practice: "A81002", Provider: "PRV02", Sent: 1, Accepted: 1, Rejected: 0, Cancelled: 0,
				RejectedByReason:        map[string]int{},
				MedianHoursToAcceptance: reportNum(4), MedianHoursToFirstContact: nil},
		}
		// Outcomes, overdue meaning due before 2026-07-01 (the end of the
		// period, sooner than now).
		// PRV01 swemwbs: done A2's baseline (03-10), PRE-1's follow-up
		// (06-10) = 2 (A1's baseline, 02-10, and the follow-ups of August
		// and September are outside). Due in the period: A3 (05-01) = 1
		// (PRE-1's 12-10 is not); overdue: A3 = 1. Completion 2 / 3 =
		// 0.66667. Changes whose latest score is in the period: PRE-1 only
		// (A1's latest is 08-10, A2's 09-10): mean 2.95, 1 of them.
		// PRV01 wemwbs: done A4's baseline (05-10) = 1; its latest (11-10)
		// is outside: no change. Completion 1.
		// PRV01 ons4: nothing in the period: no row.
		// PRV02 swemwbs: done B1's baseline (06-05) = 1; B1 due 12-05 and
		// B3 due 09-03 are neither due in the period nor overdue by its
		// end. Completion 1 / (1 + 0) = 1.
		outcomesSpring := []reportOutcomeRow{
			{Provider: "PRV01", Instrument: "swemwbs", Done: 2, Due: 1, Overdue: 1, CompletionRate: reportNum(0.6667), MeanChange: reportNum(2.95), WithChange: 1},
			{Provider: "PRV01", Instrument: "wemwbs", Done: 1, Due: 0, Overdue: 0, CompletionRate: reportNum(1), MeanChange: nil, WithChange: 0},
			{Provider: "PRV02", Instrument: "swemwbs", Done: 1, Due: 0, Overdue: 0, CompletionRate: reportNum(1), MeanChange: nil, WithChange: 0},
		}
		f = reportFunnel(t, g, "/api/v1/reports/funnel?"+spring, keyAdmin)
		reportCheckFunnel(t, "funnel, spring", f.Rows, funnelSpring)
		reportCheckInstants(t, "funnel, spring", f.From, f.To, f.Generated, "2026-03-01T00:00:00Z", "2026-07-01T00:00:00Z", "2026-12-01T00:00:00Z")
		reportCheckOutcomes(t, "outcomes, spring", reportOutcomes(t, g, "/api/v1/reports/outcomes?"+spring, keyAdmin).Rows, outcomesSpring)
		// The same as PRV02, and a period given as dates with an offset.
		reportCheckFunnel(t, "funnel, spring, PRV02", reportFunnel(t, g, "/api/v1/reports/funnel?"+spring, keyPRV02).Rows, funnelSpring[1:])
		// An offset, escaped or not (a + in a query is a space).
		for _, from := range []string{"2026-03-01T01:00:00%2B01:00", "2026-03-01T01:00:00+01:00"} {
			f = reportFunnel(t, g, "/api/v1/reports/funnel?from="+from+"&to=2026-07-01T00:00:00Z", keyAdmin)
			reportCheckFunnel(t, "funnel, spring from "+from, f.Rows, funnelSpring)
			reportCheckInstants(t, "funnel, spring from "+from, f.From, f.To, f.Generated, "2026-03-01T00:00:00Z", "2026-07-01T00:00:00Z", "2026-12-01T00:00:00Z")
		}

		// The ends of a period: from is in it, to is not.
		//
		// Funnel from A2's creation (2026-03-02T09:00) to C1's
		// (2026-04-15T09:00): A2, R2, A3 = 3 sent (C1 is not); accepted A2
		// 6h, A3 10h: even, median (6 + 10) / 2 = 8; rejected R2
		// (out-of-area); first contact A2 30h. Nothing from A81002.
		reportCheckFunnel(t, "funnel, ends of the period",
			reportFunnel(t, g, "/api/v1/reports/funnel?from=2026-03-02T09:00:00Z&to=2026-04-15T09:00:00Z", keyAdmin).Rows,
			[]reportFunnelRow{{Practice: "A81001", Provider: "PRV01", Sent: 3, Accepted: 2, Rejected: 1, Cancelled: 0,
				RejectedByReason:        map[string]int{"out-of-area": 1},
				MedianHoursToAcceptance: reportNum(8), MedianHoursToFirstContact: reportNum(30)}})
		for _, c := range []struct {
			name, query string
			want        []reportOutcomeRow
		}{
			// From A2's baseline (answered at from: done) to A3's due
			// baseline (due at to: neither due nor overdue). Completion
			// 1 / (1 + 0) = 1. No latest score in the period.
			{"from a PROM to a due date", "from=2026-03-10T10:00:00Z&to=2026-05-01T19:00:00Z", []reportOutcomeRow{
				{Provider: "PRV01", Instrument: "swemwbs", Done: 1, Due: 0, Overdue: 0, CompletionRate: reportNum(1), MeanChange: nil, WithChange: 0}}},
			// A second after A2's baseline (not done) to A4's WEMWBS
			// baseline (answered at to: not done, so no wemwbs row). A3's
			// baseline (05-01T19:00) is due and overdue: completion
			// 0 / (0 + 1) = 0.
			{"after a PROM to a PROM", "from=2026-03-10T10:00:01Z&to=2026-05-10T10:00:00Z", []reportOutcomeRow{
				{Provider: "PRV01", Instrument: "swemwbs", Done: 0, Due: 1, Overdue: 1, CompletionRate: reportNum(0), MeanChange: nil, WithChange: 0}}},
			// From PRE-1's follow-up (done; its change, 2.95, counts) to
			// A1's (not done; its change does not count). A3 is overdue
			// (05-01 is before the end), not due in the period: completion
			// 1 / (1 + 1) = 0.5.
			{"from a latest score to a latest score", "from=2026-06-10T10:00:00Z&to=2026-08-10T10:00:00Z", []reportOutcomeRow{
				{Provider: "PRV01", Instrument: "swemwbs", Done: 1, Due: 0, Overdue: 1, CompletionRate: reportNum(0.5), MeanChange: reportNum(2.95), WithChange: 1}}},
		} {
			reportCheckOutcomes(t, "outcomes, "+c.name, reportOutcomes(t, g, "/api/v1/reports/outcomes?"+c.query, keyPRV01).Rows, c.want)
		}

		// The default period is the twelve months to now: 2025-12-01 to
		// 2026-12-01, which takes in PRE-1 (created 2025-12-01T09:00,
		// accepted +1h): A81001 sent 9 + 1 = 10, accepted 5, hours 1, 2, 6,
		// 10, 30: median 6. PRE-1's baseline (2025-12-10) is now done too:
		// PRV01 swemwbs done 6, completion 6 / (6 + 1) = 0.85714. PRE-1's
		// next PROM (12-10) is after the period: due 1 (A3), overdue 1.
		f = reportFunnel(t, g, "/api/v1/reports/funnel", keyPRV01)
		reportCheckInstants(t, "funnel, default period", f.From, f.To, f.Generated, "2025-12-01T00:00:00Z", "2026-12-01T00:00:00Z", "2026-12-01T00:00:00Z")
		funnelDefault := funnel2026[0]
		funnelDefault.Sent, funnelDefault.Accepted, funnelDefault.MedianHoursToAcceptance = 10, 5, reportNum(6)
		reportCheckFunnel(t, "funnel, default period", f.Rows, []reportFunnelRow{funnelDefault})
		outcomesDefault := slices.Clone(outcomes2026[:3])
		outcomesDefault[1].Done, outcomesDefault[1].Due, outcomesDefault[1].CompletionRate = 6, 1, reportNum(0.8571)
		reportCheckOutcomes(t, "outcomes, default period", reportOutcomes(t, g, "/api/v1/reports/outcomes", keyPRV01).Rows, outcomesDefault)

		// A period with nothing in it: no referral created, no PROM
		// answered, nothing due and nothing overdue by its end (the open
		// Tasks of both providers are due later): no rows.
		empty := "from=2020-01-01&to=2020-02-01"
		for _, path := range []string{"/api/v1/reports/funnel?" + empty, "/api/v1/reports/outcomes?" + empty} {
			r := g.get(path, keyAdmin)
			if r.status != 200 || !bytes.Contains(r.body, []byte(`"rows":[]`)) {
				t.Errorf("%s: %d %s", path, r.status, r.body)
			}
		}
		reportCheckFunnel(t, "funnel, empty period", reportFunnel(t, g, "/api/v1/reports/funnel?"+empty, keyAdmin).Rows, nil)
		reportCheckOutcomes(t, "outcomes, empty period", reportOutcomes(t, g, "/api/v1/reports/outcomes?"+empty, keyAdmin).Rows, nil)

		// CSV, by Accept or by format: the header, then the rows of the
		// JSON, to the decimals of the CSV.
		for _, c := range []struct {
			name, query string
			headers     []string
		}{
			{"Accept: text/csv", "?" + period, []string{"Accept", "text/csv"}},
			{"Accept with parameters", "?" + period, []string{"Accept", "application/json;q=0.5, text/csv;q=0.9"}},
			{"format=csv", "?" + period + "&format=csv", nil},
			{"format=csv over Accept: application/json", "?" + period + "&format=csv", []string{"Accept", "application/json"}},
		} {
			head, rows := reportCSV(t, g, "/api/v1/reports/funnel"+c.query, keyAdmin, c.headers...)
			if !slices.Equal(head, reportFunnelHeader) {
				t.Errorf("funnel CSV, %s: header %q", c.name, head)
			}
			reportCheckFunnel(t, "funnel CSV, "+c.name, reportFunnelFromCSV(t, rows), funnel2026)
			head, rows = reportCSV(t, g, "/api/v1/reports/outcomes"+c.query, keyAdmin, c.headers...)
			if !slices.Equal(head, reportOutcomeHeader) {
				t.Errorf("outcomes CSV, %s: header %q", c.name, head)
			}
			reportCheckOutcomes(t, "outcomes CSV, "+c.name, reportOutcomesFromCSV(t, rows), outcomes2026)
		}
		// The CSV is the JSON to its decimals, row by row, in another period
		// and scope too.
		head, rows := reportCSV(t, g, "/api/v1/reports/funnel?"+spring+"&format=csv", keyAdmin)
		if !slices.Equal(head, reportFunnelHeader) {
			t.Errorf("funnel CSV, spring: header %q", head)
		}
		reportCheckFunnel(t, "funnel CSV = JSON, spring", reportFunnelFromCSV(t, rows), reportFunnel(t, g, "/api/v1/reports/funnel?"+spring, keyAdmin).Rows)
		_, rows = reportCSV(t, g, "/api/v1/reports/outcomes?"+spring+"&format=csv", keyPRV01)
		reportCheckOutcomes(t, "outcomes CSV = JSON, spring, PRV01", reportOutcomesFromCSV(t, rows), reportOutcomes(t, g, "/api/v1/reports/outcomes?"+spring, keyPRV01).Rows)
		// No rows: the header alone.
		head, rows = reportCSV(t, g, "/api/v1/reports/funnel?"+empty, keyAdmin, "Accept", "text/csv")
		if !slices.Equal(head, reportFunnelHeader) || len(rows) != 0 {
			t.Errorf("funnel CSV of an empty period: %q %q", head, rows)
		}
		head, rows = reportCSV(t, g, "/api/v1/reports/outcomes?"+empty+"&format=csv", keyAdmin)
		if !slices.Equal(head, reportOutcomeHeader) || len(rows) != 0 {
			t.Errorf("outcomes CSV of an empty period: %q %q", head, rows)
		}
		// format=json wins over Accept: text/csv.
		if r := g.do(http.MethodGet, "/api/v1/reports/funnel?"+period+"&format=json", keyAdmin, nil, "Accept", "text/csv"); r.status != 200 ||
			!strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
			t.Errorf("format=json: %d %s %s", r.status, r.header.Get("Content-Type"), r.body)
		}
	})
}

// reportJSON gets a report in JSON and checks its shape: from, to,
// generated and rows, each row with exactly the documented fields.
func reportJSON[R any](t *testing.T, g *testGateway, path, key string, rowKeys []string) reportDoc[R] {
	t.Helper()
	r := g.get(path, key)
	if r.status != 200 {
		t.Fatalf("%s: %d %s", path, r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q", path, ct)
	}
	var shape map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &shape); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, r.body)
	}
	keys := make([]string, 0, len(shape))
	for k := range shape {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"from", "generated", "rows", "to"}) {
		t.Errorf("%s: fields %v", path, keys)
	}
	var rows []map[string]json.RawMessage
	if err := json.Unmarshal(shape["rows"], &rows); err != nil || rows == nil {
		t.Fatalf("%s: rows are not an array: %v %s", path, err, shape["rows"])
	}
	for i, row := range rows {
		got := make([]string, 0, len(row))
		for k := range row {
			got = append(got, k)
		}
		slices.Sort(got)
		if !slices.Equal(got, rowKeys) {
			t.Errorf("%s: row %d has fields %v, want %v", path, i, got, rowKeys)
		}
	}
	var doc reportDoc[R]
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, r.body)
	}
	return doc
}

func reportFunnel(t *testing.T, g *testGateway, path, key string) reportDoc[reportFunnelRow] {
	t.Helper()
	return reportJSON[reportFunnelRow](t, g, path, key, reportFunnelKeys)
}

func reportOutcomes(t *testing.T, g *testGateway, path, key string) reportDoc[reportOutcomeRow] {
	t.Helper()
	return reportJSON[reportOutcomeRow](t, g, path, key, reportOutcomeKeys)
}

// reportCheckInstants checks the from, to and generated of a report.
func reportCheckInstants(t *testing.T, name, from, to, generated, wantFrom, wantTo, wantGenerated string) {
	t.Helper()
	for _, c := range [][3]string{{"from", from, wantFrom}, {"to", to, wantTo}, {"generated", generated, wantGenerated}} {
		got, err := time.Parse(time.RFC3339Nano, c[1])
		want, _ := time.Parse(time.RFC3339, c[2])
		if err != nil || !got.Equal(want) {
			t.Errorf("%s: %s %q, want %s", name, c[0], c[1], c[2])
		}
	}
}

func reportFloatsEqual(got, want *float64) bool {
	if got == nil || want == nil {
		return got == nil && want == nil
	}
	return math.Abs(*got-*want) <= reportTolerance
}

func reportFloat(v *float64) string {
	if v == nil {
		return "null"
	}
	return strconv.FormatFloat(*v, 'f', -1, 64)
}

func reportCheckFunnel(t *testing.T, name string, got, want []reportFunnelRow) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d rows, want %d: %+v", name, len(got), len(want), got)
		return
	}
	for i, w := range want {
		g := got[i]
		reasons := len(g.RejectedByReason) == len(w.RejectedByReason) && g.RejectedByReason != nil
		for k, n := range w.RejectedByReason {
			reasons = reasons && g.RejectedByReason[k] == n
		}
		if g.Practice != w.Practice || g.Provider != w.Provider || g.Sent != w.Sent || g.Accepted != w.Accepted ||
			g.Rejected != w.Rejected || g.Cancelled != w.Cancelled || !reasons ||
			!reportFloatsEqual(g.MedianHoursToAcceptance, w.MedianHoursToAcceptance) ||
			!reportFloatsEqual(g.MedianHoursToFirstContact, w.MedianHoursToFirstContact) {
			t.Errorf("%s: row %d\n got %s\nwant %s", name, i, reportFunnelString(g), reportFunnelString(w))
		}
	}
}

func reportFunnelString(r reportFunnelRow) string {
	return fmt.Sprintf("%s/%s sent %d accepted %d rejected %d %v cancelled %d, hours to acceptance %s, to first contact %s",
		r.Practice, r.Provider, r.Sent, r.Accepted, r.Rejected, r.RejectedByReason, r.Cancelled,
		reportFloat(r.MedianHoursToAcceptance), reportFloat(r.MedianHoursToFirstContact))
}

func reportCheckOutcomes(t *testing.T, name string, got, want []reportOutcomeRow) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d rows, want %d: %+v", name, len(got), len(want), got)
		return
	}
	for i, w := range want {
		g := got[i]
		if g.Provider != w.Provider || g.Instrument != w.Instrument || g.Done != w.Done || g.Due != w.Due ||
			g.Overdue != w.Overdue || g.WithChange != w.WithChange ||
			!reportFloatsEqual(g.CompletionRate, w.CompletionRate) || !reportFloatsEqual(g.MeanChange, w.MeanChange) {
			t.Errorf("%s: row %d\n got %s\nwant %s", name, i, reportOutcomeString(g), reportOutcomeString(w))
		}
	}
}

func reportOutcomeString(r reportOutcomeRow) string {
	return fmt.Sprintf("%s/%s done %d due %d overdue %d, completion %s, mean change %s over %d",
		r.Provider, r.Instrument, r.Done, r.Due, r.Overdue, reportFloat(r.CompletionRate), reportFloat(r.MeanChange), r.WithChange)
}

// reportCSV gets a report as CSV and returns its header and rows.
func reportCSV(t *testing.T, g *testGateway, path, key string, headers ...string) (header []string, rows [][]string) {
	t.Helper()
	r := g.do(http.MethodGet, path, key, nil, headers...)
	if r.status != 200 {
		t.Fatalf("%s: %d %s", path, r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
		t.Errorf("%s: Content-Type %q", path, ct)
	}
	records, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
	if err != nil || len(records) == 0 {
		t.Fatalf("%s: not CSV: %v\n%s", path, err, r.body)
	}
	return records[0], records[1:]
}

func reportInt(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("CSV: %q is not an integer", s)
	}
	return n
}

// reportOptional reads an optional number: empty for none.
func reportOptional(t *testing.T, s string) *float64 {
	t.Helper()
	if s == "" {
		return nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("CSV: %q is not a number", s)
	}
	return &v
}

func reportFunnelFromCSV(t *testing.T, records [][]string) []reportFunnelRow {
	t.Helper()
	var out []reportFunnelRow
	for _, rec := range records {
		if len(rec) != len(reportFunnelHeader) {
			t.Fatalf("funnel CSV row %q", rec)
		}
		row := reportFunnelRow{Practice: rec[0], Provider: rec[1], Sent: reportInt(t, rec[2]), Accepted: reportInt(t, rec[3]),
			Rejected: reportInt(t, rec[4]), Cancelled: reportInt(t, rec[5]), RejectedByReason: map[string]int{},
			MedianHoursToAcceptance: reportOptional(t, rec[6]), MedianHoursToFirstContact: reportOptional(t, rec[7])}
		for i := 8; i < len(rec); i++ {
			if n := reportInt(t, rec[i]); n != 0 {
				row.RejectedByReason[strings.TrimPrefix(reportFunnelHeader[i], "rejected_")] = n
			}
		}
		out = append(out, row)
	}
	return out
}

func reportOutcomesFromCSV(t *testing.T, records [][]string) []reportOutcomeRow {
	t.Helper()
	var out []reportOutcomeRow
	for _, rec := range records {
		if len(rec) != len(reportOutcomeHeader) {
			t.Fatalf("outcomes CSV row %q", rec)
		}
		out = append(out, reportOutcomeRow{Provider: rec[0], Instrument: rec[1], Done: reportInt(t, rec[2]), Due: reportInt(t, rec[3]),
			Overdue: reportInt(t, rec[4]), CompletionRate: reportOptional(t, rec[5]), MeanChange: reportOptional(t, rec[6]),
			WithChange: reportInt(t, rec[7])})
	}
	return out
}
