package oauth

import (
	"crypto"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/spgateway/spgateway/gateway"
)

// AssertionLifetime is the exp a new assertion gets by default: well inside
// MaxAssertionLifetime.
const AssertionLifetime = 2 * time.Minute

// SignAssertion makes a client assertion as a client would: iss and sub
// the client id, aud the token endpoint's URL, a new jti, iat now and exp
// lifetime later, signed with key (RS256 for RSA, ES256 for P-256) under kid
// (the key's thumbprint when empty, as MarshalJWKS registers it).
func SignAssertion(key crypto.Signer, kid, clientID, aud string, now time.Time, lifetime time.Duration) (string, error) {
	signer, err := newSigner(key, kid, "JWT")
	if err != nil {
		return "", fmt.Errorf("oauth.SignAssertion: %w", err)
	}
	claims := jwt.Claims{
		Issuer:   clientID,
		Subject:  clientID,
		Audience: jwt.Audience{aud},
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(lifetime)),
		ID:       gateway.NewUUID(),
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}
