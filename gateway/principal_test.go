package gateway_test

import (
	"context"
	"testing"

	"github.com/spgateway/spgateway/gateway"
)

func TestStaticKeysAuthenticate(t *testing.T) {
	practiceClient := gateway.Principal{ClientID: "gp-a81001", Role: gateway.RolePractice, Org: "A81001"}
	providerClient := gateway.Principal{ClientID: "provider-a", Role: gateway.RoleProvider, Org: "provider-a"}
	adminClient := gateway.Principal{ClientID: "ops", Role: gateway.RoleAdmin}
	keys := gateway.NewStaticKeys([]gateway.StaticKey{
		{Key: "practice-key-0001", Principal: practiceClient},
		{Key: "provider-key-0001", Principal: providerClient},
		{Key: "admin-key-0001", Principal: adminClient},
	})

	tests := []struct {
		name string
		keys *gateway.StaticKeys
		key  string
		want gateway.Principal // zero when the key is refused
	}{
		{name: "accepted: practice key", keys: keys, key: "practice-key-0001", want: practiceClient},
		{name: "accepted: provider key", keys: keys, key: "provider-key-0001", want: providerClient},
		{name: "accepted: admin key", keys: keys, key: "admin-key-0001", want: adminClient},
		{name: "refused: wrong key", keys: keys, key: "practice-key-0002"},
		{name: "refused: empty key", keys: keys, key: ""},
		{name: "refused: prefix of a key", keys: keys, key: "practice-key-000"},
		{name: "refused: key with trailing space", keys: keys, key: "practice-key-0001 "},
		{name: "refused: key in other case", keys: keys, key: "PRACTICE-KEY-0001"},
		{name: "refused: no keys configured", keys: gateway.NewStaticKeys(nil), key: "practice-key-0001"},
		{name: "refused: empty key even when an empty key is configured",
			keys: gateway.NewStaticKeys([]gateway.StaticKey{{Key: "", Principal: practiceClient}}), key: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.keys.Authenticate(context.Background(), tt.key)
			if tt.want == (gateway.Principal{}) {
				if code := gateway.ErrorCode(err); code != gateway.CodeUnauthorized {
					t.Fatalf("Authenticate(%q) = %+v, %v; want code %q", tt.key, got, err, gateway.CodeUnauthorized)
				}
				if got != (gateway.Principal{}) {
					t.Errorf("Authenticate(%q) returned principal %+v with its error", tt.key, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Authenticate(%q): %v", tt.key, err)
			}
			if got != tt.want {
				t.Errorf("Authenticate(%q) = %+v, want %+v", tt.key, got, tt.want)
			}
		})
	}
}

func TestAllowed(t *testing.T) {
	const (
		practice = gateway.RolePractice
		provider = gateway.RoleProvider
		admin    = gateway.RoleAdmin
	)
	tests := []struct {
		name   string
		role   gateway.Role
		action gateway.Action
		typ    string
		want   bool
	}{
		{"allowed: practice creates ServiceRequest", practice, gateway.ActionCreate, gateway.TypeServiceRequest, true},
		{"allowed: practice reads ServiceRequest", practice, gateway.ActionRead, gateway.TypeServiceRequest, true},
		{"allowed: practice searches Task", practice, gateway.ActionSearch, gateway.TypeTask, true},
		{"allowed: practice reads Patient", practice, gateway.ActionRead, gateway.TypePatient, true},
		{"allowed: practice reads Condition", practice, gateway.ActionRead, gateway.TypeCondition, true},
		{"allowed: practice reads Consent", practice, gateway.ActionRead, gateway.TypeConsent, true},
		{"allowed: practice searches Organization", practice, gateway.ActionSearch, gateway.TypeOrganization, true},
		{"denied: practice creates Task", practice, gateway.ActionCreate, gateway.TypeTask, false},
		{"denied: practice creates Patient directly", practice, gateway.ActionCreate, gateway.TypePatient, false},
		{"denied: practice creates Organization", practice, gateway.ActionCreate, gateway.TypeOrganization, false},

		{"allowed: provider reads ServiceRequest", provider, gateway.ActionRead, gateway.TypeServiceRequest, true},
		{"allowed: provider searches Task", provider, gateway.ActionSearch, gateway.TypeTask, true},
		{"allowed: provider reads Patient", provider, gateway.ActionRead, gateway.TypePatient, true},
		{"allowed: provider reads Organization", provider, gateway.ActionRead, gateway.TypeOrganization, true},
		{"denied: provider creates ServiceRequest", provider, gateway.ActionCreate, gateway.TypeServiceRequest, false},
		{"denied: provider updates ServiceRequest", provider, gateway.ActionUpdate, gateway.TypeServiceRequest, false},
		{"denied: provider creates Patient", provider, gateway.ActionCreate, gateway.TypePatient, false},

		{"allowed: admin reads Organization", admin, gateway.ActionRead, gateway.TypeOrganization, true},
		{"allowed: admin searches Organization", admin, gateway.ActionSearch, gateway.TypeOrganization, true},
		{"denied: admin reads Patient", admin, gateway.ActionRead, gateway.TypePatient, false},
		{"denied: admin searches Patient", admin, gateway.ActionSearch, gateway.TypePatient, false},
		{"denied: admin reads ServiceRequest", admin, gateway.ActionRead, gateway.TypeServiceRequest, false},
		{"denied: admin searches Task", admin, gateway.ActionSearch, gateway.TypeTask, false},
		{"denied: admin reads Condition", admin, gateway.ActionRead, gateway.TypeCondition, false},
		{"denied: admin reads Consent", admin, gateway.ActionRead, gateway.TypeConsent, false},
		{"denied: admin creates ServiceRequest", admin, gateway.ActionCreate, gateway.TypeServiceRequest, false},

		{"denied: unknown role", gateway.Role("auditor"), gateway.ActionRead, gateway.TypeOrganization, false},
		{"denied: empty role", "", gateway.ActionRead, gateway.TypeOrganization, false},
		{"denied: unknown type", practice, gateway.ActionRead, "Practitioner", false},
		{"denied: unknown action", practice, gateway.Action("delete"), gateway.TypeServiceRequest, false},
		{"denied: Bundle is not a stored type", practice, gateway.ActionRead, gateway.TypeBundle, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := gateway.Allowed(tt.role, tt.action, tt.typ); got != tt.want {
				t.Errorf("Allowed(%q, %q, %q) = %v, want %v", tt.role, tt.action, tt.typ, got, tt.want)
			}
		})
	}
}
