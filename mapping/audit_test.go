package mapping_test

import (
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/spgateway/spgateway/fhir/fhirtest"
	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/mapping"
)

// TestAuditEvent renders each kind of audit event — a FHIR interaction and
// a case API call, success, refusal and server failure, a known and an
// unknown client — as a valid R4 AuditEvent that says who, what, when and
// how it ended, and never the error's text.
func TestAuditEvent(t *testing.T) {
	const site = "https://gw.example/fhir"
	recorded := time.Date(2027, 3, 1, 9, 30, 0, 123000000, time.UTC)
	for _, c := range []struct {
		name   string
		ev     gateway.AuditEvent
		status int
		want   map[string]string // gjson path: value ("" for absent)
	}{
		{"provider read", gateway.AuditEvent{ID: "e1", Recorded: recorded, ClientID: "provider-prv01", Role: gateway.RoleProvider,
			Org: "PRV01", Action: gateway.AuditRead, ResourceType: gateway.TypeTask, Entities: []string{"Task/t1"},
			Outcome: gateway.OutcomeSuccess, SourceIP: "192.0.2.7", RequestID: "req-1"}, 200,
			map[string]string{
				"id": "e1", "meta.versionId": "1", "meta.lastUpdated": "2027-03-01T09:30:00.123000Z", "recorded": "2027-03-01T09:30:00.123000Z",
				"type.code": "rest", "subtype.0.system": "http://hl7.org/fhir/restful-interaction", "subtype.0.code": "read",
				"action": "R", "outcome": "0", "outcomeDesc": "success",
				"agent.0.who.reference": "Organization/PRV01", "agent.0.altId": "provider-prv01", "agent.0.role.0.coding.0.code": "provider",
				"agent.0.network.address": "192.0.2.7", "entity.0.what.reference": "Task/t1", "entity.#": "1",
				"extension.0.valueString": "req-1", "source.site": site,
			}},
		{"refused search", gateway.AuditEvent{ID: "e2", Recorded: recorded, ClientID: "practice-a81001", Role: gateway.RolePractice,
			Org: "A81001", Action: gateway.AuditSearch, ResourceType: gateway.TypeTask, Outcome: string(gateway.CodeInvalid)}, 400,
			map[string]string{"subtype.0.code": "search-type", "action": "E", "outcome": "4", "outcomeDesc": "400 Bad Request",
				"entity": "", "extension": "", "agent.0.network": ""}},
		{"case event failed", gateway.AuditEvent{ID: "e3", Recorded: recorded, ClientID: "provider-prv01", Role: gateway.RoleProvider,
			Org: "PRV01", Action: gateway.AuditCaseEvent, ResourceType: gateway.TypeTask, Entities: []string{"Task/t1", "Patient/p1"},
			Outcome: string(gateway.CodeInternal)}, 500,
			map[string]string{"type.system": "http://dicom.nema.org/resources/ontology/DCM", "type.code": "110110",
				"subtype.0.system": "https://fhir.spgateway.org/CodeSystem/audit-action", "subtype.0.code": "case-event",
				"action": "U", "outcome": "8", "outcomeDesc": "500 Internal Server Error", "entity.#": "2"}},
		{"client without organisation", gateway.AuditEvent{ID: "e4", Recorded: recorded, ClientID: "admin", Role: gateway.RoleAdmin,
			Action: gateway.AuditSearch, ResourceType: gateway.TypeAuditEvent, Outcome: gateway.OutcomeSuccess}, 200,
			map[string]string{"agent.0.who.display": "admin", "agent.0.who.reference": "", "agent.0.altId": "admin"}},
		{"unknown client", gateway.AuditEvent{ID: "e5", Recorded: recorded, Action: gateway.AuditRead, ResourceType: gateway.TypeTask,
			Entities: []string{"Task/t1"}, Outcome: string(gateway.CodeUnauthorized), SourceIP: "198.51.100.1"}, 401,
			map[string]string{"agent.0.who.display": "unauthenticated client", "agent.0.altId": "", "agent.0.role": "",
				"agent.0.requestor": "true", "outcome": "4", "outcomeDesc": "401 Unauthorized"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := mapping.AuditEvent(c.ev, site, c.status)
			fhirtest.Valid(t, body)
			doc := gjson.ParseBytes(body)
			if rt := doc.Get("resourceType").String(); rt != "AuditEvent" {
				t.Errorf("resourceType %q", rt)
			}
			for path, want := range c.want {
				got := doc.Get(path)
				if want == "" && got.Exists() || want != "" && got.String() != want {
					t.Errorf("%s = %s, want %q", path, got.Raw, want)
				}
			}
		})
	}
}
