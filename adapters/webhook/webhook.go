// Package webhook pushes case records to providers that cannot poll but can
// receive an HTTPS POST: each outbox event becomes one signed JSON request,
// so the provider can tell the gateway's deliveries from anyone else's and
// refuse a replayed one. It is the "webhook" adapter of the outbox worker.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/spgateway/spgateway/adapters/internal/outbound"
	"github.com/spgateway/spgateway/adapters/internal/redact"
	"github.com/spgateway/spgateway/gateway"
)

// The headers of a delivery. A receiver de-duplicates on the delivery id
// (an event is delivered at least once) and checks the signature with Verify.
const (
	HeaderDelivery = "X-Spgateway-Delivery"
	// HeaderTaskVersion is the version of the Task the case record is
	// of: a receiver keeps the newest and ignores an older one retried late.
	HeaderTaskVersion = "X-Spgateway-Task-Version"
	HeaderEvent       = "X-Spgateway-Event"
	HeaderTimestamp   = "X-Spgateway-Timestamp"
	HeaderSignature   = "X-Spgateway-Signature"
)

// DefaultTimeout bounds a delivery when Config.Timeout is not set: a
// receiver that hangs must not hold the worker's lease on the event.
const DefaultTimeout = 10 * time.Second

// DefaultTolerance is how far from the receiver's clock a delivery's
// timestamp may be when Verify is given no tolerance.
const DefaultTolerance = 5 * time.Minute

// maxAnswer is how much of a receiver's answer is read: enough to reuse the
// connection after a short answer, no more.
const maxAnswer = 64 << 10

// Config is what an Adapter needs.
type Config struct {
	// URL is the provider's receiver, an absolute http(s) URL.
	URL string
	// Secret keys the signature; the provider holds the same.
	Secret []byte
	// Timeout bounds one delivery, answer included; DefaultTimeout if zero.
	Timeout time.Duration
	// Client sends the requests. By default a client that does not follow
	// redirects, so a case record goes only where it was configured to go.
	Client *http.Client
	// TracerProvider, when set, traces the default client's requests.
	TracerProvider trace.TracerProvider
	// Now is the clock the signature's timestamp is read from.
	Now func() time.Time
}

// Adapter delivers case records to one provider's webhook.
type Adapter struct {
	url     string
	shown   string // the URL as errors show it
	secret  []byte
	timeout time.Duration
	client  *http.Client
	now     func() time.Time
}

// New returns an Adapter. It refuses a missing or non-http(s) URL and a
// missing secret: an unsigned case record would be forgeable.
func New(cfg Config) (*Adapter, error) {
	u, err := gateway.ParseHTTPURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("webhook.New: URL: %w", err)
	}
	if len(cfg.Secret) == 0 {
		return nil, errors.New("webhook.New: no secret to sign deliveries with")
	}
	a := &Adapter{url: cfg.URL, shown: outbound.Shown(u), secret: bytes.Clone(cfg.Secret),
		timeout: cfg.Timeout, client: cfg.Client, now: cfg.Now}
	if a.timeout <= 0 {
		a.timeout = DefaultTimeout
	}
	if a.client == nil {
		a.client = outbound.Client(cfg.TracerProvider)
	}
	if a.now == nil {
		a.now = time.Now
	}
	return a, nil
}

// Deliver POSTs the event's payload, signed, and reads the answer: 2xx is
// delivered, 410 Gone a permanent failure (the receiver was retired), and
// anything else, a network error or no answer within the timeout a failure
// to retry. Errors name the status, never the payload.
func (a *Adapter) Deliver(ctx context.Context, e gateway.OutboxEvent) error {
	if len(e.Payload) == 0 || !json.Valid(e.Payload) {
		return &gateway.PermanentError{Err: errors.New("webhook.Deliver: the event's payload is not a JSON document")}
	}
	ts := strconv.FormatInt(a.now().Unix(), 10)
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url, bytes.NewReader(e.Payload))
	if err != nil {
		return fmt.Errorf("webhook.Deliver: http.NewRequest: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderDelivery, e.ID)
	req.Header.Set(HeaderTaskVersion, strconv.Itoa(e.TaskVersion))
	req.Header.Set(HeaderEvent, e.Kind)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(a.secret, ts, e.Payload))
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook.Deliver: POST %s: %w", a.shown, outbound.Cause(ctx, err, a.timeout))
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil // the answer's body means nothing
	case resp.StatusCode == http.StatusGone:
		return &gateway.PermanentError{Err: fmt.Errorf("webhook.Deliver: POST %s: %s: the receiver is gone", a.shown, resp.Status)}
	case err != nil:
		return fmt.Errorf("webhook.Deliver: POST %s: %s, reading the answer: %w", a.shown, resp.Status, outbound.Cause(ctx, err, a.timeout))
	}
	if x := redact.Excerpt(answer, e.Payload); x != "" {
		return fmt.Errorf("webhook.Deliver: POST %s: %s: %q", a.shown, resp.Status, x)
	}
	return fmt.Errorf("webhook.Deliver: POST %s: %s", a.shown, resp.Status)
}

// Sign returns the signature header's value for a delivery: "sha256=" and
// the hex HMAC-SHA256, under secret, of the timestamp, a dot and the body.
// Signing the timestamp with the body lets a receiver refuse a replay.
func Sign(secret []byte, timestamp string, body []byte) string {
	return "sha256=" + hex.EncodeToString(mac(secret, timestamp, body))
}

func mac(secret []byte, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Errors Verify returns, for a receiver to tell apart.
var (
	// ErrMalformed: the timestamp or signature header is not in the
	// format Sign writes.
	ErrMalformed = errors.New("malformed webhook signature or timestamp")
	// ErrStale: the timestamp is further from now than the tolerance: a
	// replay, or a clock far off.
	ErrStale = errors.New("webhook timestamp outside the tolerance")
	// ErrSignature: the signature does not match the body and timestamp
	// under the secret.
	ErrSignature = errors.New("webhook signature does not match")
)

// Verify is the receiver's check of a delivery: timestamp and signature are
// the X-Spgateway-Timestamp and X-Spgateway-Signature headers, body the
// request's body as received, now the receiver's clock, tolerance how far
// from now a timestamp may be (DefaultTolerance if zero or less). The
// comparison takes constant time, so the signature cannot be guessed a byte
// at a time; a receiver should also de-duplicate on X-Spgateway-Delivery,
// as a replay within the tolerance passes.
func Verify(secret []byte, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	if len(secret) == 0 {
		return errors.New("webhook.Verify: no secret")
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	secs, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook.Verify: timestamp: %w", ErrMalformed)
	}
	if d := now.Sub(time.Unix(secs, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("webhook.Verify: %w", ErrStale)
	}
	hexMAC, ok := strings.CutPrefix(signature, "sha256=")
	got, err := hex.DecodeString(hexMAC)
	if !ok || err != nil || len(got) != sha256.Size {
		return fmt.Errorf("webhook.Verify: signature: %w", ErrMalformed)
	}
	if !hmac.Equal(got, mac(secret, timestamp, body)) {
		return fmt.Errorf("webhook.Verify: %w", ErrSignature)
	}
	return nil
}
