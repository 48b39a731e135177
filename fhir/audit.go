package fhir

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/spgateway/spgateway/gateway"
)

// routeActions say which audited action each route is. Routes not listed
// (health, metadata) touch no patient data.
var routeActions = map[string]gateway.AuditAction{
	"POST /fhir":                        gateway.AuditTransaction,
	"POST /fhir/":                       gateway.AuditTransaction,
	"GET /fhir/:type":                   gateway.AuditSearch,
	"POST /fhir/:type/_search":          gateway.AuditSearch,
	"POST /fhir/:type":                  gateway.AuditCreate,
	"GET /fhir/:type/:id":               gateway.AuditRead,
	"POST /fhir/:type/:id":              gateway.AuditOperation,
	"PUT /fhir/:type/:id":               gateway.AuditUpdate,
	"PATCH /fhir/:type/:id":             gateway.AuditPatch,
	"DELETE /fhir/:type/:id":            gateway.AuditDelete,
	"GET /fhir/:type/:id/_history":      gateway.AuditHistory,
	"GET /fhir/:type/:id/_history/:vid": gateway.AuditVread,
	"GET /api/v1/reports/funnel":        gateway.AuditReport,
	"GET /api/v1/reports/outcomes":      gateway.AuditReport,
	"GET /api/v1/cases":                 gateway.AuditCaseList,
	"GET /api/v1/cases/:id":             gateway.AuditCaseRead,
	"POST /api/v1/cases/:id/events":     gateway.AuditCaseEvent,
	"GET /api/v1/outbox":                gateway.AuditOperation,
	"POST /api/v1/outbox/:id/redrive":   gateway.AuditOperation,
}

// withRequest puts what the audit trail needs to know of the request into
// its context: the source address (the TCP peer, unless a configured
// trusted proxy says otherwise), the request id and the routed action.
func (s *Server) withRequest(c *gin.Context, id string) {
	ri := &gateway.RequestInfo{SourceIP: c.ClientIP(), ID: id, Action: routeActions[c.Request.Method+" "+c.FullPath()]}
	c.Request = c.Request.WithContext(gateway.WithRequest(c.Request.Context(), ri))
}

// auditRefusal audits a refusal the service never saw: a request on a
// patient-data route refused for its credentials (401) or, from an
// authenticated client, for its form (400, 404 for an unknown type, 405,
// 413, 415…). Only a known type and a well-formed id are recorded: the
// path is the client's, and may hold anything.
func (s *Server) auditRefusal(c *gin.Context, refusal error) {
	ctx := c.Request.Context()
	ri := gateway.RequestFrom(ctx)
	if ri == nil || ri.Audited() || ri.Action == "" {
		return
	}
	var p *gateway.Principal
	if v, ok := c.Get(principalKey); ok {
		who := v.(gateway.Principal)
		p = &who
	}
	if p == nil && gateway.ErrorCode(refusal) != gateway.CodeUnauthorized {
		return
	}
	typ := c.Param("type")
	if strings.HasPrefix(c.FullPath(), "/api/v1/cases") {
		typ = gateway.TypeTask
	}
	if _, ok := lookupDef(typ); !ok {
		typ = ""
	}
	ref := ""
	if id := c.Param("id"); typ != "" && idPattern.MatchString(id) {
		ref = typ + "/" + id
	}
	if err := s.svc.AuditRefusal(ctx, p, ri.Action, typ, ref, refusal); err != nil {
		s.log.ErrorContext(ctx, "audit of a refusal failed", "request_id", ri.ID, "err", err.Error())
	}
}

// readAudit answers GET /fhir/AuditEvent/{id}.
func (s *Server) readAudit(c *gin.Context, id string) error {
	ev, err := s.svc.AuditEvent(c.Request.Context(), principal(c), id)
	if err != nil {
		return err
	}
	r, err := s.auditResource(ev)
	if err != nil {
		return err
	}
	c.Header("ETag", etag(r.Version))
	c.Header("Last-Modified", lastModified(r))
	s.writeJSON(c, http.StatusOK, r.Body)
	return nil
}

// searchAudit answers GET /fhir/AuditEvent: agent, entity and date, newest
// first, paged by an opaque cursor on the trail's order.
func (s *Server) searchAudit(c *gin.Context, def *resourceDef, params url.Values) error {
	q, links, err := s.parseAuditSearch(def, params, prefer(c, "").strict)
	if err != nil {
		return err
	}
	hash := queryHash(def.typ, canonicalFilters(links))
	var top int64
	self := s.base + "/" + def.typ
	selfLinks := links
	if token := params.Get("_cursor"); token != "" {
		cur, err := decodeCursor(token)
		if err != nil || cur.query != hash || !cur.desc {
			return badParam("%s", errCursor.Error())
		}
		q.Before, top = cur.after, cur.snapshot
		selfLinks = withParam(links, "_cursor", token)
	}
	if enc := selfLinks.Encode(); enc != "" {
		self += "?" + enc
	}
	page, err := s.svc.AuditEvents(c.Request.Context(), principal(c), q)
	if err != nil {
		return err
	}
	matches := make([]gateway.Resource, len(page.Events))
	for i, ev := range page.Events {
		if matches[i], err = s.auditResource(ev); err != nil {
			return err
		}
	}
	next := ""
	if page.More && len(page.Events) > 0 {
		if top == 0 {
			top = page.Events[0].Seq
		}
		cur := cursor{snapshot: top, after: page.Events[len(page.Events)-1].Seq, total: -1, desc: true, query: hash}
		next = s.base + "/" + def.typ + "?" + withParam(withParam(links, "_count", strconv.Itoa(q.Count)), "_cursor", cur.encode()).Encode()
	}
	s.writeJSON(c, http.StatusOK, s.searchset(self, next, -1, matches, nil))
	return nil
}

// parseAuditSearch reads agent, entity, date and _count. Repeated
// parameters all apply; commas separate alternatives.
func (s *Server) parseAuditSearch(def *resourceDef, params url.Values, strict bool) (gateway.AuditQuery, url.Values, error) {
	q := gateway.AuditQuery{Count: s.cfg.DefaultCount}
	links := url.Values{}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	filters := 0
	for _, key := range keys {
		values := params[key]
		switch key {
		case "_count":
			n, err := single(key, values)
			if err != nil {
				return q, nil, err
			}
			count, err := strconv.Atoi(n)
			if err != nil || count < 1 {
				return q, nil, badParam("_count must be a whole number ≥ 1")
			}
			q.Count = min(count, s.cfg.MaxCount)
			links.Set(key, strconv.Itoa(q.Count))
			continue
		case "_format":
			links[key] = values
			continue
		case "_cursor":
			if _, err := single(key, values); err != nil {
				return q, nil, err
			}
			continue
		}
		if _, ok := def.param(key); !ok {
			if strict {
				return q, nil, badParam("unknown search parameter %q for %s", key, def.typ)
			}
			continue
		}
		for _, v := range values {
			if v == "" {
				continue
			}
			if err := textValue(key, v); err != nil {
				return q, nil, err
			}
			if filters++; filters > maxFilters {
				return q, nil, badParam("a search takes at most %d parameters", maxFilters)
			}
			alts := splitEscaped(v, ',')
			if len(alts) > maxAlternatives {
				return q, nil, badParam("%s: at most %d values separated by commas", key, maxAlternatives)
			}
			var group []string
			for _, alt := range alts {
				alt = unescape(alt)
				switch key {
				case "date":
					b, err := parseDateBound(key, alt)
					if err != nil {
						return q, nil, err
					}
					if len(alts) > 1 {
						return q, nil, badParam("date: one value per parameter; repeat date= for a range")
					}
					q.Dates = append(q.Dates, b)
				case "agent":
					code := strings.TrimPrefix(strings.TrimPrefix(alt, s.base+"/"), gateway.TypeOrganization+"/")
					if !validAuditValue(code) {
						return q, nil, badParam("agent: a client id, Organization/{code} or a code")
					}
					group = append(group, code)
				case "entity":
					ref := strings.TrimPrefix(alt, s.base+"/")
					typ, id, ok := strings.Cut(ref, "/")
					if !ok || typ == "" || !idPattern.MatchString(id) {
						return q, nil, badParam("entity: a reference Type/id")
					}
					group = append(group, typ+"/"+id)
				}
			}
			switch key {
			case "agent":
				q.Agents = append(q.Agents, group)
			case "entity":
				q.Entities = append(q.Entities, group)
			}
			links.Add(key, v)
		}
	}
	return q, links, nil
}

// validAuditValue: client ids and organisation codes are short printable
// words.
func validAuditValue(v string) bool {
	if v == "" || len(v) > 128 {
		return false
	}
	for _, r := range v {
		if r <= ' ' || r > '~' {
			return false
		}
	}
	return true
}

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
	ResourceType string            `json:"resourceType"`
	ID           string            `json:"id"`
	Meta         metaJSON          `json:"meta"`
	Extension    []extensionJSON   `json:"extension,omitempty"`
	Type         codingJSON        `json:"type"`
	Subtype      []codingJSON      `json:"subtype,omitempty"`
	Action       string            `json:"action,omitempty"`
	Recorded     string            `json:"recorded"`
	Outcome      string            `json:"outcome"`
	OutcomeDesc  string            `json:"outcomeDesc"`
	Agent        []auditAgentJSON  `json:"agent"`
	Source       auditSourceJSON   `json:"source"`
	Entity       []auditEntityJSON `json:"entity,omitempty"`
}

type metaJSON struct {
	VersionID   string `json:"versionId"`
	LastUpdated string `json:"lastUpdated"`
}

type extensionJSON struct {
	URL         string          `json:"url"`
	ValueString string          `json:"valueString,omitempty"`
	ValueURI    string          `json:"valueUri,omitempty"`
	Extension   []extensionJSON `json:"extension,omitempty"`
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

type auditAgentJSON struct {
	Type      *conceptJSON      `json:"type,omitempty"`
	Role      []conceptJSON     `json:"role,omitempty"`
	Who       *referenceJSON    `json:"who,omitempty"`
	AltID     string            `json:"altId,omitempty"`
	Requestor bool              `json:"requestor"`
	Network   *auditNetworkJSON `json:"network,omitempty"`
}

type auditNetworkJSON struct {
	Address string `json:"address"`
	Type    string `json:"type"`
}

type auditSourceJSON struct {
	Site     string        `json:"site,omitempty"`
	Observer referenceJSON `json:"observer"`
	Type     []codingJSON  `json:"type"`
}

type auditEntityJSON struct {
	What referenceJSON `json:"what"`
}

// auditResource renders an audit event as an R4 AuditEvent. Its
// outcomeDesc is the HTTP status, never the error's text (which may quote
// the request).
func (s *Server) auditResource(ev gateway.AuditEvent) (gateway.Resource, error) {
	recorded := gateway.FormatInstant(ev.Recorded)
	out := auditEventJSON{
		ResourceType: gateway.TypeAuditEvent,
		ID:           ev.ID,
		Meta:         metaJSON{VersionID: "1", LastUpdated: recorded},
		Action:       auditActionCodes[ev.Action],
		Recorded:     recorded,
		Outcome:      "0",
		OutcomeDesc:  "success",
		Source: auditSourceJSON{Site: s.base, Observer: referenceJSON{Display: "spgateway"},
			Type: []codingJSON{{System: systemSourceType, Code: "4", Display: "Application Server"}}},
	}
	if ev.RequestID != "" {
		out.Extension = []extensionJSON{{URL: extensionRequestID, ValueString: ev.RequestID}}
	}
	if code, ok := restfulCodes[ev.Action]; ok {
		out.Type = codingJSON{System: systemAuditEventType, Code: "rest", Display: "RESTful Operation"}
		out.Subtype = []codingJSON{{System: systemRestful, Code: code}}
	} else {
		out.Type = codingJSON{System: systemDICOM, Code: "110110", Display: "Patient Record"}
		out.Subtype = []codingJSON{{System: systemAuditAction, Code: string(ev.Action)}}
	}
	if ev.Outcome != gateway.OutcomeSuccess {
		o, ok := outcomes[gateway.Code(ev.Outcome)]
		if !ok {
			o = outcomes[gateway.CodeInternal]
		}
		out.Outcome = "4" // minor failure: the request was refused
		if o.status >= 500 {
			out.Outcome = "8" // serious failure
		}
		out.OutcomeDesc = strconv.Itoa(o.status) + " " + http.StatusText(o.status)
	}
	agent := auditAgentJSON{AltID: ev.ClientID, Requestor: true}
	if ev.Role != "" {
		role := conceptJSON{Coding: []codingJSON{{System: systemClientRole, Code: string(ev.Role)}}}
		agent.Type, agent.Role = &role, []conceptJSON{role}
	}
	switch {
	case ev.Org != "":
		agent.Who = &referenceJSON{Reference: gateway.TypeOrganization + "/" + ev.Org}
	case ev.ClientID != "":
		agent.Who = &referenceJSON{Display: ev.ClientID}
	default:
		agent.Who = &referenceJSON{Display: "unauthenticated client"}
	}
	if ev.SourceIP != "" {
		agent.Network = &auditNetworkJSON{Address: ev.SourceIP, Type: "2"} // IP address
	}
	out.Agent = []auditAgentJSON{agent}
	for _, ref := range ev.Entities {
		out.Entity = append(out.Entity, auditEntityJSON{What: referenceJSON{Reference: ref}})
	}
	body, err := json.Marshal(out)
	if err != nil {
		return gateway.Resource{}, gateway.Internal("render AuditEvent", err)
	}
	return gateway.Resource{Type: gateway.TypeAuditEvent, ID: ev.ID, Version: 1, LastUpdated: ev.Recorded, Seq: ev.Seq, Body: body}, nil
}
