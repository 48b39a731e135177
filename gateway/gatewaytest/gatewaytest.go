// Package gatewaytest holds, for tests, the development organisations,
// routing and clients of SPEC 4.1 as configs/development.yaml defines them,
// so that the tests of every package share one copy (cmd/spgateway's
// TestDevelopmentConfig holds it to the file). It imports only gateway, so
// any test may use it without an import cycle.
package gatewaytest

import "github.com/spgateway/spgateway/gateway"

// The development API keys.
const (
	KeyA81001 = "dev-practice-a81001"
	KeyA81002 = "dev-practice-a81002"
	KeyPRV01  = "dev-provider-prv01"
	KeyPRV02  = "dev-provider-prv02"
	KeyAdmin  = "dev-admin"
)

// Organizations are the development practices and providers.
func Organizations() []gateway.Organization {
	return []gateway.Organization{
		{Code: "A81001", Name: "Example Road Surgery", Kind: gateway.OrgPractice},
		{Code: "A81002", Name: "Riverside Medical Group", Kind: gateway.OrgPractice},
		{Code: "PRV01", Name: "Tyneside Link Workers", Kind: gateway.OrgProvider},
		{Code: "PRV02", Name: "Riverside Community Connectors", Kind: gateway.OrgProvider},
	}
}

// Routing sends each practice's referrals to its provider: A81001 to
// PRV01, A81002 to PRV02.
func Routing() []gateway.RoutingRule {
	return []gateway.RoutingRule{
		{Practice: "A81001", Provider: "PRV01"},
		{Practice: "A81002", Provider: "PRV02"},
	}
}

// Clients are the development clients by their API keys.
func Clients() []gateway.StaticKey {
	return []gateway.StaticKey{
		{Key: KeyA81001, Principal: gateway.Principal{ClientID: "practice-a81001", Role: gateway.RolePractice, Org: "A81001"}},
		{Key: KeyA81002, Principal: gateway.Principal{ClientID: "practice-a81002", Role: gateway.RolePractice, Org: "A81002"}},
		{Key: KeyPRV01, Principal: gateway.Principal{ClientID: "provider-prv01", Role: gateway.RoleProvider, Org: "PRV01"}},
		{Key: KeyPRV02, Principal: gateway.Principal{ClientID: "provider-prv02", Role: gateway.RoleProvider, Org: "PRV02"}},
		{Key: KeyAdmin, Principal: gateway.Principal{ClientID: "admin", Role: gateway.RoleAdmin}},
	}
}

// Principal is the development client whose API key is key, or the zero
// Principal for a key that is none of theirs.
func Principal(key string) gateway.Principal {
	for _, c := range Clients() {
		if c.Key == key {
			return c.Principal
		}
	}
	return gateway.Principal{}
}
