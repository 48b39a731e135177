package main

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/gatewaytest"
	"github.com/spgateway/spgateway/gateway/store"
)

const (
	developmentFile = "../../configs/development.yaml"
	productionFile  = "../../configs/production.example.yaml"
)

// envMap returns a getenv over m, so tests never read the process
// environment.
func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// writeConfig writes text to a file in a fresh temporary folder and returns
// its path.
func writeConfig(t testing.TB, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// stubStore satisfies gateway.Store for gateway.NewService, which checks the
// configuration without touching the store.
type stubStore struct{ gateway.Store }

func TestDevelopmentConfig(t *testing.T) {
	c, err := loadConfig(developmentFile, envMap(nil))
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	if c.Environment != envDevelopment || c.production() {
		t.Errorf("environment = %q", c.Environment)
	}
	if c.Server.Listen != "127.0.0.1:8080" || c.Server.BaseURL != "http://127.0.0.1:8080" || c.fhirBaseURL() != "http://127.0.0.1:8080/fhir" {
		t.Errorf("server = %+v, FHIR base %q", c.Server, c.fhirBaseURL())
	}
	if got, want := c.storeConfig(), (store.Config{Driver: store.DriverSQLite, DSN: "./data/spgateway.db", MaxReaders: 8}); !reflect.DeepEqual(got, want) {
		t.Errorf("storeConfig() = %+v, want %+v", got, want)
	}
	if c.NHSNumber.RelaxCheckDigit {
		t.Error("the development configuration relaxes the NHS number check")
	}

	// The organisations, routing and clients are those the tests use
	// (gatewaytest), so the tests run against the development setup.
	if got, want := c.organizations(), gatewaytest.Organizations(); !reflect.DeepEqual(got, want) {
		t.Errorf("organizations() = %+v\nwant %+v", got, want)
	}

	// Routing is by practice only (SPEC 4.1).
	rules := c.routingRules()
	for _, r := range gatewaytest.Routing() {
		for _, postcode := range []string{"NE4 5XX", "SW1A 1AA"} {
			got, ok := gateway.Route(rules, gateway.RouteInput{Practice: r.Practice, Postcode: postcode})
			if !ok || got != r.Provider {
				t.Errorf("Route(%s, %s) = %q, %v; want %q", r.Practice, postcode, got, ok, r.Provider)
			}
		}
	}
	if len(rules) != len(gatewaytest.Routing()) {
		t.Errorf("%d routing rules, want %d: %+v", len(rules), len(gatewaytest.Routing()), rules)
	}

	// Every client of the SPEC 4.1 table authenticates with its key.
	auth := gateway.NewStaticKeys(c.staticKeys())
	for _, want := range gatewaytest.Clients() {
		got, err := auth.Authenticate(context.Background(), want.Key)
		if err != nil || got != want.Principal {
			t.Errorf("Authenticate(%q) = %+v, %v; want %+v", want.Key, got, err, want.Principal)
		}
	}
	if n, want := len(c.staticKeys()), len(gatewaytest.Clients()); n != want {
		t.Errorf("%d static keys, want %d", n, want)
	}

	if _, err := gateway.NewService(c.gatewayConfig(stubStore{})); err != nil {
		t.Errorf("gateway.NewService refuses the development configuration: %v", err)
	}
}

// productionSecrets are the variables the production example needs.
func productionSecrets(extra map[string]string) map[string]string {
	m := map[string]string{
		"SPGATEWAY_DATABASE_DSN":              "postgres://spgateway:s3cret-password@db.internal:5432/spgateway?sslmode=verify-full",
		"SPGATEWAY_PRV01_WEBHOOK_SECRET":      "0123456789abcdef0123456789abcdef-prv01",
		"SPGATEWAY_PRV02_FHIR_TOKEN":          "prv02-token",
		"SPGATEWAY_OAUTH_SIGNING_KEY_2026_03": signingKeyPEM(),
	}
	maps.Copy(m, extra)
	return m
}

func TestProductionExample(t *testing.T) {
	env := productionSecrets(nil)
	dsn := env["SPGATEWAY_DATABASE_DSN"]
	c, err := loadConfig(productionFile, envMap(env))
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	if !c.production() {
		t.Errorf("environment = %q, want production", c.Environment)
	}
	if got := c.storeConfig(); got.Driver != store.DriverPostgres || got.DSN != dsn {
		t.Errorf("storeConfig() = %+v", got)
	}
	if !strings.HasPrefix(c.Server.BaseURL, "https://") {
		t.Errorf("base_url = %q, want https", c.Server.BaseURL)
	}
	if keys := c.staticKeys(); len(keys) != 0 {
		t.Errorf("production example has %d static keys", len(keys))
	}
	d := defaultConfig()
	if c.Limits.MaxBodyBytes >= d.Limits.MaxBodyBytes || c.Limits.MaxJSONDepth >= d.Limits.MaxJSONDepth || c.Limits.MaxCount >= d.Limits.MaxCount {
		t.Errorf("production limits %+v are not stricter than the defaults %+v", c.Limits, d.Limits)
	}
	if _, err := gateway.NewService(c.gatewayConfig(stubStore{})); err != nil {
		t.Errorf("gateway.NewService refuses the production example: %v", err)
	}

	// Without the variable, the DSN is missing and the error says how to
	// give it.
	delete(env, "SPGATEWAY_DATABASE_DSN")
	_, err = loadConfig(productionFile, envMap(env))
	if err == nil || !strings.Contains(err.Error(), "config: database.dsn: is required (in the file, or as SPGATEWAY_DATABASE_DSN)") {
		t.Errorf("without SPGATEWAY_DATABASE_DSN: err = %v", err)
	}

	// Its providers: PRV01 by signed webhook, PRV02 by FHIR push, each
	// secret from its variable.
	if got := c.pushProviders(); !slices.Equal(got, []string{"PRV01", "PRV02"}) {
		t.Errorf("pushProviders() = %v", got)
	}
	if d := c.Providers[0].Delivery; string(d.secret) != env["SPGATEWAY_PRV01_WEBHOOK_SECRET"] {
		t.Errorf("PRV01's webhook secret was not read from its variable")
	}
	if d := c.Providers[1].Delivery; d.token != env["SPGATEWAY_PRV02_FHIR_TOKEN"] {
		t.Errorf("PRV02's FHIR token was not read from its variable")
	}
	if m := c.caseRecords().Providers["PRV02"]; m.Format != "fhir" {
		t.Errorf("PRV02 (fhirpush, no case_record) format = %q, want fhir", m.Format)
	}
	if _, err := c.deliverers(stubChannels{}, nil); err != nil {
		t.Errorf("deliverers: %v", err)
	}
}

func TestEnvOverrides(t *testing.T) {
	// A process variable must not leak in: loadConfig reads only getenv.
	t.Setenv("SPGATEWAY_LOG_FORMAT", "json")

	env := map[string]string{
		"SPGATEWAY_SERVER_LISTEN":                "0.0.0.0:9090",
		"SPGATEWAY_SERVER_BASE_URL":              "https://gw.example.org",
		"SPGATEWAY_SERVER_READ_HEADER_TIMEOUT":   "3s",
		"SPGATEWAY_SERVER_READ_TIMEOUT":          "4s",
		"SPGATEWAY_SERVER_WRITE_TIMEOUT":         "5s",
		"SPGATEWAY_SERVER_IDLE_TIMEOUT":          "6s",
		"SPGATEWAY_SERVER_SHUTDOWN_TIMEOUT":      "7s",
		"SPGATEWAY_LIMITS_MAX_BODY_BYTES":        "2048",
		"SPGATEWAY_LIMITS_MAX_JSON_DEPTH":        "16",
		"SPGATEWAY_LIMITS_DEFAULT_COUNT":         "10",
		"SPGATEWAY_LIMITS_MAX_COUNT":             "20",
		"SPGATEWAY_DATABASE_DRIVER":              "postgres",
		"SPGATEWAY_DATABASE_DSN":                 "postgres://u:p@localhost/db",
		"SPGATEWAY_DATABASE_MAX_READERS":         "3",
		"SPGATEWAY_LOG_LEVEL":                    "warn",
		"SPGATEWAY_NHS_NUMBER_RELAX_CHECK_DIGIT": "true",
		"SPGATEWAY_ENVIRONMENT":                  "test",
		"SPGATEWAY_PROMS_SWEEP_INTERVAL":         "90s",
		"SPGATEWAY_OUTBOX_MAX_ATTEMPTS":          "5",
		"SPGATEWAY_OUTBOX_BASE_DELAY":            "1s",
		"SPGATEWAY_OUTBOX_MAX_DELAY":             "1m",
		"SPGATEWAY_OUTBOX_BATCH":                 "8",
		"SPGATEWAY_OUTBOX_LEASE":                 "30s",
		"SPGATEWAY_OUTBOX_POLL":                  "250ms",
		"SPGATEWAY_OUTBOX_TIMEOUT":               "5s",
		// The development file allows both; the variables turn them off.
		"SPGATEWAY_OUTBOX_SUBSCRIPTION_ALLOW_HTTP":    "false",
		"SPGATEWAY_OUTBOX_SUBSCRIPTION_ALLOW_PRIVATE": "false",
		"SPGATEWAY_LIMITS_RATE_PER_SECOND":            "2.5",
		"SPGATEWAY_LIMITS_RATE_BURST":                 "10",
		"SPGATEWAY_LIMITS_FAILED_AUTH_PER_MINUTE":     "12",
		"SPGATEWAY_LIMITS_FAILED_AUTH_BURST":          "4",
		"SPGATEWAY_TELEMETRY_SERVICE_NAME":            "spgateway-test",
		"SPGATEWAY_TELEMETRY_TRACES_EXPORTER":         "otlp",
		"SPGATEWAY_TELEMETRY_TRACES_SAMPLE_RATIO":     "0.25",
		"SPGATEWAY_TELEMETRY_METRICS_ENABLED":         "false",
		"SPGATEWAY_OAUTH_TOKEN_LIFETIME":              "10m",
		"SPGATEWAY_SERVER_TRUSTED_PROXIES":            "10.0.0.1,192.168.0.0/16",
		"SPGATEWAY_SERVER_PPROF_LISTEN":               "127.0.0.1:6061",
		"SPGATEWAY_AUDIT_QUEUE":                       "100",
		"SPGATEWAY_AUDIT_BATCH":                       "10",
	}
	c, err := loadConfig(developmentFile, envMap(env))
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	want := defaultConfig()
	want.Environment = envTest
	want.Server = ServerConfig{
		Listen: "0.0.0.0:9090", BaseURL: "https://gw.example.org",
		ReadHeaderTimeout: 3 * time.Second, ReadTimeout: 4 * time.Second, WriteTimeout: 5 * time.Second,
		IdleTimeout: 6 * time.Second, ShutdownTimeout: 7 * time.Second,
		TrustedProxies: []string{"10.0.0.1", "192.168.0.0/16"}, PprofListen: "127.0.0.1:6061",
	}
	want.Limits = LimitsConfig{MaxBodyBytes: 2048, MaxJSONDepth: 16, DefaultCount: 10, MaxCount: 20, RatePerSecond: 2.5, RateBurst: 10,
		FailedAuthPerMinute: 12, FailedAuthBurst: 4}
	want.Telemetry = TelemetryConfig{ServiceName: "spgateway-test", Traces: TracesConfig{Exporter: "otlp", SampleRatio: 0.25}}
	want.Audit = AuditConfig{Queue: 100, Batch: 10}
	want.Database = DatabaseConfig{Driver: "postgres", DSN: "postgres://u:p@localhost/db", MaxReaders: 3}
	want.Log = LogConfig{Level: "warn", Format: "text"} // format from the file, not the process
	want.NHSNumber.RelaxCheckDigit = true
	want.PROMs.SweepInterval = 90 * time.Second
	want.Outbox = OutboxConfig{MaxAttempts: 5, BaseDelay: time.Second, MaxDelay: time.Minute, Batch: 8, Lease: 30 * time.Second,
		Poll: 250 * time.Millisecond, Timeout: 5 * time.Second}
	want.OAuth.TokenLifetime = 10 * time.Minute
	got := *c
	got.oauth = loadedOAuth{} // the keys the settings name, not settings
	got.Practices, got.Providers, got.Routing, got.Clients = nil, nil, nil, nil
	got.PROMs.Programmes, got.PROMs.Instruments = nil, nil
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("got  %+v\nwant %+v", got, *want)
	}
	if len(c.Clients) != 5 || len(c.Routing) != 2 {
		t.Errorf("lists changed: %d clients, %d rules", len(c.Clients), len(c.Routing))
	}

	t.Run("every scalar setting has a variable", func(t *testing.T) {
		var keys []string
		for _, v := range envVars(reflect.TypeOf(Config{}), envPrefix, "") {
			keys = append(keys, v.key)
		}
		var want []string
		for k := range env {
			want = append(want, k)
		}
		want = append(want, "SPGATEWAY_LOG_FORMAT")
		slices.Sort(keys)
		slices.Sort(want)
		if !slices.Equal(keys, want) {
			t.Errorf("variables:\n got %v\nwant %v", keys, want)
		}
	})

	t.Run("production refuses the development keys", func(t *testing.T) {
		_, err := loadConfig(developmentFile, envMap(map[string]string{"SPGATEWAY_ENVIRONMENT": "production"}))
		if err == nil {
			t.Fatal("no error")
		}
		for i := range 5 {
			want := "config: clients[" + string(rune('0'+i)) + "].api_key: development keys are refused in production"
			if !strings.Contains(err.Error(), want) {
				t.Errorf("missing %q in:\n%v", want, err)
			}
		}
		if strings.Contains(err.Error(), "dev-") {
			t.Errorf("the error shows a key:\n%v", err)
		}
	})

	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"bad duration", map[string]string{"SPGATEWAY_SERVER_READ_TIMEOUT": "soon"},
			`config: server.read_timeout: SPGATEWAY_SERVER_READ_TIMEOUT: want a duration such as 30s, 2m or 1h30m, got "soon"`},
		{"bad number", map[string]string{"SPGATEWAY_LIMITS_MAX_COUNT": "many"},
			`config: limits.max_count: SPGATEWAY_LIMITS_MAX_COUNT: want a whole number, got "many"`},
		{"bad bool", map[string]string{"SPGATEWAY_NHS_NUMBER_RELAX_CHECK_DIGIT": "maybe"},
			`config: nhs_number.relax_check_digit: SPGATEWAY_NHS_NUMBER_RELAX_CHECK_DIGIT: want true or false, got "maybe"`},
		{"bad driver", map[string]string{"SPGATEWAY_DATABASE_DRIVER": "mysql"},
			`config: database.driver: must be one of sqlite, postgres (got "mysql") (set by SPGATEWAY_DATABASE_DRIVER)`},
		{"sqlite path for postgres", map[string]string{"SPGATEWAY_DATABASE_DRIVER": "postgres"},
			`config: database.dsn: must be a postgres:// URL`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(developmentFile, envMap(tc.env))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

// baseConfig is a valid configuration that the cases of TestConfigErrors
// break one rule at a time.
const baseConfig = `environment: test
server:
  listen: 127.0.0.1:8080
  base_url: http://127.0.0.1:8080
  read_timeout: 30s
  write_timeout: 60s
  idle_timeout: 120s
limits:
  max_body_bytes: 1048576
  max_json_depth: 64
  default_count: 50
  max_count: 500
database:
  driver: sqlite
  dsn: ./data/test.db
log:
  level: info
nhs_number:
  relax_check_digit: false
practices:
  - code: A81001
    name: Example Road Surgery
providers:
  - code: PRV01
    name: Tyneside Link Workers
  - code: PRV02
    name: Riverside Community Connectors
routing:
  - practice: A81001
    reasons: ["44054006"]
    provider: PRV02
  - postcode_districts: [NE4, SW1A]
    provider: PRV02
  - practice: A81001
    provider: PRV01
clients:
  - id: practice-a81001
    role: practice
    organization: A81001
    api_key: key-practice-a81001
  - id: provider-prv01
    role: provider
    organization: PRV01
    api_key: key-provider-prv01
  - id: provider-prv02
    role: provider
    organization: PRV02
    api_key: key-provider-prv02
  - id: admin
    role: admin
`

func TestBaseConfig(t *testing.T) {
	c, err := loadConfig(writeConfig(t, baseConfig), envMap(nil))
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	want := []gateway.RoutingRule{
		{Practice: "A81001", Reasons: []string{"44054006"}, Provider: "PRV02"},
		{PostcodeDistricts: []string{"NE4", "SW1A"}, Provider: "PRV02"},
		{Practice: "A81001", Provider: "PRV01"},
	}
	if got := c.routingRules(); !reflect.DeepEqual(got, want) {
		t.Errorf("routingRules() = %#v\nwant %#v", got, want)
	}
	if got := c.staticKeys(); len(got) != 3 || got[2].Principal != (gateway.Principal{ClientID: "provider-prv02", Role: gateway.RoleProvider, Org: "PRV02"}) {
		t.Errorf("staticKeys() = %+v", got)
	}
	// Settings the file leaves out keep their defaults.
	if c.Server.ReadHeaderTimeout != 10*time.Second || c.Server.ShutdownTimeout != 20*time.Second || c.Log.Format != "json" || c.Database.MaxReaders != 8 {
		t.Errorf("defaults not applied: %+v %+v %+v", c.Server, c.Log, c.Database)
	}
}

func TestDerivedDefaults(t *testing.T) {
	minimal := "environment: development\n"
	for _, tc := range []struct {
		name, yaml      string
		baseURL, dsn    string
		driver          string
		wantErrContains string
	}{
		{name: "nothing", yaml: minimal, baseURL: "http://127.0.0.1:8080", dsn: "./data/spgateway.db", driver: "sqlite"},
		{name: "any interface", yaml: minimal + "server:\n  listen: 0.0.0.0:9000\n", baseURL: "http://127.0.0.1:9000", dsn: "./data/spgateway.db", driver: "sqlite"},
		{name: "no host", yaml: minimal + "server:\n  listen: :9000\n", baseURL: "http://127.0.0.1:9000", dsn: "./data/spgateway.db", driver: "sqlite"},
		{name: "IPv6", yaml: minimal + "server:\n  listen: \"[::1]:9000\"\n", baseURL: "http://[::1]:9000", dsn: "./data/spgateway.db", driver: "sqlite"},
		{name: "base_url given", yaml: minimal + "server:\n  listen: 0.0.0.0:9000\n  base_url: https://gw.example.org/spg\n", baseURL: "https://gw.example.org/spg", dsn: "./data/spgateway.db", driver: "sqlite"},
		{name: "postgres has no default DSN", yaml: minimal + "database:\n  driver: postgres\n", wantErrContains: "config: database.dsn: is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadConfig(writeConfig(t, tc.yaml), envMap(nil))
			if tc.wantErrContains != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErrContains) {
					t.Fatalf("err = %v, want %q", err, tc.wantErrContains)
				}
				return
			}
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			if c.Server.BaseURL != tc.baseURL || c.Database.DSN != tc.dsn || c.Database.Driver != tc.driver {
				t.Errorf("base_url %q, dsn %q, driver %q", c.Server.BaseURL, c.Database.DSN, c.Database.Driver)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edits []string // pairs: text of baseConfig, its replacement
		text  string   // the whole file, when there are no edits of baseConfig
		env   map[string]string
		want  []string
		never []string // must not appear: secrets
	}{
		// Telemetry and the rate limit.
		{name: "bad trace exporter", edits: []string{"limits:\n", "telemetry:\n  traces:\n    exporter: jaeger\nlimits:\n"},
			want: []string{`telemetry.traces.exporter: must be one of none, stdout, otlp (got "jaeger")`}},
		{name: "sample ratio above 1", edits: []string{"limits:\n", "telemetry:\n  traces:\n    sample_ratio: 1.5\nlimits:\n"},
			want: []string{"telemetry.traces.sample_ratio: must be at most 1 (got 1.5)"}},
		{name: "negative sample ratio from the environment", env: map[string]string{"SPGATEWAY_TELEMETRY_TRACES_SAMPLE_RATIO": "-0.1"},
			want: []string{"telemetry.traces.sample_ratio: must be at least 0 (got -0.1) (set by SPGATEWAY_TELEMETRY_TRACES_SAMPLE_RATIO)"}},
		{name: "sample ratio not a number", env: map[string]string{"SPGATEWAY_TELEMETRY_TRACES_SAMPLE_RATIO": "half"},
			want: []string{`telemetry.traces.sample_ratio: SPGATEWAY_TELEMETRY_TRACES_SAMPLE_RATIO: want a number, got "half"`}},
		{name: "metrics not a boolean", edits: []string{"limits:\n", "telemetry:\n  metrics:\n    enabled: sometimes\nlimits:\n"},
			want: []string{"telemetry.metrics.enabled: want true or false"}},
		{name: "empty service name", edits: []string{"limits:\n", "telemetry:\n  service_name: \"\"\nlimits:\n"},
			want: []string{"telemetry.service_name: is required"}},
		{name: "negative rate", edits: []string{"  max_count: 500\n", "  max_count: 500\n  rate_per_second: -1\n"},
			want: []string{"limits.rate_per_second: must be at least 0 (got -1)"}},
		{name: "rate without a burst", edits: []string{"  max_count: 500\n", "  max_count: 500\n  rate_per_second: 5\n"},
			want: []string{"limits.rate_burst: must be at least 1 when limits.rate_per_second is set (got 0)"}},
		{name: "negative burst", edits: []string{"  max_count: 500\n", "  max_count: 500\n  rate_burst: -3\n"},
			want: []string{"limits.rate_burst: must be at least 0 (got -3)"}},
		{name: "failed-auth rate without a burst", edits: []string{"  max_count: 500\n", "  max_count: 500\n  failed_auth_per_minute: 5\n"},
			want: []string{"limits.failed_auth_burst: must be at least 1 when limits.failed_auth_per_minute is set (got 0)"}},
		{name: "negative failed-auth rate", edits: []string{"  max_count: 500\n", "  max_count: 500\n  failed_auth_per_minute: -1\n"},
			want: []string{"limits.failed_auth_per_minute: must be at least 0 (got -1)"}},
		// The file itself.
		{name: "unknown key", edits: []string{"environment: test\n", "environment: test\nenviroment: test\n"},
			want: []string{"config: line 2: enviroment: unknown key (valid keys here: environment, server, limits, database, log, nhs_number, proms, outbox, oauth, telemetry, audit, practices, providers, routing, clients)"}},
		{name: "unknown nested key", edits: []string{"  listen:", "  listn:"},
			want: []string{"config: line 3: server.listn: unknown key (valid keys here: listen, base_url, read_header_timeout"}},
		{name: "unknown key in a list item", edits: []string{"    role: admin", "    role: admin\n    organisation: A81001"},
			want: []string{"clients[3].organisation: unknown key (valid keys here: id, role, organization, api_key, jwks_file, public_key_file, kid)"}},
		{name: "key given twice", edits: []string{"  max_count: 500\n", "  max_count: 500\n  max_count: 600\n"},
			want: []string{"config: line 13: limits.max_count: given twice (first at line 12)"}},
		{name: "not YAML", text: "environment: test\nserver: [\n",
			want: []string{"config: line 2: did not find expected node content"}},
		{name: "two documents", text: "environment: test\n---\nenvironment: production\n",
			want: []string{"config: the file holds more than one YAML document"}},
		{name: "not a mapping", text: "just words\n",
			want: []string{`config: line 1: want a mapping of keys to values, got "just words"`}},
		{name: "list given as a word", edits: []string{"clients:\n", "clients: none\nunused:\n"},
			want: []string{`config: line 36: clients: want a list, got "none"`, "config: line 37: unused: unknown key"}},
		{name: "only a comment", text: "# nothing yet\n",
			want: []string{"config: environment: is required (in the file, or as SPGATEWAY_ENVIRONMENT)"}},

		// PROMs.
		{name: "programme of an unknown instrument", edits: []string{"routing:\n", "proms:\n  programmes:\n    - {name: a, providers: [PRV01], instrument: nope, baseline_within_days: 30, follow_up_every_months: 6}\nrouting:\n"},
			want: []string{`config: proms.programmes[0].instrument: "nope" is not an instrument`}},
		{name: "programme of a practice", edits: []string{"routing:\n", "proms:\n  programmes:\n    - {name: a, providers: [A81001], instrument: swemwbs, baseline_within_days: 30, follow_up_every_months: 6}\nrouting:\n"},
			want: []string{"config: proms.programmes[0].providers[0]:"}},
		{name: "provider in two programmes", edits: []string{"routing:\n", "proms:\n  programmes:\n    - {name: a, providers: [PRV01], instrument: swemwbs, baseline_within_days: 30, follow_up_every_months: 6}\n    - {name: b, providers: [PRV01], instrument: wemwbs, baseline_within_days: 30, follow_up_every_months: 6}\nrouting:\n"},
			want: []string{`config: proms.programmes[1].providers[0]: "PRV01" is already in programme "a"`}},
		{name: "programme without a baseline", edits: []string{"routing:\n", "proms:\n  programmes:\n    - {name: a, providers: [PRV01], instrument: swemwbs, baseline_within_days: 0, follow_up_every_months: 6}\nrouting:\n"},
			want: []string{"config: proms.programmes[0].baseline_within_days: must be at least 1"}},
		{name: "sweep every 0s", edits: []string{"routing:\n", "proms:\n  sweep_interval: 0s\nrouting:\n"},
			want: []string{"config: proms.sweep_interval: must be more than 0"}},
		{name: "table instrument without a table", edits: []string{"routing:\n", "proms:\n  instruments:\n    - {id: star, url: \"https://example.org/Questionnaire/star\", title: Star, scoring: table, codes: [{system: \"https://example.org/cs\", code: star}], raw_code: {system: \"https://example.org/cs\", code: raw}, table: {3: 1.5}, items: [{link_id: \"1\", label: One, min: 1, max: 2}, {link_id: \"2\", label: Two, min: 1, max: 2}]}\nrouting:\n"},
			want: []string{"config: proms.instruments[0]: instrument star: the table has no score for raw score 2"}},
		{name: "instrument taking a built-in id", edits: []string{"routing:\n", "proms:\n  instruments:\n    - {id: swemwbs, url: \"https://example.org/Questionnaire/x\", title: X, scoring: sum, codes: [{system: \"https://example.org/cs\", code: x}], items: [{link_id: \"1\", label: One, min: 1, max: 2}]}\nrouting:\n"},
			want: []string{`config: proms.instruments[0]: id "swemwbs" or url`}},
		{name: "instrument with an unknown scoring", edits: []string{"routing:\n", "proms:\n  instruments:\n    - {id: star, url: \"https://example.org/Questionnaire/star\", title: Star, scoring: average, codes: [{system: \"https://example.org/cs\", code: star}], items: [{link_id: \"1\", label: One, min: 1, max: 2}]}\nrouting:\n"},
			want: []string{"config: proms.instruments[0].scoring: must be one of sum, table, components"}},
		{name: "instrument item upside down", edits: []string{"routing:\n", "proms:\n  instruments:\n    - {id: star, url: \"https://example.org/Questionnaire/star\", title: Star, scoring: sum, codes: [{system: \"https://example.org/cs\", code: star}], items: [{link_id: \"1\", label: One, min: 5, max: 1}]}\nrouting:\n"},
			want: []string{"config: proms.instruments[0]: instrument star: item 1: min 5 is above max 1"}},

		// Single settings.
		{name: "environment unknown", edits: []string{"environment: test", "environment: staging"},
			want: []string{`config: environment: must be one of development, test, production (got "staging")`}},
		{name: "bad listen", edits: []string{"listen: 127.0.0.1:8080", "listen: localhost"},
			want: []string{`config: server.listen: must be host:port with a port from 1 to 65535, such as 127.0.0.1:8080 or :8080 (got "localhost")`}},
		{name: "listen port out of range", edits: []string{"listen: 127.0.0.1:8080", "listen: 127.0.0.1:70000"},
			want: []string{"config: server.listen: must be host:port"}},
		{name: "base_url with a trailing slash", edits: []string{"base_url: http://127.0.0.1:8080", "base_url: http://127.0.0.1:8080/"},
			want: []string{"config: server.base_url: must be the absolute http or https URL of the server root"}},
		{name: "base_url not http", edits: []string{"base_url: http://127.0.0.1:8080", "base_url: ftp://gw.example.org"},
			want: []string{`config: server.base_url: must be the absolute http or https URL of the server root, with no trailing slash, query or fragment, such as https://gateway.example.org (got "ftp://gw.example.org")`}},
		{name: "base_url relative", edits: []string{"base_url: http://127.0.0.1:8080", "base_url: /gateway"},
			want: []string{"config: server.base_url: must be the absolute"}},
		{name: "bad duration", edits: []string{"read_timeout: 30s", "read_timeout: soon"},
			want: []string{`config: line 5: server.read_timeout: want a duration such as 30s, 2m or 1h30m, got "soon"`}},
		{name: "duration without a unit", edits: []string{"idle_timeout: 120s", "idle_timeout: 120"},
			want: []string{`config: line 7: server.idle_timeout: want a duration such as 30s, 2m or 1h30m, got "120"`}},
		{name: "negative duration", edits: []string{"write_timeout: 60s", "write_timeout: -1s"},
			want: []string{"config: server.write_timeout: must be more than 0 (got -1s)"}},
		{name: "body limit too small", edits: []string{"max_body_bytes: 1048576", "max_body_bytes: 100"},
			want: []string{"config: limits.max_body_bytes: must be at least 1024 (got 100)"}},
		{name: "body limit not a number", edits: []string{"max_body_bytes: 1048576", "max_body_bytes: 1MB"},
			want: []string{`config: line 9: limits.max_body_bytes: want a whole number, got "1MB"`}},
		{name: "fraction for a whole number", edits: []string{"max_count: 500", "max_count: 500.5"},
			want: []string{`config: line 12: limits.max_count: want a whole number, got "500.5"`}},
		{name: "JSON depth too deep", edits: []string{"max_json_depth: 64", "max_json_depth: 5000"},
			want: []string{"config: limits.max_json_depth: must be at most 1000 (got 5000)"}},
		{name: "default_count over max_count", edits: []string{"default_count: 50", "default_count: 600"},
			want: []string{"config: limits.default_count: 600 is more than limits.max_count (500)"}},
		{name: "bad driver", edits: []string{"driver: sqlite", "driver: mysql"},
			want: []string{`config: database.driver: must be one of sqlite, postgres (got "mysql")`}},
		{name: "URL for sqlite", edits: []string{"dsn: ./data/test.db", "dsn: postgres://u:pw-secret@h/db"},
			want:  []string{"config: database.dsn: must be a file path for sqlite, not a URL"},
			never: []string{"pw-secret"}},
		{name: "sqlite options", edits: []string{"dsn: ./data/test.db", "dsn: file:./data/test.db?mode=ro"},
			want: []string{"config: database.dsn: must be a plain file path for sqlite"}},
		{name: "sqlite in memory", edits: []string{"dsn: ./data/test.db", "dsn: \":memory:\""},
			want: []string{"config: database.dsn: must be a file path: an in-memory database"}},
		{name: "file path for postgres", edits: []string{"driver: sqlite", "driver: postgres"},
			want: []string{"config: database.dsn: must be a postgres:// URL for postgres"}},
		{name: "unparsable postgres URL", edits: []string{"driver: sqlite\n  dsn: ./data/test.db", "driver: postgres\n  dsn: \"postgres://u:pw-secret@h:port/db\""},
			want:  []string{"config: database.dsn: must be a postgres:// URL"},
			never: []string{"pw-secret"}},
		{name: "no readers", edits: []string{"dsn: ./data/test.db", "dsn: ./data/test.db\n  max_readers: 0"},
			want: []string{"config: database.max_readers: must be at least 1 (got 0)"}},
		{name: "bad log level", edits: []string{"level: info", "level: verbose"},
			want: []string{`config: log.level: must be one of debug, info, warn, error (got "verbose")`}},
		{name: "bad bool", edits: []string{"relax_check_digit: false", "relax_check_digit: sometimes"},
			want: []string{`config: line 19: nhs_number.relax_check_digit: want true or false, got "sometimes"`}},

		// Organisations and routing.
		{name: "bad organisation code", edits: []string{"code: A81001", "code: A-81001"},
			want: []string{`config: practices[0].code: must hold only letters and digits (got "A-81001")`}},
		{name: "organisation code too short", edits: []string{"code: PRV01", "code: P1"},
			want: []string{`config: providers[0].code: must be at least 3 characters long (got "P1")`}},
		{name: "organisation without a name", edits: []string{"    name: Tyneside Link Workers\n", ""},
			want: []string{"config: providers[0].name: is required"}},
		{name: "code used twice", edits: []string{"code: PRV01", "code: A81001"},
			want: []string{`config: providers[0].code: "A81001" is already used by practices[0].code`}},
		{name: "routing to unknown provider", edits: []string{"reasons: [\"44054006\"]\n    provider: PRV02", "reasons: [\"44054006\"]\n    provider: PRV09"},
			want: []string{`config: routing[0].provider: "PRV09" is not a configured provider`}},
		{name: "routing to a practice", edits: []string{"reasons: [\"44054006\"]\n    provider: PRV02", "reasons: [\"44054006\"]\n    provider: A81001"},
			want: []string{`config: routing[0].provider: "A81001" is a practice, not a provider`}},
		{name: "routing from unknown practice", edits: []string{"  - practice: A81001\n    provider: PRV01", "  - practice: B99999\n    provider: PRV01"},
			want: []string{`config: routing[2].practice: "B99999" is not a configured practice`}},
		{name: "routing without provider", edits: []string{"  - practice: A81001\n    provider: PRV01", "  - practice: A81001"},
			want: []string{"config: routing[2].provider: is required"}},
		{name: "bad postcode district", edits: []string{"[NE4, SW1A]", "[NE4, \"NE4 5XX\"]"},
			want: []string{`config: routing[1].postcode_districts[1]: must be a postcode district (the outward code, such as NE4 or SW1A) (got "NE4 5XX")`}},
		{name: "reason not SNOMED CT", edits: []string{`["44054006"]`, `["diabetes"]`},
			want: []string{`config: routing[0].reasons[0]: must be a SNOMED CT code: 6 to 18 digits with a valid check digit (got "diabetes")`}},
		{name: "mistyped reason", edits: []string{`["44054006"]`, `["44054005"]`},
			want: []string{`config: routing[0].reasons[0]: must be a SNOMED CT code`}},
		{name: "rule behind a catch-all", edits: []string{"  - postcode_districts: [NE4, SW1A]\n", "  - postcode_districts: []\n"},
			want: []string{"config: routing[2]: is never used: routing[1] has no conditions, matches every referral and comes first"}},

		// Clients.
		{name: "duplicate client id", edits: []string{"id: provider-prv02", "id: provider-prv01"},
			want: []string{`config: clients[2].id: "provider-prv01" is already the id of clients[1]`}},
		{name: "client without id", edits: []string{"  - id: admin\n    role: admin", "  - role: admin"},
			want: []string{"config: clients[3].id: is required"}},
		{name: "duplicate key", edits: []string{"api_key: key-provider-prv02", "api_key: key-provider-prv01"},
			want:  []string{"config: clients[2].api_key: is the same key as clients[1].api_key; every client needs its own"},
			never: []string{"key-provider"}},
		{name: "short key", edits: []string{"api_key: key-provider-prv02", "api_key: tiny"},
			want:  []string{"config: clients[2].api_key: must be at least 8 characters long"},
			never: []string{"tiny"}},
		{name: "key with a space", edits: []string{"api_key: key-provider-prv02", "api_key: key provider prv02"},
			want:  []string{"config: clients[2].api_key: may hold only letters, digits and -._~+/"},
			never: []string{"key provider"}},
		{name: "bad role", edits: []string{"role: admin", "role: operator"},
			want: []string{`config: clients[3].role: must be one of practice, provider, admin (got "operator")`}},
		{name: "client org unknown", edits: []string{"organization: PRV02", "organization: PRV99"},
			want: []string{`config: clients[2].organization: "PRV99" is not a configured provider`}},
		{name: "practice client bound to a provider", edits: []string{"organization: A81001", "organization: PRV01"},
			want: []string{`config: clients[0].organization: "PRV01" is a provider, not a practice`}},
		{name: "provider client without organisation", edits: []string{"    organization: PRV01\n", ""},
			want: []string{"config: clients[1].organization: is required for a provider client"}},
		{name: "admin with organisation", edits: []string{"role: admin", "role: admin\n    organization: A81001"},
			want: []string{`config: clients[3].organization: must be empty for an admin client (got "A81001")`}},

		// Production.
		{name: "relax_check_digit in production", edits: []string{"environment: test", "environment: production", "relax_check_digit: false", "relax_check_digit: true"},
			want: []string{"config: nhs_number.relax_check_digit: is refused in production"}},
		{name: "plain http Subscriptions in production", env: map[string]string{"SPGATEWAY_ENVIRONMENT": "production", "SPGATEWAY_OUTBOX_SUBSCRIPTION_ALLOW_HTTP": "true"},
			want: []string{"config: outbox.subscription_allow_http: is refused in production"}},
		{name: "api_key in production", edits: []string{"environment: test", "environment: production"},
			want: []string{
				"config: clients[0].api_key: development keys are refused in production",
				"config: clients[1].api_key: development keys are refused in production",
				"config: clients[2].api_key: development keys are refused in production",
			},
			never: []string{"clients[3].api_key", "key-"}},
		{name: "production by variable", env: map[string]string{"SPGATEWAY_ENVIRONMENT": "production", "SPGATEWAY_NHS_NUMBER_RELAX_CHECK_DIGIT": "true"},
			want: []string{
				"config: nhs_number.relax_check_digit: is refused in production: every NHS number must pass the check digit (set by SPGATEWAY_NHS_NUMBER_RELAX_CHECK_DIGIT)",
				"config: clients[0].api_key: development keys are refused in production",
			}},

		{name: "bad trusted proxy", env: map[string]string{"SPGATEWAY_SERVER_TRUSTED_PROXIES": "10.0.0.1,the balancer"},
			want: []string{"config: server.trusted_proxies[1]:"}},
		{name: "empty audit queue", env: map[string]string{"SPGATEWAY_AUDIT_QUEUE": "0"},
			want: []string{"config: audit.queue:"}},

		// Several problems are reported together.
		{name: "all problems at once", edits: []string{"driver: sqlite", "driver: mysql", "level: info", "level: loud", "id: admin", "id: provider-prv01"},
			want: []string{"database.driver:", "log.level:", "clients[3].id:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := tc.text
			if text == "" {
				text = baseConfig
				for i := 0; i+1 < len(tc.edits); i += 2 {
					if !strings.Contains(text, tc.edits[i]) {
						t.Fatalf("baseConfig has no %q", tc.edits[i])
					}
					text = strings.Replace(text, tc.edits[i], tc.edits[i+1], 1)
				}
			}
			c, err := loadConfig(writeConfig(t, text), envMap(tc.env))
			if err == nil {
				t.Fatalf("no error; config %+v", c)
			}
			if c != nil {
				t.Errorf("a config came back with the error")
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
			for _, n := range tc.never {
				if strings.Contains(msg, n) {
					t.Errorf("error shows %q:\n%s", n, msg)
				}
			}
			for _, line := range strings.Split(msg, "\n") {
				if !strings.HasPrefix(line, "config: ") {
					t.Errorf("line %q does not start with \"config: \"", line)
				}
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := loadConfig(filepath.Join(t.TempDir(), "absent.yaml"), nil)
	if err == nil || !strings.HasPrefix(err.Error(), "config: open ") {
		t.Errorf("err = %v", err)
	}
	if _, err := loadConfig("", nil); err == nil {
		t.Error("no error for an empty path")
	}
}

func TestValidSCTID(t *testing.T) {
	valid := []string{
		"871731000000106", "1084281000000109", "515721000000104", // social prescribing
		"44054006", "13645005", "195967001", "230690007", "197480006", "718466001",
	}
	for _, s := range valid {
		if !validSCTID(s) {
			t.Errorf("validSCTID(%q) = false", s)
		}
	}
	for _, s := range []string{"", "12345", "044054006", "44054005", "4405400x", "1234567890123456789", "871731000000107"} {
		if validSCTID(s) {
			t.Errorf("validSCTID(%q) = true", s)
		}
	}
}

func FuzzLoadConfig(f *testing.F) {
	// The shipped files without their comments: small seeds keep
	// minimising a new input quick.
	for _, path := range []string{developmentFile, productionFile} {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		var seed []byte
		for line := range strings.Lines(string(b)) {
			if !strings.HasPrefix(strings.TrimSpace(line), "#") {
				seed = append(seed, line...)
			}
		}
		f.Add(seed)
	}
	f.Add([]byte(baseConfig))
	f.Add([]byte(""))
	f.Add([]byte("environment: development\nserver: {listen: \"[::1]:80\", read_timeout: 1h}\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("routing:\n  - <<: {provider: PRV01}\n"))
	// One file per worker process, rewritten for each input: a fresh
	// folder each time would make minimising an input needlessly slow.
	path := filepath.Join(f.TempDir(), "config.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := loadConfig(path, envMap(nil))
		if err != nil {
			if c != nil {
				t.Fatal("a config came back with the error")
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "config: ") {
					t.Fatalf("line %q does not start with \"config: \"", line)
				}
			}
			return
		}
		// What validates, the gateway accepts.
		if _, err := gateway.NewService(c.gatewayConfig(stubStore{})); err != nil {
			t.Fatalf("gateway.NewService refuses a valid configuration: %v", err)
		}
		if c.production() && len(c.staticKeys()) > 0 {
			t.Fatal("a production configuration has development keys")
		}
	})
}
