package fhir_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spgateway/spgateway/adapters/resthook"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// The attack suite, part four: hostile parameters and headers.

// TestAttackSearchValues: search values the store cannot bind as text —
// NUL, bytes that are not UTF-8 — in the URL or a _search form, on every
// kind of search (resources and the audit trail), are refused with 400,
// never passed on to fail in the database.
func TestAttackSearchValues(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		for _, c := range []struct{ key, typ, param string }{
			{keyPRV01, "Task", "status"},
			{keyPRV01, "Task", "patient.identifier"},
			{keyA81001, "ServiceRequest", "identifier"},
			{keyA81001, "Patient", "_id"},
			{keyAdmin, "AuditEvent", "agent"},
			{keyAdmin, "AuditEvent", "entity"},
		} {
			for _, v := range []string{"%00", "a%00b", "%FF", "%C0%AF", "https://fhir.nhs.uk/Id/nhs-number|%00"} {
				q := c.param + "=" + v
				for _, r := range []response{
					g.get("/fhir/"+c.typ+"?"+q, c.key),
					g.do("POST", "/fhir/"+c.typ+"/_search", c.key, []byte(q), "Content-Type", "application/x-www-form-urlencoded"),
				} {
					if r.status != http.StatusBadRequest || len(outcomeIssues(t, r)) == 0 {
						t.Errorf("%s?%s: %d %s", c.typ, q, r.status, r.body)
					}
				}
			}
		}
	})
}

// rawExchange sends a request as bytes, as no Go client would (CR, LF and
// other control characters in header values and paths), and returns the
// response's status line and header block as sent, and the response.
func (g *testGateway) rawExchange(t *testing.T, request string) (head string, r response) {
	t.Helper()
	conn, err := net.Dial("tcp", g.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	var raw bytes.Buffer
	res, err := http.ReadResponse(bufio.NewReader(io.TeeReader(conn, &raw)), nil)
	if err != nil {
		t.Fatalf("%q: %v", request, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	head, _, _ = strings.Cut(raw.String(), "\r\n\r\n")
	return head, response{status: res.StatusCode, header: res.Header, body: body}
}

// injected fails when a response's header block holds what an attacker
// tried to add, or a control character.
func injected(t *testing.T, what, head string) {
	t.Helper()
	if strings.Contains(strings.ToLower(head), "injected") {
		t.Errorf("%s: the response carries the injected text:\n%s", what, head)
	}
	for _, line := range strings.Split(head, "\r\n") {
		if strings.ContainsFunc(line, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
			t.Errorf("%s: a control character in the response header %q", what, line)
		}
	}
}

// TestAttackHeaderInjection: CR, LF and other control characters sent in
// X-Request-Id, in ids the gateway echoes into Location, ETag,
// Content-Location and Allow, in Prefer, If-Match and If-None-Exist, and in
// search parameters echoed into Bundle links, never reach a response
// header; X-Request-Id is echoed only when it is a plain token; searches
// echo parameters URL-encoded.
func TestAttackHeaderInjection(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		ref := newReferral(t, g, "ATK-HDR-1")
		_, v := g.read(t, "/fhir/Task/"+ref.task, keyPRV01)
		sr := fixture(t, "service-request-contained-patient.json")
		req := func(method, target string, headers []string, body []byte) string {
			var b strings.Builder
			b.WriteString(method + " " + target + " HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n")
			for i := 0; i+1 < len(headers); i += 2 {
				b.WriteString(headers[i] + ": " + headers[i+1] + "\r\n")
			}
			if body != nil {
				b.WriteString("Content-Type: application/fhir+json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n")
			}
			b.WriteString("\r\n")
			b.Write(body)
			return b.String()
		}
		bad := []string{"a\x01b", "a\x7fb", "a\x0bb", "a\x1bb", "a\x00b", "a\rInjected: 1", "a\nInjected: 1", "a\r\n Injected: 1",
			"%0d%0aInjected:%201", "a\u0085Injected", strings.Repeat("r", 65)}
		requestID := regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
		auth := "Bearer " + keyA81001
		for _, value := range bad {
			// X-Request-Id: a fresh id is given instead.
			head, r := g.rawExchange(t, req("GET", "/fhir/metadata", []string{"X-Request-Id", value}, nil))
			injected(t, fmt.Sprintf("X-Request-Id %q", value), head)
			if id := r.header.Get("X-Request-Id"); r.status < 400 && (id == value || !requestID.MatchString(id)) {
				t.Errorf("X-Request-Id %q answered with %q", value, id)
			}
			// Prefer, If-Match and If-None-Exist on a create and an update.
			for _, hdr := range []string{"Prefer", "If-None-Exist"} {
				head, r := g.rawExchange(t, req("POST", "/fhir/ServiceRequest", []string{"Authorization", auth, hdr, value}, sr))
				injected(t, fmt.Sprintf("%s %q", hdr, value), head)
				if r.status >= 500 {
					t.Errorf("%s %q: %d %s", hdr, value, r.status, r.body)
				}
			}
			task, _ := json.Marshal(map[string]any{"resourceType": "Task", "id": ref.task})
			head, r = g.rawExchange(t, req("PUT", "/fhir/Task/"+ref.task, []string{"Authorization", "Bearer " + keyPRV01, "If-Match", `W/"` + strconv.Itoa(v) + value + `"`}, task))
			injected(t, fmt.Sprintf("If-Match %q", value), head)
			if r.status != http.StatusBadRequest && r.status != http.StatusPreconditionFailed {
				t.Errorf("If-Match %q: %d %s", value, r.status, r.body)
			}
		}
		// Ids and types in the path, which the gateway echoes into
		// Location, ETag, Content-Location and Allow.
		for _, id := range []string{"a%0d%0aInjected:%201", "a%0aInjected:%201", "a%01b", "a%7fb", "a%00b", "..%2f..%2fTask"} {
			for _, rq := range [][2]string{
				{"GET", "/fhir/Task/" + id}, {"GET", "/fhir/Task/" + id + "/_history/1"}, {"PUT", "/fhir/Task/" + id},
				{"POST", "/fhir/Task/" + id}, {"DELETE", "/fhir/Subscription/" + id}, {"GET", "/fhir/" + id + "/x"},
				{"PUT", "/fhir/" + id + "/x"}, {"GET", "/api/v1/cases/" + id},
			} {
				var body []byte
				if rq[0] != "GET" && rq[0] != "DELETE" {
					body = []byte(`{"resourceType":"Task"}`)
				}
				head, r := g.rawExchange(t, req(rq[0], rq[1], []string{"Authorization", "Bearer " + keyPRV01, "If-Match", `W/"1"`}, body))
				injected(t, rq[0]+" "+rq[1], head)
				if r.status < 400 || r.status >= 500 {
					t.Errorf("%s %s: %d %s", rq[0], rq[1], r.status, r.body)
				}
			}
		}
		// Search parameters come back in the Bundle's links URL-encoded:
		// no control character survives decoding the JSON.
		for _, q := range []string{"_count=1&status=a%0d%0aInjected:%201", "status%0d%0aInjected=1", "_count=1&_format=json%0d%0a", "status=a%09b"} {
			r := g.get("/fhir/Task?"+q, keyPRV01)
			injected(t, "search "+q, headerBlock(r.header))
			if r.status != http.StatusOK {
				continue
			}
			for _, rel := range []string{"self", "next"} {
				if l := link(t, r, rel); strings.ContainsFunc(l, func(r rune) bool { return r < ' ' || r == 0x7f }) {
					t.Errorf("search %s: %s link %q", q, rel, l)
				}
			}
		}
		// The refusals are in the audit trail: ids that are not text a
		// database keeps do not hold up the trail.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.audit.Flush(ctx); err != nil {
			t.Fatalf("the audit trail is not written: %v", err)
		}
		found := false
		for _, e := range g.trail(t) {
			found = found || slices.Contains(e.Entities, "Task/a\uFFFDb")
		}
		if !found {
			t.Error("no audit event names Task/a\uFFFDb, for the refused update of Task/a%00b")
		}
	})
}

// headerBlock writes a parsed header back out, for injected.
func headerBlock(h http.Header) string {
	var b strings.Builder
	_ = h.Write(&b)
	return strings.TrimSuffix(b.String(), "\r\n")
}

// TestAttackChannelHeaders: a Subscription whose channel header would add
// a line or a control character to the gateway's outbound requests is
// refused (422 naming Subscription.channel.header); and what a rest-hook
// receiver gets from a Subscription with ordinary headers is exactly
// those headers and the gateway's own — nothing injected.
func TestAttackChannelHeaders(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		g := newGateway(t, engine)
		for _, h := range []string{"X-Key: a\r\nInjected: 1", "X-Key: a\nInjected: 1", "X-Key: a\rInjected: 1", "X-Key: a\x00b",
			"X-Key: a\x01b", "X-Key: a\x0bb", "X-Key: a\x0cb", "X-Key: a\x1bb", "X-Key: a\x7fb", "X-Key\r\nInjected: 1", "X\x01Key: a",
			"Injected: 1\r\n\r\nGET / HTTP/1.1"} {
			r := g.post("/fhir/Subscription", keyA81001, scSubscription(t, func(s map[string]any) { scChannel(s)["header"] = []any{"X-Practice: A81001", h} }))
			scRefused(t, fmt.Sprintf("channel header %q", h), r, http.StatusUnprocessableEntity, "Subscription.channel.header")
			if strings.Contains(string(r.body), "a\\u0001b") || strings.Contains(strings.ToLower(string(r.body)), "injected") {
				t.Errorf("channel header %q: the refusal quotes the value: %s", h, r.body)
			}
		}

		hooks := e2eNewReceiver(t, false, e2eOK)
		cases := e2eNewReceiver(t, true, e2eOK)
		e2e := e2eStart(t, storetest.Config(t, engine), e2eOptions{webhookURL: cases.URL})
		e2eSubscribe(t, e2e, hooks.URL+"/fhir", "application/fhir+json", "X-Practice: A81001", "Authorization: Bearer hook\ttoken")
		ref := newReferral(t, e2e.testGateway, "ATK-HOOK-1")
		e2e.mustChange(t, ref.task, keyPRV01, setStatus("accepted"))
		e2eWait(t, "the rest-hook delivery", func() bool { return hooks.count() > 0 })
		allowed := map[string]bool{"Content-Type": true, "Content-Length": true, "X-Practice": true, "Authorization": true,
			"User-Agent": true, "Accept-Encoding": true, resthook.HeaderDelivery: true, resthook.HeaderTaskVersion: true}
		for _, rc := range hooks.got() {
			for name, vs := range rc.header {
				if !allowed[name] || len(vs) != 1 {
					t.Errorf("the receiver got %s: %q", name, vs)
				}
			}
			if rc.header.Get("X-Practice") != "A81001" || rc.header.Get("Authorization") != "Bearer hook\ttoken" {
				t.Errorf("channel headers arrived as %v", rc.header)
			}
		}
	})
}
