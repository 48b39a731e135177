package gateway_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// TestWorkerTracesAttempts checks the span of each delivery attempt: its
// id, kinds, attempt and outcome; the adapter runs inside it; neither the
// payload nor the error's text (which may quote a receiver) is in it.
func TestWorkerTracesAttempts(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		c := newWorkerClock(w0)
		st := storetest.Open(t, engine, c.Now)
		const leak = "receiver said 9434765919"
		ok, retry, dead := outboxEvent("ok", provP, "task-1"), outboxEvent("retry", provP, "task-2"), outboxEvent("dead", subS, "task-3")
		ok.Payload = []byte(`{"nhs_number":"9434765919"}`)
		enqueueEvents(t, st, ok, retry, dead)
		rec := tracetest.NewSpanRecorder()
		var mu sync.Mutex
		inSpan := map[string]bool{}
		deliver := deliverFunc(func(ctx context.Context, e gateway.OutboxEvent) error {
			mu.Lock()
			inSpan[e.ID] = trace.SpanContextFromContext(ctx).IsValid()
			mu.Unlock()
			switch e.ID {
			case "retry":
				return errors.New(leak)
			case "dead":
				return &gateway.PermanentError{Err: errors.New(leak)}
			}
			return nil
		})
		w := newWorker(t, gateway.WorkerConfig{
			Outbox:         st,
			Deliverers:     map[string]gateway.Deliverer{gateway.DestinationProvider: deliver, gateway.DestinationSubscription: deliver},
			Now:            c.Now,
			TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)),
		})
		c.Set(w0.Add(1))
		if n := runOnce(t, w); n != 3 {
			t.Fatalf("RunOnce claimed %d, want 3", n)
		}
		want := map[string]struct {
			dest, outcome string
			status        codes.Code
		}{
			"ok":    {gateway.DestinationProvider, "delivered", codes.Unset},
			"retry": {gateway.DestinationProvider, "retry", codes.Error},
			"dead":  {gateway.DestinationSubscription, "dead", codes.Error},
		}
		spans := rec.Ended()
		if len(spans) != len(want) {
			t.Fatalf("%d spans, want %d", len(spans), len(want))
		}
		for _, sp := range spans {
			attrs := attribute.NewSet(sp.Attributes()...)
			id, _ := attrs.Value("spgateway.outbox.event_id")
			wt, found := want[id.AsString()]
			if !found || sp.Name() != "outbox.deliver" {
				t.Errorf("span %q for event %q", sp.Name(), id.AsString())
				continue
			}
			for key, v := range map[attribute.Key]string{
				"spgateway.outbox.destination_kind": wt.dest,
				"spgateway.outbox.outcome":          wt.outcome,
				"spgateway.outbox.event_kind":       gateway.EventCaseRecord,
				"spgateway.outbox.attempt":          "1",
			} {
				if got, _ := attrs.Value(key); got.String() != v {
					t.Errorf("%s: %s = %q, want %q", id.AsString(), key, got.String(), v)
				}
			}
			if sp.Status().Code != wt.status {
				t.Errorf("%s: status %v, want %v", id.AsString(), sp.Status().Code, wt.status)
			}
			if !inSpan[id.AsString()] {
				t.Errorf("%s: the adapter did not run inside the attempt's span", id.AsString())
			}
			var all strings.Builder
			all.WriteString(sp.Status().Description)
			for _, a := range sp.Attributes() {
				all.WriteString(" " + a.Value.String())
			}
			for _, ev := range sp.Events() {
				all.WriteString(" " + ev.Name)
			}
			if strings.Contains(all.String(), "9434765919") {
				t.Errorf("%s: span holds the payload or the error's text: %s", id.AsString(), all.String())
			}
		}
	})
}
