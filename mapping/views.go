package mapping

import (
	"strings"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/spgateway/spgateway/gateway"
)

// Conversions from the FHIR models to the views the gateway's rules read.

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func identifiers(ids []r4.Identifier) []gateway.Identifier {
	out := make([]gateway.Identifier, 0, len(ids))
	for _, id := range ids {
		out = append(out, gateway.Identifier{System: str(id.System), Value: str(id.Value)})
	}
	return out
}

func codings(cc ...*r4.CodeableConcept) []gateway.Coding {
	var out []gateway.Coding
	for _, c := range cc {
		if c == nil {
			continue
		}
		for _, cd := range c.Coding {
			out = append(out, gateway.Coding{System: str(cd.System), Code: str(cd.Code)})
		}
	}
	return out
}

// orgRef resolves a reference to an organisation by its literal reference
// (Organization/{code}) or its ODS identifier. When both are given they must
// agree.
func orgRef(ref *r4.Reference) gateway.OrgRef {
	if ref == nil {
		return gateway.OrgRef{}
	}
	byRef, byID := "", ""
	if r := str(ref.Reference); r != "" {
		if code, ok := strings.CutPrefix(r, "Organization/"); ok && code != "" && !strings.Contains(code, "/") {
			byRef = code
		} else {
			return gateway.OrgRef{Present: true}
		}
	}
	if id := ref.Identifier; id != nil && str(id.System) == gateway.SystemODS {
		byID = str(id.Value)
	}
	switch {
	case byRef != "" && byID != "" && byRef != byID:
		return gateway.OrgRef{Present: true}
	case byRef != "":
		return gateway.OrgRef{Present: true, Code: byRef}
	}
	return gateway.OrgRef{Present: true, Code: byID}
}

func patientView(p *r4.Patient, at []string) *gateway.PatientView {
	v := &gateway.PatientView{At: at, BirthDate: str(p.BirthDate)}
	for _, id := range p.Identifier {
		if str(id.System) == gateway.SystemNHSNumber {
			v.NHSNumbers = append(v.NHSNumbers, str(id.Value))
		}
	}
	for _, n := range p.Name {
		if str(n.Family) != "" || str(n.Text) != "" || len(n.Given) > 0 {
			v.HasName = true
		}
	}
	for _, t := range p.Telecom {
		cp := gateway.ContactPoint{Value: str(t.Value)}
		if t.System != nil {
			cp.System = t.System.Code()
		}
		v.Telecom = append(v.Telecom, cp)
	}
	v.Postcode = homePostcode(p.Address)
	return v
}

// homePostcode is the postcode of the home address, else of the first
// address that has one.
func homePostcode(addrs []r4.Address) string {
	first := ""
	for _, a := range addrs {
		pc := str(a.PostalCode)
		if pc == "" {
			continue
		}
		if a.Use != nil && a.Use.Code() == "home" {
			return pc
		}
		if first == "" {
			first = pc
		}
	}
	return first
}

// nhsNumberOf returns the NHS number a logical reference names, if it does.
func nhsNumberOf(ref r4.Reference) (string, bool) {
	if id := ref.Identifier; id != nil && str(id.System) == gateway.SystemNHSNumber && str(id.Value) != "" {
		return str(id.Value), true
	}
	return "", false
}
