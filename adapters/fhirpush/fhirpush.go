// Package fhirpush delivers referrals to providers that run their own FHIR
// server: each outbox event is a transaction Bundle (the Task and what it
// needs) POSTed to the provider's FHIR base, so the referral appears there
// as if made in it. It is the "fhirpush" adapter of the outbox worker.
package fhirpush

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/spgateway/spgateway/adapters/internal/outbound"
	"github.com/spgateway/spgateway/adapters/internal/redact"
	"github.com/spgateway/spgateway/gateway"
)

// DefaultTimeout bounds a delivery when Config.Timeout is not set: a server
// that hangs must not hold the worker's lease on the event.
const DefaultTimeout = 10 * time.Second

// fhirJSON is the FHIR JSON media type, sent and asked for.
const fhirJSON = "application/fhir+json"

// maxAnswer is how much of a server's answer is read: a transaction-response
// Bundle holds one short entry per resource, never this much.
const maxAnswer = 4 << 20

// Config is what an Adapter needs.
type Config struct {
	// BaseURL is the provider's FHIR base, an absolute http(s) URL; the
	// transaction is POSTed to it.
	BaseURL string
	// Token, when set, is sent as a bearer token.
	Token string
	// Timeout bounds one delivery, answer included; DefaultTimeout if zero.
	Timeout time.Duration
	// Client sends the requests. By default a client that does not follow
	// redirects, so a referral goes only where it was configured to go.
	Client *http.Client
	// TracerProvider, when set, traces the default client's requests.
	TracerProvider trace.TracerProvider
}

// Adapter delivers transactions to one provider's FHIR server.
type Adapter struct {
	base    string
	shown   string // the base as errors show it
	token   string
	timeout time.Duration
	client  *http.Client
}

// New returns an Adapter. It refuses a missing or non-http(s) base.
func New(cfg Config) (*Adapter, error) {
	u, err := gateway.ParseHTTPURL(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("fhirpush.New: BaseURL: %w", err)
	}
	if strings.ContainsAny(cfg.Token, "\r\n") {
		return nil, errors.New("fhirpush.New: the token is more than one line")
	}
	// A transaction is POSTed to [base] itself (without a trailing slash).
	base := strings.TrimSuffix(cfg.BaseURL, "/")
	a := &Adapter{base: base, shown: outbound.Shown(u), token: cfg.Token, timeout: cfg.Timeout, client: cfg.Client}
	if a.timeout <= 0 {
		a.timeout = DefaultTimeout
	}
	if a.client == nil {
		a.client = outbound.Client(cfg.TracerProvider)
	}
	return a, nil
}

// bundle is as much of a Bundle as the adapter reads.
type bundle struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
}

// Deliver POSTs the event's transaction Bundle. A 2xx answer holding a
// transaction-response Bundle is delivered; 401 and 403 are failures to
// retry (the credentials may be mended meanwhile); 410 Gone is permanent
// (the server was retired); anything else, a network error or no answer
// within the timeout is retried. Errors name the status and the server's
// issue codes and locations, never the payload.
func (a *Adapter) Deliver(ctx context.Context, e gateway.OutboxEvent) error {
	var tx bundle
	if err := json.Unmarshal(e.Payload, &tx); err != nil || tx.ResourceType != "Bundle" || tx.Type != "transaction" {
		return &gateway.PermanentError{Err: errors.New("fhirpush.Deliver: the event's payload is not a transaction Bundle")}
	}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base, bytes.NewReader(e.Payload))
	if err != nil {
		return fmt.Errorf("fhirpush.Deliver: http.NewRequest: %w", err)
	}
	req.Header.Set("Content-Type", fhirJSON)
	req.Header.Set("Accept", fhirJSON)
	req.Header.Set("X-Request-Id", e.ID)
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("fhirpush.Deliver: POST %s: %w", a.shown, outbound.Cause(ctx, err, a.timeout))
	}
	defer resp.Body.Close()
	answer, rerr := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if rerr == nil && len(answer) > maxAnswer {
		rerr = fmt.Errorf("an answer over %d bytes", maxAnswer)
	}
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		if rerr != nil {
			return fmt.Errorf("fhirpush.Deliver: POST %s: %s, reading the answer: %w", a.shown, resp.Status, outbound.Cause(ctx, rerr, a.timeout))
		}
		var got bundle
		if err := json.Unmarshal(answer, &got); err != nil || got.ResourceType != "Bundle" || got.Type != "transaction-response" {
			return fmt.Errorf("fhirpush.Deliver: POST %s: %s, but the answer is not a transaction-response Bundle", a.shown, resp.Status)
		}
		return nil
	case code == http.StatusGone:
		return &gateway.PermanentError{Err: fmt.Errorf("fhirpush.Deliver: POST %s: %s: the server is gone", a.shown, resp.Status)}
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return fmt.Errorf("fhirpush.Deliver: POST %s: %s: the server refused the gateway's credentials", a.shown, resp.Status)
	}
	if x := problem(answer, e.Payload); x != "" {
		return fmt.Errorf("fhirpush.Deliver: POST %s: %s: %s", a.shown, resp.Status, x)
	}
	return fmt.Errorf("fhirpush.Deliver: POST %s: %s", a.shown, resp.Status)
}

// outcome is as much of an OperationOutcome as the adapter reads.
type outcome struct {
	ResourceType string `json:"resourceType"`
	Issue        []struct {
		Severity   string   `json:"severity"`
		Code       string   `json:"code"`
		Expression []string `json:"expression"`
		Location   []string `json:"location"`
	} `json:"issue"`
}

// problem says what a failed transaction's answer says is wrong: of an
// OperationOutcome, the first issues' severity, code and where (FHIRPath
// expressions name elements, not values; the diagnostics, which often
// quote values, are left out); of anything else, a short excerpt, unless
// it may repeat the payload.
func problem(answer, payload []byte) string {
	var oo outcome
	if json.Unmarshal(answer, &oo) != nil || oo.ResourceType != "OperationOutcome" {
		if x := redact.Excerpt(answer, payload); x != "" {
			return fmt.Sprintf("%q", x)
		}
		return ""
	}
	var issues []string
	for _, is := range oo.Issue {
		where := is.Expression
		if len(where) == 0 {
			where = is.Location
		}
		s := token(is.Severity) + " " + token(is.Code)
		if len(where) > 0 {
			s += " at " + expression(strings.Join(where, ", "))
		}
		issues = append(issues, s)
		if len(issues) == 3 {
			break
		}
	}
	if n := len(oo.Issue) - len(issues); n > 0 {
		issues = append(issues, fmt.Sprintf("%d more", n))
	}
	return "OperationOutcome: " + strings.Join(issues, "; ")
}

// token keeps a code as it is if it looks like one, and drops it if not.
func token(s string) string {
	if s == "" || len(s) > 32 || strings.IndexFunc(s, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r == '-') }) >= 0 {
		return "?"
	}
	return s
}

// expression keeps the names, dots and indexes of a FHIRPath location, up
// to anything else: a where() clause could quote a value.
func expression(s string) string {
	if i := strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".[]_-, ", r))
	}); i >= 0 {
		s = s[:i] + "…"
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
