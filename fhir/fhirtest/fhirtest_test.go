package fhirtest

import (
	"os"
	"path/filepath"
	"testing"
)

// The schema must accept HL7's kind of valid resource and refuse broken ones;
// otherwise every check built on it would pass vacuously.
func TestValidate(t *testing.T) {
	good := []string{
		`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid"}]}`,
		`{"resourceType":"Patient","id":"p1","birthDate":"1961-04-17"}`,
		`{"resourceType":"Bundle","type":"searchset","entry":[{"fullUrl":"http://x/fhir/Patient/p1","resource":{"resourceType":"Patient","id":"p1"},"search":{"mode":"match"}}]}`,
	}
	// Empty arrays, empty strings, empty objects and nulls are caught by the
	// representation rules; bad dates, unknown codes and unknown fields by
	// the schema.
	bad := []string{
		`{"resourceType":"OperationOutcome","issue":[]}`,
		`{"resourceType":"Patient","birthDate":"17/04/1961"}`,
		`{"resourceType":"Patient","gender":"bogus"}`,
		`{"resourceType":"Bundle","type":"searchset","entry":[]}`,
		`{"resourceType":"Patient","name":[{"family":""}]}`,
		`{"resourceType":"Patient","name":[{}]}`,
		`{"resourceType":"Patient","active":null}`,
		`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Patient","unknownField":1}}]}`,
	}
	for _, b := range good {
		if err := Validate([]byte(b)); err != nil {
			t.Errorf("valid resource refused: %s: %v", b, err)
		}
	}
	for _, b := range bad {
		if err := Validate([]byte(b)); err == nil {
			t.Errorf("invalid resource accepted: %s", b)
		}
	}
}

func TestFixturesValid(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "fixtures")
	for _, name := range []string{"referral-bundle.json", "service-request-contained-patient.json"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := Validate(b); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
