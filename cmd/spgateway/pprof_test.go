package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// freeAddr returns a loopback address no one listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

// TestPprofListener: with server.pprof_listen set, the profiles are served
// on that address (index, a heap profile, a short CPU profile) and not on
// the FHIR listener; the listener closes with the gateway.
func TestPprofListener(t *testing.T) {
	addr := freeAddr(t)
	base, logs, stop := startServe(t, testEnv(t, map[string]string{"SPGATEWAY_SERVER_PPROF_LISTEN": addr}))
	prof := "http://" + addr + "/debug/pprof/"
	if code, body := get(t, prof); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("index: %d %.200s", code, body)
	}
	if code, body := get(t, prof+"heap?debug=1"); code != http.StatusOK || !strings.Contains(body, "heap profile") {
		t.Errorf("heap: %d %.200s", code, body)
	}
	if code, body := get(t, prof+"profile?seconds=1"); code != http.StatusOK || len(body) == 0 {
		t.Errorf("CPU profile: %d, %d bytes", code, len(body))
	}
	if code, _ := get(t, base+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("profiles on the FHIR listener: %d, want 404", code)
	}
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(logs.String(), `"msg":"serving runtime profiles"`) {
		t.Errorf("log does not say profiles are served:\n%s", logs)
	}
	if _, err := http.Get(prof); err == nil {
		t.Errorf("profile listener still open after shutdown")
	}
}

// TestPprofOffByDefault: without the setting nothing listens for profiles,
// and the FHIR listener does not serve them.
func TestPprofOffByDefault(t *testing.T) {
	base, logs, stop := startServe(t, testEnv(t, nil))
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	if code, _ := get(t, base+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("profiles on the FHIR listener: %d, want 404", code)
	}
	if strings.Contains(logs.String(), "serving runtime profiles") {
		t.Errorf("profiles served without pprof_listen:\n%s", logs)
	}
}

// TestPprofListenBusy: an address that cannot be listened on stops the
// gateway at start with the setting named.
func TestPprofListenBusy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	getenv := testEnv(t, map[string]string{"SPGATEWAY_SERVER_PPROF_LISTEN": ln.Addr().String()})
	err = run(t.Context(), []string{"serve"}, getenv, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "server.pprof_listen") {
		t.Errorf("run: %v, want a server.pprof_listen error", err)
	}
}

// TestPprofListenConfig: production accepts only a loopback profile
// address; other environments take any valid address; a malformed one is
// refused everywhere.
func TestPprofListenConfig(t *testing.T) {
	const refused = "config: server.pprof_listen: must be a loopback address in production"
	for _, tc := range []struct {
		name, file, addr, want string
	}{
		{"production, IPv4 loopback", productionFile, "127.0.0.1:6060", ""},
		{"production, other 127/8 address", productionFile, "127.0.0.2:6060", ""},
		{"production, IPv6 loopback", productionFile, "[::1]:6060", ""},
		{"production, localhost", productionFile, "localhost:6060", ""},
		{"production, every interface", productionFile, ":6060", refused},
		{"production, unspecified address", productionFile, "0.0.0.0:6060", refused},
		{"production, private address", productionFile, "10.0.0.5:6060", refused},
		{"production, a host name", productionFile, "gateway.internal:6060", refused},
		{"production, not an address", productionFile, "6060", "config: server.pprof_listen:"},
		{"development, every interface", developmentFile, "0.0.0.0:6060", ""},
		{"development, port out of range", developmentFile, "127.0.0.1:70000", "config: server.pprof_listen:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"SPGATEWAY_SERVER_PPROF_LISTEN": tc.addr}
			if tc.file == productionFile {
				env = productionSecrets(env)
			}
			c, err := loadConfig(tc.file, envMap(env))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("loadConfig: %v", err)
				}
				if c.Server.PprofListen != tc.addr {
					t.Errorf("pprof_listen = %q, want %q", c.Server.PprofListen, tc.addr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
