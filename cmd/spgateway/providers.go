package main

import (
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/spgateway/spgateway/adapters/fhirpush"
	"github.com/spgateway/spgateway/adapters/filedrop"
	"github.com/spgateway/spgateway/adapters/resthook"
	"github.com/spgateway/spgateway/adapters/webhook"
	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/mapping"
)

// The delivery adapters a provider may use.
const (
	adapterWebhook  = "webhook"
	adapterFileDrop = "filedrop"
	adapterFHIRPush = "fhirpush"
)

// minSecret is the shortest webhook secret accepted: 32 characters, as many
// bytes as the HMAC-SHA256 key it becomes.
const minSecret = 32

// ProviderConfig is a link worker service: its code and name, and, for a
// service that does not poll the FHIR API, how its case records look
// (case_record) and how they reach it (delivery).
type ProviderConfig struct {
	Code string `yaml:"code" validate:"required,alphanum,min=3,max=10"`
	Name string `yaml:"name" validate:"required"`
	// CaseRecord opens the case API (/api/v1/cases) to the provider and
	// shapes what its delivery carries.
	CaseRecord *CaseRecordConfig `yaml:"case_record"`
	// Delivery pushes each new referral, and each change the practice
	// makes, to the provider through the outbox.
	Delivery *DeliveryConfig `yaml:"delivery"`
}

// CaseRecordConfig is a mapping.ProviderMapping, checked by
// mapping.CheckProviderMapping.
type CaseRecordConfig struct {
	Format     string                     `yaml:"format"`
	Fields     []string                   `yaml:"fields"`
	Rename     map[string]string          `yaml:"rename"`
	Codes      map[string]CodeTableConfig `yaml:"codes"`
	DateFormat string                     `yaml:"date_format"`
	Events     map[string]EventConfig     `yaml:"events"`
}

// CodeTableConfig is a mapping.CodeTable.
type CodeTableConfig struct {
	Map     map[string]string `yaml:"map"`
	Default string            `yaml:"default"`
}

// EventConfig is a mapping.EventMapping.
type EventConfig struct {
	Status         string `yaml:"status"`
	Reason         string `yaml:"reason"`
	BusinessStatus string `yaml:"business_status"`
	PROM           bool   `yaml:"prom"`
}

// DeliveryConfig says how case records reach a provider. Secrets are not
// written in the file: secret_env and token_env name the environment
// variables that hold them, read when the configuration is loaded.
type DeliveryConfig struct {
	Adapter string `yaml:"adapter" validate:"required,oneof=webhook filedrop fhirpush"`
	// URL is the webhook receiver.
	URL string `yaml:"url"`
	// SecretEnv names the variable holding the webhook's HMAC secret.
	SecretEnv string `yaml:"secret_env"`
	// Directory is where the file drop writes.
	Directory string `yaml:"directory"`
	// BaseURL is the provider's FHIR server.
	BaseURL string `yaml:"base_url"`
	// TokenEnv names the variable holding the bearer token for the FHIR
	// server, if it needs one.
	TokenEnv string `yaml:"token_env"`
	// Timeout bounds one delivery; outbox.timeout when zero.
	Timeout time.Duration `yaml:"timeout" validate:"gte=0"`

	secret []byte // from SecretEnv
	token  string // from TokenEnv
}

// OutboxConfig is how the outbox worker delivers: retries (exponential
// backoff with jitter from base_delay up to max_delay, max_attempts in all,
// then a dead letter an operator can redrive), how many events one claim
// takes and how long it holds them, how often it looks for work when idle,
// and the timeout of deliveries that set none (practices' Subscriptions).
type OutboxConfig struct {
	MaxAttempts int           `yaml:"max_attempts" env:"MAX_ATTEMPTS" validate:"min=1,max=1000"`
	BaseDelay   time.Duration `yaml:"base_delay" env:"BASE_DELAY" validate:"gt=0"`
	MaxDelay    time.Duration `yaml:"max_delay" env:"MAX_DELAY" validate:"gt=0"`
	Batch       int           `yaml:"batch" env:"BATCH" validate:"min=1,max=1000"`
	Lease       time.Duration `yaml:"lease" env:"LEASE" validate:"gt=0"`
	Poll        time.Duration `yaml:"poll" env:"POLL" validate:"gt=0"`
	Timeout     time.Duration `yaml:"timeout" env:"TIMEOUT" validate:"gt=0"`
	// SubscriptionAllowHTTP accepts plain http Subscription endpoints
	// (refused in production); SubscriptionAllowPrivate accepts loopback,
	// private, link-local and other non-public addresses. Both false: a
	// practice's Subscription can only reach https on the public internet.
	SubscriptionAllowHTTP    bool `yaml:"subscription_allow_http" env:"SUBSCRIPTION_ALLOW_HTTP"`
	SubscriptionAllowPrivate bool `yaml:"subscription_allow_private" env:"SUBSCRIPTION_ALLOW_PRIVATE"`
}

// subscriptionEndpoints is where practices' Subscriptions may point.
func (o OutboxConfig) subscriptionEndpoints() gateway.EndpointPolicy {
	return gateway.EndpointPolicy{AllowHTTP: o.SubscriptionAllowHTTP, AllowPrivate: o.SubscriptionAllowPrivate}
}

func defaultOutbox() OutboxConfig {
	p := gateway.DefaultRetryPolicy
	return OutboxConfig{MaxAttempts: p.MaxAttempts, BaseDelay: p.BaseDelay, MaxDelay: p.MaxDelay,
		Batch: 32, Lease: 2 * time.Minute, Poll: time.Second, Timeout: 10 * time.Second}
}

// envName is the form of a variable name secret_env and token_env accept.
var envName = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)

// resolveSecrets reads the secrets the deliveries name from getenv. Its
// messages name the setting and the variable, never the value.
func (c *Config) resolveSecrets(getenv func(string) string, ps *problems) {
	for i, p := range c.Providers {
		d := p.Delivery
		if d == nil {
			continue
		}
		at := fmt.Sprintf("providers[%d].delivery.", i)
		read := func(key, name string) string {
			if name == "" {
				return ""
			}
			if !envName.MatchString(name) {
				ps.add(at+key, "must name an environment variable (capitals, digits and _), got %q", name)
				return ""
			}
			v := getenv(name)
			if v == "" {
				ps.add(at+key, "the environment variable %s is not set", name)
			}
			return v
		}
		d.secret = []byte(read("secret_env", d.SecretEnv))
		d.token = read("token_env", d.TokenEnv)
		if d.SecretEnv != "" && len(d.secret) > 0 && len(d.secret) < minSecret {
			ps.add(at+"secret_env", "the secret in %s is %d characters long; it must be at least %d", d.SecretEnv, len(d.secret), minSecret)
		}
	}
}

// validateProviders checks the case records and deliveries of providers,
// and the outbox settings against them.
func (c *Config) validateProviders(ps *problems) {
	o := c.Outbox
	if o.MaxDelay < o.BaseDelay {
		ps.add("outbox.max_delay", "%s is less than outbox.base_delay (%s)", o.MaxDelay, o.BaseDelay)
	}
	if o.Lease <= o.Timeout {
		ps.add("outbox.lease", "%s must be more than outbox.timeout (%s): a delivery still under way when its lease ends is sent again", o.Lease, o.Timeout)
	}
	dirs := map[string]int{}
	for i, p := range c.Providers {
		at := fmt.Sprintf("providers[%d]", i)
		if p.CaseRecord != nil {
			if err := mapping.CheckProviderMapping(p.mapping()); err != nil {
				for _, e := range splitErrors(err) {
					ps.add(at+".case_record", "%v", e)
				}
			}
		}
		d := p.Delivery
		if d == nil {
			continue
		}
		at += ".delivery"
		format := mapping.FormatCaseRecord
		if p.CaseRecord != nil && p.CaseRecord.Format != "" {
			format = p.CaseRecord.Format
		}
		notFor := func(key, value string) {
			if value != "" {
				ps.add(at+"."+key, "does not apply to adapter %s", d.Adapter)
			}
		}
		switch d.Adapter {
		case adapterWebhook:
			c.checkURL(ps, at+".url", d.URL)
			if d.SecretEnv == "" {
				ps.add(at+".secret_env", "is required: webhooks are signed with the secret in this environment variable")
			}
			if p.CaseRecord == nil {
				ps.add(at, "a webhook sends the provider's case records: give providers[%d].case_record", i)
			}
			notFor("directory", d.Directory)
			notFor("base_url", d.BaseURL)
			notFor("token_env", d.TokenEnv)
		case adapterFileDrop:
			if d.Directory == "" {
				ps.add(at+".directory", "is required for a file drop")
			} else {
				dir := filepath.Clean(d.Directory)
				if j, ok := dirs[dir]; ok {
					ps.add(at+".directory", "is providers[%d]'s directory too; each provider needs its own", j)
				}
				dirs[dir] = i
			}
			if p.CaseRecord == nil || format != mapping.FormatCaseRecord {
				ps.add(at, "a file drop writes case records (CSV and JSON): give providers[%d].case_record with format case-record", i)
			}
			if d.Timeout != 0 {
				ps.add(at+".timeout", "does not apply to adapter %s", d.Adapter)
			}
			notFor("url", d.URL)
			notFor("secret_env", d.SecretEnv)
			notFor("base_url", d.BaseURL)
			notFor("token_env", d.TokenEnv)
		case adapterFHIRPush:
			c.checkURL(ps, at+".base_url", d.BaseURL)
			if p.CaseRecord != nil && format != mapping.FormatFHIR {
				ps.add(at, "FHIR push sends FHIR: providers[%d].case_record.format must be fhir (or leave case_record out)", i)
			}
			notFor("url", d.URL)
			notFor("secret_env", d.SecretEnv)
			notFor("directory", d.Directory)
		}
		if d.Timeout > 0 && o.Lease <= d.Timeout {
			ps.add(at+".timeout", "%s must be less than outbox.lease (%s): a delivery still under way when its lease ends is sent again", d.Timeout, o.Lease)
		}
	}
}

// checkURL checks the absolute http(s) URL of a receiver; production
// sends patient data over https only.
func (c *Config) checkURL(ps *problems, path, s string) {
	if s == "" {
		ps.add(path, msgRequired)
		return
	}
	// The adapters' own check (gateway.ParseHTTPURL), so that what passes
	// here is what they take.
	u, err := gateway.ParseHTTPURL(s)
	switch {
	case err != nil:
		ps.add(path, "must be an absolute http or https URL")
	case u.User != nil:
		ps.add(path, "must not hold credentials: use secret_env or token_env")
	case c.production() && u.Scheme != "https":
		ps.add(path, "must be https in production: deliveries carry patient data")
	}
}

// splitErrors undoes errors.Join, so each problem gets its own line.
func splitErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// mapping converts p's case record configuration; a FHIR push provider
// without one gets FHIR.
func (p ProviderConfig) mapping() mapping.ProviderMapping {
	cr := p.CaseRecord
	if cr == nil {
		return mapping.ProviderMapping{Format: mapping.FormatFHIR}
	}
	m := mapping.ProviderMapping{
		Format:     cr.Format,
		Fields:     slices.Clone(cr.Fields),
		Rename:     maps.Clone(cr.Rename),
		DateFormat: cr.DateFormat,
	}
	if len(cr.Codes) > 0 {
		m.Codes = make(map[string]mapping.CodeTable, len(cr.Codes))
		for f, t := range cr.Codes {
			m.Codes[f] = mapping.CodeTable{Map: maps.Clone(t.Map), Default: t.Default}
		}
	}
	if len(cr.Events) > 0 {
		m.Events = make(map[string]mapping.EventMapping, len(cr.Events))
		for name, e := range cr.Events {
			m.Events[name] = mapping.EventMapping{Status: e.Status, Reason: e.Reason, BusinessStatus: e.BusinessStatus, PROM: e.PROM}
		}
	}
	return m
}

// caseRecords is every provider's mapping: those with a case_record, and
// FHIR push providers.
func (c *Config) caseRecords() mapping.CaseRecords {
	cr := mapping.CaseRecords{Providers: map[string]mapping.ProviderMapping{}}
	for _, p := range c.Providers {
		if p.CaseRecord != nil || p.Delivery != nil {
			cr.Providers[p.Code] = p.mapping()
		}
	}
	return cr
}

// pushProviders are the providers whose case records are delivered.
func (c *Config) pushProviders() []string {
	var codes []string
	for _, p := range c.Providers {
		if p.Delivery != nil {
			codes = append(codes, p.Code)
		}
	}
	return codes
}

// retryPolicy is the outbox's.
func (c *Config) retryPolicy() gateway.RetryPolicy {
	return gateway.RetryPolicy{MaxAttempts: c.Outbox.MaxAttempts, BaseDelay: c.Outbox.BaseDelay, MaxDelay: c.Outbox.MaxDelay}
}

// deliverers builds each push provider's adapter, and the rest-hook
// adapter of practices' Subscriptions over channels.
func (c *Config) deliverers(channels resthook.Channels, tp trace.TracerProvider) (map[string]gateway.Deliverer, error) {
	routes := gateway.ProviderRoutes{}
	for _, p := range c.Providers {
		d := p.Delivery
		if d == nil {
			continue
		}
		timeout := d.Timeout
		if timeout == 0 {
			timeout = c.Outbox.Timeout
		}
		var (
			a   gateway.Deliverer
			err error
		)
		switch d.Adapter {
		case adapterWebhook:
			a, err = webhook.New(webhook.Config{URL: d.URL, Secret: d.secret, Timeout: timeout, TracerProvider: tp})
		case adapterFileDrop:
			a, err = filedrop.New(filedrop.Config{Dir: d.Directory})
		case adapterFHIRPush:
			a, err = fhirpush.New(fhirpush.Config{BaseURL: d.BaseURL, Token: d.token, Timeout: timeout, TracerProvider: tp})
		default:
			err = fmt.Errorf("unknown adapter %q", d.Adapter)
		}
		if err != nil {
			return nil, fmt.Errorf("provider %s: %w", p.Code, err)
		}
		routes[p.Code] = a
	}
	hook, err := resthook.New(resthook.Config{Channels: channels, Timeout: c.Outbox.Timeout,
		Endpoints: c.Outbox.subscriptionEndpoints(), TracerProvider: tp})
	if err != nil {
		return nil, err
	}
	return map[string]gateway.Deliverer{gateway.DestinationProvider: routes, gateway.DestinationSubscription: hook}, nil
}
