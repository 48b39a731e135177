package fhir

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/gin-gonic/gin"
	"github.com/tidwall/gjson"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/mapping"
)

const mediaJSONPatch = "application/json-patch+json"

// ifMatch reads If-Match: W/"n" (or "n"). 0 means absent; a header that
// names no version is a 400.
func ifMatch(c *gin.Context) (int, error) {
	h := strings.TrimSpace(c.GetHeader("If-Match"))
	if h == "" {
		return 0, nil
	}
	if n, ok := parseETag(h); ok {
		return n, nil
	}
	return 0, gateway.Errorf(gateway.CodeInvalid, `If-Match must be W/"<version>", as in the ETag the resource was read with`)
}

// parseETag reads one entity tag W/"n" or "n".
func parseETag(tag string) (int, bool) {
	tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
	if len(tag) < 3 || tag[0] != '"' || tag[len(tag)-1] != '"' {
		return 0, false
	}
	n, err := strconv.Atoi(tag[1 : len(tag)-1])
	return n, err == nil && n > 0
}

// update answers PUT /fhir/{type}/{id}: a Task by its owner or requester
// (If-Match required), a ServiceRequest by its practice (to revoke it).
func (s *Server) update(c *gin.Context) error {
	typ, id := c.Param("type"), c.Param("id")
	if _, err := resourceFor(typ, interactionUpdate); err != nil {
		return err
	}
	version, err := ifMatch(c)
	if err != nil {
		return err
	}
	body, err := s.readBody(c)
	if err != nil {
		return err
	}
	return s.save(c, typ, id, version, body)
}

// patch answers PATCH /fhir/Task/{id} with a JSON Patch (RFC 6902), applied
// to the version If-Match names; the result is stored as an update.
func (s *Server) patch(c *gin.Context) (err error) {
	typ, id := c.Param("type"), c.Param("id")
	if _, err := resourceFor(typ, interactionPatch); err != nil {
		return err
	}
	version, err := ifMatch(c)
	if err != nil {
		return err
	}
	if version == 0 {
		return gateway.Errorf(gateway.CodePreconditionRequired, `patching a Task needs If-Match: W/"<version>", the version the patch applies to`)
	}
	raw, err := s.readBody(c)
	if err != nil {
		return err
	}
	ops, err := decodePatch(raw)
	if err != nil {
		return err
	}
	// Reading the Task, applying the patch and saving it is one access.
	ctx, end := s.svc.Audit(c.Request.Context(), principal(c), gateway.AuditPatch, typ, typ+"/"+id)
	defer func() { err = end(err) }()
	c.Request = c.Request.WithContext(ctx)
	cur, err := s.svc.Read(ctx, principal(c), typ, id, 0)
	if err != nil {
		return err
	}
	if cur.Version != version {
		return gateway.Errorf(gateway.CodePreconditionFailed, "%s/%s is at version %d, not %d: read it again", typ, id, cur.Version, version)
	}
	patched, err := applyPatch(ops, cur.Body, typ, s.cfg.MaxBodyBytes, s.cfg.MaxJSONDepth)
	if err != nil {
		return err
	}
	return s.save(c, typ, id, version, patched)
}

// decodePatch reads a JSON Patch (RFC 6902): an array of operations, with
// no repeated names (FHIR JSON forbids them, and in a patch the library
// would take the last "op" of an operation, making a test a replace).
func decodePatch(raw []byte) (jsonpatch.Patch, error) {
	if err := mapping.CheckKeys(raw); err != nil {
		return nil, err
	}
	ops, err := jsonpatch.DecodePatch(raw)
	if err != nil || !gjson.ParseBytes(raw).IsArray() {
		return nil, gateway.Errorf(gateway.CodeInvalid, "the body is not a JSON Patch (an array of operations)")
	}
	return ops, nil
}

// applyPatch applies ops to doc, a stored resource of type typ. Copies may
// add at most maxBytes, and the result must be JSON no deeper than
// maxDepth; a patch that cannot be applied is 422.
func applyPatch(ops jsonpatch.Patch, doc []byte, typ string, maxBytes int64, maxDepth int) ([]byte, error) {
	opts := jsonpatch.NewApplyOptions()
	opts.SupportNegativeIndices = false
	opts.AccumulatedCopySizeLimit = maxBytes
	patched, err := ops.ApplyWithOptions(doc, opts)
	if err != nil {
		return nil, gateway.Problem(gateway.CodeUnprocessable, gateway.IssueInvariant, typ, "the patch cannot be applied: %v", err)
	}
	if err := checkJSON(patched, maxDepth); err != nil {
		return nil, err
	}
	return patched, nil
}

// save stores a new version sent by PUT or made by PATCH.
func (s *Server) save(c *gin.Context, typ, id string, version int, body []byte) error {
	// FHIR: the id in the body must be the id in the URL.
	if got := gjson.GetBytes(body, "id"); got.String() != id {
		return gateway.Problem(gateway.CodeInvalid, gateway.IssueValue, typ+".id", "the resource's id must be %q, the id in the URL", id)
	}
	var (
		res gateway.Resource
		err error
	)
	ctx, p := c.Request.Context(), principal(c)
	switch typ {
	case gateway.TypeTask:
		res, err = s.svc.UpdateTask(ctx, p, id, version, body)
	case gateway.TypeServiceRequest:
		res, err = s.svc.UpdateRequest(ctx, p, id, version, body)
	default:
		err = gateway.Errorf(gateway.CodeMethodNotAllowed, "%s cannot be updated", typ)
	}
	if err != nil {
		return err
	}
	s.written(c, http.StatusOK, res, "updated: version "+strconv.Itoa(res.Version))
	return nil
}

// written answers a write with the version it stored: its ETag,
// Last-Modified and Content-Location, and what Prefer: return= asks for —
// nothing, an OperationOutcome saying message, or (the default) the
// resource.
func (s *Server) written(c *gin.Context, status int, res gateway.Resource, message string) {
	c.Header("ETag", etag(res.Version))
	c.Header("Last-Modified", lastModified(res))
	c.Header("Content-Location", s.versionPath(res))
	switch prefer(c, returnRepresentation).ret {
	case returnMinimal:
		c.Status(status)
	case returnOutcome:
		s.writeJSON(c, status, information(message))
	default:
		s.writeJSON(c, status, res.Body)
	}
}

// versionPath is the path of the version res is at.
func (s *Server) versionPath(res gateway.Resource) string {
	return s.basePath + "/" + res.Type + "/" + res.ID + "/_history/" + strconv.Itoa(res.Version)
}

// notModified answers 304 when the client's copy is current: If-None-Match
// names the current version, or If-Modified-Since is not before the last
// change (to the second, as HTTP dates go).
func notModified(c *gin.Context, res gateway.Resource) bool {
	if h := c.GetHeader("If-None-Match"); h != "" {
		for _, tag := range strings.Split(h, ",") {
			if strings.TrimSpace(tag) == "*" {
				return true
			}
			if n, ok := parseETag(tag); ok && n == res.Version {
				return true
			}
		}
		return false // If-None-Match wins over If-Modified-Since (RFC 9110)
	}
	if h := c.GetHeader("If-Modified-Since"); h != "" {
		if since, err := http.ParseTime(h); err == nil {
			return !res.LastUpdated.Truncate(time.Second).After(since)
		}
	}
	return false
}

// history answers GET /fhir/{type}/{id}/_history, newest version first.
func (s *Server) history(c *gin.Context) error {
	typ, id := c.Param("type"), c.Param("id")
	if _, err := resourceFor(typ, interactionHistory); err != nil {
		return err
	}
	count, err := pageSize("_count", c.QueryArray("_count"), s.cfg.DefaultCount, 1, s.cfg.MaxCount)
	if err != nil {
		return err
	}
	before := 0
	if v := c.Query("_before"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return badParam("_before must be a version number")
		}
		before = n
	}
	versions, err := s.svc.History(c.Request.Context(), principal(c), typ, id, before, count+1)
	if err != nil {
		return err
	}
	self := s.base + "/" + typ + "/" + id + "/_history?_count=" + strconv.Itoa(count)
	if before > 0 {
		self += "&_before=" + strconv.Itoa(before)
	}
	next := ""
	if len(versions) > count {
		versions = versions[:count]
		next = s.base + "/" + typ + "/" + id + "/_history?_count=" + strconv.Itoa(count) + "&_before=" + strconv.Itoa(versions[count-1].Version)
	}
	out := historyJSON{ResourceType: gateway.TypeBundle, Type: "history", Link: []linkJSON{{Relation: "self", URL: self}}}
	if next != "" {
		out.Link = append(out.Link, linkJSON{Relation: "next", URL: next})
	}
	for _, v := range versions {
		e := historyEntryJSON{
			FullURL:  s.base + "/" + v.Type + "/" + v.ID,
			Resource: v.Body,
			Request:  requestJSON{Method: "PUT", URL: v.Type + "/" + v.ID},
			Response: responseJSON{Status: "200 OK", Etag: etag(v.Version), LastModified: gateway.FormatInstant(v.LastUpdated)},
		}
		if v.Version == 1 {
			e.Request = requestJSON{Method: "POST", URL: v.Type}
			e.Response.Status = "201 Created"
		}
		out.Entry = append(out.Entry, e)
	}
	body, err := marshalFHIR(out)
	if err != nil {
		return gateway.Internal("history", err)
	}
	s.writeJSON(c, http.StatusOK, body)
	return nil
}

type linkJSON struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

type requestJSON struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

type historyJSON struct {
	ResourceType string             `json:"resourceType"`
	Type         string             `json:"type"`
	Link         []linkJSON         `json:"link"`
	Entry        []historyEntryJSON `json:"entry,omitempty"`
}

type historyEntryJSON struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
	Request  requestJSON     `json:"request"`
	Response responseJSON    `json:"response"`
}

// marshalFHIR marshals without escaping & < > (bodies are JSON, not HTML).
func marshalFHIR(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// operation answers POST /fhir/{type}/{id}, where only POST
// /fhir/Task/$reassign exists.
func (s *Server) operation(c *gin.Context) error {
	typ, id := c.Param("type"), c.Param("id")
	if typ == gateway.TypeTask && id == "$reassign" {
		return s.reassign(c)
	}
	if _, ok := lookupDef(typ); !ok {
		return gateway.Errorf(gateway.CodeNotFound, "resource type %q is not served here", typ)
	}
	if strings.HasPrefix(id, "$") {
		return gateway.Errorf(gateway.CodeNotFound, "operation %s is not defined on %s", id, typ)
	}
	return gateway.Errorf(gateway.CodeMethodNotAllowed, "POST %s/%s is not supported", typ, id)
}

type parametersJSON struct {
	ResourceType string          `json:"resourceType"`
	Parameter    []parameterJSON `json:"parameter,omitempty"`
}

type parameterJSON struct {
	Name            string          `json:"name"`
	ValueInteger    *int            `json:"valueInteger,omitempty"`
	ValueReference  *referenceJSON  `json:"valueReference,omitempty"`
	ValueIdentifier *identifierJSON `json:"valueIdentifier,omitempty"`
}

type referenceJSON struct {
	Reference  string          `json:"reference,omitempty"`
	Type       string          `json:"type,omitempty"`
	Identifier *identifierJSON `json:"identifier,omitempty"`
	Display    string          `json:"display,omitempty"`
}

type identifierJSON struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value,omitempty"`
}

// reassign answers POST /fhir/Task/$reassign: Parameters from and to, each
// the link worker's identifier (valueIdentifier, or a valueReference to a
// PractitionerRole by identifier). It moves every open Task of the caller
// from one link worker to the other and answers with their count and
// references.
func (s *Server) reassign(c *gin.Context) error {
	body, err := s.readBody(c)
	if err != nil {
		return err
	}
	if rt := gjson.GetBytes(body, "resourceType").String(); rt != "Parameters" {
		return gateway.Problem(gateway.CodeInvalid, gateway.IssueStructure, "Parameters", "$reassign takes a Parameters resource, not %q", rt)
	}
	var in parametersJSON
	if err := json.Unmarshal(body, &in); err != nil {
		return gateway.Problem(gateway.CodeInvalid, gateway.IssueStructure, "Parameters", "not a valid Parameters resource")
	}
	var from, to *gateway.Identifier
	for _, p := range in.Parameter {
		var id *identifierJSON
		switch {
		case p.ValueIdentifier != nil:
			id = p.ValueIdentifier
		case p.ValueReference != nil && p.ValueReference.Identifier != nil:
			id = p.ValueReference.Identifier
		}
		var v *gateway.Identifier
		if id != nil {
			v = &gateway.Identifier{System: id.System, Value: id.Value}
		}
		switch p.Name {
		case "from":
			from = v
		case "to":
			to = v
		}
	}
	if from == nil || to == nil {
		return gateway.Problem(gateway.CodeUnprocessable, gateway.IssueRequired, "Parameters.parameter",
			"$reassign needs parameters from and to, each a link worker identifier (valueIdentifier)")
	}
	moved, err := s.svc.Reassign(c.Request.Context(), principal(c), *from, *to)
	if err != nil {
		return err
	}
	n := len(moved)
	out := parametersJSON{ResourceType: "Parameters", Parameter: []parameterJSON{{Name: "count", ValueInteger: &n}}}
	for _, id := range moved {
		out.Parameter = append(out.Parameter, parameterJSON{Name: "task", ValueReference: &referenceJSON{Reference: "Task/" + id}})
	}
	resp, err := marshalFHIR(out)
	if err != nil {
		return gateway.Internal("reassign", err)
	}
	s.writeJSON(c, http.StatusOK, resp)
	return nil
}

// isJSONPatch reports whether a PATCH body is a JSON Patch.
func isJSONPatch(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == mediaJSONPatch
}
