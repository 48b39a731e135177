package gateway_test

import (
	"testing"

	"github.com/spgateway/spgateway/gateway"
)

func snomed(code string) gateway.Coding {
	return gateway.Coding{System: gateway.SystemSNOMED, Code: code}
}

const (
	copd    = "13645005"
	asthma  = "195967001"
	anxiety = "197480006"
)

func TestRoute(t *testing.T) {
	rules := []gateway.RoutingRule{
		{Practice: "A81001", Reasons: []string{copd, asthma}, Provider: "breathe-easy"},
		{PostcodeDistricts: []string{"NE4", "ne15"}, Provider: "provider-west"},
		{Practice: "A81002", PostcodeDistricts: []string{"NE1"}, Provider: "provider-central"},
		{Practice: "A81002", Provider: "provider-b"},
		{Reasons: []string{anxiety}, Provider: "mind-matters"},
	}
	tests := []struct {
		name  string
		rules []gateway.RoutingRule
		in    gateway.RouteInput
		want  string // "" when no rule matches
	}{
		{name: "first match wins: practice and reason before district", rules: rules,
			in: gateway.RouteInput{Practice: "A81001", Postcode: "NE4 5XX", Reasons: []gateway.Coding{snomed(copd)}}, want: "breathe-easy"},
		{name: "reason: any of the rule's reasons", rules: rules,
			in: gateway.RouteInput{Practice: "A81001", Reasons: []gateway.Coding{snomed(asthma)}}, want: "breathe-easy"},
		{name: "reason: any of the referral's reasons", rules: rules,
			in: gateway.RouteInput{Practice: "A81001", Reasons: []gateway.Coding{snomed("44054006"), snomed(copd)}}, want: "breathe-easy"},
		{name: "reason: practice matches but reason does not, next rule", rules: rules,
			in: gateway.RouteInput{Practice: "A81001", Postcode: "NE4 5XX", Reasons: []gateway.Coding{snomed("44054006")}}, want: "provider-west"},
		{name: "reason: only SNOMED reasons count", rules: rules,
			in: gateway.RouteInput{Practice: "A81001", Postcode: "NE4 5XX", Reasons: []gateway.Coding{{System: "http://example.org/codes", Code: copd}}}, want: "provider-west"},
		{name: "reason: a code without system does not count", rules: rules,
			in: gateway.RouteInput{Practice: "A81001", Postcode: "NE4 5XX", Reasons: []gateway.Coding{{Code: copd}}}, want: "provider-west"},
		{name: "reason: no reasons do not match a reason rule", rules: rules,
			in: gateway.RouteInput{Practice: "A81003", Postcode: "SW1A 1AA"}, want: ""},
		{name: "reason: rule without practice matches any practice", rules: rules,
			in: gateway.RouteInput{Practice: "A81003", Reasons: []gateway.Coding{snomed(anxiety)}}, want: "mind-matters"},
		{name: "district: NE4 from any practice", rules: rules,
			in: gateway.RouteInput{Practice: "A81003", Postcode: "NE4 5XX"}, want: "provider-west"},
		{name: "district: lower-case postcode, lower-case rule", rules: rules,
			in: gateway.RouteInput{Practice: "A81003", Postcode: "ne15 6xx"}, want: "provider-west"},
		{name: "district: postcode without space", rules: rules,
			in: gateway.RouteInput{Practice: "A81003", Postcode: "NE45XX"}, want: "provider-west"},
		{name: "district: NE45 is not NE4", rules: rules,
			in: gateway.RouteInput{Practice: "A81003", Postcode: "NE45 1AA"}, want: ""},
		{name: "district: no postcode does not match a district rule", rules: rules,
			in: gateway.RouteInput{Practice: "A81002"}, want: "provider-b"},
		{name: "district: malformed postcode does not match a district rule", rules: rules,
			in: gateway.RouteInput{Practice: "A81002", Postcode: "NE4"}, want: "provider-b"},
		{name: "all conditions: practice and district both match", rules: rules,
			in: gateway.RouteInput{Practice: "A81002", Postcode: "NE1 4ST"}, want: "provider-central"},
		{name: "all conditions: district matches but practice does not", rules: rules,
			in: gateway.RouteInput{Practice: "A81003", Postcode: "NE1 4ST"}, want: ""},
		{name: "practice: only the practice condition", rules: rules,
			in: gateway.RouteInput{Practice: "A81002", Postcode: "SW1A 1AA"}, want: "provider-b"},
		{name: "practice: codes are compared exactly", rules: rules,
			in: gateway.RouteInput{Practice: "a81002", Postcode: "SW1A 1AA"}, want: ""},
		{name: "no match: unknown practice, other district, no reason", rules: rules,
			in: gateway.RouteInput{Practice: "A81003", Postcode: "SW1A 1AA"}, want: ""},
		{name: "no match: no rules", rules: nil,
			in: gateway.RouteInput{Practice: "A81001", Postcode: "NE4 5XX"}, want: ""},
		{name: "empty conditions: a rule without conditions matches anything",
			rules: []gateway.RoutingRule{{Provider: "catch-all"}},
			in:    gateway.RouteInput{Practice: "A81009", Postcode: "SW1A 1AA", Reasons: []gateway.Coding{snomed(copd)}}, want: "catch-all"},
		{name: "empty conditions: a rule without conditions matches empty input",
			rules: []gateway.RoutingRule{{Provider: "catch-all"}},
			in:    gateway.RouteInput{}, want: "catch-all"},
		{name: "empty conditions: a catch-all after the rules only takes what they leave",
			rules: append(rules[:len(rules):len(rules)], gateway.RoutingRule{Provider: "catch-all"}),
			in:    gateway.RouteInput{Practice: "A81003", Postcode: "SW1A 1AA"}, want: "catch-all"},
		{name: "empty conditions: a catch-all first takes everything",
			rules: append([]gateway.RoutingRule{{Provider: "catch-all"}}, rules...),
			in:    gateway.RouteInput{Practice: "A81001", Reasons: []gateway.Coding{snomed(copd)}}, want: "catch-all"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := gateway.Route(tt.rules, tt.in)
			if ok != (tt.want != "") || got != tt.want {
				t.Errorf("Route = (%q, %v), want (%q, %v)", got, ok, tt.want, tt.want != "")
			}
		})
	}
}

func TestPostcodeDistrict(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"NE4 5XX is NE4", "NE4 5XX", "NE4"},
		{"ne15 6xx is NE15", "ne15 6xx", "NE15"},
		{"SW1A 1AA is SW1A", "SW1A 1AA", "SW1A"},
		{"M1 1AE is M1 (shortest)", "M1 1AE", "M1"},
		{"EC1A 1BB is EC1A", "EC1A 1BB", "EC1A"},
		{"no space: NE45XX is NE4", "NE45XX", "NE4"},
		{"extra spaces are ignored", "  ne4   5xx ", "NE4"},
		{"tab between the parts", "NE4\t5XX", "NE4"},
		{"too short: empty", "", ""},
		{"too short: only spaces", "   ", ""},
		{"too short: district alone", "NE4", ""},
		{"too short: 4 characters", "M1 1A", ""},
		{"too long: 8 characters", "NE15 6XXX", ""},
		{"too long: a sentence", "Newcastle upon Tyne", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := gateway.PostcodeDistrict(tt.in); got != tt.want {
				t.Errorf("PostcodeDistrict(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
