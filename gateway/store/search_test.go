package store_test

import (
	"slices"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// reader is the organisation the search tests search for; fixtures grant it
// everything except the resources meant to be out of its reach.
const reader = "READER"

const (
	sysA = "https://a.example/id"
	sysB = "https://b.example/id"
	sysC = "https://c.example/id"
)

// search runs q in a View and fails the test on an error.
func search(t *testing.T, s gateway.Store, q gateway.SearchQuery) gateway.SearchPage {
	t.Helper()
	var page gateway.SearchPage
	view(t, s, func(v gateway.View) error {
		var err error
		page, err = v.Search(t.Context(), q)
		return err
	})
	return page
}

// searchErr runs q in a View and returns its error.
func searchErr(t *testing.T, s gateway.Store, q gateway.SearchQuery) error {
	t.Helper()
	return s.View(t.Context(), func(v gateway.View) error {
		_, err := v.Search(t.Context(), q)
		return err
	})
}

// matchIDs runs q with room for every match and returns their ids in order,
// checking that Total agrees.
func matchIDs(t *testing.T, s gateway.Store, q gateway.SearchQuery) []string {
	t.Helper()
	q.Count, q.Total = 1000, true
	page := search(t, s, q)
	if page.Total != len(page.Matches) {
		t.Errorf("Total %d, but %d matches", page.Total, len(page.Matches))
	}
	if page.More {
		t.Error("More set on a page holding every match")
	}
	return ids(page.Matches)
}

type searchCase struct {
	name    string
	filters []gateway.Filter
	want    []string // ids in change order
}

func runSearchCases(t *testing.T, s gateway.Store, typ string, cases []searchCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := matchIDs(t, s, gateway.SearchQuery{Type: typ, Org: reader, Filters: tc.filters})
			if !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func values(f gateway.Field, vs ...string) gateway.Filter {
	return gateway.Filter{Field: f, Values: vs}
}

func tokens(f gateway.Field, ts ...gateway.Token) gateway.Filter {
	return gateway.Filter{Field: f, Tokens: ts}
}

func TestSearchFields(t *testing.T) {
	task := func(id, practice, provider, patient, referral, status, business string) *gateway.Resource {
		return newResource(gateway.TypeTask, id, gateway.Index{
			Practice: practice, Provider: provider, PatientID: patient, ReferralID: referral,
			Status: status, BusinessStatus: business, Access: []string{reader},
		})
	}
	storetest.Each(t, func(t *testing.T, engine string) {
		s := open(t, engine)
		t1 := task("t1", practiceA, providerX, "pat-1", "sr-1", "requested", "received")
		t2 := task("t2", practiceA, providerY, "pat-2", "sr-2", "in-progress", "contacted")
		t3 := task("t3", practiceB, providerX, "pat-1", "sr-3", "completed", "closed")
		t4 := task("t4", practiceB, providerY, "pat-3", "sr-4", "requested", "")
		t5 := task("t5", practiceA, providerX, "pat-4", "sr-5", "requested", "received")
		// t6 matches what t1 matches, but the reader may not see it.
		t6 := task("t6", practiceA, providerX, "pat-1", "sr-1", "requested", "received")
		t6.Index.Access = []string{practiceA}
		// A ServiceRequest with t1's index: the type must keep it out.
		sr := task("t1", practiceA, providerX, "pat-1", "sr-1", "requested", "received")
		sr.Type = gateway.TypeServiceRequest
		put(t, s, t1, t2, t3, t4, t5, t6, sr)
		// t5 moves on: its old values must no longer match.
		put(t, s, next(t5, gateway.Index{Practice: practiceA, Provider: "PROV-Z", PatientID: "pat-4", ReferralID: "sr-5",
			Status: "cancelled", BusinessStatus: "withdrawn", Access: []string{reader}}))

		runSearchCases(t, s, gateway.TypeTask, []searchCase{
			{"no filter", nil, []string{"t1", "t2", "t3", "t4", "t5"}},
			{"id", []gateway.Filter{values(gateway.FieldID, "t3")}, []string{"t3"}},
			{"id, two values", []gateway.Filter{values(gateway.FieldID, "t3", "t1")}, []string{"t1", "t3"}},
			{"id of an unreadable resource", []gateway.Filter{values(gateway.FieldID, "t6")}, nil},
			{"unknown id", []gateway.Filter{values(gateway.FieldID, "nope")}, nil},
			{"practice", []gateway.Filter{values(gateway.FieldPractice, practiceB)}, []string{"t3", "t4"}},
			{"practice, two values", []gateway.Filter{values(gateway.FieldPractice, practiceA, practiceB)}, []string{"t1", "t2", "t3", "t4", "t5"}},
			{"provider", []gateway.Filter{values(gateway.FieldProvider, providerX)}, []string{"t1", "t3"}},
			{"provider of the current version", []gateway.Filter{values(gateway.FieldProvider, "PROV-Z")}, []string{"t5"}},
			{"patient", []gateway.Filter{values(gateway.FieldPatient, "pat-1")}, []string{"t1", "t3"}},
			{"patient, two values", []gateway.Filter{values(gateway.FieldPatient, "pat-3", "pat-2")}, []string{"t2", "t4"}},
			{"referral", []gateway.Filter{values(gateway.FieldReferral, "sr-2")}, []string{"t2"}},
			{"status", []gateway.Filter{values(gateway.FieldStatus, "requested")}, []string{"t1", "t4"}},
			{"status, two values", []gateway.Filter{values(gateway.FieldStatus, "requested", "completed")}, []string{"t1", "t3", "t4"}},
			{"status of an old version only", []gateway.Filter{values(gateway.FieldStatus, "in-progress", "cancelled")}, []string{"t2", "t5"}},
			{"business status", []gateway.Filter{values(gateway.FieldBusinessStatus, "received")}, []string{"t1"}},
			{"business status, two values", []gateway.Filter{values(gateway.FieldBusinessStatus, "contacted", "withdrawn")}, []string{"t2", "t5"}},
			{"two filters (AND)", []gateway.Filter{
				values(gateway.FieldPractice, practiceA), values(gateway.FieldStatus, "requested")}, []string{"t1"}},
			{"three filters (AND)", []gateway.Filter{
				values(gateway.FieldProvider, providerX), values(gateway.FieldPatient, "pat-1"), values(gateway.FieldStatus, "completed")}, []string{"t3"}},
			{"AND of ORs", []gateway.Filter{
				values(gateway.FieldPractice, practiceA, practiceB), values(gateway.FieldProvider, providerY, "PROV-Z")}, []string{"t2", "t4", "t5"}},
			{"AND with nothing in common", []gateway.Filter{
				values(gateway.FieldPractice, practiceA), values(gateway.FieldPractice, practiceB)}, nil},
			{"filter without values", []gateway.Filter{{Field: gateway.FieldStatus}}, nil},
			{"filter without values AND a match", []gateway.Filter{
				values(gateway.FieldPractice, practiceA), {Field: gateway.FieldPractice}}, nil},
			{"identifier filter without tokens", []gateway.Filter{{Field: gateway.FieldIdentifier}}, nil},
			{"date filter without bounds", []gateway.Filter{{Field: gateway.FieldLastUpdated}}, nil},
		})

		t.Run("type", func(t *testing.T) {
			got := matchIDs(t, s, gateway.SearchQuery{Type: gateway.TypeServiceRequest, Org: reader})
			if !slices.Equal(got, []string{"t1"}) {
				t.Errorf("ServiceRequest search found %v", got)
			}
			page := search(t, s, gateway.SearchQuery{Type: gateway.TypeTask, Org: reader, Count: 10,
				Filters: []gateway.Filter{values(gateway.FieldID, "t1")}})
			if len(page.Matches) != 1 || page.Matches[0].Type != gateway.TypeTask {
				t.Errorf("Task search for t1 gave %+v, want one Task", page.Matches)
			}
		})
		t.Run("tenancy", func(t *testing.T) {
			if got := matchIDs(t, s, gateway.SearchQuery{Type: gateway.TypeTask, Org: practiceA}); !slices.Equal(got, []string{"t6"}) {
				t.Errorf("practice A found %v, want [t6]", got)
			}
			if got := matchIDs(t, s, gateway.SearchQuery{Type: gateway.TypeTask, Org: stranger}); len(got) != 0 {
				t.Errorf("a stranger found %v", got)
			}
		})
	})
}

func TestSearchIdentifier(t *testing.T) {
	sr := func(id string, idents ...gateway.Identifier) *gateway.Resource {
		return newResource(gateway.TypeServiceRequest, id, gateway.Index{Identifiers: idents, Access: []string{reader}})
	}
	storetest.Each(t, func(t *testing.T, engine string) {
		s := open(t, engine)
		i6 := sr("i6", gateway.Identifier{System: sysA, Value: "old"})
		hidden := sr("i7", gateway.Identifier{System: sysA, Value: "111"})
		hidden.Index.Access = []string{stranger}
		put(t, s,
			sr("i1", gateway.Identifier{System: sysA, Value: "111"}),
			sr("i2", gateway.Identifier{System: sysB, Value: "111"}),
			sr("i3", gateway.Identifier{Value: "111"}),
			sr("i4", gateway.Identifier{System: sysA, Value: "222"}, gateway.Identifier{System: sysB, Value: "333"}),
			sr("i5"),
			i6, hidden,
		)
		put(t, s, next(i6, gateway.Index{Identifiers: []gateway.Identifier{{System: sysA, Value: "new"}}, Access: []string{reader}}))

		id := func(ts ...gateway.Token) []gateway.Filter {
			return []gateway.Filter{tokens(gateway.FieldIdentifier, ts...)}
		}
		runSearchCases(t, s, gateway.TypeServiceRequest, []searchCase{
			{"system|value", id(gateway.Token{System: sysA, Value: "111"}), []string{"i1"}},
			{"value in any system", id(gateway.Token{Value: "111"}), []string{"i1", "i2", "i3"}},
			{"system| (any value)", id(gateway.Token{System: sysA}), []string{"i1", "i4", "i6"}},
			{"|value (no system)", id(gateway.Token{Value: "111", NoSystem: true}), []string{"i3"}},
			{"|value with none lacking a system", id(gateway.Token{Value: "222", NoSystem: true}), nil},
			{"second identifier", id(gateway.Token{System: sysB, Value: "333"}), []string{"i4"}},
			{"system and value of different identifiers", id(gateway.Token{System: sysA, Value: "333"}), nil},
			{"unknown system", id(gateway.Token{System: sysC, Value: "111"}), nil},
			{"unknown system|", id(gateway.Token{System: sysC}), nil},
			{"two tokens (OR)", id(gateway.Token{System: sysA, Value: "111"}, gateway.Token{System: sysB, Value: "333"}), []string{"i1", "i4"}},
			{"OR of different forms", id(gateway.Token{Value: "111", NoSystem: true}, gateway.Token{System: sysB}), []string{"i2", "i3", "i4"}},
			{"two filters (AND)", []gateway.Filter{
				tokens(gateway.FieldIdentifier, gateway.Token{System: sysA}),
				tokens(gateway.FieldIdentifier, gateway.Token{System: sysB})}, []string{"i4"}},
			{"identifier of an old version", id(gateway.Token{System: sysA, Value: "old"}), nil},
			{"identifier of the current version", id(gateway.Token{System: sysA, Value: "new"}), []string{"i6"}},
		})
	})
}

func TestSearchPatientIdentifier(t *testing.T) {
	nhs := func(v string) gateway.Identifier {
		return gateway.Identifier{System: gateway.SystemNHSNumber, Value: v}
	}
	patient := func(id string, idents ...gateway.Identifier) *gateway.Resource {
		return newResource(gateway.TypePatient, id, gateway.Index{Identifiers: idents, Access: []string{reader}})
	}
	task := func(id, patient string) *gateway.Resource {
		return newResource(gateway.TypeTask, id, gateway.Index{PatientID: patient, Access: []string{reader}})
	}
	storetest.Each(t, func(t *testing.T, engine string) {
		s := open(t, engine)
		pc := patient("pc", nhs("9000000025"))
		// A resource of another type with an id Tasks refer to as a patient.
		notPatient := newResource(gateway.TypeCondition, "px", gateway.Index{Identifiers: []gateway.Identifier{nhs("9000000041")}, Access: []string{reader}})
		put(t, s,
			patient("pa", nhs("9000000009")),
			patient("pb", nhs("9000000017"), gateway.Identifier{System: sysLocal, Value: "X"}),
			pc, notPatient,
			task("ta", "pa"), task("tb", "pb"), task("tc", "pa"), task("td", "pc"), task("te", ""), task("tf", "px"),
		)
		var before int64 // the snapshot before pc changes its identifier
		view(t, s, func(v gateway.View) error { before = v.Snapshot(); return nil })
		put(t, s, next(pc, gateway.Index{Identifiers: []gateway.Identifier{nhs("9000000033")}, Access: []string{reader}}))

		pid := func(ts ...gateway.Token) []gateway.Filter {
			return []gateway.Filter{tokens(gateway.FieldPatientIdentifier, ts...)}
		}
		tok := func(v string) gateway.Token { return gateway.Token{System: gateway.SystemNHSNumber, Value: v} }
		runSearchCases(t, s, gateway.TypeTask, []searchCase{
			{"system|value", pid(tok("9000000009")), []string{"ta", "tc"}},
			{"value", pid(gateway.Token{Value: "9000000017"}), []string{"tb"}},
			{"system|", pid(gateway.Token{System: sysLocal}), []string{"tb"}},
			{"|value", pid(gateway.Token{Value: "9000000009", NoSystem: true}), nil},
			{"two tokens (OR)", pid(tok("9000000009"), tok("9000000017")), []string{"ta", "tb", "tc"}},
			{"old identifier of the patient", pid(tok("9000000025")), nil},
			{"current identifier of the patient", pid(tok("9000000033")), []string{"td"}},
			{"only through Patients", pid(tok("9000000041")), nil},
			{"unknown", pid(tok("9999999999")), nil},
			{"AND with the patient field", []gateway.Filter{
				tokens(gateway.FieldPatientIdentifier, tok("9000000009")), values(gateway.FieldID, "tc", "tb")}, []string{"tc"}},
		})

		t.Run("as of the snapshot", func(t *testing.T) {
			page := search(t, s, gateway.SearchQuery{Type: gateway.TypeTask, Org: reader, Count: 10, Snapshot: before,
				Filters: pid(tok("9000000025"))})
			if page.Snapshot != before || !slices.Equal(ids(page.Matches), []string{"td"}) {
				t.Errorf("at snapshot %d found %v (snapshot %d), want [td]", before, ids(page.Matches), page.Snapshot)
			}
		})
	})
}

func TestSearchDates(t *testing.T) {
	at := func(s string) time.Time {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			panic(err)
		}
		return t
	}
	authored := []struct {
		id string
		at string
	}{
		{"a", "2025-12-31T23:59:59.999999Z"},
		{"b", "2026-03-15T00:00:00Z"},
		{"c", "2026-03-15T10:00:00Z"},
		{"d", "2026-03-15T10:00:00.5Z"},
		{"e", "2026-03-31T23:59:59.999999Z"},
		{"f", "2026-04-01T00:00:00Z"},
		{"g", "2027-01-01T00:00:00Z"},
		{"h", ""}, // no authoredOn
	}
	type dateCase struct {
		op   gateway.Comparator
		date string
		want string // ids, in change order
	}
	dateCases := []dateCase{
		{gateway.OpEq, "2026", "bcdef"},
		{gateway.OpNe, "2026", "ag"},
		{gateway.OpGt, "2026", "g"},
		{gateway.OpGe, "2026", "bcdefg"},
		{gateway.OpLt, "2026", "a"},
		{gateway.OpLe, "2026", "abcdef"},
		{gateway.OpEq, "2026-03", "bcde"},
		{gateway.OpNe, "2026-03", "afg"},
		{gateway.OpGt, "2026-03", "fg"},
		{gateway.OpGe, "2026-03", "bcdefg"},
		{gateway.OpLt, "2026-03", "a"},
		{gateway.OpLe, "2026-03", "abcde"},
		{gateway.OpEq, "2026-03-15", "bcd"},
		{gateway.OpNe, "2026-03-15", "aefg"},
		{gateway.OpGt, "2026-03-15", "efg"},
		{gateway.OpGe, "2026-03-15", "bcdefg"},
		{gateway.OpLt, "2026-03-15", "a"},
		{gateway.OpLe, "2026-03-15", "abcd"},
		{gateway.OpEq, "2026-03-15T10:00:00Z", "cd"},
		{gateway.OpNe, "2026-03-15T10:00:00Z", "abefg"},
		{gateway.OpGt, "2026-03-15T10:00:00Z", "efg"},
		{gateway.OpGe, "2026-03-15T10:00:00Z", "cdefg"},
		{gateway.OpLt, "2026-03-15T10:00:00Z", "ab"},
		{gateway.OpLe, "2026-03-15T10:00:00Z", "abcd"},
		{gateway.OpEq, "2026-03-15T12:00:00+02:00", "cd"},
		{gateway.OpEq, "2026-03-15T10:00:00.5Z", "d"},
		{gateway.OpNe, "2026-03-15T10:00:00.5Z", "abcefg"},
		{gateway.OpGt, "2026-03-15T10:00:00.5Z", "efg"},
		{gateway.OpGe, "2026-03-15T10:00:00.5Z", "defg"},
		{gateway.OpLt, "2026-03-15T10:00:00.5Z", "abc"},
		{gateway.OpLe, "2026-03-15T10:00:00.5Z", "abcd"},
		{gateway.OpEq, "2026-03-15T10:00:00.000Z", "c"},
		{gateway.OpGt, "2026-03-15T10:00:00.000Z", "defg"},
		{gateway.OpLe, "2026-03-15T10:00:00.000Z", "abc"},
		{gateway.OpEq, "2025-12-31T23:59:59.999999Z", "a"},
		{gateway.OpGt, "2025-12-31T23:59:59.999999Z", "bcdefg"},
		{gateway.OpEq, "1999", ""},
		{gateway.OpNe, "1999", "abcdefg"},
	}
	period := func(s string) gateway.Period {
		p, err := gateway.ParseDateTime(s)
		if err != nil {
			panic(s + ": " + err.Error())
		}
		return p
	}
	split := func(s string) []string {
		var out []string
		for _, c := range s {
			out = append(out, string(c))
		}
		return out
	}
	dates := func(f gateway.Field, bs ...gateway.DateBound) gateway.Filter {
		return gateway.Filter{Field: f, Dates: bs}
	}
	bound := func(op gateway.Comparator, s string) gateway.DateBound {
		return gateway.DateBound{Op: op, Period: period(s)}
	}

	storetest.Each(t, func(t *testing.T, engine string) {
		c := newClock(t0, 0)
		s := storetest.Open(t, engine, c.Now)

		var srs []*gateway.Resource
		for _, a := range authored {
			x := gateway.Index{Access: []string{reader}}
			if a.at != "" {
				x.Authored = at(a.at)
			}
			srs = append(srs, newResource(gateway.TypeServiceRequest, a.id, x))
		}
		hidden := newResource(gateway.TypeServiceRequest, "hidden", gateway.Index{Authored: at("2026-03-15T10:00:00Z"), Access: []string{stranger}})
		put(t, s, append(srs, hidden)...)

		// Tasks with lastModified; Task m1 is written at three lastUpdated
		// times, m2 and m3 once each.
		m1 := newResource(gateway.TypeTask, "m1", gateway.Index{Modified: at("2026-03-15T10:00:00Z"), Access: []string{reader}})
		m2 := newResource(gateway.TypeTask, "m2", gateway.Index{Modified: at("2026-04-01T00:00:00Z"), Access: []string{reader}})
		m3 := newResource(gateway.TypeTask, "m3", gateway.Index{Access: []string{reader}})
		c.Set(at("2026-03-14T23:00:00Z"))
		put(t, s, m1)
		c.Set(at("2026-03-15T10:00:00Z"))
		put(t, s, m2)
		c.Set(at("2026-03-16T00:00:00Z"))
		put(t, s, m3)
		c.Set(at("2026-03-17T08:00:00Z"))
		put(t, s, next(m1, gateway.Index{Modified: at("2026-03-15T10:00:00Z"), Access: []string{reader}}))

		t.Run("authored", func(t *testing.T) {
			var cases []searchCase
			for _, dc := range dateCases {
				cases = append(cases, searchCase{string(dc.op) + dc.date,
					[]gateway.Filter{dates(gateway.FieldAuthored, bound(dc.op, dc.date))}, split(dc.want)})
			}
			cases = append(cases,
				searchCase{"two bounds (OR)", []gateway.Filter{dates(gateway.FieldAuthored,
					bound(gateway.OpEq, "2025"), bound(gateway.OpEq, "2027"))}, []string{"a", "g"}},
				searchCase{"two filters (AND): a range", []gateway.Filter{
					dates(gateway.FieldAuthored, bound(gateway.OpGe, "2026-03")),
					dates(gateway.FieldAuthored, bound(gateway.OpLt, "2026-04"))}, []string{"b", "c", "d", "e"}},
			)
			runSearchCases(t, s, gateway.TypeServiceRequest, cases)
		})

		t.Run("lastUpdated", func(t *testing.T) {
			lu := func(op gateway.Comparator, d string) []gateway.Filter {
				return []gateway.Filter{dates(gateway.FieldLastUpdated, bound(op, d))}
			}
			runSearchCases(t, s, gateway.TypeTask, []searchCase{
				{"eq day", lu(gateway.OpEq, "2026-03-15"), []string{"m2"}},
				{"eq day of an old version only", lu(gateway.OpEq, "2026-03-14"), nil},
				{"ne day", lu(gateway.OpNe, "2026-03-15"), []string{"m3", "m1"}},
				{"gt day", lu(gateway.OpGt, "2026-03-15"), []string{"m3", "m1"}},
				{"ge second", lu(gateway.OpGe, "2026-03-15T10:00:00Z"), []string{"m2", "m3", "m1"}},
				{"gt second", lu(gateway.OpGt, "2026-03-15T10:00:00Z"), []string{"m3", "m1"}},
				{"lt month", lu(gateway.OpLt, "2026-03"), nil},
				{"le day", lu(gateway.OpLe, "2026-03-16"), []string{"m2", "m3"}},
				{"eq year", lu(gateway.OpEq, "2026"), []string{"m2", "m3", "m1"}},
				{"eq microsecond", lu(gateway.OpEq, "2026-03-17T08:00:00.000000Z"), []string{"m1"}},
			})
			// Whatever the clock, the ServiceRequests were all written at t0.
			got := matchIDs(t, s, gateway.SearchQuery{Type: gateway.TypeServiceRequest, Org: reader,
				Filters: []gateway.Filter{dates(gateway.FieldLastUpdated, bound(gateway.OpLt, "2026-03-15T10:00:01Z"))}})
			if len(got) != len(authored) {
				t.Errorf("ServiceRequests written at t0: found %v", got)
			}
		})

		t.Run("modified", func(t *testing.T) {
			mod := func(op gateway.Comparator, d string) []gateway.Filter {
				return []gateway.Filter{dates(gateway.FieldModified, bound(op, d))}
			}
			runSearchCases(t, s, gateway.TypeTask, []searchCase{
				{"eq month", mod(gateway.OpEq, "2026-03"), []string{"m1"}},
				{"ne month", mod(gateway.OpNe, "2026-03"), []string{"m2"}},
				{"gt month", mod(gateway.OpGt, "2026-03"), []string{"m2"}},
				{"ge day", mod(gateway.OpGe, "2026-03-15"), []string{"m2", "m1"}},
				{"lt instant", mod(gateway.OpLt, "2026-04-01T00:00:00Z"), []string{"m1"}},
				{"le instant", mod(gateway.OpLe, "2026-04-01T00:00:00Z"), []string{"m2", "m1"}},
			})
		})
	})
}

func TestSearchInvalid(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		s := open(t, engine)
		put(t, s, newResource(gateway.TypeTask, "t1", gateway.Index{Status: "requested", Access: []string{reader}}))
		p, _ := gateway.ParseDate("2026")
		for _, tc := range []struct {
			name string
			q    gateway.SearchQuery
		}{
			{"no organisation", gateway.SearchQuery{Type: gateway.TypeTask, Count: 10}},
			{"no organisation, total only", gateway.SearchQuery{Type: gateway.TypeTask, Total: true}},
			{"unknown field", gateway.SearchQuery{Type: gateway.TypeTask, Org: reader, Count: 10,
				Filters: []gateway.Filter{values(gateway.Field(999), "x")}}},
			{"unknown comparator", gateway.SearchQuery{Type: gateway.TypeTask, Org: reader, Count: 10,
				Filters: []gateway.Filter{{Field: gateway.FieldLastUpdated, Dates: []gateway.DateBound{{Op: "xx", Period: p}}}}}},
			{"tokens for a plain field", gateway.SearchQuery{Type: gateway.TypeTask, Org: reader, Count: 10,
				Filters: []gateway.Filter{tokens(gateway.FieldStatus, gateway.Token{Value: "requested"})}}},
			{"values for a token field", gateway.SearchQuery{Type: gateway.TypeTask, Org: reader, Count: 10,
				Filters: []gateway.Filter{values(gateway.FieldIdentifier, "x")}}},
			{"values for a date field", gateway.SearchQuery{Type: gateway.TypeTask, Org: reader, Count: 10,
				Filters: []gateway.Filter{values(gateway.FieldAuthored, "2026")}}},
			{"include through an unknown field", gateway.SearchQuery{Type: gateway.TypeTask, Org: reader, Count: 10,
				Includes: []gateway.Include{{Field: gateway.FieldStatus, Type: gateway.TypePatient}}}},
			{"include through an unknown field, no matches", gateway.SearchQuery{Type: gateway.TypeTask, Org: reader, Count: 10,
				Filters:  []gateway.Filter{values(gateway.FieldID, "nope")},
				Includes: []gateway.Include{{Field: gateway.FieldStatus, Type: gateway.TypePatient}}}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := searchErr(t, s, tc.q)
				if gateway.ErrorCode(err) != gateway.CodeInvalid {
					t.Errorf("err = %v (code %q), want invalid", err, gateway.ErrorCode(err))
				}
			})
		}
	})
}

func TestSearchTotalCountOrder(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		s := open(t, engine)
		var all []string
		for _, id := range []string{"r1", "r2", "r3", "r4", "r5"} {
			put(t, s, newResource(gateway.TypeTask, id, gateway.Index{Status: "ready", Access: []string{reader}}))
			all = append(all, id)
		}
		put(t, s, newResource(gateway.TypeTask, "hidden", gateway.Index{Status: "ready", Access: []string{stranger}}))
		var last int64
		view(t, s, func(v gateway.View) error { last = v.Snapshot(); return nil })
		reversed := slices.Clone(all)
		slices.Reverse(reversed)

		for _, tc := range []struct {
			name       string
			count      int
			total      bool
			descending bool
			want       []string
			wantTotal  int
			wantMore   bool
		}{
			{"count 0 with total", 0, true, false, nil, 5, false},
			{"count 0 without total", 0, false, false, nil, -1, false},
			{"a page, more follow", 2, true, false, all[:2], 5, true},
			{"a page without total", 2, false, false, all[:2], -1, true},
			{"a page exactly full", 5, true, false, all, 5, false},
			{"room to spare", 50, true, false, all, 5, false},
			{"descending", 50, true, true, reversed, 5, false},
			{"descending page", 3, false, true, reversed[:3], -1, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				page := search(t, s, gateway.SearchQuery{Type: gateway.TypeTask, Org: reader, Count: tc.count, Total: tc.total, Descending: tc.descending})
				if got := ids(page.Matches); !slices.Equal(got, tc.want) && len(got)+len(tc.want) > 0 {
					t.Errorf("matches %v, want %v", got, tc.want)
				}
				if page.Total != tc.wantTotal {
					t.Errorf("Total %d, want %d", page.Total, tc.wantTotal)
				}
				if page.More != tc.wantMore {
					t.Errorf("More %v, want %v", page.More, tc.wantMore)
				}
				if page.Snapshot != last {
					t.Errorf("Snapshot %d, want %d", page.Snapshot, last)
				}
				for i := 1; i < len(page.Matches); i++ {
					a, b := page.Matches[i-1], page.Matches[i]
					if up := a.Seq < b.Seq && a.LastUpdated.Before(b.LastUpdated); up == tc.descending {
						t.Errorf("%s (seq %d) then %s (seq %d): wrong order", a.ID, a.Seq, b.ID, b.Seq)
					}
				}
			})
		}

		t.Run("pages continue after the cursor", func(t *testing.T) {
			for _, descending := range []bool{false, true} {
				want := all
				if descending {
					want = reversed
				}
				var got []string
				q := gateway.SearchQuery{Type: gateway.TypeTask, Org: reader, Count: 2, Total: true, Descending: descending}
				for pages := 0; ; pages++ {
					if pages > 5 {
						t.Fatal("paging does not end")
					}
					page := search(t, s, q)
					if page.Total != 5 {
						t.Errorf("page %d: Total %d, want 5", pages, page.Total)
					}
					got = append(got, ids(page.Matches)...)
					if !page.More {
						break
					}
					q.Snapshot, q.After = page.Snapshot, page.Matches[len(page.Matches)-1].Seq
				}
				if !slices.Equal(got, want) {
					t.Errorf("descending %v: pages gave %v, want %v", descending, got, want)
				}
			}
		})

		t.Run("a snapshot later than the view is the view's", func(t *testing.T) {
			page := search(t, s, gateway.SearchQuery{Type: gateway.TypeTask, Org: reader, Count: 10, Snapshot: last + 100})
			if page.Snapshot != last || len(page.Matches) != 5 {
				t.Errorf("Snapshot %d with %d matches, want %d and 5", page.Snapshot, len(page.Matches), last)
			}
		})
	})
}

func TestSearchIncludes(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		s := open(t, engine)
		readable := []string{reader}
		s1 := newResource(gateway.TypeServiceRequest, "s1", gateway.Index{Access: readable})
		s2 := newResource(gateway.TypeServiceRequest, "s2", gateway.Index{Access: []string{stranger}})
		p1 := newResource(gateway.TypePatient, "p1", gateway.Index{Access: readable})
		p2 := newResource(gateway.TypePatient, "p2", gateway.Index{Access: []string{stranger}})
		// A ServiceRequest that shares p1's id: an include of Patients must
		// not pick it up.
		sp1 := newResource(gateway.TypeServiceRequest, "p1", gateway.Index{Access: readable})
		put(t, s, s1, s2, p1, p2, sp1)
		task := func(id, referral, patient string) *gateway.Resource {
			return newResource(gateway.TypeTask, id, gateway.Index{ReferralID: referral, PatientID: patient, Access: readable})
		}
		put(t, s, task("k1", "s1", "p1"), task("k2", "s1", "p2"), task("k3", "s2", "p1"), task("k4", "", ""))

		both := []gateway.Include{
			{Field: gateway.FieldReferral, Type: gateway.TypeServiceRequest},
			{Field: gateway.FieldPatient, Type: gateway.TypePatient},
		}
		type ref struct {
			typ, id string
			version int
		}
		refs := func(rs []gateway.Resource) []ref {
			out := make([]ref, len(rs))
			for i, r := range rs {
				out[i] = ref{r.Type, r.ID, r.Version}
			}
			return out
		}
		for _, tc := range []struct {
			name     string
			filter   []string // Task ids
			includes []gateway.Include
			want     []ref
		}{
			{"referral and patient", nil, both, []ref{{"ServiceRequest", "s1", 1}, {"Patient", "p1", 1}}},
			{"referral only", nil, both[:1], []ref{{"ServiceRequest", "s1", 1}}},
			{"patient only", nil, both[1:], []ref{{"Patient", "p1", 1}}},
			{"only what the org may read", []string{"k2", "k3"}, both, []ref{{"ServiceRequest", "s1", 1}, {"Patient", "p1", 1}}},
			{"nothing readable to include", []string{"k3"}, both[:1], nil},
			{"matches without references", []string{"k4"}, both, nil},
			{"wrong type", nil, []gateway.Include{{Field: gateway.FieldReferral, Type: gateway.TypePatient}}, nil},
			{"no includes", nil, nil, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				q := gateway.SearchQuery{Type: gateway.TypeTask, Org: reader, Count: 10, Includes: tc.includes}
				if tc.filter != nil {
					q.Filters = []gateway.Filter{values(gateway.FieldID, tc.filter...)}
				}
				page := search(t, s, q)
				if got := refs(page.Included); !slices.Equal(got, tc.want) && len(got)+len(tc.want) > 0 {
					t.Errorf("included %v, want %v", got, tc.want)
				}
			})
		}

		t.Run("as of the snapshot", func(t *testing.T) {
			q := gateway.SearchQuery{Type: gateway.TypeTask, Org: reader, Count: 1, Includes: both}
			first := search(t, s, q)
			if !slices.Equal(ids(first.Matches), []string{"k1"}) || !first.More {
				t.Fatalf("first page %v (more %v), want [k1] and more", ids(first.Matches), first.More)
			}
			put(t, s, next(s1, gateway.Index{Status: "revoked", Access: readable}))
			q.Snapshot, q.After = first.Snapshot, first.Matches[0].Seq
			second := search(t, s, q)
			if !slices.Equal(ids(second.Matches), []string{"k2"}) {
				t.Fatalf("second page %v, want [k2]", ids(second.Matches))
			}
			if got, want := refs(second.Included), []ref{{"ServiceRequest", "s1", 1}}; !slices.Equal(got, want) {
				t.Errorf("included %v, want %v: the version at the snapshot", got, want)
			}
			now := search(t, s, gateway.SearchQuery{Type: gateway.TypeTask, Org: reader, Count: 1, Includes: both[:1]})
			if got, want := refs(now.Included), []ref{{"ServiceRequest", "s1", 2}}; !slices.Equal(got, want) {
				t.Errorf("a new search included %v, want %v", got, want)
			}
		})
	})
}
