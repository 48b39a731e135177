package oauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// The signature algorithms the gateway accepts and uses. Anything else —
// none, the HMAC family, PS*, EdDSA — is refused before a key is looked at.
const (
	RS256 = string(jose.RS256)
	ES256 = string(jose.ES256)
)

var allowedAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.ES256}

// minRSABits is the smallest RSA modulus accepted, for clients' keys and the
// gateway's own.
const minRSABits = 2048

// keyAlg returns the one algorithm a key may be used with: RS256 for RSA of
// at least 2048 bits, ES256 for EC on P-256. Binding the algorithm to the
// key, not to the token's header, is what defeats algorithm confusion.
func keyAlg(key any) (string, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return "", fmt.Errorf("an RSA key of %d bits is too weak: at least %d are required", k.N.BitLen(), minRSABits)
		}
		return RS256, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("an EC key on %s is not accepted: use P-256 (ES256)", k.Curve.Params().Name)
		}
		return ES256, nil
	case *rsa.PrivateKey:
		return keyAlg(&k.PublicKey)
	case *ecdsa.PrivateKey:
		return keyAlg(&k.PublicKey)
	case nil:
		return "", errors.New("no key")
	}
	return "", fmt.Errorf("a %T key is not accepted: use RSA (2048 bits or more) or EC P-256", key)
}

// Thumbprint is the RFC 7638 SHA-256 thumbprint of a public key, base64url:
// the kid given to a key registered without one, and printed by keygen.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	jwk := jose.JSONWebKey{Key: pub}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// publicJWK checks pub and returns it as a JWK with its algorithm and kid
// (the thumbprint when kid is empty).
func publicJWK(pub crypto.PublicKey, kid string) (jose.JSONWebKey, error) {
	alg, err := keyAlg(pub)
	if err != nil {
		return jose.JSONWebKey{}, err
	}
	if kid == "" {
		if kid, err = Thumbprint(pub); err != nil {
			return jose.JSONWebKey{}, err
		}
	}
	return jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: alg, Use: "sig"}, nil
}

// newSigner signs tokens of type typ with key, under kid (the thumbprint
// when empty) and the one algorithm the key may be used with: the same
// checks and kid as its publicJWK, so what it signs verifies against the
// key as published.
func newSigner(key crypto.Signer, kid string, typ jose.ContentType) (jose.Signer, error) {
	if key == nil {
		return nil, errors.New("no key")
	}
	jwk, err := publicJWK(key.Public(), kid)
	if err != nil {
		return nil, err
	}
	return jose.NewSigner(
		jose.SigningKey{Algorithm: jose.SignatureAlgorithm(jwk.Algorithm), Key: jose.JSONWebKey{Key: key, KeyID: jwk.KeyID}},
		(&jose.SignerOptions{}).WithType(typ))
}

// ParsePublicKeyPEM reads one PEM public key ("PUBLIC KEY" or "RSA PUBLIC
// KEY") and returns it as a JWK with kid, or its thumbprint when kid is
// empty. It refuses keys other than RSA ≥ 2048 bits and EC P-256.
func ParsePublicKeyPEM(data []byte, kid string) (jose.JSONWebKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return jose.JSONWebKey{}, errors.New("no PEM block found")
	}
	var pub any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
		return jose.JSONWebKey{}, errors.New("holds a private key: register the client's public key only")
	default:
		return jose.JSONWebKey{}, fmt.Errorf("a PEM %q block is not a public key", block.Type)
	}
	if err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("the public key cannot be read: %v", err)
	}
	return publicJWK(pub, kid)
}

// ParseJWKS reads a JWK Set of public signing keys. Every key must be
// public, meant for signatures, of an accepted type, with an alg (when
// given) that suits it; keys without a kid get their thumbprint.
func ParseJWKS(data []byte) ([]jose.JSONWebKey, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("not a JWK Set: %v", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("the JWK Set holds no keys")
	}
	out := make([]jose.JSONWebKey, 0, len(set.Keys))
	seen := map[string]bool{}
	for i, k := range set.Keys {
		switch k.Key.(type) {
		case *rsa.PrivateKey, *ecdsa.PrivateKey:
			return nil, fmt.Errorf("keys[%d] holds a private key: register the client's public keys only", i)
		}
		if k.Use != "" && k.Use != "sig" {
			return nil, fmt.Errorf("keys[%d] is for %q, not for signatures", i, k.Use)
		}
		jwk, err := publicJWK(k.Key, k.KeyID)
		if err != nil {
			return nil, fmt.Errorf("keys[%d]: %v", i, err)
		}
		if k.Algorithm != "" && k.Algorithm != jwk.Algorithm {
			return nil, fmt.Errorf("keys[%d]: alg %q does not suit the key (it can only be %s)", i, k.Algorithm, jwk.Algorithm)
		}
		if seen[jwk.KeyID] {
			return nil, fmt.Errorf("keys[%d]: kid %q is given twice", i, jwk.KeyID)
		}
		seen[jwk.KeyID] = true
		out = append(out, jwk)
	}
	return out, nil
}

// ParsePrivateKeyPEM reads a PEM private key (PKCS #8, SEC 1 or PKCS #1) of
// an accepted type.
func ParsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("a PEM %q block is not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("the private key cannot be read: %v", err)
	}
	if _, err := keyAlg(key); err != nil {
		return nil, err
	}
	return key.(crypto.Signer), nil // RSA and ECDSA private keys are Signers
}

// GenerateKey makes a new private key for alg (ES256: P-256; RS256: 3072
// bits).
func GenerateKey(alg string) (crypto.Signer, error) {
	switch alg {
	case ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RS256:
		return rsa.GenerateKey(rand.Reader, 3072)
	}
	return nil, fmt.Errorf("alg %q: want %s or %s", alg, ES256, RS256)
}

// MarshalPrivateKeyPEM writes key as a PKCS #8 PEM block.
func MarshalPrivateKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalPublicKeyPEM writes pub as a PKIX PEM block.
func MarshalPublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// MarshalJWKS writes the public half of key as a JWK Set with kid (its
// thumbprint when empty), ready to register as a client's jwks_file.
func MarshalJWKS(key crypto.Signer, kid string) ([]byte, error) {
	jwk, err := publicJWK(key.Public(), kid)
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}}, "", "  ")
}

// SigningKey is one of the gateway's own keys for access tokens.
type SigningKey struct {
	// ID is the kid written in the tokens it signs.
	ID string
	// Key is the private key: RSA ≥ 2048 bits or EC P-256.
	Key crypto.Signer
}

// Keys are the gateway's access-token keys: one signs, all verify. To
// rotate, add a key, make it the active one, and remove the old one once
// the tokens it signed have expired.
type Keys struct {
	signer jose.Signer
	active string
	verify map[string]jose.JSONWebKey // public keys by kid
}

// NewKeys checks keys and returns them with active as the signing key.
func NewKeys(keys []SigningKey, active string) (*Keys, error) {
	ks := &Keys{active: active, verify: map[string]jose.JSONWebKey{}}
	for i, k := range keys {
		if k.ID == "" {
			return nil, fmt.Errorf("oauth.NewKeys: key %d has no id", i)
		}
		if _, dup := ks.verify[k.ID]; dup {
			return nil, fmt.Errorf("oauth.NewKeys: key id %q is given twice", k.ID)
		}
		if k.Key == nil {
			return nil, fmt.Errorf("oauth.NewKeys: key %q: no key", k.ID)
		}
		jwk, err := publicJWK(k.Key.Public(), k.ID)
		if err != nil {
			return nil, fmt.Errorf("oauth.NewKeys: key %q: %w", k.ID, err)
		}
		ks.verify[k.ID] = jwk
		if k.ID != active {
			continue
		}
		if ks.signer, err = newSigner(k.Key, k.ID, accessTokenType); err != nil {
			return nil, fmt.Errorf("oauth.NewKeys: key %q: %w", k.ID, err)
		}
	}
	if ks.signer == nil {
		return nil, fmt.Errorf("oauth.NewKeys: the active key %q is not among the keys", active)
	}
	return ks, nil
}

// EphemeralKeys returns keys made of one new ES256 key, for development
// without configured keys: the tokens they sign die with the process.
func EphemeralKeys() (*Keys, error) {
	key, err := GenerateKey(ES256)
	if err != nil {
		return nil, err
	}
	kid, err := Thumbprint(key.Public())
	if err != nil {
		return nil, err
	}
	return NewKeys([]SigningKey{{ID: "ephemeral-" + kid[:16], Key: key}}, "ephemeral-"+kid[:16])
}

// Active is the kid of the signing key.
func (ks *Keys) Active() string { return ks.active }
