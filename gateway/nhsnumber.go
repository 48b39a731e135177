package gateway

import "errors"

// ErrNHSNumberFormat and ErrNHSNumberCheckDigit say why an NHS number is invalid.
var (
	ErrNHSNumberFormat     = errors.New("an NHS number is 10 digits")
	ErrNHSNumberCheckDigit = errors.New("the NHS number fails the Modulus 11 check")
)

// CheckNHSNumber validates an NHS number: 10 digits whose last is the
// Modulus 11 check digit of the first nine (weights 10 down to 2; 11 counts
// as 0; 10 is never valid). relaxed accepts a last digit that does not match
// the check, for test environments fed with published examples that fail it;
// it is never the default.
func CheckNHSNumber(s string, relaxed bool) error {
	if len(s) != 10 {
		return ErrNHSNumberFormat
	}
	sum := 0
	for i := range 10 {
		c := s[i]
		if c < '0' || c > '9' {
			return ErrNHSNumberFormat
		}
		if i < 9 {
			sum += int(c-'0') * (10 - i)
		}
	}
	check := 11 - sum%11
	if check == 11 {
		check = 0
	}
	// A check of 10 means no such number is ever issued, so relaxed only
	// forgives a last digit that does not match.
	if check == 10 || (!relaxed && check != int(s[9]-'0')) {
		return ErrNHSNumberCheckDigit
	}
	return nil
}
