// Package outbound holds what the HTTP adapters share about sending to a
// receiver they do not control.
package outbound

import (
	"net/http"
	"net/url"
)

// Client returns an HTTP client that does not follow redirects, so that
// what is delivered goes only where it was configured (or asked) to go; a
// redirect is answered as the 3xx it is.
func Client() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// Shown is a URL as errors show it: scheme, host and path, without the
// credentials or query a URL may carry.
func Shown(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}
