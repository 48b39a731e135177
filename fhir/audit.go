package fhir

import (
	"context"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/mapping"
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

// addAuditFilter adds one value of agent, entity or date to a search of
// the audit trail. Repeated parameters all apply; commas separate
// alternatives, except for date (repeat date= for a range).
func (s *Server) addAuditFilter(ps *parsedSearch, p searchParam, modifier, chain, value string) error {
	if modifier != "" || chain != "" {
		return badParam("%s takes no modifiers", p.name)
	}
	alternatives, err := ps.alternatives(p.name, value)
	if err != nil {
		return err
	}
	if p.name == "date" {
		if len(alternatives) > 1 {
			return badParam("date: one value per parameter; repeat date= for a range")
		}
		b, err := parseDateBound(p.name, unescape(alternatives[0]))
		if err != nil {
			return err
		}
		ps.audit.Dates = append(ps.audit.Dates, b)
		return nil
	}
	group := make([]string, 0, len(alternatives))
	for _, alt := range alternatives {
		alt = unescape(alt)
		switch p.name {
		case "agent":
			code := strings.TrimPrefix(strings.TrimPrefix(alt, s.base+"/"), gateway.TypeOrganization+"/")
			if !validAuditValue(code) {
				return badParam("agent: a client id, Organization/{code} or a code")
			}
			group = append(group, code)
		case "entity":
			ref := strings.TrimPrefix(alt, s.base+"/")
			typ, id, ok := strings.Cut(ref, "/")
			if !ok || typ == "" || !idPattern.MatchString(id) {
				return badParam("entity: a reference Type/id")
			}
			group = append(group, typ+"/"+id)
		}
	}
	switch p.name {
	case "agent":
		ps.audit.Agents = append(ps.audit.Agents, group)
	case "entity":
		ps.audit.Entities = append(ps.audit.Entities, group)
	}
	return nil
}

// searchAudit runs a search of the audit trail as a page of rendered
// AuditEvents. The trail is paged by its own sequence, newest first; the
// snapshot a cursor carries is the newest event of the first page.
func (s *Server) searchAudit(ctx context.Context, p gateway.Principal, ps *parsedSearch) (gateway.SearchPage, error) {
	q := ps.audit
	q.Count, q.Before, q.Total = ps.query.Count, ps.query.After, ps.query.Total
	found, err := s.svc.AuditEvents(ctx, p, q)
	if err != nil {
		return gateway.SearchPage{}, err
	}
	page := gateway.SearchPage{Total: found.Total, Snapshot: ps.query.Snapshot, More: found.More,
		Matches: make([]gateway.Resource, len(found.Events))}
	for i, ev := range found.Events {
		page.Matches[i] = s.auditResource(ev)
	}
	if page.Snapshot == 0 && len(found.Events) > 0 {
		page.Snapshot = found.Events[0].Seq
	}
	return page, nil
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

// auditResource renders an audit event. An event is never changed: it is
// at version 1, as of when it was recorded.
func (s *Server) auditResource(ev gateway.AuditEvent) gateway.Resource {
	status := http.StatusOK
	if ev.Outcome != gateway.OutcomeSuccess {
		status = outcomeOf(gateway.Code(ev.Outcome)).status
	}
	return gateway.Resource{Type: gateway.TypeAuditEvent, ID: ev.ID, Version: 1, LastUpdated: ev.Recorded, Seq: ev.Seq,
		Body: mapping.AuditEvent(ev, s.base, status)}
}
