package fhir_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/spgateway/spgateway/gateway/oauth"
	"github.com/spgateway/spgateway/gateway/store/storetest"
)

// The attack suite, part three: hostile bodies at every route that takes
// one. edge_test.go holds the transaction endpoint to the basic limits;
// here every body route gets every kind of hostile body.

// The kinds of body a route reads.
const (
	bodyJSON  = "json"  // a FHIR resource or a JSON object
	bodyPatch = "patch" // a JSON Patch: an array
	bodyForm  = "form"  // form parameters (_search)
	bodyToken = "token" // the token endpoint's form (RFC 6749 errors)
	bodyNone  = "none"  // a body the route does not read
)

// bodyTarget is a route that takes a body, as a client of the role that
// may use it sends there.
type bodyTarget struct {
	route, method, path, key, kind string
	typ                            string // the resourceType it takes
	headers                        []string
	valid                          []byte // a body the route takes, for the duplicate-member attack
}

// duplicated is a JSON document with the first member of its first object
// written twice, the second time with another value: FHIR JSON forbids
// it, and parsers differ on which one wins.
func duplicated(t *testing.T, doc []byte) []byte {
	t.Helper()
	start := bytes.IndexByte(doc, '{')
	dec := json.NewDecoder(bytes.NewReader(doc[start:]))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	key, err := dec.Token()
	if err != nil {
		t.Fatal(err)
	}
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	k, _ := json.Marshal(key)
	other := `"` + strings.Repeat("z", 8) + `"`
	if bytes.Equal(v, []byte(other)) {
		other = `"y"`
	}
	return slices.Concat(doc[:start+1], k, []byte(":"), []byte(other), []byte(","), doc[start+1:])
}

// hostileBody is one attack: the body, whether to hide its length
// (chunked), and the statuses that are right for it.
type hostileBody struct {
	name    string
	body    []byte
	chunked bool
	want    []int
}

// atkLimit and atkDepth are the limits of the gateway under attack.
const (
	atkLimit = 64 << 10
	atkDepth = 16
)

// hostileBodies are the attacks on a route of kind: everything is refused
// with a 4xx that says what is wrong.
func hostileBodies(kind, resourceType string) []hostileBody {
	bad := []int{http.StatusBadRequest, http.StatusUnprocessableEntity}
	tooBig := []int{http.StatusRequestEntityTooLarge}
	pad := func(n int) string { return strings.Repeat("x", n) }
	huge := []byte(`{"resourceType":"` + resourceType + `","x":"` + pad(atkLimit+1) + `"}`)
	out := []hostileBody{
		{"oversized", huge, false, tooBig},
		{"oversized, chunked", huge, true, tooBig},
	}
	switch kind {
	case bodyNone:
		// Unread, a body without a length cannot be known to be too big.
		out[1].want = append(out[1].want, http.StatusNotFound)
		return out
	case bodyForm:
		return append(out,
			hostileBody{"bad escape", []byte("status=%zz"), false, bad},
			hostileBody{"invalid UTF-8", []byte("status=\xff\xfe"), false, bad},
			hostileBody{"NUL", []byte("status=%00"), false, bad},
			// A well-formed search for a status no Task has finds none.
			hostileBody{"huge value", []byte("status=" + pad(atkLimit-100)), false, append(bad, http.StatusOK)},
		)
	case bodyToken:
		return append(out,
			hostileBody{"empty", nil, false, bad},
			hostileBody{"JSON", []byte(`{"grant_type":"client_credentials"}`), false, bad},
			hostileBody{"JSON null", []byte("null"), false, bad},
			hostileBody{"bad escape", []byte("grant_type=%zz"), false, bad},
			hostileBody{"invalid UTF-8", []byte("grant_type=client_credentials&client_assertion_type=\xff&client_assertion=\xfe"), false,
				[]int{http.StatusBadRequest, http.StatusUnauthorized}},
			hostileBody{"huge assertion", []byte("grant_type=client_credentials&client_assertion_type=" + oauth.AssertionType +
				"&client_assertion=" + pad(15<<10)), false, []int{http.StatusBadRequest, http.StatusUnauthorized}},
		)
	}
	object := func(s string) []byte { return []byte(`{"resourceType":"` + resourceType + `",` + s + `}`) }
	out = append(out,
		hostileBody{"deep arrays", []byte(`{"resourceType":"` + resourceType + `","x":` + strings.Repeat("[", atkDepth) + strings.Repeat("]", atkDepth) + "}"), false, bad},
		hostileBody{"deep objects", []byte(strings.Repeat(`{"a":`, atkDepth+1) + "1" + strings.Repeat("}", atkDepth+1)), false, bad},
		hostileBody{"deep, unbalanced", []byte(strings.Repeat("[", atkLimit-10)), false, bad},
		hostileBody{"huge number", object(`"x":1` + strings.Repeat("0", atkLimit-200)), false, bad},
		hostileBody{"huge exponent", object(`"x":1e999999999`), false, bad},
		hostileBody{"huge string", object(`"x":"` + pad(atkLimit-200) + `"`), false, bad},
		hostileBody{"huge resourceType", []byte(`{"resourceType":"` + pad(atkLimit-100) + `"}`), false, bad},
		hostileBody{"invalid UTF-8", object("\"x\":\"\xff\xfe\""), false, bad},
		hostileBody{"overlong UTF-8", object("\"x\":\"\xc0\xaf\""), false, bad},
		hostileBody{"UTF-16 surrogate", object("\"x\":\"\xed\xa0\x80\""), false, bad},
		hostileBody{"BOM", append([]byte("\xef\xbb\xbf"), object(`"x":1`)...), false, bad},
		hostileBody{"duplicate resourceType", []byte(`{"resourceType":"Patient","resourceType":"` + resourceType + `"}`), false, bad},
		hostileBody{"duplicate key", object(`"status":"a","status":"b"`), false, bad},
		hostileBody{"not JSON", []byte("resourceType=" + resourceType), false, bad},
		hostileBody{"truncated", object(`"x":`)[:20], false, bad},
		hostileBody{"two documents", append(object(`"x":1`), object(`"x":2`)...), false, bad},
		hostileBody{"empty", nil, false, bad},
		hostileBody{"whitespace", []byte(" \n\t "), false, bad},
		hostileBody{"JSON null", []byte("null"), false, bad},
		hostileBody{"a number", []byte("42"), false, bad},
		hostileBody{"a string", []byte(`"` + resourceType + `"`), false, bad},
	)
	if kind == bodyPatch {
		return append(out,
			hostileBody{"an object", object(`"op":"replace"`), false, bad},
			// A guard the client meant as a test: read with the last "op"
			// winning, it is a replace, and the Task moves.
			hostileBody{"duplicate op", []byte(`[{"op":"test","path":"/status","value":"in-progress","op":"replace"}]`), false, bad},
			hostileBody{"duplicate path", []byte(`[{"op":"remove","path":"/focus","path":"/note"}]`), false, bad},
			hostileBody{"ops not objects", []byte(`[1,2,3]`), false, bad},
			hostileBody{"array of null", []byte(`[null]`), false, bad},
		)
	}
	return append(out,
		hostileBody{"an array", []byte(`[` + string(object(`"x":1`)) + `]`), false, bad},
		hostileBody{"empty object", []byte(`{}`), false, bad},
		hostileBody{"no resourceType", []byte(`{"status":"active"}`), false, bad},
		hostileBody{"resourceType not a string", []byte(`{"resourceType":["` + resourceType + `"]}`), false, bad},
		hostileBody{"wrong resourceType", []byte(`{"resourceType":"Patient","status":"active"}`), false, bad},
		hostileBody{"an OperationOutcome", []byte(`{"resourceType":"OperationOutcome","issue":[]}`), false, bad},
	)
}

// sendHostile sends a hostile body to a target, hiding its length when
// asked, with nothing but the target's headers.
func (g *testGateway) sendHostile(tg bodyTarget, hb hostileBody) response {
	g.t.Helper()
	var rd io.Reader = bytes.NewReader(hb.body)
	if hb.chunked {
		rd = struct{ io.Reader }{rd} // no length: sent chunked
	}
	if hb.body == nil {
		rd = nil
	}
	req, err := http.NewRequest(tg.method, g.base+tg.path, rd)
	if err != nil {
		g.t.Fatal(err)
	}
	if tg.key != "" {
		req.Header.Set("Authorization", "Bearer "+tg.key)
	}
	for i := 0; i+1 < len(tg.headers); i += 2 {
		req.Header.Set(tg.headers[i], tg.headers[i+1])
	}
	res, err := g.srv.Client().Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", tg.method, tg.path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		g.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// TestAttackBodies: every route that takes a body, sent every hostile
// body — oversized (with and without Content-Length), nested past the
// depth limit, huge numbers and strings within the size limit, invalid
// UTF-8, duplicate keys, not JSON, empty, null, the wrong JSON type, the
// wrong resourceType — answers the right 4xx with an OperationOutcome that
// has an error issue (an RFC 6749 error at the token endpoint), never a
// 5xx; nothing is written or enqueued.
func TestAttackBodies(t *testing.T) {
	storetest.Each(t, func(t *testing.T, engine string) {
		w := newTokenWorld(t, engine, withLimits(atkLimit, atkDepth, 50, 500))
		fhirJSON := []string{"Content-Type", "application/fhir+json"}
		task := "/fhir/Task/" + w.a.ref.task
		cur, v := w.read(t, task, keyPRV01)
		cur["status"] = "in-progress"
		delete(cur, "meta")
		taskDoc, err := json.Marshal(cur)
		if err != nil {
			t.Fatal(err)
		}
		routes := atkRouteRequests(t, w.a)
		ifMatch := fmt.Sprintf(`W/"%d"`, v) // the current version: only the body is wrong
		targets := []bodyTarget{
			{"POST /fhir", "POST", "/fhir", keyA81001, bodyJSON, "Bundle", fhirJSON, referralBundle(t, "ATK-DUP-1", "")},
			{"POST /fhir/", "POST", "/fhir/", keyA81001, bodyJSON, "Bundle", fhirJSON, referralBundle(t, "ATK-DUP-2", "")},
			{"POST /fhir/:type", "POST", "/fhir/ServiceRequest", keyA81001, bodyJSON, "ServiceRequest", fhirJSON, fixture(t, "service-request-contained-patient.json")},
			{"POST /fhir/:type", "POST", "/fhir/QuestionnaireResponse", keyPRV01, bodyJSON, "QuestionnaireResponse", fhirJSON,
				promResponse(w.a.ref, "swemwbs", scAnsweredAt(), swemwbsAnswers(4, 4, 4, 4, 4, 4, 4))},
			{"POST /fhir/:type", "POST", "/fhir/Subscription", keyA81001, bodyJSON, "Subscription", fhirJSON, scSubscription(t, nil)},
			{"POST /fhir/:type/_search", "POST", "/fhir/Task/_search", keyPRV01, bodyForm, "", []string{"Content-Type", "application/x-www-form-urlencoded"}, nil},
			{"POST /fhir/:type/:id", "POST", "/fhir/Task/$reassign", keyPRV01, bodyJSON, "Parameters", fhirJSON, []byte(routes["POST /fhir/:type/:id"].body)},
			{"PUT /fhir/:type/:id", "PUT", task, keyPRV01, bodyJSON, "Task", append([]string{"If-Match", ifMatch}, fhirJSON...), taskDoc},
			{"PATCH /fhir/:type/:id", "PATCH", task, keyPRV01, bodyPatch, "Task", []string{"If-Match", ifMatch, "Content-Type", "application/json-patch+json"},
				[]byte(`[{"op":"replace","path":"/status","value":"in-progress"}]`)},
			{"POST /api/v1/cases/:id/events", "POST", "/api/v1/cases/" + w.a.ref.task + "/events", keyPRV01, bodyJSON, "", []string{"Content-Type", "application/json"},
				[]byte(`{"event":"CLOSED"}`)},
			{"POST /api/v1/outbox/:id/redrive", "POST", "/api/v1/outbox/0f0e0d0c-0b0a-4909-8807-060504030201/redrive", keyAdmin, bodyNone, "", nil, nil},
			{"POST " + oauth.TokenPath, "POST", oauth.TokenPath, "", bodyToken, "", []string{"Content-Type", "application/x-www-form-urlencoded"}, nil},
		}
		// Every route that takes a body is attacked.
		for _, route := range w.fhir.Routes() {
			method, _, _ := strings.Cut(route, " ")
			if (method == "POST" || method == "PUT" || method == "PATCH") &&
				!slices.ContainsFunc(targets, func(tg bodyTarget) bool { return tg.route == route }) {
				t.Errorf("route %s takes a body and is not attacked", route)
			}
		}
		before := atkSnapshot(t, w.testGateway, w.a, w.b)
		n := 0
		for _, tg := range targets {
			attacks := hostileBodies(tg.kind, tg.typ)
			if tg.valid != nil {
				attacks = append(attacks, hostileBody{"a valid body with a member twice", duplicated(t, tg.valid), false, []int{http.StatusBadRequest}})
			}
			for _, hb := range attacks {
				n++
				what := hb.name + " to " + tg.method + " " + tg.path
				r := w.sendHostile(tg, hb)
				if !slices.Contains(hb.want, r.status) {
					t.Errorf("%s: %d, want one of %v: %.300s", what, r.status, hb.want, r.body)
					continue
				}
				if tg.kind == bodyToken {
					var e struct {
						Error string `json:"error"`
					}
					if err := json.Unmarshal(r.body, &e); err != nil || e.Error == "" {
						t.Errorf("%s: not an RFC 6749 error: %s", what, r.body)
					}
					continue
				}
				if r.status == http.StatusOK {
					if res, _ := entries(t, r); len(res) != 0 {
						t.Errorf("%s: found %d", what, len(res))
					}
					continue
				}
				is := outcomeIssues(t, r)
				if len(is) == 0 || is[0]["severity"] != "error" {
					t.Errorf("%s: issues %v", what, is)
				}
			}
		}
		t.Logf("%d hostile bodies", n)
		before.check(t, "hostile bodies", atkSnapshot(t, w.testGateway, w.a, w.b))
	})
}
