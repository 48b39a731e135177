package gateway_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/spgateway/spgateway/gateway"
)

func TestCheckNHSNumber(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		relaxed bool
		want    error // nil, ErrNHSNumberFormat or ErrNHSNumberCheckDigit
	}{
		{name: "accepted: 9000000009", in: "9000000009"},
		{name: "accepted: 9434765919", in: "9434765919"},
		{name: "accepted: 6541003238", in: "6541003238"},
		{name: "accepted: 9000000300 (check 11 counts as 0)", in: "9000000300"},
		{name: "accepted relaxed: 9434765919", in: "9434765919", relaxed: true},

		{name: "rejected: 3478526985 check digit", in: "3478526985", want: gateway.ErrNHSNumberCheckDigit},
		{name: "accepted relaxed: 3478526985 check digit", in: "3478526985", relaxed: true},
		{name: "rejected: 9434765918 check digit off by one", in: "9434765918", want: gateway.ErrNHSNumberCheckDigit},
		{name: "rejected: 9000000301 check 11 is 0, not 1", in: "9000000301", want: gateway.ErrNHSNumberCheckDigit},

		{name: "rejected: empty", in: "", want: gateway.ErrNHSNumberFormat},
		{name: "rejected: 9 digits", in: "900000000", want: gateway.ErrNHSNumberFormat},
		{name: "rejected: 11 digits", in: "90000000090", want: gateway.ErrNHSNumberFormat},
		{name: "rejected: spaces 900 000 0009", in: "900 000 0009", want: gateway.ErrNHSNumberFormat},
		{name: "rejected: dashes 900-000-0009", in: "900-000-0009", want: gateway.ErrNHSNumberFormat},
		{name: "rejected: leading space", in: " 900000000", want: gateway.ErrNHSNumberFormat},
		{name: "rejected: trailing space", in: "9000000009 ", want: gateway.ErrNHSNumberFormat},
		{name: "rejected: letter O among digits", in: "90000000O9", want: gateway.ErrNHSNumberFormat},
		{name: "rejected: letter as check digit", in: "900000000X", want: gateway.ErrNHSNumberFormat},
		{name: "rejected: sign", in: "-900000009", want: gateway.ErrNHSNumberFormat},
		{name: "rejected: full-width digit", in: "９00000009", want: gateway.ErrNHSNumberFormat},
		{name: "rejected relaxed: spaces are still a format error", in: "900 000 0009", relaxed: true, want: gateway.ErrNHSNumberFormat},
		{name: "rejected relaxed: 9 digits are still a format error", in: "900000000", relaxed: true, want: gateway.ErrNHSNumberFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := gateway.CheckNHSNumber(tt.in, tt.relaxed)
			assertNHSError(t, err, tt.want)
		})
	}
}

// TestCheckNHSNumberCheckTen covers first nine digits whose Modulus 11 check
// computes to 10: no such number is ever issued, whatever its last digit, so
// it is invalid even when the check digit comparison is relaxed.
func TestCheckNHSNumberCheckTen(t *testing.T) {
	// 9*10 + 5*2 = 100, and 100 mod 11 = 1, so the check is 11 - 1 = 10.
	const firstNine = "900000005"
	for last := range 10 {
		for _, relaxed := range []bool{false, true} {
			in := fmt.Sprintf("%s%d", firstNine, last)
			t.Run(fmt.Sprintf("rejected: %s check 10 (relaxed %v)", in, relaxed), func(t *testing.T) {
				assertNHSError(t, gateway.CheckNHSNumber(in, relaxed), gateway.ErrNHSNumberCheckDigit)
			})
		}
	}
}

func assertNHSError(t *testing.T, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("got %v, want no error", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("got %v, want %v", err, want)
	}
	for _, other := range []error{gateway.ErrNHSNumberFormat, gateway.ErrNHSNumberCheckDigit} {
		if other != want && errors.Is(err, other) {
			t.Fatalf("got %v, which also matches %v", err, other)
		}
	}
}
