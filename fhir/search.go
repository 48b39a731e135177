package fhir

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/spgateway/spgateway/gateway"
)

// parsedSearch is a search request read from its parameters.
type parsedSearch struct {
	def   *resourceDef
	query gateway.SearchQuery
	// links are the parameters the search applied, for its self and next
	// links; unknown parameters it ignored are left out.
	links  url.Values
	hash   uint32
	cursor *cursor
	// total is the _total asked for: "" or "estimate" (count where cheap),
	// "none" or "accurate".
	total string
	// filters counts the parameter occurrences applied, up to maxFilters.
	filters int
	// orgs filters configured organisations (Organization searches);
	// instruments filters instruments (Questionnaire searches); audit
	// selects audit events (AuditEvent searches).
	orgs        []func(gateway.Organization) bool
	instruments []func(gateway.Instrument) bool
	audit       gateway.AuditQuery
}

// ignoredParams are FHIR result parameters the server does not implement;
// like unknown parameters they are ignored unless the client asks for strict
// handling.
var ignoredParams = map[string]bool{
	"_summary": true, "_elements": true, "_revinclude": true, "_contained": true, "_containedType": true,
	"_has": true, "_list": true, "_text": true, "_content": true, "_query": true, "_filter": true,
	"_security": true, "_tag": true, "_profile": true, "_source": true,
}

// Limits on one search, well inside the engines' bound-parameter limits: a
// search is refused (400) rather than sent to the database at any size.
const (
	maxFilters      = 32  // search parameter occurrences
	maxAlternatives = 100 // comma-separated values in one occurrence
)

func badParam(format string, args ...any) error {
	return gateway.Errorf(gateway.CodeInvalid, format, args...)
}

// parseSearch reads the search parameters of a search on def. Malformed
// values of known parameters are a 400; unknown parameters are ignored, or
// a 400 when strict.
func (s *Server) parseSearch(def *resourceDef, params url.Values, strict bool) (*parsedSearch, error) {
	ps := &parsedSearch{def: def, links: url.Values{}}
	ps.query = gateway.SearchQuery{Type: def.typ, Count: s.cfg.DefaultCount, Descending: def.newestFirst}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var cursorToken string
	for _, key := range keys {
		values := params[key]
		switch key {
		case "_count":
			count, err := pageSize(key, values, s.cfg.DefaultCount, 0, s.cfg.MaxCount)
			if err != nil {
				return nil, err
			}
			ps.query.Count = count
			ps.links.Set(key, strconv.Itoa(count))
			continue
		case "_sort":
			v, err := single(key, values)
			if err != nil {
				return nil, err
			}
			switch {
			case v == "-_lastUpdated":
				ps.query.Descending = true
			case def.newestFirst:
				return nil, badParam("%s comes newest first: _sort supports -_lastUpdated only", def.typ)
			case v != "_lastUpdated":
				return nil, badParam("_sort supports _lastUpdated and -_lastUpdated only")
			}
			ps.links.Set(key, v)
			continue
		case "_total":
			v, err := single(key, values)
			if err != nil {
				return nil, err
			}
			switch v {
			case "none", "estimate", "accurate":
				ps.total = v
			default:
				return nil, badParam("_total must be none, estimate or accurate")
			}
			ps.links.Set(key, v)
			continue
		case "_include":
			for _, v := range values {
				inc, ok := findInclude(def, v)
				if !ok {
					return nil, badParam("_include=%s is not supported on %s", v, def.typ)
				}
				if !slices.Contains(ps.query.Includes, inc) {
					ps.query.Includes = append(ps.query.Includes, inc)
				}
				ps.links.Add(key, v)
			}
			continue
		case "_format":
			ps.links[key] = values
			continue
		case "_cursor":
			v, err := single(key, values)
			if err != nil {
				return nil, err
			}
			cursorToken = v
			continue
		}
		name, modifier, _ := strings.Cut(key, ":")
		chain := ""
		if n, c, ok := strings.Cut(name, "."); ok {
			name, chain = n, c
		}
		p, ok := def.param(name)
		if !ok {
			if strict {
				if ignoredParams[key] {
					return nil, badParam("search parameter %s is not supported", key)
				}
				return nil, badParam("unknown search parameter %q for %s", key, def.typ)
			}
			continue
		}
		for _, v := range values {
			if v == "" {
				continue // FHIR: a parameter without a value is ignored
			}
			var err error
			switch def.typ {
			case gateway.TypeOrganization:
				err = ps.addOrganizationFilter(p, modifier, chain, v)
			case gateway.TypeQuestionnaire:
				err = ps.addInstrumentFilter(p, modifier, chain, v)
			case gateway.TypeAuditEvent:
				err = s.addAuditFilter(ps, p, modifier, chain, v)
			default:
				err = s.addFilter(ps, p, modifier, chain, v)
			}
			if err != nil {
				return nil, err
			}
			ps.links.Add(key, v)
		}
	}
	// Counting every match costs as much as reading them all, so it is done
	// only when asked for (_total=accurate, or _count=0, which asks for
	// nothing else); otherwise Bundle.total is given only where it is free:
	// when the first page holds every match (see pageTotal).
	ps.query.Total = ps.total == "accurate" || ps.total != "none" && ps.query.Count == 0
	ps.hash = queryHash(def.typ, canonicalFilters(ps.links))
	if cursorToken != "" {
		c, err := decodeCursor(cursorToken)
		if err != nil || c.query != ps.hash || c.desc != ps.query.Descending {
			return nil, badParam("%s", errCursor.Error())
		}
		ps.cursor = &c
		ps.query.Snapshot, ps.query.After = c.snapshot, c.after
		ps.query.Total = false // counted on the first page; carried in the cursor
	}
	return ps, nil
}

// pageTotal is the Bundle.total of page, or -1 to leave it out: the count
// of the first page (when the search asked for it), carried by the cursor
// to later pages; or, where not counted, the first page's own size when it
// holds every match.
func (ps *parsedSearch) pageTotal(page gateway.SearchPage) int {
	switch {
	case ps.cursor != nil:
		return int(ps.cursor.total)
	case page.Total >= 0 || ps.total == "none":
		return page.Total
	case !page.More:
		return len(page.Matches)
	}
	return -1
}

// canonicalFilters encodes the parameters that decide which resources match
// (not the page size or format), so a cursor is tied to its search.
func canonicalFilters(links url.Values) string {
	v := url.Values{}
	for k, vs := range links {
		if k != "_count" && k != "_format" && k != "_total" {
			v[k] = vs
		}
	}
	return v.Encode()
}

func single(key string, values []string) (string, error) {
	if len(values) != 1 {
		return "", badParam("%s may be given once", key)
	}
	return values[0], nil
}

// pageSize reads a page-size parameter (a search's or a history's _count,
// the case list's count, the outbox's limit) from its values: def when it
// is absent, else one whole number no less than least, cut to most. Each
// endpoint gives its own bounds.
func pageSize(name string, values []string, def, least, most int) (int, error) {
	if len(values) == 0 {
		return def, nil
	}
	v, err := single(name, values)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < least {
		return 0, badParam("%s must be a whole number ≥ %d", name, least)
	}
	return min(n, most), nil
}

func findInclude(def *resourceDef, v string) (gateway.Include, bool) {
	for _, inc := range def.includes {
		if v == inc.name || v == inc.name+":"+inc.target {
			return gateway.Include{Field: inc.field, Type: inc.target}, true
		}
	}
	return gateway.Include{}, false
}

// textValue refuses a search value the store cannot bind as text:
// PostgreSQL refuses bytes that are not UTF-8, and NUL in any text.
func textValue(name, value string) error {
	if !utf8.ValidString(value) {
		return badParam("%s: the value is not UTF-8", name)
	}
	if strings.IndexByte(value, 0) >= 0 {
		return badParam("%s: the value holds a NUL character", name)
	}
	return nil
}

// alternatives checks one value of the search parameter name, for the
// store, and splits it at its unescaped commas: text the store can bind,
// within the limits of one search.
func (ps *parsedSearch) alternatives(name, value string) ([]string, error) {
	if err := textValue(name, value); err != nil {
		return nil, err
	}
	if ps.filters++; ps.filters > maxFilters {
		return nil, badParam("a search takes at most %d parameters", maxFilters)
	}
	alternatives := splitEscaped(value, ',')
	if len(alternatives) > maxAlternatives {
		return nil, badParam("%s: at most %d values separated by commas", name, maxAlternatives)
	}
	return alternatives, nil
}

// addFilter adds one value (which may list alternatives separated by commas)
// of a search parameter to the query.
func (s *Server) addFilter(ps *parsedSearch, p searchParam, modifier, chain, value string) error {
	alternatives, err := ps.alternatives(p.name, value)
	if err != nil {
		return err
	}
	f := gateway.Filter{Field: p.field}
	switch p.typ {
	case paramDate:
		if modifier != "" || chain != "" {
			return badParam("%s takes no modifiers", p.name)
		}
		for _, alt := range alternatives {
			b, err := parseDateBound(p.name, alt)
			if err != nil {
				return err
			}
			f.Dates = append(f.Dates, b)
		}
	case paramToken:
		if modifier != "" || chain != "" {
			return badParam("%s takes no modifiers", p.name)
		}
		for _, alt := range alternatives {
			system, code, hasSystem := splitToken(alt)
			switch {
			case p.field.IsToken():
				f.Tokens = append(f.Tokens, gateway.Token{System: system, Value: code, NoSystem: hasSystem && system == ""})
			case hasSystem && system != p.system:
				// a code from another system matches nothing
			case code != "":
				f.Values = append(f.Values, code)
			}
		}
	case paramReference:
		if chain == "identifier" {
			modifier = "identifier"
		} else if chain != "" {
			return badParam("chained search %s.%s is not supported", p.name, chain)
		}
		switch {
		case modifier == "identifier" && p.field == gateway.FieldPatient:
			f.Field = gateway.FieldPatientIdentifier
			for _, alt := range alternatives {
				system, code, hasSystem := splitToken(alt)
				f.Tokens = append(f.Tokens, gateway.Token{System: system, Value: code, NoSystem: hasSystem && system == ""})
			}
		case modifier == "identifier" && p.target == gateway.TypeOrganization:
			// Organisations are identified by their code.
			for _, alt := range alternatives {
				system, code, hasSystem := splitToken(alt)
				if (!hasSystem || system == gateway.SystemODS) && code != "" {
					f.Values = append(f.Values, code)
				}
			}
		case p.field == gateway.FieldQuestionnaire && (modifier == "" || modifier == p.target):
			for _, alt := range alternatives {
				if url, ok := s.canonical(unescape(alt)); ok {
					f.Values = append(f.Values, url)
				}
			}
		case modifier == "" || modifier == p.target:
			for _, alt := range alternatives {
				if id, ok := s.referenceID(unescape(alt), p.target); ok {
					f.Values = append(f.Values, id)
				}
			}
		default:
			return badParam("modifier :%s is not supported on %s", modifier, p.name)
		}
	default:
		return badParam("%s is not searchable here", p.name)
	}
	ps.query.Filters = append(ps.query.Filters, f)
	return nil
}

// referenceID reads a reference search value: an id, Type/id, or an
// absolute URL on this server. A reference to another type matches
// nothing (false).
func (s *Server) referenceID(v, target string) (string, bool) {
	v = strings.TrimPrefix(v, s.base+"/")
	typ, id, hasType := strings.Cut(v, "/")
	if !hasType {
		return v, v != ""
	}
	if typ != target || id == "" || strings.Contains(id, "/") {
		return "", false
	}
	return id, true
}

// canonical reads a reference to an instrument: its canonical URL (any
// |version cut off), Questionnaire/{id} or its id.
func (s *Server) canonical(v string) (string, bool) {
	if strings.Contains(v, "://") {
		url, _, _ := strings.Cut(v, "|")
		return url, true
	}
	id := strings.TrimPrefix(v, gateway.TypeQuestionnaire+"/")
	for _, in := range s.svc.Instruments() {
		if in.ID == id {
			return in.URL, true
		}
	}
	return "", false
}

// addInstrumentFilter filters the instruments (Questionnaire searches).
func (ps *parsedSearch) addInstrumentFilter(p searchParam, modifier, chain, value string) error {
	if modifier != "" || chain != "" {
		return badParam("%s takes no modifiers", p.name)
	}
	values := splitEscaped(value, ',')
	for i := range values {
		values[i] = unescape(values[i])
		if p.name == "url" {
			values[i], _, _ = strings.Cut(values[i], "|")
		}
	}
	ps.instruments = append(ps.instruments, func(in gateway.Instrument) bool {
		if p.name == "url" {
			return slices.Contains(values, in.URL)
		}
		return slices.Contains(values, in.ID)
	})
	return nil
}

var datePrefixes = map[string]gateway.Comparator{
	"eq": gateway.OpEq, "ne": gateway.OpNe, "gt": gateway.OpGt, "lt": gateway.OpLt,
	"ge": gateway.OpGe, "le": gateway.OpLe, "sa": gateway.OpGt, "eb": gateway.OpLt,
}

func parseDateBound(name, v string) (gateway.DateBound, error) {
	op := gateway.OpEq
	if len(v) > 2 && v[0] >= 'a' && v[0] <= 'z' {
		prefix := v[:2]
		c, ok := datePrefixes[prefix]
		if !ok {
			return gateway.DateBound{}, badParam("%s: prefix %q is not supported (eq, ne, gt, ge, lt, le, sa, eb)", name, prefix)
		}
		op, v = c, v[2:]
	}
	// An unencoded "+" in a zone offset arrives as a space.
	v = strings.ReplaceAll(v, " ", "+")
	p, err := gateway.ParseDateTime(v)
	if err != nil {
		return gateway.DateBound{}, badParam("%s: %v", name, err)
	}
	return gateway.DateBound{Op: op, Period: p}, nil
}

// splitToken splits system|code; hasSystem reports whether a bar was given.
func splitToken(v string) (system, code string, hasSystem bool) {
	parts := splitEscaped(v, '|')
	if len(parts) == 1 {
		return "", unescape(parts[0]), false
	}
	return unescape(parts[0]), unescape(strings.Join(parts[1:], "|")), true
}

// splitEscaped splits s at sep, except where sep is escaped with a
// backslash (FHIR search escaping).
func splitEscaped(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// unescape removes FHIR search escapes (\, \| \$ \\).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// addOrganizationFilter filters the configured organisations.
func (ps *parsedSearch) addOrganizationFilter(p searchParam, modifier, chain, value string) error {
	if chain != "" {
		return badParam("chained search is not supported on Organization")
	}
	alternatives := splitEscaped(value, ',')
	switch p.name {
	case "_id", "identifier":
		if modifier != "" {
			return badParam("%s takes no modifiers", p.name)
		}
		var codes []string
		for _, alt := range alternatives {
			system, code, hasSystem := splitToken(alt)
			if p.name == "_id" || !hasSystem || system == gateway.SystemODS {
				codes = append(codes, code)
			}
		}
		ps.orgs = append(ps.orgs, func(o gateway.Organization) bool { return slices.Contains(codes, o.Code) })
	case "name":
		// FHIR string search: case-insensitive prefix by default;
		// :contains anywhere; :exact the whole name, case and all.
		var match func(name string) bool
		switch modifier {
		case "", "contains":
			var lower []string
			for _, alt := range alternatives {
				lower = append(lower, strings.ToLower(unescape(alt)))
			}
			test := strings.HasPrefix
			if modifier == "contains" {
				test = strings.Contains
			}
			match = func(name string) bool {
				name = strings.ToLower(name)
				return slices.ContainsFunc(lower, func(v string) bool { return test(name, v) })
			}
		case "exact":
			var exact []string
			for _, alt := range alternatives {
				exact = append(exact, unescape(alt))
			}
			match = func(name string) bool { return slices.Contains(exact, name) }
		default:
			return badParam("modifier :%s is not supported on name", modifier)
		}
		ps.orgs = append(ps.orgs, func(o gateway.Organization) bool { return match(o.Name) })
	}
	return nil
}
