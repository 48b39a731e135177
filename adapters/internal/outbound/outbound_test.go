package outbound

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

func TestShown(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:secret@hooks.example/in?token=abc#frag": "https://hooks.example/in",
		"http://127.0.0.1:9000/spgateway":                     "http://127.0.0.1:9000/spgateway",
	} {
		u, err := url.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := Shown(u); got != want {
			t.Errorf("Shown(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestClientDoesNotFollowRedirects(t *testing.T) {
	elsewhere := 0
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere++ }))
	defer target.Close()
	srv := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusTemporaryRedirect))
	defer srv.Close()
	resp, err := Client().Post(srv.URL, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || elsewhere != 0 {
		t.Errorf("status %d, %d requests followed the redirect", resp.StatusCode, elsewhere)
	}
}
