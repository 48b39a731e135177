package oauth

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// FuzzVerifyAssertion feeds the assertion parser and verifier arbitrary
// assertions and client_ids. It must never panic, must refuse with
// invalid_client, and must accept only an assertion whose claims pass every
// rule, for the one registered client.
func FuzzVerifyAssertion(f *testing.F) {
	key, err := GenerateKey(ES256)
	if err != nil {
		f.Fatal(err)
	}
	jwk, err := publicJWK(key.Public(), "")
	if err != nil {
		f.Fatal(err)
	}
	const base, client = "https://gw.test", "practice-a81001"
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	keys, err := EphemeralKeys()
	if err != nil {
		f.Fatal(err)
	}
	s, err := New(Config{BaseURL: base, Keys: keys, JTIs: storetest.Open(f, store.DriverSQLite, nil), Now: func() time.Time { return now },
		Clients: NewClients([]Client{{Principal: gateway.Principal{ClientID: client, Role: gateway.RolePractice, Org: "A81001"}, Keys: []jose.JSONWebKey{jwk}}})})
	if err != nil {
		f.Fatal(err)
	}
	valid, err := SignAssertion(key, "", client, base+TokenPath, now, time.Minute)
	if err != nil {
		f.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	parts := strings.Split(valid, ".")
	f.Add(valid, "")
	f.Add(valid, client)
	f.Add(valid, "someone-else")
	f.Add(b64([]byte(`{"alg":"none"}`))+"."+parts[1]+".", "")
	f.Add(b64([]byte(`{"alg":"HS256","typ":"JWT"}`))+"."+parts[1]+"."+parts[2], "")
	f.Add(b64([]byte(`{"alg":"ES256","kid":"x"}`))+"."+parts[1]+"."+parts[2], "")
	f.Add(parts[0]+"."+b64([]byte(`{"iss":"practice-a81001","exp":"soon"}`))+"."+parts[2], "")
	f.Add(parts[0]+"."+b64([]byte(`[]`))+"."+parts[2], "")
	f.Add("a.b.c", "")
	f.Add("..", "")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, raw, clientID string) {
		a, err := s.verifyAssertion(raw, clientID, now)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code != ErrInvalidClient {
				t.Fatalf("refused with %v, want invalid_client", err)
			}
			if len(raw) > 24 && strings.Contains(e.Description, raw[len(raw)/2:]) {
				t.Fatalf("the description echoes the assertion: %s", e.Description)
			}
			return
		}
		if a.client.Principal.ClientID != client || a.jti == "" || (clientID != "" && clientID != client) {
			t.Fatalf("accepted %+v for client_id %q", a, clientID)
		}
		if a.expires.Before(now.Add(-Leeway)) || a.expires.After(now.Add(MaxAssertionLifetime+Leeway)) {
			t.Fatalf("accepted an assertion expiring at %s", a.expires)
		}
	})
}
