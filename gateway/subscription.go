package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Practices hear of changes to their Tasks through R4 Subscriptions
// (channel rest-hook): the gateway POSTs to the endpoint, through the
// outbox, each time one of the practice's Tasks changes.

// SubscriptionRequest is a Subscription as the rules read it.
type SubscriptionRequest struct {
	Status   string
	Criteria string
	Channel  string // channel.type
	Endpoint string
	// Payload is the channel's payload MIME type; empty for an id-less,
	// empty notification.
	Payload string
	// Headers are channel.header lines ("Name: value").
	Headers []string
}

// SubscriptionChannel is where and how to deliver to a Subscription.
type SubscriptionChannel struct {
	ID       string
	Status   string
	Endpoint string
	Payload  string
	Headers  []string
}

// The Subscription statuses (R4).
const (
	SubscriptionRequested = "requested"
	SubscriptionActive    = "active"
	SubscriptionError     = "error"
	SubscriptionOff       = "off"
)

// CheckSubscription: a practice subscribes to its own Tasks only
// (criteria Task?requester=Organization/{its ODS code}), through a
// rest-hook to an endpoint the policy allows (the one the deliveries are
// held to), with an empty or FHIR JSON payload.
func CheckSubscription(r SubscriptionRequest, practice string, endpoints EndpointPolicy) []Issue {
	var issues []Issue
	switch r.Criteria {
	case "Task?requester=Organization/" + practice, "Task?requester=" + practice:
	default:
		issues = append(issues, issue(IssueValue, "Subscription.criteria",
			"criteria must be Task?requester=Organization/%s: a practice subscribes to its own Tasks", practice))
	}
	if r.Channel != "rest-hook" {
		issues = append(issues, issue(IssueNotSupported, "Subscription.channel.type", "only rest-hook channels are supported"))
	}
	if err := endpoints.CheckURL(r.Endpoint); err != nil {
		issues = append(issues, issue(IssueValue, "Subscription.channel.endpoint", "%v", err))
	}
	switch r.Payload {
	case "", "application/fhir+json", "application/json":
	default:
		issues = append(issues, issue(IssueNotSupported, "Subscription.channel.payload", "payload is empty, application/fhir+json or application/json"))
	}
	for _, h := range r.Headers {
		if _, _, err := ParseChannelHeader(h); err != nil {
			issues = append(issues, issue(IssueValue, "Subscription.channel.header", "a header is \"Name: value\" on one line: %v", err))
		}
	}
	switch r.Status {
	case "", SubscriptionRequested, SubscriptionActive:
	default:
		issues = append(issues, issue(IssueValue, "Subscription.status", "a new Subscription is requested (the gateway makes it active)"))
	}
	return issues
}

// ParseChannelHeader splits a Subscription's channel header, "Name:
// value": a header name (a token) and a value on one line. It is checked
// when the Subscription is made and again at each delivery, so a stored
// one cannot add a line to a request. Errors never quote the value, which
// is often a credential.
func ParseChannelHeader(line string) (name, value string, err error) {
	name, value, ok := strings.Cut(line, ":")
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	if !ok || name == "" {
		return "", "", errors.New(`not "Name: value"`)
	}
	for _, c := range []byte(name) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return "", "", errors.New("the name is not a header name")
		}
	}
	if strings.ContainsAny(value, "\r\n") {
		return "", "", errors.New("the value is more than one line")
	}
	// RFC 9110 5.5: no control characters but the tab. An HTTP client
	// refuses to send any other, so a stored one would fail every delivery.
	if strings.ContainsFunc(value, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
		return "", "", errors.New("the value holds a control character")
	}
	return name, value, nil
}

// MaxSubscriptions is how many live Subscriptions a practice may hold: one
// per system that wants to hear of its Tasks, with room to spare. Each
// change of a Task is one delivery per Subscription.
const MaxSubscriptions = 10

// CreateSubscription stores a practice's Subscription as active. It returns
// CodeForbidden for a client that is not a practice and CodeUnprocessable
// for criteria, channel or payload it does not support, or when the
// practice already has MaxSubscriptions.
func (s *Service) CreateSubscription(ctx context.Context, p Principal, body []byte) (_ Resource, err error) {
	a, ctx := s.begin(ctx, p, AuditCreate, TypeSubscription)
	defer func() { err = a.end(ctx, err) }()
	if p.Role != RolePractice {
		return Resource{}, Errorf(CodeForbidden, "Subscriptions are for practices, to hear of their Tasks")
	}
	req, err := s.docs.Subscription(body)
	if err != nil {
		return Resource{}, err
	}
	if err := Unprocessable(CheckSubscription(req, p.Org, s.endpoints)); err != nil {
		return Resource{}, err
	}
	var out Resource
	err = s.update(ctx, a, func(tx Tx) error {
		live, err := s.subscriptionsOf(ctx, tx, p.Org)
		if err != nil {
			return err
		}
		if len(live) >= MaxSubscriptions {
			return Problem(CodeUnprocessable, IssueBusinessRule, "Subscription",
				"the practice already has %d Subscriptions, the most it may hold: delete one first", len(live))
		}
		id := s.newID()
		nb, err := s.docs.WriteSubscription(body, id, 1, tx.Now(), SubscriptionActive, "")
		if err != nil {
			return Internal("write Subscription", err)
		}
		out = Resource{Type: TypeSubscription, ID: id, Version: 1, Body: nb,
			Index: Index{Practice: p.Org, Status: SubscriptionActive, Access: []string{p.Org}}}
		return tx.Put(ctx, &out)
	})
	return out, err
}

// DeleteSubscription deletes a practice's Subscription: nothing more is
// delivered to it, and reading it answers 410.
func (s *Service) DeleteSubscription(ctx context.Context, p Principal, id string) (err error) {
	a, ctx := s.begin(ctx, p, AuditDelete, TypeSubscription, TypeSubscription+"/"+id)
	defer func() { err = a.end(ctx, err) }()
	if p.Role != RolePractice {
		return Errorf(CodeForbidden, "Subscriptions are for practices")
	}
	return s.update(ctx, a, func(tx Tx) error {
		cur, err := tx.GetFor(ctx, p.Org, TypeSubscription, id, 0)
		if err != nil {
			return err
		}
		nb, err := s.docs.WriteSubscription(cur.Body, id, cur.Version+1, tx.Now(), SubscriptionOff, "")
		if err != nil {
			return Internal("write Subscription", err)
		}
		next := Resource{Type: TypeSubscription, ID: id, Version: cur.Version + 1, Body: nb, Index: cur.Index}
		next.Index.Status, next.Index.Deleted, next.Index.Access = SubscriptionOff, true, nil
		return tx.Put(ctx, &next)
	})
}

// subscriptionsOf returns the channels of a practice's live Subscriptions.
func (s *Service) subscriptionsOf(ctx context.Context, v View, practice string) ([]SubscriptionChannel, error) {
	page, err := v.Search(ctx, SearchQuery{Type: TypeSubscription, Org: practice, Count: MaxSubscriptions,
		Filters: []Filter{{Field: FieldPractice, Values: []string{practice}},
			{Field: FieldStatus, Values: []string{SubscriptionRequested, SubscriptionActive, SubscriptionError}}}})
	if err != nil {
		return nil, err
	}
	var out []SubscriptionChannel
	for _, r := range page.Matches {
		req, err := s.docs.Subscription(r.Body)
		if err != nil {
			return nil, Internal("read stored Subscription", err)
		}
		out = append(out, channelOf(r, req))
	}
	return out, nil
}

func channelOf(r Resource, req SubscriptionRequest) SubscriptionChannel {
	return SubscriptionChannel{ID: r.ID, Status: r.Index.Status, Endpoint: req.Endpoint, Payload: req.Payload, Headers: req.Headers}
}

// SubscriptionChannel returns where to deliver to Subscription id, for the
// outbox worker. It returns ErrDiscard when the Subscription was deleted.
func (s *Service) SubscriptionChannel(ctx context.Context, id string) (SubscriptionChannel, error) {
	var ch SubscriptionChannel
	err := s.store.View(ctx, func(v View) error {
		r, err := v.Get(ctx, TypeSubscription, id, 0)
		if err != nil {
			return err
		}
		if r.Index.Deleted {
			return ErrDiscard
		}
		req, err := s.docs.Subscription(r.Body)
		if err != nil {
			return Internal("read stored Subscription", err)
		}
		ch = channelOf(r, req)
		return nil
	})
	if ErrorCode(err) == CodeNotFound {
		return ch, ErrDiscard
	}
	return ch, err
}

// DeliveryResult keeps a Subscription's status true to its deliveries:
// error, with the failure, while its endpoint fails; active again once a
// delivery succeeds. It is the outbox worker's OnResult, which logs the
// error it returns when the status cannot be written. A deleted (or
// unknown) Subscription keeps its status.
func (s *Service) DeliveryResult(ctx context.Context, e OutboxEvent, failure error) error {
	kind, id := SplitDestination(e.Destination)
	if kind != DestinationSubscription {
		return nil
	}
	err := s.store.Update(ctx, func(tx Tx) error {
		cur, err := tx.Get(ctx, TypeSubscription, id, 0)
		if err != nil || cur.Index.Deleted {
			return err
		}
		status, text := SubscriptionActive, ""
		if failure != nil {
			status, text = SubscriptionError, "delivery failed at "+FormatInstant(s.now())+": "+truncate(failure.Error(), 200)
		}
		if cur.Index.Status == status {
			return nil // nothing to change (one error version per outage)
		}
		nb, err := s.docs.WriteSubscription(cur.Body, id, cur.Version+1, tx.Now(), status, text)
		if err != nil {
			return Internal("write Subscription", err)
		}
		next := Resource{Type: TypeSubscription, ID: id, Version: cur.Version + 1, Body: nb, Index: cur.Index}
		next.Index.Status, next.Index.Access = status, nil
		return tx.Put(ctx, &next)
	})
	if err != nil && ErrorCode(err) != CodeNotFound {
		return fmt.Errorf("gateway.DeliveryResult: Subscription %s: %w", id, err)
	}
	return nil
}
