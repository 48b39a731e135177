package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway/gatewaytest"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// TestShutdownStopsDeliveringAtSignal: on SIGTERM the outbox worker takes no
// new work, so a replica's grace period covers only what is under way. A
// referral that lands while the HTTP server drains is kept, and delivered
// by the next gateway on the database, not by the one shutting down.
func TestShutdownStopsDeliveringAtSignal(t *testing.T) {
	storetest.Each(t, testShutdownStopsDeliveringAtSignal)
}

func testShutdownStopsDeliveringAtSignal(t *testing.T, engine string) {
	var (
		mu       sync.Mutex
		received []string // the referral identifier in each delivery
	)
	hook := newTestHook(t, func(body []byte) {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range []string{"SP-2026-000123", "SHUTDOWN-2"} {
			if bytes.Contains(body, []byte(id)) {
				received = append(received, id)
			}
		}
	})
	deliveries := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), received...)
	}
	getenv := testEnv(t, map[string]string{
		"SPGATEWAY_CONFIG":          webhookConfig(t, hook),
		"SPGATEWAY_DATABASE_DRIVER": engine,
		"SPGATEWAY_DATABASE_DSN":    storetest.Config(t, engine).DSN,
		"PRV01_WEBHOOK_SECRET":      "a-webhook-secret-of-at-least-32-characters",
		"SPGATEWAY_OUTBOX_POLL":     "20ms",
	})
	fixture, err := os.ReadFile(filepath.Join("..", "..", "testdata", "fixtures", "referral-bundle.json"))
	if err != nil {
		t.Fatal(err)
	}

	base, logs, stop := startServe(t, getenv)
	postReferral(t, base)
	waitFor(t, 20*time.Second, "the first referral's delivery", func() bool { return len(deliveries()) == 1 })

	// A second referral, its body held back so that the request is in
	// flight when the signal comes.
	second := bytes.ReplaceAll(fixture, []byte("SP-2026-000123"), []byte("SHUTDOWN-2"))
	second = bytes.ReplaceAll(second, []byte("9434765919"), []byte("9000000009"))
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", base+"/fhir", pr)
	req.ContentLength = int64(len(second))
	req.Header.Set("Authorization", "Bearer "+gatewaytest.KeyA81001)
	req.Header.Set("Content-Type", "application/fhir+json")
	answered := make(chan int, 1)
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("second referral: %v", err)
			answered <- 0
			return
		}
		res.Body.Close()
		answered <- res.StatusCode
	}()
	half := len(second) / 2
	if _, err := pw.Write(second[:half]); err != nil {
		t.Fatal(err)
	}
	// The server has the request once it is reading the body: wait for
	// that before the signal, or the drain would not wait for it.
	time.Sleep(300 * time.Millisecond)
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	waitFor(t, 10*time.Second, "the shutdown to begin", func() bool { return strings.Contains(logs.String(), "shutting down") })
	// Give a worker that still claimed work every chance to be seen.
	time.Sleep(200 * time.Millisecond)
	if _, err := pw.Write(second[half:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if status := <-answered; status != http.StatusOK {
		t.Fatalf("the referral sent during the drain: %d, want 200", status)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("run: %v", err)
	}
	if got := deliveries(); len(got) != 1 {
		t.Fatalf("deliveries by the gateway shutting down: %v; want only the first referral's", got)
	}

	// The next gateway on the database delivers what the drain stored.
	_, _, stop = startServe(t, getenv)
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	waitFor(t, 20*time.Second, "the second referral's delivery after the restart", func() bool {
		got := deliveries()
		return len(got) == 2 && got[1] == "SHUTDOWN-2"
	})
}

// newTestHook is a webhook receiver that hands each body to got.
func newTestHook(t *testing.T, got func([]byte)) string {
	t.Helper()
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got(b)
	}))
	t.Cleanup(hook.Close)
	return hook.URL
}

// webhookConfig is the development configuration with PRV01's case
// records pushed to url, written to a temporary file; it returns the path.
func webhookConfig(t *testing.T, url string) string {
	t.Helper()
	dev, err := os.ReadFile(filepath.Join("..", "..", "configs", "development.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const anchor = "    name: Tyneside Link Workers            # the first link worker service\n"
	if !bytes.Contains(dev, []byte(anchor)) {
		t.Fatal("configs/development.yaml has changed: no PRV01 to give a webhook")
	}
	conf := bytes.Replace(dev, []byte(anchor), []byte(anchor+"    delivery:\n      adapter: webhook\n      url: "+url+
		"/in?token=abc\n      secret_env: PRV01_WEBHOOK_SECRET\n"), 1)
	path := filepath.Join(t.TempDir(), "spgateway.yaml")
	if err := os.WriteFile(path, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitFor polls cond until it holds, or fails the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waited %s for %s", d, what)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
