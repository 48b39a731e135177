package gateway

import (
	"errors"
	"regexp"
	"strings"
	"time"
)

// Period is the half-open interval [Start, End) that a FHIR date, dateTime or
// instant stands for at its precision: "2026-11" is all of November.
type Period struct {
	Start time.Time
	End   time.Time
}

var errDateFormat = errors.New("not a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)")
var errDateTimeFormat = errors.New("not a FHIR dateTime (a date, or YYYY-MM-DDThh:mm:ss[.fff] with Z or an offset)")

// timePart is the time of a FHIR dateTime or instant, from the T on (the FHIR
// R4 regex, less the leap second, which time.Parse does not take). time.Parse
// alone is not enough: when its RFC 3339 fast path fails it falls back to a
// lenient parser that takes a one-digit hour, a comma before the fraction and
// offsets up to 24:59.
var timePart = regexp.MustCompile(`^T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))$`)

// ParseDate parses a FHIR date (no time part). Dates have no zone; they are
// read as UTC days.
func ParseDate(s string) (Period, error) {
	var layout string
	switch len(s) {
	case 4:
		layout = "2006"
	case 7:
		layout = "2006-01"
	case 10:
		layout = "2006-01-02"
	default:
		return Period{}, errDateFormat
	}
	t, err := time.Parse(layout, s)
	if err != nil || t.Year() < 1 {
		return Period{}, errDateFormat
	}
	switch len(s) {
	case 4:
		return Period{t, t.AddDate(1, 0, 0)}, nil
	case 7:
		return Period{t, t.AddDate(0, 1, 0)}, nil
	default:
		return Period{t, t.AddDate(0, 0, 1)}, nil
	}
}

// ParseDateTime parses a FHIR dateTime or instant. A time needs seconds and a
// zone (FHIR R4 requires the zone whenever hours are given); fractional
// seconds set the precision.
func ParseDateTime(s string) (Period, error) {
	i := strings.IndexByte(s, 'T')
	if i < 0 {
		p, err := ParseDate(s)
		if err != nil {
			return Period{}, errDateTimeFormat
		}
		return p, nil
	}
	if i != 10 || !timePart.MatchString(s[i:]) {
		return Period{}, errDateTimeFormat
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() < 1 {
		return Period{}, errDateTimeFormat
	}
	// Precision: whole seconds, or as many fractional digits as given.
	unit := time.Second
	if dot := strings.IndexByte(s, '.'); dot > 0 {
		digits := 0
		for _, c := range s[dot+1:] {
			if c < '0' || c > '9' {
				break
			}
			digits++
		}
		if digits == 0 || digits > 9 {
			return Period{}, errDateTimeFormat
		}
		for range digits {
			unit /= 10
		}
	}
	t = t.UTC()
	return Period{t, t.Add(unit)}, nil
}

// FormatInstant formats t the way the gateway writes meta.lastUpdated and
// other instants: UTC with microseconds, which is the store's resolution.
func FormatInstant(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000Z07:00")
}
