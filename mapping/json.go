package mapping

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
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
// words, but a hostile document may use any key.
func escapePath(key string) string {
	var b strings.Builder
	for _, r := range key {
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
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
// rest of the client's meta (profiles, tags, security labels).
func setServerFields(doc []byte, id string, version int, lastUpdated string) ([]byte, error) {
	meta := map[string]json.RawMessage{}
	if m := gjson.GetBytes(doc, "meta"); m.IsObject() {
		if err := json.Unmarshal([]byte(m.Raw), &meta); err != nil {
			return nil, fmt.Errorf("meta: %w", err)
		}
	}
	meta["versionId"] = json.RawMessage(strconv.Quote(strconv.Itoa(version)))
	meta["lastUpdated"] = json.RawMessage(strconv.Quote(lastUpdated))
	metaJSON, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	doc, err = sjson.SetBytes(doc, "id", id)
	if err != nil {
		return nil, err
	}
	return sjson.SetRawBytes(doc, "meta", metaJSON)
}

// contentHash identifies what a client sent, without the fields the server
// sets, so the same details sent twice are recognised.
func contentHash(doc []byte) string {
	doc, _ = sjson.DeleteBytes(doc, "id")
	doc, _ = sjson.DeleteBytes(doc, "meta")
	sum := sha256.Sum256(doc)
	return hex.EncodeToString(sum[:])
}
