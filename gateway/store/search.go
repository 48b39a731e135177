package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/spgateway/spgateway/gateway"
)

// columns maps the simple fields to their columns. Only these names ever
// reach SQL text; every value is bound.
var columns = map[gateway.Field]string{
	gateway.FieldID:             "v.id",
	gateway.FieldPractice:       "v.practice",
	gateway.FieldProvider:       "v.provider",
	gateway.FieldPatient:        "v.patient_id",
	gateway.FieldReferral:       "v.referral_id",
	gateway.FieldStatus:         "v.status",
	gateway.FieldBusinessStatus: "v.business_status",
	gateway.FieldLastUpdated:    "v.last_updated",
	gateway.FieldAuthored:       "v.authored",
	gateway.FieldModified:       "v.modified",
	gateway.FieldLinkWorker:     "v.link_worker",
	gateway.FieldQuestionnaire:  "v.questionnaire",
}

// query accumulates a WHERE clause and its arguments.
type query struct {
	where []string
	args  []any
}

func (q *query) add(cond string, args ...any) {
	q.where = append(q.where, cond)
	q.args = append(q.args, args...)
}

func (q *query) sql() string { return strings.Join(q.where, " AND ") }

// whereSQL is the WHERE clause of the conditions, empty when there are none.
func (q *query) whereSQL() string {
	if len(q.where) == 0 {
		return ""
	}
	return " WHERE " + q.sql()
}

// asOf restricts alias to the versions current at change snap.
func asOf(alias string, snap int64) (string, []any) {
	return fmt.Sprintf("%[1]s.seq <= ? AND (%[1]s.superseded_seq IS NULL OR %[1]s.superseded_seq > ?)", alias), []any{snap, snap}
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// tokenCondition matches resource_tokens alias i of param against any of
// toks.
func tokenCondition(param string, toks []gateway.Token) (string, []any) {
	var ors []string
	args := []any{param}
	for _, t := range toks {
		switch {
		case t.NoSystem:
			ors = append(ors, "(i.system = '' AND i.value = ?)")
			args = append(args, t.Value)
		case t.System == "":
			ors = append(ors, "i.value = ?")
			args = append(args, t.Value)
		case t.Value == "":
			ors = append(ors, "i.system = ?")
			args = append(args, t.System)
		default:
			ors = append(ors, "(i.system = ? AND i.value = ?)")
			args = append(args, t.System, t.Value)
		}
	}
	return "i.param = ? AND (" + strings.Join(ors, " OR ") + ")", args
}

// dateCondition compares column col with one bound: the indexed value is a
// point in time, the bound a period.
func dateCondition(col string, b gateway.DateBound) (string, []any, error) {
	lo, hi := b.Period.Start.UnixMicro(), b.Period.End.UnixMicro()
	switch b.Op {
	case gateway.OpEq:
		return fmt.Sprintf("(%s >= ? AND %s < ?)", col, col), []any{lo, hi}, nil
	case gateway.OpNe:
		return fmt.Sprintf("(%s < ? OR %s >= ?)", col, col), []any{lo, hi}, nil
	case gateway.OpGt:
		return col + " >= ?", []any{hi}, nil
	case gateway.OpGe:
		return col + " >= ?", []any{lo}, nil
	case gateway.OpLt:
		return col + " < ?", []any{lo}, nil
	case gateway.OpLe:
		return col + " < ?", []any{hi}, nil
	}
	return "", nil, fmt.Errorf("comparator %q", b.Op)
}

func (q *query) filter(f gateway.Filter, snap int64) error {
	if len(f.Values) == 0 && len(f.Tokens) == 0 && len(f.Dates) == 0 {
		q.add("1 = 0")
		return nil
	}
	// A field takes one kind of value; another kind would leave its list
	// empty (invalid SQL on PostgreSQL, no match on SQLite).
	if len(f.Tokens) > 0 && !f.Field.IsToken() || len(f.Dates) > 0 && !f.Field.IsDate() ||
		len(f.Values) > 0 && (f.Field.IsToken() || f.Field.IsDate()) {
		return fmt.Errorf("field %d does not take the values given", f.Field)
	}
	switch {
	case f.Field == gateway.FieldIdentifier || f.Field == gateway.FieldCode:
		param := paramIdentifier
		if f.Field == gateway.FieldCode {
			param = paramCode
		}
		cond, args := tokenCondition(param, f.Tokens)
		q.add("EXISTS (SELECT 1 FROM resource_tokens i WHERE i.seq = v.seq AND "+cond+")", args...)
	case f.Field == gateway.FieldPatientIdentifier:
		cond, args := tokenCondition(paramIdentifier, f.Tokens)
		vis, visArgs := asOf("p", snap)
		q.add(`v.patient_id IN (SELECT p.id FROM resource_versions p JOIN resource_tokens i ON i.seq = p.seq
			WHERE p.type = 'Patient' AND `+vis+` AND `+cond+`)`, append(visArgs, args...)...)
	case f.Field.IsDate():
		var ors []string
		var args []any
		for _, b := range f.Dates {
			cond, a, err := dateCondition(columns[f.Field], b)
			if err != nil {
				return err
			}
			ors = append(ors, cond)
			args = append(args, a...)
		}
		q.add("("+strings.Join(ors, " OR ")+")", args...)
	default:
		col, ok := columns[f.Field]
		if !ok {
			return fmt.Errorf("field %d", f.Field)
		}
		args := make([]any, len(f.Values))
		for i, v := range f.Values {
			args[i] = v
		}
		q.add(col+" IN ("+placeholders(len(args))+")", args...)
	}
	return nil
}

// Search returns one page of q's matches as they were at the query's
// snapshot (the view's own for a first page), in change order, with the
// resources they include. Every statement is restricted to what q.Org may
// read.
func (v *view) Search(ctx context.Context, q gateway.SearchQuery) (gateway.SearchPage, error) {
	if q.Org == "" {
		return gateway.SearchPage{}, gateway.Errorf(gateway.CodeInvalid, "a search needs an organisation")
	}
	snap := q.Snapshot
	if snap <= 0 || snap > v.snapshot {
		snap = v.snapshot
	}
	var w query
	w.add("v.type = ?", q.Type)
	vis, visArgs := asOf("v", snap)
	w.add(vis, visArgs...)
	w.add("NOT v.deleted")
	w.add(v.d.accessible, q.Org)
	for _, f := range q.Filters {
		if err := w.filter(f, snap); err != nil {
			return gateway.SearchPage{}, gateway.Errorf(gateway.CodeInvalid, "cannot run this search: %v", err)
		}
	}
	for _, inc := range q.Includes {
		if inc.Field != gateway.FieldReferral && inc.Field != gateway.FieldPatient {
			return gateway.SearchPage{}, gateway.Errorf(gateway.CodeInvalid, "cannot include through field %d", inc.Field)
		}
	}
	page := gateway.SearchPage{Total: -1, Snapshot: snap}
	if q.Total {
		if err := v.getOne(ctx, &page.Total, (`SELECT COUNT(*) FROM resource_versions v WHERE ` + w.sql()), w.args...); err != nil {
			return page, gateway.Internal("store.Search", err)
		}
	}
	if q.Count <= 0 {
		return page, nil
	}
	order := "ASC"
	if q.Descending {
		order = "DESC"
		if q.After > 0 {
			w.add("v.seq < ?", q.After)
		}
	} else if q.After > 0 {
		w.add("v.seq > ?", q.After)
	}
	var rows []row
	err := v.selectAll(ctx, &rows, (`SELECT ` + rowColumns + ` FROM resource_versions v WHERE ` + w.sql() +
		` ORDER BY v.seq ` + order + ` LIMIT ?`), append(w.args, q.Count+1)...)
	if err != nil {
		return page, gateway.Internal("store.Search", err)
	}
	if len(rows) > q.Count {
		page.More = true
		rows = rows[:q.Count]
	}
	page.Matches = make([]gateway.Resource, len(rows))
	for i, r := range rows {
		page.Matches[i] = r.toResource()
	}
	for _, inc := range q.Includes {
		included, err := v.include(ctx, q.Org, snap, inc, page.Matches)
		if err != nil {
			return page, err
		}
		page.Included = append(page.Included, included...)
	}
	return page, nil
}

// include fetches, as of snap, the resources of type inc.Type that the
// matches refer to through inc.Field and that org may read.
func (v *view) include(ctx context.Context, org string, snap int64, inc gateway.Include, matches []gateway.Resource) ([]gateway.Resource, error) {
	seen := map[string]bool{}
	var ids []any
	for _, m := range matches {
		var id string
		switch inc.Field {
		case gateway.FieldReferral:
			id = m.Index.ReferralID
		case gateway.FieldPatient:
			id = m.Index.PatientID
		default:
			return nil, gateway.Internal("store.Search", fmt.Errorf("include through field %d", inc.Field))
		}
		if id != "" && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	var w query
	w.add("v.type = ?", inc.Type)
	w.add("v.id IN ("+placeholders(len(ids))+")", ids...)
	// The unary + keeps seq out of index choice: without statistics
	// SQLite would otherwise walk resource_by_type through every version
	// of the type up to snap, not probe (type, id) for the few versions
	// of each id. The ids are at most a page's, so the sort is small.
	w.add("+v.seq <= ? AND (v.superseded_seq IS NULL OR v.superseded_seq > ?)", snap, snap)
	w.add(v.d.accessible, org)
	var rows []row
	if err := v.selectAll(ctx, &rows, (`SELECT ` + rowColumns + ` FROM resource_versions v WHERE ` + w.sql() + ` ORDER BY +v.seq`), w.args...); err != nil {
		return nil, gateway.Internal("store.Search", err)
	}
	out := make([]gateway.Resource, len(rows))
	for i, r := range rows {
		out[i] = r.toResource()
	}
	return out, nil
}
