package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
)

// Role is what kind of client a principal is.
type Role string

// The roles of SPEC 1.
const (
	RolePractice Role = "practice"
	RoleProvider Role = "provider"
	RoleAdmin    Role = "admin"
	// RoleSystem is the gateway acting on its own (scheduled work); no
	// client has it.
	RoleSystem Role = "system"
)

// Principal is an authenticated client. Org is the ODS code (or local id) of
// the organisation it acts for; admins have none.
type Principal struct {
	ClientID string
	Role     Role
	Org      string
}

// Authenticator turns a bearer credential into a Principal. It returns
// CodeUnauthorized for an unknown or expired credential.
type Authenticator interface {
	Authenticate(ctx context.Context, credential string) (Principal, error)
}

// StaticKey is a development API key bound to a client.
type StaticKey struct {
	Key       string
	Principal Principal
}

// StaticKeys authenticates the development API keys of SPEC 4.1. Keys are
// kept only as SHA-256 digests and compared in constant time, so neither the
// map lookup nor the comparison leaks a key's prefix through timing.
type StaticKeys struct {
	keys []hashedKey
}

type hashedKey struct {
	digest    [sha256.Size]byte
	principal Principal
}

// NewStaticKeys returns an Authenticator for keys.
func NewStaticKeys(keys []StaticKey) *StaticKeys {
	s := &StaticKeys{}
	for _, k := range keys {
		s.keys = append(s.keys, hashedKey{digest: sha256.Sum256([]byte(k.Key)), principal: k.Principal})
	}
	return s
}

// Authenticate returns the principal the key belongs to, or CodeUnauthorized.
func (s *StaticKeys) Authenticate(_ context.Context, credential string) (Principal, error) {
	d := sha256.Sum256([]byte(credential))
	var found Principal
	ok := 0
	for _, k := range s.keys {
		eq := subtle.ConstantTimeCompare(d[:], k.digest[:])
		if eq == 1 {
			found = k.principal
		}
		ok |= eq
	}
	if ok == 0 || credential == "" {
		return Principal{}, Errorf(CodeUnauthorized, "the access token is missing, unknown or expired")
	}
	return found, nil
}

// Action is what a principal wants to do with a resource type.
type Action string

// The actions checked by Allowed.
const (
	ActionRead   Action = "read"
	ActionSearch Action = "search"
	ActionCreate Action = "create"
	ActionUpdate Action = "update"
	ActionDelete Action = "delete"
)

// permissions say, per role, what it may do with each resource type that
// holds patient data. Who may see which instance is decided by tenancy in
// the store; this table only says which roles may ask at all.
var permissions = map[Role]map[string][]Action{
	RolePractice: {
		TypeServiceRequest:        {ActionRead, ActionSearch, ActionCreate, ActionUpdate},
		TypeTask:                  {ActionRead, ActionSearch, ActionUpdate},
		TypePatient:               {ActionRead, ActionSearch},
		TypeCondition:             {ActionRead, ActionSearch},
		TypeConsent:               {ActionRead, ActionSearch},
		TypeOrganization:          {ActionRead, ActionSearch},
		TypeQuestionnaireResponse: {ActionRead, ActionSearch},
		TypeObservation:           {ActionRead, ActionSearch},
		TypeQuestionnaire:         {ActionRead, ActionSearch},
		TypeSubscription:          {ActionRead, ActionSearch, ActionCreate, ActionDelete},
	},
	RoleProvider: {
		TypeServiceRequest:        {ActionRead, ActionSearch},
		TypeTask:                  {ActionRead, ActionSearch, ActionUpdate},
		TypePatient:               {ActionRead, ActionSearch},
		TypeCondition:             {ActionRead, ActionSearch},
		TypeConsent:               {ActionRead, ActionSearch},
		TypeOrganization:          {ActionRead, ActionSearch},
		TypeQuestionnaireResponse: {ActionRead, ActionSearch, ActionCreate},
		TypeObservation:           {ActionRead, ActionSearch},
		TypeQuestionnaire:         {ActionRead, ActionSearch},
	},
	// Operators manage configuration and read reports; they do not read
	// patient records (data minimisation).
	RoleAdmin: {
		TypeOrganization:  {ActionRead, ActionSearch},
		TypeQuestionnaire: {ActionRead, ActionSearch},
		TypeAuditEvent:    {ActionRead, ActionSearch},
	},
}

// Allowed reports whether a role may perform action on resources of type typ
// at all. It is the coarse check; tenancy decides which instances.
func Allowed(role Role, action Action, typ string) bool {
	for _, a := range permissions[role][typ] {
		if a == action {
			return true
		}
	}
	return false
}

// authorize returns CodeForbidden unless p may perform action on typ.
func authorize(p Principal, action Action, typ string) error {
	if Allowed(p.Role, action, typ) {
		return nil
	}
	return Errorf(CodeForbidden, "a %s client may not %s %s resources", p.Role, action, typ)
}
