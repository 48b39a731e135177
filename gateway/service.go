// Package gateway is the domain of spgateway: referrals, their Tasks, the
// rules that govern them, routing, and the Service that carries them out over
// a Store. It depends on nothing outside the standard library, so the rules
// can be read and tested on their own.
package gateway

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"
)

// Config is what the Service needs from configuration.
type Config struct {
	Store         Store
	Documents     Documents
	Organizations []Organization
	Routing       []RoutingRule
	// RelaxNHSNumberCheck accepts an NHS number whose last digit does not
	// match its Modulus 11 check (test environments only).
	RelaxNHSNumberCheck bool
	// Instruments are PROM instruments beyond the built-in ones.
	Instruments []Instrument
	// Programmes give providers their PROM instrument and schedule;
	// others follow DefaultProgramme.
	Programmes []Programme
	// Cases renders providers' case records; PushProviders are the
	// providers whose case records are pushed (they have an adapter).
	Cases         CaseRecords
	PushProviders []string
	// Wake, when set, is called after a write enqueued outbox events.
	Wake func()
	// Outbox, when set, lets operators see and redrive deliveries.
	Outbox Outbox
	// Auditor keeps the audit events of reads and refusals; the default
	// writes each in a transaction of its own (serving uses a
	// BatchAuditor). Writes audit themselves in their own transaction.
	Auditor Auditor
	// SubscriptionEndpoints is where practices' Subscriptions may point;
	// the zero value allows https to public addresses only.
	SubscriptionEndpoints EndpointPolicy
	// Now and NewID default to the wall clock and random UUIDs.
	Now   func() time.Time
	NewID func() string
}

// Service carries out what clients ask, checking who may do what.
type Service struct {
	store   Store
	docs    Documents
	dir     Directory
	orgs    []Organization
	routing []RoutingRule
	relaxed bool
	// endpoints is where Subscriptions may point.
	endpoints EndpointPolicy
	// instruments are the built-in PROM instruments, then the configured.
	instruments []Instrument
	programmes  []Programme
	cases       CaseRecords
	pushes      map[string]bool
	wake        func()
	outbox      Outbox
	auditor     Auditor
	now         func() time.Time
	newID       func() string
}

// NewService returns a Service, or an error naming what is missing or
// inconsistent in cfg.
func NewService(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Documents == nil {
		return nil, errors.New("gateway.NewService: a store and documents are required")
	}
	s := &Service{
		store:   cfg.Store,
		docs:    cfg.Documents,
		dir:     NewDirectory(cfg.Organizations),
		orgs:    cfg.Organizations,
		routing: cfg.Routing,
		relaxed: cfg.RelaxNHSNumberCheck,

		endpoints: cfg.SubscriptionEndpoints,
		now:       cfg.Now,
		newID:     cfg.NewID,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.newID == nil {
		s.newID = NewUUID
	}
	s.auditor = cfg.Auditor
	if s.auditor == nil {
		s.auditor = StoreAuditor{Store: cfg.Store}
	}
	s.instruments = BuiltInInstruments()
	for _, in := range cfg.Instruments {
		if err := CheckInstrument(in); err != nil {
			return nil, fmt.Errorf("gateway.NewService: %w", err)
		}
		for _, known := range s.instruments {
			if known.ID == in.ID || known.URL == in.URL {
				return nil, fmt.Errorf("gateway.NewService: instrument %s: id or url already taken by %s", in.ID, known.ID)
			}
		}
		s.instruments = append(s.instruments, in)
	}
	for _, p := range cfg.Programmes {
		if _, ok := s.instrument(p.Instrument); !ok {
			return nil, fmt.Errorf("gateway.NewService: programme %q: unknown instrument %q", p.Name, p.Instrument)
		}
		if p.Schedule.BaselineDays <= 0 || p.Schedule.FollowUpMonths <= 0 {
			return nil, fmt.Errorf("gateway.NewService: programme %q: the schedule needs baseline days and follow-up months above 0", p.Name)
		}
		for _, code := range p.Providers {
			if !s.dir.Is(code, OrgProvider) {
				return nil, fmt.Errorf("gateway.NewService: programme %q: %q is not a provider", p.Name, code)
			}
		}
	}
	s.programmes = cfg.Programmes
	s.cases, s.wake, s.outbox, s.pushes = cfg.Cases, cfg.Wake, cfg.Outbox, map[string]bool{}
	if cfg.Wake != nil {
		s.store = wakingStore{Store: s.store, wake: cfg.Wake}
	}
	for _, code := range cfg.PushProviders {
		if !s.dir.Is(code, OrgProvider) {
			return nil, fmt.Errorf("gateway.NewService: %q pushes case records but is not a provider", code)
		}
		if s.cases == nil || !s.cases.Has(code) {
			return nil, fmt.Errorf("gateway.NewService: %q pushes case records, but has no case-record configuration", code)
		}
		s.pushes[code] = true
	}
	for i, r := range cfg.Routing {
		if r.Practice != "" && !s.dir.Is(r.Practice, OrgPractice) {
			return nil, fmt.Errorf("gateway.NewService: routing rule %d: %q is not a practice", i, r.Practice)
		}
		if !s.dir.Is(r.Provider, OrgProvider) {
			return nil, fmt.Errorf("gateway.NewService: routing rule %d: %q is not a provider", i, r.Provider)
		}
	}
	return s, nil
}

// Ready reports whether the service can serve: its store answers and is
// migrated.
func (s *Service) Ready(ctx context.Context) error {
	return s.store.Ping(ctx)
}

// Read returns the current version (version 0) or a given version of a
// resource the caller may read. It returns CodeForbidden for a type the
// caller's role may not read and CodeNotFound for anything else it may not
// see.
func (s *Service) Read(ctx context.Context, p Principal, typ, id string, version int) (res Resource, err error) {
	action := AuditRead
	if version > 0 {
		action = AuditVread
	}
	a, ctx := s.begin(ctx, p, action, typ, typ+"/"+id)
	defer func() { err = a.end(ctx, err) }()
	if err := authorize(p, ActionRead, typ); err != nil {
		return Resource{}, err
	}
	err = s.store.View(ctx, func(v View) error {
		var err error
		res, err = v.GetFor(ctx, p.Org, typ, id, version)
		return err
	})
	if err != nil {
		return Resource{}, err
	}
	a.touch(res)
	return s.view(p, res)
}

// Search runs q for the caller: q.Org is always the caller's organisation.
// It returns CodeForbidden for a type (or included type) the caller's role
// may not search.
func (s *Service) Search(ctx context.Context, p Principal, q SearchQuery) (page SearchPage, err error) {
	a, ctx := s.begin(ctx, p, AuditSearch, q.Type)
	defer func() { err = a.end(ctx, err) }()
	if err := authorize(p, ActionSearch, q.Type); err != nil {
		return SearchPage{}, err
	}
	for _, inc := range q.Includes {
		if err := authorize(p, ActionRead, inc.Type); err != nil {
			return SearchPage{}, err
		}
	}
	q.Org = p.Org
	err = s.store.View(ctx, func(v View) error {
		var err error
		page, err = v.Search(ctx, q)
		return err
	})
	if err != nil {
		return SearchPage{}, err
	}
	a.touch(page.Matches...)
	a.touch(page.Included...)
	for _, list := range [][]Resource{page.Matches, page.Included} {
		for i := range list {
			if list[i], err = s.view(p, list[i]); err != nil {
				return SearchPage{}, err
			}
		}
	}
	return page, nil
}

// Organization returns a configured organisation. Organisations are public
// within the gateway: every client may read them.
func (s *Service) Organization(p Principal, code string) (Organization, error) {
	if err := authorize(p, ActionRead, TypeOrganization); err != nil {
		return Organization{}, err
	}
	o, ok := s.dir[code]
	if !ok {
		return Organization{}, Errorf(CodeNotFound, "Organization/%s is not known", code)
	}
	return o, nil
}

// Organizations returns every configured organisation, in configuration order.
func (s *Service) Organizations(p Principal) ([]Organization, error) {
	if err := authorize(p, ActionSearch, TypeOrganization); err != nil {
		return nil, err
	}
	return s.orgs, nil
}

// NewUUID returns a random (version 4) UUID.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
