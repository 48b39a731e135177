package fhir_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// The benchmarks drive the real router and store in process (no sockets), so
// they measure the gateway's own work: parse, validate, route, store, render.
// Run with: go test -run '^$' -bench . -benchmem ./fhir/
// Set SPGATEWAY_TEST_POSTGRES_DSN to include PostgreSQL.

func serve(b *testing.B, g *testGateway, method, path, key string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	w := httptest.NewRecorder()
	g.fhir.ServeHTTP(w, req)
	return w
}

// BenchmarkIntakeBundle posts the fixture referral Bundle, each time with a
// new referral identifier (and so a new referral for the same patient);
// "pushed" with PRV01's case records pushed, so that each intake also
// renders a case record into the outbox.
func BenchmarkIntakeBundle(b *testing.B) {
	for _, engine := range storetest.Engines() {
		for _, pushed := range []bool{false, true} {
			name := engine
			var opts []gatewayOption
			if pushed {
				name += "/pushed"
				opts = append(opts, scWithCases(nil, "PRV01"))
			}
			b.Run(name, func(b *testing.B) { benchIntake(b, newGateway(b, engine, opts...)) })
		}
	}
}

// BenchmarkOutboxDelivery is the worker's own cost per event: claiming a
// batch and recording each delivery (to a receiver that takes it at once).
func BenchmarkOutboxDelivery(b *testing.B) {
	for _, engine := range storetest.Engines() {
		b.Run(engine, func(b *testing.B) {
			g := newGateway(b, engine, scWithCases(nil, "PRV01"))
			body := fixture(b, "referral-bundle.json")
			w, err := gateway.NewWorker(gateway.WorkerConfig{Outbox: g.store,
				Deliverers: map[string]gateway.Deliverer{gateway.DestinationProvider: benchReceiver{}}})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				req := bytes.Replace(body, []byte("SP-2026-000123"), []byte("D-"+strconv.Itoa(i)), 2)
				if r := serve(b, g, http.MethodPost, "/fhir", keyA81001, req); r.Code != http.StatusOK {
					b.Fatalf("%d %s", r.Code, r.Body)
				}
				b.StartTimer()
				if n, err := w.RunOnce(ctx); n != 1 || err != nil {
					b.Fatalf("claimed %d: %v", n, err)
				}
			}
		})
	}
}

type benchReceiver struct{}

func (benchReceiver) Deliver(context.Context, gateway.OutboxEvent) error { return nil }

func benchIntake(b *testing.B, g *testGateway) {
	body := fixture(b, "referral-bundle.json")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		req := bytes.Replace(body, []byte("SP-2026-000123"), []byte("B-"+strconv.Itoa(i)), 2)
		if w := serve(b, g, http.MethodPost, "/fhir", keyA81001, req); w.Code != http.StatusOK {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}

// BenchmarkPollPage is a provider's poll: a page of 50 Tasks with their
// ServiceRequests and Patients, out of 200 open Tasks, and ("open=3000")
// out of 3,000, where a page's cost must not grow with the caseload.
func BenchmarkPollPage(b *testing.B) {
	for _, engine := range storetest.Engines() {
		for _, open := range []int{200, 3000} {
			name := engine
			if open != 200 {
				name += "/open=" + strconv.Itoa(open)
			}
			b.Run(name, func(b *testing.B) { benchPoll(b, newGateway(b, engine), open) })
		}
	}
}

func benchPoll(b *testing.B, g *testGateway, open int) {
	body := fixture(b, "referral-bundle.json")
	for i := range open {
		req := bytes.Replace(body, []byte("SP-2026-000123"), []byte("S-"+strconv.Itoa(i)), 2)
		if w := serve(b, g, http.MethodPost, "/fhir", keyA81001, req); w.Code != http.StatusOK {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
	const path = "/fhir/Task?owner=Organization/PRV01&status=requested&_include=Task:focus&_include=Task:patient&_count=50"
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := serve(b, g, http.MethodGet, path, keyPRV01, nil)
		if w.Code != http.StatusOK || w.Body.Len() < 50*1000 {
			b.Fatalf("%d %d bytes", w.Code, w.Body.Len())
		}
	}
}
