// Package resthook delivers Task changes to practices' FHIR R4 Subscriptions
// (channel rest-hook): each outbox event becomes a PUT of the Task to
// [endpoint]/Task/{id} or, when the practice asked for an empty
// notification, an empty POST to the endpoint, so that a practice hears of a
// change without polling. It is the "subscription" adapter of the outbox worker.
package resthook

import (
	"bytes"
	"context"
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

// HeaderDelivery carries the event's id, for an endpoint to de-duplicate on
// (an event is delivered at least once).
const HeaderDelivery = "X-Spgateway-Delivery"

// HeaderTaskVersion carries the version of the Task the event is about, so
// an endpoint can ignore a retried, older event that arrives after a newer
// one.
const HeaderTaskVersion = "X-Spgateway-Task-Version"

// DefaultTimeout bounds a delivery when Config.Timeout is not set: an
// endpoint that hangs must not hold the worker's lease on the event.
const DefaultTimeout = 10 * time.Second

// maxAnswer is how much of an endpoint's answer is read: enough to reuse
// the connection after a short answer, no more.
const maxAnswer = 64 << 10

// Channels finds where to deliver to a Subscription; gateway.Service
// implements it.
type Channels interface {
	// SubscriptionChannel returns Subscription id's channel, or
	// gateway.ErrDiscard when the Subscription was deleted.
	SubscriptionChannel(ctx context.Context, id string) (gateway.SubscriptionChannel, error)
}

// Config is what an Adapter needs.
type Config struct {
	// Channels is looked up at every delivery, so a deleted Subscription
	// receives nothing more.
	Channels Channels
	// Timeout bounds one delivery, answer included; DefaultTimeout if zero.
	Timeout time.Duration
	// Client sends the requests. By default a client that does not follow
	// redirects, so a Task goes only to the endpoint the practice gave, and
	// that connects only to addresses Endpoints allows.
	Client *http.Client
	// Endpoints is where deliveries may go; the zero value is https to
	// public addresses only. Checked on every delivery (the URL) and every
	// connection (the address it resolved to).
	Endpoints gateway.EndpointPolicy
	// TracerProvider, when set, traces the default client's requests.
	TracerProvider trace.TracerProvider
}

// Adapter delivers to practices' Subscriptions.
type Adapter struct {
	channels  Channels
	timeout   time.Duration
	client    *http.Client
	endpoints gateway.EndpointPolicy
}

// New returns an Adapter. It refuses one without Channels.
func New(cfg Config) (*Adapter, error) {
	if cfg.Channels == nil {
		return nil, errors.New("resthook.New: no Channels to find Subscriptions' endpoints")
	}
	a := &Adapter{channels: cfg.Channels, timeout: cfg.Timeout, client: cfg.Client, endpoints: cfg.Endpoints}
	if a.timeout <= 0 {
		a.timeout = DefaultTimeout
	}
	if a.client == nil {
		a.client = outbound.GuardedClient(cfg.TracerProvider, cfg.Endpoints.CheckAddr)
	}
	return a, nil
}

// Deliver sends an event to its Subscription's endpoint ("subscription:{id}"
// is the destination): the event's payload as FHIR JSON, PUT to
// [endpoint]/Task/{id}, when it has one and the Subscription still asks for
// one, else an empty POST to the endpoint (R4's empty notification); with
// the Subscription's channel headers and the delivery id.
// A deleted or off Subscription gives gateway.ErrDiscard, as it is, for the
// worker to drop the event. An endpoint the Endpoints policy refuses (by
// its URL or the address it resolves to) is a permanent failure. 2xx is delivered; 410 Gone is permanent; any
// other answer, a network error or no answer within the timeout is retried.
// Errors name the status, never the payload or the channel's headers (the
// Subscription shows its last error to the practice).
func (a *Adapter) Deliver(ctx context.Context, e gateway.OutboxEvent) error {
	kind, id := gateway.SplitDestination(e.Destination)
	if kind != gateway.DestinationSubscription || id == "" {
		return &gateway.PermanentError{Err: fmt.Errorf("resthook.Deliver: %q is not a Subscription destination", e.Destination)}
	}
	ch, err := a.channels.SubscriptionChannel(ctx, id)
	if errors.Is(err, gateway.ErrDiscard) {
		return err
	}
	if err != nil {
		return fmt.Errorf("resthook.Deliver: SubscriptionChannel %s: %w", id, err)
	}
	if ch.Status == gateway.SubscriptionOff {
		return gateway.ErrDiscard
	}
	// Checked again at delivery: a Subscription made under a looser policy
	// is held to the one in force.
	u, err := a.endpoints.ParseURL(ch.Endpoint)
	if err != nil {
		return &gateway.PermanentError{Err: fmt.Errorf("resthook.Deliver: Subscription %s: %w", id, err)}
	}
	header := http.Header{}
	for i, line := range ch.Headers {
		name, value, err := gateway.ParseChannelHeader(line)
		if err != nil {
			return &gateway.PermanentError{Err: fmt.Errorf("resthook.Deliver: Subscription %s: channel header %d: %w", id, i+1, err)}
		}
		header.Add(name, value)
	}

	// The Subscription's choice wins over the event's: a practice that asks
	// for empty notifications gets no patient data. R4 rest-hook: without
	// a payload, a POST to the endpoint; with one, the endpoint is a FHIR
	// base and the resource is PUT there ([endpoint]/Task/{id}).
	var body io.Reader = http.NoBody
	method, target := http.MethodPost, ch.Endpoint
	if len(e.Payload) > 0 && ch.Payload != "" {
		body = bytes.NewReader(e.Payload)
		header.Set("Content-Type", mediaType(ch.Payload))
		put := *u
		put.Path = strings.TrimSuffix(u.Path, "/") + "/" + gateway.TypeTask + "/" + e.OrderKey
		put.RawPath = ""
		method, target = http.MethodPut, put.String()
	} else {
		header.Del("Content-Type")
	}
	header.Set(HeaderDelivery, e.ID)
	header.Set(HeaderTaskVersion, strconv.Itoa(e.TaskVersion))

	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return fmt.Errorf("resthook.Deliver: Subscription %s: http.NewRequest: %w", id, err)
	}
	req.Header = header
	shown := outbound.Shown(u)
	resp, err := a.client.Do(req)
	if errors.Is(err, gateway.ErrEndpointRefused) {
		return &gateway.PermanentError{Err: fmt.Errorf("resthook.Deliver: %s %s: %w", method, shown, outbound.Cause(ctx, err, a.timeout))}
	}
	if err != nil {
		return fmt.Errorf("resthook.Deliver: %s %s: %w", method, shown, outbound.Cause(ctx, err, a.timeout))
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusGone:
		return &gateway.PermanentError{Err: fmt.Errorf("resthook.Deliver: %s %s: %s: the endpoint is gone", method, shown, resp.Status)}
	case err != nil:
		return fmt.Errorf("resthook.Deliver: %s %s: %s, reading the answer: %w", method, shown, resp.Status, outbound.Cause(ctx, err, a.timeout))
	}
	if x := redact.Excerpt(answer, e.Payload); x != "" {
		return fmt.Errorf("resthook.Deliver: %s %s: %s: %q", method, shown, resp.Status, x)
	}
	return fmt.Errorf("resthook.Deliver: %s %s: %s", method, shown, resp.Status)
}

// mediaType is the Content-Type of a payload: the channel's, which R4 says
// is the type to send, when it is a JSON one (the gateway accepts no
// other); FHIR JSON otherwise.
func mediaType(payload string) string {
	if payload == "application/json" {
		return payload
	}
	return "application/fhir+json"
}
