package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spgateway/spgateway/gateway/gatewaytest"
)

// TestSlowClientsAreCutOff runs serve with short timeouts: a client that
// sends its headers a byte at a time more slowly than read_header_timeout,
// and one that trickles its body beyond read_timeout, have their
// connections closed, while the server keeps answering others.
func TestSlowClientsAreCutOff(t *testing.T) {
	base, _, stop := startServe(t, testEnv(t, map[string]string{
		"SPGATEWAY_SERVER_READ_HEADER_TIMEOUT": "300ms",
		"SPGATEWAY_SERVER_READ_TIMEOUT":        "1s",
	}))
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	addr := strings.TrimPrefix(base, "http://")
	head := "GET /healthz HTTP/1.1\r\nHost: " + addr + "\r\nX-Padding: " + strings.Repeat("a", 40) + "\r\n\r\n"
	body := strings.Repeat("x", 200)
	post := "POST /fhir HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + gatewaytest.KeyA81001 + "\r\n" +
		"Content-Type: application/fhir+json\r\nContent-Length: 200\r\n\r\n"
	for _, tc := range []struct {
		name    string
		prefix  string // sent at once
		trickle string // then a byte every interval
		every   time.Duration
		within  time.Duration
	}{
		{"headers byte by byte", "", head, 50 * time.Millisecond, 2 * time.Second},
		{"body byte by byte", post, body, 50 * time.Millisecond, 4 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			if _, err := io.WriteString(c, tc.prefix); err != nil {
				t.Fatal(err)
			}
			cut := make(chan time.Duration, 1)
			go func() { // the server closing the connection ends the read
				_, _ = io.Copy(io.Discard, c)
				cut <- time.Since(start)
			}()
			// Others are answered meanwhile.
			for i := 0; i < len(tc.trickle); i++ {
				if _, err := c.Write([]byte{tc.trickle[i]}); err != nil {
					break // cut off
				}
				if i == 3 {
					res, err := http.Get(base + "/healthz")
					if err != nil || res.StatusCode != http.StatusOK {
						t.Errorf("another client meanwhile: %v", err)
					} else {
						res.Body.Close()
					}
				}
				select {
				case d := <-cut:
					cut <- d
					i = len(tc.trickle)
				case <-time.After(tc.every):
				}
			}
			select {
			case d := <-cut:
				if d > tc.within {
					t.Errorf("cut off after %s, want within %s", d, tc.within)
				}
				t.Logf("cut off after %s", d.Round(time.Millisecond))
			case <-time.After(tc.within):
				t.Errorf("still connected after %s", tc.within)
			}
		})
	}
	// The server still answers.
	res, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("readyz: %d", res.StatusCode)
	}
}
