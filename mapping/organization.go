// Package mapping converts between FHIR R4 JSON and the gateway's domain:
// it reads what clients send into the views the rules check, and renders the
// FHIR documents the gateway stores and returns. Its functions are pure.
//
// The FHIR model library (imported as r4) is used to read and validate; the
// JSON a client sent is what is stored and returned, edited in place.
package mapping

import (
	"encoding/json"
	"time"

	"github.com/spgateway/spgateway/gateway"
)

type organizationJSON struct {
	ResourceType string           `json:"resourceType"`
	ID           string           `json:"id"`
	Meta         metaJSON         `json:"meta"`
	Identifier   []identifierJSON `json:"identifier"`
	Active       bool             `json:"active"`
	Type         []conceptJSON    `json:"type"`
	Name         string           `json:"name"`
}

// organizationTypes are the organisation-type codes (HL7 terminology) for
// each kind: practices provide healthcare; providers are community groups.
var organizationTypes = map[gateway.OrgKind]conceptJSON{
	gateway.OrgPractice: {Coding: []codingJSON{{System: "http://terminology.hl7.org/CodeSystem/organization-type", Code: "prov", Display: "Healthcare Provider"}}, Text: "GP practice"},
	gateway.OrgProvider: {Coding: []codingJSON{{System: "http://terminology.hl7.org/CodeSystem/organization-type", Code: "cg", Display: "Community Group"}}, Text: "Social prescribing link worker service"},
}

// Organization renders a configured organisation. Configuration has no
// history, so every organisation is at version 1 as of since (when the
// configuration was loaded).
func Organization(o gateway.Organization, since time.Time) []byte {
	b, err := json.Marshal(organizationJSON{
		ResourceType: gateway.TypeOrganization,
		ID:           o.Code,
		Meta:         metaJSON{VersionID: "1", LastUpdated: gateway.FormatInstant(since)},
		Identifier:   []identifierJSON{{System: gateway.SystemODS, Value: o.Code}},
		Active:       true,
		Type:         []conceptJSON{organizationTypes[o.Kind]},
		Name:         o.Name,
	})
	if err != nil {
		panic("mapping: marshal Organization: " + err.Error()) // plain strings only
	}
	return b
}
