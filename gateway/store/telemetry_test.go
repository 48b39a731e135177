package store_test

import (
	"context"
	"maps"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

func TestTaskCountsByStatus(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		s := open(t, engine)
		got, err := s.TaskCountsByStatus(t.Context())
		if err != nil {
			t.Fatalf("TaskCountsByStatus: %v", err)
		}
		if len(got) != 0 {
			t.Errorf("TaskCountsByStatus of an empty store = %v, want none", got)
		}
		task := func(id, status string) *gateway.Resource {
			return newResource(gateway.TypeTask, id, gateway.Index{Practice: practiceA, Status: status, Access: []string{practiceA}})
		}
		t1, t2, t3, t4 := task("t1", "requested"), task("t2", "requested"), task("t3", "accepted"), task("t4", "requested")
		// A ServiceRequest with a status is not a Task.
		sr := newResource(gateway.TypeServiceRequest, "sr1", gateway.Index{Practice: practiceA, Status: "active", Access: []string{practiceA}})
		put(t, s, t1, t2, t3, t4, sr)
		// t4 moves on: only its current version counts.
		put(t, s, next(t4, gateway.Index{Practice: practiceA, Status: "completed", Access: []string{practiceA}}))
		got, err = s.TaskCountsByStatus(t.Context())
		if err != nil {
			t.Fatalf("TaskCountsByStatus: %v", err)
		}
		want := map[string]int{"requested": 2, "accepted": 1, "completed": 1}
		if !maps.Equal(got, want) {
			t.Errorf("TaskCountsByStatus = %v, want %v", got, want)
		}
	})
}

// TestTracedStatements checks the otelsql wrapping: statements run for a
// traced caller make spans holding the statement text and never its
// arguments; statements with no trace to join make none.
func TestTracedStatements(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, engine string) {
		t.Parallel()
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		cfg := storetest.Config(t, engine)
		cfg.TracerProvider = tp
		s, err := store.Open(t.Context(), cfg)
		if err != nil {
			t.Fatalf("store.Open: %v", err)
		}
		defer s.Close()

		const secret = "9434765919"
		patient := newResource(gateway.TypePatient, "pat-traced", gateway.Index{Practice: practiceA, Access: []string{practiceA},
			Key: gateway.Identifier{System: gateway.SystemNHSNumber, Value: secret}})
		put(t, s, patient) // no trace: no spans
		if n := len(rec.Ended()); n != 0 {
			t.Fatalf("%d spans for statements outside any trace, want none", n)
		}

		ctx, span := tp.Tracer("test").Start(context.Background(), "request")
		if err := s.Update(ctx, func(tx gateway.Tx) error {
			_, err := tx.GetByKey(ctx, gateway.TypePatient, practiceA, gateway.Identifier{System: gateway.SystemNHSNumber, Value: secret})
			return err
		}); err != nil {
			t.Fatalf("GetByKey: %v", err)
		}
		span.End()

		var sqlSpans, withText int
		for _, sp := range rec.Ended() {
			if sp.Name() == "request" {
				continue
			}
			sqlSpans++
			if sp.Parent().TraceID() != span.SpanContext().TraceID() {
				t.Errorf("span %s is not in the caller's trace", sp.Name())
			}
			for _, a := range sp.Attributes() {
				if strings.Contains(a.Value.String(), secret) {
					t.Errorf("span %s attribute %s holds a bound value: %s", sp.Name(), a.Key, a.Value.String())
				}
				if a.Key == "db.query.text" && strings.Contains(a.Value.AsString(), "key_value") {
					withText++
				}
			}
			if strings.HasPrefix(sp.Name(), "sql.rows") || sp.Name() == "sql.conn.reset_session" {
				t.Errorf("span %s should be turned off", sp.Name())
			}
		}
		if sqlSpans == 0 || withText == 0 {
			t.Errorf("%d SQL spans, %d with the lookup's statement text; want both > 0", sqlSpans, withText)
		}
	})
}
