package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/gatewaytest"
	"github.com/spgateway/spgateway/gateway/store/storetest"
	"github.com/spgateway/spgateway/mapping"
)

// The linkIds of the built-in instruments, in item order. SWEMWBS items are
// WEMWBS items 1, 2, 3, 6, 7, 9 and 11.
var (
	swemwbsLinks = []string{"1", "2", "3", "6", "7", "9", "11"}
	wemwbsLinks  = []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14"}
	ons4Links    = []string{"life-satisfaction", "worthwhile", "happy-yesterday", "anxious-yesterday"}
)

// promScoreSystem is the gateway's code system for scores without a SNOMED
// CT code, written out rather than taken from the package.
const promScoreSystem = "https://fhir.spgateway.org/CodeSystem/prom-score"

// builtIn returns the built-in instrument id.
func builtIn(t *testing.T, id string) gateway.Instrument {
	t.Helper()
	for _, in := range gateway.BuiltInInstruments() {
		if in.ID == id {
			return in
		}
	}
	t.Fatalf("no built-in instrument %q", id)
	return gateway.Instrument{}
}

// answers pairs linkIds with values, in the order given.
func answers(links []string, values ...int) []gateway.Answer {
	out := make([]gateway.Answer, len(links))
	for i, l := range links {
		out[i] = gateway.Answer{LinkID: l, Value: values[i], Given: true}
	}
	return out
}

// swemwbsRaw returns SWEMWBS answers adding up to raw (7–35): every item 1,
// then items raised to 5 in turn until the sum is reached.
func swemwbsRaw(raw int) []gateway.Answer {
	values := []int{1, 1, 1, 1, 1, 1, 1}
	left := raw - 7
	for i := range values {
		step := min(4, left)
		values[i] += step
		left -= step
	}
	return answers(swemwbsLinks, values...)
}

func TestScoreSWEMWBS(t *testing.T) {
	rawCode := gateway.Coding{System: promScoreSystem, Code: "swemwbs-raw"}
	tests := []struct {
		name   string
		values []int
		raw    int
		want   float64
	}{
		{"all 1s: raw 7 is the table's lowest, 7.00", []int{1, 1, 1, 1, 1, 1, 1}, 7, 7.00},
		{"all 5s: raw 35 is the table's highest, 35.00", []int{5, 5, 5, 5, 5, 5, 5}, 35, 35.00},
		{"all 3s: raw 21 is 19.25", []int{3, 3, 3, 3, 3, 3, 3}, 21, 19.25},
		{"1,2,3,4,5,4,3: raw 22 is 19.98", []int{1, 2, 3, 4, 5, 4, 3}, 22, 19.98},
		{"5,1,4,2,2,3,1: raw 18 is 17.43", []int{5, 1, 4, 2, 2, 3, 1}, 18, 17.43},
		{"one 2 and six 1s: raw 8, next to the lowest, is 9.51", []int{1, 1, 1, 2, 1, 1, 1}, 8, 9.51},
		{"one 4 and six 5s: raw 34, next to the highest, is 32.55", []int{5, 5, 5, 5, 5, 5, 4}, 34, 32.55},
	}
	in := builtIn(t, "swemwbs")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := gateway.ScoreAnswers(in, answers(swemwbsLinks, tc.values...))
			if err != nil {
				t.Fatalf("ScoreAnswers: %v", err)
			}
			if got.Value != tc.want || !got.HasValue {
				t.Errorf("score %v (HasValue %v), want %v (HasValue true)", got.Value, got.HasValue, tc.want)
			}
			if got.Raw != tc.raw {
				t.Errorf("raw %d, want %d", got.Raw, tc.raw)
			}
			want := []gateway.ScoreComponent{{Code: rawCode, Value: tc.raw}}
			if !reflect.DeepEqual(got.Components, want) {
				t.Errorf("components %+v, want the raw score alone %+v", got.Components, want)
			}
		})
	}
}

// TestSWEMWBSConversionTable checks the built-in scoring against every pair
// of DOMAIN.md's table of SWEMWBS raw → metric scores.
func TestSWEMWBSConversionTable(t *testing.T) {
	table := []struct {
		raw    int
		metric float64
	}{
		{7, 7.00}, {8, 9.51}, {9, 11.25}, {10, 12.40}, {11, 13.33}, {12, 14.08}, {13, 14.75}, {14, 15.32}, {15, 15.84},
		{16, 16.36}, {17, 16.88}, {18, 17.43}, {19, 17.98}, {20, 18.59}, {21, 19.25}, {22, 19.98}, {23, 20.73}, {24, 21.54},
		{25, 22.35}, {26, 23.21}, {27, 24.11}, {28, 25.03}, {29, 26.02}, {30, 27.03}, {31, 28.13}, {32, 29.31}, {33, 30.70},
		{34, 32.55}, {35, 35.00},
	}
	if len(table) != 29 {
		t.Fatalf("the test's table has %d pairs, DOMAIN.md's has 29", len(table))
	}
	in := builtIn(t, "swemwbs")
	if len(in.Table) != len(table) {
		t.Errorf("the built-in table has %d entries, want %d (raw 7 to 35)", len(in.Table), len(table))
	}
	for _, p := range table {
		t.Run("raw "+strconv.Itoa(p.raw), func(t *testing.T) {
			got, err := gateway.ScoreAnswers(in, swemwbsRaw(p.raw))
			if err != nil {
				t.Fatalf("ScoreAnswers: %v", err)
			}
			if got.Raw != p.raw || got.Value != p.metric {
				t.Errorf("raw %d scored %v, DOMAIN.md says %v", got.Raw, got.Value, p.metric)
			}
		})
	}
}

func TestBuiltInInstruments(t *testing.T) {
	const snomed = "http://snomed.info/sct"
	tests := []struct {
		id, url string
		links   []string
		min     int
		max     int
		scoring gateway.ScoringMethod
		codes   []gateway.Coding
	}{
		{"swemwbs", "https://fhir.spgateway.org/Questionnaire/swemwbs", swemwbsLinks, 1, 5, gateway.ScoreTable,
			[]gateway.Coding{{System: snomed, Code: "718466001"}, {System: snomed, Code: "960481000000107"}}},
		{"wemwbs", "https://fhir.spgateway.org/Questionnaire/wemwbs", wemwbsLinks, 1, 5, gateway.ScoreSum,
			[]gateway.Coding{{System: snomed, Code: "718426000"}, {System: snomed, Code: "885541000000103"}}},
		{"ons4", "https://fhir.spgateway.org/Questionnaire/ons4", ons4Links, 0, 10, gateway.ScoreComponents,
			[]gateway.Coding{{System: promScoreSystem, Code: "ons4"}}},
	}
	if got := len(gateway.BuiltInInstruments()); got != len(tests) {
		t.Errorf("%d built-in instruments, want %d", got, len(tests))
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			in := builtIn(t, tc.id)
			if in.URL != tc.url || in.Title == "" || in.Scoring != tc.scoring {
				t.Errorf("url %q, title %q, scoring %q; want url %q, a title, scoring %q", in.URL, in.Title, in.Scoring, tc.url, tc.scoring)
			}
			if !reflect.DeepEqual(in.Codes, tc.codes) {
				t.Errorf("codes %+v, want %+v", in.Codes, tc.codes)
			}
			var links []string
			for _, it := range in.Items {
				links = append(links, it.LinkID)
				if it.Min != tc.min || it.Max != tc.max || it.Label == "" {
					t.Errorf("item %s: answers %d–%d, label %q; want %d–%d and a label", it.LinkID, it.Min, it.Max, it.Label, tc.min, tc.max)
				}
			}
			if !slices.Equal(links, tc.links) {
				t.Errorf("linkIds %q, want %q", links, tc.links)
			}
		})
	}
}

func TestScoreWEMWBS(t *testing.T) {
	tests := []struct {
		name   string
		values []int
		want   int
	}{
		{"all 1s: 14, the lowest", []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 14},
		{"all 5s: 70, the highest", []int{5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5}, 70},
		// 5+4+3+2+1 = 15, twice, then 5+4+3+2 = 14: 44.
		{"5,4,3,2,1,5,4,3,2,1,5,4,3,2: 44", []int{5, 4, 3, 2, 1, 5, 4, 3, 2, 1, 5, 4, 3, 2}, 44},
	}
	in := builtIn(t, "wemwbs")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := gateway.ScoreAnswers(in, answers(wemwbsLinks, tc.values...))
			if err != nil {
				t.Fatalf("ScoreAnswers: %v", err)
			}
			if got.Value != float64(tc.want) || !got.HasValue || got.Raw != tc.want {
				t.Errorf("score %v (HasValue %v, raw %d), want %d (HasValue true, raw %d)", got.Value, got.HasValue, got.Raw, tc.want, tc.want)
			}
			if got.Components != nil {
				t.Errorf("components %+v, want none", got.Components)
			}
		})
	}
}

func TestScoreONS4(t *testing.T) {
	component := func(code string, v int) gateway.ScoreComponent {
		return gateway.ScoreComponent{Code: gateway.Coding{System: promScoreSystem, Code: code}, Value: v}
	}
	tests := []struct {
		name    string
		answers []gateway.Answer
		want    []gateway.ScoreComponent
	}{
		{"7,8,6,3: four components in item order",
			answers(ons4Links, 7, 8, 6, 3),
			[]gateway.ScoreComponent{component("ons4-life-satisfaction", 7), component("ons4-worthwhile", 8), component("ons4-happy", 6), component("ons4-anxious", 3)}},
		{"0 and 10 are in range",
			answers(ons4Links, 0, 10, 0, 10),
			[]gateway.ScoreComponent{component("ons4-life-satisfaction", 0), component("ons4-worthwhile", 10), component("ons4-happy", 0), component("ons4-anxious", 10)}},
		{"answers sent in reverse still come out in item order",
			answers([]string{"anxious-yesterday", "happy-yesterday", "worthwhile", "life-satisfaction"}, 9, 2, 5, 4),
			[]gateway.ScoreComponent{component("ons4-life-satisfaction", 4), component("ons4-worthwhile", 5), component("ons4-happy", 2), component("ons4-anxious", 9)}},
	}
	in := builtIn(t, "ons4")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := gateway.ScoreAnswers(in, tc.answers)
			if err != nil {
				t.Fatalf("ScoreAnswers: %v", err)
			}
			if got.HasValue || got.Value != 0 {
				t.Errorf("value %v (HasValue %v), want none: ONS4 has no total", got.Value, got.HasValue)
			}
			if !reflect.DeepEqual(got.Components, tc.want) {
				t.Errorf("components %+v, want %+v", got.Components, tc.want)
			}
		})
	}
}

// TestScoreAnswersRefuses checks that answers breaking a rule are refused
// by CheckAnswers, naming the item, and by ScoreAnswers as unprocessable.
func TestScoreAnswersRefuses(t *testing.T) {
	at := func(linkID string) string { return "QuestionnaireResponse.item.where(linkId='" + linkID + "')" }
	type wantIssue struct {
		typ  gateway.IssueType
		expr string
	}
	with := func(base []gateway.Answer, edit func([]gateway.Answer) []gateway.Answer) []gateway.Answer {
		return edit(slices.Clone(base))
	}
	swemwbs := answers(swemwbsLinks, 3, 3, 3, 3, 3, 3, 3)
	ons4 := answers(ons4Links, 5, 5, 5, 5)
	tests := []struct {
		name    string
		in      string
		answers []gateway.Answer
		want    []wantIssue
	}{
		{"SWEMWBS item 6 answered 0, below 1", "swemwbs",
			with(swemwbs, func(a []gateway.Answer) []gateway.Answer { a[3].Value = 0; return a }),
			[]wantIssue{{gateway.IssueValue, at("6") + ".answer"}}},
		{"SWEMWBS item 6 answered 6, above 5", "swemwbs",
			with(swemwbs, func(a []gateway.Answer) []gateway.Answer { a[3].Value = 6; return a }),
			[]wantIssue{{gateway.IssueValue, at("6") + ".answer"}}},
		{"WEMWBS item 14 answered 6", "wemwbs",
			with(answers(wemwbsLinks, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3), func(a []gateway.Answer) []gateway.Answer { a[13].Value = 6; return a }),
			[]wantIssue{{gateway.IssueValue, at("14") + ".answer"}}},
		{"ONS4 anxiety answered 11, above 10", "ons4",
			with(ons4, func(a []gateway.Answer) []gateway.Answer { a[3].Value = 11; return a }),
			[]wantIssue{{gateway.IssueValue, at("anxious-yesterday") + ".answer"}}},
		{"ONS4 worthwhile answered -1, below 0", "ons4",
			with(ons4, func(a []gateway.Answer) []gateway.Answer { a[1].Value = -1; return a }),
			[]wantIssue{{gateway.IssueValue, at("worthwhile") + ".answer"}}},
		{"SWEMWBS item 9 missing", "swemwbs",
			with(swemwbs, func(a []gateway.Answer) []gateway.Answer { return slices.Delete(a, 5, 6) }),
			[]wantIssue{{gateway.IssueRequired, at("9")}}},
		{"SWEMWBS answered with WEMWBS item 4, which it does not have", "swemwbs",
			with(swemwbs, func(a []gateway.Answer) []gateway.Answer {
				return append(a, gateway.Answer{LinkID: "4", Value: 3, Given: true})
			}),
			[]wantIssue{{gateway.IssueValue, at("4")}}},
		{"SWEMWBS item 3 answered twice", "swemwbs",
			with(swemwbs, func(a []gateway.Answer) []gateway.Answer {
				return append(a, gateway.Answer{LinkID: "3", Value: 2, Given: true})
			}),
			[]wantIssue{{gateway.IssueValue, at("3")}}},
		{"SWEMWBS item 7 without a value", "swemwbs",
			with(swemwbs, func(a []gateway.Answer) []gateway.Answer { a[4] = gateway.Answer{LinkID: "7"}; return a }),
			[]wantIssue{{gateway.IssueRequired, at("7") + ".answer"}}},
		{"ONS4 with no answers at all names every item", "ons4", nil,
			[]wantIssue{{gateway.IssueRequired, at("life-satisfaction")}, {gateway.IssueRequired, at("worthwhile")},
				{gateway.IssueRequired, at("happy-yesterday")}, {gateway.IssueRequired, at("anxious-yesterday")}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := builtIn(t, tc.in)
			issues := gateway.CheckAnswers(in, tc.answers)
			if len(issues) != len(tc.want) {
				t.Fatalf("CheckAnswers: %d issues %+v, want %d %+v", len(issues), issues, len(tc.want), tc.want)
			}
			var exprs []string
			for i, w := range tc.want {
				exprs = append(exprs, w.expr)
				if issues[i].Type != w.typ || !slices.Equal(issues[i].Expression, []string{w.expr}) || issues[i].Message == "" {
					t.Errorf("issue %d: %s at %q (%q), want %s at %q with a message", i, issues[i].Type, issues[i].Expression, issues[i].Message, w.typ, w.expr)
				}
			}
			score, err := gateway.ScoreAnswers(in, tc.answers)
			assertRefusal(t, err, gateway.CodeUnprocessable, exprs...)
			if !reflect.DeepEqual(score, gateway.Score{}) {
				t.Errorf("a refused response scored %+v", score)
			}
		})
	}
}

func TestScoreAnswersIgnoresOrder(t *testing.T) {
	reversed := func(a []gateway.Answer) []gateway.Answer {
		a = slices.Clone(a)
		slices.Reverse(a)
		return a
	}
	tests := []struct {
		in       string
		inOrder  []gateway.Answer
		shuffled []gateway.Answer
	}{
		{"swemwbs", answers(swemwbsLinks, 1, 2, 3, 4, 5, 4, 3),
			answers([]string{"9", "1", "11", "3", "7", "2", "6"}, 4, 1, 3, 3, 5, 2, 4)},
		{"wemwbs", answers(wemwbsLinks, 5, 4, 3, 2, 1, 5, 4, 3, 2, 1, 5, 4, 3, 2),
			reversed(answers(wemwbsLinks, 5, 4, 3, 2, 1, 5, 4, 3, 2, 1, 5, 4, 3, 2))},
		{"ons4", answers(ons4Links, 7, 8, 6, 3),
			reversed(answers(ons4Links, 7, 8, 6, 3))},
	}
	for _, tc := range tests {
		t.Run(tc.in+": answers out of item order score the same", func(t *testing.T) {
			in := builtIn(t, tc.in)
			want, err := gateway.ScoreAnswers(in, tc.inOrder)
			if err != nil {
				t.Fatal(err)
			}
			got, err := gateway.ScoreAnswers(in, tc.shuffled)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("out of order %+v, in order %+v", got, want)
			}
		})
	}
}

func TestCheckInstrument(t *testing.T) {
	for _, in := range gateway.BuiltInInstruments() {
		t.Run("built-in "+in.ID+" passes", func(t *testing.T) {
			if err := gateway.CheckInstrument(in); err != nil {
				t.Errorf("CheckInstrument: %v", err)
			}
		})
	}
	// valid is a table-scored instrument of two items 0–2: raw scores 0–4.
	valid := func() gateway.Instrument {
		return gateway.Instrument{
			ID: "recovery", URL: "https://example.org/Questionnaire/recovery", Title: "Recovery scale",
			Items: []gateway.Item{
				{LinkID: "a", Label: "First", Min: 0, Max: 2, Code: gateway.Coding{System: "https://example.org/score", Code: "a"}},
				{LinkID: "b", Label: "Second", Min: 0, Max: 2, Code: gateway.Coding{System: "https://example.org/score", Code: "b"}},
			},
			Scoring: gateway.ScoreTable,
			Table:   map[int]float64{0: 0, 1: 10, 2: 20, 3: 30, 4: 40},
			Codes:   []gateway.Coding{{System: "https://example.org/score", Code: "recovery"}},
			RawCode: gateway.Coding{System: "https://example.org/score", Code: "recovery-raw"},
		}
	}
	tests := []struct {
		name string
		edit func(*gateway.Instrument)
		// mention is part of the error a broken definition must give, so
		// the refusal is for the reason the case is about ("" for none).
		mention string
	}{
		{"table scoring with every raw score passes", func(*gateway.Instrument) {}, ""},
		{"sum scoring passes without a table", func(in *gateway.Instrument) { in.Scoring, in.Table = gateway.ScoreSum, nil }, ""},
		{"components scoring passes with item codes", func(in *gateway.Instrument) { in.Scoring = gateway.ScoreComponents }, ""},
		{"no id is refused", func(in *gateway.Instrument) { in.ID = "" }, "needs an id, a url and a title"},
		{"no url is refused", func(in *gateway.Instrument) { in.URL = "" }, "needs an id, a url and a title"},
		{"no title is refused", func(in *gateway.Instrument) { in.Title = "" }, "needs an id, a url and a title"},
		{"no items is refused", func(in *gateway.Instrument) { in.Items = nil }, "has no items"},
		{"no result code is refused", func(in *gateway.Instrument) { in.Codes = nil }, "needs a code for its result"},
		{"a result code without a system is refused", func(in *gateway.Instrument) { in.Codes[0].System = "" }, "needs a code for its result"},
		{"duplicate linkIds are refused", func(in *gateway.Instrument) { in.Items[1].LinkID = "a" }, "unique"},
		{"an empty linkId is refused", func(in *gateway.Instrument) { in.Items[0].LinkID = "" }, "unique"},
		{"min above max is refused", func(in *gateway.Instrument) { in.Items[1].Min, in.Items[1].Max = 3, 1 }, "min 3 is above max 1"},
		{"components scoring with an item without a code is refused", func(in *gateway.Instrument) {
			in.Scoring = gateway.ScoreComponents
			in.Items[1].Code = gateway.Coding{}
		}, "item b needs a code"},
		{"a table missing raw score 3 is refused", func(in *gateway.Instrument) { delete(in.Table, 3) }, "no score for raw score 3"},
		{"a table missing the highest raw score is refused", func(in *gateway.Instrument) { delete(in.Table, 4) }, "no score for raw score 4"},
		{"table scoring without a table is refused", func(in *gateway.Instrument) { in.Table = nil }, "no score for raw score 0"},
		{"a table without a raw code is refused", func(in *gateway.Instrument) { in.RawCode = gateway.Coding{} }, "code for its raw score"},
		{"unknown scoring is refused", func(in *gateway.Instrument) { in.Scoring = "average" }, `unknown scoring "average"`},
		{"no scoring is refused", func(in *gateway.Instrument) { in.Scoring = "" }, "unknown scoring"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := valid()
			tc.edit(&in)
			err := gateway.CheckInstrument(in)
			switch {
			case tc.mention == "" && err != nil:
				t.Errorf("CheckInstrument: %v, want nil", err)
			case tc.mention != "" && err == nil:
				t.Errorf("CheckInstrument accepted a broken definition %+v", in)
			case tc.mention != "" && !strings.Contains(err.Error(), tc.mention):
				t.Errorf("CheckInstrument: %q, want it to say %q", err, tc.mention)
			}
		})
	}
}

func TestNextPROMDue(t *testing.T) {
	at := func(year int, month time.Month, day, hour, min int) time.Time {
		return time.Date(year, month, day, hour, min, 0, 0, time.UTC)
	}
	accepted := at(2026, time.January, 10, 9, 30)
	baseline := at(2026, time.January, 20, 14, 0)
	sixMonthly := gateway.Schedule{BaselineDays: 30, FollowUpMonths: 6}
	tests := []struct {
		name     string
		schedule gateway.Schedule
		accepted time.Time
		baseline time.Time
		done     int
		open     bool
		want     time.Time // zero: nothing due
	}{
		{"not accepted: nothing due", sixMonthly, time.Time{}, time.Time{}, 0, true, time.Time{}},
		{"closed before any PROM: nothing due", sixMonthly, accepted, time.Time{}, 0, false, time.Time{}},
		{"closed after the baseline: nothing due", sixMonthly, accepted, baseline, 1, false, time.Time{}},
		{"accepted, no PROM: baseline due 30 days after acceptance", sixMonthly, accepted, time.Time{}, 0, true, at(2026, time.February, 9, 9, 30)},
		{"baseline done: follow-up 6 months after the baseline", sixMonthly, accepted, baseline, 1, true, at(2026, time.July, 20, 14, 0)},
		{"two done: 12 months after the baseline", sixMonthly, accepted, baseline, 2, true, at(2027, time.January, 20, 14, 0)},
		{"three done: 18 months after the baseline", sixMonthly, accepted, baseline, 3, true, at(2027, time.July, 20, 14, 0)},
		// AddDate normalises 31 February 2026 to 3 March 2026 (2026 is not a
		// leap year): the follow-up falls 3 days into March.
		{"baseline 31 August + 6 months: AddDate gives 3 March", sixMonthly, accepted, at(2025, time.August, 31, 10, 0), 1, true, at(2026, time.March, 3, 10, 0)},
		{"baseline 31 August + 12 months: 31 August again", sixMonthly, accepted, at(2025, time.August, 31, 10, 0), 2, true, at(2026, time.August, 31, 10, 0)},
		{"14 days / 3 months: baseline due 14 days after acceptance", gateway.Schedule{BaselineDays: 14, FollowUpMonths: 3}, accepted, time.Time{}, 0, true, at(2026, time.January, 24, 9, 30)},
		{"14 days / 3 months: follow-up 3 months after the baseline", gateway.Schedule{BaselineDays: 14, FollowUpMonths: 3}, accepted, baseline, 1, true, at(2026, time.April, 20, 14, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.schedule.NextPROMDue(tc.accepted, tc.baseline, tc.done, tc.open)
			if !got.Equal(tc.want) {
				t.Errorf("NextPROMDue = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("DefaultSchedule is 30 days then every 6 months", func(t *testing.T) {
		if gateway.DefaultSchedule != (gateway.Schedule{BaselineDays: 30, FollowUpMonths: 6}) {
			t.Errorf("DefaultSchedule = %+v", gateway.DefaultSchedule)
		}
		if p := gateway.DefaultProgramme; p.Instrument != "swemwbs" || p.Schedule != gateway.DefaultSchedule {
			t.Errorf("DefaultProgramme = %+v, want SWEMWBS on DefaultSchedule", p)
		}
	})
}

// manualClock is a clock the test moves by hand.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

var (
	practiceA81001 = gatewaytest.Principal(gatewaytest.KeyA81001)
	providerPRV01  = gatewaytest.Principal(gatewaytest.KeyPRV01)
)

// promService is a Service over a real store, both on clock.
type promService struct {
	svc   *gateway.Service
	store gateway.Store
	clock *manualClock
}

// promConfig is the development configuration: two practices, two
// providers, A81001 routed to PRV01.
func promConfig(st gateway.Store, now func() time.Time) gateway.Config {
	return gateway.Config{
		Store:         st,
		Documents:     mapping.Documents{},
		Organizations: gatewaytest.Organizations(),
		Routing:       gatewaytest.Routing(),
		Now:           now,
	}
}

func newPROMService(t *testing.T, engine string, start time.Time, programmes ...gateway.Programme) *promService {
	t.Helper()
	clock := &manualClock{now: start}
	st := storetest.Open(t, engine, clock.Now)
	cfg := promConfig(st, clock.Now)
	cfg.Programmes = programmes
	svc, err := gateway.NewService(cfg)
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	return &promService{svc: svc, store: st, clock: clock}
}

// submit sends the referral Bundle fixture, with identifier as the
// practice's referral identifier, as practice A81001 and returns its Task.
func (g *promService) submit(t *testing.T, identifier string) gateway.Resource {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("..", "testdata", "fixtures", "referral-bundle.json"))
	if err != nil {
		t.Fatal(err)
	}
	body = bytes.ReplaceAll(body, []byte("SP-2026-000123"), []byte(identifier))
	ref, err := mapping.ParseTransaction(body)
	if err != nil {
		t.Fatalf("ParseTransaction: %v", err)
	}
	res, err := g.svc.SubmitReferral(context.Background(), practiceA81001, ref)
	if err != nil {
		t.Fatalf("SubmitReferral: %v", err)
	}
	if !res.Created || res.Task.Index.Provider != "PRV01" || res.Task.Index.PatientID == "" || res.Task.Index.ReferralID == "" {
		t.Fatalf("SubmitReferral: created %v, Task index %+v", res.Created, res.Task.Index)
	}
	return res.Task
}

// task reads the current Task as p.
func (g *promService) task(t *testing.T, p gateway.Principal, id string) gateway.Resource {
	t.Helper()
	r, err := g.svc.Read(context.Background(), p, gateway.TypeTask, id, 0)
	if err != nil {
		t.Fatalf("read Task/%s: %v", id, err)
	}
	return r
}

// change reads Task id as p, edits its JSON and stores it as the next
// version.
func (g *promService) change(t *testing.T, p gateway.Principal, id string, edit func(doc map[string]any)) gateway.Resource {
	t.Helper()
	cur := g.task(t, p, id)
	doc := jsonDoc(t, cur.Body)
	edit(doc)
	body, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	next, err := g.svc.UpdateTask(context.Background(), p, id, cur.Version, body)
	if err != nil {
		t.Fatalf("UpdateTask: %v", err)
	}
	return next
}

func setStatus(status string) func(map[string]any) {
	return func(doc map[string]any) { doc["status"] = status }
}

// promResponse is a QuestionnaireResponse to instrument for the referral of
// task, parsed as the FHIR edge parses it.
func promResponse(t *testing.T, task gateway.Resource, instrument, authored string, answers []gateway.Answer) *gateway.PROMResponse {
	t.Helper()
	var items []any
	for _, a := range answers {
		items = append(items, map[string]any{"linkId": a.LinkID, "answer": []any{map[string]any{"valueInteger": a.Value}}})
	}
	body, err := json.Marshal(map[string]any{
		"resourceType":  "QuestionnaireResponse",
		"questionnaire": "https://fhir.spgateway.org/Questionnaire/" + instrument,
		"status":        "completed",
		"subject":       map[string]any{"reference": "Patient/" + task.Index.PatientID},
		"basedOn":       []any{map[string]any{"reference": "ServiceRequest/" + task.Index.ReferralID}},
		"authored":      authored,
		"item":          items,
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := mapping.ParseQuestionnaireResponse(body)
	if err != nil {
		t.Fatalf("ParseQuestionnaireResponse: %v", err)
	}
	return r
}

func (g *promService) record(t *testing.T, r *gateway.PROMResponse) *gateway.PROMResult {
	t.Helper()
	res, err := g.svc.RecordPROM(context.Background(), providerPRV01, r)
	if err != nil {
		t.Fatalf("RecordPROM: %v", err)
	}
	return res
}

func (g *promService) markDue(t *testing.T, now time.Time) int {
	t.Helper()
	n, err := g.svc.MarkPROMsDue(context.Background(), now)
	if err != nil {
		t.Fatalf("MarkPROMsDue: %v", err)
	}
	return n
}

func jsonDoc(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, body)
	}
	return doc
}

// extensions returns the extensions with url in doc's extension array.
func extensions(doc map[string]any, url string) []map[string]any {
	var out []map[string]any
	list, _ := doc["extension"].([]any)
	for _, e := range list {
		if e, ok := e.(map[string]any); ok && e["url"] == url {
			out = append(out, e)
		}
	}
	return out
}

const promDueURL = "https://fhir.spgateway.org/StructureDefinition/prom-due"

// assertPROMDue checks the Task's index and its prom-due extension: both
// say want (an instant as the gateway writes it), or, for "", neither is
// there.
func assertPROMDue(t *testing.T, task gateway.Resource, want string) {
	t.Helper()
	exts := extensions(jsonDoc(t, task.Body), promDueURL)
	if want == "" {
		if !task.Index.PROMDue.IsZero() || len(exts) != 0 {
			t.Errorf("Task/%s v%d: PROM due %v, extensions %v; want none", task.ID, task.Version, task.Index.PROMDue, exts)
		}
		return
	}
	wantTime, err := time.Parse(time.RFC3339, want)
	if err != nil {
		t.Fatal(err)
	}
	if !task.Index.PROMDue.Equal(wantTime) {
		t.Errorf("Task/%s v%d: Index.PROMDue %v, want %s", task.ID, task.Version, task.Index.PROMDue, want)
	}
	if len(exts) != 1 || exts[0]["valueDateTime"] != want {
		t.Errorf("Task/%s v%d: prom-due extensions %v, want one with valueDateTime %s", task.ID, task.Version, exts, want)
	}
}

// businessStatus returns the code of the Task's businessStatus.
func businessStatus(t *testing.T, task gateway.Resource) string {
	t.Helper()
	bs, _ := jsonDoc(t, task.Body)["businessStatus"].(map[string]any)
	codings, _ := bs["coding"].([]any)
	if len(codings) != 1 {
		t.Errorf("Task/%s businessStatus %v, want one coding", task.ID, bs)
		return ""
	}
	c := codings[0].(map[string]any)
	if c["system"] != "https://fhir.spgateway.org/CodeSystem/business-status" {
		t.Errorf("businessStatus system %v", c["system"])
	}
	code, _ := c["code"].(string)
	if code != task.Index.BusinessStatus {
		t.Errorf("businessStatus %q in the body, %q in the index", code, task.Index.BusinessStatus)
	}
	return code
}

// TestPROMSchedule follows one referral from acceptance through a baseline,
// a follow-up falling due and being recorded, to completion, with the clock
// moved by hand.
func TestPROMSchedule(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newPROMService(t, engine, time.Date(2026, time.November, 20, 11, 0, 0, 0, time.UTC))
		task := g.submit(t, "PROM-SCHEDULE-1")
		step := func(name string, fn func(t *testing.T)) {
			if !t.Run(name, fn) {
				t.FailNow()
			}
		}
		baseline := "2026-11-30T15:00:00Z"

		step("a PROM before acceptance is a conflict", func(t *testing.T) {
			_, err := g.svc.RecordPROM(context.Background(), providerPRV01,
				promResponse(t, task, "swemwbs", "2026-11-20T10:30:00Z", answers(swemwbsLinks, 3, 3, 3, 3, 3, 3, 3)))
			assertRefusal(t, err, gateway.CodeConflict, "QuestionnaireResponse.basedOn")
			assertPROMDue(t, g.task(t, providerPRV01, task.ID), "")
		})

		step("accepting sets AcceptedAt and the baseline due 30 days later", func(t *testing.T) {
			g.clock.Set(time.Date(2026, time.November, 21, 9, 0, 0, 0, time.UTC))
			got := g.change(t, providerPRV01, task.ID, setStatus("accepted"))
			if !got.Index.AcceptedAt.Equal(time.Date(2026, time.November, 21, 9, 0, 0, 0, time.UTC)) {
				t.Errorf("AcceptedAt %v, want the clock at acceptance, 2026-11-21T09:00:00Z", got.Index.AcceptedAt)
			}
			assertPROMDue(t, got, "2026-12-21T09:00:00.000000Z")
			assertPROMDue(t, g.task(t, providerPRV01, task.ID), "2026-12-21T09:00:00.000000Z")
		})

		step("an overdue baseline is not a follow-up: nothing marked", func(t *testing.T) {
			if n := g.markDue(t, time.Date(2026, time.December, 22, 0, 0, 0, 0, time.UTC)); n != 0 {
				t.Errorf("marked %d, want 0", n)
			}
		})

		step("the first PROM is the baseline: next due 6 months after it", func(t *testing.T) {
			g.clock.Set(time.Date(2026, time.December, 1, 10, 0, 0, 0, time.UTC))
			res := g.record(t, promResponse(t, task, "swemwbs", baseline, answers(swemwbsLinks, 3, 3, 3, 3, 3, 3, 3)))
			if obs := res.Observation.Index; obs.Value != 19.25 || !obs.HasValue {
				t.Errorf("Observation score %v (HasValue %v), want 19.25", obs.Value, obs.HasValue)
			}
			for _, got := range []gateway.Resource{res.Task, g.task(t, providerPRV01, task.ID)} {
				if code := businessStatus(t, got); code != "baseline-prom-complete" {
					t.Errorf("businessStatus %q, want baseline-prom-complete", code)
				}
				if got.Index.PROMsDone != 1 || !got.Index.BaselineAt.Equal(time.Date(2026, time.November, 30, 15, 0, 0, 0, time.UTC)) {
					t.Errorf("PROMsDone %d, BaselineAt %v; want 1 and the authored time %s", got.Index.PROMsDone, got.Index.BaselineAt, baseline)
				}
				assertPROMDue(t, got, "2027-05-30T15:00:00.000000Z")
			}
		})

		var marked gateway.Resource
		step("before the follow-up is due nothing is marked", func(t *testing.T) {
			if n := g.markDue(t, time.Date(2027, time.May, 30, 14, 59, 59, 0, time.UTC)); n != 0 {
				t.Errorf("marked %d a second before the due date, want 0", n)
			}
			if code := businessStatus(t, g.task(t, providerPRV01, task.ID)); code != "baseline-prom-complete" {
				t.Errorf("businessStatus %q, want baseline-prom-complete still", code)
			}
		})

		step("once the follow-up is due the gateway marks it", func(t *testing.T) {
			before := g.task(t, providerPRV01, task.ID)
			now := time.Date(2027, time.May, 31, 8, 0, 0, 0, time.UTC)
			g.clock.Set(now)
			if n := g.markDue(t, now); n != 1 {
				t.Fatalf("marked %d, want 1", n)
			}
			marked = g.task(t, providerPRV01, task.ID)
			if marked.Version != before.Version+1 {
				t.Errorf("version %d, want %d", marked.Version, before.Version+1)
			}
			if code := businessStatus(t, marked); code != "follow-up-prom-due" {
				t.Errorf("businessStatus %q, want follow-up-prom-due", code)
			}
			assertPROMDue(t, marked, "2027-05-30T15:00:00.000000Z")
			doc := jsonDoc(t, marked.Body)
			meta, _ := doc["meta"].(map[string]any)
			if meta["lastUpdated"] != "2027-05-31T08:00:00.000000Z" {
				t.Errorf("meta.lastUpdated %v, want the clock when marked", meta["lastUpdated"])
			}
			by := extensions(meta, "https://fhir.spgateway.org/StructureDefinition/changed-by")
			if len(by) != 1 {
				t.Fatalf("meta changed-by extensions %v, want one", meta["extension"])
			}
			ref, _ := by[0]["valueReference"].(map[string]any)
			if ref["display"] != "spgateway PROM schedule" || ref["reference"] != nil || ref["identifier"] != nil {
				t.Errorf("changed-by %v, want the gateway itself (display \"spgateway PROM schedule\", no organisation)", ref)
			}
		})

		step("marking again marks nothing", func(t *testing.T) {
			for _, now := range []time.Time{
				time.Date(2027, time.May, 31, 8, 0, 0, 0, time.UTC),
				time.Date(2027, time.June, 1, 8, 0, 0, 0, time.UTC),
			} {
				if n := g.markDue(t, now); n != 0 {
					t.Errorf("MarkPROMsDue(%v) marked %d, want 0", now, n)
				}
			}
			if got := g.task(t, providerPRV01, task.ID); got.Version != marked.Version {
				t.Errorf("version %d, want %d: marking again wrote a version", got.Version, marked.Version)
			}
		})

		step("the second PROM is a follow-up: next due 12 months after the baseline", func(t *testing.T) {
			g.clock.Set(time.Date(2027, time.June, 2, 10, 0, 0, 0, time.UTC))
			res := g.record(t, promResponse(t, task, "swemwbs", "2027-06-01T11:00:00Z", answers(swemwbsLinks, 4, 4, 3, 4, 3, 4, 3)))
			if obs := res.Observation.Index; obs.Value != 22.35 {
				t.Errorf("Observation score %v, want 22.35 (4+4+3+4+3+4+3 = raw 25)", obs.Value)
			}
			got := g.task(t, providerPRV01, task.ID)
			if code := businessStatus(t, got); code != "follow-up-prom-complete" {
				t.Errorf("businessStatus %q, want follow-up-prom-complete", code)
			}
			if got.Index.PROMsDone != 2 || !got.Index.BaselineAt.Equal(time.Date(2026, time.November, 30, 15, 0, 0, 0, time.UTC)) {
				t.Errorf("PROMsDone %d, BaselineAt %v; want 2 and the baseline unchanged", got.Index.PROMsDone, got.Index.BaselineAt)
			}
			assertPROMDue(t, got, "2027-11-30T15:00:00.000000Z")
		})

		step("a status change keeps the due date", func(t *testing.T) {
			g.clock.Set(time.Date(2027, time.June, 3, 10, 0, 0, 0, time.UTC))
			assertPROMDue(t, g.change(t, providerPRV01, task.ID, setStatus("in-progress")), "2027-11-30T15:00:00.000000Z")
		})

		step("completing clears the due date and the extension", func(t *testing.T) {
			g.clock.Set(time.Date(2027, time.June, 4, 10, 0, 0, 0, time.UTC))
			got := g.change(t, providerPRV01, task.ID, setStatus("completed"))
			assertPROMDue(t, got, "")
			assertPROMDue(t, g.task(t, providerPRV01, task.ID), "")
			if n := g.markDue(t, time.Date(2029, time.January, 1, 0, 0, 0, 0, time.UTC)); n != 0 {
				t.Errorf("marked %d after completion, want 0", n)
			}
		})

		step("a closed Task is never marked, even with a due date left in its index", func(t *testing.T) {
			g.clock.Set(time.Date(2027, time.June, 5, 10, 0, 0, 0, time.UTC))
			due := time.Date(2027, time.June, 1, 0, 0, 0, 0, time.UTC)
			err := g.store.Update(context.Background(), func(tx gateway.Tx) error {
				cur, err := tx.Get(context.Background(), gateway.TypeTask, task.ID, 0)
				if err != nil {
					return err
				}
				body, err := mapping.Documents{}.WriteTask(cur.Body, gateway.TaskEdit{ID: cur.ID, Version: cur.Version + 1, Now: tx.Now(), PROMDue: &due})
				if err != nil {
					return err
				}
				next := gateway.Resource{Type: gateway.TypeTask, ID: cur.ID, Version: cur.Version + 1, Body: body, Index: cur.Index}
				next.Index.PROMDue, next.Index.Access = due, nil
				return tx.Put(context.Background(), &next)
			})
			if err != nil {
				t.Fatalf("store a completed Task with a due date: %v", err)
			}
			if n := g.markDue(t, time.Date(2027, time.June, 5, 10, 0, 0, 0, time.UTC)); n != 0 {
				t.Errorf("marked %d completed Tasks, want 0", n)
			}
		})
	})
}

// TestPROMScheduleEndsWithCancellation: a practice's cancellation clears
// the due date as a completion does.
func TestPROMScheduleEndsWithCancellation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newPROMService(t, engine, time.Date(2026, time.November, 20, 11, 0, 0, 0, time.UTC))
		task := g.submit(t, "PROM-CANCEL-1")
		g.clock.Set(time.Date(2026, time.November, 21, 9, 0, 0, 0, time.UTC))
		assertPROMDue(t, g.change(t, providerPRV01, task.ID, setStatus("accepted")), "2026-12-21T09:00:00.000000Z")
		g.clock.Set(time.Date(2026, time.December, 1, 10, 0, 0, 0, time.UTC))
		g.record(t, promResponse(t, task, "ons4", "2026-11-30T15:00:00Z", answers(ons4Links, 6, 7, 5, 4)))
		assertPROMDue(t, g.task(t, providerPRV01, task.ID), "2027-05-30T15:00:00.000000Z")

		g.clock.Set(time.Date(2026, time.December, 2, 10, 0, 0, 0, time.UTC))
		got := g.change(t, practiceA81001, task.ID, func(doc map[string]any) {
			doc["status"] = "cancelled"
			doc["statusReason"] = map[string]any{"coding": []any{map[string]any{
				"system": "https://fhir.spgateway.org/CodeSystem/status-reason", "code": "patient-declined"}}}
		})
		if got.Index.Status != "cancelled" {
			t.Fatalf("status %q, want cancelled", got.Index.Status)
		}
		assertPROMDue(t, got, "")
		if n := g.markDue(t, time.Date(2028, time.January, 1, 0, 0, 0, 0, time.UTC)); n != 0 {
			t.Errorf("marked %d cancelled Tasks, want 0", n)
		}
	})
}

// TestPROMProgramme: a programme's schedule replaces the default for its
// providers.
func TestPROMProgramme(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		programme := gateway.Programme{Name: "tyneside", Providers: []string{"PRV01"}, Instrument: "wemwbs",
			Schedule: gateway.Schedule{BaselineDays: 14, FollowUpMonths: 3}}
		g := newPROMService(t, engine, time.Date(2026, time.November, 20, 11, 0, 0, 0, time.UTC), programme)
		task := g.submit(t, "PROM-PROGRAMME-1")

		g.clock.Set(time.Date(2026, time.November, 21, 9, 0, 0, 0, time.UTC))
		t.Run("baseline due 14 days after acceptance", func(t *testing.T) {
			assertPROMDue(t, g.change(t, providerPRV01, task.ID, setStatus("accepted")), "2026-12-05T09:00:00.000000Z")
		})

		g.clock.Set(time.Date(2026, time.November, 28, 10, 0, 0, 0, time.UTC))
		wemwbs := answers(wemwbsLinks, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3)
		t.Run("follow-up due 3 months after the baseline", func(t *testing.T) {
			res := g.record(t, promResponse(t, task, "wemwbs", "2026-11-27T15:00:00Z", wemwbs))
			if obs := res.Observation.Index; obs.Value != 42 || !obs.HasValue {
				t.Errorf("WEMWBS all 3s scored %v, want 42", obs.Value)
			}
			assertPROMDue(t, g.task(t, providerPRV01, task.ID), "2027-02-27T15:00:00.000000Z")
		})

		t.Run("marked due on the programme's date", func(t *testing.T) {
			if n := g.markDue(t, time.Date(2027, time.February, 27, 14, 0, 0, 0, time.UTC)); n != 0 {
				t.Errorf("marked %d before the programme's date, want 0", n)
			}
			g.clock.Set(time.Date(2027, time.February, 27, 16, 0, 0, 0, time.UTC))
			if n := g.markDue(t, time.Date(2027, time.February, 27, 16, 0, 0, 0, time.UTC)); n != 1 {
				t.Errorf("marked %d after the programme's date, want 1", n)
			}
		})

		g.clock.Set(time.Date(2027, time.March, 1, 10, 0, 0, 0, time.UTC))
		t.Run("second follow-up 6 months after the baseline", func(t *testing.T) {
			g.record(t, promResponse(t, task, "wemwbs", "2027-02-28T15:00:00Z", wemwbs))
			assertPROMDue(t, g.task(t, providerPRV01, task.ID), "2027-05-27T15:00:00.000000Z")
		})
	})
}

func TestNewServiceChecksPROMConfiguration(t *testing.T) {
	st := storetest.Open(t, "sqlite", nil)
	configured := gateway.Instrument{
		ID: "recovery", URL: "https://example.org/Questionnaire/recovery", Title: "Recovery scale",
		Items:   []gateway.Item{{LinkID: "a", Label: "First", Min: 0, Max: 4}, {LinkID: "b", Label: "Second", Min: 0, Max: 4}},
		Scoring: gateway.ScoreSum,
		Codes:   []gateway.Coding{{System: "https://example.org/score", Code: "recovery"}},
	}
	programme := func(instrument string, providers ...string) gateway.Programme {
		return gateway.Programme{Name: "tyneside", Providers: providers, Instrument: instrument,
			Schedule: gateway.Schedule{BaselineDays: 14, FollowUpMonths: 3}}
	}
	with := func(edit func(*gateway.Instrument)) gateway.Instrument {
		in := configured
		edit(&in)
		return in
	}
	tests := []struct {
		name        string
		instruments []gateway.Instrument
		programmes  []gateway.Programme
		mention     string // "" when NewService must accept the configuration
	}{
		{"a configured instrument and a programme using it are accepted",
			[]gateway.Instrument{configured}, []gateway.Programme{programme("recovery", "PRV01")}, ""},
		{"a programme of a built-in instrument is accepted",
			nil, []gateway.Programme{programme("ons4", "PRV01", "PRV02")}, ""},
		{"a programme with an unknown instrument is refused",
			nil, []gateway.Programme{programme("eq5d", "PRV01")}, `unknown instrument "eq5d"`},
		{"a programme with an unknown provider is refused",
			nil, []gateway.Programme{programme("swemwbs", "PRV99")}, `"PRV99" is not a provider`},
		{"a programme naming a practice as provider is refused",
			nil, []gateway.Programme{programme("swemwbs", "A81001")}, `"A81001" is not a provider`},
		{"a programme without baseline days is refused",
			nil, []gateway.Programme{{Name: "tyneside", Providers: []string{"PRV01"}, Instrument: "swemwbs", Schedule: gateway.Schedule{FollowUpMonths: 6}}}, "above 0"},
		{"an instrument with a built-in's id is refused",
			[]gateway.Instrument{with(func(in *gateway.Instrument) { in.ID = "swemwbs" })}, nil, "already taken by swemwbs"},
		{"an instrument with a built-in's url is refused",
			[]gateway.Instrument{with(func(in *gateway.Instrument) { in.URL = "https://fhir.spgateway.org/Questionnaire/wemwbs" })}, nil, "already taken by wemwbs"},
		{"two instruments with one id are refused",
			[]gateway.Instrument{configured, with(func(in *gateway.Instrument) { in.URL = "https://example.org/Questionnaire/other" })}, nil, "already taken by recovery"},
		{"a broken instrument is refused",
			[]gateway.Instrument{with(func(in *gateway.Instrument) { in.Items = nil })}, nil, "has no items"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := promConfig(st, nil)
			cfg.Instruments, cfg.Programmes = tc.instruments, tc.programmes
			svc, err := gateway.NewService(cfg)
			switch {
			case tc.mention == "" && err != nil:
				t.Fatalf("NewService: %v", err)
			case tc.mention == "":
				var ids []string
				for _, in := range svc.Instruments() {
					ids = append(ids, in.ID)
				}
				want := []string{"swemwbs", "wemwbs", "ons4"}
				for _, in := range tc.instruments {
					want = append(want, in.ID)
				}
				if !slices.Equal(ids, want) {
					t.Errorf("instruments %q, want %q", ids, want)
				}
			case err == nil:
				t.Errorf("NewService accepted instruments %+v, programmes %+v", tc.instruments, tc.programmes)
			case !strings.Contains(err.Error(), tc.mention):
				t.Errorf("NewService: %q, want it to say %q", err, tc.mention)
			}
		})
	}
}
