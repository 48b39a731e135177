package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spgateway/spgateway/adapters/webhook"
	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/mapping"
)

// stubChannels satisfies resthook.Channels; building adapters does not
// call it.
type stubChannels struct{}

func (stubChannels) SubscriptionChannel(context.Context, string) (gateway.SubscriptionChannel, error) {
	return gateway.SubscriptionChannel{}, gateway.ErrDiscard
}

const testSecret = "0123456789abcdef0123456789abcdef" // 32 characters

// withProviders is baseConfig with its providers section replaced.
func withProviders(providers string) string {
	const from = "providers:\n  - code: PRV01\n    name: Tyneside Link Workers\n  - code: PRV02\n    name: Riverside Community Connectors\n"
	if !strings.Contains(baseConfig, from) {
		panic("baseConfig's providers changed")
	}
	return strings.Replace(baseConfig, from, "providers:\n"+providers, 1)
}

const prv02Plain = "  - code: PRV02\n    name: Riverside Community Connectors\n"

func TestDevelopmentCaseRecords(t *testing.T) {
	c, err := loadConfig(developmentFile, envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	cr := c.caseRecords()
	for _, code := range []string{"PRV01", "PRV02"} {
		m, ok := cr.Providers[code]
		if !ok {
			t.Fatalf("%s has no case records: the case API is closed to it", code)
		}
		if err := mapping.CheckProviderMapping(m); err != nil {
			t.Errorf("%s: %v", code, err)
		}
		if len(m.Events) == 0 {
			t.Errorf("%s has no events", code)
		}
	}
	if got := cr.Providers["PRV01"]; got.Rename["nhs_number"] != "NHS_NO" || got.DateFormat != mapping.DateUK ||
		got.Codes["reason_codes"].Map["44054006"] != "Long-term condition" || got.Events["DECLINE"] != (mapping.EventMapping{Status: "rejected", Reason: "patient-declined"}) {
		t.Errorf("PRV01's mapping = %+v", got)
	}
	// PRV02 sees only what it needs to make contact.
	if got := cr.Providers["PRV02"].Fields; strings.Join(got, ",") != "case_id,referral_number,given_name,phone,reason_codes" {
		t.Errorf("PRV02's fields = %v", got)
	}
	// Nothing is pushed until a delivery is uncommented.
	if got := c.pushProviders(); len(got) != 0 {
		t.Errorf("pushProviders() = %v", got)
	}
	// Development lets Subscriptions reach a receiver on this machine.
	want := defaultOutbox()
	want.SubscriptionAllowHTTP, want.SubscriptionAllowPrivate = true, true
	if c.Outbox != want {
		t.Errorf("outbox = %+v, want the defaults %+v", c.Outbox, want)
	}
}

// TestDevelopmentDeliveryExamples uncomments each delivery the development
// configuration shows, so the examples stay valid.
func TestDevelopmentDeliveryExamples(t *testing.T) {
	data, err := os.ReadFile(developmentFile)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, tc := range []struct {
		name    string
		block   string // the first line of the commented block
		env     map[string]string
		adapter string
	}{
		{"filedrop", "    # delivery:\n    #   adapter: filedrop\n", nil, adapterFileDrop},
		{"webhook", "    # delivery:\n    #   adapter: webhook\n", map[string]string{"PRV01_WEBHOOK_SECRET": testSecret}, adapterWebhook},
		{"fhirpush", "  # - code: PRV03\n", map[string]string{"PRV03_FHIR_TOKEN": "token"}, adapterFHIRPush},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i := strings.Index(text, tc.block)
			if i < 0 {
				t.Fatalf("the development configuration has no commented %s example", tc.name)
			}
			// Uncomment the block: its first line, then the lines
			// indented under it.
			lines := strings.SplitAfter(text[i:], "\n")
			indent := lines[0][:strings.Index(lines[0], "#")]
			var b strings.Builder
			n := 0
			for _, l := range lines {
				if !strings.HasPrefix(l, indent+"# ") || (n > 0 && !strings.HasPrefix(l, indent+"#   ")) {
					break
				}
				b.WriteString(indent + strings.TrimPrefix(l, indent+"# "))
				n += len(l)
			}
			edited := text[:i] + b.String() + text[i+n:]
			edited = strings.ReplaceAll(edited, "./data/drop/", filepath.ToSlash(t.TempDir())+"/")
			c, err := loadConfig(writeConfig(t, edited), envMap(tc.env))
			if err != nil {
				t.Fatalf("loadConfig:\n%s\n%v", b.String(), err)
			}
			push := c.pushProviders()
			if len(push) != 1 {
				t.Fatalf("pushProviders() = %v", push)
			}
			for _, p := range c.Providers {
				if p.Code == push[0] && p.Delivery.Adapter != tc.adapter {
					t.Errorf("adapter %q", p.Delivery.Adapter)
				}
			}
			if _, err := c.deliverers(stubChannels{}, nil); err != nil {
				t.Errorf("deliverers: %v", err)
			}
		})
	}
}

func TestProviderConfigs(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name      string
		providers string
		env       map[string]string
		check     func(t *testing.T, c *Config)
	}{
		{name: "webhook", env: map[string]string{"PRV01_SECRET": testSecret}, providers: `  - code: PRV01
    name: Tyneside Link Workers
    case_record:
      fields: [case_id, given_name]
    delivery:
      adapter: webhook
      url: https://cases.example/hook
      secret_env: PRV01_SECRET
      timeout: 5s
` + prv02Plain, check: func(t *testing.T, c *Config) {
			d := c.Providers[0].Delivery
			if string(d.secret) != testSecret || d.Timeout != 5*time.Second {
				t.Errorf("delivery = %+v", d)
			}
			if p := c.pushProviders(); len(p) != 1 || p[0] != "PRV01" {
				t.Errorf("pushProviders() = %v", p)
			}
			if _, ok := c.caseRecords().Providers["PRV02"]; ok {
				t.Error("PRV02, with no case_record, has case records")
			}
		}},
		{name: "webhook with FHIR", env: map[string]string{"PRV01_SECRET": testSecret}, providers: `  - code: PRV01
    name: Tyneside Link Workers
    case_record: {format: fhir}
    delivery: {adapter: webhook, url: "http://127.0.0.1:9000/x", secret_env: PRV01_SECRET}
` + prv02Plain},
		{name: "filedrop", providers: `  - code: PRV01
    name: Tyneside Link Workers
    case_record:
      fields: [case_id, nhs_number]
      date_format: uk
    delivery: {adapter: filedrop, directory: ` + filepath.Join(dir, "a") + `}
  - code: PRV02
    name: Riverside Community Connectors
    case_record: {fields: [case_id]}
    delivery: {adapter: filedrop, directory: ` + filepath.Join(dir, "b") + `}
`, check: func(t *testing.T, c *Config) {
			if _, err := c.deliverers(stubChannels{}, nil); err != nil {
				t.Fatal(err)
			}
			for _, sub := range []string{"a", "b"} {
				if st, err := os.Stat(filepath.Join(dir, sub)); err != nil || !st.IsDir() {
					t.Errorf("the file drop directory %s was not made: %v", sub, err)
				}
			}
		}},
		{name: "fhirpush without case_record", env: map[string]string{"PRV02_TOKEN": "t0ken"}, providers: `  - code: PRV01
    name: Tyneside Link Workers
  - code: PRV02
    name: Riverside Community Connectors
    delivery: {adapter: fhirpush, base_url: "https://fhir.example/R4", token_env: PRV02_TOKEN}
`, check: func(t *testing.T, c *Config) {
			if m := c.caseRecords().Providers["PRV02"]; m.Format != mapping.FormatFHIR {
				t.Errorf("format %q", m.Format)
			}
			if c.Providers[1].Delivery.token != "t0ken" {
				t.Error("token not read")
			}
		}},
		{name: "fhirpush without a token", providers: `  - code: PRV01
    name: Tyneside Link Workers
    case_record: {format: fhir, events: {ACCEPT: {status: accepted}}}
    delivery: {adapter: fhirpush, base_url: "http://fhir.internal:8080/fhir"}
` + prv02Plain},
		{name: "case API only", providers: `  - code: PRV01
    name: Tyneside Link Workers
    case_record:
      fields: [case_id, status]
      codes: {status: {map: {requested: NEW}, default: OTHER}}
      events: {ACCEPT: {status: accepted}, PROM: {prom: true}}
` + prv02Plain, check: func(t *testing.T, c *Config) {
			if len(c.pushProviders()) != 0 {
				t.Error("a provider without delivery is pushed to")
			}
			if m := c.caseRecords().Providers["PRV01"]; m.Codes["status"].Default != "OTHER" || !m.Events["PROM"].PROM {
				t.Errorf("mapping = %+v", m)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadConfig(writeConfig(t, withProviders(tc.providers)), envMap(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := gateway.NewService(c.gatewayConfig(stubStore{})); err != nil {
				t.Errorf("gateway.NewService: %v", err)
			}
			if _, err := c.deliverers(stubChannels{}, nil); err != nil {
				t.Errorf("deliverers: %v", err)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

func TestProviderConfigErrors(t *testing.T) {
	dir := t.TempDir()
	const prv01 = "  - code: PRV01\n    name: Tyneside Link Workers\n"
	for _, tc := range []struct {
		name      string
		providers string
		prod      bool
		outbox    string
		env       map[string]string
		want      []string
		never     []string
	}{
		{name: "unknown adapter", providers: prv01 + "    delivery: {adapter: email}\n" + prv02Plain,
			want: []string{"config: providers[0].delivery.adapter: must be one of webhook, filedrop, fhirpush (got \"email\")"}},
		{name: "unknown key", providers: prv01 + "    delivery: {adapter: webhook, secret: abc}\n" + prv02Plain,
			want: []string{"providers[0].delivery.secret: unknown key (valid keys here: adapter, url, secret_env, directory, base_url, token_env, timeout)"}},
		{name: "webhook needs url, secret and case record", providers: prv01 + "    delivery: {adapter: webhook}\n" + prv02Plain,
			want: []string{
				"config: providers[0].delivery.url: is required",
				"config: providers[0].delivery.secret_env: is required: webhooks are signed",
				"config: providers[0].delivery: a webhook sends the provider's case records: give providers[0].case_record",
			}},
		{name: "secret variable unset", providers: prv01 + "    case_record: {fields: [case_id]}\n    delivery: {adapter: webhook, url: \"https://x.example\", secret_env: PRV01_SECRET}\n" + prv02Plain,
			want: []string{"config: providers[0].delivery.secret_env: the environment variable PRV01_SECRET is not set"}},
		{name: "secret too short", providers: prv01 + "    case_record: {fields: [case_id]}\n    delivery: {adapter: webhook, url: \"https://x.example\", secret_env: PRV01_SECRET}\n" + prv02Plain,
			env:   map[string]string{"PRV01_SECRET": "short-secret-value"},
			want:  []string{"config: providers[0].delivery.secret_env: the secret in PRV01_SECRET is 18 characters long; it must be at least 32"},
			never: []string{"short-secret-value"}},
		{name: "not a variable name", providers: prv01 + "    case_record: {fields: [case_id]}\n    delivery: {adapter: webhook, url: \"https://x.example\", secret_env: \"my secret\"}\n" + prv02Plain,
			want: []string{`config: providers[0].delivery.secret_env: must name an environment variable (capitals, digits and _), got "my secret"`}},
		{name: "bad urls", env: map[string]string{"S": testSecret}, providers: prv01 + "    case_record: {fields: [case_id]}\n    delivery: {adapter: webhook, url: \"ftp://x.example\", secret_env: S}\n" +
			"  - code: PRV02\n    name: Riverside\n    delivery: {adapter: fhirpush, base_url: \"https://user:pw@fhir.example\"}\n",
			want: []string{
				"config: providers[0].delivery.url: must be an absolute http or https URL",
				"config: providers[1].delivery.base_url: must not hold credentials: use secret_env or token_env",
			},
			never: []string{"user:pw"}},
		{name: "a port without a host", env: map[string]string{"S": testSecret}, providers: prv01 + "    case_record: {fields: [case_id]}\n    delivery: {adapter: webhook, url: \"https://:8443/in\", secret_env: S}\n" + prv02Plain,
			want: []string{"config: providers[0].delivery.url: must be an absolute http or https URL"}},
		{name: "http in production", prod: true, env: map[string]string{"S": testSecret}, providers: prv01 + "    case_record: {fields: [case_id]}\n    delivery: {adapter: webhook, url: \"http://x.example\", secret_env: S}\n" + prv02Plain,
			want: []string{"config: providers[0].delivery.url: must be https in production: deliveries carry patient data"}},
		{name: "settings of another adapter", providers: prv01 + "    case_record: {fields: [case_id]}\n    delivery: {adapter: filedrop, directory: " + dir + ", url: \"https://x.example\", token_env: T, timeout: 5s}\n" + prv02Plain,
			env: map[string]string{"T": "t"},
			want: []string{
				"config: providers[0].delivery.url: does not apply to adapter filedrop",
				"config: providers[0].delivery.token_env: does not apply to adapter filedrop",
				"config: providers[0].delivery.timeout: does not apply to adapter filedrop",
			}},
		{name: "filedrop needs a directory and a flat case record", providers: prv01 + "    case_record: {format: fhir}\n    delivery: {adapter: filedrop}\n" + prv02Plain,
			want: []string{
				"config: providers[0].delivery.directory: is required for a file drop",
				"config: providers[0].delivery: a file drop writes case records (CSV and JSON): give providers[0].case_record with format case-record",
			}},
		{name: "two providers, one directory", providers: prv01 + "    case_record: {fields: [case_id]}\n    delivery: {adapter: filedrop, directory: " + dir + "}\n" +
			"  - code: PRV02\n    name: Riverside\n    case_record: {fields: [case_id]}\n    delivery: {adapter: filedrop, directory: " + dir + "/}\n",
			want: []string{"config: providers[1].delivery.directory: is providers[0]'s directory too; each provider needs its own"}},
		{name: "fhirpush with a flat case record", providers: prv01 + "    case_record: {fields: [case_id]}\n    delivery: {adapter: fhirpush, base_url: \"https://f.example\"}\n" + prv02Plain,
			want: []string{"config: providers[0].delivery: FHIR push sends FHIR: providers[0].case_record.format must be fhir"}},
		{name: "bad case record", providers: prv01 + `    case_record:
      fields: [case_id, shoe_size]
      rename: {case_id: ref, given_name: ref}
      codes: {given_name: {map: {a: b}}}
      date_format: us
      events: {DONE: {status: completed, prom: true}, OOPS: {status: draft}}
` + prv02Plain,
			want: []string{
				`config: providers[0].case_record: date_format: "us" is not iso or uk`,
				`config: providers[0].case_record: fields: unknown field "shoe_size"`,
				`config: providers[0].case_record: codes: "given_name" holds no codes to translate`,
				`config: providers[0].case_record: events: DONE: a PROM event records the PROM only`,
				`config: providers[0].case_record: events: OOPS: a provider may not set a Task to draft`,
			}},
		{name: "empty case record", providers: prv01 + "    case_record: {}\n" + prv02Plain,
			want: []string{"config: providers[0].case_record: fields: a case record needs at least one field"}},
		{name: "lease not longer than timeouts", env: map[string]string{"S": testSecret},
			providers: prv01 + "    case_record: {fields: [case_id]}\n    delivery: {adapter: webhook, url: \"https://x.example\", secret_env: S, timeout: 3m}\n" + prv02Plain,
			outbox:    "outbox:\n  lease: 1m\n  timeout: 1m\n  base_delay: 1h\n  max_delay: 1m\n  max_attempts: 0\n",
			want: []string{
				"config: providers[0].delivery.timeout: 3m0s must be less than outbox.lease (1m0s)",
				"config: outbox.lease: 1m0s must be more than outbox.timeout (1m0s)",
				"config: outbox.max_delay: 1m0s is less than outbox.base_delay (1h0m0s)",
				"config: outbox.max_attempts: must be at least 1 (got 0)",
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := withProviders(tc.providers) + tc.outbox
			if tc.prod {
				text = strings.Replace(text, "environment: test", "environment: production", 1)
				text = strings.Replace(text, "  driver: sqlite\n  dsn: ./data/test.db", "  driver: postgres\n  dsn: postgres://u@h/db", 1)
			}
			c, err := loadConfig(writeConfig(t, text), envMap(tc.env))
			if err == nil {
				t.Fatalf("no error; config %+v", c)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			for _, n := range tc.never {
				if strings.Contains(err.Error(), n) {
					t.Errorf("error shows %q:\n%v", n, err)
				}
			}
		})
	}
}

// TestServeDeliversToWebhook runs the gateway with PRV01 pushed to by
// webhook: a referral from A81001 reaches the receiver as PRV01's signed
// case record, holding only its fields.
func TestServeDeliversToWebhook(t *testing.T) {
	type delivery struct {
		id     string
		body   []byte
		verify error
	}
	got := make(chan delivery, 10)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- delivery{id: r.Header.Get(webhook.HeaderDelivery), body: b, verify: webhook.Verify([]byte(testSecret), r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), b, time.Now(), 0)}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()

	data, err := os.ReadFile(developmentFile)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(data), "    # Uncomment to have PRV01's referrals written as files under ./data:\n",
		"    delivery: {adapter: webhook, url: \""+recv.URL+"/hook\", secret_env: PRV01_WEBHOOK_SECRET, timeout: 5s}\n", 1)
	if text == string(data) {
		t.Fatal("the development configuration changed: no place for PRV01's delivery")
	}
	getenv := testEnv(t, map[string]string{"SPGATEWAY_CONFIG": writeConfig(t, text), "PRV01_WEBHOOK_SECRET": testSecret})
	base, logs, stop := startServe(t, getenv)
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	postReferral(t, base)
	select {
	case d := <-got:
		if d.verify != nil {
			t.Errorf("the receiver cannot verify the delivery: %v", d.verify)
		}
		if d.id == "" {
			t.Error("no delivery id")
		}
		var rec map[string]any
		if err := json.Unmarshal(d.body, &rec); err != nil {
			t.Fatalf("case record: %v\n%s", err, d.body)
		}
		if rec["NHS_NO"] != "9434765919" || rec["CASE_REF"] == nil {
			t.Errorf("case record lacks PRV01's fields: %s", d.body)
		}
		if _, ok := rec["STATUS_REASON"]; ok {
			t.Errorf("case record holds a field outside PRV01's allow-list: %s", d.body)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no delivery\n%s", logs)
	}
}
