package gateway_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/spgateway/spgateway/gateway"
)

func TestErrorCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want gateway.Code
	}{
		{name: "nil has no code", err: nil, want: ""},
		{name: "plain error is internal", err: errors.New("disk full"), want: gateway.CodeInternal},
		{name: "wrapped plain error is internal", err: fmt.Errorf("store.Get: %w", errors.New("disk full")), want: gateway.CodeInternal},
		{name: "*Error keeps its code", err: gateway.Errorf(gateway.CodeNotFound, "no such Task"), want: gateway.CodeNotFound},
		{name: "*Error wrapped once keeps its code", err: fmt.Errorf("service.Read: %w", gateway.Errorf(gateway.CodeConflict, "version 2 is not current")), want: gateway.CodeConflict},
		{name: "*Error wrapped twice keeps its code", err: fmt.Errorf("a: %w", fmt.Errorf("b: %w", gateway.Errorf(gateway.CodeForbidden, "not yours"))), want: gateway.CodeForbidden},
		{name: "Problem keeps its code", err: gateway.Problem(gateway.CodeUnprocessable, gateway.IssueRequired, "Task.statusReason", "statusReason is required"), want: gateway.CodeUnprocessable},
		{name: "Internal is internal", err: gateway.Internal("store.Put", errors.New("locked")), want: gateway.CodeInternal},
		{name: "outermost *Error wins", err: &gateway.Error{Code: gateway.CodeUnavailable, Err: gateway.Errorf(gateway.CodeNotFound, "inner")}, want: gateway.CodeUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := gateway.ErrorCode(tt.err); got != tt.want {
				t.Errorf("ErrorCode(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

func TestInternalKeepsCause(t *testing.T) {
	cause := errors.New("connection refused")
	err := gateway.Internal("store.Put", cause)
	if !errors.Is(err, cause) {
		t.Errorf("errors.Is(%v, cause) = false, want true", err)
	}
	if len(err.Issues) != 1 || err.Issues[0].Message != "internal error" {
		t.Errorf("issues = %+v, want one generic \"internal error\" issue that does not show the cause", err.Issues)
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		name string
		err  *gateway.Error
		want string
	}{
		{name: "code only", err: &gateway.Error{Code: gateway.CodeInternal}, want: "internal"},
		{name: "unlocated issue", err: gateway.Errorf(gateway.CodeNotFound, "no Task %s", "t1"), want: "not_found: no Task t1"},
		{name: "first expression names the element", err: &gateway.Error{Code: gateway.CodeUnprocessable, Issues: []gateway.Issue{
			{Type: gateway.IssueRequired, Expression: []string{"ServiceRequest.status", "Bundle.entry[0].resource.status"}, Message: "status is required"},
			{Type: gateway.IssueRequired, Expression: []string{"ServiceRequest.intent"}, Message: "intent is required"},
		}}, want: "unprocessable: ServiceRequest.status: status is required: ServiceRequest.intent: intent is required"},
		{name: "cause last", err: gateway.Internal("store.Put", errors.New("locked")), want: "internal: internal error: store.Put: locked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestUnprocessable(t *testing.T) {
	t.Run("nil issues give a nil error", func(t *testing.T) {
		if err := gateway.Unprocessable(nil); err != nil {
			t.Errorf("Unprocessable(nil) = %#v, want nil", err)
		}
	})
	t.Run("no issues give a nil error", func(t *testing.T) {
		if err := gateway.Unprocessable([]gateway.Issue{}); err != nil {
			t.Errorf("Unprocessable([]) = %#v, want nil", err)
		}
	})
	t.Run("issues give one unprocessable error carrying all of them", func(t *testing.T) {
		issues := []gateway.Issue{
			{Type: gateway.IssueRequired, Expression: []string{"ServiceRequest.status"}, Message: "status is required"},
			{Type: gateway.IssueValue, Expression: []string{"Patient.identifier"}, Message: "bad NHS number"},
		}
		err := gateway.Unprocessable(issues)
		var e *gateway.Error
		if !errors.As(err, &e) {
			t.Fatalf("Unprocessable = %#v, want *gateway.Error", err)
		}
		if e.Code != gateway.CodeUnprocessable {
			t.Errorf("code = %q, want %q", e.Code, gateway.CodeUnprocessable)
		}
		if len(e.Issues) != len(issues) {
			t.Fatalf("issues = %+v, want %+v", e.Issues, issues)
		}
		for i := range issues {
			if e.Issues[i].Message != issues[i].Message || e.Issues[i].Type != issues[i].Type {
				t.Errorf("issue %d = %+v, want %+v", i, e.Issues[i], issues[i])
			}
		}
	})
}
