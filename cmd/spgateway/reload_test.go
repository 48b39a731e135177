package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway/oauth"
)

// jwtClientConfig writes the development configuration with a signed-JWT
// client, practice-jwt, whose keys keygen makes in dir/keys (when with is
// set), to dir/config.yaml.
func jwtClientConfig(t *testing.T, dir string, with bool) {
	t.Helper()
	dev, err := os.ReadFile(developmentFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(dev)
	if with {
		cfg = strings.Replace(cfg, "\nclients:\n", "\nclients:\n  - id: practice-jwt\n    role: practice\n    organization: A81001\n    jwks_file: keys/jwks.json\n", 1)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// clientToken asks the token endpoint at base for an access token as
// client, signing the assertion with the key at keyPath; it returns the
// status and the token.
func clientToken(t *testing.T, base, client, keyPath string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	args := []string{"client-assertion", "--client", client, "--key", keyPath, "--aud", base + oauth.TokenPath}
	if err := run(context.Background(), args, envMap(nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {oauth.AssertionType},
		"client_assertion": {strings.TrimSpace(out.String())}}
	res, err := http.PostForm(base+oauth.TokenPath, form)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var tok oauth.Token
	_ = json.NewDecoder(res.Body).Decode(&tok) // an error answer has no token
	return res.StatusCode, tok.AccessToken
}

// searchWith sends a FHIR search with an access token and returns the status.
func searchWith(t *testing.T, base, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/fhir/ServiceRequest", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// TestReloadClientsOnSIGHUP: an operator removes a client from the file
// and sends SIGHUP; from then on the client gets no token and its access
// tokens are refused, with no restart. Put back, it works again; a file
// that does not load changes nothing.
func TestReloadClientsOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "keys", "private.pem")
	if err := run(context.Background(), []string{"keygen", "--alg", "ES256", "--out", filepath.Join(dir, "keys")}, envMap(nil), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	jwtClientConfig(t, dir, true)
	base, logs, stop := startServe(t, testEnv(t, map[string]string{"SPGATEWAY_CONFIG": filepath.Join(dir, "config.yaml")}))
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	hangup := func(want string, n int) {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, want, func() bool { return strings.Count(logs.String(), want) >= n })
	}

	status, token := clientToken(t, base, "practice-jwt", key)
	if status != http.StatusOK || searchWith(t, base, token) != http.StatusOK {
		t.Fatalf("before the reload: token %d", status)
	}

	jwtClientConfig(t, dir, false)
	hangup("clients reloaded", 1)
	if got := searchWith(t, base, token); got != http.StatusUnauthorized {
		t.Errorf("the removed client's access token: %d, want 401", got)
	}
	if status, _ := clientToken(t, base, "practice-jwt", key); status != http.StatusUnauthorized {
		t.Errorf("a token for the removed client: %d, want 401", status)
	}

	jwtClientConfig(t, dir, true)
	hangup("clients reloaded", 2)
	status, token = clientToken(t, base, "practice-jwt", key)
	if status != http.StatusOK || searchWith(t, base, token) != http.StatusOK {
		t.Errorf("the client put back: token %d", status)
	}

	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte("clients: [unclosed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hangup("configuration reload failed", 1)
	if got := searchWith(t, base, token); got != http.StatusOK {
		t.Errorf("after a failed reload the client's token: %d, want 200", got)
	}
	// The development keys are read at start: they work throughout.
	postReferral(t, base)
}
