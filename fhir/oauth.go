package fhir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"

	"github.com/gin-gonic/gin"

	"github.com/spgateway/spgateway/gateway/oauth"
)

// TokenIssuer is the OAuth 2.0 token endpoint's logic (gateway/oauth).
type TokenIssuer interface {
	// Token answers a token request's form parameters; its error is an
	// *oauth.Error.
	Token(ctx context.Context, form url.Values) (oauth.Token, error)
	// TokenURL is the endpoint's absolute URL.
	TokenURL() string
}

// maxTokenRequestBytes caps a token request: an assertion is a few hundred
// bytes, an RSA-signed one about a kilobyte.
const maxTokenRequestBytes = 16 << 10

// oauthStatus is the HTTP status of each token endpoint error (RFC 6749 §5.2).
var oauthStatus = map[string]int{
	oauth.ErrInvalidRequest:       http.StatusBadRequest,
	oauth.ErrInvalidClient:        http.StatusUnauthorized,
	oauth.ErrInvalidGrant:         http.StatusBadRequest,
	oauth.ErrUnsupportedGrantType: http.StatusBadRequest,
	oauth.ErrServerError:          http.StatusInternalServerError,
}

// oauthToken is POST /oauth2/token: form parameters in, a token or an RFC
// 6749 error out, never cached.
func (s *Server) oauthToken(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.Header("Pragma", "no-cache")
	// An address that has failed too often is refused before its
	// assertion is verified, valid or not, until its bucket refills.
	addr := addressKey(c.ClientIP())
	if wait := s.failures.wait(addr); wait > 0 {
		secs := retryAfter(c, wait)
		s.oauthError(c, http.StatusTooManyRequests, &oauth.Error{Code: oauth.ErrInvalidRequest,
			Description: fmt.Sprintf("too many failed token requests from this address: try again in %d s", secs)})
		return
	}
	s.tokenRequest(c)
	if c.Writer.Status() != http.StatusOK && c.Writer.Status() < http.StatusInternalServerError {
		s.failures.take(addr)
	}
}

// tokenRequest answers a token request.
func (s *Server) tokenRequest(c *gin.Context) {
	if c.Request.ContentLength > maxTokenRequestBytes {
		s.oauthError(c, http.StatusRequestEntityTooLarge, &oauth.Error{Code: oauth.ErrInvalidRequest, Description: "the request body is too large"})
		return
	}
	if mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		s.oauthError(c, 0, &oauth.Error{Code: oauth.ErrInvalidRequest, Description: "the parameters must be sent as application/x-www-form-urlencoded"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxTokenRequestBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		s.oauthError(c, http.StatusRequestEntityTooLarge, &oauth.Error{Code: oauth.ErrInvalidRequest, Description: "the request body is too large"})
		return
	case err != nil:
		s.oauthError(c, 0, &oauth.Error{Code: oauth.ErrInvalidRequest, Description: "the request body could not be read"})
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		s.oauthError(c, 0, &oauth.Error{Code: oauth.ErrInvalidRequest, Description: "the request body is not form-encoded"})
		return
	}
	tok, err := s.cfg.Tokens.Token(c.Request.Context(), form)
	if err != nil {
		s.oauthError(c, 0, err)
		return
	}
	b, err := json.Marshal(tok)
	if err != nil {
		s.oauthError(c, 0, err)
		return
	}
	c.Data(http.StatusOK, "application/json; charset=utf-8", b)
}

// oauthError writes an RFC 6749 §5.2 error; status 0 takes the code's.
func (s *Server) oauthError(c *gin.Context, status int, err error) {
	var e *oauth.Error
	if !errors.As(err, &e) {
		e = &oauth.Error{Code: oauth.ErrServerError, Description: "the token could not be issued", Err: err}
	}
	if status == 0 {
		status = oauthStatus[e.Code]
		if status == 0 {
			status = http.StatusBadRequest
		}
	}
	if e.Code == oauth.ErrServerError {
		s.log.ErrorContext(c.Request.Context(), "token request failed", "request_id", c.GetString(requestIDKey), "err", err.Error())
	}
	b, _ := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{e.Code, e.Description}) // two strings always marshal
	c.Data(status, "application/json; charset=utf-8", b)
}

// smartConfiguration is GET /fhir/.well-known/smart-configuration: where
// the token endpoint is and how clients authenticate to it (SMART App
// Launch 2, for backend services).
func (s *Server) smartConfiguration(c *gin.Context) {
	c.Header("Cache-Control", "public, max-age=3600")
	c.Data(http.StatusOK, "application/json; charset=utf-8", s.smartConfig)
}

func (s *Server) smartConfigJSON() ([]byte, error) {
	return json.Marshal(map[string]any{
		"token_endpoint":                                   s.cfg.Tokens.TokenURL(),
		"grant_types_supported":                            []string{oauth.GrantClientCredentials},
		"token_endpoint_auth_methods_supported":            []string{"private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": oauth.SigningAlgorithms(),
		"capabilities":                                     []string{"client-confidential-asymmetric"},
	})
}
