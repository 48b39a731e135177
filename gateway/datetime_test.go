package gateway_test

import (
	"strings"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway"
)

// utc is a shorthand for instants in the tables below.
func utc(year int, month time.Month, day, hour, min, sec, nsec int) time.Time {
	return time.Date(year, month, day, hour, min, sec, nsec, time.UTC)
}

// assertPeriod checks both ends and that both are in UTC.
func assertPeriod(t *testing.T, got gateway.Period, wantStart, wantEnd time.Time) {
	t.Helper()
	if !got.Start.Equal(wantStart) || !got.End.Equal(wantEnd) {
		t.Errorf("got [%s, %s), want [%s, %s)",
			got.Start.Format(time.RFC3339Nano), got.End.Format(time.RFC3339Nano),
			wantStart.Format(time.RFC3339Nano), wantEnd.Format(time.RFC3339Nano))
	}
	if got.Start.Location() != time.UTC || got.End.Location() != time.UTC {
		t.Errorf("got zones %v and %v, want UTC", got.Start.Location(), got.End.Location())
	}
}

// dateCases are valid FHIR dates, which ParseDate and ParseDateTime both take.
var dateCases = []struct {
	name       string
	in         string
	start, end time.Time
}{
	{"year: 1961 is all of 1961", "1961", utc(1961, 1, 1, 0, 0, 0, 0), utc(1962, 1, 1, 0, 0, 0, 0)},
	{"year: 0001 is the first year", "0001", utc(1, 1, 1, 0, 0, 0, 0), utc(2, 1, 1, 0, 0, 0, 0)},
	{"month: 1961-04 is all of April", "1961-04", utc(1961, 4, 1, 0, 0, 0, 0), utc(1961, 5, 1, 0, 0, 0, 0)},
	{"month: 2026-12 ends with the year", "2026-12", utc(2026, 12, 1, 0, 0, 0, 0), utc(2027, 1, 1, 0, 0, 0, 0)},
	{"month: 2024-02 has 29 days", "2024-02", utc(2024, 2, 1, 0, 0, 0, 0), utc(2024, 3, 1, 0, 0, 0, 0)},
	{"day: 1961-04-17 is one UTC day", "1961-04-17", utc(1961, 4, 17, 0, 0, 0, 0), utc(1961, 4, 18, 0, 0, 0, 0)},
	{"day: 2024-02-29 in a leap year", "2024-02-29", utc(2024, 2, 29, 0, 0, 0, 0), utc(2024, 3, 1, 0, 0, 0, 0)},
	{"day: 2026-12-31 ends with the year", "2026-12-31", utc(2026, 12, 31, 0, 0, 0, 0), utc(2027, 1, 1, 0, 0, 0, 0)},
}

// badDates are not FHIR dates, and not FHIR dateTimes either.
var badDates = []struct {
	name string
	in   string
}{
	{"rejected: empty", ""},
	{"rejected: 17/04/1961 (UK order)", "17/04/1961"},
	{"rejected: 04/17/1961", "04/17/1961"},
	{"rejected: 2026-02-30 (no such day)", "2026-02-30"},
	{"rejected: 2025-02-29 (not a leap year)", "2025-02-29"},
	{"rejected: 2026-13-01 (no such month)", "2026-13-01"},
	{"rejected: 2026-00-10 (month 0)", "2026-00-10"},
	{"rejected: 2026-01-00 (day 0)", "2026-01-00"},
	{"rejected: 2026-01-32", "2026-01-32"},
	{"rejected: 0000 (no year 0)", "0000"},
	{"rejected: 1961-4-17 (one-digit month)", "1961-4-17"},
	{"rejected: 1961-04-7 (one-digit day)", "1961-04-7"},
	{"rejected: 61 (two-digit year)", "61"},
	{"rejected: 19610417 (no dashes)", "19610417"},
	{"rejected: 1961-04-17 with a leading space", " 1961-04-17"},
	{"rejected: 1961-04-17 with a trailing space", "1961-04-17 "},
	{"rejected: +961 (signed year)", "+961"},
	{"rejected: -961 (signed year)", "-961"},
	{"rejected: 1961/04/17", "1961/04/17"},
	{"rejected: word", "yesterday"},
}

func TestParseDate(t *testing.T) {
	for _, tt := range dateCases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := gateway.ParseDate(tt.in)
			if err != nil {
				t.Fatalf("ParseDate(%q): %v", tt.in, err)
			}
			assertPeriod(t, got, tt.start, tt.end)
		})
	}
	rejected := append(badDates[:len(badDates):len(badDates)], []struct {
		name string
		in   string
	}{
		{"rejected: a dateTime is not a date", "1961-04-17T10:00:00Z"},
		{"rejected: a date with a zone", "1961-04-17Z"},
	}...)
	for _, tt := range rejected {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := gateway.ParseDate(tt.in); err == nil {
				t.Errorf("ParseDate(%q) = %+v, want an error", tt.in, got)
			}
		})
	}
}

func TestParseDateTime(t *testing.T) {
	for _, tt := range dateCases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := gateway.ParseDateTime(tt.in)
			if err != nil {
				t.Fatalf("ParseDateTime(%q): %v", tt.in, err)
			}
			assertPeriod(t, got, tt.start, tt.end)
		})
	}

	at := utc(2026, 3, 14, 9, 26, 53, 0)
	tests := []struct {
		name  string
		in    string
		start time.Time
		width time.Duration
	}{
		{"seconds: Z", "2026-03-14T09:26:53Z", at, time.Second},
		{"seconds: midnight", "2026-03-14T00:00:00Z", utc(2026, 3, 14, 0, 0, 0, 0), time.Second},
		{"seconds: last second of the year", "2026-12-31T23:59:59Z", utc(2026, 12, 31, 23, 59, 59, 0), time.Second},
		{"fraction: 1 digit", "2026-03-14T09:26:53.1Z", at.Add(100 * time.Millisecond), 100 * time.Millisecond},
		{"fraction: 2 digits", "2026-03-14T09:26:53.12Z", at.Add(120 * time.Millisecond), 10 * time.Millisecond},
		{"fraction: 3 digits", "2026-03-14T09:26:53.123Z", at.Add(123 * time.Millisecond), time.Millisecond},
		{"fraction: 4 digits", "2026-03-14T09:26:53.1234Z", at.Add(123400 * time.Microsecond), 100 * time.Microsecond},
		{"fraction: 5 digits", "2026-03-14T09:26:53.12345Z", at.Add(123450 * time.Microsecond), 10 * time.Microsecond},
		{"fraction: 6 digits", "2026-03-14T09:26:53.123456Z", at.Add(123456 * time.Microsecond), time.Microsecond},
		{"fraction: 7 digits", "2026-03-14T09:26:53.1234567Z", at.Add(123456700 * time.Nanosecond), 100 * time.Nanosecond},
		{"fraction: 8 digits", "2026-03-14T09:26:53.12345678Z", at.Add(123456780 * time.Nanosecond), 10 * time.Nanosecond},
		{"fraction: 9 digits", "2026-03-14T09:26:53.123456789Z", at.Add(123456789 * time.Nanosecond), time.Nanosecond},
		{"fraction: .0 still sets the precision", "2026-03-14T09:26:53.0Z", at, 100 * time.Millisecond},
		{"fraction: trailing zeros set the precision", "2026-03-14T09:26:53.500Z", at.Add(500 * time.Millisecond), time.Millisecond},
		{"fraction: .999999999 ends on the next second", "2026-03-14T09:26:53.999999999Z", at.Add(999999999 * time.Nanosecond), time.Nanosecond},
		{"zone: +01:00 to UTC", "2026-03-14T10:26:53+01:00", at, time.Second},
		{"zone: -05:30 to UTC", "2026-03-14T03:56:53-05:30", at, time.Second},
		{"zone: +00:00", "2026-03-14T09:26:53+00:00", at, time.Second},
		{"zone: -00:00", "2026-03-14T09:26:53-00:00", at, time.Second},
		{"zone: +14:00 is the furthest east", "2026-03-14T23:26:53+14:00", at, time.Second},
		{"zone: -12:00 crosses to the next day", "2026-03-13T21:26:53-12:00", at, time.Second},
		{"zone: +01:00 at new year is still last year in UTC", "2026-01-01T00:30:00+01:00", utc(2025, 12, 31, 23, 30, 0, 0), time.Second},
		{"zone: fraction and offset", "2026-03-14T10:26:53.25+01:00", at.Add(250 * time.Millisecond), 10 * time.Millisecond},
		{"zone: BST summer time", "2026-07-01T13:00:00+01:00", utc(2026, 7, 1, 12, 0, 0, 0), time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := gateway.ParseDateTime(tt.in)
			if err != nil {
				t.Fatalf("ParseDateTime(%q): %v", tt.in, err)
			}
			assertPeriod(t, got, tt.start, tt.start.Add(tt.width))
		})
	}

	rejected := append(badDates[:len(badDates):len(badDates)], []struct {
		name string
		in   string
	}{
		{"rejected: time without zone", "2026-03-14T09:26:53"},
		{"rejected: time with fraction without zone", "2026-03-14T09:26:53.123"},
		{"rejected: minutes without seconds, Z", "2026-03-14T09:26Z"},
		{"rejected: minutes without seconds, offset", "2026-03-14T09:26+01:00"},
		{"rejected: minutes without seconds, no zone", "2026-03-14T09:26"},
		{"rejected: hours only", "2026-03-14T09Z"},
		{"rejected: T and nothing", "2026-03-14T"},
		{"rejected: 10 fractional digits", "2026-03-14T09:26:53.1234567890Z"},
		{"rejected: 12 fractional digits", "2026-03-14T09:26:53.123456789012Z"},
		{"rejected: dot without digits", "2026-03-14T09:26:53.Z"},
		{"rejected: comma before the fraction", "2026-03-14T09:26:53,5Z"},
		{"rejected: one-digit hour", "2026-03-14T9:26:53Z"},
		{"rejected: one-digit hour with offset", "2026-03-14T9:26:53+01:00"},
		{"rejected: one-digit minute", "2026-03-14T09:6:53Z"},
		{"rejected: one-digit second", "2026-03-14T09:26:5Z"},
		{"rejected: hour 24", "2026-03-14T24:00:00Z"},
		{"rejected: minute 60", "2026-03-14T09:60:00Z"},
		{"rejected: space instead of T", "2026-03-14 09:26:53Z"},
		{"rejected: lower-case t", "2026-03-14t09:26:53Z"},
		{"rejected: lower-case z", "2026-03-14T09:26:53z"},
		{"rejected: offset without colon", "2026-03-14T09:26:53+0100"},
		{"rejected: offset hours only", "2026-03-14T09:26:53+01"},
		{"rejected: offset with seconds", "2026-03-14T09:26:53+01:00:00"},
		{"rejected: offset one-digit hour", "2026-03-14T09:26:53+1:00"},
		{"rejected: offset minute 60", "2026-03-14T09:26:53+01:60"},
		{"rejected: offset beyond +14:00", "2026-03-14T09:26:53+14:30"},
		{"rejected: offset +15:00", "2026-03-14T09:26:53+15:00"},
		{"rejected: offset -15:00", "2026-03-14T09:26:53-15:00"},
		{"rejected: offset +24:00", "2026-03-14T09:26:53+24:00"},
		{"rejected: both Z and offset", "2026-03-14T09:26:53Z+01:00"},
		{"rejected: zone name", "2026-03-14T09:26:53 GMT"},
		{"rejected: 2026-02-30 with a time", "2026-02-30T09:26:53Z"},
		{"rejected: 2026-13-01 with a time", "2026-13-01T09:26:53Z"},
		{"rejected: year 0000 with a time", "0000-01-01T00:00:00Z"},
		{"rejected: one-digit month with a time", "2026-3-14T09:26:53Z"},
		{"rejected: month with a time", "2026-03T09:26:53Z"},
		{"rejected: 17/04/1961 with a time", "17/04/1961T09:26:53Z"},
		{"rejected: trailing space", "2026-03-14T09:26:53Z "},
	}...)
	for _, tt := range rejected {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := gateway.ParseDateTime(tt.in); err == nil {
				t.Errorf("ParseDateTime(%q) = [%s, %s), want an error", tt.in,
					got.Start.Format(time.RFC3339Nano), got.End.Format(time.RFC3339Nano))
			}
		})
	}
}

func TestFormatInstant(t *testing.T) {
	tests := []struct {
		name string
		in   time.Time
		want string
	}{
		{"UTC with microseconds", utc(2026, 3, 14, 9, 26, 53, 123456000), "2026-03-14T09:26:53.123456Z"},
		{"whole second keeps six zeros", utc(2026, 3, 14, 9, 26, 53, 0), "2026-03-14T09:26:53.000000Z"},
		{"nanoseconds are truncated, not rounded", utc(2026, 3, 14, 9, 26, 53, 123456999), "2026-03-14T09:26:53.123456Z"},
		{"offset converted to UTC", time.Date(2026, 3, 14, 10, 26, 53, 5000, time.FixedZone("BST", 3600)), "2026-03-14T09:26:53.000005Z"},
		{"offset across midnight", time.Date(2026, 1, 1, 0, 30, 0, 0, time.FixedZone("", 3600)), "2025-12-31T23:30:00.000000Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := gateway.FormatInstant(tt.in); got != tt.want {
				t.Errorf("FormatInstant = %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("round trip: ParseDateTime reads it back at microsecond precision", func(t *testing.T) {
		in := time.Date(2026, 3, 14, 10, 26, 53, 123456789, time.FixedZone("", 3600))
		p, err := gateway.ParseDateTime(gateway.FormatInstant(in))
		if err != nil {
			t.Fatal(err)
		}
		want := in.UTC().Truncate(time.Microsecond)
		assertPeriod(t, p, want, want.Add(time.Microsecond))
	})
}

func FuzzParseDateTime(f *testing.F) {
	for _, s := range []string{
		"", "2026", "2026-03", "2026-03-14", "2026-03-14T09:26:53Z",
		"2026-03-14T09:26:53.123456789Z", "2026-03-14T09:26:53.1234567890Z",
		"2026-03-14T10:26:53+01:00", "2026-03-14T09:26:53-05:30", "2026-03-14T09:26:53+14:00",
		"2026-03-14T09:26:53", "2026-03-14T09:26Z", "2026-03-14T9:26:53Z", "2026-03-14T09:26:53,5Z",
		"2026-02-30", "2026-13-01", "17/04/1961", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59.999999999-14:00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := gateway.ParseDateTime(s)
		if err != nil {
			return
		}
		if !p.Start.Before(p.End) {
			t.Errorf("ParseDateTime(%q) = [%v, %v): Start is not before End", s, p.Start, p.End)
		}
		if p.Start.Location() != time.UTC || p.End.Location() != time.UTC {
			t.Errorf("ParseDateTime(%q) = [%v, %v): not UTC", s, p.Start, p.End)
		}
		if strings.ContainsAny(s, " ,") {
			t.Errorf("ParseDateTime(%q) accepted a space or comma", s)
		}
	})
}
