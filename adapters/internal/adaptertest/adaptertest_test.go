package adaptertest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/spgateway/spgateway/adapters/internal/outbound"
	"github.com/spgateway/spgateway/gateway"
)

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	failures []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

// TestWants: each check passes what it is for and fails anything else.
func TestWants(t *testing.T) {
	const secret = "943 476 5919"
	permanent := &gateway.PermanentError{Err: errors.New("410 Gone")}
	retry := errors.New("503 Service Unavailable")
	leaky := fmt.Errorf("wrapped: %w", &gateway.PermanentError{Err: errors.New("unknown patient " + secret)})
	timeout := fmt.Errorf("POST: no answer within 200ms: %w", context.DeadlineExceeded)
	for _, tt := range []struct {
		name  string
		check func(testing.TB)
		fails bool
	}{
		{"permanent : WantPermanent (OK)", func(t testing.TB) { WantPermanent(t, permanent, secret) }, false},
		{"wrapped permanent : WantPermanent (OK)", func(t testing.TB) { WantPermanent(t, fmt.Errorf("x: %w", permanent)) }, false},
		{"to retry : WantPermanent", func(t testing.TB) { WantPermanent(t, retry) }, true},
		{"nil : WantPermanent", func(t testing.TB) { WantPermanent(t, nil) }, true},
		{"permanent quoting a secret : WantPermanent", func(t testing.TB) { WantPermanent(t, leaky, secret) }, true},
		{"to retry : WantRetry (OK)", func(t testing.TB) { WantRetry(t, retry, secret) }, false},
		{"permanent : WantRetry", func(t testing.TB) { WantRetry(t, permanent) }, true},
		{"nil : WantRetry", func(t testing.TB) { WantRetry(t, nil) }, true},
		{"to retry quoting a secret : WantRetry", func(t testing.TB) { WantRetry(t, errors.New(secret), secret) }, true},
		{"410 : WantFailure permanent (OK)", func(t testing.TB) { WantFailure(t, permanent, true, "410 Gone", secret) }, false},
		{"503 : WantFailure to retry (OK)", func(t testing.TB) { WantFailure(t, retry, false, "503", secret) }, false},
		{"503 : WantFailure saying something else", func(t testing.TB) { WantFailure(t, retry, false, "502") }, true},
		{"503 : WantFailure permanent", func(t testing.TB) { WantFailure(t, retry, true, "503") }, true},
		{"nil : WantFailure", func(t testing.TB) { WantFailure(t, nil, false, "") }, true},
		{"timeout : WantTimeout (OK)", func(t testing.TB) { WantTimeout(t, 200*time.Millisecond, func() error { return timeout }) }, false},
		{"another timeout : WantTimeout", func(t testing.TB) { WantTimeout(t, time.Second, func() error { return timeout }) }, true},
		{"permanent timeout : WantTimeout", func(t testing.TB) {
			WantTimeout(t, 200*time.Millisecond, func() error { return &gateway.PermanentError{Err: timeout} })
		}, true},
		{"no error : WantTimeout", func(t testing.TB) { WantTimeout(t, 200*time.Millisecond, func() error { return nil }) }, true},
		{"too slow : WantTimeout", func(t testing.TB) {
			WantTimeout(t, time.Millisecond, func() error {
				time.Sleep(1100 * time.Millisecond)
				return fmt.Errorf("no answer within 1ms: %w", context.DeadlineExceeded)
			})
		}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{TB: t}
			tt.check(r)
			if (len(r.failures) > 0) != tt.fails {
				t.Errorf("failures %q, want failing %v", r.failures, tt.fails)
			}
		})
	}
}

// TestStalling: a request to the stalling receiver ends only with the
// client's deadline.
func TestStalling(t *testing.T) {
	srv := Stalling(t)
	const timeout = 200 * time.Millisecond
	WantTimeout(t, timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, nil)
		if err != nil {
			return err
		}
		resp, err := outbound.Client(nil).Do(req)
		if err == nil {
			resp.Body.Close()
			return errors.New("the stalling receiver answered " + resp.Status)
		}
		return outbound.Cause(ctx, err, timeout)
	})
}
