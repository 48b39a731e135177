package mapping

import (
	"net/http"
	"strconv"

	"github.com/spgateway/spgateway/gateway"
)

// The code systems of the rendered AuditEvents.
const (
	systemAuditEventType = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	systemRestful        = "http://hl7.org/fhir/restful-interaction"
	systemDICOM          = "http://dicom.nema.org/resources/ontology/DCM"
	systemAuditAction    = gateway.CanonicalBase + "CodeSystem/audit-action"
	systemClientRole     = gateway.CanonicalBase + "CodeSystem/client-role"
	systemSourceType     = "http://terminology.hl7.org/CodeSystem/security-source-type"
	extensionRequestID   = gateway.CanonicalBase + "StructureDefinition/request-id"
)

// restfulCodes are the restful-interaction codes of the FHIR actions; the
// other actions (case API, reports) are DICOM "Patient Record" events.
var restfulCodes = map[gateway.AuditAction]string{
	gateway.AuditRead: "read", gateway.AuditVread: "vread", gateway.AuditSearch: "search-type",
	gateway.AuditHistory: "history-instance", gateway.AuditCreate: "create", gateway.AuditTransaction: "transaction",
	gateway.AuditUpdate: "update", gateway.AuditPatch: "patch", gateway.AuditDelete: "delete",
	gateway.AuditOperation: "operation",
}

// auditActionCodes are AuditEvent.action: C, R, U, D or E (execute, which
// FHIR uses for searches and operations).
var auditActionCodes = map[gateway.AuditAction]string{
	gateway.AuditRead: "R", gateway.AuditVread: "R", gateway.AuditHistory: "R", gateway.AuditCaseRead: "R",
	gateway.AuditSearch: "E", gateway.AuditCaseList: "E", gateway.AuditReport: "E", gateway.AuditOperation: "E",
	gateway.AuditCreate: "C", gateway.AuditTransaction: "C",
	gateway.AuditUpdate: "U", gateway.AuditPatch: "U", gateway.AuditCaseEvent: "U",
	gateway.AuditDelete: "D",
}

type auditEventJSON struct {
	ResourceType string               `json:"resourceType"`
	ID           string               `json:"id"`
	Meta         metaJSON             `json:"meta"`
	Extension    []auditExtensionJSON `json:"extension,omitempty"`
	Type         codingJSON           `json:"type"`
	Subtype      []codingJSON         `json:"subtype,omitempty"`
	Action       string               `json:"action,omitempty"`
	Recorded     string               `json:"recorded"`
	Outcome      string               `json:"outcome"`
	OutcomeDesc  string               `json:"outcomeDesc"`
	Agent        []auditAgentJSON     `json:"agent"`
	Source       auditSourceJSON      `json:"source"`
	Entity       []auditEntityJSON    `json:"entity,omitempty"`
}

type auditExtensionJSON struct {
	URL         string `json:"url"`
	ValueString string `json:"valueString"`
}

type auditAgentJSON struct {
	Type      *conceptJSON      `json:"type,omitempty"`
	Role      []conceptJSON     `json:"role,omitempty"`
	Who       *refJSON          `json:"who,omitempty"`
	AltID     string            `json:"altId,omitempty"`
	Requestor bool              `json:"requestor"`
	Network   *auditNetworkJSON `json:"network,omitempty"`
}

type auditNetworkJSON struct {
	Address string `json:"address"`
	Type    string `json:"type"`
}

type auditSourceJSON struct {
	Site     string       `json:"site,omitempty"`
	Observer refJSON      `json:"observer"`
	Type     []codingJSON `json:"type"`
}

type auditEntityJSON struct {
	What refJSON `json:"what"`
}

// AuditEvent renders an audit event as an R4 AuditEvent. An event is never
// changed, so it is at version 1, last updated when it was recorded. site
// is the server's base URL. status is the HTTP status the request was
// answered with, which the HTTP edge knows from the event's error code:
// outcomeDesc gives it, never the error's text (which may quote the
// request).
func AuditEvent(ev gateway.AuditEvent, site string, status int) []byte {
	recorded := gateway.FormatInstant(ev.Recorded)
	out := auditEventJSON{
		ResourceType: gateway.TypeAuditEvent,
		ID:           ev.ID,
		Meta:         metaJSON{VersionID: "1", LastUpdated: recorded},
		Action:       auditActionCodes[ev.Action],
		Recorded:     recorded,
		Outcome:      "0",
		OutcomeDesc:  "success",
		Source: auditSourceJSON{Site: site, Observer: refJSON{Display: "spgateway"},
			Type: []codingJSON{{System: systemSourceType, Code: "4", Display: "Application Server"}}},
	}
	if ev.RequestID != "" {
		out.Extension = []auditExtensionJSON{{URL: extensionRequestID, ValueString: ev.RequestID}}
	}
	if code, ok := restfulCodes[ev.Action]; ok {
		out.Type = codingJSON{System: systemAuditEventType, Code: "rest", Display: "RESTful Operation"}
		out.Subtype = []codingJSON{{System: systemRestful, Code: code}}
	} else {
		out.Type = codingJSON{System: systemDICOM, Code: "110110", Display: "Patient Record"}
		out.Subtype = []codingJSON{{System: systemAuditAction, Code: string(ev.Action)}}
	}
	if ev.Outcome != gateway.OutcomeSuccess {
		out.Outcome = "4" // minor failure: the request was refused
		if status >= 500 {
			out.Outcome = "8" // serious failure
		}
		out.OutcomeDesc = strconv.Itoa(status) + " " + http.StatusText(status)
	}
	agent := auditAgentJSON{AltID: ev.ClientID, Requestor: true}
	if ev.Role != "" {
		role := conceptJSON{Coding: []codingJSON{{System: systemClientRole, Code: string(ev.Role)}}}
		agent.Type, agent.Role = &role, []conceptJSON{role}
	}
	switch {
	case ev.Org != "":
		agent.Who = &refJSON{Reference: gateway.TypeOrganization + "/" + ev.Org}
	case ev.ClientID != "":
		agent.Who = &refJSON{Display: ev.ClientID}
	default:
		agent.Who = &refJSON{Display: "unauthenticated client"}
	}
	if ev.SourceIP != "" {
		agent.Network = &auditNetworkJSON{Address: ev.SourceIP, Type: "2"} // IP address
	}
	out.Agent = []auditAgentJSON{agent}
	for _, ref := range ev.Entities {
		out.Entity = append(out.Entity, auditEntityJSON{What: refJSON{Reference: ref}})
	}
	return mustJSON(out)
}
