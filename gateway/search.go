package gateway

// Field is an indexed element a search can filter on. The FHIR edge maps
// search parameters to fields per resource type; the store maps fields to
// columns.
type Field int

// The searchable fields.
const (
	FieldID                Field = iota + 1
	FieldPractice                // requester (ServiceRequest, Task); the owning practice
	FieldProvider                // owner (Task); performer (ServiceRequest)
	FieldPatient                 // subject, for, patient
	FieldReferral                // Task.focus
	FieldStatus                  // status
	FieldBusinessStatus          // Task.businessStatus (code of our system)
	FieldIdentifier              // identifier
	FieldPatientIdentifier       // the identifier of the Patient in FieldPatient (chained)
	FieldLastUpdated             // meta.lastUpdated
	FieldAuthored                // ServiceRequest.authoredOn
	FieldModified                // Task.lastModified
	FieldLinkWorker              // the Task's link worker, as system|value
	FieldCode                    // Observation.code
	FieldQuestionnaire           // the instrument of a QuestionnaireResponse or Observation
)

// IsDate reports whether f takes date comparisons.
func (f Field) IsDate() bool {
	return f == FieldLastUpdated || f == FieldAuthored || f == FieldModified
}

// IsToken reports whether f takes system|value tokens.
func (f Field) IsToken() bool {
	return f == FieldIdentifier || f == FieldPatientIdentifier || f == FieldCode
}

// Comparator is a FHIR date search prefix.
type Comparator string

// The supported prefixes. sa and eb are read as gt and lt: for the points in
// time the gateway indexes they mean the same.
const (
	OpEq Comparator = "eq"
	OpNe Comparator = "ne"
	OpGt Comparator = "gt"
	OpLt Comparator = "lt"
	OpGe Comparator = "ge"
	OpLe Comparator = "le"
)

// DateBound is one date comparison.
type DateBound struct {
	Op     Comparator
	Period Period
}

// Token is one system|value search value. An empty System matches any system
// unless NoSystem is set ("|value"); an empty Value matches any value in
// System ("system|").
type Token struct {
	System   string
	Value    string
	NoSystem bool
}

// Filter is one search parameter occurrence: its values are alternatives
// (OR); the filters of a query all apply (AND). A filter with no values
// matches nothing.
type Filter struct {
	Field  Field
	Values []string
	Tokens []Token
	Dates  []DateBound
}

// Include asks for the resources that matches reference through a field
// (Task:focus → FieldReferral, Task:patient → FieldPatient).
type Include struct {
	Field Field
	Type  string
}

// SearchQuery is a search for one resource type, run for one organisation.
type SearchQuery struct {
	Type    string
	Org     string
	Filters []Filter
	// Descending orders by _lastUpdated newest first; the default is oldest
	// first, which is what a poller wants.
	Descending bool
	// Count is the page size; 0 asks only for the total.
	Count int
	// Snapshot and After continue a search from its cursor: the page holds
	// matches as they were at change Snapshot, after (or, descending,
	// before) the match with change sequence After. Zero: the first page.
	Snapshot int64
	After    int64
	// Total asks for the number of matches.
	Total    bool
	Includes []Include
}

// SearchPage is one page of results.
type SearchPage struct {
	Matches  []Resource
	Included []Resource
	// Total is the number of matches at Snapshot, or -1 when not counted.
	Total int
	// Snapshot is the change the search sees; later pages keep it.
	Snapshot int64
	// More says that matches follow the last of this page.
	More bool
}
