// Package fhirtest checks in tests that what the gateway emits is valid FHIR
// R4, against HL7's JSON schema (testdata/fhir-r4/fhir.schema.json.gz).
package fhirtest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

const schemaURL = "http://hl7.org/fhir/json-schema/4.0"

var (
	once     sync.Once
	compiler *jsonschema.Compiler
	loadErr  error
	mu       sync.Mutex
	schemas  = map[string]*jsonschema.Schema{}
)

// SchemaPath is the FHIR R4 JSON schema kept with the project.
func SchemaPath() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "fhir-r4", "fhir.schema.json.gz")
}

func load() {
	f, err := os.Open(SchemaPath())
	if err != nil {
		loadErr = err
		return
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		loadErr = err
		return
	}
	doc, err := jsonschema.UnmarshalJSON(z)
	if err != nil {
		loadErr = err
		return
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft6)
	if err := c.AddResource(schemaURL, doc); err != nil {
		loadErr = err
		return
	}
	compiler = c
}

func schemaFor(resourceType string) (*jsonschema.Schema, error) {
	once.Do(load)
	if loadErr != nil {
		return nil, loadErr
	}
	mu.Lock()
	defer mu.Unlock()
	if s, ok := schemas[resourceType]; ok {
		return s, nil
	}
	s, err := compiler.Compile(schemaURL + "#/definitions/" + resourceType)
	if err != nil {
		return nil, err
	}
	schemas[resourceType] = s
	return s, nil
}

// Validate returns why body is not a valid FHIR R4 resource, or nil. The
// HL7 schema checks structure, types and codes; it does not check the JSON
// representation's own rules (no empty arrays, objects or strings, no
// nulls), so Validate checks those too.
func Validate(body []byte) error {
	var head struct {
		ResourceType string `json:"resourceType"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return err
	}
	s, err := schemaFor(head.ResourceType)
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return err
	}
	if err := representation(inst, "$"); err != nil {
		return err
	}
	mu.Lock() // the compiled schema is shared; validate one at a time to be safe
	defer mu.Unlock()
	return s.Validate(inst)
}

// representation applies the rules of FHIR's JSON format that the schema
// leaves out (https://hl7.org/fhir/R4/json.html).
func representation(v any, path string) error {
	switch x := v.(type) {
	case nil:
		return fmt.Errorf("%s: null is not allowed", path)
	case string:
		if x == "" {
			return fmt.Errorf("%s: empty string", path)
		}
	case []any:
		if len(x) == 0 {
			return fmt.Errorf("%s: empty array", path)
		}
		for i, item := range x {
			if err := representation(item, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case map[string]any:
		if len(x) == 0 {
			return fmt.Errorf("%s: empty object", path)
		}
		for k, item := range x {
			if err := representation(item, path+"."+k); err != nil {
				return err
			}
		}
	}
	return nil
}

// Valid fails the test when body is not a valid FHIR R4 resource.
func Valid(t testing.TB, body []byte) {
	t.Helper()
	if err := Validate(body); err != nil {
		t.Errorf("not valid FHIR R4: %v\n%s", err, body)
	}
}
