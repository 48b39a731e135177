package fhir

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/spgateway/spgateway/gateway"
)

// outcomes maps each error code to its HTTP status and the OperationOutcome
// issue type used when the error does not give one. It is the only place
// where domain errors meet HTTP.
var outcomes = map[gateway.Code]httpOutcome{
	gateway.CodeInvalid:              {http.StatusBadRequest, "invalid"},
	gateway.CodeUnprocessable:        {http.StatusUnprocessableEntity, "processing"},
	gateway.CodeUnauthorized:         {http.StatusUnauthorized, "login"},
	gateway.CodeForbidden:            {http.StatusForbidden, "forbidden"},
	gateway.CodeNotFound:             {http.StatusNotFound, "not-found"},
	gateway.CodeGone:                 {http.StatusGone, "deleted"},
	gateway.CodeMethodNotAllowed:     {http.StatusMethodNotAllowed, "not-supported"},
	gateway.CodeConflict:             {http.StatusConflict, "conflict"},
	gateway.CodePreconditionFailed:   {http.StatusPreconditionFailed, "conflict"},
	gateway.CodeTooLarge:             {http.StatusRequestEntityTooLarge, "too-long"},
	gateway.CodeUnsupportedMedia:     {http.StatusUnsupportedMediaType, "not-supported"},
	gateway.CodePreconditionRequired: {http.StatusPreconditionRequired, "required"},
	gateway.CodeRateLimited:          {http.StatusTooManyRequests, "throttled"},
	gateway.CodeUnavailable:          {http.StatusServiceUnavailable, "transient"},
	gateway.CodeInternal:             {http.StatusInternalServerError, "exception"},
}

type httpOutcome struct {
	status int
	issue  string
}

// outcomeOf is the status and issue type of code; a code not in outcomes
// is an internal error.
func outcomeOf(code gateway.Code) httpOutcome {
	if o, ok := outcomes[code]; ok {
		return o
	}
	return outcomes[gateway.CodeInternal]
}

type operationOutcome struct {
	ResourceType string         `json:"resourceType"`
	Issue        []outcomeIssue `json:"issue"`
}

type outcomeIssue struct {
	Severity    string   `json:"severity"`
	Code        string   `json:"code"`
	Diagnostics string   `json:"diagnostics,omitempty"`
	Expression  []string `json:"expression,omitempty"`
}

// outcome renders an error as an OperationOutcome with its status. Internal
// errors say only that something failed, with the request id to find the
// logged details by.
func outcome(err error, requestID string) (int, []byte) {
	var e *gateway.Error
	if !errors.As(err, &e) {
		e = gateway.Internal("unclassified", err)
	}
	o := outcomeOf(e.Code)
	oo := operationOutcome{ResourceType: "OperationOutcome"}
	if e.Code == gateway.CodeInternal {
		oo.Issue = []outcomeIssue{{Severity: "error", Code: o.issue,
			Diagnostics: "the server failed to handle the request; quote request id " + requestID + " when reporting it"}}
	} else {
		for _, is := range e.Issues {
			code := string(is.Type)
			if code == "" {
				code = o.issue
			}
			oo.Issue = append(oo.Issue, outcomeIssue{Severity: "error", Code: code, Diagnostics: is.Message, Expression: is.Expression})
		}
		if len(oo.Issue) == 0 {
			oo.Issue = []outcomeIssue{{Severity: "error", Code: o.issue}}
		}
	}
	body, _ := json.Marshal(oo) // plain strings only
	return o.status, body
}

// information is an OperationOutcome that reports success
// (Prefer: return=OperationOutcome).
func information(message string) []byte {
	body, _ := json.Marshal(operationOutcome{ResourceType: "OperationOutcome",
		Issue: []outcomeIssue{{Severity: "information", Code: "informational", Diagnostics: message}}})
	return body
}

// writeError answers with the OperationOutcome of err and logs what the
// client cannot see.
func (s *Server) writeError(c *gin.Context, err error) {
	id := c.GetString(requestIDKey)
	code := gateway.ErrorCode(err)
	switch ctx := c.Request.Context(); {
	case code != gateway.CodeInternal && code != gateway.CodeUnavailable:
	case ctx.Err() != nil:
		// The client went away (gave up or lost its connection) and the
		// work was abandoned with it: the cancelled context shows as
		// context.Canceled, or as a transaction database/sql has already
		// rolled back. Nothing for an operator to mend.
		s.log.InfoContext(ctx, "request abandoned by the client", "request_id", id, "route", c.FullPath(), "err", err.Error())
	default:
		s.log.ErrorContext(ctx, "request failed", "request_id", id, "route", c.FullPath(), "err", err.Error())
	}
	s.auditRefusal(c, err)
	status, body := outcome(err, id)
	switch code {
	case gateway.CodeUnauthorized:
		c.Header("WWW-Authenticate", `Bearer realm="spgateway"`)
	case gateway.CodeMethodNotAllowed:
		if allow := s.allowed(c.Param("type"), c.Param("id") != ""); allow != "" {
			c.Header("Allow", allow)
		}
	}
	s.writeJSON(c, status, body)
}

// writeJSON writes a complete FHIR JSON body.
func (s *Server) writeJSON(c *gin.Context, status int, body []byte) {
	t := c.GetString(responseTypeKey)
	if t == "" {
		t = mediaFHIRJSON
	}
	c.Data(status, t+"; charset=utf-8", body)
}
