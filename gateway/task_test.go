package gateway_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/spgateway/spgateway/gateway"
)

// taskTransition is one attempt to move a Task from one status to another,
// by one party, and the error code it must get ("" when it is allowed).
type taskTransition struct {
	from, to string
	role     gateway.TaskRole
	want     gateway.Code
}

// taskTransitionTable is the whole Task lifecycle, written out by hand from
// SPEC 2.2 and DOMAIN.md ("Who sets which Task status"), not from the code:
//
//   - only the owner (provider) sets received, accepted, rejected,
//     in-progress, on-hold, failed and completed; only the requester
//     (practice) sets cancelled; nobody sets draft, ready, requested or
//     entered-in-error through the gateway;
//   - the steps are requested → received | accepted | rejected | cancelled;
//     received → accepted | rejected | cancelled; accepted → in-progress |
//     failed | cancelled; in-progress → on-hold | completed | failed |
//     cancelled; on-hold → in-progress | failed | cancelled;
//   - a Task in a status that is not open (draft, ready, rejected, cancelled,
//     failed, completed, entered-in-error) cannot change at all: conflict,
//     whoever asks and even for from == to;
//   - from == to on an open status is no transition: allowed for both;
//   - otherwise a party that never sets to is forbidden, even where no step
//     leads there; a party that does set it gets a conflict when there is
//     no such step from the current status.
//
// It has a row for every ordered pair of the 12 FHIR statuses and each of
// the two parties: TestTaskTransitionTableIsComplete keeps it so.
func taskTransitionTable() []taskTransition {
	const (
		ok        gateway.Code = ""
		forbidden              = gateway.CodeForbidden
		conflict               = gateway.CodeConflict
	)
	owner, requester := gateway.TaskOwner, gateway.TaskRequester
	return []taskTransition{
		// draft is not open: nothing moves a Task out of it.
		{"draft", "draft", owner, conflict},
		{"draft", "draft", requester, conflict},
		{"draft", "requested", owner, conflict},
		{"draft", "requested", requester, conflict},
		{"draft", "received", owner, conflict},
		{"draft", "received", requester, conflict},
		{"draft", "accepted", owner, conflict},
		{"draft", "accepted", requester, conflict},
		{"draft", "rejected", owner, conflict},
		{"draft", "rejected", requester, conflict},
		{"draft", "ready", owner, conflict},
		{"draft", "ready", requester, conflict},
		{"draft", "cancelled", owner, conflict},
		{"draft", "cancelled", requester, conflict},
		{"draft", "in-progress", owner, conflict},
		{"draft", "in-progress", requester, conflict},
		{"draft", "on-hold", owner, conflict},
		{"draft", "on-hold", requester, conflict},
		{"draft", "failed", owner, conflict},
		{"draft", "failed", requester, conflict},
		{"draft", "completed", owner, conflict},
		{"draft", "completed", requester, conflict},
		{"draft", "entered-in-error", owner, conflict},
		{"draft", "entered-in-error", requester, conflict},

		// requested: the provider receives, accepts or rejects; the
		// practice cancels.
		{"requested", "draft", owner, forbidden},
		{"requested", "draft", requester, forbidden},
		{"requested", "requested", owner, ok},
		{"requested", "requested", requester, ok},
		{"requested", "received", owner, ok},
		{"requested", "received", requester, forbidden},
		{"requested", "accepted", owner, ok},
		{"requested", "accepted", requester, forbidden},
		{"requested", "rejected", owner, ok},
		{"requested", "rejected", requester, forbidden},
		{"requested", "ready", owner, forbidden},
		{"requested", "ready", requester, forbidden},
		{"requested", "cancelled", owner, forbidden},
		{"requested", "cancelled", requester, ok},
		{"requested", "in-progress", owner, conflict},
		{"requested", "in-progress", requester, forbidden},
		{"requested", "on-hold", owner, conflict},
		{"requested", "on-hold", requester, forbidden},
		{"requested", "failed", owner, conflict},
		{"requested", "failed", requester, forbidden},
		{"requested", "completed", owner, conflict},
		{"requested", "completed", requester, forbidden},
		{"requested", "entered-in-error", owner, forbidden},
		{"requested", "entered-in-error", requester, forbidden},

		// received: the provider accepts or rejects; the practice cancels.
		{"received", "draft", owner, forbidden},
		{"received", "draft", requester, forbidden},
		{"received", "requested", owner, forbidden},
		{"received", "requested", requester, forbidden},
		{"received", "received", owner, ok},
		{"received", "received", requester, ok},
		{"received", "accepted", owner, ok},
		{"received", "accepted", requester, forbidden},
		{"received", "rejected", owner, ok},
		{"received", "rejected", requester, forbidden},
		{"received", "ready", owner, forbidden},
		{"received", "ready", requester, forbidden},
		{"received", "cancelled", owner, forbidden},
		{"received", "cancelled", requester, ok},
		{"received", "in-progress", owner, conflict},
		{"received", "in-progress", requester, forbidden},
		{"received", "on-hold", owner, conflict},
		{"received", "on-hold", requester, forbidden},
		{"received", "failed", owner, conflict},
		{"received", "failed", requester, forbidden},
		{"received", "completed", owner, conflict},
		{"received", "completed", requester, forbidden},
		{"received", "entered-in-error", owner, forbidden},
		{"received", "entered-in-error", requester, forbidden},

		// accepted: the provider starts or fails; the practice cancels.
		{"accepted", "draft", owner, forbidden},
		{"accepted", "draft", requester, forbidden},
		{"accepted", "requested", owner, forbidden},
		{"accepted", "requested", requester, forbidden},
		{"accepted", "received", owner, conflict},
		{"accepted", "received", requester, forbidden},
		{"accepted", "accepted", owner, ok},
		{"accepted", "accepted", requester, ok},
		{"accepted", "rejected", owner, conflict},
		{"accepted", "rejected", requester, forbidden},
		{"accepted", "ready", owner, forbidden},
		{"accepted", "ready", requester, forbidden},
		{"accepted", "cancelled", owner, forbidden},
		{"accepted", "cancelled", requester, ok},
		{"accepted", "in-progress", owner, ok},
		{"accepted", "in-progress", requester, forbidden},
		{"accepted", "on-hold", owner, conflict},
		{"accepted", "on-hold", requester, forbidden},
		{"accepted", "failed", owner, ok},
		{"accepted", "failed", requester, forbidden},
		{"accepted", "completed", owner, conflict},
		{"accepted", "completed", requester, forbidden},
		{"accepted", "entered-in-error", owner, forbidden},
		{"accepted", "entered-in-error", requester, forbidden},

		// rejected is final.
		{"rejected", "draft", owner, conflict},
		{"rejected", "draft", requester, conflict},
		{"rejected", "requested", owner, conflict},
		{"rejected", "requested", requester, conflict},
		{"rejected", "received", owner, conflict},
		{"rejected", "received", requester, conflict},
		{"rejected", "accepted", owner, conflict},
		{"rejected", "accepted", requester, conflict},
		{"rejected", "rejected", owner, conflict},
		{"rejected", "rejected", requester, conflict},
		{"rejected", "ready", owner, conflict},
		{"rejected", "ready", requester, conflict},
		{"rejected", "cancelled", owner, conflict},
		{"rejected", "cancelled", requester, conflict},
		{"rejected", "in-progress", owner, conflict},
		{"rejected", "in-progress", requester, conflict},
		{"rejected", "on-hold", owner, conflict},
		{"rejected", "on-hold", requester, conflict},
		{"rejected", "failed", owner, conflict},
		{"rejected", "failed", requester, conflict},
		{"rejected", "completed", owner, conflict},
		{"rejected", "completed", requester, conflict},
		{"rejected", "entered-in-error", owner, conflict},
		{"rejected", "entered-in-error", requester, conflict},

		// ready is not used by the gateway and is not open.
		{"ready", "draft", owner, conflict},
		{"ready", "draft", requester, conflict},
		{"ready", "requested", owner, conflict},
		{"ready", "requested", requester, conflict},
		{"ready", "received", owner, conflict},
		{"ready", "received", requester, conflict},
		{"ready", "accepted", owner, conflict},
		{"ready", "accepted", requester, conflict},
		{"ready", "rejected", owner, conflict},
		{"ready", "rejected", requester, conflict},
		{"ready", "ready", owner, conflict},
		{"ready", "ready", requester, conflict},
		{"ready", "cancelled", owner, conflict},
		{"ready", "cancelled", requester, conflict},
		{"ready", "in-progress", owner, conflict},
		{"ready", "in-progress", requester, conflict},
		{"ready", "on-hold", owner, conflict},
		{"ready", "on-hold", requester, conflict},
		{"ready", "failed", owner, conflict},
		{"ready", "failed", requester, conflict},
		{"ready", "completed", owner, conflict},
		{"ready", "completed", requester, conflict},
		{"ready", "entered-in-error", owner, conflict},
		{"ready", "entered-in-error", requester, conflict},

		// cancelled is final.
		{"cancelled", "draft", owner, conflict},
		{"cancelled", "draft", requester, conflict},
		{"cancelled", "requested", owner, conflict},
		{"cancelled", "requested", requester, conflict},
		{"cancelled", "received", owner, conflict},
		{"cancelled", "received", requester, conflict},
		{"cancelled", "accepted", owner, conflict},
		{"cancelled", "accepted", requester, conflict},
		{"cancelled", "rejected", owner, conflict},
		{"cancelled", "rejected", requester, conflict},
		{"cancelled", "ready", owner, conflict},
		{"cancelled", "ready", requester, conflict},
		{"cancelled", "cancelled", owner, conflict},
		{"cancelled", "cancelled", requester, conflict},
		{"cancelled", "in-progress", owner, conflict},
		{"cancelled", "in-progress", requester, conflict},
		{"cancelled", "on-hold", owner, conflict},
		{"cancelled", "on-hold", requester, conflict},
		{"cancelled", "failed", owner, conflict},
		{"cancelled", "failed", requester, conflict},
		{"cancelled", "completed", owner, conflict},
		{"cancelled", "completed", requester, conflict},
		{"cancelled", "entered-in-error", owner, conflict},
		{"cancelled", "entered-in-error", requester, conflict},

		// in-progress: the provider pauses, completes or fails; the
		// practice cancels.
		{"in-progress", "draft", owner, forbidden},
		{"in-progress", "draft", requester, forbidden},
		{"in-progress", "requested", owner, forbidden},
		{"in-progress", "requested", requester, forbidden},
		{"in-progress", "received", owner, conflict},
		{"in-progress", "received", requester, forbidden},
		{"in-progress", "accepted", owner, conflict},
		{"in-progress", "accepted", requester, forbidden},
		{"in-progress", "rejected", owner, conflict},
		{"in-progress", "rejected", requester, forbidden},
		{"in-progress", "ready", owner, forbidden},
		{"in-progress", "ready", requester, forbidden},
		{"in-progress", "cancelled", owner, forbidden},
		{"in-progress", "cancelled", requester, ok},
		{"in-progress", "in-progress", owner, ok},
		{"in-progress", "in-progress", requester, ok},
		{"in-progress", "on-hold", owner, ok},
		{"in-progress", "on-hold", requester, forbidden},
		{"in-progress", "failed", owner, ok},
		{"in-progress", "failed", requester, forbidden},
		{"in-progress", "completed", owner, ok},
		{"in-progress", "completed", requester, forbidden},
		{"in-progress", "entered-in-error", owner, forbidden},
		{"in-progress", "entered-in-error", requester, forbidden},

		// on-hold: the provider resumes or fails; the practice cancels.
		{"on-hold", "draft", owner, forbidden},
		{"on-hold", "draft", requester, forbidden},
		{"on-hold", "requested", owner, forbidden},
		{"on-hold", "requested", requester, forbidden},
		{"on-hold", "received", owner, conflict},
		{"on-hold", "received", requester, forbidden},
		{"on-hold", "accepted", owner, conflict},
		{"on-hold", "accepted", requester, forbidden},
		{"on-hold", "rejected", owner, conflict},
		{"on-hold", "rejected", requester, forbidden},
		{"on-hold", "ready", owner, forbidden},
		{"on-hold", "ready", requester, forbidden},
		{"on-hold", "cancelled", owner, forbidden},
		{"on-hold", "cancelled", requester, ok},
		{"on-hold", "in-progress", owner, ok},
		{"on-hold", "in-progress", requester, forbidden},
		{"on-hold", "on-hold", owner, ok},
		{"on-hold", "on-hold", requester, ok},
		{"on-hold", "failed", owner, ok},
		{"on-hold", "failed", requester, forbidden},
		{"on-hold", "completed", owner, conflict},
		{"on-hold", "completed", requester, forbidden},
		{"on-hold", "entered-in-error", owner, forbidden},
		{"on-hold", "entered-in-error", requester, forbidden},

		// failed is final.
		{"failed", "draft", owner, conflict},
		{"failed", "draft", requester, conflict},
		{"failed", "requested", owner, conflict},
		{"failed", "requested", requester, conflict},
		{"failed", "received", owner, conflict},
		{"failed", "received", requester, conflict},
		{"failed", "accepted", owner, conflict},
		{"failed", "accepted", requester, conflict},
		{"failed", "rejected", owner, conflict},
		{"failed", "rejected", requester, conflict},
		{"failed", "ready", owner, conflict},
		{"failed", "ready", requester, conflict},
		{"failed", "cancelled", owner, conflict},
		{"failed", "cancelled", requester, conflict},
		{"failed", "in-progress", owner, conflict},
		{"failed", "in-progress", requester, conflict},
		{"failed", "on-hold", owner, conflict},
		{"failed", "on-hold", requester, conflict},
		{"failed", "failed", owner, conflict},
		{"failed", "failed", requester, conflict},
		{"failed", "completed", owner, conflict},
		{"failed", "completed", requester, conflict},
		{"failed", "entered-in-error", owner, conflict},
		{"failed", "entered-in-error", requester, conflict},

		// completed is final.
		{"completed", "draft", owner, conflict},
		{"completed", "draft", requester, conflict},
		{"completed", "requested", owner, conflict},
		{"completed", "requested", requester, conflict},
		{"completed", "received", owner, conflict},
		{"completed", "received", requester, conflict},
		{"completed", "accepted", owner, conflict},
		{"completed", "accepted", requester, conflict},
		{"completed", "rejected", owner, conflict},
		{"completed", "rejected", requester, conflict},
		{"completed", "ready", owner, conflict},
		{"completed", "ready", requester, conflict},
		{"completed", "cancelled", owner, conflict},
		{"completed", "cancelled", requester, conflict},
		{"completed", "in-progress", owner, conflict},
		{"completed", "in-progress", requester, conflict},
		{"completed", "on-hold", owner, conflict},
		{"completed", "on-hold", requester, conflict},
		{"completed", "failed", owner, conflict},
		{"completed", "failed", requester, conflict},
		{"completed", "completed", owner, conflict},
		{"completed", "completed", requester, conflict},
		{"completed", "entered-in-error", owner, conflict},
		{"completed", "entered-in-error", requester, conflict},

		// entered-in-error is final.
		{"entered-in-error", "draft", owner, conflict},
		{"entered-in-error", "draft", requester, conflict},
		{"entered-in-error", "requested", owner, conflict},
		{"entered-in-error", "requested", requester, conflict},
		{"entered-in-error", "received", owner, conflict},
		{"entered-in-error", "received", requester, conflict},
		{"entered-in-error", "accepted", owner, conflict},
		{"entered-in-error", "accepted", requester, conflict},
		{"entered-in-error", "rejected", owner, conflict},
		{"entered-in-error", "rejected", requester, conflict},
		{"entered-in-error", "ready", owner, conflict},
		{"entered-in-error", "ready", requester, conflict},
		{"entered-in-error", "cancelled", owner, conflict},
		{"entered-in-error", "cancelled", requester, conflict},
		{"entered-in-error", "in-progress", owner, conflict},
		{"entered-in-error", "in-progress", requester, conflict},
		{"entered-in-error", "on-hold", owner, conflict},
		{"entered-in-error", "on-hold", requester, conflict},
		{"entered-in-error", "failed", owner, conflict},
		{"entered-in-error", "failed", requester, conflict},
		{"entered-in-error", "completed", owner, conflict},
		{"entered-in-error", "completed", requester, conflict},
		{"entered-in-error", "entered-in-error", owner, conflict},
		{"entered-in-error", "entered-in-error", requester, conflict},
	}
}

// outcomeLabel is how a subtest name states the expected outcome.
func outcomeLabel(c gateway.Code) string {
	if c == "" {
		return "OK"
	}
	return string(c)
}

// assertRefusal checks that err is a gateway error with code want whose
// issues name exactly the elements exprs, in order, each with a message.
func assertRefusal(t *testing.T, err error, want gateway.Code, exprs ...string) {
	t.Helper()
	if got := gateway.ErrorCode(err); got != want {
		t.Fatalf("error code %q (%v), want %q", got, err, want)
	}
	var e *gateway.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is not a *gateway.Error", err)
	}
	if len(e.Issues) != len(exprs) {
		t.Fatalf("%d issues %+v, want %d naming %q", len(e.Issues), e.Issues, len(exprs), exprs)
	}
	for i, is := range e.Issues {
		if !slices.Equal(is.Expression, []string{exprs[i]}) {
			t.Errorf("issue %d names %q, want [%q]", i, is.Expression, exprs[i])
		}
		if is.Message == "" {
			t.Errorf("issue %d (%q) has no message", i, is.Expression)
		}
	}
}

func TestTaskTransitions(t *testing.T) {
	for _, tc := range taskTransitionTable() {
		name := fmt.Sprintf("%s -> %s : %s (%s)", tc.from, tc.to, tc.role, outcomeLabel(tc.want))
		t.Run(name, func(t *testing.T) {
			err := gateway.CheckTaskTransition(tc.from, tc.to, tc.role)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			assertRefusal(t, err, tc.want, "Task.status")
		})
	}
}

// TestTaskTransitionTableIsComplete keeps the table of TestTaskTransitions
// from silently losing rows: every ordered pair of statuses, for each party,
// exactly once.
func TestTaskTransitionTableIsComplete(t *testing.T) {
	if len(gateway.TaskStatuses) != 12 {
		t.Fatalf("%d Task statuses, FHIR R4 has 12: %q", len(gateway.TaskStatuses), gateway.TaskStatuses)
	}
	type key struct {
		from, to string
		role     gateway.TaskRole
	}
	seen := map[key]int{}
	for _, tc := range taskTransitionTable() {
		k := key{tc.from, tc.to, tc.role}
		if !slices.Contains(gateway.TaskStatuses, tc.from) || !slices.Contains(gateway.TaskStatuses, tc.to) {
			t.Errorf("row %v names a status that is not a FHIR Task status", k)
		}
		if tc.role != gateway.TaskOwner && tc.role != gateway.TaskRequester {
			t.Errorf("row %v names an unknown party", k)
		}
		seen[k]++
	}
	for _, from := range gateway.TaskStatuses {
		for _, to := range gateway.TaskStatuses {
			for _, role := range []gateway.TaskRole{gateway.TaskOwner, gateway.TaskRequester} {
				if n := seen[key{from, to, role}]; n != 1 {
					t.Errorf("%s -> %s : %s has %d rows, want 1", from, to, role, n)
				}
			}
		}
	}
	if n := len(taskTransitionTable()); n != 12*12*2 {
		t.Errorf("%d rows, want %d", n, 12*12*2)
	}
}

// statusReason is a reason coded from the gateway's status-reason system.
func statusReason(code, text string) *gateway.Reason {
	return &gateway.Reason{Codes: []gateway.Coding{{System: gateway.SystemStatusReason, Code: code}}, Text: text}
}

// assertOneIssue checks that got is exactly one issue of type typ naming expr,
// with a message; typ "" means no issue at all.
func assertOneIssue(t *testing.T, got []gateway.Issue, typ gateway.IssueType, expr string) {
	t.Helper()
	if typ == "" {
		if len(got) != 0 {
			t.Fatalf("issues %+v, want none", got)
		}
		return
	}
	if len(got) != 1 {
		t.Fatalf("%d issues %+v, want one %s at %s", len(got), got, typ, expr)
	}
	if got[0].Type != typ {
		t.Errorf("issue type %q, want %q", got[0].Type, typ)
	}
	if !slices.Equal(got[0].Expression, []string{expr}) {
		t.Errorf("issue names %q, want [%q]", got[0].Expression, expr)
	}
	if got[0].Message == "" {
		t.Error("issue has no message")
	}
}

func TestCheckStatusReason(t *testing.T) {
	const at = "Task.statusReason"
	cases := []struct {
		name   string
		to     string
		reason *gateway.Reason
		expr   string
		want   gateway.IssueType
	}{
		{"rejected without reason", "rejected", nil, at, gateway.IssueRequired},
		{"cancelled without reason", "cancelled", nil, at, gateway.IssueRequired},
		{"on-hold without reason", "on-hold", nil, at, gateway.IssueRequired},
		{"failed without reason", "failed", nil, at, gateway.IssueRequired},
		{"missing reason named at the given expression", "cancelled", nil, "ServiceRequest.extension", gateway.IssueRequired},

		{"received needs no reason", "received", nil, at, ""},
		{"accepted needs no reason", "accepted", nil, at, ""},
		{"in-progress needs no reason", "in-progress", nil, at, ""},
		{"completed needs no reason", "completed", nil, at, ""},
		{"requested needs no reason", "requested", nil, at, ""},

		{"coding from another system", "rejected",
			&gateway.Reason{Codes: []gateway.Coding{{System: gateway.SystemSNOMED, Code: "871711000000103"}}}, at, gateway.IssueCodeInvalid},
		{"text without coding", "rejected", &gateway.Reason{Text: "patient moved away"}, at, gateway.IssueCodeInvalid},
		{"unknown code of our system", "rejected", statusReason("changed-mind", ""), at, gateway.IssueCodeInvalid},
		{"unknown code named at the given expression", "cancelled", statusReason("changed-mind", ""),
			"ServiceRequest.extension", gateway.IssueCodeInvalid},
		{"wrong code with a status that needs no reason", "accepted", statusReason("changed-mind", ""), at, gateway.IssueCodeInvalid},
		{"other without text", "failed", statusReason("other", ""), at, gateway.IssueRequired},
		{"other with text", "failed", statusReason("other", "the service closed"), at, ""},
		{"our coding beside one of another system", "rejected", &gateway.Reason{Codes: []gateway.Coding{
			{System: gateway.SystemSNOMED, Code: "871711000000103"},
			{System: gateway.SystemStatusReason, Code: "patient-declined"},
		}}, at, ""},
	}
	for _, code := range gateway.StatusReasons {
		for _, to := range []string{"rejected", "cancelled", "on-hold", "failed"} {
			cases = append(cases, struct {
				name   string
				to     string
				reason *gateway.Reason
				expr   string
				want   gateway.IssueType
			}{to + " with " + code, to, statusReason(code, "what happened"), at, ""})
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assertOneIssue(t, gateway.CheckStatusReason(tc.to, tc.reason, tc.expr), tc.want, tc.expr)
		})
	}
}

func TestStatusReasonCodes(t *testing.T) {
	want := []string{"patient-declined", "unable-to-contact", "not-eligible", "out-of-area", "no-capacity",
		"duplicate", "referred-elsewhere", "other"}
	if !slices.Equal(gateway.StatusReasons, want) {
		t.Errorf("StatusReasons %q, want the status-reason codes of DOMAIN.md %q", gateway.StatusReasons, want)
	}
}

func TestCheckBusinessStatus(t *testing.T) {
	cases := []struct {
		name  string
		codes []gateway.Coding
		want  gateway.IssueType
	}{
		{"absent", nil, ""},
		{"coding from another system", []gateway.Coding{{System: gateway.SystemStatusReason, Code: "first-contact-made"}}, gateway.IssueCodeInvalid},
		{"unknown code of our system", []gateway.Coding{{System: gateway.SystemBusinessStatus, Code: "contact-made"}}, gateway.IssueCodeInvalid},
		{"empty codings", []gateway.Coding{}, gateway.IssueCodeInvalid},
		{"our coding beside one of another system", []gateway.Coding{
			{System: gateway.SystemSNOMED, Code: "1362931000000106"},
			{System: gateway.SystemBusinessStatus, Code: "first-contact-made"},
		}, ""},
	}
	for _, code := range gateway.BusinessStatuses {
		cases = append(cases, struct {
			name  string
			codes []gateway.Coding
			want  gateway.IssueType
		}{code, []gateway.Coding{{System: gateway.SystemBusinessStatus, Code: code}}, ""})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assertOneIssue(t, gateway.CheckBusinessStatus(tc.codes), tc.want, "Task.businessStatus")
		})
	}
}

func TestBusinessStatusCodes(t *testing.T) {
	want := []string{"awaiting-contact", "contact-attempted", "first-contact-made", "baseline-prom-complete",
		"follow-up-prom-due", "follow-up-prom-complete", "case-closed"}
	if !slices.Equal(gateway.BusinessStatuses, want) {
		t.Errorf("BusinessStatuses %q, want the business-status codes of DOMAIN.md %q", gateway.BusinessStatuses, want)
	}
}

func TestCheckTaskChange(t *testing.T) {
	cases := []struct {
		name    string
		role    gateway.TaskRole
		changed []string
		refused []string // the elements the error must name, in order; none: allowed
	}{
		{"owner changes nothing", gateway.TaskOwner, nil, nil},
		{"owner changes status", gateway.TaskOwner, []string{"status"}, nil},
		{"owner changes statusReason", gateway.TaskOwner, []string{"statusReason"}, nil},
		{"owner changes businessStatus", gateway.TaskOwner, []string{"businessStatus"}, nil},
		{"owner changes output", gateway.TaskOwner, []string{"output"}, nil},
		{"owner changes note", gateway.TaskOwner, []string{"note"}, nil},
		{"owner changes extension", gateway.TaskOwner, []string{"extension"}, nil},
		{"owner changes executionPeriod", gateway.TaskOwner, []string{"executionPeriod"}, nil},
		{"owner changes description", gateway.TaskOwner, []string{"description"}, nil},
		{"owner changes input", gateway.TaskOwner, []string{"input"}, nil},
		{"owner changes restriction", gateway.TaskOwner, []string{"restriction"}, nil},
		{"owner changes all it may at once", gateway.TaskOwner, []string{"status", "statusReason", "businessStatus",
			"output", "note", "executionPeriod", "extension", "description", "input", "restriction"}, nil},

		{"owner changes for", gateway.TaskOwner, []string{"for"}, []string{"Task.for"}},
		{"owner changes focus", gateway.TaskOwner, []string{"focus"}, []string{"Task.focus"}},
		{"owner changes requester", gateway.TaskOwner, []string{"requester"}, []string{"Task.requester"}},
		{"owner changes owner", gateway.TaskOwner, []string{"owner"}, []string{"Task.owner"}},
		{"owner changes intent", gateway.TaskOwner, []string{"intent"}, []string{"Task.intent"}},
		{"owner changes code", gateway.TaskOwner, []string{"code"}, []string{"Task.code"}},
		{"owner changes authoredOn", gateway.TaskOwner, []string{"authoredOn"}, []string{"Task.authoredOn"}},
		{"owner changes basedOn", gateway.TaskOwner, []string{"basedOn"}, []string{"Task.basedOn"}},
		{"owner changes identifier", gateway.TaskOwner, []string{"identifier"}, []string{"Task.identifier"}},
		{"owner changes every fixed element at once", gateway.TaskOwner,
			[]string{"for", "focus", "requester", "owner", "intent", "code", "authoredOn"},
			[]string{"Task.for", "Task.focus", "Task.requester", "Task.owner", "Task.intent", "Task.code", "Task.authoredOn"}},
		{"owner changes status and for", gateway.TaskOwner, []string{"status", "for", "note", "owner"},
			[]string{"Task.for", "Task.owner"}},

		{"requester changes nothing", gateway.TaskRequester, nil, nil},
		{"requester changes status", gateway.TaskRequester, []string{"status"}, nil},
		{"requester changes statusReason", gateway.TaskRequester, []string{"statusReason"}, nil},
		{"requester changes status and statusReason", gateway.TaskRequester, []string{"status", "statusReason"}, nil},
		{"requester changes note", gateway.TaskRequester, []string{"note"}, []string{"Task.note"}},
		{"requester changes output", gateway.TaskRequester, []string{"output"}, []string{"Task.output"}},
		{"requester changes businessStatus", gateway.TaskRequester, []string{"businessStatus"}, []string{"Task.businessStatus"}},
		{"requester changes extension", gateway.TaskRequester, []string{"extension"}, []string{"Task.extension"}},
		{"requester changes owner", gateway.TaskRequester, []string{"owner"}, []string{"Task.owner"}},
		{"requester cancels and adds a note", gateway.TaskRequester, []string{"status", "statusReason", "note", "output"},
			[]string{"Task.note", "Task.output"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := gateway.CheckTaskChange(tc.role, tc.changed)
			if len(tc.refused) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			assertRefusal(t, err, gateway.CodeForbidden, tc.refused...)
		})
	}
}

// business is a businessStatus coded from the gateway's system.
func business(code string) []gateway.Coding {
	return []gateway.Coding{{System: gateway.SystemBusinessStatus, Code: code}}
}

// outcome is a SNOMED CT outcome code.
func outcome(code string) gateway.Coding {
	return gateway.Coding{System: gateway.SystemSNOMED, Code: code}
}

func TestImpliedOutcomes(t *testing.T) {
	const (
		seen     = "1362931000000106" // Seen by social prescribing link worker
		declined = "871711000000103"  // Social prescribing declined
		closed   = "1362721000000106" // Social prescribing case closed
	)
	cases := []struct {
		name          string
		before, after gateway.TaskState
		want          []gateway.Coding
	}{
		{"first contact made from no businessStatus",
			gateway.TaskState{Status: "accepted"},
			gateway.TaskState{Status: "in-progress", BusinessStatus: business("first-contact-made")},
			[]gateway.Coding{outcome(seen)}},
		{"first contact made after an attempt",
			gateway.TaskState{Status: "in-progress", BusinessStatus: business("contact-attempted")},
			gateway.TaskState{Status: "in-progress", BusinessStatus: business("first-contact-made")},
			[]gateway.Coding{outcome(seen)}},
		{"first contact made already",
			gateway.TaskState{Status: "in-progress", BusinessStatus: business("first-contact-made")},
			gateway.TaskState{Status: "in-progress", BusinessStatus: business("first-contact-made")},
			nil},
		{"first contact made with the outcome already in output",
			gateway.TaskState{Status: "in-progress", BusinessStatus: business("contact-attempted")},
			gateway.TaskState{Status: "in-progress", BusinessStatus: business("first-contact-made"), Outcomes: []gateway.Coding{outcome(seen)}},
			nil},
		{"first contact made with the same code from another system in output",
			gateway.TaskState{Status: "in-progress"},
			gateway.TaskState{Status: "in-progress", BusinessStatus: business("first-contact-made"),
				Outcomes: []gateway.Coding{{System: gateway.SystemBusinessStatus, Code: seen}}},
			[]gateway.Coding{outcome(seen)}},
		{"first-contact-made from another system",
			gateway.TaskState{Status: "in-progress"},
			gateway.TaskState{Status: "in-progress", BusinessStatus: []gateway.Coding{{System: gateway.SystemStatusReason, Code: "first-contact-made"}}},
			nil},
		{"businessStatus moves on past first contact",
			gateway.TaskState{Status: "in-progress", BusinessStatus: business("first-contact-made")},
			gateway.TaskState{Status: "in-progress", BusinessStatus: business("baseline-prom-complete")},
			nil},

		{"rejected as the patient declined",
			gateway.TaskState{Status: "requested"},
			gateway.TaskState{Status: "rejected", StatusReason: statusReason("patient-declined", "")},
			[]gateway.Coding{outcome(declined)}},
		{"failed as the patient declined after acceptance",
			gateway.TaskState{Status: "in-progress"},
			gateway.TaskState{Status: "failed", StatusReason: statusReason("patient-declined", "")},
			[]gateway.Coding{outcome(declined)}},
		{"cancelled by the practice as the patient declined",
			gateway.TaskState{Status: "accepted"},
			gateway.TaskState{Status: "cancelled", StatusReason: statusReason("patient-declined", "Rang the surgery")},
			[]gateway.Coding{outcome(declined)}},
		{"failed for another reason",
			gateway.TaskState{Status: "in-progress"},
			gateway.TaskState{Status: "failed", StatusReason: statusReason("unable-to-contact", "")},
			nil},
		{"on hold as the patient declined for now",
			gateway.TaskState{Status: "in-progress"},
			gateway.TaskState{Status: "on-hold", StatusReason: statusReason("patient-declined", "")},
			nil},
		{"rejected as the patient declined, outcome already in output",
			gateway.TaskState{Status: "received"},
			gateway.TaskState{Status: "rejected", StatusReason: statusReason("patient-declined", ""), Outcomes: []gateway.Coding{outcome(declined)}},
			nil},
		{"rejected for another reason",
			gateway.TaskState{Status: "requested"},
			gateway.TaskState{Status: "rejected", StatusReason: statusReason("no-capacity", "")},
			nil},
		{"rejected without reason",
			gateway.TaskState{Status: "requested"},
			gateway.TaskState{Status: "rejected"},
			nil},
		{"rejected already",
			gateway.TaskState{Status: "rejected", StatusReason: statusReason("patient-declined", "")},
			gateway.TaskState{Status: "rejected", StatusReason: statusReason("patient-declined", "")},
			nil},

		{"completed",
			gateway.TaskState{Status: "in-progress"},
			gateway.TaskState{Status: "completed"},
			[]gateway.Coding{outcome(closed)}},
		{"completed with the outcome already in output",
			gateway.TaskState{Status: "in-progress"},
			gateway.TaskState{Status: "completed", Outcomes: []gateway.Coding{outcome(seen), outcome(closed)}},
			nil},
		{"completed already",
			gateway.TaskState{Status: "completed"},
			gateway.TaskState{Status: "completed"},
			nil},
		{"first contact made and completed at once",
			gateway.TaskState{Status: "in-progress", BusinessStatus: business("contact-attempted")},
			gateway.TaskState{Status: "completed", BusinessStatus: business("first-contact-made")},
			[]gateway.Coding{outcome(seen), outcome(closed)}},

		{"accepted", gateway.TaskState{Status: "requested"}, gateway.TaskState{Status: "accepted"}, nil},
		{"received", gateway.TaskState{Status: "requested"}, gateway.TaskState{Status: "received"}, nil},
		{"started", gateway.TaskState{Status: "accepted"}, gateway.TaskState{Status: "in-progress"}, nil},
		{"put on hold",
			gateway.TaskState{Status: "in-progress"},
			gateway.TaskState{Status: "on-hold", StatusReason: statusReason("unable-to-contact", "")},
			nil},
		{"cancelled",
			gateway.TaskState{Status: "accepted"},
			gateway.TaskState{Status: "cancelled", StatusReason: statusReason("duplicate", "")},
			nil},
		{"failed",
			gateway.TaskState{Status: "in-progress"},
			gateway.TaskState{Status: "failed", StatusReason: statusReason("unable-to-contact", "")},
			nil},
		{"businessStatus case-closed without completing",
			gateway.TaskState{Status: "in-progress", BusinessStatus: business("follow-up-prom-complete")},
			gateway.TaskState{Status: "in-progress", BusinessStatus: business("case-closed")},
			nil},
		{"nothing changes", gateway.TaskState{Status: "in-progress"}, gateway.TaskState{Status: "in-progress"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := gateway.ImpliedOutcomes(tc.before, tc.after)
			if !slices.Equal(got, tc.want) {
				t.Errorf("outcomes %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCheckRequestChange(t *testing.T) {
	cases := []struct {
		name     string
		from, to string
		changed  []string
		want     gateway.Code
		names    string // the element the refusal names
	}{
		{"revoke", "active", "revoked", []string{"status"}, "", ""},
		{"revoke with a reason", "active", "revoked", []string{"status", "extension"}, "", ""},
		{"entered in error", "active", "entered-in-error", []string{"status"}, "", ""},
		{"entered in error with a reason", "active", "entered-in-error", []string{"status", "extension"}, "", ""},

		{"complete", "active", "completed", []string{"status"}, gateway.CodeForbidden, "ServiceRequest.status"},
		{"put on hold", "active", "on-hold", []string{"status"}, gateway.CodeForbidden, "ServiceRequest.status"},
		{"put on hold with a reason", "active", "on-hold", []string{"status", "extension"}, gateway.CodeForbidden, "ServiceRequest.status"},

		{"revoke again", "revoked", "revoked", []string{"extension"}, gateway.CodeConflict, "ServiceRequest.status"},
		{"revoke a completed referral", "completed", "revoked", []string{"status"}, gateway.CodeConflict, "ServiceRequest.status"},
		{"revoke a referral entered in error", "entered-in-error", "revoked", []string{"status"}, gateway.CodeConflict, "ServiceRequest.status"},
		{"revoke a referral on hold", "on-hold", "revoked", []string{"status"}, gateway.CodeConflict, "ServiceRequest.status"},

		{"change note", "active", "active", []string{"note"}, gateway.CodeForbidden, "ServiceRequest.note"},
		{"change subject", "active", "active", []string{"subject"}, gateway.CodeForbidden, "ServiceRequest.subject"},
		{"change performer", "active", "active", []string{"performer"}, gateway.CodeForbidden, "ServiceRequest.performer"},
		{"revoke and change reasonCode", "active", "revoked", []string{"status", "reasonCode"}, gateway.CodeForbidden, "ServiceRequest.reasonCode"},
		{"revoke and change note", "active", "revoked", []string{"status", "extension", "note"}, gateway.CodeForbidden, "ServiceRequest.note"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := gateway.CheckRequestChange(tc.from, tc.to, tc.changed)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			assertRefusal(t, err, tc.want, tc.names)
		})
	}
}
