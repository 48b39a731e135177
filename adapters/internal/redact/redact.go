// Package redact keeps patient data out of the errors adapters report:
// errors are logged, listed to operators and kept on Subscriptions, none of
// which may hold what a payload held.
package redact

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxExcerpt is how much of a receiver's answer an error may quote: enough
// for "invalid signature", too little for a document.
const MaxExcerpt = 120

// Excerpt returns the start of a receiver's answer, printable and short,
// for an error message, or "" when it might repeat patient data. Errors are
// logged, listed to operators and kept on Subscriptions, none of which may
// hold what the payload held, and a receiver may echo the request.
func Excerpt(answer, payload []byte) string {
	s := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, string(answer))
	s = strings.Join(strings.Fields(s), " ")
	// The whole answer is checked, not the excerpt: a value cut in two at
	// the end of the excerpt would no longer match a whole word.
	if s == "" || mayEcho(s, payload) {
		return ""
	}
	if len(s) > MaxExcerpt {
		s = strings.TrimSpace(strings.ToValidUTF8(s[:MaxExcerpt], "")) + "…"
	}
	return s
}

// mayEcho reports whether s might quote the payload: it holds a word (three
// letters or digits or more) of one of the payload's values, or a run of six
// digits or more, which could be an NHS number or a date in any format.
func mayEcho(s string, payload []byte) bool {
	if longestDigitRun(s) >= 6 {
		return true
	}
	said := map[string]bool{}
	for _, w := range words(s) {
		said[w] = true
	}
	for _, v := range values(payload) {
		for _, w := range words(v) {
			if said[w] {
				return true
			}
		}
	}
	return false
}

// words splits s into lower-case runs of three letters or digits or more.
func words(s string) []string {
	var out []string
	for _, w := range strings.FieldsFunc(s, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		if utf8.RuneCountInString(w) >= 3 {
			out = append(out, strings.ToLower(w))
		}
	}
	return out
}

// longestDigitRun measures the longest run of digits in s, counting through
// single spaces and hyphens ("943 476 5919", "1970-01-01").
func longestDigitRun(s string) int {
	longest, run := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			run++
			longest = max(longest, run)
		case (c == ' ' || c == '-') && run > 0 && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
		default:
			run = 0
		}
	}
	return longest
}

// values returns the payload's string and number values (not its keys),
// as far as it is JSON.
func values(payload []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	// inObject[i] says whether container i is an object; key[i] whether
	// its next token is a key.
	var inObject, key []bool
	var out []string
	for {
		tok, err := dec.Token()
		if err != nil {
			return out
		}
		isKey := len(inObject) > 0 && inObject[len(inObject)-1] && key[len(key)-1]
		if len(key) > 0 && inObject[len(inObject)-1] {
			if d, ok := tok.(json.Delim); !ok || d == '{' || d == '[' {
				key[len(key)-1] = !key[len(key)-1]
			}
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				inObject, key = append(inObject, v == '{'), append(key, true)
			default:
				inObject, key = inObject[:len(inObject)-1], key[:len(key)-1]
			}
		case string:
			if !isKey {
				out = append(out, v)
			}
		case json.Number:
			out = append(out, v.String())
		}
	}
}
