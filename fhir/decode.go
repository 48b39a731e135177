package fhir

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/spgateway/spgateway/gateway"
)

// checkJSON refuses a body that is not one JSON value in UTF-8 or nests
// objects and arrays deeper than maxDepth. The depth is counted first, in
// one pass that allocates nothing, so no parser ever recurses into a
// hostile document.
func checkJSON(body []byte, maxDepth int) error {
	if d := jsonDepth(body, maxDepth); d > maxDepth {
		return gateway.Errorf(gateway.CodeInvalid, "the JSON nests deeper than %d levels", maxDepth)
	}
	if !json.Valid(body) {
		return gateway.Errorf(gateway.CodeInvalid, "the body is not valid JSON")
	}
	// json.Valid lets other bytes through in strings; JSON is UTF-8
	// (RFC 8259), and PostgreSQL refuses to store anything else.
	if !utf8.Valid(body) {
		return gateway.Errorf(gateway.CodeInvalid, "the body is not UTF-8")
	}
	return nil
}

// jsonDepth returns the deepest nesting of objects and arrays in doc,
// stopping as soon as it exceeds limit. It only has to be right for valid
// JSON; for anything else json.Valid has the last word.
func jsonDepth(doc []byte, limit int) int {
	depth, deepest := 0, 0
	inString, escaped := false, false
	for _, c := range doc {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > deepest {
				deepest = depth
				if deepest > limit {
					return deepest
				}
			}
		case '}', ']':
			depth--
		}
	}
	return deepest
}
