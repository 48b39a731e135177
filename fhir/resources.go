package fhir

import (
	"strings"

	"github.com/spgateway/spgateway/gateway"
)

// The registry of what the API offers. Routing, search parsing and the
// CapabilityStatement all read it, so the statement lists exactly what is
// implemented.

type interaction string

const (
	interactionRead    interaction = "read"
	interactionVread   interaction = "vread"
	interactionSearch  interaction = "search-type"
	interactionCreate  interaction = "create"
	interactionUpdate  interaction = "update"
	interactionPatch   interaction = "patch"
	interactionHistory interaction = "history-instance"
	interactionDelete  interaction = "delete"
)

type paramType string

const (
	paramToken     paramType = "token"
	paramReference paramType = "reference"
	paramDate      paramType = "date"
	paramString    paramType = "string"
	paramURI       paramType = "uri"
)

type searchParam struct {
	name  string
	typ   paramType
	field gateway.Field
	// target is the resource type a reference parameter refers to.
	target string
	// system is the code system a token parameter's codes belong to;
	// values in another system match nothing.
	system string
	doc    string
}

type includeDef struct {
	name   string // e.g. "Task:focus"
	field  gateway.Field
	target string
}

type operationDef struct {
	name, definition, doc string
}

type resourceDef struct {
	typ               string
	interactions      []interaction
	operations        []operationDef
	params            []searchParam
	includes          []includeDef
	conditionalCreate bool
	// newestFirst: searches come newest first only (the audit trail);
	// _sort=_lastUpdated is refused.
	newestFirst bool
	doc         string
}

func (d *resourceDef) offers(i interaction) bool {
	for _, x := range d.interactions {
		if x == i {
			return true
		}
	}
	return false
}

func (d *resourceDef) param(name string) (searchParam, bool) {
	for _, p := range d.params {
		if p.name == name {
			return p, true
		}
	}
	return searchParam{}, false
}

var (
	paramID          = searchParam{name: "_id", typ: paramToken, field: gateway.FieldID, doc: "Logical id; several ids separated by commas"}
	paramLastUpdated = searchParam{name: "_lastUpdated", typ: paramDate, field: gateway.FieldLastUpdated, doc: "When the resource last changed (meta.lastUpdated), with prefixes eq, ne, gt, ge, lt, le, sa, eb"}
	paramPatient     = searchParam{name: "patient", typ: paramReference, field: gateway.FieldPatient, target: gateway.TypePatient,
		doc: "The patient (Patient/{id}); patient:identifier=system|value and patient.identifier=system|value search by NHS number"}
	paramIdentifier = searchParam{name: "identifier", typ: paramToken, field: gateway.FieldIdentifier, doc: "A business identifier: system|value, value, system| or |value"}
)

var resourceDefs = []resourceDef{
	{
		typ:               gateway.TypeServiceRequest,
		interactions:      []interaction{interactionRead, interactionVread, interactionSearch, interactionCreate, interactionUpdate, interactionHistory},
		conditionalCreate: true,
		doc: "A social prescribing referral. Create with a contained Patient, Patient/{id} or an NHS number identifier as subject; " +
			"the practice's identifier makes a repeated create return the existing referral (200). Update: the practice may only " +
			"revoke it (status revoked or entered-in-error, reason in extension " + gateway.ExtensionRequestStatusReason +
			"), which cancels its open Task in the same transaction; If-Match optional.",
		params: []searchParam{
			paramID, paramLastUpdated, paramIdentifier, paramPatient,
			{name: "requester", typ: paramReference, field: gateway.FieldPractice, target: gateway.TypeOrganization, doc: "The referring practice (Organization/{ods})"},
			{name: "performer", typ: paramReference, field: gateway.FieldProvider, target: gateway.TypeOrganization, doc: "The provider the referral was routed to (Organization/{code})"},
			{name: "status", typ: paramToken, field: gateway.FieldStatus, doc: "active, revoked, completed…"},
			{name: "authored", typ: paramDate, field: gateway.FieldAuthored, doc: "ServiceRequest.authoredOn"},
		},
	},
	{
		typ:          gateway.TypeTask,
		interactions: []interaction{interactionRead, interactionVread, interactionSearch, interactionUpdate, interactionPatch, interactionHistory},
		operations: []operationDef{{name: "reassign", definition: gateway.CanonicalBase + "OperationDefinition/Task-reassign",
			doc: "POST /fhir/Task/$reassign with Parameters from and to (valueIdentifier: a link worker's identifier in the provider's " +
				"system): every open Task of the calling provider held by from moves to to, in one transaction; answers count and task references."}},
		doc: "The fulfilment Task of a referral, created by the gateway and owned by the provider it was routed to. Update (PUT) " +
			"and patch (JSON Patch) need If-Match. The provider moves it requested → received → accepted → in-progress ⇄ on-hold → " +
			"completed, or rejected/failed; the practice may only cancel it (which revokes the ServiceRequest). statusReason " +
			"(codes of " + gateway.SystemStatusReason + ") is required for rejected, cancelled, on-hold and failed; businessStatus " +
			"uses " + gateway.SystemBusinessStatus + ". The link worker holding a Task is the extension " + gateway.ExtensionLinkWorker + ".",
		params: []searchParam{
			paramID, paramLastUpdated, paramPatient,
			{name: "owner", typ: paramReference, field: gateway.FieldProvider, target: gateway.TypeOrganization, doc: "The provider (Organization/{code})"},
			{name: "requester", typ: paramReference, field: gateway.FieldPractice, target: gateway.TypeOrganization, doc: "The referring practice (Organization/{ods})"},
			{name: "status", typ: paramToken, field: gateway.FieldStatus, doc: "requested, received, accepted, rejected, in-progress, on-hold, completed, cancelled, failed"},
			{name: "business-status", typ: paramToken, field: gateway.FieldBusinessStatus, system: gateway.SystemBusinessStatus, doc: "A code of " + gateway.SystemBusinessStatus},
			{name: "focus", typ: paramReference, field: gateway.FieldReferral, target: gateway.TypeServiceRequest, doc: "The referral (ServiceRequest/{id})"},
			{name: "modified", typ: paramDate, field: gateway.FieldModified, doc: "Task.lastModified"},
		},
		includes: []includeDef{
			{name: "Task:focus", field: gateway.FieldReferral, target: gateway.TypeServiceRequest},
			{name: "Task:patient", field: gateway.FieldPatient, target: gateway.TypePatient},
		},
	},
	{
		typ:          gateway.TypePatient,
		interactions: []interaction{interactionRead, interactionVread, interactionSearch, interactionHistory},
		doc:          "Patients of the referrals the client may see; one per practice and NHS number, updated by later referrals.",
		params:       []searchParam{paramID, paramLastUpdated, paramIdentifier},
	},
	{
		typ:          gateway.TypeCondition,
		interactions: []interaction{interactionRead, interactionVread, interactionSearch, interactionHistory},
		doc:          "Reasons for referral, sent in a referral Bundle.",
		params:       []searchParam{paramID, paramLastUpdated, paramPatient},
	},
	{
		typ:          gateway.TypeConsent,
		interactions: []interaction{interactionRead, interactionVread, interactionSearch, interactionHistory},
		doc: "The patient's consent to share, sent in a referral Bundle. Category " + gateway.SystemConsentCategory + "#" +
			gateway.ConsentCodesOnly + ": the practice sees coded outcomes of the Task only, no free text or notes.",
		params: []searchParam{paramID, paramLastUpdated, paramPatient},
	},
	{
		typ:          gateway.TypeQuestionnaireResponse,
		interactions: []interaction{interactionCreate, interactionRead, interactionVread, interactionSearch, interactionHistory},
		doc: "A PROM a provider records for an accepted referral: questionnaire the instrument's canonical URL (see Questionnaire), " +
			"subject the Patient, basedOn the ServiceRequest, one item per question (linkId) with answer.valueInteger. The gateway " +
			"checks and scores it, stores an Observation of the score, and links both from the Task's output (additional-content).",
		params: []searchParam{paramID, paramLastUpdated, paramPatient,
			{name: "questionnaire", typ: paramReference, field: gateway.FieldQuestionnaire, target: gateway.TypeQuestionnaire, doc: "The instrument: its canonical URL, or Questionnaire/{id}"},
			{name: "authored", typ: paramDate, field: gateway.FieldAuthored, doc: "When the patient answered"},
		},
	},
	{
		typ:          gateway.TypeObservation,
		interactions: []interaction{interactionRead, interactionVread, interactionSearch, interactionHistory},
		doc: "PROM scores, made by the gateway when it scores a QuestionnaireResponse: valueQuantity the score (SWEMWBS: the " +
			"metric score, with the raw score as a component; WEMWBS: the sum), or for ONS4 four components and no value.",
		params: []searchParam{paramID, paramLastUpdated, paramPatient,
			{name: "code", typ: paramToken, field: gateway.FieldCode, doc: "The score's code (SNOMED CT 718466001 SWEMWBS, 718426000 WEMWBS; " + gateway.SystemPROMScore + "|ons4)"},
			{name: "date", typ: paramDate, field: gateway.FieldAuthored, doc: "effectiveDateTime: when the patient answered"},
		},
	},
	{
		typ:          gateway.TypeQuestionnaire,
		interactions: []interaction{interactionRead, interactionVread, interactionSearch},
		doc:          "The PROM instruments: SWEMWBS, WEMWBS and ONS4 built in, and any the configuration adds. Items by linkId and short label.",
		params: []searchParam{
			{name: "_id", typ: paramToken, doc: "The instrument's id (swemwbs, wemwbs, ons4)"},
			{name: "url", typ: paramURI, doc: "The canonical URL"},
		},
	},
	{
		typ:          gateway.TypeSubscription,
		interactions: []interaction{interactionCreate, interactionRead, interactionVread, interactionHistory, interactionDelete},
		doc: "A practice's R4 rest-hook Subscription to changes of its Tasks: criteria Task?requester=Organization/{its ODS code}; " +
			"channel.payload empty (a notification without content) or application/fhir+json or application/json (the Task, as the practice may see it). " +
			"Delivered at least once, in order per Task, with the header X-Spgateway-Delivery to de-duplicate on; status error, with " +
			"error, while the endpoint fails, active again when it recovers.",
	},
	{
		typ:          gateway.TypeAuditEvent,
		interactions: []interaction{interactionRead, interactionSearch},
		newestFirst:  true,
		doc: "The audit trail, for operators (admin clients) only: one event per read, search, history, create, update, patch, " +
			"delete or operation on patient data, per case API call and report, and per refused request (401, 403, 404…), " +
			"with who (client, role, organisation), what (resource references only), when, the outcome and the source address. " +
			"An event never changes: it stays at version 1. Searches come newest first (_sort=-_lastUpdated only).",
		params: []searchParam{
			{name: "agent", typ: paramReference, doc: "Who: a client id, Organization/{code} or the bare code; commas for alternatives"},
			{name: "entity", typ: paramReference, doc: "A resource touched, as Type/id; commas for alternatives"},
			{name: "date", typ: paramDate, doc: "When recorded, with prefixes eq, ne, gt, ge, lt, le, sa, eb; repeat for a range"},
		},
	},
	{
		typ:          gateway.TypeOrganization,
		interactions: []interaction{interactionRead, interactionVread, interactionSearch},
		doc:          "Practices and providers from the gateway's configuration; the id is the ODS code or local id.",
		params: []searchParam{
			{name: "_id", typ: paramToken, doc: "The code"},
			{name: "identifier", typ: paramToken, doc: "system|value; the system is " + gateway.SystemODS},
			{name: "name", typ: paramString, doc: "Name, case-insensitive prefix; name:exact and name:contains"},
		},
	},
}

func lookupDef(typ string) (*resourceDef, bool) {
	for i := range resourceDefs {
		if resourceDefs[i].typ == typ {
			return &resourceDefs[i], true
		}
	}
	return nil, false
}

// resourceFor returns the definition of typ when it offers i: CodeNotFound
// for a type the server does not serve, CodeMethodNotAllowed for an
// interaction it does not offer on the type.
func resourceFor(typ string, i interaction) (*resourceDef, error) {
	d, ok := lookupDef(typ)
	if !ok {
		return nil, gateway.Errorf(gateway.CodeNotFound, "resource type %q is not served here", typ)
	}
	if !d.offers(i) {
		return nil, gateway.Errorf(gateway.CodeMethodNotAllowed, "%s does not support %s", typ, i)
	}
	return d, nil
}

// allowed returns the Allow header for a type's type-level (instance false)
// or instance-level endpoint.
func (s *Server) allowed(typ string, instance bool) string {
	d, ok := lookupDef(typ)
	if !ok {
		return ""
	}
	var methods []string
	if instance {
		if d.offers(interactionRead) {
			methods = append(methods, "GET")
		}
		if d.offers(interactionUpdate) {
			methods = append(methods, "PUT")
		}
		if d.offers(interactionPatch) {
			methods = append(methods, "PATCH")
		}
		if d.offers(interactionDelete) {
			methods = append(methods, "DELETE")
		}
	} else {
		if d.offers(interactionSearch) {
			methods = append(methods, "GET")
		}
		if d.offers(interactionCreate) {
			methods = append(methods, "POST")
		}
	}
	return strings.Join(methods, ", ")
}
