package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/spgateway/spgateway/gateway/oauth"
)

// signingKeyPEM is a gateway signing key for the production example.
var signingKeyPEM = sync.OnceValue(func() string {
	k, err := oauth.GenerateKey(oauth.ES256)
	if err != nil {
		panic(err)
	}
	b, err := oauth.MarshalPrivateKeyPEM(k)
	if err != nil {
		panic(err)
	}
	return string(b)
})

// TestProductionExampleOAuth: the production example registers its clients'
// public keys and reads its signing key from the environment.
func TestProductionExampleOAuth(t *testing.T) {
	c, err := loadConfig(productionFile, envMap(productionSecrets(nil)))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.oauth.clients) != 3 {
		t.Fatalf("%d clients", len(c.oauth.clients))
	}
	for _, cl := range c.oauth.clients {
		if len(cl.Keys) != 1 {
			t.Errorf("client %s has %d keys, want 1", cl.Principal.ClientID, len(cl.Keys))
		}
	}
	keys, ephemeral, err := c.tokenKeys()
	if err != nil || ephemeral || keys.Active() != "gw-2026-03" {
		t.Errorf("tokenKeys: %v %v %v", keys, ephemeral, err)
	}
}

// writeKey writes a PEM file into dir and returns its name.
func writeKey(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

// TestOAuthConfigErrors: each rule of the oauth and client key settings is
// refused with a message naming the setting (and the client).
func TestOAuthConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ec, _ := oauth.GenerateKey(oauth.ES256)
	ecPriv, _ := oauth.MarshalPrivateKeyPEM(ec)
	ecPub, _ := oauth.MarshalPublicKeyPEM(ec.Public())
	jwks, _ := oauth.MarshalJWKS(ec, "k1")
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weak, _ := oauth.MarshalPublicKeyPEM(&rsa1024.PublicKey)
	writeKey(t, dir, "gw.pem", ecPriv)
	writeKey(t, dir, "client.pem", ecPub)
	writeKey(t, dir, "client.jwks.json", jwks)
	writeKey(t, dir, "weak.pem", weak)
	writeKey(t, dir, "private.jwks.json", []byte(`{"keys":[`+jwkPrivate(t, ec)+`]}`))

	const head = "environment: %s\npractices: [{code: A81001, name: P}]\n"
	for _, tc := range []struct {
		name, env, body string
		vars            map[string]string
		want            []string
	}{
		{"production without signing keys", "production", `
clients: [{id: c1, role: practice, organization: A81001, jwks_file: client.jwks.json}]`, nil,
			[]string{"oauth.signing_keys: is required in production"}},
		{"a client without a public key in production", "production", `
oauth: {signing_keys: [{id: gw, private_key_file: gw.pem, active: true}]}
clients: [{id: c1, role: practice, organization: A81001}]`, nil,
			[]string{`clients[0].jwks_file: client "c1": a client needs a public key in production: give jwks_file or public_key_file`}},
		{"a development key in production", "production", `
oauth: {signing_keys: [{id: gw, private_key_file: gw.pem, active: true}]}
clients: [{id: c1, role: practice, organization: A81001, api_key: dev-key-123, public_key_file: client.pem}]`, nil,
			[]string{"clients[0].api_key: development keys are refused in production"}},
		{"a weak RSA key", "development", `
clients: [{id: c1, role: practice, organization: A81001, public_key_file: weak.pem}]`, nil,
			[]string{`clients[0].public_key_file: client "c1": an RSA key of 1024 bits is too weak: at least 2048 are required`}},
		{"a private key registered as a client's", "development", `
clients: [{id: c1, role: practice, organization: A81001, jwks_file: private.jwks.json}]`, nil,
			[]string{`clients[0].jwks_file: client "c1": keys[0] holds a private key`}},
		{"a missing key file", "development", `
clients: [{id: c1, role: practice, organization: A81001, jwks_file: nowhere.json}]`, nil,
			[]string{`clients[0].jwks_file: client "c1": open `}},
		{"kid without public_key_file", "development", `
clients: [{id: c1, role: practice, organization: A81001, jwks_file: client.jwks.json, kid: k9}]`, nil,
			[]string{`clients[0].kid: client "c1": names the key of public_key_file`}},
		{"an API key shaped like a JWT", "development", `
clients: [{id: c1, role: practice, organization: A81001, api_key: aaaa.bbbb.cccc}]`, nil,
			[]string{`clients[0].api_key: client "c1": has the shape of a JWT`}},
		{"no active signing key", "development", `
oauth: {signing_keys: [{id: gw, private_key_file: gw.pem}]}`, nil,
			[]string{"oauth.signing_keys: one key must be marked active"}},
		{"two active signing keys", "development", `
oauth: {signing_keys: [{id: a, private_key_file: gw.pem, active: true}, {id: b, private_key_file: gw.pem, active: true}]}`, nil,
			[]string{`oauth.signing_keys[1].active: only one key may be active, and key "a" already is`}},
		{"two signing keys with one id", "development", `
oauth: {signing_keys: [{id: gw, private_key_file: gw.pem, active: true}, {id: gw, private_key_env: SPGATEWAY_GW_KEY}]}`, map[string]string{"SPGATEWAY_GW_KEY": string(ecPriv)},
			[]string{`oauth.signing_keys[1].id: "gw" is already the id of oauth.signing_keys[0]`}},
		{"a signing key from an unset variable", "development", `
oauth: {signing_keys: [{id: a, private_key_env: SPGATEWAY_GW_KEY, active: true}]}`, nil,
			[]string{"oauth.signing_keys[0].private_key_env: the environment variable SPGATEWAY_GW_KEY is not set"}},
		{"a public key as the signing key", "development", `
oauth: {signing_keys: [{id: a, private_key_env: SPGATEWAY_GW_KEY, active: true}]}`, map[string]string{"SPGATEWAY_GW_KEY": string(ecPub)},
			[]string{`oauth.signing_keys[0].private_key_env: key "a": a PEM "PUBLIC KEY" block is not a private key`}},
		{"a file and a variable", "development", `
oauth: {signing_keys: [{id: a, private_key_file: gw.pem, private_key_env: SPGATEWAY_GW_KEY, active: true}]}`, nil,
			[]string{"oauth.signing_keys[0]: give private_key_file or private_key_env, one of them"}},
		{"a token lifetime over an hour", "development", `
oauth: {token_lifetime: 2h}`, nil,
			[]string{"oauth.token_lifetime: 2h0m0s is longer than the maximum, 1h0m0s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "config.yaml")
			if err := os.WriteFile(path, []byte(strings.ReplaceAll(head, "%s", tc.env)+tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			env := map[string]string{"SPGATEWAY_DATABASE_DSN": "postgres://u@db/x"}
			if tc.env != "production" {
				env = nil
			}
			for k, v := range tc.vars {
				if env == nil {
					env = map[string]string{}
				}
				env[k] = v
			}
			_, err := loadConfig(path, envMap(env))
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q:\n%v", want, err)
				}
			}
			if strings.Contains(err.Error(), "BEGIN") {
				t.Errorf("error shows key material:\n%v", err)
			}
		})
	}

	// And the good case: both key files, kid given, signing key rotation.
	path := filepath.Join(dir, "good.yaml")
	good := strings.ReplaceAll(head, "%s", "development") + `
oauth: {signing_keys: [{id: old, private_key_file: gw.pem}, {id: new, private_key_env: SPGATEWAY_GW_KEY, active: true}]}
clients: [{id: c1, role: practice, organization: A81001, jwks_file: client.jwks.json, public_key_file: client.pem, kid: pem-1}]`
	if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(path, envMap(map[string]string{"SPGATEWAY_GW_KEY": string(ecPriv)}))
	if err != nil {
		t.Fatal(err)
	}
	if ks := c.oauth.clients[0].Keys; len(ks) != 2 || ks[0].KeyID != "k1" || ks[1].KeyID != "pem-1" {
		t.Errorf("client keys %+v", ks)
	}
	if keys, _, err := c.tokenKeys(); err != nil || keys.Active() != "new" {
		t.Errorf("tokenKeys: %v", err)
	}
}

// jwkPrivate is the private JWK of key, as a careless operator might
// register it.
func jwkPrivate(t *testing.T, key any) string {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestClientToolsEndToEnd does what the README shows: keygen makes a
// client's keys, the client is registered with its jwks.json, the gateway
// (development, no signing keys: an ephemeral one) starts, client-assertion
// signs an assertion, the token endpoint answers it with an access token,
// and the token reads the FHIR API.
func TestClientToolsEndToEnd(t *testing.T) {
	dir := t.TempDir()
	keyDir := filepath.Join(dir, "keys")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"keygen", "--alg", "ES256", "--out", keyDir}, envMap(nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "ES256 key, kid ") {
		t.Errorf("keygen said %q", out.String())
	}
	if fi, err := os.Stat(filepath.Join(keyDir, "private.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("private.pem: %v %v", fi, err)
	}
	// It never overwrites a key.
	if err := run(context.Background(), []string{"keygen", "--out", keyDir}, envMap(nil), io.Discard, io.Discard); err == nil {
		t.Error("keygen overwrote an existing key")
	}

	jwtClientConfig(t, dir, true)
	getenv := testEnv(t, map[string]string{"SPGATEWAY_CONFIG": filepath.Join(dir, "config.yaml")})
	base, logs, stop := startServe(t, getenv)
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("run: %v", err)
		}
		if !strings.Contains(logs.String(), "ephemeral key") {
			t.Errorf("the log does not say the signing key is ephemeral:\n%s", logs)
		}
	}()

	status, token := clientToken(t, base, "practice-jwt", filepath.Join(keyDir, "private.pem"))
	if status != http.StatusOK || token == "" {
		t.Fatalf("token: %d", status)
	}
	if got := searchWith(t, base, token); got != http.StatusOK {
		t.Errorf("FHIR search with the access token: %d", got)
	}
	// The development keys still work beside tokens.
	postReferral(t, base)

	for _, bad := range [][]string{{"client-assertion", "--client", "x"}, {"keygen"}, {"keygen", "--alg", "HS256", "--out", dir + "/k2"},
		{"client-assertion", "--client", "x", "--key", filepath.Join(keyDir, "public.pem"), "--aud", "https://x"}} {
		if err := run(context.Background(), bad, envMap(nil), io.Discard, io.Discard); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}
