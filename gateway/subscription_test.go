package gateway_test

import (
	"slices"
	"testing"

	"github.com/spgateway/spgateway/gateway"
)

// TestCheckSubscription: the rules of a new Subscription, the endpoint's
// being the EndpointPolicy's (so what is accepted here is what the
// deliveries are later held to); every problem is named at once.
func TestCheckSubscription(t *testing.T) {
	strict := gateway.EndpointPolicy{}
	dev := gateway.EndpointPolicy{AllowHTTP: true, AllowPrivate: true}
	good := gateway.SubscriptionRequest{Criteria: "Task?requester=Organization/A81001", Channel: "rest-hook",
		Endpoint: "https://practice-a81001.example.org/fhir-hook", Payload: "application/fhir+json",
		Headers: []string{"Authorization: Bearer abc"}}
	with := func(edit func(*gateway.SubscriptionRequest)) gateway.SubscriptionRequest {
		r := good
		edit(&r)
		return r
	}
	for _, tt := range []struct {
		name   string
		req    gateway.SubscriptionRequest
		policy gateway.EndpointPolicy
		want   []string // the expressions of the issues, in order
	}{
		{"public https : strict (OK)", good, strict, nil},
		{"bare requester, empty payload, requested : strict (OK)", with(func(r *gateway.SubscriptionRequest) {
			r.Criteria, r.Payload, r.Status = "Task?requester=A81001", "", gateway.SubscriptionRequested
		}), strict, nil},
		{"loopback over http : development (OK)", with(func(r *gateway.SubscriptionRequest) { r.Endpoint = "http://127.0.0.1:9000/hook" }), dev, nil},
		{"loopback over http : strict", with(func(r *gateway.SubscriptionRequest) { r.Endpoint = "http://127.0.0.1:9000/hook" }), strict,
			[]string{"Subscription.channel.endpoint"}},
		{"metadata address : strict", with(func(r *gateway.SubscriptionRequest) { r.Endpoint = "https://169.254.169.254/latest/" }), strict,
			[]string{"Subscription.channel.endpoint"}},
		{"credentials in the endpoint : development", with(func(r *gateway.SubscriptionRequest) { r.Endpoint = "https://u:p@practice.example/hook" }), dev,
			[]string{"Subscription.channel.endpoint"}},
		{"a port without a host : development", with(func(r *gateway.SubscriptionRequest) { r.Endpoint = "https://:8443/hook" }), dev,
			[]string{"Subscription.channel.endpoint"}},
		{"no endpoint : development", with(func(r *gateway.SubscriptionRequest) { r.Endpoint = "" }), dev,
			[]string{"Subscription.channel.endpoint"}},
		{"another practice's Tasks and a private endpoint : strict", with(func(r *gateway.SubscriptionRequest) {
			r.Criteria, r.Endpoint = "Task?requester=Organization/A81002", "https://10.0.0.5/hook"
		}), strict, []string{"Subscription.criteria", "Subscription.channel.endpoint"}},
		{"everything wrong : development", gateway.SubscriptionRequest{Status: gateway.SubscriptionActive + "x", Criteria: "Patient?",
			Channel: "email", Endpoint: "mailto:x@example.org", Payload: "text/xml", Headers: []string{"no colon"}}, dev,
			[]string{"Subscription.criteria", "Subscription.channel.type", "Subscription.channel.endpoint", "Subscription.channel.payload",
				"Subscription.channel.header", "Subscription.status"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, is := range gateway.CheckSubscription(tt.req, "A81001", tt.policy) {
				got = append(got, is.Expression...)
				if is.Message == "" {
					t.Errorf("issue at %v has no message", is.Expression)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("issues at %v, want %v", got, tt.want)
			}
		})
	}
}
