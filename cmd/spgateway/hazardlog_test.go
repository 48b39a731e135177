package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// hazardLog is the clinical safety hazard log, from this package's folder.
const hazardLog = "../../docs/hazard-log.md"

var (
	// testLink is a Markdown link to a Go test file; its text should be
	// the name of a test in it.
	testLink = regexp.MustCompile(`\[([^\]]*)\]\(([^)\s]*_test\.go)\)`)
	// hazardSection is the heading of one hazard's section.
	hazardSection = regexp.MustCompile(`(?m)^## (H\d{2}) `)
	// summaryRow is a row of the summary table.
	summaryRow = regexp.MustCompile(`(?m)^\| \[(H\d{2})\]\(#`)
	testName   = regexp.MustCompile(`^(Test|Fuzz)[A-Za-z0-9_]*$`)
)

// checkHazardLog returns what is wrong with the hazard log doc, whose
// relative links start at dir: a linked test that its file does not
// declare, a link whose text is not a test name, a hazard with no test, a
// hazard missing from the summary or the summary naming one without a
// section.
func checkHazardLog(doc, dir string) []string {
	var problems []string
	sources := map[string]string{}
	declares := func(path, name string) (bool, error) {
		src, ok := sources[path]
		if !ok {
			b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(path)))
			if err != nil {
				return false, err
			}
			src = string(b)
			sources[path] = src
		}
		return regexp.MustCompile(`(?m)^func ` + regexp.QuoteMeta(name) + `\(`).MatchString(src), nil
	}
	links := testLink.FindAllStringSubmatch(doc, -1)
	if len(links) == 0 {
		problems = append(problems, "no test is linked")
	}
	for _, l := range links {
		name, path := l[1], l[2]
		if !testName.MatchString(name) {
			problems = append(problems, fmt.Sprintf("link to %s: %q is not a test name", path, name))
			continue
		}
		ok, err := declares(path, name)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s links to %s: %v", name, path, err))
		case !ok:
			problems = append(problems, fmt.Sprintf("%s links to %s, which has no func %s(", name, path, name))
		}
	}

	// Each hazard's section, from its heading to the next heading of the
	// same level, links at least one test.
	starts := hazardSection.FindAllStringSubmatchIndex(doc, -1)
	var sections []string
	for i, m := range starts {
		id := doc[m[2]:m[3]]
		sections = append(sections, id)
		end := len(doc)
		if next := strings.Index(doc[m[1]:], "\n## "); next >= 0 {
			end = m[1] + next
		}
		if i+1 < len(starts) && starts[i+1][0] < end {
			end = starts[i+1][0]
		}
		if !testLink.MatchString(doc[m[0]:end]) {
			problems = append(problems, fmt.Sprintf("%s links no test", id))
		}
	}
	if len(sections) == 0 {
		problems = append(problems, "no hazard sections (## Hnn …)")
	}
	var summary []string
	for _, m := range summaryRow.FindAllStringSubmatch(doc, -1) {
		summary = append(summary, m[1])
	}
	for _, id := range sections {
		if !slices.Contains(summary, id) {
			problems = append(problems, fmt.Sprintf("%s is not in the summary table", id))
		}
	}
	for _, id := range summary {
		if !slices.Contains(sections, id) {
			problems = append(problems, fmt.Sprintf("the summary lists %s, which has no section", id))
		}
	}
	return problems
}

// TestHazardLogLinksExistingTests keeps docs/hazard-log.md true to the
// code: every test it cites as proof of a mitigation is declared in the
// file it links to, so renaming or removing one fails here until the log
// is updated.
func TestHazardLogLinksExistingTests(t *testing.T) {
	doc, err := os.ReadFile(hazardLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range checkHazardLog(string(doc), filepath.Dir(hazardLog)) {
		t.Error(p)
	}
	// A hazard is closed, never removed: the log keeps its history.
	if n := len(hazardSection.FindAllString(string(doc), -1)); n < 14 {
		t.Errorf("%d hazard sections, want at least the 14 logged (H01–H14)", n)
	}
}

// TestCheckHazardLogRefuses breaks the log's rules once each and checks
// the problem is reported.
func TestCheckHazardLogRefuses(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "pkg"), 0o750); err != nil {
		t.Fatal(err)
	}
	src := "package pkg\n\nfunc TestKept(t *testing.T) {}\n\n// TestInComment( is not a declaration.\nfunc helperTestFake() {}\n"
	if err := os.WriteFile(filepath.Join(dir, "pkg", "a_test.go"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := func(sections ...string) string {
		var b strings.Builder
		b.WriteString("# Log\n\n| id | hazard |\n|---|---|\n")
		for _, s := range sections {
			id := s[:3]
			fmt.Fprintf(&b, "| [%s](#%s) | x |\n", id, strings.ToLower(id))
		}
		for _, s := range sections {
			b.WriteString("\n## " + s + "\n")
		}
		b.WriteString("\n## Open items\n\nnone\n")
		return b.String()
	}
	tests := []struct {
		name string
		doc  string
		want string // a substring of one problem; "" for none
	}{
		{"accepted: a declared test", doc("H01 Lost\n\n- [TestKept](pkg/a_test.go)"), ""},
		{"refused: a renamed test", doc("H01 Lost\n\n- [TestGone](pkg/a_test.go)"), "TestGone links to pkg/a_test.go, which has no func TestGone("},
		{"refused: a name only in a comment", doc("H01 Lost\n\n- [TestInComment](pkg/a_test.go)"), "no func TestInComment("},
		{"refused: a prefix of a declared name", doc("H01 Lost\n\n- [TestKep](pkg/a_test.go)"), "no func TestKep("},
		{"refused: a missing file", doc("H01 Lost\n\n- [TestKept](pkg/b_test.go)"), "TestKept links to pkg/b_test.go"},
		{"refused: link text not a test name", doc("H01 Lost\n\n- [the test](pkg/a_test.go)"), `"the test" is not a test name`},
		{"refused: a hazard without a test", doc("H01 Lost\n\n- [TestKept](pkg/a_test.go)", "H02 Duplicated\n\nNo test yet."), "H02 links no test"},
		{"refused: a hazard whose test is only in the next section", doc("H01 Lost\n\nNone.", "H02 Duplicated\n\n- [TestKept](pkg/a_test.go)"), "H01 links no test"},
		{"refused: no links at all", "# Log\n", "no test is linked"},
		{"refused: a section missing from the summary",
			doc("H01 Lost\n\n- [TestKept](pkg/a_test.go)") + "\n## H03 Extra\n\n- [TestKept](pkg/a_test.go)\n", "H03 is not in the summary table"},
		{"refused: a summary row without a section",
			strings.Replace(doc("H01 Lost\n\n- [TestKept](pkg/a_test.go)"), "|---|---|\n", "|---|---|\n| [H09](#h09) | x |\n", 1), "the summary lists H09"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problems := checkHazardLog(tt.doc, dir)
			if tt.want == "" {
				if len(problems) > 0 {
					t.Errorf("problems %q, want none", problems)
				}
				return
			}
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Errorf("problems %q, want one containing %q", problems, tt.want)
			}
		})
	}
}
