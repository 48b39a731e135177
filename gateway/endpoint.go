package gateway

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// EndpointPolicy is where the gateway may send what a client asked it to
// send somewhere: a practice chooses its Subscriptions' endpoints, so
// without a rule it could make the gateway call its own loopback services,
// the cloud's metadata address (169.254.169.254) or anything on the private
// network behind it. The zero value is the strict rule: https only, to
// public addresses. The address is checked when the Subscription is made
// (for an IP literal or a localhost name) and again on every connection the
// delivery makes (CheckAddr, from the dialer), so a name that resolves to a
// private address, now or after a DNS change, is refused too.
type EndpointPolicy struct {
	// AllowHTTP accepts plain http endpoints (development and tests).
	AllowHTTP bool
	// AllowPrivate accepts loopback, private, link-local and other
	// non-public addresses (development and tests, or receivers on a
	// private network).
	AllowPrivate bool
}

// nonPublic are the special-purpose ranges (IANA registries) that no
// receiver on the internet has, beyond what netip.Addr classifies.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: reaches IPv4 addresses through a translator
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("100::/64"),        // discard
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4: embeds an IPv4 address
	netip.MustParsePrefix("fec0::/10"),       // deprecated site-local
}

// PublicAddr reports whether a is an address of the public internet: not
// unspecified, loopback, private (RFC 1918, fc00::/7), link-local,
// multicast, or another special-purpose range. An IPv4 address written as
// IPv6 (::ffff:127.0.0.1) is judged as the IPv4 address.
func PublicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || !a.IsGlobalUnicast() || a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// ErrEndpointRefused is what ParseHTTPURL, CheckURL and CheckAddr return,
// wrapped.
var ErrEndpointRefused = errors.New("endpoint refused")

// ParseHTTPURL parses the URL of a destination the gateway sends to,
// whoever chose it: absolute, http or https, with a host. It is the shape
// alone; what a client may choose is the EndpointPolicy's to say
// (ParseURL). Its errors wrap ErrEndpointRefused.
func ParseHTTPURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("%w: not an absolute URL", ErrEndpointRefused)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("%w: not an http(s) URL", ErrEndpointRefused)
	}
	return u, nil
}

// CheckURL checks an endpoint URL: absolute, https (or http when allowed),
// no user information, and, when its host is an IP address or a localhost
// name, a public address unless private ones are allowed.
func (p EndpointPolicy) CheckURL(raw string) error {
	_, err := p.ParseURL(raw)
	return err
}

// ParseURL is CheckURL that also returns the URL, for the delivery that
// sends to it.
func (p EndpointPolicy) ParseURL(raw string) (*url.URL, error) {
	u, err := ParseHTTPURL(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "http" && !p.AllowHTTP {
		return nil, fmt.Errorf("%w: only https endpoints are accepted", ErrEndpointRefused)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: credentials in the URL are not accepted (use a channel header)", ErrEndpointRefused)
	}
	if p.AllowPrivate {
		return u, nil
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return nil, fmt.Errorf("%w: the endpoint is not a public address", ErrEndpointRefused)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if err := p.CheckAddr(a); err != nil {
			return nil, err
		}
	}
	return u, nil
}

// CheckAddr refuses an address that is not public, unless private ones
// are allowed.
func (p EndpointPolicy) CheckAddr(a netip.Addr) error {
	if p.AllowPrivate || PublicAddr(a) {
		return nil
	}
	return fmt.Errorf("%w: the endpoint is not a public address", ErrEndpointRefused)
}
