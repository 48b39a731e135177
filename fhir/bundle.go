package fhir

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/spgateway/spgateway/gateway"
)

// searchset writes a searchset Bundle. Stored resources are written as they
// are (already compact FHIR JSON), so a page costs one copy of each body,
// not a parse and a marshal.
func (s *Server) searchset(self, next string, total int, matches, included []gateway.Resource) []byte {
	size := 256
	for _, r := range matches {
		size += len(r.Body) + 128
	}
	for _, r := range included {
		size += len(r.Body) + 128
	}
	var b bytes.Buffer
	b.Grow(size)
	b.WriteString(`{"resourceType":"Bundle","type":"searchset"`)
	if total >= 0 {
		b.WriteString(`,"total":`)
		b.WriteString(strconv.Itoa(total))
	}
	b.WriteString(`,"link":[{"relation":"self","url":`)
	writeString(&b, self)
	b.WriteByte('}')
	if next != "" {
		b.WriteString(`,{"relation":"next","url":`)
		writeString(&b, next)
		b.WriteByte('}')
	}
	b.WriteByte(']')
	if len(matches)+len(included) > 0 {
		b.WriteString(`,"entry":[`)
		first := true
		entry := func(r gateway.Resource, mode string) {
			if !first {
				b.WriteByte(',')
			}
			first = false
			b.WriteString(`{"fullUrl":`)
			writeString(&b, s.base+"/"+r.Type+"/"+r.ID)
			b.WriteString(`,"resource":`)
			b.Write(r.Body)
			b.WriteString(`,"search":{"mode":"`)
			b.WriteString(mode)
			b.WriteString(`"}}`)
		}
		for _, r := range matches {
			entry(r, "match")
		}
		for _, r := range included {
			entry(r, "include")
		}
		b.WriteByte(']')
	}
	b.WriteByte('}')
	return b.Bytes()
}

// writeString writes s as a JSON string, without escaping & < > (links
// carry query strings; the body is JSON, never HTML).
func writeString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)       // a string always encodes
	b.Truncate(b.Len() - 1) // Encode ends with a newline
}

type bundleJSON struct {
	ResourceType string            `json:"resourceType"`
	Type         string            `json:"type"`
	Entry        []bundleEntryJSON `json:"entry,omitempty"`
}

type bundleEntryJSON struct {
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource,omitempty"`
	Response *responseJSON   `json:"response,omitempty"`
}

type responseJSON struct {
	Status       string          `json:"status"`
	Location     string          `json:"location,omitempty"`
	Etag         string          `json:"etag,omitempty"`
	LastModified string          `json:"lastModified,omitempty"`
	Outcome      json.RawMessage `json:"outcome,omitempty"`
}

// transactionResponse answers a referral Bundle with one entry per request
// entry, in order: 201 for what it created, 200 for what it found (a
// repeated referral, a patient the practice had referred before).
func (s *Server) transactionResponse(res *gateway.ReferralResult, ret string) []byte {
	out := bundleJSON{ResourceType: gateway.TypeBundle, Type: "transaction-response"}
	for _, e := range res.Entries {
		if e.Resource == nil {
			out.Entry = append(out.Entry, bundleEntryJSON{Response: &responseJSON{
				Status:  "200 OK",
				Outcome: information("this referral was received before; this entry has no counterpart in it and was not stored"),
			}})
			continue
		}
		r := e.Resource
		status, msg := "200 OK", "found: the referral or patient was received before"
		if e.Created {
			status, msg = "201 Created", "created"
		}
		entry := bundleEntryJSON{
			FullURL: s.base + "/" + r.Type + "/" + r.ID,
			Response: &responseJSON{
				Status:       status,
				Location:     r.Type + "/" + r.ID + "/_history/" + strconv.Itoa(r.Version),
				Etag:         etag(r.Version),
				LastModified: gateway.FormatInstant(r.LastUpdated),
			},
		}
		switch ret {
		case returnRepresentation:
			entry.Resource = r.Body
		case returnOutcome:
			entry.Response.Outcome = information(msg)
		}
		out.Entry = append(out.Entry, entry)
	}
	body, _ := json.Marshal(out) // stored bodies are valid JSON
	return body
}

func etag(version int) string { return `W/"` + strconv.Itoa(version) + `"` }

func lastModified(r gateway.Resource) string { return r.LastUpdated.UTC().Format(http.TimeFormat) }
