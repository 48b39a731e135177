// Command spgateway runs the social prescribing referral gateway.
//
//	spgateway [-config FILE] [serve]     run the gateway (the default)
//	spgateway [-config FILE] migrate     bring the database schema up to date
//	spgateway [-config FILE] config check
//	                                     validate the configuration and exit
//	spgateway keygen --alg ES256|RS256 --out DIR [--kid K]
//	                                     make a client's key pair: private.pem,
//	                                     public.pem and jwks.json to register
//	spgateway client-assertion --client ID --key private.pem --aud URL [--kid K]
//	                                     print a signed client assertion
//
// Without -config it reads $SPGATEWAY_CONFIG, else configs/development.yaml.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spgateway/spgateway/fhir"
	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/oauth"
	"github.com/spgateway/spgateway/gateway/store"
)

const defaultConfigPath = "configs/development.yaml"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "spgateway:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage: spgateway [-config FILE] [serve | migrate | config check], or spgateway keygen|client-assertion -h")

// run is the whole program: main only adds the process's signals,
// environment and exit code, so tests can run it too.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("spgateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := getenv("SPGATEWAY_CONFIG")
	if path == "" {
		path = defaultConfigPath
	}
	fs.StringVar(&path, "config", path, "configuration file (YAML)")
	// Flags may come before or after the command words.
	var words []string
	for {
		if err := fs.Parse(args); err != nil {
			return errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		// The client tools need no configuration and have flags of their own.
		if tool := clientTool(fs.Arg(0)); tool != nil && len(words) == 0 {
			return tool(fs.Args()[1:], stdout, stderr)
		}
		words = append(words, fs.Arg(0))
		args = fs.Args()[1:]
	}
	cfg, err := loadConfig(path, getenv)
	if err != nil {
		return err
	}
	switch fmt.Sprint(words) {
	case "[]", "[serve]":
		tel, err := newTelemetry(ctx, cfg, stdout, nil)
		if err != nil {
			return err
		}
		reload := func() (*Config, error) { return loadConfig(path, getenv) }
		err = serve(ctx, cfg, newLogger(cfg, stderr), tel, reload)
		// Last, after the outbox worker has stopped: the final spans and
		// metrics are flushed.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return errors.Join(err, tel.close(sctx))
	case "[migrate]":
		st, err := store.Open(ctx, cfg.storeConfig())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "database schema is up to date (%s)\n", cfg.Database.Driver)
		return st.Close()
	case "[config check]":
		fmt.Fprintf(stdout, "%s: valid %s configuration: %d practices, %d providers, %d routing rules, %d clients\n",
			path, cfg.Environment, len(cfg.Practices), len(cfg.Providers), len(cfg.Routing), len(cfg.Clients))
		return nil
	}
	return errUsage
}

func newLogger(cfg *Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level)) // validated with the configuration
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
}

// serve runs the gateway until ctx ends, then lets in-flight requests finish
// within the shutdown timeout. tel's providers are handed to each package;
// the caller shuts them down.
func serve(ctx context.Context, cfg *Config, log *slog.Logger, tel *telemetry, reload func() (*Config, error)) error {
	scfg := cfg.storeConfig()
	scfg.TracerProvider = tel.tracerProvider()
	st, err := store.Open(ctx, scfg)
	if err != nil {
		return err
	}
	defer st.Close()
	// The service wakes the outbox worker after a write that enqueued
	// events; the worker needs the service to find Subscriptions.
	var worker *gateway.Worker
	gcfg := cfg.gatewayConfig(st)
	gcfg.Outbox = st
	gcfg.Wake = func() { worker.Wake() }
	auditor, err := gateway.NewBatchAuditor(gateway.BatchAuditorConfig{Store: st, Queue: cfg.Audit.Queue, Batch: cfg.Audit.Batch,
		Failed: func(err error, n int) {
			log.Error("writing audit events failed; trying again", "events", n, "err", err)
		},
		Stripped: func(ev gateway.AuditEvent, err error) {
			log.Error("the database refused an audit event; it was written without its resource references",
				"audit_id", ev.ID, "request_id", ev.RequestID, "err", err)
		}})
	if err != nil {
		return err
	}
	// The auditor is closed after the HTTP server has drained (deferred
	// calls run last first) and before the store closes, so the audit
	// events of the last requests are written.
	defer func() {
		actx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
		defer cancel()
		if err := auditor.Close(actx); err != nil {
			log.Error("audit events lost at shutdown", "err", err)
		}
	}()
	gcfg.Auditor = auditor
	svc, err := gateway.NewService(gcfg)
	if err != nil {
		return err
	}
	deliverers, err := cfg.deliverers(svc, tel.tracerProvider())
	if err != nil {
		return err
	}
	worker, err = gateway.NewWorker(gateway.WorkerConfig{
		Outbox:     st,
		Deliverers: deliverers,
		Retry:      cfg.retryPolicy(),
		Batch:      cfg.Outbox.Batch,
		Lease:      cfg.Outbox.Lease,
		Poll:       cfg.Outbox.Poll,
		Log:        log,
		OnResult:   svc.DeliveryResult,

		TracerProvider: tel.tracerProvider(),
	})
	if err != nil {
		return err
	}
	if err := tel.observe(st, worker.Metrics()); err != nil {
		return err
	}
	keys, ephemeral, err := cfg.tokenKeys()
	if err != nil {
		return err
	}
	if ephemeral {
		log.Warn("no oauth.signing_keys configured: access tokens are signed with an ephemeral key made at start, and die with the process",
			"kid", keys.Active())
	}
	clients := oauth.NewClients(cfg.oauth.clients)
	if reload != nil {
		stopReloads := reloadClientsOnHangup(reload, clients, log)
		defer stopReloads()
	}
	tokens, err := oauth.New(oauth.Config{
		BaseURL:       cfg.Server.BaseURL,
		Clients:       clients,
		Keys:          keys,
		JTIs:          st,
		TokenLifetime: cfg.OAuth.TokenLifetime,
		MeterProvider: tel.meterProvider(),
	})
	if err != nil {
		return err
	}
	h, err := fhir.NewServer(fhir.Config{
		BaseURL:        cfg.Server.BaseURL,
		MaxBodyBytes:   cfg.Limits.MaxBodyBytes,
		MaxJSONDepth:   cfg.Limits.MaxJSONDepth,
		DefaultCount:   cfg.Limits.DefaultCount,
		MaxCount:       cfg.Limits.MaxCount,
		Logger:         log,
		Version:        version(),
		Tokens:         tokens,
		TrustedProxies: cfg.Server.TrustedProxies,

		RatePerSecond:       cfg.Limits.RatePerSecond,
		RateBurst:           cfg.Limits.RateBurst,
		FailedAuthPerMinute: cfg.Limits.FailedAuthPerMinute,
		FailedAuthBurst:     cfg.Limits.FailedAuthBurst,
		TracerProvider:      tel.tracerProvider(),
		MeterProvider:       tel.meterProvider(),
	}, svc, cfg.authenticator(tokens))
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           tel.handler(h),
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout,
		ReadTimeout:       cfg.Server.ReadTimeout,
		WriteTimeout:      cfg.Server.WriteTimeout,
		IdleTimeout:       cfg.Server.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return err
	}
	if cfg.Server.PprofListen != "" {
		stopPprof, err := startPprof(cfg.Server.PprofListen, log)
		if err != nil {
			ln.Close()
			return fmt.Errorf("server.pprof_listen: %w", err)
		}
		defer stopPprof()
	}
	log.Info("spgateway listening", "addr", ln.Addr().String(), "fhir_base", cfg.fhirBaseURL(),
		"environment", cfg.Environment, "database", cfg.Database.Driver, "version", version())
	sweepCtx, stopSweep := context.WithCancel(ctx)
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		sweepPROMs(sweepCtx, svc, cfg.PROMs.SweepInterval, log)
	}()
	defer func() { stopSweep(); <-swept }() // before the store closes
	// The worker claims nothing after the signal, so the grace period
	// covers only work under way: the deliveries it has claimed finish
	// while the HTTP server drains, and the store closes after both. What
	// the drain stores waits in the outbox for the next gateway; a
	// delivery cut short is sent again after the lease.
	worked := make(chan struct{})
	go func() {
		defer close(worked)
		worker.Run(ctx)
	}()
	defer func() { <-worked }()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing requests in flight", "timeout", cfg.Server.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}

// reloadClientsOnHangup reads the configuration file again on each SIGHUP
// and makes its signed-JWT clients the registered ones: a client removed
// from the file can get no more tokens, and its access tokens are refused
// from that moment, with no restart. A file that does not load (or does not
// validate) changes nothing. Other settings, development API keys included,
// are read at start only. It returns a function that stops it.
func reloadClientsOnHangup(reload func() (*Config, error), clients *oauth.Clients, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			case <-hup:
				cfg, err := reload()
				if err != nil {
					log.Error("configuration reload failed: the clients stay as they were", "err", err)
					continue
				}
				clients.Replace(cfg.oauth.clients)
				log.Info("clients reloaded; other settings take effect at the next start", "clients", len(cfg.oauth.clients))
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
		<-stopped
	}
}

// sweepPROMs marks Tasks whose follow-up PROM has come due, every interval,
// until ctx ends.
func sweepPROMs(ctx context.Context, svc *gateway.Service, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n, err := svc.MarkPROMsDue(ctx, now)
			switch {
			case err != nil && ctx.Err() == nil:
				log.Error("marking due PROMs failed", "err", err)
			case n > 0:
				log.Info("follow-up PROMs due", "tasks", n)
			}
		}
	}
}
