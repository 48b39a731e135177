// Package filedrop delivers case records to providers that import files
// rather than receive requests: each case record is written as a JSON file
// named after its case, and added as a row to the day's CSV file, for
// spreadsheets. A provider's importer may read the directory at any time,
// so every file appears whole or not at all. It is the "filedrop" adapter
// of the outbox worker.
package filedrop

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/spgateway/spgateway/gateway"
)

// DeliveryColumn is the CSV's first column: the delivery id, so that a row
// is written once however often its event is delivered, and an importer
// can tell rows apart.
const DeliveryColumn = "delivery_id"

// maxName bounds a case file's name, well under file systems' limits.
const maxName = 200

// Config is what an Adapter needs.
type Config struct {
	// Dir is the directory the provider imports from; created (0750) if
	// missing.
	Dir string
	// Now dates the CSV file a row goes to (in UTC).
	Now func() time.Time
}

// Adapter writes case records into one provider's directory. The day's CSV
// file is read, extended and replaced under the Adapter's lock and the
// directory's lock file, so several processes (replicas sharing the
// directory) may write one directory.
type Adapter struct {
	dir string
	now func() time.Time
	mu  sync.Mutex // held while the day's CSV file is rewritten
}

// New returns an Adapter, creating the directory if it is missing. It
// refuses an empty directory name, which would mean the working directory.
func New(cfg Config) (*Adapter, error) {
	if cfg.Dir == "" {
		return nil, errors.New("filedrop.New: no directory")
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("filedrop.New: os.MkdirAll: %w", err)
	}
	if st, err := os.Stat(cfg.Dir); err != nil {
		return nil, fmt.Errorf("filedrop.New: os.Stat: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("filedrop.New: %s is not a directory", cfg.Dir)
	}
	a := &Adapter{dir: cfg.Dir, now: cfg.Now}
	if a.now == nil {
		a.now = time.Now
	}
	return a, nil
}

// Deliver writes the case record to <Dir>/<case>.json, replacing the case's
// previous version, and adds a row to <Dir>/cases-YYYY-MM-DD.csv unless the
// file already holds this delivery's row. The case is the Task the event is
// about. A case name that could leave the directory, or a payload that is
// not a JSON object, is a permanent failure: nothing is written.
func (a *Adapter) Deliver(ctx context.Context, e gateway.OutboxEvent) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("filedrop.Deliver: %w", err)
	}
	name, err := caseName(e.OrderKey)
	if err != nil {
		return &gateway.PermanentError{Err: fmt.Errorf("filedrop.Deliver: %w", err)}
	}
	fields, err := readRecord(e.Payload)
	if err != nil {
		return &gateway.PermanentError{Err: fmt.Errorf("filedrop.Deliver: case %s: %w", name, err)}
	}
	if err := writeFile(a.dir, name+".json", e.Payload); err != nil {
		return fmt.Errorf("filedrop.Deliver: case %s: %w", name, err)
	}
	if err := a.addRow(e.ID, fields); err != nil {
		return fmt.Errorf("filedrop.Deliver: case %s: %w", name, err)
	}
	return nil
}

// caseName returns the file name (without extension) of a case: its id,
// provided it names a file in the directory and nothing else — letters,
// digits, '.', '_' and '-' only, not starting with a dot (no "..", no
// hidden files, nothing like the adapter's temporary files).
func caseName(id string) (string, error) {
	if id == "" {
		return "", errors.New("the event names no case")
	}
	if len(id) > maxName {
		return "", fmt.Errorf("a case id of %d characters is too long for a file name", len(id))
	}
	if id[0] == '.' {
		return "", errors.New("a case id starting with a dot cannot name a file")
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return "", errors.New("a case id with characters other than letters, digits, '.', '_' and '-' cannot name a file")
		}
	}
	return id, nil
}

// field is one of a case record's keys and its value as a CSV cell.
type field struct{ key, value string }

// readRecord reads a case record's keys, in their order in the document
// (an importer's columns follow the provider's mapping), and their values
// as CSV cells: strings as they are, numbers and booleans as their JSON
// text, null as nothing, arrays joined with ";", objects as compact JSON.
// Errors say what is wrong, never what the record holds.
func readRecord(payload []byte) ([]field, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("the case record is not a JSON object")
	}
	var fields []field
	seen := map[string]bool{DeliveryColumn: true}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errors.New("the case record is not valid JSON")
		}
		key, ok := tok.(string) // the decoder allows nothing else here
		if !ok {
			return nil, errors.New("the case record is not valid JSON")
		}
		if seen[key] {
			return nil, fmt.Errorf("the case record has the key %q twice, or as well as the delivery id column", key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, errors.New("the case record is not valid JSON")
		}
		value, err := cell(raw)
		if err != nil {
			return nil, err
		}
		fields = append(fields, field{key, value})
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, errors.New("the case record is not valid JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("the case record has more after its object")
	}
	return fields, nil
}

// cell turns one JSON value into a CSV cell. Strings, and an array's
// items, that a spreadsheet would take for a formula are made text.
func cell(raw json.RawMessage) (string, error) {
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", errors.New("the case record has a string that is not valid JSON")
		}
		return text(s), nil
	case '[':
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return "", errors.New("the case record has an array that is not valid JSON")
		}
		cells := make([]string, len(items))
		for i, item := range items {
			c, err := cell(item)
			if err != nil {
				return "", err
			}
			cells[i] = c
		}
		return text(strings.Join(cells, ";")), nil
	case '{':
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			return "", errors.New("the case record has an object that is not valid JSON")
		}
		return b.String(), nil
	case 'n':
		return "", nil
	default: // a number, true or false: its JSON text
		return string(raw), nil
	}
}

// formulaStart is what makes a spreadsheet read a cell as a formula
// (OWASP, "CSV Injection").
const formulaStart = "=+-@\t\r"

// text returns s as a spreadsheet shows it as text: with an apostrophe in
// front when it starts like a formula, so a value from a referral (a
// patient's name, a note) never runs in the provider's spreadsheet.
// Numbers are not passed here: their JSON text cannot be a formula.
func text(s string) string {
	if s != "" && strings.IndexByte(formulaStart, s[0]) >= 0 {
		return "'" + s
	}
	return s
}

// addRow adds the delivery's row to the day's CSV file, unless it is there
// already. The file is read, extended and replaced whole, so an importer
// never reads half a row. Its columns are the delivery id and the keys of
// the records in it, in the order they were first seen: a record with a
// key the file lacks adds a column (earlier rows have it empty), a record
// without one of the file's keys leaves its cell empty.
func (a *Adapter) addRow(id string, fields []field) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	unlock, err := lockDir(a.dir)
	if err != nil {
		return err
	}
	defer unlock()
	name := "cases-" + a.now().UTC().Format(time.DateOnly) + ".csv"
	rows, err := readCSV(filepath.Join(a.dir, name))
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		rows = [][]string{{DeliveryColumn}}
	}
	header := rows[0]
	if header[0] != DeliveryColumn {
		return fmt.Errorf("%s does not start with the %s column: not a file this adapter wrote", name, DeliveryColumn)
	}
	for _, row := range rows[1:] {
		if row[0] == id {
			return nil // delivered before: one row per delivery
		}
	}
	column := make(map[string]int, len(header))
	for i, k := range header {
		column[k] = i
	}
	for _, f := range fields {
		if _, ok := column[f.key]; !ok {
			column[f.key] = len(header)
			header = append(header, f.key)
		}
	}
	rows[0] = header
	row := make([]string, len(header))
	row[0] = id
	for _, f := range fields {
		row[column[f.key]] = f.value
	}
	rows = append(rows, row)
	for i := range rows { // give earlier rows any new columns
		if n := len(header) - len(rows[i]); n > 0 {
			rows[i] = append(rows[i], make([]string, n)...)
		}
	}
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	if err := w.WriteAll(rows); err != nil {
		return fmt.Errorf("csv.Writer: %w", err)
	}
	return writeFile(a.dir, name, b.Bytes())
}

// readCSV reads a CSV file's rows; a missing file has none.
func readCSV(path string) ([][]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("os.ReadFile: %w", err)
	}
	rows, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		// csv.ParseError quotes no cell, only where it stopped.
		return nil, fmt.Errorf("%s: csv.Reader: %w", filepath.Base(path), err)
	}
	return rows, nil
}

// writeFile replaces dir/name with data atomically: a temporary file in the
// same directory (a dot file whose name ends neither in .json nor .csv, so
// importers pass it by) is written and synced, then renamed over the old
// file, and the directory synced so the rename survives a crash. A reader
// sees the old file or the new one, whole.
func writeFile(dir, name string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, ".spgateway-*.tmp")
	if err != nil {
		return fmt.Errorf("os.CreateTemp: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(tmp), err)
	}
	if err := f.Chmod(0o640); err != nil { // CreateTemp's 0600 would keep the importer out
		return fmt.Errorf("chmod %s: %w", filepath.Base(tmp), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", filepath.Base(tmp), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", filepath.Base(tmp), err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("os.Rename: %w", err)
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable. Windows cannot sync a directory
// (and needs not: its renames are journalled).
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory: %w", err)
	}
	return nil
}
