package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/go-playground/validator/v10"
	"go.yaml.in/yaml/v3"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/oauth"
	"github.com/spgateway/spgateway/gateway/store"
	"github.com/spgateway/spgateway/mapping"
)

// envPrefix starts the name of every environment variable that overrides a
// file setting.
const envPrefix = "SPGATEWAY_"

// The environments a configuration may declare.
const (
	envDevelopment = "development"
	envTest        = "test"
	envProduction  = "production"
)

// Defaults that depend on other settings, applied after the file and the
// environment have been read.
const (
	defaultSQLiteDSN = "./data/spgateway.db"
	defaultListen    = "127.0.0.1:8080"
)

// Config is the gateway's configuration file (YAML), with every scalar
// setting overridable by an environment variable named after its path:
// server.base_url is SPGATEWAY_SERVER_BASE_URL. The lists (practices,
// providers, routing, clients) are read from the file only, so what a
// deployment trusts is always written down in one reviewed place.
type Config struct {
	Environment string          `yaml:"environment" env:"ENVIRONMENT" validate:"required,oneof=development test production"`
	Server      ServerConfig    `yaml:"server" envPrefix:"SERVER_"`
	Limits      LimitsConfig    `yaml:"limits" envPrefix:"LIMITS_"`
	Database    DatabaseConfig  `yaml:"database" envPrefix:"DATABASE_"`
	Log         LogConfig       `yaml:"log" envPrefix:"LOG_"`
	NHSNumber   NHSNumberConfig `yaml:"nhs_number" envPrefix:"NHS_NUMBER_"`
	PROMs       PROMsConfig     `yaml:"proms" envPrefix:"PROMS_"`
	Outbox      OutboxConfig    `yaml:"outbox" envPrefix:"OUTBOX_"`
	OAuth       OAuthConfig     `yaml:"oauth" envPrefix:"OAUTH_"`
	Telemetry   TelemetryConfig `yaml:"telemetry" envPrefix:"TELEMETRY_"`
	Audit       AuditConfig     `yaml:"audit" envPrefix:"AUDIT_"`

	Practices []OrganizationConfig `yaml:"practices" env:"-" validate:"dive"`
	Providers []ProviderConfig     `yaml:"providers" env:"-" validate:"dive"`
	Routing   []RoutingRuleConfig  `yaml:"routing" env:"-" validate:"dive"`
	Clients   []ClientConfig       `yaml:"clients" env:"-" validate:"dive"`

	oauth loadedOAuth // the keys the oauth settings name, read by loadOAuth
}

// ServerConfig is the HTTP listener. BaseURL is the address clients use,
// which differs from Listen behind a proxy or load balancer; the FHIR base
// is BaseURL + "/fhir".
type ServerConfig struct {
	Listen            string        `yaml:"listen" env:"LISTEN" validate:"required,listen"`
	BaseURL           string        `yaml:"base_url" env:"BASE_URL" validate:"required,base_url"`
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout" env:"READ_HEADER_TIMEOUT" validate:"gt=0"`
	ReadTimeout       time.Duration `yaml:"read_timeout" env:"READ_TIMEOUT" validate:"gt=0"`
	WriteTimeout      time.Duration `yaml:"write_timeout" env:"WRITE_TIMEOUT" validate:"gt=0"`
	IdleTimeout       time.Duration `yaml:"idle_timeout" env:"IDLE_TIMEOUT" validate:"gt=0"`
	ShutdownTimeout   time.Duration `yaml:"shutdown_timeout" env:"SHUTDOWN_TIMEOUT" validate:"gt=0"`
	// TrustedProxies are the proxies (addresses or CIDR ranges) whose
	// X-Forwarded-For gives the source address the audit trail records;
	// none by default, so the TCP peer is the source.
	TrustedProxies []string `yaml:"trusted_proxies" env:"TRUSTED_PROXIES" validate:"dive,ip|cidr"`
	// PprofListen, when set, serves Go's runtime profiles (net/http/pprof)
	// on this address, apart from the FHIR listener and without
	// authentication; production refuses anything but a loopback address.
	PprofListen string `yaml:"pprof_listen" env:"PPROF_LISTEN" validate:"omitempty,listen"`
}

// AuditConfig sizes the auditor that writes the audit events of reads and
// refusals in batches (writes are audited in their own transaction).
type AuditConfig struct {
	// Queue is how many events may wait; requests wait for room beyond it.
	Queue int `yaml:"queue" env:"QUEUE" validate:"min=1,max=1000000"`
	// Batch is the most events one insert writes.
	Batch int `yaml:"batch" env:"BATCH" validate:"min=1,max=10000"`
}

// LimitsConfig bounds what one request may cost the server.
type LimitsConfig struct {
	MaxBodyBytes int64 `yaml:"max_body_bytes" env:"MAX_BODY_BYTES" validate:"min=1024"`
	MaxJSONDepth int   `yaml:"max_json_depth" env:"MAX_JSON_DEPTH" validate:"min=8,max=1000"`
	DefaultCount int   `yaml:"default_count" env:"DEFAULT_COUNT" validate:"min=1"`
	MaxCount     int   `yaml:"max_count" env:"MAX_COUNT" validate:"min=1"`
	// RatePerSecond and RateBurst are each authenticated client's token
	// bucket, per replica; a rate of 0 turns the limit off (a rate needs a
	// burst of at least 1).
	RatePerSecond float64 `yaml:"rate_per_second" env:"RATE_PER_SECOND" validate:"min=0"`
	RateBurst     int     `yaml:"rate_burst" env:"RATE_BURST" validate:"min=0"`
	// FailedAuthPerMinute and FailedAuthBurst are each source address's
	// token bucket for failed authentication, per replica; 0 turns it off
	// (a rate needs a burst of at least 1).
	FailedAuthPerMinute float64 `yaml:"failed_auth_per_minute" env:"FAILED_AUTH_PER_MINUTE" validate:"min=0"`
	FailedAuthBurst     int     `yaml:"failed_auth_burst" env:"FAILED_AUTH_BURST" validate:"min=0"`
}

// DatabaseConfig says where the store is; see store.Config.
type DatabaseConfig struct {
	Driver     string `yaml:"driver" env:"DRIVER" validate:"required,oneof=sqlite postgres"`
	DSN        string `yaml:"dsn" env:"DSN" validate:"required"`
	MaxReaders int    `yaml:"max_readers" env:"MAX_READERS" validate:"min=1"`
}

// LogConfig is the process log.
type LogConfig struct {
	Level  string `yaml:"level" env:"LEVEL" validate:"required,oneof=debug info warn error"`
	Format string `yaml:"format" env:"FORMAT" validate:"required,oneof=json text"`
}

// NHSNumberConfig controls NHS number checks.
type NHSNumberConfig struct {
	// RelaxCheckDigit accepts NHS numbers that fail the Modulus 11 check,
	// as some published test data does. Refused in production.
	RelaxCheckDigit bool `yaml:"relax_check_digit" env:"RELAX_CHECK_DIGIT"`
}

// PROMsConfig is about patient-reported outcome measures: each provider's
// programme (instrument and schedule), instruments beyond the built-in
// SWEMWBS, WEMWBS and ONS4, and how often the gateway marks Tasks whose
// follow-up PROM has come due.
type PROMsConfig struct {
	SweepInterval time.Duration      `yaml:"sweep_interval" env:"SWEEP_INTERVAL" validate:"gt=0"`
	Programmes    []ProgrammeConfig  `yaml:"programmes" env:"-" validate:"dive"`
	Instruments   []InstrumentConfig `yaml:"instruments" env:"-" validate:"dive"`
}

// ProgrammeConfig is a gateway.Programme.
type ProgrammeConfig struct {
	Name                string   `yaml:"name" validate:"required"`
	Providers           []string `yaml:"providers" validate:"required,min=1"`
	Instrument          string   `yaml:"instrument" validate:"required"`
	BaselineWithinDays  int      `yaml:"baseline_within_days" validate:"min=1,max=365"`
	FollowUpEveryMonths int      `yaml:"follow_up_every_months" validate:"min=1,max=60"`
}

// InstrumentConfig is a gateway.Instrument defined in configuration.
type InstrumentConfig struct {
	ID      string          `yaml:"id" validate:"required,max=64,token_chars"`
	URL     string          `yaml:"url" validate:"required,url"`
	Title   string          `yaml:"title" validate:"required"`
	Scoring string          `yaml:"scoring" validate:"required,oneof=sum table components"`
	Codes   []CodingConfig  `yaml:"codes" validate:"required,min=1,dive"`
	RawCode *CodingConfig   `yaml:"raw_code"`
	Table   map[int]float64 `yaml:"table"`
	Items   []ItemConfig    `yaml:"items" validate:"required,min=1,dive"`
}

// CodingConfig is a code and its system.
type CodingConfig struct {
	System string `yaml:"system" validate:"required,url"`
	Code   string `yaml:"code" validate:"required"`
}

// ItemConfig is one item of an instrument: linkId, short label, answer range.
type ItemConfig struct {
	LinkID string        `yaml:"link_id" validate:"required"`
	Label  string        `yaml:"label" validate:"required"`
	Min    int           `yaml:"min"`
	Max    int           `yaml:"max"`
	Code   *CodingConfig `yaml:"code"`
}

// OrganizationConfig is a practice or a provider. Code is its ODS code or
// local id, and becomes its FHIR Organization id.
type OrganizationConfig struct {
	Code string `yaml:"code" validate:"required,alphanum,min=3,max=10"`
	Name string `yaml:"name" validate:"required"`
}

// RoutingRuleConfig is a gateway.RoutingRule: empty conditions match
// anything, and the first matching rule wins.
type RoutingRuleConfig struct {
	Practice          string   `yaml:"practice"`
	PostcodeDistricts []string `yaml:"postcode_districts" validate:"dive,postcode_district"`
	Reasons           []string `yaml:"reasons" validate:"dive,sctid"`
	Provider          string   `yaml:"provider" validate:"required"`
}

// ClientConfig is a registered API client. APIKey is a development static
// key (SPEC 4.1), refused in production. JWKSFile and PublicKeyFile register
// the public keys its client assertions are signed with (SPEC 4); KID names
// the PublicKeyFile key (its RFC 7638 thumbprint when empty).
type ClientConfig struct {
	ID            string `yaml:"id" validate:"required,max=128,token_chars"`
	Role          string `yaml:"role" validate:"required,oneof=practice provider admin"`
	Organization  string `yaml:"organization"`
	APIKey        string `yaml:"api_key" validate:"omitempty,min=8,max=512,token_chars"`
	JWKSFile      string `yaml:"jwks_file"`
	PublicKeyFile string `yaml:"public_key_file"`
	KID           string `yaml:"kid" validate:"omitempty,max=128"`
}

// defaultConfig holds the defaults that do not depend on other settings. The
// file is decoded over it, so a key left out keeps its default and a key
// given (even as 0) is validated as given.
func defaultConfig() *Config {
	return &Config{
		Server: ServerConfig{
			Listen:            defaultListen,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      60 * time.Second,
			IdleTimeout:       120 * time.Second,
			ShutdownTimeout:   20 * time.Second,
		},
		Limits: LimitsConfig{
			MaxBodyBytes: 1 << 20,
			MaxJSONDepth: 64,
			DefaultCount: 50,
			MaxCount:     500,
		},
		Database: DatabaseConfig{Driver: store.DriverSQLite, MaxReaders: 8},
		Log:      LogConfig{Level: "info", Format: "json"},
		PROMs:    PROMsConfig{SweepInterval: 5 * time.Minute},
		Outbox:   defaultOutbox(),
		OAuth:    OAuthConfig{TokenLifetime: oauth.DefaultTokenLifetime},
		Telemetry: TelemetryConfig{
			ServiceName: "spgateway",
			Traces:      TracesConfig{Exporter: tracesNone, SampleRatio: 1},
			Metrics:     MetricsConfig{Enabled: true},
		},
		Audit: AuditConfig{Queue: 1024, Batch: 256},
	}
}

// loadConfig reads the YAML file at path, applies the SPGATEWAY_ environment
// variables that getenv returns, fills in defaults and validates the result.
// Its error lists every problem found, one per line, each naming the setting
// (and the file line or variable it came from) and what is wrong with it.
func loadConfig(path string, getenv func(string) string) (*Config, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	if path == "" {
		return nil, errors.New("config: no configuration file given")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c := defaultConfig()
	var ps problems
	if fatal := decodeYAML(data, c, &ps); fatal {
		return nil, ps.err()
	}
	vars := envVars(reflect.TypeOf(*c), envPrefix, "")
	fromEnv := applyEnv(c, vars, getenv, &ps)
	c.resolveSecrets(getenv, &ps)
	c.applyDerivedDefaults()
	var checked problems
	c.validate(&checked)
	c.loadOAuth(filepath.Dir(path), getenv, &checked)
	ps = append(ps, checked.without(ps)...)
	ps.annotate(vars, fromEnv)
	if err := ps.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// applyDerivedDefaults fills in the defaults that depend on other settings.
func (c *Config) applyDerivedDefaults() {
	if c.Database.DSN == "" && c.Database.Driver == store.DriverSQLite {
		c.Database.DSN = defaultSQLiteDSN
	}
	if c.Server.BaseURL == "" {
		// Listening on every interface says nothing about the name clients
		// use; the loopback address is the useful guess on a workstation.
		host, port, err := net.SplitHostPort(c.Server.Listen)
		if err != nil {
			// Validation reports the listen address; a guess here keeps
			// base_url out of that report.
			host, port, _ = net.SplitHostPort(defaultListen)
		}
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			host = "127.0.0.1"
		}
		c.Server.BaseURL = "http://" + net.JoinHostPort(host, port)
	}
}

// production reports whether c is a production configuration.
func (c *Config) production() bool { return c.Environment == envProduction }

// fhirBaseURL is the absolute FHIR base clients see, used in Bundle links and
// fullUrls.
func (c *Config) fhirBaseURL() string { return c.Server.BaseURL + "/fhir" }

// storeConfig converts the database settings.
func (c *Config) storeConfig() store.Config {
	return store.Config{
		Driver:     c.Database.Driver,
		DSN:        c.Database.DSN,
		MaxReaders: c.Database.MaxReaders,
	}
}

// organizations returns the practices, then the providers, in file order.
func (c *Config) organizations() []gateway.Organization {
	orgs := make([]gateway.Organization, 0, len(c.Practices)+len(c.Providers))
	for _, o := range c.Practices {
		orgs = append(orgs, gateway.Organization{Code: o.Code, Name: o.Name, Kind: gateway.OrgPractice})
	}
	for _, o := range c.Providers {
		orgs = append(orgs, gateway.Organization{Code: o.Code, Name: o.Name, Kind: gateway.OrgProvider})
	}
	return orgs
}

// routingRules converts the routing rules, keeping their order (the first
// match wins).
func (c *Config) routingRules() []gateway.RoutingRule {
	rules := make([]gateway.RoutingRule, 0, len(c.Routing))
	for _, r := range c.Routing {
		rules = append(rules, gateway.RoutingRule{
			Practice:          r.Practice,
			PostcodeDistricts: slices.Clone(r.PostcodeDistricts),
			Reasons:           slices.Clone(r.Reasons),
			Provider:          r.Provider,
		})
	}
	return rules
}

// staticKeys returns the development API keys of the clients that have one.
func (c *Config) staticKeys() []gateway.StaticKey {
	var keys []gateway.StaticKey
	for _, cl := range c.Clients {
		if cl.APIKey == "" {
			continue
		}
		keys = append(keys, gateway.StaticKey{
			Key: cl.APIKey,
			Principal: gateway.Principal{
				ClientID: cl.ID,
				Role:     gateway.Role(cl.Role),
				Org:      cl.Organization,
			},
		})
	}
	return keys
}

// gatewayConfig is the gateway.Config for c over an open store.
func (c *Config) gatewayConfig(st gateway.Store) gateway.Config {
	return gateway.Config{
		Store:               st,
		Documents:           mapping.Documents{},
		Organizations:       c.organizations(),
		Routing:             c.routingRules(),
		RelaxNHSNumberCheck: c.NHSNumber.RelaxCheckDigit,
		Instruments:         c.instruments(),
		Programmes:          c.programmes(),
		Cases:               c.caseRecords(),
		PushProviders:       c.pushProviders(),

		SubscriptionEndpoints: c.Outbox.subscriptionEndpoints(),
	}
}

const msgRequired = "is required"

// A problem is one thing wrong with a configuration. Path is the setting in
// YAML terms (clients[2].organization), empty when the problem is with the
// file as a whole; Line is its line in the file, when known.
type problem struct {
	Line int
	Path string
	Msg  string
}

type problems []problem

func (ps *problems) add(path, format string, args ...any) {
	*ps = append(*ps, problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// annotate tells, for each problem with a setting an environment variable
// set, which variable it was, since the file shows another value; and for a
// missing setting, the variable that can give it.
func (ps problems) annotate(vars []envVar, fromEnv map[string]string) {
	for i, p := range ps {
		if key, ok := fromEnv[p.Path]; ok {
			if !strings.Contains(p.Msg, key) {
				ps[i].Msg += " (set by " + key + ")"
			}
			continue
		}
		if p.Msg != msgRequired {
			continue
		}
		for _, v := range vars {
			if v.path == p.Path {
				ps[i].Msg += " (in the file, or as " + v.key + ")"
			}
		}
	}
}

// without drops the problems with settings that earlier already has a
// problem with: a value the file gave in the wrong form was not decoded, so
// what validation says of the setting would only confuse.
func (ps problems) without(earlier problems) problems {
	var kept problems
	for _, p := range ps {
		if p.Path == "" || !slices.ContainsFunc(earlier, func(e problem) bool { return e.Path == p.Path }) {
			kept = append(kept, p)
		}
	}
	return kept
}

func (ps problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	lines := make([]string, len(ps))
	for i, p := range ps {
		var b strings.Builder
		b.WriteString("config: ")
		if p.Line > 0 {
			fmt.Fprintf(&b, "line %d: ", p.Line)
		}
		if p.Path != "" {
			b.WriteString(p.Path + ": ")
		}
		b.WriteString(p.Msg)
		// One line per problem, even when a key in the file spans lines.
		lines[i] = strings.ReplaceAll(b.String(), "\n", `\n`)
	}
	return errors.New(strings.Join(lines, "\n"))
}

// secret reports whether the setting at path must never be echoed: a
// PostgreSQL DSN carries a password, and an API key is a credential.
func secret(path string) bool {
	return strings.HasSuffix(path, "dsn") || strings.HasSuffix(path, "api_key")
}

// decodeYAML decodes data over c, rejecting unknown keys. It reports
// whether the problems it added are fatal (the file cannot be read as YAML
// at all); problems with single values are not, so that validation can
// report the rest of the file too.
func decodeYAML(data []byte, c *Config, ps *problems) (fatal bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(c)
	if errors.Is(err, io.EOF) {
		return false // an empty file: validation says what is missing
	}
	var te *yaml.TypeError
	if err != nil && !errors.As(err, &te) {
		ps.add("", "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		return true
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root) // it parsed once already
	var spots []yamlSpot
	yamlSpots(&root, reflect.TypeOf(*c), "", &spots)
	if te != nil {
		for _, msg := range te.Errors {
			*ps = append(*ps, explainYAML(msg, spots))
		}
	}
	// The decoder truncates 1.5 to 1 for a whole-number setting; refuse it.
	for _, s := range spots {
		if s.key || s.tag != "!!float" || s.typ == nil || s.typ.Kind() < reflect.Int || s.typ.Kind() > reflect.Uint64 {
			continue
		}
		if f, err := strconv.ParseFloat(s.value, 64); err != nil || f != math.Trunc(f) {
			if !slices.ContainsFunc(*ps, func(p problem) bool { return p.Path == s.path }) {
				*ps = append(*ps, problem{Line: s.line, Path: s.path, Msg: fmt.Sprintf("want %s, got %q", describeType(s.typ), s.value)})
			}
		}
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		ps.add("", "the file holds more than one YAML document; put the whole configuration in one")
		return true
	}
	return false
}

// A yamlSpot is a key or value of a YAML document, where it is and which
// setting it is, so that the decoder's messages, which give only a line
// and a Go type, can name the setting.
type yamlSpot struct {
	line  int
	key   bool
	value string       // a scalar's text; empty for mappings and lists
	tag   string       // a value's resolved tag, such as !!int
	kind  yaml.Kind    // of a value
	path  string       // the setting, e.g. clients[2].organization
	typ   reflect.Type // a value's Go type; for a key, the struct that holds it; nil if unknown
}

// yamlSpots walks n (decoded into Go type t, when known) and lists its keys
// and values. Aliases are not followed, so a document that repeats itself
// through anchors cannot make the walk expensive.
func yamlSpots(n *yaml.Node, t reflect.Type, path string, out *[]yamlSpot) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			yamlSpots(c, t, path, out)
		}
	case yaml.MappingNode:
		*out = append(*out, yamlSpot{line: n.Line, kind: n.Kind, path: path, typ: t})
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			*out = append(*out, yamlSpot{line: k.Line, key: true, value: k.Value, path: p, typ: t})
			yamlSpots(v, yamlFieldType(t, k.Value), p, out)
		}
	case yaml.SequenceNode:
		*out = append(*out, yamlSpot{line: n.Line, kind: n.Kind, path: path, typ: t})
		var elem reflect.Type
		if t != nil && t.Kind() == reflect.Slice {
			elem = t.Elem()
		}
		for i, c := range n.Content {
			yamlSpots(c, elem, fmt.Sprintf("%s[%d]", path, i), out)
		}
	case yaml.ScalarNode, yaml.AliasNode:
		*out = append(*out, yamlSpot{line: n.Line, kind: n.Kind, value: n.Value, tag: n.ShortTag(), path: path, typ: t})
	}
}

// yamlName is the key of a struct field in the file.
func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

// yamlFieldType is the Go type of key in struct type t, or nil.
func yamlFieldType(t reflect.Type, key string) reflect.Type {
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	for i := 0; i < t.NumField(); i++ {
		if yamlName(t.Field(i)) == key {
			ft := t.Field(i).Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem() // an optional section
			}
			return ft
		}
	}
	return nil
}

// yamlKeys lists the keys struct type t accepts.
func yamlKeys(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if n := yamlName(t.Field(i)); n != "" {
			keys = append(keys, n)
		}
	}
	return keys
}

var (
	yamlUnknownKey = regexp.MustCompile(`(?s)^line (\d+): field (.*) not found in type \S+$`)
	yamlDuplicate  = regexp.MustCompile(`(?s)^line (\d+): mapping key (".*") already defined at line (\d+)$`)
	yamlWrongType  = regexp.MustCompile("(?s)^line (\\d+): cannot unmarshal (\\S+)(?: `(.*)`)? into (\\S+)$")
)

// explainYAML turns one of the decoder's type errors into a problem that
// names the setting.
func explainYAML(msg string, spots []yamlSpot) problem {
	find := func(line int, key bool, match func(yamlSpot) bool) (yamlSpot, bool) {
		for _, s := range spots {
			if s.line == line && s.key == key && match(s) {
				return s, true
			}
		}
		return yamlSpot{}, false
	}
	if m := yamlUnknownKey.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		s, ok := find(line, true, func(s yamlSpot) bool { return s.value == m[2] })
		if ok && s.typ != nil && s.typ.Kind() == reflect.Struct {
			return problem{Line: line, Path: s.path, Msg: "unknown key (valid keys here: " + strings.Join(yamlKeys(s.typ), ", ") + ")"}
		}
		return problem{Line: line, Path: m[2], Msg: "unknown key"}
	}
	if m := yamlDuplicate.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		key, _ := strconv.Unquote(m[2])
		path := key
		if s, ok := find(line, true, func(s yamlSpot) bool { return s.value == key }); ok {
			path = s.path
		}
		return problem{Line: line, Path: path, Msg: "given twice (first at line " + m[3] + ")"}
	}
	if m := yamlWrongType.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		shown := strings.TrimSuffix(m[3], "...")
		s, ok := find(line, false, func(s yamlSpot) bool {
			if s.typ == nil || s.typ.String() != m[4] {
				return false
			}
			switch m[2] {
			case "!!map":
				return s.kind == yaml.MappingNode
			case "!!seq":
				return s.kind == yaml.SequenceNode
			}
			return s.kind != yaml.MappingNode && s.kind != yaml.SequenceNode && strings.HasPrefix(s.value, shown)
		})
		if ok {
			got := "a value"
			switch {
			case s.kind == yaml.MappingNode:
				got = "a mapping"
			case s.kind == yaml.SequenceNode:
				got = "a list"
			case !secret(s.path):
				got = strconv.Quote(s.value)
			}
			return problem{Line: line, Path: s.path, Msg: "want " + describeType(s.typ) + ", got " + got}
		}
		return problem{Line: line, Msg: strings.TrimPrefix(msg, "line "+m[1]+": ")}
	}
	return problem{Msg: msg}
}

// describeType says in words what a setting of Go type t holds.
func describeType(t reflect.Type) string {
	switch {
	case t == reflect.TypeOf(time.Duration(0)):
		return "a duration such as 30s, 2m or 1h30m"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "a whole number"
	case t.Kind() == reflect.Float64:
		return "a number"
	case t.Kind() == reflect.String:
		return "a single value"
	case t.Kind() == reflect.Slice:
		return "a list"
	case t.Kind() == reflect.Struct:
		return "a mapping of keys to values"
	}
	return t.String()
}

// An envVar is an environment variable that overrides a setting.
type envVar struct {
	key   string       // SPGATEWAY_SERVER_BASE_URL
	path  string       // server.base_url
	field string       // BaseURL, as env.ParseError names it
	typ   reflect.Type // of the setting
}

// envVars lists the variables struct type t reads, from its env and
// envPrefix tags, the same tags env.ParseWithOptions follows.
func envVars(t reflect.Type, prefix, path string) []envVar {
	var vars []envVar
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		p := yamlName(f)
		if path != "" {
			p = path + "." + p
		}
		if sub, ok := f.Tag.Lookup("envPrefix"); ok && f.Type.Kind() == reflect.Struct {
			vars = append(vars, envVars(f.Type, prefix+sub, p)...)
			continue
		}
		key, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if key == "" || key == "-" {
			continue
		}
		vars = append(vars, envVar{key: prefix + key, path: p, field: f.Name, typ: f.Type})
	}
	return vars
}

// applyEnv overrides settings of c with the variables vars that getenv
// returns (empty means unset). It returns the variable that set each
// setting it changed, by setting path.
func applyEnv(c *Config, vars []envVar, getenv func(string) string, ps *problems) map[string]string {
	environ := make(map[string]string) // never nil: env would read the process environment
	fromEnv := make(map[string]string)
	for _, v := range vars {
		if val := getenv(v.key); val != "" {
			environ[v.key] = val
			fromEnv[v.path] = v.key
		}
	}
	err := env.ParseWithOptions(c, env.Options{Environment: environ, Prefix: envPrefix})
	if err == nil {
		return fromEnv
	}
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		ps.add("", "environment: %v", err)
		return fromEnv
	}
	for _, e := range agg.Errors {
		var pe env.ParseError
		if !errors.As(e, &pe) {
			ps.add("", "environment: %v", e)
			continue
		}
		found := false
		for _, v := range vars {
			if v.field == pe.Name && environ[v.key] != "" {
				ps.add(v.path, "%s: want %s, got %q", v.key, describeType(v.typ), environ[v.key])
				found = true
				break
			}
		}
		if !found {
			ps.add("", "environment: %v", e)
		}
	}
	return fromEnv
}

// newValidator returns the validator for Config: field names in its
// errors are YAML keys, and it knows the gateway's own formats.
func newValidator() *validator.Validate {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(yamlName)
	str := func(ok func(string) bool) validator.Func {
		return func(fl validator.FieldLevel) bool { return ok(fl.Field().String()) }
	}
	// Registration fails only for an empty tag or a nil function.
	_ = v.RegisterValidation("listen", str(validListen))
	_ = v.RegisterValidation("base_url", str(validBaseURL))
	_ = v.RegisterValidation("postcode_district", str(postcodeDistrict.MatchString))
	_ = v.RegisterValidation("sctid", str(validSCTID))
	_ = v.RegisterValidation("token_chars", str(tokenChars.MatchString))
	return v
}

var (
	// postcodeDistrict is a UK outward code: NE4, M1, SW1A, EC1V.
	postcodeDistrict = regexp.MustCompile(`^(?i)[A-Z]{1,2}[0-9][0-9A-Z]?$`)
	// tokenChars are the characters RFC 6750 allows in a bearer token. Keys
	// are sent as one; client ids keep to them too, so that they appear in
	// tokens, headers and logs without escaping.
	tokenChars = regexp.MustCompile(`^[A-Za-z0-9\-._~+/]+=*$`)
)

// validListen accepts host:port with a port from 1 to 65535; the host may be
// empty (every interface), an IP address or a name.
func validListen(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return false
	}
	return host == "" || net.ParseIP(host) != nil || hostname.MatchString(host)
}

// loopbackListen reports whether the listen address s is reachable only from
// this machine: a loopback IP address or "localhost". An empty host means
// every interface.
func loopbackListen(s string) bool {
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

var hostname = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

// validBaseURL accepts the absolute http(s) URL of the server root, to
// which paths such as /fhir are appended.
func validBaseURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(s, "/") {
		return false
	}
	return u.Scheme == "http" || u.Scheme == "https"
}

// validSCTID accepts a SNOMED CT identifier: 6 to 18 digits, no leading zero,
// and a valid Verhoeff check digit, which catches a mistyped code that would
// otherwise make a routing rule silently never match.
func validSCTID(s string) bool {
	if len(s) < 6 || len(s) > 18 || s[0] == '0' {
		return false
	}
	c := 0
	for i := len(s) - 1; i >= 0; i-- {
		d := s[i]
		if d < '0' || d > '9' {
			return false
		}
		c = verhoeffD[c][verhoeffP[(len(s)-1-i)%8][d-'0']]
	}
	return c == 0
}

// The Verhoeff dihedral group and permutation tables.
var (
	verhoeffD = [10][10]int{
		{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 2, 3, 4, 0, 6, 7, 8, 9, 5},
		{2, 3, 4, 0, 1, 7, 8, 9, 5, 6}, {3, 4, 0, 1, 2, 8, 9, 5, 6, 7},
		{4, 0, 1, 2, 3, 9, 5, 6, 7, 8}, {5, 9, 8, 7, 6, 0, 4, 3, 2, 1},
		{6, 5, 9, 8, 7, 1, 0, 4, 3, 2}, {7, 6, 5, 9, 8, 2, 1, 0, 4, 3},
		{8, 7, 6, 5, 9, 3, 2, 1, 0, 4}, {9, 8, 7, 6, 5, 4, 3, 2, 1, 0},
	}
	verhoeffP = [8][10]int{
		{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 5, 7, 6, 2, 8, 3, 0, 9, 4},
		{5, 8, 0, 3, 7, 9, 6, 1, 4, 2}, {8, 9, 1, 6, 0, 4, 3, 5, 2, 7},
		{9, 4, 5, 3, 1, 2, 6, 8, 7, 0}, {4, 2, 8, 6, 5, 7, 3, 9, 0, 1},
		{2, 7, 9, 3, 8, 0, 6, 4, 1, 5}, {7, 0, 4, 6, 9, 1, 3, 2, 5, 8},
	}
)

// validate adds to ps every problem with c: first the rules on single
// settings (struct tags), then the rules that relate settings.
func (c *Config) validate(ps *problems) {
	if err := newValidator().Struct(c); err != nil {
		var ves validator.ValidationErrors
		if !errors.As(err, &ves) {
			ps.add("", "%v", err)
		}
		for _, fe := range ves {
			_, path, _ := strings.Cut(fe.Namespace(), ".") // drop "Config."
			ps.add(path, "%s", describeFieldError(fe, path))
		}
	}
	c.validateDatabase(ps)
	if c.Limits.DefaultCount > c.Limits.MaxCount {
		ps.add("limits.default_count", "%d is more than limits.max_count (%d)", c.Limits.DefaultCount, c.Limits.MaxCount)
	}
	if c.Limits.RatePerSecond > 0 && c.Limits.RateBurst < 1 {
		ps.add("limits.rate_burst", "must be at least 1 when limits.rate_per_second is set (got %d)", c.Limits.RateBurst)
	}
	if c.Limits.FailedAuthPerMinute > 0 && c.Limits.FailedAuthBurst < 1 {
		ps.add("limits.failed_auth_burst", "must be at least 1 when limits.failed_auth_per_minute is set (got %d)", c.Limits.FailedAuthBurst)
	}
	if c.production() && c.Server.PprofListen != "" && !loopbackListen(c.Server.PprofListen) {
		ps.add("server.pprof_listen", "must be a loopback address in production (got %q): profiles expose the process's memory and are served without authentication", c.Server.PprofListen)
	}
	if c.production() && c.NHSNumber.RelaxCheckDigit {
		ps.add("nhs_number.relax_check_digit", "is refused in production: every NHS number must pass the check digit")
	}
	if c.production() && c.Outbox.SubscriptionAllowHTTP {
		ps.add("outbox.subscription_allow_http", "is refused in production: a Task sent to a Subscription must be encrypted in transit")
	}
	kinds := c.validateOrganizations(ps)
	c.validateRouting(kinds, ps)
	c.validateClients(kinds, ps)
	c.validatePROMs(kinds, ps)
	c.validateProviders(ps)
}

// validatePROMs checks each configured instrument as the gateway will use
// it, and that programmes name known providers (each once) and instruments.
func (c *Config) validatePROMs(kinds map[string]gateway.OrgKind, ps *problems) {
	known := map[string]bool{}
	for _, in := range gateway.BuiltInInstruments() {
		known[in.ID], known[in.URL] = true, true
	}
	for i, in := range c.instruments() {
		path := fmt.Sprintf("proms.instruments[%d]", i)
		if err := gateway.CheckInstrument(in); err != nil {
			ps.add(path, "%v", err)
		}
		if known[in.ID] || known[in.URL] {
			ps.add(path, "id %q or url %q is already an instrument's", in.ID, in.URL)
		}
		known[in.ID], known[in.URL] = true, true
	}
	programmeOf := map[string]string{}
	for i, p := range c.PROMs.Programmes {
		path := fmt.Sprintf("proms.programmes[%d]", i)
		if p.Instrument != "" && !known[p.Instrument] {
			ps.add(path+".instrument", "%q is not an instrument (swemwbs, wemwbs, ons4, or one under proms.instruments)", p.Instrument)
		}
		for j, code := range p.Providers {
			if msg := checkOrg(kinds, code, gateway.OrgProvider); msg != "" {
				ps.add(fmt.Sprintf("%s.providers[%d]", path, j), "%s", msg)
			}
			if other, dup := programmeOf[code]; dup {
				ps.add(fmt.Sprintf("%s.providers[%d]", path, j), "%q is already in programme %q", code, other)
			}
			programmeOf[code] = p.Name
		}
	}
}

// instruments converts the configured instruments.
func (c *Config) instruments() []gateway.Instrument {
	coding := func(cc *CodingConfig) gateway.Coding {
		if cc == nil {
			return gateway.Coding{}
		}
		return gateway.Coding{System: cc.System, Code: cc.Code}
	}
	var out []gateway.Instrument
	for _, ic := range c.PROMs.Instruments {
		in := gateway.Instrument{ID: ic.ID, URL: ic.URL, Title: ic.Title, Scoring: gateway.ScoringMethod(ic.Scoring),
			Table: ic.Table, RawCode: coding(ic.RawCode)}
		for _, cc := range ic.Codes {
			in.Codes = append(in.Codes, coding(&cc))
		}
		for _, it := range ic.Items {
			in.Items = append(in.Items, gateway.Item{LinkID: it.LinkID, Label: it.Label, Min: it.Min, Max: it.Max, Code: coding(it.Code)})
		}
		out = append(out, in)
	}
	return out
}

// programmes converts the configured programmes.
func (c *Config) programmes() []gateway.Programme {
	var out []gateway.Programme
	for _, p := range c.PROMs.Programmes {
		out = append(out, gateway.Programme{Name: p.Name, Providers: p.Providers, Instrument: p.Instrument,
			Schedule: gateway.Schedule{BaselineDays: p.BaselineWithinDays, FollowUpMonths: p.FollowUpEveryMonths}})
	}
	return out
}

// describeFieldError says what is wrong with one setting. It never shows
// the value of a secret setting.
func describeFieldError(fe validator.FieldError, path string) string {
	got := ""
	if !secret(path) {
		if s, ok := fe.Value().(string); ok {
			got = fmt.Sprintf(" (got %q)", s)
		} else if d, ok := fe.Value().(time.Duration); ok {
			got = " (got " + d.String() + ")"
		} else {
			got = fmt.Sprintf(" (got %v)", fe.Value())
		}
	}
	switch fe.Tag() {
	case "required":
		return msgRequired
	case "oneof":
		return "must be one of " + strings.ReplaceAll(fe.Param(), " ", ", ") + got
	case "min", "max":
		word := map[string]string{"min": "at least", "max": "at most"}[fe.Tag()]
		switch fe.Kind() {
		case reflect.String:
			return fmt.Sprintf("must be %s %s characters long%s", word, fe.Param(), got)
		case reflect.Slice:
			return fmt.Sprintf("must have %s %s items", word, fe.Param())
		}
		return fmt.Sprintf("must be %s %s%s", word, fe.Param(), got)
	case "gt":
		return "must be more than " + fe.Param() + got
	case "alphanum":
		return "must hold only letters and digits" + got
	case "listen":
		return "must be host:port with a port from 1 to 65535, such as 127.0.0.1:8080 or :8080" + got
	case "base_url":
		return "must be the absolute http or https URL of the server root, with no trailing slash, query or fragment, such as https://gateway.example.org" + got
	case "postcode_district":
		return "must be a postcode district (the outward code, such as NE4 or SW1A)" + got
	case "sctid":
		return "must be a SNOMED CT code: 6 to 18 digits with a valid check digit" + got
	case "token_chars":
		return "may hold only letters, digits and -._~+/" + got
	}
	return fmt.Sprintf("fails the %q rule%s", fe.Tag(), got)
}

// validateDatabase checks that the DSN suits the driver. Messages never
// quote the DSN, which may hold a password.
func (c *Config) validateDatabase(ps *problems) {
	dsn := c.Database.DSN
	if dsn == "" {
		return // reported as required
	}
	switch c.Database.Driver {
	case store.DriverSQLite:
		path := strings.TrimPrefix(dsn, "file:")
		switch {
		case strings.Contains(dsn, "://"):
			ps.add("database.dsn", "must be a file path for sqlite, not a URL (for PostgreSQL set database.driver to postgres)")
		case strings.Contains(path, "?"):
			ps.add("database.dsn", "must be a plain file path for sqlite; the gateway sets the connection options itself")
		case path == ":memory:" || strings.HasPrefix(path, ":memory:"):
			ps.add("database.dsn", "must be a file path: an in-memory database is not shared between the gateway's connections")
		}
	case store.DriverPostgres:
		u, err := url.Parse(dsn)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			ps.add("database.dsn", "must be a postgres:// URL for postgres, such as postgres://user:password@host:5432/spgateway")
		}
	}
}

// validateOrganizations checks that every code names one organisation, and
// returns the kind of each.
func (c *Config) validateOrganizations(ps *problems) map[string]gateway.OrgKind {
	kinds := make(map[string]gateway.OrgKind)
	first := make(map[string]string)
	check := func(path, code string, kind gateway.OrgKind) {
		if code == "" {
			return
		}
		if prev, ok := first[code]; ok {
			ps.add(path, "%q is already used by %s; codes must be unique across practices and providers", code, prev)
			return
		}
		first[code] = path
		kinds[code] = kind
	}
	for i, o := range c.Practices {
		check(fmt.Sprintf("practices[%d].code", i), o.Code, gateway.OrgPractice)
	}
	for i, o := range c.Providers {
		check(fmt.Sprintf("providers[%d].code", i), o.Code, gateway.OrgProvider)
	}
	return kinds
}

// checkOrg returns what is wrong with code as a reference to an
// organisation of kind want, or "".
func checkOrg(kinds map[string]gateway.OrgKind, code string, want gateway.OrgKind) string {
	got, ok := kinds[code]
	switch {
	case !ok:
		return fmt.Sprintf("%q is not a configured %s", code, want)
	case got != want:
		return fmt.Sprintf("%q is a %s, not a %s", code, got, want)
	}
	return ""
}

// validateRouting checks that rules name configured organisations and that
// none is hidden behind an earlier catch-all rule.
func (c *Config) validateRouting(kinds map[string]gateway.OrgKind, ps *problems) {
	catchAll := -1
	for i, r := range c.Routing {
		if r.Practice != "" {
			if msg := checkOrg(kinds, r.Practice, gateway.OrgPractice); msg != "" {
				ps.add(fmt.Sprintf("routing[%d].practice", i), "%s", msg)
			}
		}
		if r.Provider != "" {
			if msg := checkOrg(kinds, r.Provider, gateway.OrgProvider); msg != "" {
				ps.add(fmt.Sprintf("routing[%d].provider", i), "%s", msg)
			}
		}
		if catchAll >= 0 {
			ps.add(fmt.Sprintf("routing[%d]", i), "is never used: routing[%d] has no conditions, matches every referral and comes first", catchAll)
		} else if r.Practice == "" && len(r.PostcodeDistricts) == 0 && len(r.Reasons) == 0 {
			catchAll = i
		}
	}
}

// validateClients checks that client ids and keys are unique, that each
// client is bound to an organisation of its role, and that production has
// no development keys.
func (c *Config) validateClients(kinds map[string]gateway.OrgKind, ps *problems) {
	ids := make(map[string]int)
	keys := make(map[string]int)
	for i, cl := range c.Clients {
		at := func(field string) string { return fmt.Sprintf("clients[%d].%s", i, field) }
		if cl.ID != "" {
			if j, ok := ids[cl.ID]; ok {
				ps.add(at("id"), "%q is already the id of clients[%d]", cl.ID, j)
			} else {
				ids[cl.ID] = i
			}
		}
		switch gateway.Role(cl.Role) {
		case gateway.RolePractice, gateway.RoleProvider:
			want := gateway.OrgKind(cl.Role)
			if cl.Organization == "" {
				ps.add(at("organization"), "is required for a %s client", cl.Role)
			} else if msg := checkOrg(kinds, cl.Organization, want); msg != "" {
				ps.add(at("organization"), "%s", msg)
			}
		case gateway.RoleAdmin:
			if cl.Organization != "" {
				ps.add(at("organization"), "must be empty for an admin client (got %q)", cl.Organization)
			}
		}
		if cl.APIKey == "" {
			continue
		}
		if c.production() {
			ps.add(at("api_key"), "development keys are refused in production")
		}
		if j, ok := keys[cl.APIKey]; ok {
			ps.add(at("api_key"), "is the same key as clients[%d].api_key; every client needs its own", j)
		} else {
			keys[cl.APIKey] = i
		}
	}
}
