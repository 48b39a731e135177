package fhir_test

import (
	"net/http"
	"testing"

	"github.com/spgateway/spgateway/fhir"
	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// withEndpoints sets where Subscriptions may point.
func withEndpoints(p gateway.EndpointPolicy) gatewayOption {
	return func(g *gateway.Config, _ *fhir.Config) { g.SubscriptionEndpoints = p }
}

// TestSubscriptionEndpointRule: under the production rule a practice cannot
// point a Subscription at the gateway's own machine, its network or the
// cloud metadata service, nor over plain http: 422 naming the endpoint,
// nothing stored. A public https endpoint is accepted.
func TestSubscriptionEndpointRule(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine, withEndpoints(gateway.EndpointPolicy{}))
		for _, endpoint := range []string{
			"http://practice-a81001.example.org/fhir-hook",
			"https://127.0.0.1:8080/fhir",
			"https://localhost/fhir",
			"https://169.254.169.254/latest/meta-data/iam/",
			"https://[::ffff:169.254.169.254]/latest/",
			"https://[fd00:ec2::254]/latest/",
			"https://10.0.0.5/fhir",
			"https://192.168.1.1/fhir",
			"https://0.0.0.0/fhir",
			"https://user:secret@practice-a81001.example.org/fhir",
		} {
			body := scSubscription(t, func(sub map[string]any) { scChannel(sub)["endpoint"] = endpoint })
			r := g.post("/fhir/Subscription", keyA81001, body)
			if r.status != http.StatusUnprocessableEntity || !names(t, r, "Subscription.channel.endpoint") {
				t.Errorf("%s: %d %s", endpoint, r.status, r.body)
			}
		}
		// The endpoint is judged with the rest: a Subscription wrong in
		// two ways hears of both at once.
		body := scSubscription(t, func(sub map[string]any) {
			sub["criteria"] = "Task?requester=Organization/A81002"
			scChannel(sub)["endpoint"] = "https://127.0.0.1:8080/fhir"
		})
		r := g.post("/fhir/Subscription", keyA81001, body)
		if r.status != http.StatusUnprocessableEntity || !names(t, r, "Subscription.criteria") || !names(t, r, "Subscription.channel.endpoint") {
			t.Errorf("wrong criteria and a loopback endpoint: %d %s", r.status, r.body)
		}
		// None was kept: the practice may still hold its full number.
		for i := range gateway.MaxSubscriptions {
			if r := g.post("/fhir/Subscription", keyA81001, scSubscription(t, nil)); r.status != http.StatusCreated {
				t.Fatalf("public https endpoint %d: %d %s", i+1, r.status, r.body)
			}
		}
	})
}
