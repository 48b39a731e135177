package fhir

import (
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/mapping"
)

// idPattern is the FHIR id syntax; anything else cannot name a resource.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9.-]{1,64}$`)

// Prefer: return=… values.
const (
	returnMinimal        = "minimal"
	returnRepresentation = "representation"
	returnOutcome        = "OperationOutcome"
)

type preferences struct {
	ret    string
	strict bool
}

// prefer reads the Prefer header (RFC 7240): return= and handling=.
func prefer(c *gin.Context, defaultReturn string) preferences {
	p := preferences{ret: defaultReturn}
	for _, h := range c.Request.Header.Values("Prefer") {
		for _, part := range strings.FieldsFunc(h, func(r rune) bool { return r == ',' || r == ';' }) {
			k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
			v = strings.Trim(strings.TrimSpace(v), `"`)
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "return":
				switch v {
				case returnMinimal, returnRepresentation, returnOutcome:
					p.ret = v
				}
			case "handling":
				p.strict = v == "strict"
			}
		}
	}
	return p
}

func (s *Server) metadata(c *gin.Context) error {
	s.writeJSON(c, http.StatusOK, s.capability)
	return nil
}

// read answers GET /fhir/{type}/{id}.
func (s *Server) read(c *gin.Context) error {
	return s.readVersion(c, interactionRead, 0)
}

// vread answers GET /fhir/{type}/{id}/_history/{vid}.
func (s *Server) vread(c *gin.Context) error {
	vid, err := strconv.Atoi(c.Param("vid"))
	if err != nil || vid < 1 {
		return gateway.Errorf(gateway.CodeInvalid, "a version id is a whole number from 1")
	}
	return s.readVersion(c, interactionVread, vid)
}

func (s *Server) readVersion(c *gin.Context, i interaction, version int) error {
	typ, id := c.Param("type"), c.Param("id")
	if _, err := resourceFor(typ, i); err != nil {
		return err
	}
	if !idPattern.MatchString(id) {
		return gateway.Errorf(gateway.CodeNotFound, "%s/%s is not known", typ, id)
	}
	var res gateway.Resource
	switch typ {
	case gateway.TypeAuditEvent:
		ev, err := s.svc.AuditEvent(c.Request.Context(), principal(c), id)
		if err != nil {
			return err
		}
		res = s.auditResource(ev)
	case gateway.TypeQuestionnaire:
		in, ok := s.instrument(id)
		if !ok || version > 1 {
			return gateway.Errorf(gateway.CodeNotFound, "%s/%s is not known", typ, id)
		}
		res = in
	case gateway.TypeOrganization:
		o, err := s.svc.Organization(principal(c), id)
		if err != nil {
			return err
		}
		if version > 1 {
			return gateway.Errorf(gateway.CodeNotFound, "%s/%s/_history/%d is not known", typ, id, version)
		}
		res = s.organization(o)
	default:
		var err error
		if res, err = s.svc.Read(c.Request.Context(), principal(c), typ, id, version); err != nil {
			return err
		}
	}
	c.Header("ETag", etag(res.Version))
	c.Header("Last-Modified", lastModified(res))
	if version == 0 && notModified(c, res) {
		c.Status(http.StatusNotModified)
		return nil
	}
	s.writeJSON(c, http.StatusOK, res.Body)
	return nil
}

func (s *Server) organization(o gateway.Organization) gateway.Resource {
	return gateway.Resource{Type: gateway.TypeOrganization, ID: o.Code, Version: 1, LastUpdated: s.started,
		Body: mapping.Organization(o, s.started)}
}

// search answers GET /fhir/{type}?….
func (s *Server) search(c *gin.Context) error {
	return s.runSearch(c, c.Request.URL.Query())
}

// searchPost answers POST /fhir/{type}/_search with form parameters, which
// keeps NHS numbers out of URLs and their logs.
func (s *Server) searchPost(c *gin.Context) error {
	params := c.Request.URL.Query()
	if c.ContentType() == "application/x-www-form-urlencoded" {
		body, err := s.readRaw(c)
		if err != nil {
			return err
		}
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return gateway.Errorf(gateway.CodeInvalid, "the form body is not valid")
		}
		for k, vs := range form {
			params[k] = append(params[k], vs...)
		}
	}
	return s.runSearch(c, params)
}

func (s *Server) runSearch(c *gin.Context, params url.Values) error {
	def, err := resourceFor(c.Param("type"), interactionSearch)
	if err != nil {
		return err
	}
	ps, err := s.parseSearch(def, params, prefer(c, "").strict)
	if err != nil {
		return err
	}
	self := s.base + "/" + def.typ
	selfLinks := ps.links
	if ps.cursor != nil {
		selfLinks = withParam(ps.links, "_cursor", params.Get("_cursor"))
	}
	if q := selfLinks.Encode(); q != "" {
		self += "?" + q
	}
	var page gateway.SearchPage
	switch def.typ {
	case gateway.TypeOrganization:
		return s.searchOrganizations(c, ps, self)
	case gateway.TypeQuestionnaire:
		return s.searchInstruments(c, ps, self)
	case gateway.TypeAuditEvent:
		page, err = s.searchAudit(c.Request.Context(), principal(c), ps)
	default:
		page, err = s.svc.Search(c.Request.Context(), principal(c), ps.query)
	}
	if err != nil {
		return err
	}
	total := ps.pageTotal(page)
	next := ""
	if page.More && len(page.Matches) > 0 {
		cur := cursor{snapshot: page.Snapshot, after: page.Matches[len(page.Matches)-1].Seq,
			total: int64(total), desc: ps.query.Descending, query: ps.hash}
		links := withParam(ps.links, "_count", strconv.Itoa(ps.query.Count))
		next = s.base + "/" + def.typ + "?" + withParam(links, "_cursor", cur.encode()).Encode()
	}
	s.writeJSON(c, http.StatusOK, s.searchset(self, next, total, page.Matches, page.Included))
	return nil
}

func withParam(v url.Values, key, value string) url.Values {
	out := make(url.Values, len(v)+1)
	for k, vs := range v {
		out[k] = vs
	}
	out.Set(key, value)
	return out
}

// searchOrganizations searches the configured organisations: a handful, so
// all matches come in one page.
func (s *Server) searchOrganizations(c *gin.Context, ps *parsedSearch, self string) error {
	orgs, err := s.svc.Organizations(principal(c))
	if err != nil {
		return err
	}
	var matches []gateway.Resource
	for _, o := range orgs {
		ok := true
		for _, f := range ps.orgs {
			ok = ok && f(o)
		}
		if ok {
			matches = append(matches, s.organization(o))
		}
	}
	total := len(matches)
	if ps.query.Count == 0 {
		matches = nil
	}
	s.writeJSON(c, http.StatusOK, s.searchset(self, "", total, matches, nil))
	return nil
}

// instrument returns an instrument as a Questionnaire resource.
func (s *Server) instrument(id string) (gateway.Resource, bool) {
	for _, in := range s.svc.Instruments() {
		if in.ID == id {
			return gateway.Resource{Type: gateway.TypeQuestionnaire, ID: in.ID, Version: 1, LastUpdated: s.started,
				Body: mapping.Questionnaire(in, s.started)}, true
		}
	}
	return gateway.Resource{}, false
}

// searchInstruments searches the instruments: a handful, in one page.
func (s *Server) searchInstruments(c *gin.Context, ps *parsedSearch, self string) error {
	var matches []gateway.Resource
	for _, in := range s.svc.Instruments() {
		ok := true
		for _, f := range ps.instruments {
			ok = ok && f(in)
		}
		if ok {
			r, _ := s.instrument(in.ID)
			matches = append(matches, r)
		}
	}
	total := len(matches)
	if ps.query.Count == 0 {
		matches = nil
	}
	s.writeJSON(c, http.StatusOK, s.searchset(self, "", total, matches, nil))
	return nil
}

// create answers POST /fhir/{type}: a referral as a single ServiceRequest,
// a PROM as a QuestionnaireResponse, or a practice's Subscription.
func (s *Server) create(c *gin.Context) error {
	typ := c.Param("type")
	if _, err := resourceFor(typ, interactionCreate); err != nil {
		return err
	}
	body, err := s.readBody(c)
	if err != nil {
		return err
	}
	switch typ {
	case gateway.TypeQuestionnaireResponse:
		return s.createPROM(c, body)
	case gateway.TypeSubscription:
		return s.createSubscription(c, body)
	}
	ref, err := mapping.ParseServiceRequest(body, c.GetHeader("If-None-Exist"))
	if err != nil {
		return err
	}
	res, err := s.svc.SubmitReferral(c.Request.Context(), principal(c), ref)
	if err != nil {
		return err
	}
	var sr *gateway.Resource
	for i, e := range ref.Entries {
		if e.Part == gateway.PartRequest {
			sr = res.Entries[i].Resource
		}
	}
	if sr == nil {
		return gateway.Internal("create", errors.New("no ServiceRequest in the result"))
	}
	status, msg := http.StatusOK, "this referral was received before: nothing was written"
	if res.Created {
		status, msg = http.StatusCreated, "created"
	}
	s.created(c, status, *sr, msg)
	return nil
}

// transaction answers POST /fhir: a referral as a transaction Bundle.
func (s *Server) transaction(c *gin.Context) error {
	body, err := s.readBody(c)
	if err != nil {
		return err
	}
	ref, err := mapping.ParseTransaction(body)
	if err != nil {
		return err
	}
	res, err := s.svc.SubmitReferral(c.Request.Context(), principal(c), ref)
	if err != nil {
		return err
	}
	s.writeJSON(c, http.StatusOK, s.transactionResponse(res, prefer(c, returnMinimal).ret))
	return nil
}

// createPROM answers POST /fhir/QuestionnaireResponse: the provider's PROM
// is checked, scored and linked from the referral's Task in one
// transaction; the answer is the stored response (201).
func (s *Server) createPROM(c *gin.Context, body []byte) error {
	r, err := mapping.ParseQuestionnaireResponse(body)
	if err != nil {
		return err
	}
	res, err := s.svc.RecordPROM(c.Request.Context(), principal(c), r)
	if err != nil {
		return err
	}
	s.created(c, http.StatusCreated, res.Response, "scored: Observation/"+res.Observation.ID+"; Task/"+res.Task.ID+
		" is at version "+strconv.Itoa(res.Task.Version))
	return nil
}

// created answers a create with the resource it stored (status 201, or
// 200 when a repeat wrote nothing): Location names the version, and the
// answer is a written one's (see written).
func (s *Server) created(c *gin.Context, status int, res gateway.Resource, message string) {
	c.Header("Location", s.versionPath(res))
	s.written(c, status, res, message)
}
