package mapping

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/spgateway/spgateway/gateway"
)

// The FHIR JSON a client sends is kept as it came, field order and
// extensions included; the gateway edits it in place by path (sjson) instead
// of round-tripping it through structs that drop what they do not know.

// compact returns doc without insignificant whitespace.
func compact(doc []byte) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(len(doc))
	if err := json.Compact(&b, doc); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// escapePath escapes one key for a gjson/sjson path. FHIR keys are plain
// words, but a hostile document may use any key. It works on bytes, not
// runes: a key that is not UTF-8 must come out with its own bytes.
func escapePath(key string) string {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}

// reference is a Reference.reference string found in a document.
type reference struct {
	// path is the sjson path of the string, e.g. "reasonReference.0.reference".
	path string
	// element is the FHIRPath of the Reference, e.g. "reasonReference[0]".
	element string
	value   string
}

// references lists every "reference" string in doc, at any depth.
func references(doc []byte) []reference {
	var out []reference
	var walk func(v gjson.Result, path, element string)
	walk = func(v gjson.Result, path, element string) {
		switch {
		case v.IsArray():
			i := 0
			v.ForEach(func(_, item gjson.Result) bool {
				walk(item, join(path, strconv.Itoa(i)), element+"["+strconv.Itoa(i)+"]")
				i++
				return true
			})
		case v.IsObject():
			v.ForEach(func(k, item gjson.Result) bool {
				key := k.String()
				if key == "reference" && item.Type == gjson.String {
					out = append(out, reference{path: join(path, "reference"), element: element, value: item.String()})
					return true
				}
				el := key
				if element != "" {
					el = element + "." + key
				}
				walk(item, join(path, escapePath(key)), el)
				return true
			})
		}
	}
	walk(gjson.ParseBytes(doc), "", "")
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// setServerFields sets id and meta.versionId/meta.lastUpdated, keeping the
// rest of the client's meta (profiles, tags, security labels). id and meta
// go right after resourceType, where readers look for them. doc is compact.
func setServerFields(doc []byte, id string, version int, lastUpdated string) ([]byte, error) {
	var meta bytes.Buffer
	meta.WriteString(`{"versionId":`)
	meta.WriteString(strconv.Quote(strconv.Itoa(version)))
	meta.WriteString(`,"lastUpdated":`)
	meta.WriteString(strconv.Quote(lastUpdated))
	if m := gjson.GetBytes(doc, "meta"); m.IsObject() {
		m.ForEach(func(k, v gjson.Result) bool {
			if k.String() != "versionId" && k.String() != "lastUpdated" {
				meta.WriteByte(',')
				meta.WriteString(k.Raw)
				meta.WriteByte(':')
				meta.WriteString(v.Raw)
			}
			return true
		})
	}
	meta.WriteByte('}')
	var err error
	if doc, err = sjson.DeleteBytes(doc, "id"); err != nil {
		return nil, err
	}
	if doc, err = sjson.DeleteBytes(doc, "meta"); err != nil {
		return nil, err
	}
	quotedID, err := json.Marshal(id)
	if err != nil {
		return nil, err
	}
	fields := make([]byte, 0, len(quotedID)+meta.Len()+16)
	fields = append(fields, `"id":`...)
	fields = append(fields, quotedID...)
	fields = append(fields, `,"meta":`...)
	fields = append(fields, meta.Bytes()...)

	out := make([]byte, 0, len(doc)+len(fields)+1)
	if rt := gjson.GetBytes(doc, "resourceType"); rt.Exists() {
		if prefix := `{"resourceType":` + rt.Raw; bytes.HasPrefix(doc, []byte(prefix)) {
			out = append(out, prefix...)
			out = append(out, ',')
			out = append(out, fields...)
			return append(out, doc[len(prefix):]...), nil
		}
	}
	out = append(out, '{')
	out = append(out, fields...)
	if rest := doc[1:]; len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, doc[1:]...), nil
}

// contentHash identifies what a client sent, without the fields the server
// sets, so the same details sent twice are recognised.
func contentHash(doc []byte) string {
	doc, _ = sjson.DeleteBytes(doc, "id")
	doc, _ = sjson.DeleteBytes(doc, "meta")
	sum := sha256.Sum256(doc)
	return hex.EncodeToString(sum[:])
}

// checkKeys refuses a document in which an object repeats a property name
// or has a property without one. gjson reads the first of repeated names and
// encoding/json the last, so the rules would check one value while clients
// read another from what is stored; and no gjson/sjson path reaches a
// property named "", so references under it could not be resolved.
func checkKeys(doc []byte, at []string) error {
	switch k, ok := badKey(doc); {
	case !ok:
		return nil
	case k == "":
		return invalid(gateway.IssueStructure, at, "a JSON property has an empty name")
	default:
		return invalid(gateway.IssueStructure, at, "the property %q appears twice in one JSON object", k)
	}
}

// CheckKeys refuses, as invalid, a JSON document that is not a resource
// (a JSON Patch) in which an object repeats a property name or has one
// without a name: a library that reads the last of repeated names would
// act on what no check saw.
func CheckKeys(doc []byte) error { return checkKeys(doc, nil) }

// badKey returns a property name that an object of doc repeats, or "" for
// a property without a name. doc is valid JSON (a model decoded it).
func badKey(doc []byte) (string, bool) {
	var walk func(v gjson.Result) (string, bool)
	walk = func(v gjson.Result) (key string, found bool) {
		object := v.IsObject()
		// FHIR objects have a handful of properties: a list is cheaper than
		// a map until there are many.
		var names []string
		var many map[string]bool
		v.ForEach(func(k, item gjson.Result) bool {
			if object {
				name := k.String()
				switch {
				case name == "", many[name], many == nil && slices.Contains(names, name):
					key, found = name, true
					return false
				case many != nil:
					many[name] = true
				case len(names) < 16:
					names = append(names, name)
				default:
					many = map[string]bool{name: true}
					for _, n := range names {
						many[n] = true
					}
				}
			}
			if item.IsObject() || item.IsArray() {
				key, found = walk(item)
				return !found
			}
			return true
		})
		return key, found
	}
	return walk(gjson.ParseBytes(doc))
}
