package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spgateway/spgateway/gateway/oauth"
)

// clientTool returns the client-side command named name, or nil.
func clientTool(name string) func(args []string, stdout, stderr io.Writer) error {
	switch name {
	case "keygen":
		return keygen
	case "client-assertion":
		return clientAssertion
	}
	return nil
}

// keygen writes a new key pair for a client (or for the gateway's own
// signing keys): private.pem (mode 0600), public.pem and jwks.json, the
// public key as a JWK Set to register as the client's jwks_file. It never
// overwrites a file.
func keygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("spgateway keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	alg := fs.String("alg", oauth.ES256, "ES256 (EC P-256) or RS256 (RSA 3072)")
	out := fs.String("out", "", "folder to write private.pem, public.pem and jwks.json to (created if missing)")
	kid := fs.String("kid", "", "key id in jwks.json (default: the key's RFC 7638 thumbprint)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *out == "" {
		return errors.New("usage: spgateway keygen --alg ES256|RS256 --out DIR [--kid K]")
	}
	key, err := oauth.GenerateKey(*alg)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	private, err := oauth.MarshalPrivateKeyPEM(key)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	public, err := oauth.MarshalPublicKeyPEM(key.Public())
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	jwks, err := oauth.MarshalJWKS(key, *kid)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{"private.pem", private, 0o600}, {"public.pem", public, 0o644}, {"jwks.json", append(jwks, '\n'), 0o644}} {
		path := filepath.Join(*out, f.name)
		w, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
		if err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		_, err = w.Write(f.data)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		fmt.Fprintln(stdout, "wrote", path)
	}
	id := *kid
	if id == "" {
		id, _ = oauth.Thumbprint(key.Public()) // MarshalJWKS computed it already
	}
	fmt.Fprintf(stdout, "%s key, kid %s: register jwks.json (or public.pem) for the client; keep private.pem secret\n", *alg, id)
	return nil
}

// clientAssertion prints a fresh client assertion signed with a private
// key, for trying the token endpoint from a shell.
func clientAssertion(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("spgateway client-assertion", flag.ContinueOnError)
	fs.SetOutput(stderr)
	client := fs.String("client", "", "the client id (iss and sub)")
	keyPath := fs.String("key", "", "the client's private key (PEM)")
	kid := fs.String("kid", "", "key id in the header (default: the key's RFC 7638 thumbprint, as keygen registers it)")
	aud := fs.String("aud", "", "the token endpoint's URL, e.g. http://127.0.0.1:8080/oauth2/token")
	lifetime := fs.Duration("lifetime", oauth.AssertionLifetime, "how long the assertion is valid (at most 5m)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *client == "" || *keyPath == "" || *aud == "" {
		return errors.New("usage: spgateway client-assertion --client ID --key private.pem --aud URL [--kid K] [--lifetime 2m]")
	}
	if *lifetime <= 0 || *lifetime > oauth.MaxAssertionLifetime {
		return fmt.Errorf("client-assertion: --lifetime must be more than 0 and at most %s", oauth.MaxAssertionLifetime)
	}
	data, err := os.ReadFile(*keyPath)
	if err != nil {
		return fmt.Errorf("client-assertion: %w", err)
	}
	key, err := oauth.ParsePrivateKeyPEM(data)
	if err != nil {
		return fmt.Errorf("client-assertion: %s: %w", *keyPath, err)
	}
	a, err := oauth.SignAssertion(key, *kid, *client, *aud, time.Now(), *lifetime)
	if err != nil {
		return fmt.Errorf("client-assertion: %w", err)
	}
	fmt.Fprintln(stdout, a)
	return nil
}
