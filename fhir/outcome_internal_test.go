package fhir

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/spgateway/spgateway/gateway"
)

// TestAbandonedRequestIsNotAnError: a request whose client went away fails
// deep in the store (context.Canceled, or a transaction database/sql rolled
// back when the context ended); that is logged as information, while the
// same errors on a live request are logged as errors with their cause.
func TestAbandonedRequestIsNotAnError(t *testing.T) {
	cause := gateway.Internal("store.Update", fmt.Errorf("begin: %w", context.Canceled))
	for _, c := range []struct {
		name      string
		err       error
		cancelled bool
		level     string
		msg       string
	}{
		{"client gone", cause, true, "INFO", "request abandoned by the client"},
		{"cancelled but the client is still there", cause, false, "ERROR", "request failed"},
		{"transaction rolled back by the cancellation", gateway.Internal("store.Update", sql.ErrTxDone), true, "INFO", "request abandoned by the client"},
		{"internal error, client still there", gateway.Internal("store.Update", fmt.Errorf("disk full")), false, "ERROR", "request failed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var logs bytes.Buffer
			s := &Server{log: slog.New(slog.NewTextHandler(&logs, nil))}
			rec := httptest.NewRecorder()
			gc, _ := gin.CreateTestContext(rec)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if c.cancelled {
				cancel()
			}
			gc.Request = httptest.NewRequest("POST", "/fhir", nil).WithContext(ctx)
			s.writeError(gc, c.err)
			line := logs.String()
			if !strings.Contains(line, "level="+c.level) || !strings.Contains(line, c.msg) {
				t.Errorf("log %q, want level %s and %q", line, c.level, c.msg)
			}
			if rec.Code != 500 {
				t.Errorf("status %d, want 500", rec.Code)
			}
		})
	}
}
