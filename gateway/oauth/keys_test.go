package oauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

func mustPEM(t *testing.T, pub any) []byte {
	t.Helper()
	b, err := MarshalPublicKeyPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jwksOf(t *testing.T, keys ...jose.JSONWebKey) []byte {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// failed checks err against the error wanted ("" for none) and reports
// whether there was one.
func failed(t *testing.T, err error, want string) bool {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatal(err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Fatalf("err %v, want %q", err, want)
	}
	return err != nil
}

// TestRegisteredKeys: only RSA ≥ 2048 and EC P-256 public keys are
// registered; each gets the one alg it may sign with and a kid.
func TestRegisteredKeys(t *testing.T) {
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	privPEM, _ := MarshalPrivateKeyPEM(p256)

	t.Run("PEM", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			pem     []byte
			kid     string
			alg     string
			wantErr string
		}{
			{"RSA 2048", mustPEM(t, &rsa2048.PublicKey), "k1", RS256, ""},
			{"P-256 without kid", mustPEM(t, &p256.PublicKey), "", ES256, ""},
			{"RSA 1024", mustPEM(t, &rsa1024.PublicKey), "", "", "RSA key of 1024 bits is too weak"},
			{"P-384", mustPEM(t, &p384.PublicKey), "", "", "P-384 is not accepted"},
			{"a private key", privPEM, "", "", "holds a private key"},
			{"not PEM", []byte("hello"), "", "", "no PEM block"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				k, err := ParsePublicKeyPEM(tc.pem, tc.kid)
				if failed(t, err, tc.wantErr) {
					return
				}
				want := tc.kid
				if want == "" {
					want, _ = Thumbprint(k.Key)
				}
				if k.Algorithm != tc.alg || k.KeyID != want || !k.IsPublic() {
					t.Errorf("got alg %s kid %s public %v", k.Algorithm, k.KeyID, k.IsPublic())
				}
			})
		}
	})

	t.Run("JWKS", func(t *testing.T) {
		pub := func(key any, kid, alg, use string) jose.JSONWebKey {
			return jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg, Use: use}
		}
		for _, tc := range []struct {
			name    string
			set     []byte
			wantErr string
		}{
			{"two good keys", jwksOf(t, pub(&rsa2048.PublicKey, "r", "RS256", "sig"), pub(&p256.PublicKey, "", "", "")), ""},
			{"empty", []byte(`{"keys":[]}`), "holds no keys"},
			{"not JSON", []byte(`{`), "not a JWK Set"},
			{"private key", jwksOf(t, pub(p256, "p", "", "")), "keys[0] holds a private key"},
			{"weak RSA", jwksOf(t, pub(&p256.PublicKey, "", "", ""), pub(&rsa1024.PublicKey, "", "", "")), "keys[1]: an RSA key of 1024 bits"},
			{"alg not the key's", jwksOf(t, pub(&p256.PublicKey, "", "RS256", "")), `alg "RS256" does not suit the key`},
			{"HS256 on an EC key", jwksOf(t, pub(&p256.PublicKey, "", "HS256", "")), `alg "HS256" does not suit the key`},
			{"encryption key", jwksOf(t, pub(&rsa2048.PublicKey, "", "", "enc")), `is for "enc"`},
			{"symmetric key", []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`), "keys[0]: a []uint8 key is not accepted"},
			{"kid twice", jwksOf(t, pub(&p256.PublicKey, "same", "", ""), pub(&rsa2048.PublicKey, "same", "", "")), `kid "same" is given twice`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				keys, err := ParseJWKS(tc.set)
				if failed(t, err, tc.wantErr) {
					return
				}
				if len(keys) != 2 || keys[0].Algorithm != RS256 || keys[1].Algorithm != ES256 || keys[1].KeyID == "" {
					t.Errorf("keys %+v", keys)
				}
			})
		}
	})

	t.Run("signing keys", func(t *testing.T) {
		if _, err := NewKeys([]SigningKey{{ID: "a", Key: rsa1024}}, "a"); err == nil || !strings.Contains(err.Error(), "too weak") {
			t.Errorf("a 1024-bit signing key: %v", err)
		}
		if _, err := NewKeys([]SigningKey{{ID: "a", Key: p256}}, "b"); err == nil || !strings.Contains(err.Error(), `active key "b" is not among`) {
			t.Errorf("an active key not listed: %v", err)
		}
		if _, err := NewKeys([]SigningKey{{ID: "a", Key: p256}, {ID: "a", Key: rsa2048}}, "a"); err == nil || !strings.Contains(err.Error(), "given twice") {
			t.Errorf("a kid twice: %v", err)
		}
		if _, err := ParsePrivateKeyPEM(mustPEM(t, &p256.PublicKey)); err == nil || !strings.Contains(err.Error(), "not a private key") {
			t.Errorf("a public key as the signing key: %v", err)
		}
		p384PEM, _ := MarshalPrivateKeyPEM(p384)
		if _, err := ParsePrivateKeyPEM(p384PEM); err == nil || !strings.Contains(err.Error(), "P-384") {
			t.Errorf("a P-384 signing key: %v", err)
		}
		if k, err := ParsePrivateKeyPEM(privPEM); err != nil || !k.Public().(*ecdsa.PublicKey).Equal(&p256.PublicKey) {
			t.Errorf("a P-256 signing key: %v", err)
		}
		if _, err := NewKeys([]SigningKey{{ID: "a"}}, "a"); err == nil || !strings.Contains(err.Error(), "no key") {
			t.Errorf("a signing key without its key: %v", err)
		}
	})

	// A client's assertion is signed under the kid and algorithm its key
	// is registered with (MarshalJWKS, ParseJWKS): the two share the
	// key's checks, so they cannot disagree.
	t.Run("assertions", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			key  crypto.Signer
			kid  string
		}{
			{"P-256, kid by thumbprint", p256, ""},
			{"RSA 2048, kid given", rsa2048, "client-key-1"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				set, err := MarshalJWKS(tc.key, tc.kid)
				if err != nil {
					t.Fatal(err)
				}
				registered, err := ParseJWKS(set)
				if err != nil || len(registered) != 1 {
					t.Fatalf("ParseJWKS = %v, %v", registered, err)
				}
				a, err := SignAssertion(tc.key, tc.kid, "c1", "https://gw.test"+TokenPath, time.Now(), time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				jws, err := jose.ParseSignedCompact(a, allowedAlgs)
				if err != nil {
					t.Fatal(err)
				}
				h := jws.Signatures[0].Header
				if h.KeyID != registered[0].KeyID || h.Algorithm != registered[0].Algorithm {
					t.Errorf("signed under kid %q, %s; registered as %q, %s", h.KeyID, h.Algorithm, registered[0].KeyID, registered[0].Algorithm)
				}
				if _, err := jws.Verify(registered[0].Key); err != nil {
					t.Errorf("the assertion does not verify with the registered key: %v", err)
				}
			})
		}
		for _, key := range []crypto.Signer{nil, rsa1024, p384} {
			if _, err := SignAssertion(key, "", "c1", "https://gw.test"+TokenPath, time.Now(), time.Minute); err == nil {
				t.Errorf("SignAssertion with a %T key: no error", key)
			}
		}
	})
}

// TestChain: JWT-shaped credentials go to the token verifier, anything
// else to the development keys, and to nothing when there are none.
func TestChain(t *testing.T) {
	static := gateway.NewStaticKeys([]gateway.StaticKey{{Key: "dev-admin", Principal: gateway.Principal{ClientID: "admin", Role: gateway.RoleAdmin}}})
	keys, err := EphemeralKeys()
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := New(Config{BaseURL: "https://gw.test", Clients: NewClients(nil), Keys: keys, JTIs: storetest.Open(t, store.DriverSQLite, nil)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if p, err := Chain(tokens, static).Authenticate(ctx, "dev-admin"); err != nil || p.ClientID != "admin" {
		t.Errorf("a development key through the chain: %v %v", p, err)
	}
	if _, err := Chain(tokens, nil).Authenticate(ctx, "dev-admin"); gateway.ErrorCode(err) != gateway.CodeUnauthorized {
		t.Errorf("a development key without static keys: %v", err)
	}
	if _, err := Chain(tokens, static).Authenticate(ctx, "eyJhbGciOiJub25lIn0.e30."); gateway.ErrorCode(err) != gateway.CodeUnauthorized ||
		!strings.Contains(err.Error(), "RS256 or ES256") {
		t.Errorf("an unsigned JWT through the chain: %v", err)
	}
	for s, want := range map[string]bool{"a.b.c": true, "a.b.": true, "a..c": false, "dev-admin": false, "a.b": false, "a.b.c.d": false, "a+.b.c": false} {
		if LooksLikeJWT(s) != want {
			t.Errorf("LooksLikeJWT(%q) = %v", s, !want)
		}
	}
}
