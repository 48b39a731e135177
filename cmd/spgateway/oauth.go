package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/spgateway/spgateway/gateway"
	"github.com/spgateway/spgateway/gateway/oauth"
)

// OAuthConfig is the token endpoint: how long access tokens live, and the
// gateway's keys that sign them. Keys are read from PEM files or from an
// environment variable the file names, never from the YAML itself.
type OAuthConfig struct {
	TokenLifetime time.Duration      `yaml:"token_lifetime" env:"TOKEN_LIFETIME" validate:"gt=0"`
	SigningKeys   []SigningKeyConfig `yaml:"signing_keys" env:"-" validate:"dive"`
}

// SigningKeyConfig is one of the gateway's access-token keys. Exactly one
// is active (signs); the others still verify, for rotation.
type SigningKeyConfig struct {
	ID             string `yaml:"id" validate:"required,max=128,token_chars"`
	PrivateKeyFile string `yaml:"private_key_file"`
	PrivateKeyEnv  string `yaml:"private_key_env"`
	Active         bool   `yaml:"active"`
}

// loadedOAuth is what the oauth and client key settings name, read and
// checked.
type loadedOAuth struct {
	keys    []oauth.SigningKey
	active  string
	clients []oauth.Client
}

// loadOAuth reads and checks the gateway's signing keys and the clients'
// public keys. Every problem names the setting, and the client.
// Relative file paths are taken from dir, the configuration file's folder.
func (c *Config) loadOAuth(dir string, getenv func(string) string, ps *problems) {
	file := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	if c.OAuth.TokenLifetime > oauth.MaxTokenLifetime {
		ps.add("oauth.token_lifetime", "%s is longer than the maximum, %s", c.OAuth.TokenLifetime, oauth.MaxTokenLifetime)
	}
	c.loadSigningKeys(file, getenv, ps)
	c.oauth.clients = nil
	for i, cl := range c.Clients {
		at := func(field string) string { return fmt.Sprintf("clients[%d].%s", i, field) }
		if oauth.LooksLikeJWT(cl.APIKey) {
			ps.add(at("api_key"), "client %q: has the shape of a JWT, so it would be taken for an access token; choose another key", cl.ID)
		}
		var keys []jose.JSONWebKey
		if cl.JWKSFile != "" {
			data, err := os.ReadFile(file(cl.JWKSFile))
			if err == nil {
				var set []jose.JSONWebKey
				if set, err = oauth.ParseJWKS(data); err == nil {
					keys = append(keys, set...)
				}
			}
			if err != nil {
				ps.add(at("jwks_file"), "client %q: %v", cl.ID, err)
			}
		}
		if cl.PublicKeyFile != "" {
			data, err := os.ReadFile(file(cl.PublicKeyFile))
			if err == nil {
				var k jose.JSONWebKey
				if k, err = oauth.ParsePublicKeyPEM(data, cl.KID); err == nil {
					keys = append(keys, k)
				}
			}
			if err != nil {
				ps.add(at("public_key_file"), "client %q: %v", cl.ID, err)
			}
		} else if cl.KID != "" {
			ps.add(at("kid"), "client %q: names the key of public_key_file, which is not given (a JWK Set carries its own kids)", cl.ID)
		}
		if c.production() && cl.JWKSFile == "" && cl.PublicKeyFile == "" {
			ps.add(at("jwks_file"), "client %q: a client needs a public key in production: give jwks_file or public_key_file", cl.ID)
		}
		c.oauth.clients = append(c.oauth.clients, oauth.Client{
			Principal: gateway.Principal{ClientID: cl.ID, Role: gateway.Role(cl.Role), Org: cl.Organization},
			Keys:      keys,
		})
	}
}

// loadSigningKeys reads the gateway's signing keys: none in development
// (an ephemeral key is made at start), at least one in production, and
// exactly one active when there are any.
func (c *Config) loadSigningKeys(file func(string) string, getenv func(string) string, ps *problems) {
	keys := c.OAuth.SigningKeys
	c.oauth.keys, c.oauth.active = nil, ""
	if len(keys) == 0 {
		if c.production() {
			ps.add("oauth.signing_keys", "is required in production: list the gateway's access-token signing keys (PEM files or environment variables), one with active: true")
		}
		return
	}
	ids := map[string]int{}
	for i, k := range keys {
		at := fmt.Sprintf("oauth.signing_keys[%d]", i)
		if j, dup := ids[k.ID]; dup && k.ID != "" {
			ps.add(at+".id", "%q is already the id of oauth.signing_keys[%d]", k.ID, j)
		}
		ids[k.ID] = i
		if k.Active {
			if c.oauth.active != "" {
				ps.add(at+".active", "only one key may be active, and key %q already is", c.oauth.active)
			}
			c.oauth.active = k.ID
		}
		var data []byte
		var from string
		switch {
		case (k.PrivateKeyFile == "") == (k.PrivateKeyEnv == ""):
			ps.add(at, "give private_key_file or private_key_env, one of them")
			continue
		case k.PrivateKeyFile != "":
			from = at + ".private_key_file"
			var err error
			if data, err = os.ReadFile(file(k.PrivateKeyFile)); err != nil {
				ps.add(from, "%v", err)
				continue
			}
		default:
			from = at + ".private_key_env"
			if !envName.MatchString(k.PrivateKeyEnv) {
				ps.add(from, "must name an environment variable (capitals, digits and _), got %q", k.PrivateKeyEnv)
				continue
			}
			if data = []byte(getenv(k.PrivateKeyEnv)); len(data) == 0 {
				ps.add(from, "the environment variable %s is not set", k.PrivateKeyEnv)
				continue
			}
		}
		key, err := oauth.ParsePrivateKeyPEM(data)
		if err != nil {
			ps.add(from, "key %q: %v", k.ID, err)
			continue
		}
		c.oauth.keys = append(c.oauth.keys, oauth.SigningKey{ID: k.ID, Key: key})
	}
	if c.oauth.active == "" {
		ps.add("oauth.signing_keys", "one key must be marked active: true (the one that signs new tokens)")
	}
}

// tokenKeys returns the gateway's signing keys, or in development without
// any, an ephemeral key (and says so).
func (c *Config) tokenKeys() (keys *oauth.Keys, ephemeral bool, err error) {
	if len(c.oauth.keys) == 0 {
		if c.production() {
			return nil, false, fmt.Errorf("config: oauth.signing_keys: is required in production")
		}
		keys, err = oauth.EphemeralKeys()
		return keys, true, err
	}
	keys, err = oauth.NewKeys(c.oauth.keys, c.oauth.active)
	return keys, false, err
}

// authenticator is the gateway's Authenticator: access tokens, and beside
// them, outside production, the development API keys.
func (c *Config) authenticator(tokens *oauth.Server) gateway.Authenticator {
	if c.production() {
		return oauth.Chain(tokens, nil)
	}
	return oauth.Chain(tokens, gateway.NewStaticKeys(c.staticKeys()))
}
