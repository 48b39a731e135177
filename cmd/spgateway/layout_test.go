package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportDirection keeps the layering of STYLE.md: the domain imports
// nothing outside the standard library; the store, mapping and the FHIR edge
// import only what their layer may; gin never leaves fhir/.
func TestImportDirection(t *testing.T) {
	const mod = "github.com/spgateway/spgateway/"
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}:{{join .Imports \" \"}}", mod+"...").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	// allowed[pkg] lists the imports a package may use besides the standard
	// library (paths without a dot in their first element): a path, or with
	// a trailing slash, a path and everything under it.
	allowed := map[string][]string{
		mod + "gateway": {"go.opentelemetry.io/otel/"},
		mod + "gateway/store": {mod + "gateway", "github.com/jmoiron/sqlx", "github.com/jackc/pgx/", "modernc.org/sqlite", "github.com/pressly/goose/",
			"github.com/XSAM/otelsql", "go.opentelemetry.io/otel/"}, // statement tracing wraps the drivers
		mod + "gateway/oauth":           {mod + "gateway", "github.com/go-jose/go-jose/", "go.opentelemetry.io/otel/"},
		mod + "gateway/store/storetest": {mod + "gateway/store", "github.com/jackc/pgx/"},
		mod + "gateway/gatewaytest":     {mod + "gateway"},
		mod + "mapping":                 {mod + "gateway", "github.com/samply/golang-fhir-models/", "github.com/tidwall/"},
		mod + "fhir": {mod + "gateway", mod + "gateway/oauth", mod + "mapping", "github.com/gin-gonic/gin", "github.com/go-playground/validator/", "github.com/samply/golang-fhir-models/", "github.com/tidwall/",
			"github.com/evanphx/json-patch/", // PATCH is an HTTP interaction
			"golang.org/x/time/rate", "go.opentelemetry.io/otel/", "go.opentelemetry.io/contrib/instrumentation/github.com/gin-gonic/gin/otelgin"},
		mod + "fhir/fhirtest": {"github.com/santhosh-tekuri/jsonschema/"},
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, ":")
		rules, checked := allowed[pkg]
		if strings.HasPrefix(pkg, mod+"adapters/") {
			rules, checked = []string{mod + "gateway", mod + "adapters/internal/",
				"go.opentelemetry.io/otel/", "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"}, true
		}
		if !checked {
			if !strings.HasPrefix(pkg, mod+"cmd/") {
				t.Errorf("%s has no import rule: add one", pkg)
			}
			continue
		}
		seen++
		for _, imp := range strings.Fields(imports) {
			first, _, _ := strings.Cut(imp, "/")
			if !strings.Contains(first, ".") {
				continue // standard library
			}
			ok := false
			for _, prefix := range rules {
				ok = ok || imp == strings.TrimSuffix(prefix, "/") || strings.HasSuffix(prefix, "/") && strings.HasPrefix(imp, prefix)
			}
			if !ok {
				t.Errorf("%s imports %s, which its layer may not", pkg, imp)
			}
		}
	}
	if seen < 5 {
		t.Errorf("only %d packages checked", seen)
	}
}
