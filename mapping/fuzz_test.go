package mapping_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/mapping"
)

func FuzzParseTransaction(f *testing.F) {
	bundle := readFixture(f, "referral-bundle.json")
	f.Add(bundle)
	f.Add(readFixture(f, "service-request-contained-patient.json"))
	paths, err := filepath.Glob(filepath.Join(fixtures, "invalid", "*.json"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("invalid fixtures: %v", err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, c := range parseCases(f) {
		if c.bundle != nil {
			f.Add(c.bundle)
		}
	}
	f.Add(withTask(f, bundle))
	f.Add(bundleWithContainedPatient(f))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := mapping.ParseTransaction(body)
		if err != nil {
			wantParseError(t, err)
			return
		}
		var urls []string
		for _, u := range gjson.GetBytes(body, "entry.#.fullUrl").Array() {
			if u.String() != "" {
				urls = append(urls, u.String())
			}
		}
		checkRender(t, r, urls)
	})
}

func FuzzParseServiceRequest(f *testing.F) {
	sr := readFixture(f, "service-request-contained-patient.json")
	f.Add(sr, "")
	f.Add(sr, "identifier=https://practice-a81001.example.org/referrals|SP-2026-000124")
	f.Add(sr, "identifier=https://practice-a81001.example.org/referrals|other")
	f.Add(sr, "_id=x")
	f.Add(sr, "identifier=%zz")
	for _, c := range parseCases(f) {
		if c.request != nil {
			f.Add(c.request, c.ifNoneExist)
		}
	}
	for _, v := range []struct{ path, raw string }{
		{"subject", `{"reference":"Patient/p1"}`},
		{"subject", `{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}}`},
		{"subject", `{"reference":"#nobody"}`},
		{"subject", `{"reference":"#"}`},
		{"subject", `{"reference":"urn:uuid:6f1c2a52-3d4e-4b8a-9a61-2f0c8d7e1a01"}`},
		{"supportingInfo", `[{"reference":"#patient"}]`},
		{"contained.-1", `{"resourceType":"Organization","id":"org","name":"x"}`},
		{"contained.-1", `{"resourceType":"Patient","id":"patient"}`},
		{"contained.0.extension", `[{"url":"http://example.org/x","valueReference":{"reference":"#org"}}]`},
		{"contained.0._birthDate", `{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1958-09-02T08:30:00Z"}]}`},
		{"_authoredOn", `{"extension":[{"url":"http://example.org/x","valueString":"y"}]}`},
		{"meta", `{"versionId":"7","lastUpdated":"2020-01-01T00:00:00Z","tag":[{"code":"x"}]}`},
		{"id", `"client-id"`},
		{"performer", `[{"reference":"Organization/PRV01"}]`},
		{"requester", `{"reference":"Organization/A81001"}`},
		{"contained", `[]`},
		{"contained", `{}`},
		{"status", `"bogus"`},
	} {
		b, err := sjson.SetRawBytes(sr, v.path, []byte(v.raw))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "")
	}
	for _, members := range []string{`"id":"a","id":"b"`, `"meta":{"versionId":"4"}`, `"subject":{"reference":"#patient"}`,
		`"requester":{"reference":"Organization/A81002"}`, `"a.b*?":{"reference":"#patient"},"":{"reference":"#patient"},"@this":{"reference":"#patient"}`,
		`"ext\u0065nsion":[{"url":"http://x","valueReference":{"reference":"#patient"}}]`} {
		f.Add(prepend(sr, members), "")
	}
	f.Fuzz(func(t *testing.T, body []byte, ifNoneExist string) {
		r, err := mapping.ParseServiceRequest(body, ifNoneExist)
		if err != nil {
			wantParseError(t, err)
			return
		}
		docs, _ := checkRender(t, r, nil)
		if len(r.Entries) < 2 {
			return
		}
		// The contained Patient became a resource of its own: nothing in
		// the ServiceRequest may still refer to it locally.
		var sent struct {
			Subject struct {
				Reference string `json:"reference"`
			} `json:"subject"`
		}
		if err := json.Unmarshal(body, &sent); err != nil {
			t.Fatalf("a parsed ServiceRequest does not unmarshal: %v", err)
		}
		local := sent.Subject.Reference
		for _, id := range gjson.GetBytes(docs[0].Body, "contained.#.id").Array() {
			if "#"+id.String() == local {
				return // another contained resource answers to it
			}
		}
		for _, ref := range referenceValues(docs[0].Body) {
			if ref == local {
				t.Fatalf("the ServiceRequest still refers to %s, now Patient/%s:\n%s", local, docs[1].ID, docs[0].Body)
			}
		}
	})
}

// wantParseError fails unless err is a 400 or a 422.
func wantParseError(t *testing.T, err error) {
	t.Helper()
	var ge *gateway.Error
	if !errors.As(err, &ge) {
		t.Fatalf("error %T %v is not a *gateway.Error", err, err)
	}
	if ge.Code != gateway.CodeInvalid && ge.Code != gateway.CodeUnprocessable {
		t.Fatalf("error code %q: %v", ge.Code, err)
	}
	if len(ge.Issues) == 0 {
		t.Fatalf("error without issues: %v", err)
	}
}

// checkRender renders a parsed referral with a well-formed assignment and
// checks what every stored document needs: its id and version, valid JSON,
// and no reference left to an entry of the request (urls: the fullUrls
// sent).
func checkRender(t *testing.T, r *gateway.Referral, urls []string) ([]gateway.Resource, *gateway.Resource) {
	t.Helper()
	a := assignment(r)
	docs, task, err := r.Render.Render(a)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	if len(docs) != len(r.Entries) {
		t.Fatalf("Render returned %d resources for %d entries", len(docs), len(r.Entries))
	}
	if (task != nil) != (a.TaskID != "") {
		t.Fatalf("Render returned task %v with TaskID %q", task != nil, a.TaskID)
	}
	check := func(res gateway.Resource, typ, id string) {
		t.Helper()
		if res.Type != typ || res.ID != id || res.Version != 1 || !res.LastUpdated.Equal(fixedNow) {
			t.Fatalf("resource %s/%s v%d at %v, want %s/%s v1", res.Type, res.ID, res.Version, res.LastUpdated, typ, id)
		}
		if !json.Valid(res.Body) {
			t.Fatalf("%s/%s: body is not valid JSON:\n%s", typ, id, res.Body)
		}
		var head struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
			Meta         struct {
				VersionID   string `json:"versionId"`
				LastUpdated string `json:"lastUpdated"`
			} `json:"meta"`
		}
		if err := json.Unmarshal(res.Body, &head); err != nil {
			t.Fatalf("%s/%s: %v\n%s", typ, id, err, res.Body)
		}
		// Both what encoding/json reads (the last of repeated keys) and
		// what gjson reads (the first) must agree.
		if head.ResourceType != typ || head.ID != id || head.Meta.VersionID != "1" || head.Meta.LastUpdated != gateway.FormatInstant(fixedNow) ||
			gjson.GetBytes(res.Body, "id").String() != id || gjson.GetBytes(res.Body, "meta.versionId").String() != "1" {
			t.Fatalf("%s/%s: resourceType %q, id %q, meta %+v:\n%s", typ, id, head.ResourceType, head.ID, head.Meta, res.Body)
		}
		for _, ref := range referenceValues(res.Body) {
			for _, u := range urls {
				if ref == u {
					t.Fatalf("%s/%s still refers to %s:\n%s", typ, id, ref, res.Body)
				}
			}
		}
	}
	for i, e := range r.Entries {
		check(docs[i], e.Type, a.IDs[i])
	}
	if task != nil {
		check(*task, gateway.TypeTask, a.TaskID)
	}
	return docs, task
}

// referenceValues lists every Reference.reference string in doc, at any
// depth.
func referenceValues(doc []byte) []string {
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case []any:
			for _, item := range x {
				walk(item)
			}
		case map[string]any:
			for k, item := range x {
				if s, ok := item.(string); ok && k == "reference" {
					out = append(out, s)
					continue
				}
				walk(item)
			}
		}
	}
	var v any
	if err := json.Unmarshal(doc, &v); err == nil {
		walk(v)
	}
	// encoding/json keeps the last of repeated keys; gjson sees them all.
	var scan func(r gjson.Result)
	scan = func(r gjson.Result) {
		r.ForEach(func(k, item gjson.Result) bool {
			if k.String() == "reference" && item.Type == gjson.String {
				out = append(out, item.String())
			} else if item.IsObject() || item.IsArray() {
				scan(item)
			}
			return true
		})
	}
	scan(gjson.ParseBytes(doc))
	return out
}
