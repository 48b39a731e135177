package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway/gatewaytest"
)

// syncBuffer is a log sink the server goroutine and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testEnv points the development configuration at a temporary database and
// a free port.
func testEnv(t *testing.T, extra map[string]string) func(string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	vars := map[string]string{
		"SPGATEWAY_CONFIG":          filepath.Join("..", "..", "configs", "development.yaml"),
		"SPGATEWAY_DATABASE_DSN":    filepath.Join(t.TempDir(), "db", "spgateway.db"),
		"SPGATEWAY_SERVER_LISTEN":   addr,
		"SPGATEWAY_SERVER_BASE_URL": "http://" + addr,
		"SPGATEWAY_LOG_FORMAT":      "json",
	}
	for k, v := range extra {
		vars[k] = v
	}
	return func(k string) string { return vars[k] }
}

func TestConfigCheckAndMigrate(t *testing.T) {
	getenv := testEnv(t, nil)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"config", "check"}, getenv, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "valid development configuration: 2 practices, 2 providers, 2 routing rules, 5 clients") {
		t.Errorf("config check: %q", out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"migrate"}, getenv, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(getenv("SPGATEWAY_DATABASE_DSN")); err != nil {
		t.Errorf("migrate made no database: %v", err)
	}
	// Twice is fine.
	if err := run(context.Background(), []string{"migrate"}, getenv, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
}

func TestCommandErrors(t *testing.T) {
	getenv := testEnv(t, nil)
	for _, args := range [][]string{{"frobnicate"}, {"config"}, {"config", "check", "extra"}, {"-nope"}} {
		if err := run(context.Background(), args, getenv, io.Discard, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("%v: %v", args, err)
		}
	}
	bad := testEnv(t, map[string]string{"SPGATEWAY_DATABASE_DRIVER": "oracle"})
	err := run(context.Background(), []string{"config", "check"}, bad, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "database.driver") {
		t.Errorf("bad configuration: %v", err)
	}
	// A bad configuration stops serve before it starts.
	if err := run(context.Background(), nil, bad, io.Discard, io.Discard); err == nil {
		t.Error("serve started with a bad configuration")
	}
	// Development keys are refused in production.
	prod := testEnv(t, map[string]string{"SPGATEWAY_ENVIRONMENT": "production"})
	if err := run(context.Background(), nil, prod, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "api_key") {
		t.Errorf("production with development keys: %v", err)
	}
}

// startServe runs the gateway as main does, in the background, until the
// returned stop is called; stop returns what run returned.
func startServe(t *testing.T, getenv func(string) string) (base string, logs *syncBuffer, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs = &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, getenv, io.Discard, logs) }()
	stop = func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			return errors.New("no shutdown")
		}
	}
	base = getenv("SPGATEWAY_SERVER_BASE_URL")
	if err := waitReady(base+"/readyz", 10*time.Second); err != nil {
		_ = stop()
		t.Fatalf("%v\n%s", err, logs)
	}
	return base, logs, stop
}

// postReferral posts the referral Bundle fixture as practice A81001.
func postReferral(t *testing.T, base string) {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("..", "..", "testdata", "fixtures", "referral-bundle.json"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", base+"/fhir", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+gatewaytest.KeyA81001)
	req.Header.Set("Content-Type", "application/fhir+json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("referral: %d", res.StatusCode)
	}
}

// TestServeAndShutdown starts the gateway as main does, sends it a referral,
// and stops it: in-flight requests finish and run returns nil.
func TestServeAndShutdown(t *testing.T) {
	base, logs, stop := startServe(t, testEnv(t, nil))
	postReferral(t, base)
	if err := stop(); err != nil {
		t.Errorf("run: %v", err)
	}
	l := logs.String()
	for _, want := range []string{`"msg":"spgateway listening"`, `"route":"/fhir"`, `"client":"practice-a81001"`, `"msg":"stopped"`} {
		if !strings.Contains(l, want) {
			t.Errorf("log lacks %s", want)
		}
	}
	// No patient data in the log: the fixture's NHS number, name, phone.
	for _, secret := range []string{"9434765919", "Testpatient", "07700 900123", "SP-2026-000123"} {
		if strings.Contains(l, secret) {
			t.Errorf("log holds %q", secret)
		}
	}
}

// waitReady polls url until it answers 200 or d passes.
func waitReady(url string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if res, err := http.Get(url); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %s", url, d)
}
