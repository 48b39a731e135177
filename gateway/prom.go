package gateway

import (
	"fmt"
	"slices"
	"strconv"
	"time"
)

// Patient-reported outcome measures (PROMs). An Instrument is data: its
// items, the answers they take, how they are scored and the codes of the
// result. The three of DOMAIN.md are built in (BuiltInInstruments);
// configuration adds others (a licensed scale, say) in the same shape,
// without code.

// ScoringMethod says how an instrument's answers become a score.
type ScoringMethod string

// The scoring methods.
const (
	// ScoreSum: the score is the sum of the answers.
	ScoreSum ScoringMethod = "sum"
	// ScoreTable: the sum of the answers (the raw score) is converted by a
	// table; the raw score is kept as a component.
	ScoreTable ScoringMethod = "table"
	// ScoreComponents: each answer is a score of its own; there is no total.
	ScoreComponents ScoringMethod = "components"
)

// Item is one question of an instrument, identified by linkId and a short
// label (instrument wording is often copyrighted).
type Item struct {
	LinkID string
	Label  string
	Min    int
	Max    int
	// Code codes the item's answer as a component of the result
	// (ScoreComponents).
	Code Coding
}

// Instrument is a PROM questionnaire and how to score it.
type Instrument struct {
	// ID is its short name (swemwbs) and the id of its Questionnaire.
	ID string
	// URL is its canonical URL; QuestionnaireResponse.questionnaire names it.
	URL     string
	Title   string
	Items   []Item
	Scoring ScoringMethod
	// Table converts raw scores (the sum) to the reported score.
	Table map[int]float64
	// Codes code the result (Observation.code): the first is the primary.
	Codes []Coding
	// RawCode codes the raw score component (ScoreTable).
	RawCode Coding
}

// SystemPROMScore is the gateway's code system for scores that have no
// SNOMED CT code (ONS4 and its components, raw scores).
const SystemPROMScore = CanonicalBase + "CodeSystem/prom-score"

// swemwbsTable is the University of Warwick's conversion of SWEMWBS raw
// scores (7–35) to metric scores.
var swemwbsTable = map[int]float64{
	7: 7.00, 8: 9.51, 9: 11.25, 10: 12.40, 11: 13.33, 12: 14.08, 13: 14.75, 14: 15.32, 15: 15.84,
	16: 16.36, 17: 16.88, 18: 17.43, 19: 17.98, 20: 18.59, 21: 19.25, 22: 19.98, 23: 20.73, 24: 21.54,
	25: 22.35, 26: 23.21, 27: 24.11, 28: 25.03, 29: 26.02, 30: 27.03, 31: 28.13, 32: 29.31, 33: 30.70,
	34: 32.55, 35: 35.00,
}

// wemwbsLabels are short labels of the 14 WEMWBS items, by item number.
var wemwbsLabels = []string{"", "Optimistic about the future", "Feeling useful", "Feeling relaxed",
	"Interested in other people", "Energy to spare", "Dealing with problems well", "Thinking clearly",
	"Feeling good about myself", "Feeling close to other people", "Feeling confident",
	"Able to make up my own mind", "Feeling loved", "Interested in new things", "Feeling cheerful"}

func wemwbsItems(numbers ...int) []Item {
	out := make([]Item, len(numbers))
	for i, n := range numbers {
		out[i] = Item{LinkID: strconv.Itoa(n), Label: wemwbsLabels[n], Min: 1, Max: 5}
	}
	return out
}

// BuiltInInstruments returns SWEMWBS, WEMWBS and ONS4 (DOMAIN.md). Item
// linkIds of the Warwick scales are the WEMWBS item numbers, so a SWEMWBS
// answer to item 6 is the WEMWBS item 6.
func BuiltInInstruments() []Instrument {
	return []Instrument{
		{
			ID: "swemwbs", URL: CanonicalBase + "Questionnaire/swemwbs",
			Title:   "Short Warwick-Edinburgh Mental Wellbeing Scale (SWEMWBS)",
			Items:   wemwbsItems(1, 2, 3, 6, 7, 9, 11),
			Scoring: ScoreTable, Table: swemwbsTable,
			Codes: []Coding{
				{System: SystemSNOMED, Code: "718466001"},
				{System: SystemSNOMED, Code: "960481000000107"},
			},
			RawCode: Coding{System: SystemPROMScore, Code: "swemwbs-raw"},
		},
		{
			ID: "wemwbs", URL: CanonicalBase + "Questionnaire/wemwbs",
			Title:   "Warwick-Edinburgh Mental Wellbeing Scale (WEMWBS)",
			Items:   wemwbsItems(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14),
			Scoring: ScoreSum,
			Codes: []Coding{
				{System: SystemSNOMED, Code: "718426000"},
				{System: SystemSNOMED, Code: "885541000000103"},
			},
		},
		{
			ID: "ons4", URL: CanonicalBase + "Questionnaire/ons4",
			Title: "ONS4 personal wellbeing",
			Items: []Item{
				{LinkID: "life-satisfaction", Label: "Life satisfaction", Min: 0, Max: 10, Code: Coding{System: SystemPROMScore, Code: "ons4-life-satisfaction"}},
				{LinkID: "worthwhile", Label: "Things done in life are worthwhile", Min: 0, Max: 10, Code: Coding{System: SystemPROMScore, Code: "ons4-worthwhile"}},
				{LinkID: "happy-yesterday", Label: "Happiness yesterday", Min: 0, Max: 10, Code: Coding{System: SystemPROMScore, Code: "ons4-happy"}},
				// Anxiety: higher is worse.
				{LinkID: "anxious-yesterday", Label: "Anxiety yesterday (higher is worse)", Min: 0, Max: 10, Code: Coding{System: SystemPROMScore, Code: "ons4-anxious"}},
			},
			Scoring: ScoreComponents,
			Codes:   []Coding{{System: SystemPROMScore, Code: "ons4"}},
		},
	}
}

// CheckInstrument reports what is wrong with an instrument's definition, so
// a configured one is refused at start rather than mis-scoring later.
func CheckInstrument(in Instrument) error {
	switch {
	case in.ID == "" || in.URL == "" || in.Title == "":
		return fmt.Errorf("an instrument needs an id, a url and a title")
	case len(in.Items) == 0:
		return fmt.Errorf("instrument %s has no items", in.ID)
	case len(in.Codes) == 0 || in.Codes[0].System == "" || in.Codes[0].Code == "":
		return fmt.Errorf("instrument %s needs a code for its result", in.ID)
	}
	seen := map[string]bool{}
	minSum, maxSum := 0, 0
	for _, it := range in.Items {
		switch {
		case it.LinkID == "" || seen[it.LinkID]:
			return fmt.Errorf("instrument %s: item linkIds must be present and unique (%q)", in.ID, it.LinkID)
		case it.Min > it.Max:
			return fmt.Errorf("instrument %s: item %s: min %d is above max %d", in.ID, it.LinkID, it.Min, it.Max)
		case in.Scoring == ScoreComponents && it.Code.Code == "":
			return fmt.Errorf("instrument %s: item %s needs a code, as each answer is a score", in.ID, it.LinkID)
		}
		seen[it.LinkID] = true
		minSum += it.Min
		maxSum += it.Max
	}
	switch in.Scoring {
	case ScoreSum, ScoreComponents:
	case ScoreTable:
		for raw := minSum; raw <= maxSum; raw++ {
			if _, ok := in.Table[raw]; !ok {
				return fmt.Errorf("instrument %s: the table has no score for raw score %d", in.ID, raw)
			}
		}
		if in.RawCode.Code == "" {
			return fmt.Errorf("instrument %s needs a code for its raw score", in.ID)
		}
	default:
		return fmt.Errorf("instrument %s: unknown scoring %q (sum, table or components)", in.ID, in.Scoring)
	}
	return nil
}

// Answer is the integer answer to one item.
type Answer struct {
	LinkID string
	Value  int
	// Given is false when the item has no valueInteger answer.
	Given bool
}

// ScoreComponent is one coded part of a result.
type ScoreComponent struct {
	Code  Coding
	Value int
}

// Score is a scored PROM.
type Score struct {
	// Value is the score, absent (HasValue false) for ScoreComponents.
	Value    float64
	HasValue bool
	// Raw is the sum behind a table score.
	Raw        int
	Components []ScoreComponent
}

// CheckAnswers validates answers against the instrument: every item
// answered once with an integer in its range, and no item the instrument
// does not have. Issues name the item, e.g.
// QuestionnaireResponse.item.where(linkId='6').answer.
func CheckAnswers(in Instrument, answers []Answer) []Issue {
	var issues []Issue
	at := func(linkID string) string {
		return "QuestionnaireResponse.item.where(linkId='" + linkID + "')"
	}
	got := map[string]int{}
	for _, a := range answers {
		got[a.LinkID]++
		i := slices.IndexFunc(in.Items, func(it Item) bool { return it.LinkID == a.LinkID })
		switch {
		case i < 0:
			issues = append(issues, issue(IssueValue, at(a.LinkID), "%s has no item %q", in.ID, a.LinkID))
		case got[a.LinkID] > 1:
			issues = append(issues, issue(IssueValue, at(a.LinkID), "item %q is answered more than once", a.LinkID))
		case !a.Given:
			issues = append(issues, issue(IssueRequired, at(a.LinkID)+".answer", "item %q needs one answer, a valueInteger", a.LinkID))
		case a.Value < in.Items[i].Min || a.Value > in.Items[i].Max:
			issues = append(issues, issue(IssueValue, at(a.LinkID)+".answer", "the answer to item %q (%s) must be from %d to %d, not %d",
				a.LinkID, in.Items[i].Label, in.Items[i].Min, in.Items[i].Max, a.Value))
		}
	}
	for _, it := range in.Items {
		if got[it.LinkID] == 0 {
			issues = append(issues, issue(IssueRequired, at(it.LinkID), "item %q (%s) is not answered", it.LinkID, it.Label))
		}
	}
	return issues
}

// ScoreAnswers scores valid answers (CheckAnswers found nothing).
func ScoreAnswers(in Instrument, answers []Answer) (Score, error) {
	if issues := CheckAnswers(in, answers); len(issues) > 0 {
		return Score{}, Unprocessable(issues)
	}
	value := map[string]int{}
	sum := 0
	for _, a := range answers {
		value[a.LinkID] = a.Value
		sum += a.Value
	}
	switch in.Scoring {
	case ScoreSum:
		return Score{Value: float64(sum), HasValue: true, Raw: sum}, nil
	case ScoreTable:
		v, ok := in.Table[sum]
		if !ok {
			return Score{}, Internal("score", fmt.Errorf("%s: no table entry for %d", in.ID, sum))
		}
		return Score{Value: v, HasValue: true, Raw: sum, Components: []ScoreComponent{{Code: in.RawCode, Value: sum}}}, nil
	case ScoreComponents:
		s := Score{}
		for _, it := range in.Items {
			s.Components = append(s.Components, ScoreComponent{Code: it.Code, Value: value[it.LinkID]})
		}
		return s, nil
	}
	return Score{}, Internal("score", fmt.Errorf("%s: scoring %q", in.ID, in.Scoring))
}

// Schedule is a programme's PROM timetable: a baseline within
// BaselineDays of acceptance, then a follow-up every FollowUpMonths after
// the baseline, until the Task is closed.
type Schedule struct {
	BaselineDays   int
	FollowUpMonths int
}

// DefaultSchedule is DOMAIN.md's: baseline within 30 days, follow-ups every
// 6 months.
var DefaultSchedule = Schedule{BaselineDays: 30, FollowUpMonths: 6}

// NextPROMDue says when the next PROM of a Task is due: the baseline
// BaselineDays after acceptance while none is done; then follow-up n,
// n×FollowUpMonths after the baseline, for the n-th PROM after it. A Task
// not accepted, or closed, has nothing due (zero time).
func (s Schedule) NextPROMDue(accepted, baseline time.Time, done int, open bool) time.Time {
	switch {
	case !open || accepted.IsZero():
		return time.Time{}
	case done == 0 || baseline.IsZero():
		return accepted.AddDate(0, 0, s.BaselineDays)
	}
	return baseline.AddDate(0, done*s.FollowUpMonths, 0)
}
