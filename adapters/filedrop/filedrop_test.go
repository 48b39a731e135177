package filedrop_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spgateway/spgateway/adapters/filedrop"
	"github.com/spgateway/spgateway/adapters/internal/adaptertest"
	"github.com/spgateway/spgateway/gateway"
)

// The adapter is a Deliverer for the outbox worker.
var _ gateway.Deliverer = (*filedrop.Adapter)(nil)

const nhsNumber = "9434765919"

var clock = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

func event(id, task, payload string) gateway.OutboxEvent {
	return gateway.OutboxEvent{ID: id, Destination: gateway.ProviderDestination("P1"), Kind: gateway.EventCaseRecord,
		OrderKey: task, TaskVersion: 1, Payload: []byte(payload)}
}

func adapter(t *testing.T, dir string, now func() time.Time) *filedrop.Adapter {
	t.Helper()
	if now == nil {
		now = func() time.Time { return clock }
	}
	a, err := filedrop.New(filedrop.Config{Dir: dir, Now: now})
	if err != nil {
		t.Fatalf("filedrop.New: %v", err)
	}
	return a
}

func deliver(t *testing.T, a *filedrop.Adapter, e gateway.OutboxEvent) {
	t.Helper()
	if err := a.Deliver(context.Background(), e); err != nil {
		t.Fatalf("Deliver(%s): %v", e.ID, err)
	}
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rows
}

func TestDeliverWritesCaseAndRow(t *testing.T) {
	dir := t.TempDir()
	a := adapter(t, dir, nil)
	record := `{"case_id":"task-1","nhs_number":"` + nhsNumber + `","family_name":"Smith, Jane \"JJ\"","age":54,"score":2.50,` +
		`"urgent":false,"consent":true,"note":null,"needs":["housing","debt"],"counts":[1,2],"gp":{"ods": "A81001"}}`
	deliver(t, a, event("d1", "task-1", record))

	got, err := os.ReadFile(filepath.Join(dir, "task-1.json"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != record {
		t.Errorf("task-1.json = %s, want the record as delivered", got)
	}
	if st, _ := os.Stat(filepath.Join(dir, "task-1.json")); st.Mode().Perm() != 0o640 {
		t.Errorf("task-1.json mode = %v, want 0640", st.Mode().Perm())
	}
	rows := readCSV(t, filepath.Join(dir, "cases-2025-03-04.csv"))
	want := [][]string{
		{"delivery_id", "case_id", "nhs_number", "family_name", "age", "score", "urgent", "consent", "note", "needs", "counts", "gp"},
		{"d1", "task-1", nhsNumber, `Smith, Jane "JJ"`, "54", "2.50", "false", "true", "", "housing;debt", "1;2", `{"ods":"A81001"}`},
	}
	if !slices.EqualFunc(rows, want, slices.Equal) {
		t.Errorf("CSV =\n%q\nwant\n%q", rows, want)
	}
}

func TestDeliverReplacesCaseAndAddsRows(t *testing.T) {
	dir := t.TempDir()
	a := adapter(t, dir, nil)
	first := `{"case_id":"task-1","status":"new"}`
	second := `{"case_id":"task-1","status":"accepted"}`
	deliver(t, a, event("d1", "task-1", first))
	deliver(t, a, event("d2", "task-1", second))
	// At least once: the worker may deliver an event again.
	deliver(t, a, event("d2", "task-1", second))
	deliver(t, a, event("d1", "task-1", first))

	if got, _ := os.ReadFile(filepath.Join(dir, "task-1.json")); string(got) != first {
		t.Errorf("task-1.json = %s, want the last delivered version", got)
	}
	rows := readCSV(t, filepath.Join(dir, "cases-2025-03-04.csv"))
	want := [][]string{{"delivery_id", "case_id", "status"}, {"d1", "task-1", "new"}, {"d2", "task-1", "accepted"}}
	if !slices.EqualFunc(rows, want, slices.Equal) {
		t.Errorf("CSV = %q, want one row per delivery: %q", rows, want)
	}
}

func TestDeliverColumnsChange(t *testing.T) {
	dir := t.TempDir()
	a := adapter(t, dir, nil)
	deliver(t, a, event("d1", "task-1", `{"case_id":"task-1","status":"new"}`))
	deliver(t, a, event("d2", "task-2", `{"case_id":"task-2","outcome":"improved","status":"closed"}`))
	deliver(t, a, event("d3", "task-3", `{"status":"new"}`))
	rows := readCSV(t, filepath.Join(dir, "cases-2025-03-04.csv"))
	want := [][]string{
		{"delivery_id", "case_id", "status", "outcome"},
		{"d1", "task-1", "new", ""},
		{"d2", "task-2", "closed", "improved"},
		{"d3", "", "new", ""},
	}
	if !slices.EqualFunc(rows, want, slices.Equal) {
		t.Errorf("CSV =\n%q\nwant\n%q", rows, want)
	}
}

func TestDeliverDailyFileInUTC(t *testing.T) {
	dir := t.TempDir()
	now := clock
	a := adapter(t, dir, func() time.Time { return now })
	deliver(t, a, event("d1", "task-1", `{"n":1}`))
	// 00:30 on the 5th an hour east of Greenwich is still the 4th in UTC.
	now = time.Date(2025, 3, 5, 0, 30, 0, 0, time.FixedZone("UTC+1", 3600))
	deliver(t, a, event("d2", "task-2", `{"n":2}`))
	now = time.Date(2025, 3, 5, 9, 0, 0, 0, time.UTC)
	deliver(t, a, event("d3", "task-3", `{"n":3}`))
	if rows := readCSV(t, filepath.Join(dir, "cases-2025-03-04.csv")); len(rows) != 3 {
		t.Errorf("cases-2025-03-04.csv has %d rows, want a header and 2", len(rows))
	}
	rows := readCSV(t, filepath.Join(dir, "cases-2025-03-05.csv"))
	if want := [][]string{{"delivery_id", "n"}, {"d3", "3"}}; !slices.EqualFunc(rows, want, slices.Equal) {
		t.Errorf("cases-2025-03-05.csv = %q, want %q", rows, want)
	}
}

// TestReaderNeverSeesPartialFiles polls the directory, as a provider's
// importer would, while the worker delivers in parallel: every .json and
// .csv file it sees parses whole.
func TestReaderNeverSeesPartialFiles(t *testing.T) {
	dir := t.TempDir()
	a := adapter(t, dir, nil)
	// Records big enough that a write is not one syscall's worth.
	filler := strings.Repeat("x", 8000)
	record := func(task string, n int) string {
		return fmt.Sprintf(`{"case_id":%q,"n":%d,"nhs_number":%q,"notes":%q}`, task, n, nhsNumber, filler)
	}

	stop := make(chan struct{})
	var seen atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				entries, err := os.ReadDir(dir)
				if err != nil {
					t.Errorf("ReadDir: %v", err)
					return
				}
				for _, ent := range entries {
					name := ent.Name()
					data, err := os.ReadFile(filepath.Join(dir, name))
					switch {
					case strings.HasSuffix(name, ".json"):
						if err != nil {
							t.Errorf("%s: %v", name, err)
						} else if !json.Valid(data) {
							t.Errorf("%s is not whole: %d bytes", name, len(data))
						}
						seen.Add(1)
					case strings.HasSuffix(name, ".csv"):
						if err != nil {
							t.Errorf("%s: %v", name, err)
							continue
						}
						rows, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
						if err != nil || len(rows) < 2 || rows[0][0] != filedrop.DeliveryColumn {
							t.Errorf("%s is not whole (%d rows): %v", name, len(rows), err)
						}
						seen.Add(1)
					case strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".tmp"):
						// a file being written: importers pass it by
					case name == ".spgateway.lock":
						// the directory's lock file, empty: importers pass it by
					default:
						t.Errorf("unexpected file %q", name)
					}
				}
			}
		})
	}

	const tasks, versions = 8, 12
	var writers sync.WaitGroup
	for task := range tasks {
		writers.Go(func() {
			for v := range versions {
				id := fmt.Sprintf("task-%d", task)
				e := event(fmt.Sprintf("d-%d-%d", task, v), id, record(id, v))
				for range 1 + v%2 { // every other event twice: redelivery
					if err := a.Deliver(context.Background(), e); err != nil {
						t.Errorf("Deliver: %v", err)
					}
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	wg.Wait()
	if seen.Load() == 0 {
		t.Error("the reader saw no file")
	}

	entries, _ := os.ReadDir(dir)
	var names []string
	for _, ent := range entries {
		if ent.Name() != ".spgateway.lock" {
			names = append(names, ent.Name())
		}
	}
	if len(names) != tasks+1 {
		t.Errorf("the directory holds %q, want %d case files, one CSV file and the lock file, no temporary files", names, tasks)
	}
	rows := readCSV(t, filepath.Join(dir, "cases-2025-03-04.csv"))
	ids := map[string]bool{}
	for _, row := range rows[1:] {
		if ids[row[0]] {
			t.Errorf("delivery %s has two rows", row[0])
		}
		ids[row[0]] = true
	}
	if len(ids) != tasks*versions {
		t.Errorf("the CSV has %d deliveries, want %d", len(ids), tasks*versions)
	}
	for task := range tasks {
		data, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("task-%d.json", task)))
		var r struct{ N int }
		if err := json.Unmarshal(data, &r); err != nil || r.N != versions-1 {
			t.Errorf("task-%d.json holds version %d (%v), want the last, %d", task, r.N, err, versions-1)
		}
	}
}

func TestDeliverRefusesNamesOutsideDir(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "drop")
	a := adapter(t, dir, nil)
	record := `{"case_id":"x","nhs_number":"` + nhsNumber + `"}`
	for _, name := range []string{"", ".", "..", "../x", "../../etc/passwd", "/etc/passwd", ".hidden", ".spgateway-1.tmp",
		"a/b", `a\b`, "x\x00y", "ca se", "café", "x:y", strings.Repeat("a", 201)} {
		t.Run(fmt.Sprintf("refused: %q", name), func(t *testing.T) {
			adaptertest.WantPermanent(t, a.Deliver(context.Background(), event("d1", name, record)), nhsNumber)
		})
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 1 || entries[0].Name() != "drop" {
		t.Errorf("next to the directory: %v", entries)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("in the directory: %v", entries)
	}
	// The longest name allowed, and every character allowed, are accepted.
	for _, name := range []string{strings.Repeat("a", 200), "Az09._-x", "x..y"} {
		deliver(t, a, event("d-"+name, name, record))
		if _, err := os.Stat(filepath.Join(dir, name+".json")); err != nil {
			t.Error(err)
		}
	}
}

func TestDeliverRefusesNonObjects(t *testing.T) {
	dir := t.TempDir()
	a := adapter(t, dir, nil)
	for _, payload := range []string{
		"",
		"null",
		`"` + nhsNumber + `"`,
		`["` + nhsNumber + `"]`,
		`{"nhs_number":"` + nhsNumber + `"`,
		`{"nhs_number":"` + nhsNumber + `"} {"b":2}`,
		`{"nhs_number":"` + nhsNumber + `",}`,
		`{"nhs_number":"` + nhsNumber + `","nhs_number":"9434765870"}`,
		`{"delivery_id":"x","nhs_number":"` + nhsNumber + `"}`,
		`{"nhs_number":` + nhsNumber + `x}`,
	} {
		t.Run(payload, func(t *testing.T) {
			adaptertest.WantPermanent(t, a.Deliver(context.Background(), event("d1", "task-1", payload)), nhsNumber)
		})
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused records left files: %v", entries)
	}
}

// TestDeliverForeignCSV: a CSV file the adapter did not write is left as it
// is, and the delivery retried (someone can move the file away).
func TestDeliverForeignCSV(t *testing.T) {
	dir := t.TempDir()
	a := adapter(t, dir, nil)
	path := filepath.Join(dir, "cases-2025-03-04.csv")
	for _, content := range []string{"name,nhs\n\"Smith,1\n", "name,nhs\nSmith,1\n"} {
		if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		adaptertest.WantRetry(t, a.Deliver(context.Background(), event("d1", "task-1", `{"nhs_number":"`+nhsNumber+`"}`)), nhsNumber, "Smith")
		if got, _ := os.ReadFile(path); string(got) != content {
			t.Errorf("the file was changed to %q", got)
		}
	}
}

func TestDeliverCancelled(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := adapter(t, dir, nil).Deliver(ctx, event("d1", "task-1", `{}`)); !errors.Is(err, context.Canceled) {
		t.Errorf("Deliver = %v, want context.Canceled", err)
	}
}

func TestNew(t *testing.T) {
	if a, err := filedrop.New(filedrop.Config{}); err == nil || a != nil {
		t.Errorf("New with no directory = %v, %v; want an error", a, err)
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o640)
	if a, err := filedrop.New(filedrop.Config{Dir: file}); err == nil || a != nil {
		t.Errorf("New with a file = %v, %v; want an error", a, err)
	}
	dir := filepath.Join(t.TempDir(), "provider", "drop")
	a := adapter(t, dir, nil)
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		t.Fatalf("New did not create the directory: %v", err)
	}
	if st.Mode().Perm()&0o007 != 0 {
		t.Errorf("directory mode = %v, want none for others", st.Mode().Perm())
	}
	deliver(t, a, event("d1", "task-1", `{}`))
	rows := readCSV(t, filepath.Join(dir, "cases-2025-03-04.csv"))
	if want := [][]string{{"delivery_id"}, {"d1"}}; !slices.EqualFunc(rows, want, slices.Equal) {
		t.Errorf("CSV of an empty record = %q, want %q", rows, want)
	}
}

// TestDeliverNeutralisesFormulas: a cell a spreadsheet would run as a
// formula (starting with = + - @, a tab or a carriage return, OWASP's
// list) is written with a leading apostrophe, which spreadsheets show as
// text; in arrays each item is; JSON numbers, which cannot hold a formula,
// and cells that only contain those characters later are left alone. The
// JSON case file keeps the record as it was.
func TestDeliverNeutralisesFormulas(t *testing.T) {
	dir := t.TempDir()
	a := adapter(t, dir, nil)
	record := `{"eq":"=HYPERLINK(\"http://evil.example\",\"x\")","plus":"+1+cmd|' /C calc'!A0","minus":"-2+3",` +
		`"at":"@SUM(A1:A9)","tab":"\t=1","cr":"\r=1","list":["ok","=1+1","@x"],"first":["-1"],"score":-3,` +
		`"inner":"a=b+c-d@e","plain":"Irene","empty":""}`
	deliver(t, a, event("d1", "task-1", record))
	rows := readCSV(t, filepath.Join(dir, "cases-2025-03-04.csv"))
	if len(rows) != 2 {
		t.Fatalf("rows: %q", rows)
	}
	got := map[string]string{}
	for i, k := range rows[0] {
		got[k] = rows[1][i]
	}
	want := map[string]string{
		filedrop.DeliveryColumn: "d1",
		"eq":                    `'=HYPERLINK("http://evil.example","x")`,
		"plus":                  `'+1+cmd|' /C calc'!A0`,
		"minus":                 "'-2+3",
		"at":                    "'@SUM(A1:A9)",
		"tab":                   "'\t=1",
		"cr":                    "'\r=1",
		"list":                  "ok;'=1+1;'@x",
		"first":                 "'-1",
		"score":                 "-3",
		"inner":                 "a=b+c-d@e",
		"plain":                 "Irene",
		"empty":                 "",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("columns %q", rows[0])
	}
	// A second delivery leaves the first row as it was (no second quote).
	deliver(t, a, event("d2", "task-2", `{"eq":"=2"}`))
	rows = readCSV(t, filepath.Join(dir, "cases-2025-03-04.csv"))
	if rows[1][1] != want["eq"] || rows[2][1] != "'=2" {
		t.Errorf("after a second delivery: %q", rows)
	}
	// The case file is the record as the mapping made it.
	b, err := os.ReadFile(filepath.Join(dir, "task-1.json"))
	if err != nil || string(b) != record {
		t.Errorf("case file %q, %v", b, err)
	}
}
