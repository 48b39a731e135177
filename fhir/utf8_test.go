package fhir_test

import (
	"bytes"
	"testing"

	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// Bytes that are not UTF-8, in a body or a search value, are the client's
// error (400) on both engines; PostgreSQL refuses to store or compare them
// as text, which must not surface as a 500.
func TestNotUTF8(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		body := bytes.Replace(fixture(t, "referral-bundle.json"), []byte("Prefers a phone call"), []byte("Prefers a\xff phone call"), 1)
		if r := g.post("/fhir", keyA81001, body); r.status != 400 {
			t.Errorf("transaction: %d %s", r.status, r.body)
		}
		sr := bytes.Replace(fixture(t, "service-request-contained-patient.json"), []byte("Lives alone"), []byte("Lives\x83alone"), 1)
		if r := g.post("/fhir/ServiceRequest", keyA81001, sr); r.status != 400 {
			t.Errorf("create: %d %s", r.status, r.body)
		}
		for _, q := range []string{
			"/fhir/ServiceRequest?identifier=%83", "/fhir/ServiceRequest?status=%83", "/fhir/Task?owner=%83",
			"/fhir/Patient?_id=%ff", "/fhir/ServiceRequest?patient:identifier=x|%83", "/fhir/Condition?patient=Patient/%83",
		} {
			if r := g.get(q, keyA81001); r.status != 400 {
				t.Errorf("%s: %d %s", q, r.status, r.body)
			}
		}
		// An unknown parameter is still ignored, whatever its value.
		if r := g.get("/fhir/Task?unknown=%83", keyA81001); r.status != 200 {
			t.Errorf("unknown parameter: %d %s", r.status, r.body)
		}
	})
}
