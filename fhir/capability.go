package fhir

import (
	"encoding/json"
	"strconv"

	"github.com/spgateway/spgateway/gateway"
)

type capabilityJSON struct {
	ResourceType   string             `json:"resourceType"`
	Name           string             `json:"name"`
	Title          string             `json:"title"`
	Status         string             `json:"status"`
	Date           string             `json:"date"`
	Publisher      string             `json:"publisher"`
	Description    string             `json:"description"`
	Kind           string             `json:"kind"`
	Software       softwareJSON       `json:"software"`
	Implementation implementationJSON `json:"implementation"`
	FHIRVersion    string             `json:"fhirVersion"`
	Format         []string           `json:"format"`
	PatchFormat    []string           `json:"patchFormat,omitempty"`
	Rest           []restJSON         `json:"rest"`
}

type softwareJSON struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

type implementationJSON struct {
	Description string `json:"description"`
	URL         string `json:"url"`
}

type restJSON struct {
	Mode          string            `json:"mode"`
	Documentation string            `json:"documentation"`
	Security      securityJSON      `json:"security"`
	Resource      []restResource    `json:"resource"`
	Interaction   []interactionJSON `json:"interaction"`
}

type securityJSON struct {
	Extension   []extensionJSON `json:"extension,omitempty"`
	Service     []conceptJSON   `json:"service,omitempty"`
	Description string          `json:"description"`
}

// oauthURIs is the SMART extension that tells clients where the token
// endpoint is.
const oauthURIs = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"

type restResource struct {
	Type              string            `json:"type"`
	Documentation     string            `json:"documentation,omitempty"`
	Interaction       []interactionJSON `json:"interaction"`
	Versioning        string            `json:"versioning"`
	ReadHistory       bool              `json:"readHistory"`
	UpdateCreate      bool              `json:"updateCreate"`
	ConditionalCreate bool              `json:"conditionalCreate,omitempty"`
	SearchInclude     []string          `json:"searchInclude,omitempty"`
	SearchParam       []searchParamJSON `json:"searchParam,omitempty"`
	Operation         []operationJSON   `json:"operation,omitempty"`
}

type operationJSON struct {
	Name          string `json:"name"`
	Definition    string `json:"definition"`
	Documentation string `json:"documentation,omitempty"`
}

type extensionJSON struct {
	URL       string          `json:"url"`
	ValueURI  string          `json:"valueUri,omitempty"`
	Extension []extensionJSON `json:"extension,omitempty"`
}

type codingJSON struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

type conceptJSON struct {
	Coding []codingJSON `json:"coding"`
	Text   string       `json:"text,omitempty"`
}

type interactionJSON struct {
	Code          string `json:"code"`
	Documentation string `json:"documentation,omitempty"`
}

type searchParamJSON struct {
	Name          string `json:"name"`
	Type          string `json:"type"`
	Documentation string `json:"documentation,omitempty"`
}

// capabilityStatement describes, from the registry, exactly what the server
// implements.
func (s *Server) capabilityStatement() ([]byte, error) {
	cs := capabilityJSON{
		ResourceType: "CapabilityStatement",
		Name:         "SpgatewayCapabilityStatement",
		Title:        "spgateway social prescribing referral gateway",
		Status:       "active",
		Date:         gateway.FormatInstant(s.started),
		Publisher:    "spgateway",
		Description: "GP practices send social prescribing referrals (transaction Bundle or ServiceRequest); " +
			"link worker providers poll the Tasks routed to them, read the referral and move the Task through its workflow; " +
			"practices poll their Tasks for progress and coded outcomes.",
		Kind:           "instance",
		Software:       softwareJSON{Name: "spgateway", Version: s.cfg.Version},
		Implementation: implementationJSON{Description: "spgateway FHIR API", URL: s.base},
		FHIRVersion:    "4.0.1",
		Format:         []string{"json"},
		PatchFormat:    []string{mediaJSONPatch},
	}
	rest := restJSON{
		Mode: "server",
		Documentation: "Searches page with opaque next links that neither skip nor repeat a resource while others write; " +
			"_count defaults to " + strconv.Itoa(s.cfg.DefaultCount) + " and is capped at " + strconv.Itoa(s.cfg.MaxCount) +
			". Bundle.total is given when _total=accurate or _count=0 asks for a count, or when the first page holds every match; " +
			"_total=none leaves it out. Unknown search parameters are ignored unless Prefer: handling=strict.",
		Security: securityJSON{Description: "Every request but GET /metadata needs Authorization: Bearer <credential>. " +
			"A practice client sees only its own referrals; a provider client only the Tasks it owns and what they refer to."},
		Interaction: []interactionJSON{{Code: "transaction", Documentation: "A referral: one ServiceRequest with its Patient " +
			"(or a reference to a known one), optional Conditions, Consent and Task, all created or none."}},
	}
	if s.cfg.Tokens != nil {
		rest.Security.Extension = []extensionJSON{{URL: oauthURIs,
			Extension: []extensionJSON{{URL: "token", ValueURI: s.cfg.Tokens.TokenURL()}}}}
		rest.Security.Service = []conceptJSON{{
			Coding: []codingJSON{{System: "http://terminology.hl7.org/CodeSystem/restful-security-service", Code: "SMART-on-FHIR"}},
			Text:   "OAuth 2.0 client credentials with a signed JWT client assertion (SMART Backend Services)"}}
		rest.Security.Description = "Every request but GET /metadata needs Authorization: Bearer <access token>, " +
			"issued by the token endpoint to a registered client that authenticates with a JWT signed RS256 or ES256. " +
			"A practice client sees only its own referrals; a provider client only the Tasks it owns and what they refer to."
	}
	for _, d := range resourceDefs {
		r := restResource{
			Type:              d.typ,
			Documentation:     d.doc,
			Versioning:        "versioned",
			ReadHistory:       d.offers(interactionVread),
			ConditionalCreate: d.conditionalCreate,
		}
		if d.offers(interactionUpdate) {
			r.Versioning = "versioned-update"
		}
		for _, o := range d.operations {
			r.Operation = append(r.Operation, operationJSON{Name: o.name, Definition: o.definition, Documentation: o.doc})
		}
		for _, i := range d.interactions {
			r.Interaction = append(r.Interaction, interactionJSON{Code: string(i)})
		}
		for _, inc := range d.includes {
			r.SearchInclude = append(r.SearchInclude, inc.name)
		}
		for _, p := range d.params {
			r.SearchParam = append(r.SearchParam, searchParamJSON{Name: p.name, Type: string(p.typ), Documentation: p.doc})
		}
		rest.Resource = append(rest.Resource, r)
	}
	cs.Rest = []restJSON{rest}
	return json.Marshal(cs)
}
