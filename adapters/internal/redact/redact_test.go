package redact

import (
	"slices"
	"strings"
	"testing"
)

func TestValuesLeavesKeysOut(t *testing.T) {
	payload := []byte(`{"nhs_number":"9434765919","name":{"family":"Smith","given":["Jane","Ann"]},"age":54,` +
		`"flags":[{"code":"urgent"},true,null],"empty":{},"list":[],"last":"end"}`)
	got := values(payload)
	want := []string{"9434765919", "Smith", "Jane", "Ann", "54", "urgent", "end"}
	if !slices.Equal(got, want) {
		t.Errorf("values = %q, want %q", got, want)
	}
}

func TestExcerpt(t *testing.T) {
	payload := []byte(`{"nhs_number":"9434765919","family":"Smith","status":"new"}`)
	tests := []struct {
		name, answer, want string
	}{
		{name: "quoted: a plain answer", answer: "invalid signature", want: "invalid signature"},
		{name: "quoted: a key's name", answer: "missing family", want: "missing family"},
		{name: "quoted: a short number", answer: "error 42 at line 12345", want: "error 42 at line 12345"},
		{name: "quoted: control characters as spaces", answer: "bad\r\n\tgateway\x00", want: "bad gateway"},
		{name: "withheld: a value", answer: "who is SMITH?", want: ""},
		{name: "withheld: an NHS number", answer: "nhs 9434765919", want: ""},
		{name: "withheld: an NHS number spaced", answer: "nhs 943 476 5919", want: ""},
		{name: "withheld: a date", answer: "born 1970-01-01", want: ""},
		{name: "withheld: nothing", answer: " \n ", want: ""},
		{name: "quoted: five digits", answer: "ref 12345", want: "ref 12345"},
		{name: "withheld: six digits", answer: "ref 123456", want: ""},
		{name: "withheld: a value cut by the excerpt", answer: strings.Repeat("x ", 58) + "bad: Smith", want: ""},
		{name: "withheld: an NHS number cut by the excerpt", answer: strings.Repeat("x ", 58) + "nhs 9434765919", want: ""},
		{name: "cut: a long answer", answer: strings.Repeat("ab ", 100), want: strings.Repeat("ab ", 39) + "ab…"},
		{name: "cut: not inside a character", answer: "x" + strings.Repeat("é", 100), want: "x" + strings.Repeat("é", MaxExcerpt/2-1) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Excerpt([]byte(tt.answer), payload); got != tt.want {
				t.Errorf("Excerpt(%q) = %q, want %q", tt.answer, got, tt.want)
			}
		})
	}
}
