// Package adaptertest holds what the adapters' tests share: receivers that
// record and answer, or never answer, and the checks that a receiver which
// never answers costs a delivery no more than its timeout,
// and that a failure is permanent (dead-lettered at once) or retried as
// the outbox worker needs, without patient data or credentials in its text.
package adaptertest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway"
)

// Request is one request as a Receiver saw it.
type Request struct {
	Method, Path, Query string
	Header              http.Header
	Length              int64 // the Content-Length, -1 when unknown
	Body                []byte
}

// Receiver starts a receiver that records each request it is sent (up to
// 10 unread) and answers status with answer. It is closed when the test
// ends.
func Receiver(t testing.TB, status int, answer string) (*httptest.Server, chan Request) {
	t.Helper()
	got := make(chan Request, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Length: r.ContentLength, Body: body}
		w.WriteHeader(status)
		io.WriteString(w, answer)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

// Stalling starts a receiver that reads a request and never answers it: it
// waits until the client gives up (or 5 seconds), so a delivery's timeout
// is what ends the exchange. It is closed when the test ends.
func Stalling(t testing.TB) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // then the server notices the client leave
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// WantTimeout calls deliver, a delivery bounded by timeout to a Stalling
// receiver, and fails the test unless it gave up in good time with an
// error to retry that says it had no answer within the timeout.
func WantTimeout(t testing.TB, timeout time.Duration, deliver func() error) {
	t.Helper()
	start := time.Now()
	err := deliver()
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || Permanent(err) || !strings.Contains(err.Error(), "no answer within "+timeout.String()) {
		t.Errorf("Deliver = %v, want a timeout after %s, to retry", err, timeout)
	}
	if took > timeout+time.Second {
		t.Errorf("Deliver took %s with a timeout of %s", took, timeout)
	}
}

// Permanent reports whether err is a *gateway.PermanentError, which the
// outbox worker dead-letters at once.
func Permanent(err error) bool {
	var perm *gateway.PermanentError
	return errors.As(err, &perm)
}

// WantFailure fails the test unless err is a failed delivery, permanent
// or to retry as permanent says, whose text says says and holds none of
// never (patient data, a channel's credentials).
func WantFailure(t testing.TB, err error, permanent bool, says string, never ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("Deliver succeeded, want it to fail")
		return
	}
	if Permanent(err) != permanent {
		t.Errorf("Deliver = %v: permanent is %v, want %v", err, !permanent, permanent)
	}
	if !strings.Contains(err.Error(), says) {
		t.Errorf("error %q does not say %q", err, says)
	}
	for _, s := range never {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q holds %q", err, s)
		}
	}
}

// WantPermanent is WantFailure for a permanent failure, whatever it says.
func WantPermanent(t testing.TB, err error, never ...string) {
	t.Helper()
	WantFailure(t, err, true, "", never...)
}

// WantRetry is WantFailure for a failure to retry, whatever it says.
func WantRetry(t testing.TB, err error, never ...string) {
	t.Helper()
	WantFailure(t, err, false, "", never...)
}
