package gateway_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/spgateway/spgateway/gateway"
)

func TestPublicAddr(t *testing.T) {
	for _, tt := range []struct {
		addr   string
		public bool
	}{
		{"8.8.8.8", true},
		{"81.2.69.160", true},
		{"2a00:1450:4009:81f::200e", true},
		{"::ffff:8.8.8.8", true},
		{"127.0.0.1", false},
		{"127.255.255.254", false},
		{"::1", false},
		{"::ffff:127.0.0.1", false},
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"::", false},
		{"10.0.0.1", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"192.168.1.1", false},
		{"169.254.169.254", false}, // cloud metadata
		{"::ffff:169.254.169.254", false},
		{"fe80::1", false},
		{"fd00:ec2::254", false}, // AWS metadata over IPv6 (unique local)
		{"fc00::1", false},
		{"100.64.0.1", false},
		{"192.0.0.192", false},
		{"198.18.0.1", false},
		{"224.0.0.1", false},
		{"ff02::1", false},
		{"255.255.255.255", false},
		{"240.0.0.1", false},
		{"64:ff9b::a9fe:a9fe", false}, // NAT64 of 169.254.169.254
		{"2002:7f00:1::", false},      // 6to4 of 127.0.0.1
		{"192.0.2.1", false},
		{"2001:db8::1", false},
	} {
		if got := gateway.PublicAddr(netip.MustParseAddr(tt.addr)); got != tt.public {
			t.Errorf("PublicAddr(%s) = %v, want %v", tt.addr, got, tt.public)
		}
	}
	if gateway.PublicAddr(netip.Addr{}) {
		t.Error("the zero address is public")
	}
}

func TestEndpointPolicyCheckURL(t *testing.T) {
	strict := gateway.EndpointPolicy{}
	dev := gateway.EndpointPolicy{AllowHTTP: true, AllowPrivate: true}
	httpOnly := gateway.EndpointPolicy{AllowHTTP: true}
	for _, tt := range []struct {
		name   string
		policy gateway.EndpointPolicy
		url    string
		ok     bool
	}{
		{"https to a name : strict (OK)", strict, "https://hooks.example.org/fhir", true},
		{"https to a public address : strict (OK)", strict, "https://81.2.69.160:8443/in", true},
		{"https to public IPv6 : strict (OK)", strict, "https://[2a00:1450:4009:81f::200e]/in", true},
		{"http : strict", strict, "http://hooks.example.org/fhir", false},
		{"http : http allowed (OK)", httpOnly, "http://hooks.example.org/fhir", true},
		{"loopback : strict", strict, "https://127.0.0.1/x", false},
		{"loopback : http allowed", httpOnly, "http://127.0.0.1:8080/x", false},
		{"localhost : strict", strict, "https://localhost/x", false},
		{"LOCALHOST. : strict", strict, "https://LOCALHOST./x", false},
		{"a .localhost name : strict", strict, "https://admin.localhost/x", false},
		{"metadata : strict", strict, "https://169.254.169.254/latest/meta-data/", false},
		{"IPv6 loopback : strict", strict, "https://[::1]/x", false},
		{"IPv4-mapped loopback : strict", strict, "https://[::ffff:127.0.0.1]/x", false},
		{"link-local with zone : strict", strict, "https://[fe80::1%25eth0]/x", false},
		{"private : strict", strict, "https://10.1.2.3/x", false},
		{"unspecified : strict", strict, "https://0.0.0.0/x", false},
		{"loopback : development (OK)", dev, "http://127.0.0.1:8080/x", true},
		{"metadata : development (OK)", dev, "http://169.254.169.254/x", true},
		{"credentials in the URL : development", dev, "https://user:pw@hooks.example.org/x", false},
		{"ftp : development", dev, "ftp://hooks.example.org/x", false},
		{"relative : development", dev, "/fhir", false},
		{"no host : development", dev, "https:///x", false},
		{"port only : development", dev, "https://:443/x", false},
		{"not a URL : development", dev, "https://[::1/x", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.CheckURL(tt.url)
			if tt.ok != (err == nil) {
				t.Fatalf("CheckURL(%q) = %v", tt.url, err)
			}
			if err != nil && !errors.Is(err, gateway.ErrEndpointRefused) {
				t.Errorf("error %v is not ErrEndpointRefused", err)
			}
		})
	}
}

// TestParseHTTPURL: the shape of every destination, whoever chose it; no
// policy (an operator's receiver may be on a private network, over http).
func TestParseHTTPURL(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://hooks.example.org/fhir":      true,
		"http://127.0.0.1:8080/x":             true,
		"https://user:pw@hooks.example.org/x": true, // credentials are a policy's to refuse
		"ftp://hooks.example.org/x":           false,
		"mailto:hook@example.org":             false,
		"/fhir":                               false,
		"https:///x":                          false,
		"https://:443/x":                      false,
		"https://[::1/x":                      false,
		"":                                    false,
	} {
		u, err := gateway.ParseHTTPURL(raw)
		if ok != (err == nil) || ok != (u != nil) {
			t.Errorf("ParseHTTPURL(%q) = %v, %v", raw, u, err)
		}
		if err != nil && !errors.Is(err, gateway.ErrEndpointRefused) {
			t.Errorf("ParseHTTPURL(%q): error %v is not ErrEndpointRefused", raw, err)
		}
	}
}
