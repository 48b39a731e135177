package mapping

import (
	"reflect"
	"time"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/spgateway/spgateway/gateway"
)

// Subscription reads a Subscription body.
func (Documents) Subscription(body []byte) (gateway.SubscriptionRequest, error) {
	const typ = gateway.TypeSubscription
	if err := checkResource(body, typ); err != nil {
		return gateway.SubscriptionRequest{}, err
	}
	if _, err := r4.UnmarshalSubscription(body); err != nil {
		return gateway.SubscriptionRequest{}, decodeProblem(reflect.TypeFor[r4.Subscription](), []string{typ}, err)
	}
	doc := gjson.ParseBytes(body)
	r := gateway.SubscriptionRequest{
		Status:   doc.Get("status").String(),
		Criteria: doc.Get("criteria").String(),
		Channel:  doc.Get("channel.type").String(),
		Endpoint: doc.Get("channel.endpoint").String(),
		Payload:  doc.Get("channel.payload").String(),
	}
	doc.Get("channel.header").ForEach(func(_, h gjson.Result) bool {
		r.Headers = append(r.Headers, h.String())
		return true
	})
	return r, nil
}

// WriteSubscription renders a version of a Subscription with its status
// and error text.
func (Documents) WriteSubscription(body []byte, id string, version int, now time.Time, status, errText string) ([]byte, error) {
	body, err := compact(body)
	if err != nil {
		return nil, err
	}
	if body, err = sjson.SetBytes(body, "status", status); err != nil {
		return nil, err
	}
	if errText == "" {
		body, err = sjson.DeleteBytes(body, "error")
	} else {
		body, err = sjson.SetBytes(body, "error", errText)
	}
	if err != nil {
		return nil, err
	}
	return setServerFields(body, id, version, gateway.FormatInstant(now))
}
