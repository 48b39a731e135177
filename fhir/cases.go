package fhir

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/spgateway/spgateway/gateway"
)

// The case API (/api/v1/cases) is for providers that poll but do not speak
// FHIR: their case records, in their own fields and vocabulary, and their
// events back. Tenancy and authentication are the FHIR API's.

// caseStatuses reads ?status=: "new" (requested), "open", or Task
// statuses, comma-separated.
func caseStatuses(v string) ([]string, error) {
	var out []string
	for _, s := range strings.Split(v, ",") {
		switch s = strings.TrimSpace(s); s {
		case "":
		case "new":
			out = append(out, gateway.TaskRequested)
		case "open":
			out = append(out, gateway.OpenStatuses...)
		default:
			if !slices.Contains(gateway.TaskStatuses, s) {
				return nil, gateway.Problem(gateway.CodeInvalid, gateway.IssueValue, "status", "status is new, open or a Task status, not %q", s)
			}
			out = append(out, s)
		}
	}
	return out, nil
}

type casesJSON struct {
	Cases []json.RawMessage `json:"cases"`
	Next  string            `json:"next,omitempty"`
}

// listCases answers GET /api/v1/cases?status=…&since=…&count=…&cursor=…:
// the provider's case records (changed at or after since, a FHIR dateTime),
// oldest change first. next continues the list as it was at the first
// page, like FHIR search paging.
func (s *Server) listCases(c *gin.Context) error {
	statuses, err := caseStatuses(c.Query("status"))
	if err != nil {
		return err
	}
	count, err := pageSize("count", c.QueryArray("count"), s.cfg.DefaultCount, 1, s.cfg.MaxCount)
	if err != nil {
		return err
	}
	cq := gateway.CaseQuery{Statuses: statuses, Count: count}
	if v := c.Query("since"); v != "" {
		// An unencoded "+" in a zone offset arrives as a space.
		p, err := gateway.ParseDateTime(strings.ReplaceAll(v, " ", "+"))
		if err != nil {
			return badParam("since: %v", err)
		}
		cq.Since = &p
	}
	hash := queryHash("cases", strings.Join(statuses, ",")+"\x00"+c.Query("since"))
	if v := c.Query("cursor"); v != "" {
		cur, err := decodeCursor(v)
		if err != nil || cur.query != hash {
			return badParam("%s", errCursor.Error())
		}
		cq.Snapshot, cq.After = cur.snapshot, cur.after
	}
	records, snap, last, more, err := s.svc.Cases(c.Request.Context(), principal(c), cq)
	if err != nil {
		return err
	}
	out := casesJSON{Cases: make([]json.RawMessage, len(records))}
	for i, r := range records {
		out.Cases[i] = r
	}
	if more {
		out.Next = cursor{snapshot: snap, after: last, total: -1, query: hash}.encode()
	}
	body, err := marshalFHIR(out)
	if err != nil {
		return gateway.Internal("cases", err)
	}
	c.Data(http.StatusOK, mediaJSON+"; charset=utf-8", body)
	return nil
}

// getCase answers GET /api/v1/cases/{id}.
func (s *Server) getCase(c *gin.Context) error {
	rec, err := s.svc.Case(c.Request.Context(), principal(c), c.Param("id"))
	if err != nil {
		return err
	}
	c.Data(http.StatusOK, mediaJSON+"; charset=utf-8", rec)
	return nil
}

// caseEvent answers POST /api/v1/cases/{id}/events: the provider's event,
// in its own vocabulary, applied through the Task workflow's rules.
func (s *Server) caseEvent(c *gin.Context) error {
	body, err := s.readBody(c)
	if err != nil {
		return err
	}
	rec, err := s.svc.ApplyCaseEvent(c.Request.Context(), principal(c), c.Param("id"), body)
	if err != nil {
		return err
	}
	c.Data(http.StatusOK, mediaJSON+"; charset=utf-8", rec)
	return nil
}

// listOutbox answers GET /api/v1/outbox?status=dead (operators).
func (s *Server) listOutbox(c *gin.Context) error {
	if err := s.svc.Operator(principal(c)); err != nil {
		return err // before the parameters: who may ask comes first
	}
	status := c.DefaultQuery("status", gateway.OutboxDead)
	limit, err := pageSize("limit", c.QueryArray("limit"), 100, 1, 1000)
	if err != nil {
		return err
	}
	view, err := s.svc.OutboxEvents(c.Request.Context(), principal(c), status, limit)
	if err != nil {
		return err
	}
	body, err := marshalFHIR(view)
	if err != nil {
		return gateway.Internal("outbox", err)
	}
	c.Data(http.StatusOK, mediaJSON+"; charset=utf-8", body)
	return nil
}

// redrive answers POST /api/v1/outbox/{id}/redrive (operators).
func (s *Server) redrive(c *gin.Context) error {
	if err := s.svc.Redrive(c.Request.Context(), principal(c), c.Param("id")); err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}
