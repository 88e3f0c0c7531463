package statemanager

import (
	"container/list"
	"fmt"
	"sort"
	"sync"

	"github.com/redis/go-redis/v9"
)

// DomainConfig is the state manager of one configured domain.
type DomainConfig struct {
	// Client is the domain's Redis; nil uses the resolver's default client.
	Client redis.UniversalClient
	RedisConfig
}

// DefaultMaxStores is how many domains' stores a RedisResolver keeps by
// default (WithMaxStores).
const DefaultMaxStores = 1024

// RedisResolver is the Resolver of RedisStores (the interface already holds
// the name Resolver in this package). It hands out one RedisStore per domain,
// created on first use and cached. A domain without an entry uses the default
// client with the domain name as key prefix, so a new saga needs no
// configuration change (SPEC §8). It is safe for concurrent use.
//
// Domain names arrive in requests, so the cache is bounded: past MaxStores
// the least recently used store is dropped. That is safe at any time: a
// RedisStore holds no goroutine while idle (its pipeliner runs one only to
// drain calls already queued, and that one ends with the queue) and no state
// beyond key names, so a caller still holding a dropped store finishes with
// it, and the next lookup builds an equivalent one.
type RedisResolver struct {
	def       redis.UniversalClient
	defaults  RedisConfig
	domains   map[string]DomainConfig
	maxStores int

	mu     sync.Mutex
	stores map[string]*list.Element // of *cachedStore, in lru
	lru    list.List                // front: most recently used
}

type cachedStore struct {
	domain string
	store  *RedisStore
}

// ResolverOption configures a RedisResolver.
type ResolverOption func(*RedisResolver)

// WithMaxStores bounds how many domains' stores the resolver keeps at once;
// default DefaultMaxStores. n <= 0 keeps the default.
func WithMaxStores(n int) ResolverOption {
	return func(r *RedisResolver) {
		if n > 0 {
			r.maxStores = n
		}
	}
}

var _ Resolver = (*RedisResolver)(nil)

// NewResolver returns a resolver over the default client def (nil: only the
// configured domains resolve) and the configured domains. defaults supplies
// the shard count and ClosedTTL of every domain whose own config leaves them
// zero; when defaults.Prefix is set, unconfigured domains use the prefix
// "<defaults.Prefix>:<domain>" instead of the bare domain name.
func NewResolver(def redis.UniversalClient, defaults RedisConfig, domains map[string]DomainConfig, opts ...ResolverOption) *RedisResolver {
	copied := make(map[string]DomainConfig, len(domains))
	for name, dc := range domains {
		copied[name] = dc
	}
	r := &RedisResolver{def: def, defaults: defaults, domains: copied, maxStores: DefaultMaxStores,
		stores: map[string]*list.Element{}}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Store returns the domain's store, creating it on first use. A name
// ValidDomain refuses is ErrInvalidDomain (permanent: dead-letter the
// record), and nothing is created for it.
func (r *RedisResolver) Store(domain string) (Store, error) {
	s, err := r.RedisStore(domain)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// RedisStore is Store with the concrete type, for callers that need it.
func (r *RedisResolver) RedisStore(domain string) (*RedisStore, error) {
	if domain == "" {
		return nil, fmt.Errorf("%w: empty domain name", ErrInvalidDomain)
	}
	if !ValidDomain(domain) {
		// Quote at most a prefix: the name may be huge, and the error is
		// logged and dead-lettered.
		shown := domain
		if len(shown) > 80 {
			shown = shown[:80] + "..."
		}
		return nil, fmt.Errorf("%w: %q: want 1 to 64 letters, digits, '.', '_' or '-'", ErrInvalidDomain, shown)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.stores[domain]; ok {
		r.lru.MoveToFront(e)
		return e.Value.(*cachedStore).store, nil
	}
	client, cfg, err := r.configOf(domain)
	if err != nil {
		return nil, err
	}
	s, err := NewRedisStore(client, domain, cfg)
	if err != nil {
		return nil, err
	}
	r.stores[domain] = r.lru.PushFront(&cachedStore{domain: domain, store: s})
	for r.lru.Len() > r.maxStores {
		oldest := r.lru.Back()
		r.lru.Remove(oldest)
		delete(r.stores, oldest.Value.(*cachedStore).domain)
	}
	return s, nil
}

// Cached is how many stores the resolver holds now (at most MaxStores).
func (r *RedisResolver) Cached() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lru.Len()
}

func (r *RedisResolver) configOf(domain string) (redis.UniversalClient, RedisConfig, error) {
	dc, configured := r.domains[domain]
	cfg := r.defaults
	cfg.Prefix = domain
	if r.defaults.Prefix != "" {
		cfg.Prefix = r.defaults.Prefix + ":" + domain
	}
	client := r.def
	if configured {
		if dc.Prefix != "" {
			cfg.Prefix = dc.Prefix
		}
		if dc.Shards != 0 {
			cfg.Shards = dc.Shards
		}
		if dc.ClosedTTL != 0 {
			cfg.ClosedTTL = dc.ClosedTTL
		}
		if dc.Client != nil {
			client = dc.Client
		}
	}
	if client == nil {
		return nil, RedisConfig{}, fmt.Errorf("statemanager: domain %q: no state manager configured and no default Redis", domain)
	}
	return client, cfg, nil
}

// Domains lists the configured domains, sorted.
func (r *RedisResolver) Domains() []string {
	out := make([]string, 0, len(r.domains))
	for name := range r.domains {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
