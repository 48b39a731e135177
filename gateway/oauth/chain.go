package oauth

import (
	"context"
	"strings"

	"github.com/spgateway/spgateway/gateway"
)

// Chain authenticates JWT-shaped credentials with tokens and anything else
// with static, the development API keys; static may be nil (production),
// and then only access tokens are accepted.
func Chain(tokens, static gateway.Authenticator) gateway.Authenticator {
	return chain{tokens: tokens, static: static}
}

type chain struct {
	tokens, static gateway.Authenticator
}

func (c chain) Authenticate(ctx context.Context, credential string) (gateway.Principal, error) {
	if LooksLikeJWT(credential) || c.static == nil {
		return c.tokens.Authenticate(ctx, credential)
	}
	return c.static.Authenticate(ctx, credential)
}

// LooksLikeJWT reports whether s has the shape of a compact JWS: three
// base64url parts, the first two not empty. A development API key must not
// have it, or it would never be tried.
func LooksLikeJWT(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return false
	}
	for _, p := range parts {
		if strings.ContainsFunc(p, func(r rune) bool {
			return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_')
		}) {
			return false
		}
	}
	return true
}
