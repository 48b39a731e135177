package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store"
)

// The trace exporters.
const (
	tracesNone   = "none"
	tracesStdout = "stdout"
	tracesOTLP   = "otlp"
)

// TelemetryConfig is OpenTelemetry: traces to an exporter, and metrics on
// /metrics for Prometheus. Neither ever holds patient data.
type TelemetryConfig struct {
	// ServiceName and the software version name the process on every span
	// and metric (service.name, service.version).
	ServiceName string        `yaml:"service_name" env:"SERVICE_NAME" validate:"required,max=64"`
	Traces      TracesConfig  `yaml:"traces" envPrefix:"TRACES_"`
	Metrics     MetricsConfig `yaml:"metrics" envPrefix:"METRICS_"`
}

// TracesConfig chooses where spans go. otlp sends them over HTTP to the
// endpoint, with the headers, that the standard OTEL_EXPORTER_OTLP_*
// variables give (the exporter reads them itself).
type TracesConfig struct {
	Exporter string `yaml:"exporter" env:"EXPORTER" validate:"required,oneof=none stdout otlp"`
	// SampleRatio is the share of traces kept, from 0 to 1; a request that
	// arrives with a sampled trace context is kept.
	SampleRatio float64 `yaml:"sample_ratio" env:"SAMPLE_RATIO" validate:"min=0,max=1"`
}

// MetricsConfig turns on GET /metrics (Prometheus text format).
type MetricsConfig struct {
	Enabled bool `yaml:"enabled" env:"ENABLED"`
}

// telemetry is the process's tracer and meter providers, built from
// configuration and handed to each package explicitly (there are no
// global providers). A provider that is off is nil.
type telemetry struct {
	tracer   *sdktrace.TracerProvider
	meter    *sdkmetric.MeterProvider
	metrics  http.Handler // /metrics, when metrics are on
	shutdown []func(context.Context) error
}

// newTelemetry builds the providers. exporter, when not nil, replaces the
// configured trace exporter (for tests); stdout is where the stdout
// exporter writes.
func newTelemetry(ctx context.Context, cfg *Config, stdout io.Writer, exporter sdktrace.SpanExporter) (*telemetry, error) {
	t := &telemetry{}
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(cfg.Telemetry.ServiceName),
		semconv.ServiceVersion(version()),
		attribute.String("deployment.environment.name", cfg.Environment)))
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	if exporter == nil {
		switch cfg.Telemetry.Traces.Exporter {
		case tracesStdout:
			exporter, err = stdouttrace.New(stdouttrace.WithWriter(stdout))
		case tracesOTLP:
			exporter, err = otlptracehttp.New(ctx)
		}
		if err != nil {
			return nil, fmt.Errorf("telemetry: trace exporter: %w", err)
		}
	}
	if exporter != nil {
		t.tracer = sdktrace.NewTracerProvider(
			sdktrace.WithBatcher(redactingExporter{exporter}),
			sdktrace.WithResource(res),
			sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.Telemetry.Traces.SampleRatio))))
		t.shutdown = append(t.shutdown, t.tracer.Shutdown)
	}
	if cfg.Telemetry.Metrics.Enabled {
		// A registry of our own, not Prometheus's global one.
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		exp, err := otelprom.New(otelprom.WithRegisterer(reg))
		if err != nil {
			return nil, fmt.Errorf("telemetry: metrics: %w", err)
		}
		t.meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
		t.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
		t.shutdown = append(t.shutdown, t.meter.Shutdown)
	}
	return t, nil
}

// tracerProvider and meterProvider return the providers as the interfaces
// the packages take: nil (never a typed nil) when off.
func (t *telemetry) tracerProvider() trace.TracerProvider {
	if t.tracer == nil {
		return nil
	}
	return t.tracer
}

func (t *telemetry) meterProvider() metric.MeterProvider {
	if t.meter == nil {
		return nil
	}
	return t.meter
}

// close flushes and stops the providers.
func (t *telemetry) close(ctx context.Context) error {
	var errs []error
	for _, f := range t.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}

// handler serves /metrics (when on) beside the gateway's API.
func (t *telemetry) handler(api http.Handler) http.Handler {
	if t.metrics == nil {
		return api
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			w.Header().Set("Cache-Control", "no-store")
			t.metrics.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

// observe registers the gauges and counters read at each scrape: referrals
// by Task status and the outbox's backlog, pending and dead (each a count
// query), and the outbox worker's counters.
func (t *telemetry) observe(st *store.Store, counts *gateway.OutboxMetrics) error {
	if t.meter == nil {
		return nil
	}
	m := t.meter.Meter("github.com/spgateway/spgateway")
	referrals, err1 := m.Int64ObservableGauge("spgateway.referrals", metric.WithUnit("{referral}"),
		metric.WithDescription("Referrals by the status of their Task"))
	depth, err2 := m.Int64ObservableGauge("spgateway.outbox.depth", metric.WithUnit("{event}"),
		metric.WithDescription("Outbox events waiting (pending) or given up (dead)"))
	attempts, err3 := m.Int64ObservableCounter("spgateway.outbox.attempts", metric.WithUnit("{attempt}"),
		metric.WithDescription("Delivery attempts made by this process"))
	delivered, err4 := m.Int64ObservableCounter("spgateway.outbox.delivered", metric.WithUnit("{event}"),
		metric.WithDescription("Events delivered by this process"))
	failures, err5 := m.Int64ObservableCounter("spgateway.outbox.failures", metric.WithUnit("{attempt}"),
		metric.WithDescription("Failed delivery attempts made by this process"))
	dead, err6 := m.Int64ObservableCounter("spgateway.outbox.dead_letters", metric.WithUnit("{event}"),
		metric.WithDescription("Events dead-lettered by this process"))
	if err := errors.Join(err1, err2, err3, err4, err5, err6); err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	byStatus := func(o metric.Observer, g metric.Int64Observable, n map[string]int) {
		for status, v := range n {
			o.ObserveInt64(g, int64(v), metric.WithAttributes(attribute.String("status", status)))
		}
	}
	_, err := m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		tasks, terr := st.TaskCountsByStatus(ctx)
		byStatus(o, referrals, tasks)
		events, derr := st.OutboxBacklog(ctx)
		byStatus(o, depth, events)
		o.ObserveInt64(attempts, counts.Attempts.Load())
		o.ObserveInt64(delivered, counts.Delivered.Load())
		o.ObserveInt64(failures, counts.Failures.Load())
		o.ObserveInt64(dead, counts.DeadLetters.Load())
		return errors.Join(terr, derr)
	}, referrals, depth, attempts, delivered, failures, dead)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	return nil
}

// redactingExporter passes spans on without what may hold patient data or
// credentials, whichever instrumentation recorded it: a request's path and
// query (an NHS number in Patient?identifier=...), a URL's query and user,
// and the text of errors (a database may quote a value in one).
type redactingExporter struct{ sdktrace.SpanExporter }

func (r redactingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	out := make([]sdktrace.ReadOnlySpan, len(spans))
	for i, s := range spans {
		out[i] = redactedSpan{s}
	}
	return r.SpanExporter.ExportSpans(ctx, out)
}

// ownScope is the gateway's own instrumentation, whose status descriptions
// are outcome words.
const ownScope = "github.com/spgateway/spgateway/gateway"

type redactedSpan struct{ sdktrace.ReadOnlySpan }

func (s redactedSpan) Attributes() []attribute.KeyValue {
	in := s.ReadOnlySpan.Attributes()
	var route string
	for _, a := range in {
		if a.Key == semconv.HTTPRouteKey {
			route = a.Value.AsString()
		}
	}
	out := make([]attribute.KeyValue, 0, len(in))
	for _, a := range in {
		switch a.Key {
		case semconv.URLQueryKey, "http.target", "http.url", semconv.URLFragmentKey:
			continue
		case semconv.URLPathKey:
			if route == "" {
				continue
			}
			a = semconv.URLPath(route)
		case semconv.URLFullKey:
			u, err := url.Parse(a.Value.AsString())
			if err != nil {
				continue
			}
			a = semconv.URLFull((&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String())
		}
		out = append(out, a)
	}
	return out
}

func (s redactedSpan) Events() []sdktrace.Event {
	in := s.ReadOnlySpan.Events()
	out := make([]sdktrace.Event, len(in))
	for i, e := range in {
		e.Attributes = slicesDeleteKeys(e.Attributes, semconv.ExceptionMessageKey, semconv.ExceptionStacktraceKey)
		out[i] = e
	}
	return out
}

func (s redactedSpan) Status() sdktrace.Status {
	st := s.ReadOnlySpan.Status()
	if s.InstrumentationScope().Name != ownScope {
		st.Description = ""
	}
	return st
}

// slicesDeleteKeys returns attrs without the given keys, in a new slice.
func slicesDeleteKeys(attrs []attribute.KeyValue, keys ...attribute.Key) []attribute.KeyValue {
	out := make([]attribute.KeyValue, 0, len(attrs))
	for _, a := range attrs {
		drop := false
		for _, k := range keys {
			drop = drop || a.Key == k
		}
		if !drop {
			out = append(out, a)
		}
	}
	return out
}
