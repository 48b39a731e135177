package fhir_test

import (
	"net/http"
	"testing"

	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// The attack suite, part four: hostile parameters and headers.

// TestAttackSearchValues: search values the store cannot bind as text —
// NUL, bytes that are not UTF-8 — in the URL or a _search form, on every
// kind of search (resources and the audit trail), are refused with 400,
// never passed on to fail in the database.
func TestAttackSearchValues(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		for _, c := range []struct{ key, typ, param string }{
			{keyPRV01, "Task", "status"},
			{keyPRV01, "Task", "patient.identifier"},
			{keyA81001, "ServiceRequest", "identifier"},
			{keyA81001, "Patient", "_id"},
			{keyAdmin, "AuditEvent", "agent"},
			{keyAdmin, "AuditEvent", "entity"},
		} {
			for _, v := range []string{"%00", "a%00b", "%FF", "%C0%AF", "https://fhir.nhs.uk/Id/nhs-number|%00"} {
				q := c.param + "=" + v
				for _, r := range []response{
					g.get("/fhir/"+c.typ+"?"+q, c.key),
					g.do("POST", "/fhir/"+c.typ+"/_search", c.key, []byte(q), "Content-Type", "application/x-www-form-urlencoded"),
				} {
					if r.status != http.StatusBadRequest || len(outcomeIssues(t, r)) == 0 {
						t.Errorf("%s?%s: %d %s", c.typ, q, r.status, r.body)
					}
				}
			}
		}
	})
}
