package gateway

import (
	"errors"
	"fmt"
	"strings"
)

// Code classifies an Error. The FHIR edge maps each code to one HTTP status and
// OperationOutcome issue type, in one table, so the domain never speaks HTTP.
type Code string

// The error codes. Methods document which of them they return.
const (
	CodeInvalid              Code = "invalid"               // the request cannot be parsed (400)
	CodeUnprocessable        Code = "unprocessable"         // well-formed, but breaks a rule (422)
	CodeUnauthorized         Code = "unauthorized"          // no valid credentials (401)
	CodeForbidden            Code = "forbidden"             // authenticated, but not allowed (403)
	CodeNotFound             Code = "not_found"             // unknown, or not the caller's (404)
	CodeGone                 Code = "gone"                  // deleted (410)
	CodeMethodNotAllowed     Code = "method_not_allowed"    // interaction not offered on this resource (405)
	CodeConflict             Code = "conflict"              // version or state conflict (409)
	CodePreconditionFailed   Code = "precondition_failed"   // If-Match did not match (412)
	CodeTooLarge             Code = "too_large"             // body over the limit (413)
	CodeUnsupportedMedia     Code = "unsupported_media"     // not FHIR JSON (415)
	CodePreconditionRequired Code = "precondition_required" // If-Match missing where required (428)
	CodeRateLimited          Code = "rate_limited"          // too many requests (429)
	CodeUnavailable          Code = "unavailable"           // dependency down (503)
	CodeInternal             Code = "internal"              // a bug or an outage: details are logged, never returned (500)
)

// IssueType is the FHIR OperationOutcome issue type of one problem
// (http://hl7.org/fhir/issue-type). Empty means "derive from the error code".
type IssueType string

// The issue types the gateway reports.
const (
	IssueStructure    IssueType = "structure"
	IssueRequired     IssueType = "required"
	IssueValue        IssueType = "value"
	IssueInvariant    IssueType = "invariant"
	IssueCodeInvalid  IssueType = "code-invalid"
	IssueBusinessRule IssueType = "business-rule"
	IssueNotSupported IssueType = "not-supported"
	IssueTooLong      IssueType = "too-long"
	IssueDuplicate    IssueType = "duplicate"
)

// Issue is one problem with a request, located by FHIRPath expressions
// (e.g. "ServiceRequest.subject").
type Issue struct {
	Type       IssueType
	Expression []string
	Message    string
}

// Error is the one error type of the gateway. Issues are safe to show to the
// caller; Err is the underlying cause, logged but never shown.
type Error struct {
	Code   Code
	Issues []Issue
	Err    error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(string(e.Code))
	for _, is := range e.Issues {
		b.WriteString(": ")
		if len(is.Expression) > 0 {
			b.WriteString(is.Expression[0])
			b.WriteString(": ")
		}
		b.WriteString(is.Message)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an Error with one issue that names no element.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Issues: []Issue{{Message: fmt.Sprintf(format, args...)}}}
}

// Problem returns an Error with one issue about the element at expr.
func Problem(code Code, typ IssueType, expr, format string, args ...any) *Error {
	return &Error{Code: code, Issues: []Issue{{Type: typ, Expression: []string{expr}, Message: fmt.Sprintf(format, args...)}}}
}

// Internal wraps an unexpected failure of the named operation.
func Internal(op string, err error) *Error {
	return &Error{Code: CodeInternal, Issues: []Issue{{Message: "internal error"}}, Err: fmt.Errorf("%s: %w", op, err)}
}

// ErrorCode returns the code of err, CodeInternal when err is not an *Error,
// and "" for nil.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// Unprocessable collects rule violations into one 422 error; it returns nil
// when there are none.
func Unprocessable(issues []Issue) error {
	if len(issues) == 0 {
		return nil
	}
	return &Error{Code: CodeUnprocessable, Issues: issues}
}

// issue is shorthand for a located Issue.
func issue(typ IssueType, expr, format string, args ...any) Issue {
	return Issue{Type: typ, Expression: []string{expr}, Message: fmt.Sprintf(format, args...)}
}
