package fhir

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/spgateway/spgateway/gateway"
)

// fixtureFiles returns the contents of every JSON fixture, valid and
// invalid, as fuzz seeds.
func fixtureFiles(f *testing.F) [][]byte {
	f.Helper()
	var out [][]byte
	for _, pattern := range []string{"*.json", filepath.Join("invalid", "*.json")} {
		paths, err := filepath.Glob(filepath.Join("..", "testdata", "fixtures", pattern))
		if err != nil {
			f.Fatal(err)
		}
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		f.Fatal("no fixtures found")
	}
	return out
}

// wantInvalid fails unless err is a *gateway.Error with CodeInvalid.
func wantInvalid(t *testing.T, err error) {
	t.Helper()
	var ge *gateway.Error
	if !errors.As(err, &ge) {
		t.Fatalf("error %T %v is not a *gateway.Error", err, err)
	}
	if ge.Code != gateway.CodeInvalid {
		t.Fatalf("error code %q, want %q: %v", ge.Code, gateway.CodeInvalid, err)
	}
}

// referenceDepth is the deepest nesting of objects and arrays in valid
// JSON, read from encoding/json's token stream.
func referenceDepth(t *testing.T, doc []byte) int {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(doc))
	depth, deepest := 0, 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return deepest
		}
		if err != nil {
			t.Fatalf("token stream of valid JSON: %v", err)
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
			deepest = max(deepest, depth)
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
}

func FuzzCheckJSON(f *testing.F) {
	for _, b := range fixtureFiles(f) {
		f.Add(b, uint8(63))
		f.Add(b, uint8(3))
	}
	for _, s := range []string{
		``, ` `, `{}`, `[]`, `[[]]`, `{"a":[{"b":{}}]}`, `"x"`, `1`, `null`,
		`"[[[["`, `"\"[["`, `"\\"`, `["\\",[]]`, `{"a\"{":[]}`, `{"a":"}}}"}`,
		`]`, `[`, `}{`, `[]]`, `[]]]][[[[`, `{}{}`, `{"a":1,}`, `[1 2]`,
		"\xff", `"` + "\xff" + `"`, `{"a` + "\x83" + `":1}`, `"\ud800"`, `"é"`, `[` + "\x00" + `]`, ` [ [ ] ] `,
		strings.Repeat("[", 70) + strings.Repeat("]", 70),
	} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(1))
		f.Add([]byte(s), uint8(99))
	}
	f.Fuzz(func(t *testing.T, b []byte, l uint8) {
		limit := int(l)%100 + 1
		err := checkJSON(b, limit)
		want := json.Valid(b) && utf8.Valid(b) && referenceDepth(t, b) <= limit
		switch {
		case want && err != nil:
			t.Fatalf("checkJSON(%q, %d) = %v, want nil", b, limit, err)
		case !want && err == nil:
			t.Fatalf("checkJSON(%q, %d) = nil, want an error (valid %t)", b, limit, json.Valid(b))
		case err != nil:
			wantInvalid(t, err)
		}
	})
}

func TestCheckJSON(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		depth int
		ok    bool
	}{
		{"object", `{"a":[1,{"b":null}]}`, 3, true},
		{"at the limit", `[[[]]]`, 3, true},
		{"over the limit", `[[[[]]]]`, 3, false},
		{"brackets in strings", `{"a":"[[[[{{{{\"]]]]"}`, 1, true},
		{"not JSON", `{"a":}`, 64, false},
		{"two values", `{} {}`, 64, false},
		{"empty", ``, 64, false},
		{"UTF-8", `{"name":"Zoë Ødegård 日本"}`, 64, true},
		{"escaped surrogate", `{"a":"\ud83d\ude00"}`, 64, true},
		{"not UTF-8 in a value", "{\"a\":\"b\xffc\"}", 64, false},
		{"not UTF-8 in a key", "{\"a\x83\":1}", 64, false},
		{"UTF-8 cut short", "{\"a\":\"\xe6\x97\"}", 64, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkJSON([]byte(tt.body), tt.depth)
			if (err == nil) != tt.ok {
				t.Fatalf("checkJSON(%q, %d) = %v, want ok %t", tt.body, tt.depth, err, tt.ok)
			}
			if err != nil {
				wantInvalid(t, err)
			}
		})
	}
}

func TestDecodeCursorRefusesOutOfRange(t *testing.T) {
	// raw builds a cursor from its six varint fields.
	raw := func(version uint64, snapshot, after, total int64, flags, query uint64) string {
		var b []byte
		b = binary.AppendUvarint(b, version)
		b = binary.AppendVarint(b, snapshot)
		b = binary.AppendVarint(b, after)
		b = binary.AppendVarint(b, total)
		b = binary.AppendUvarint(b, flags)
		b = binary.AppendUvarint(b, query)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	tests := []struct {
		name string
		s    string
		ok   bool
	}{
		{"valid", raw(cursorVersion, 5, 3, 10, 0, 77), true},
		{"largest query", raw(cursorVersion, 5, 3, 10, 0, math.MaxUint32), true},
		{"query beyond 32 bits", raw(cursorVersion, 5, 3, 10, 0, math.MaxUint32+1), false},
		{"other version", raw(2, 5, 3, 10, 0, 77), false},
		{"version 2^32+1", raw(1<<32+1, 5, 3, 10, 0, 77), false},
		{"flags 2", raw(cursorVersion, 5, 3, 10, 2, 77), false},
		{"no snapshot", raw(cursorVersion, 0, 3, 10, 0, 77), false},
		{"negative after", raw(cursorVersion, 5, -1, 10, 0, 77), false},
		{"total -2", raw(cursorVersion, 5, 3, -2, 0, 77), false},
		{"total not counted", raw(cursorVersion, 5, 3, -1, 1, 77), true},
		{"trailing byte", raw(cursorVersion, 5, 3, 10, 0, 77) + "AA", false},
		{"empty", "", false},
		{"not base64url", "a+b/", false},
		{"too long", strings.Repeat("A", 101), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeCursor(tt.s)
			if (err == nil) != tt.ok {
				t.Errorf("decodeCursor(%q) error %v, want ok %t", tt.s, err, tt.ok)
			}
		})
	}
}

func FuzzCursor(f *testing.F) {
	valid := cursor{snapshot: 42, after: 7, total: 100, query: 0xdeadbeef}
	f.Add(valid.encode(), int64(42), int64(7), int64(100), false, uint32(0xdeadbeef))
	f.Add(cursor{snapshot: 1, total: -1, desc: true}.encode(), int64(1), int64(0), int64(-1), true, uint32(0))
	f.Add(cursor{snapshot: math.MaxInt64, after: math.MaxInt64, total: math.MaxInt64, query: math.MaxUint32}.encode(),
		int64(math.MaxInt64), int64(math.MaxInt64), int64(math.MaxInt64), true, uint32(math.MaxUint32))
	f.Add("", int64(0), int64(0), int64(0), false, uint32(0))
	f.Add("AQ", int64(-1), int64(-1), int64(-2), false, uint32(1))
	f.Add(strings.Repeat("_", 60), int64(math.MinInt64), int64(math.MinInt64), int64(math.MinInt64), false, uint32(1))
	f.Add("AQICAgAA=", int64(1), int64(0), int64(0), false, uint32(0))
	f.Fuzz(func(t *testing.T, s string, snapshot, after, total int64, desc bool, query uint32) {
		if c, err := decodeCursor(s); err == nil {
			if c.snapshot <= 0 || c.after < 0 || c.total < -1 {
				t.Fatalf("decodeCursor(%q) = %+v, out of range", s, c)
			}
			again, err := decodeCursor(c.encode())
			if err != nil || again != c {
				t.Fatalf("decodeCursor(%q) = %+v; re-encoded it decodes to %+v, %v", s, c, again, err)
			}
		}

		c := cursor{snapshot: snapshot, after: after, total: total, desc: desc, query: query}
		s = c.encode()
		got, err := decodeCursor(s)
		inRange := snapshot > 0 && after >= 0 && total >= -1
		switch {
		case inRange && (err != nil || got != c):
			t.Fatalf("cursor %+v encodes to %q, which decodes to %+v, %v", c, s, got, err)
		case !inRange && err == nil:
			t.Fatalf("cursor %+v is out of range, but %q decodes to %+v", c, s, got)
		}
	})
}

// fuzzServer is a Server as NewServer configures it, enough for
// parseSearch.
func fuzzServer() *Server {
	return &Server{cfg: Config{DefaultCount: 50, MaxCount: 500}, base: "http://x/fhir"}
}

func FuzzParseSearch(f *testing.F) {
	for _, q := range []string{
		"",
		"_count=10&_sort=-_lastUpdated&_total=none",
		"_count=0", "_count=100000", "_count=-1", "_count=1&_count=2", "_count=x",
		"_sort=_lastUpdated", "_sort=status", "_total=accurate", "_total=maybe",
		"_format=json&_summary=true", "_elements=id", "foo=bar",
		"_id=a,b&_lastUpdated=gt2026-01-01T00:00:00Z",
		"_lastUpdated=ge2026-11-20&_lastUpdated=lt2026-12", "_lastUpdated=xx2026", "_lastUpdated=2026-13-01",
		"_lastUpdated=gt2026-11-20T10:00:00+01:00", "_lastUpdated=gt2026-11-20T10:00:00 01:00",
		"identifier=https://practice-a81001.example.org/referrals|SP-2026-000123",
		"identifier=|x", "identifier=x|", "identifier=a\\|b|c\\,d,e",
		"patient=Patient/p1", "patient=http://x/fhir/Patient/p1", "patient=http://elsewhere/fhir/Patient/p1",
		"patient=Organization/x", "patient:Patient=p1", "patient:Group=p1",
		"patient:identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919",
		"patient.identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919", "patient.name=x",
		"requester=Organization/A81001", "requester:identifier=https://fhir.nhs.uk/Id/ods-organization-code|A81001",
		"requester:identifier=A81001", "requester.identifier=|A81001", "performer=PRV01",
		"owner=Organization/PRV01&status=requested,accepted&business-status=https://fhir.spgateway.org/CodeSystem/business-status|first-contact",
		"business-status=other|x", "business-status=|x", "status:not=active", "status.x=y",
		"focus=ServiceRequest/sr-1&_include=Task:focus&_include=Task:patient:Patient",
		"_include=Task:focus:ServiceRequest", "_include=Task:owner", "_include=ServiceRequest:patient",
		"modified=le2026-11-23&authored=eq2026", "authored:missing=true",
		"_cursor=" + cursor{snapshot: 3, after: 1, query: queryHash(gateway.TypeTask, "")}.encode(),
		"_cursor=bogus", "_cursor=a&_cursor=b",
		"name=tyne", "name:contains=link", "name:exact=Tyneside%20Link%20Workers", "name:fuzzy=x", "name.x=y",
		"_id:exact=x", "identifier:text=x",
		"status=", "status=%2C", "_id=,", "patient=\\", "identifier=\\",
		"identifier=%83", "status=%83", "owner=%83", "_id=%ff", "patient:identifier=x|%83", "_lastUpdated=%83", "name=%83", "%83=x",
	} {
		f.Add(q)
	}
	s := fuzzServer()
	f.Fuzz(func(t *testing.T, raw string) {
		params, err := url.ParseQuery(raw)
		if err != nil {
			t.Skip()
		}
		for i := range resourceDefs {
			def := &resourceDefs[i]
			for _, strict := range []bool{false, true} {
				ps, err := s.parseSearch(def, params, strict)
				if err != nil {
					wantInvalid(t, err)
					continue
				}
				checkSearch(t, s, def, ps)
				// The self and next links carry ps.links: read back, they
				// must give the same search, or paging breaks.
				back, err := url.ParseQuery(ps.links.Encode())
				if err != nil {
					t.Fatalf("%s %q: links %q do not parse: %v", def.typ, raw, ps.links.Encode(), err)
				}
				again, err := s.parseSearch(def, back, strict)
				if err != nil {
					t.Fatalf("%s %q: the links %q of a valid search are refused: %v", def.typ, raw, ps.links.Encode(), err)
				}
				if again.hash != ps.hash {
					t.Fatalf("%s %q: the links %q give another search hash", def.typ, raw, ps.links.Encode())
				}
				want := ps.query
				want.Snapshot, want.After, want.Total = 0, 0, again.query.Total
				if !reflect.DeepEqual(again.query, want) {
					t.Fatalf("%s %q: the links %q give another query:\n%+v\n%+v", def.typ, raw, ps.links.Encode(), again.query, want)
				}
			}
		}
	})
}

// checkSearch checks what the store requires of a query (store.query.filter).
func checkSearch(t *testing.T, s *Server, def *resourceDef, ps *parsedSearch) {
	t.Helper()
	q := ps.query
	if q.Type != def.typ {
		t.Fatalf("query type %q on %s", q.Type, def.typ)
	}
	if q.Count < 0 || q.Count > s.cfg.MaxCount {
		t.Fatalf("%s: _count %d outside 0..%d", def.typ, q.Count, s.cfg.MaxCount)
	}
	if def.typ == gateway.TypeOrganization && len(q.Filters) > 0 {
		t.Fatalf("Organization search with store filters: %+v", q.Filters)
	}
	for _, fl := range q.Filters {
		if fl.Field < gateway.FieldID || fl.Field > gateway.FieldModified {
			t.Fatalf("%s: filter on unknown field %d", def.typ, fl.Field)
		}
		switch {
		case len(fl.Tokens) > 0 && !fl.Field.IsToken():
			t.Fatalf("%s: tokens on field %d: %+v", def.typ, fl.Field, fl)
		case len(fl.Dates) > 0 && !fl.Field.IsDate():
			t.Fatalf("%s: dates on field %d: %+v", def.typ, fl.Field, fl)
		case len(fl.Values) > 0 && (fl.Field.IsToken() || fl.Field.IsDate()):
			t.Fatalf("%s: plain values on field %d: %+v", def.typ, fl.Field, fl)
		}
		// The store binds values as text, which PostgreSQL refuses unless
		// it is UTF-8.
		for _, v := range fl.Values {
			if !utf8.ValidString(v) {
				t.Fatalf("%s: value %q is not UTF-8", def.typ, v)
			}
		}
		for _, tok := range fl.Tokens {
			if !utf8.ValidString(tok.System) || !utf8.ValidString(tok.Value) {
				t.Fatalf("%s: token %+q is not UTF-8", def.typ, []string{tok.System, tok.Value})
			}
		}
		for _, d := range fl.Dates {
			switch d.Op {
			case gateway.OpEq, gateway.OpNe, gateway.OpGt, gateway.OpGe, gateway.OpLt, gateway.OpLe:
			default:
				t.Fatalf("%s: date comparator %q", def.typ, d.Op)
			}
		}
	}
	for _, inc := range q.Includes {
		if inc.Field != gateway.FieldReferral && inc.Field != gateway.FieldPatient {
			t.Fatalf("%s: include through field %d", def.typ, inc.Field)
		}
	}
	if ps.cursor != nil && (ps.cursor.query != ps.hash || ps.cursor.desc != q.Descending) {
		t.Fatalf("%s: cursor %+v accepted for search %d", def.typ, *ps.cursor, ps.hash)
	}
}
