package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/spgateway/spgateway/gateway"
)

// storedTask is a Task as the gateway stores one after intake.
const storedTask = `{"resourceType":"Task","id":"2b6f0cc1-5e2f-4a39-9d55-0a4e8f1c7d21",` +
	`"meta":{"versionId":"3","lastUpdated":"2026-11-02T09:30:00Z"},` +
	`"identifier":[{"system":"https://fhir.nhs.uk/Id/BaRS-Identifier","value":"c5b0d1e2-1111-4a4a-9b9b-123456789abc"}],` +
	`"basedOn":[{"reference":"ServiceRequest/8d2c"}],"status":"in-progress","intent":"order",` +
	`"businessStatus":{"coding":[{"system":"http://snomed.info/sct","code":"871731000000106"}]},` +
	`"for":{"reference":"Patient/9a1b","identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}},` +
	`"authoredOn":"2026-11-01T10:00:00Z","lastModified":"2026-11-02T09:30:00Z",` +
	`"requester":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"A81001"}},` +
	`"owner":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"RXX01"}},` +
	`"note":[{"text":"first contact made"}],"input":[{"type":{"text":"x"},"valueString":"y"}]}`

// FuzzJSONPatch decodes a JSON Patch and applies it to a stored resource as
// PATCH does. Whatever the patch, the gateway must not panic, must refuse
// with the right code, and must only ever produce JSON within the depth
// limit; a patch of tests alone must leave the resource as it was.
func FuzzJSONPatch(f *testing.F) {
	const maxBytes, maxDepth = 1 << 16, 16
	for _, doc := range [][]byte{[]byte(storedTask), []byte(`{"resourceType":"Task","id":"t","status":"requested","note":[{"text":"a"}]}`)} {
		for _, p := range []string{
			`[]`,
			`[{"op":"replace","path":"/status","value":"accepted"}]`,
			`[{"op":"test","path":"/status","value":"requested"},{"op":"replace","path":"/status","value":"in-progress"}]`,
			`[{"op":"test","path":"/status","value":"requested"}]`,
			`[{"op":"test","path":"/id","value":"t"},{"op":"test","path":"/resourceType","value":"Task"}]`,
			`[{"op":"add","path":"/note/-","value":{"text":"called the client"}}]`,
			`[{"op":"add","path":"/note","value":[]}]`,
			`[{"op":"remove","path":"/note/0"}]`,
			`[{"op":"remove","path":"/note/-1"}]`,
			`[{"op":"copy","from":"/note","path":"/input"}]`,
			`[{"op":"copy","from":"","path":"/x"},{"op":"copy","from":"","path":"/x/x"}]`,
			`[{"op":"move","from":"/status","path":"/businessStatus"}]`,
			`[{"op":"move","from":"/note","path":"/note/0"}]`,
			`[{"op":"replace","path":"/a~1b~0c","value":1}]`,
			`[{"op":"replace","path":"","value":{}}]`,
			`[{"op":"add","path":"/x","value":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}]`,
			`[{"op":"test","op":"replace","path":"/status","value":"x"}]`,
			`[{"op":"frobnicate","path":"/status"}]`,
			`[{"path":"/status"}]`,
			`[{"op":"add"}]`,
			`{"op":"replace","path":"/status","value":"accepted"}`,
			`[1]`, `[null]`, `null`, `"x"`, ``, `[`, `[{}]`,
		} {
			f.Add([]byte(p), doc)
		}
	}
	f.Fuzz(func(t *testing.T, patch, doc []byte) {
		if !json.Valid(doc) || !gjson.ParseBytes(doc).IsObject() || checkJSON(doc, maxDepth) != nil {
			return // a stored resource is always a JSON object within the limit
		}
		ops, err := decodePatch(patch)
		if err != nil {
			wantCode(t, err, gateway.CodeInvalid)
			return
		}
		if !gjson.ParseBytes(patch).IsArray() {
			t.Fatalf("decodePatch(%q) accepted something that is not an array", patch)
		}
		before := bytes.Clone(doc)
		got, err := applyPatch(ops, doc, gateway.TypeTask, maxBytes, maxDepth)
		if !bytes.Equal(doc, before) {
			t.Fatalf("applying %q changed the stored body in place", patch)
		}
		if err != nil {
			var ge *gateway.Error
			if !errors.As(err, &ge) || (ge.Code != gateway.CodeUnprocessable && ge.Code != gateway.CodeInvalid) {
				t.Fatalf("applyPatch(%q) = %v, want a 422 or an invalid-body error", patch, err)
			}
			return
		}
		if !json.Valid(got) {
			t.Fatalf("applyPatch(%q) gave invalid JSON %q", patch, got)
		}
		if d := referenceDepth(t, got); d > maxDepth {
			t.Fatalf("applyPatch(%q) gave JSON %d deep, over the limit %d", patch, d, maxDepth)
		}
		if onlyTests(patch) {
			var a, b any
			if json.Unmarshal(doc, &a) != nil || json.Unmarshal(got, &b) != nil || !reflect.DeepEqual(a, b) {
				t.Fatalf("a patch of tests alone %q changed %q into %q", patch, doc, got)
			}
		}
	})
}

// onlyTests reports whether every operation in a decoded patch is "test".
func onlyTests(patch []byte) bool {
	only := true
	gjson.ParseBytes(patch).ForEach(func(_, op gjson.Result) bool {
		only = op.Get("op").String() == "test"
		return only
	})
	return only
}

// wantCode fails unless err is a *gateway.Error with the given code.
func wantCode(t *testing.T, err error, code gateway.Code) {
	t.Helper()
	var ge *gateway.Error
	if !errors.As(err, &ge) {
		t.Fatalf("error %T %v is not a *gateway.Error", err, err)
	}
	if ge.Code != code {
		t.Fatalf("error code %q, want %q: %v", ge.Code, code, err)
	}
}
