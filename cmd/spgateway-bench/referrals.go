package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"sync/atomic"
)

// The values of the fixture referral Bundle that each generated referral
// replaces: its referral number (in ServiceRequest.identifier and in
// ifNoneExist), the patient's NHS number, and the practice (its ODS code in
// requester, generalPractitioner and Consent.organization, and in lower
// case in the identifier system).
const (
	fixtureIdentifier = "SP-2026-000123"
	fixtureNHSNumber  = "9434765919"
	fixturePractice   = "A81001"
)

// nhsNumbers hands out distinct valid NHS numbers: ten digits whose last is
// the Modulus 11 check digit of the first nine. Each generator starts at a
// random nine-digit prefix, so runs against the same database make new
// patients rather than new versions of old ones.
type nhsNumbers struct {
	next atomic.Uint64 // the next nine-digit prefix to try
}

func newNHSNumbers() (*nhsNumbers, error) {
	// Prefixes 900000000–989999999, leaving room to count up.
	n, err := rand.Int(rand.Reader, big.NewInt(90_000_000))
	if err != nil {
		return nil, fmt.Errorf("nhs numbers: %w", err)
	}
	g := &nhsNumbers{}
	g.next.Store(900_000_000 + n.Uint64())
	return g, nil
}

// Next returns a number not returned before by this generator.
func (g *nhsNumbers) Next() string {
	for {
		prefix := g.next.Add(1) - 1
		if s, ok := withCheckDigit(prefix); ok {
			return s
		}
	}
}

// withCheckDigit appends the Modulus 11 check digit to a nine-digit prefix.
// It reports false for a prefix whose check digit would be 10: no NHS
// number has it.
func withCheckDigit(prefix uint64) (string, bool) {
	s := fmt.Sprintf("%09d", prefix%1_000_000_000)
	sum := 0
	for i := range 9 {
		sum += int(s[i]-'0') * (10 - i)
	}
	check := (11 - sum%11) % 11
	if check == 10 {
		return "", false
	}
	return s + strconv.Itoa(check), true
}

// referralBuilder makes referral transaction Bundles from the fixture, each
// with a new referral number and a new patient, from any practice.
type referralBuilder struct {
	fixture []byte
	run     string // this run's mark in referral numbers
	seq     atomic.Uint64
	nhs     *nhsNumbers
}

func newReferralBuilder(fixture []byte) (*referralBuilder, error) {
	for _, want := range []string{fixtureIdentifier, fixtureNHSNumber, fixturePractice, strings.ToLower(fixturePractice)} {
		if !bytes.Contains(fixture, []byte(want)) {
			return nil, fmt.Errorf("the referral fixture does not hold %q, which the generator replaces: is it testdata/fixtures/referral-bundle.json?", want)
		}
	}
	if !bytes.Contains(fixture, []byte(`"transaction"`)) {
		return nil, errors.New("the referral fixture is not a transaction Bundle")
	}
	var mark [4]byte
	if _, err := rand.Read(mark[:]); err != nil {
		return nil, err
	}
	nhs, err := newNHSNumbers()
	if err != nil {
		return nil, err
	}
	return &referralBuilder{fixture: fixture, run: hex.EncodeToString(mark[:]), nhs: nhs}, nil
}

// Build returns a new referral Bundle from the practice with ODS code
// practice.
func (b *referralBuilder) Build(practice string) []byte {
	id := fmt.Sprintf("BENCH-%s-%d", b.run, b.seq.Add(1))
	r := strings.NewReplacer(
		fixtureIdentifier, id,
		fixtureNHSNumber, b.nhs.Next(),
		fixturePractice, practice,
		strings.ToLower(fixturePractice), strings.ToLower(practice),
	)
	return []byte(r.Replace(string(b.fixture)))
}
