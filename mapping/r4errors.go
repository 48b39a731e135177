package mapping

import (
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"sync"

	"github.com/spgateway/spgateway/gateway"
)

// The FHIR model library reports a bad code as "unknown RequestStatus code
// `bogus`": it names the Go type of the code, not the element. elementOf
// finds the element by walking the model's fields for that type, shallowest
// first, so the OperationOutcome can still say "ServiceRequest.status".

var unknownCode = regexp.MustCompile("^unknown ([A-Za-z0-9]+) code `")

// decodeProblem turns an error from the model library's Unmarshal* into a
// 400 naming the element where it can: bases are the paths of the resource
// (e.g. "ServiceRequest", "Bundle.entry[3].resource").
func decodeProblem(model reflect.Type, bases []string, err error) *gateway.Error {
	elem := ""
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		elem = te.Field
	case errors.As(err, &se):
	default:
		if m := unknownCode.FindStringSubmatch(err.Error()); m != nil {
			elem = elementOf(model, m[1])
		}
	}
	exprs := bases
	if elem != "" {
		exprs = make([]string, len(bases))
		for i, b := range bases {
			exprs[i] = b + "." + elem
		}
	}
	return &gateway.Error{Code: gateway.CodeInvalid, Issues: []gateway.Issue{{
		Type:       gateway.IssueStructure,
		Expression: exprs,
		Message:    "not valid FHIR R4: " + strings.TrimPrefix(err.Error(), "json: "),
	}}}
}

type elementKey struct {
	model reflect.Type
	code  string
}

var elementCache sync.Map // elementKey → string

// elementOf returns the JSON path of the shallowest field of model whose type
// is named code, or "".
func elementOf(model reflect.Type, code string) string {
	key := elementKey{model, code}
	if v, ok := elementCache.Load(key); ok {
		return v.(string)
	}
	type node struct {
		t    reflect.Type
		path string
	}
	queue := []node{{model, ""}}
	seen := map[reflect.Type]bool{}
	found := ""
	for len(queue) > 0 && found == "" {
		n := queue[0]
		queue = queue[1:]
		t := n.t
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] {
			continue
		}
		seen[t] = true
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			path := name
			if n.path != "" {
				path = n.path + "." + name
			}
			ft := f.Type
			for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Name() == code {
				found = path
				break
			}
			queue = append(queue, node{ft, path})
		}
	}
	elementCache.Store(key, found)
	return found
}
