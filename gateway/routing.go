package gateway

import (
	"strings"
)

// OrgKind says whether an organisation refers or receives.
type OrgKind string

// The kinds of organisation.
const (
	OrgPractice OrgKind = "practice"
	OrgProvider OrgKind = "provider"
)

// Organization is a practice or provider from configuration. Code is its ODS
// code or local id, and its FHIR id.
type Organization struct {
	Code string
	Name string
	Kind OrgKind
}

// Directory holds the configured organisations by code.
type Directory map[string]Organization

// NewDirectory indexes orgs by code.
func NewDirectory(orgs []Organization) Directory {
	d := make(Directory, len(orgs))
	for _, o := range orgs {
		d[o.Code] = o
	}
	return d
}

// Is reports whether code is a configured organisation of kind k.
func (d Directory) Is(code string, k OrgKind) bool {
	o, ok := d[code]
	return ok && o.Kind == k
}

// RoutingRule sends referrals to a provider. Empty conditions match anything;
// a rule matches when all of its conditions do; the first matching rule wins.
type RoutingRule struct {
	Practice string
	// PostcodeDistricts are outward codes such as "NE4"; they match the
	// district of the patient's home postcode.
	PostcodeDistricts []string
	// Reasons are SNOMED CT codes; they match any reason code of the
	// referral or of the Conditions it gives as reasons.
	Reasons  []string
	Provider string
}

// RouteInput is what routing looks at.
type RouteInput struct {
	Practice string
	Postcode string
	Reasons  []Coding
}

// Route returns the provider of the first rule that matches in, and false
// when none does.
func Route(rules []RoutingRule, in RouteInput) (string, bool) {
	district := PostcodeDistrict(in.Postcode)
	for _, r := range rules {
		if r.Practice != "" && r.Practice != in.Practice {
			continue
		}
		if len(r.PostcodeDistricts) > 0 && !containsFold(r.PostcodeDistricts, district) {
			continue
		}
		if len(r.Reasons) > 0 && !anyReason(r.Reasons, in.Reasons) {
			continue
		}
		return r.Provider, true
	}
	return "", false
}

// PostcodeDistrict returns the outward code of a UK postcode ("NE4 5XX" →
// "NE4"), or "" when s is too short to be one. The inward code is always the
// last three characters.
func PostcodeDistrict(s string) string {
	s = strings.ToUpper(strings.Join(strings.Fields(s), ""))
	if len(s) < 5 || len(s) > 7 {
		return ""
	}
	return s[:len(s)-3]
}

func containsFold(list []string, s string) bool {
	if s == "" {
		return false
	}
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

func anyReason(codes []string, reasons []Coding) bool {
	for _, r := range reasons {
		if r.System != SystemSNOMED {
			continue
		}
		for _, c := range codes {
			if c == r.Code {
				return true
			}
		}
	}
	return false
}
