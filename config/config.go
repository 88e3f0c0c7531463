package config

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Config is the whole configuration of a sagarunner process.
type Config struct {
	// Brokers are the Kafka seed brokers (default localhost:9092).
	Brokers []string `mapstructure:"brokers"`
	// Group is the consumer group every runner of one deployment joins
	// (default "sagarunner").
	Group string `mapstructure:"group"`
	// Sagas is the folder (or file) of YAML saga definitions (default ./sagas).
	Sagas string `mapstructure:"sagas"`
	// Kafka holds client security settings.
	Kafka Kafka `mapstructure:"kafka"`
	// Topics names the topics the runner uses.
	Topics Topics `mapstructure:"topics"`
	// Redis is the default Redis connection of every state manager.
	Redis Redis `mapstructure:"redis"`
	// StateManagers overrides the connection of some domains. A domain that
	// is not listed uses Redis with the domain name as key prefix. (A list,
	// not a map: viper lowercases map keys and domain names are case
	// sensitive.)
	StateManagers []StateManager `mapstructure:"stateManagers"`
	// HTTP configures the gateway.
	HTTP HTTP `mapstructure:"http"`
	// Auth configures caller identity on the gateway.
	Auth Auth `mapstructure:"auth"`
	// Runner tunes how records are handled.
	Runner Runner `mapstructure:"runner"`
	// Timers configures automatic timeouts.
	Timers Timers `mapstructure:"timers"`
	// Log configures logging.
	Log Log `mapstructure:"log"`

	// RedisExplicit reports whether redis.addr was given (file, environment
	// or flag) rather than defaulted; `dev` embeds a Redis when it was not.
	RedisExplicit bool `mapstructure:"-"`
}

// Kafka holds Kafka client settings beyond the brokers.
type Kafka struct {
	// ClientID names the client to the brokers (default "sagarunner").
	ClientID string `mapstructure:"clientId"`
	// TLS enables TLS with the system roots.
	TLS bool `mapstructure:"tls"`
	// SASL: mechanism "plain", "scram-sha-256" or "scram-sha-512" ("" = none).
	SASLMechanism string `mapstructure:"saslMechanism"`
	SASLUser      string `mapstructure:"saslUser"`
	SASLPassword  string `mapstructure:"saslPassword"`
	// SessionTimeout is how long the group waits for a silent runner before
	// handing its partitions, and so its deadlines, to the others (default
	// 10s; the broker's group.min/max.session.timeout.ms bound it).
	SessionTimeout time.Duration `mapstructure:"sessionTimeout"`
	// RebalanceTimeout bounds how long a rebalance waits for members to
	// finish in-flight records and commit (default 60s).
	RebalanceTimeout time.Duration `mapstructure:"rebalanceTimeout"`
	// InstanceID, when set, makes this runner a static member of the group:
	// restarted with the same id it takes its old place without a
	// rebalance. Each runner of a deployment needs its own (default "":
	// dynamic membership).
	InstanceID string `mapstructure:"instanceId"`
}

// Topics names the topics and how missing ones are created.
type Topics struct {
	// Requests carries continuations and gateway requests (default
	// "sagarunner-requests"). Its partition count is the unit of work
	// sharing between runners.
	Requests string `mapstructure:"requests"`
	// Replies carries responses to the gateway (default "sagarunner-replies").
	Replies string `mapstructure:"replies"`
	// Notifications receives task-closed notifications (default
	// "HTM_TASK_CLOSED_NOTIFICATION").
	Notifications string `mapstructure:"notifications"`
	// DeadLetter receives records that cannot be processed (default
	// "sagarunner-dead-letter").
	DeadLetter string `mapstructure:"deadLetter"`
	// TaskEvents receives task lifecycle events (default
	// "sagarunner-task-events").
	TaskEvents string `mapstructure:"taskEvents"`
	// Audit receives the audit trail of decisions (default
	// "sagarunner-audit").
	Audit string `mapstructure:"audit"`
	// Create makes the runner create missing topics at start (default true).
	Create bool `mapstructure:"create"`
	// Partitions of created topics (default 16).
	Partitions int32 `mapstructure:"partitions"`
	// ReplicationFactor of created topics (default -1: the broker default).
	ReplicationFactor int16 `mapstructure:"replicationFactor"`
}

// Redis is one Redis connection and key layout.
type Redis struct {
	// Addr is host:port (default 127.0.0.1:6379); several comma-separated
	// addresses select Redis Cluster.
	Addr     string `mapstructure:"addr"`
	DB       int    `mapstructure:"db"`
	Username string `mapstructure:"username"`
	Password string `mapstructure:"password"`
	// Prefix of every key (default: the domain name).
	Prefix string `mapstructure:"prefix"`
	// Shards of the deadline index (default 16); keep it equal to the
	// partitions of the requests topic so each partition owns one shard.
	Shards int `mapstructure:"shards"`
	// MaxDomains bounds how many domains' stores are kept open at once
	// (default 1024), so requests naming ever new domains cannot grow
	// memory without bound. Only the default section reads it.
	MaxDomains int `mapstructure:"maxDomains"`
	// ClosedTTL is how long a closed task's decision is kept for replays
	// and look-ups (default 168h).
	ClosedTTL time.Duration `mapstructure:"closedTTL"`
}

// StateManager gives one domain its own Redis connection or layout. Unset
// fields take the value of the default Redis section.
type StateManager struct {
	Domain string `mapstructure:"domain"`
	Redis  `mapstructure:",squash"`
}

// HTTP configures the gateway.
type HTTP struct {
	// Addr to listen on (default ":8080"; "" disables the gateway).
	Addr string `mapstructure:"addr"`
	// Timeout is how long a synchronous request waits for its response
	// before answering 504 (default 10s).
	Timeout time.Duration `mapstructure:"timeout"`
	// MaxBody is the largest accepted request body in bytes (default 1 MiB).
	MaxBody int64 `mapstructure:"maxBody"`
	// PublishRoles, with auth on, limits POST /topics/{topic} to callers
	// holding one of these roles (default: any authenticated caller).
	PublishRoles []string `mapstructure:"publishRoles"`
	// PublishTopics are the only topics POST /topics/{topic} publishes to
	// (default none; `dev` adds the loaded sagas' trigger topics). Internal
	// topics may not be listed.
	PublishTopics []string `mapstructure:"publishTopics"`
	// ReadTimeout bounds reading a whole request, body included, so slow
	// uploads cannot hold connections (default 30s). Go's server keeps this
	// deadline on the connection while the handler runs and cancels the
	// request when it passes, so it must exceed Timeout too.
	ReadTimeout time.Duration `mapstructure:"readTimeout"`
	// WriteTimeout bounds a request from the end of its headers to the
	// end of its answer; it must exceed Timeout, or synchronous requests
	// are cut before their 504 (default 20s).
	WriteTimeout time.Duration `mapstructure:"writeTimeout"`
	// IdleTimeout closes keep-alive connections idle this long (default 60s).
	IdleTimeout time.Duration `mapstructure:"idleTimeout"`
	// MaxHeaderBytes bounds the request line and headers (default 65536).
	MaxHeaderBytes int `mapstructure:"maxHeaderBytes"`
}

// Auth configures bearer-token authentication. With neither tokens nor a
// JWT secret every caller is trusted.
type Auth struct {
	// Tokens are static bearer tokens. (A list, not a map: viper lowercases
	// map keys and tokens are case sensitive.)
	Tokens []Token `mapstructure:"tokens"`
	// JWT accepts HS256 tokens signed with Secret.
	JWT JWT `mapstructure:"jwt"`
	// AdminRoles may act on and see every task of their tenant, read
	// suspended envelopes and start sweeping sagas over HTTP (default none).
	AdminRoles []string `mapstructure:"adminRoles"`
}

// Token is a static bearer token and the identity it stands for.
type Token struct {
	Token string   `mapstructure:"token"`
	User  string   `mapstructure:"user"`
	Roles []string `mapstructure:"roles"`
	// Tenant scopes what the token's caller sees and touches ("" is the
	// default tenant).
	Tenant string `mapstructure:"tenant"`
}

// JWT configures HS256 JWT validation.
type JWT struct {
	Secret     string `mapstructure:"secret"`
	Issuer     string `mapstructure:"issuer"`
	Audience   string `mapstructure:"audience"`
	UserClaim  string `mapstructure:"userClaim"`
	RolesClaim string `mapstructure:"rolesClaim"`
	// TenantClaim names the claim holding the tenant (default "tenant").
	TenantClaim string `mapstructure:"tenantClaim"`
	// RequireExp refuses tokens without an exp claim (default true).
	RequireExp bool `mapstructure:"requireExp"`
}

// Runner tunes record handling; the defaults suit most deployments.
type Runner struct {
	// BatchSize is how many records of one partition are handled before
	// their outputs are produced and committed together (default 500).
	BatchSize int `mapstructure:"batchSize"`
	// KeyConcurrency is how many distinct keys of one partition are handled
	// at once; one key's records always run in order (default 8; 1 handles
	// each partition strictly in offset order).
	KeyConcurrency int `mapstructure:"keyConcurrency"`
	// MaxInFlight is how many polled records one partition may queue before
	// its fetching pauses (default 2000).
	MaxInFlight int `mapstructure:"maxInFlight"`
	// MaxAttempts is how often a record failing with an error known to be
	// neither transient nor permanent is tried before it is dead-lettered
	// (default 5).
	MaxAttempts int `mapstructure:"maxAttempts"`
	// MaxHops is how many replies and published records may follow one
	// another from one request before the next is dead-lettered, so no
	// record loops for ever (default 32).
	MaxHops int `mapstructure:"maxHops"`
	// MaxRecordBytes is the largest record the runner produces; a larger
	// output is dead-lettered, a larger dead letter cut to fit (default
	// 1000000, the broker's default message.max.bytes).
	MaxRecordBytes int `mapstructure:"maxRecordBytes"`
	// StuckAfter is how long a partition's oldest uncommitted record may
	// wait before /readyz reports the partition stuck (default 2m).
	StuckAfter time.Duration `mapstructure:"stuckAfter"`
	// SigningKey signs the continuations runners produce, so a forged one
	// is dead-lettered; at least 32 bytes. Empty (the default): one key is
	// drawn at random and kept in the default Redis, shared by every runner
	// that uses it.
	SigningKey string `mapstructure:"signingKey"`
}

// Timers configures automatic timeouts.
type Timers struct {
	// PollInterval between looks at a shard's due deadlines (default 10ms).
	PollInterval time.Duration `mapstructure:"pollInterval"`
	// BatchSize is how many deadlines one look fires at most (default 500).
	BatchSize int `mapstructure:"batchSize"`
	// Domains whose deadlines are fired besides those the sagas name.
	Domains []string `mapstructure:"domains"`
}

// Log configures logging.
type Log struct {
	// Level: debug, info, warn or error (default info).
	Level string `mapstructure:"level"`
	// Format: text or json (default text).
	Format string `mapstructure:"format"`
}

// Defaults are applied before the file, the environment and the flags.
var defaults = map[string]any{
	"brokers":                  []string{"localhost:9092"},
	"group":                    "sagarunner",
	"sagas":                    "./sagas",
	"kafka.clientId":           "sagarunner",
	"kafka.sessionTimeout":     "10s",
	"kafka.rebalanceTimeout":   "60s",
	"kafka.instanceId":         "",
	"topics.requests":          "sagarunner-requests",
	"topics.replies":           "sagarunner-replies",
	"topics.notifications":     "HTM_TASK_CLOSED_NOTIFICATION",
	"topics.deadLetter":        "sagarunner-dead-letter",
	"topics.taskEvents":        "sagarunner-task-events",
	"topics.audit":             "sagarunner-audit",
	"topics.create":            true,
	"topics.partitions":        16,
	"topics.replicationFactor": -1,
	"redis.addr":               "127.0.0.1:6379",
	"redis.db":                 0,
	"redis.shards":             16,
	"redis.closedTTL":          "168h",
	"redis.maxDomains":         1024,
	"http.addr":                ":8080",
	"http.timeout":             "10s",
	"http.maxBody":             1 << 20,
	"http.readTimeout":         "30s",
	"http.writeTimeout":        "20s",
	"http.idleTimeout":         "60s",
	"http.maxHeaderBytes":      1 << 16,
	"runner.batchSize":         500,
	"runner.keyConcurrency":    8,
	"runner.maxInFlight":       2000,
	"runner.maxAttempts":       5,
	"runner.maxHops":           32,
	"runner.maxRecordBytes":    1000000,
	"runner.stuckAfter":        "2m",
	"runner.signingKey":        "",
	"timers.pollInterval":      "10ms",
	"timers.batchSize":         500,
	"auth.jwt.userClaim":       "sub",
	"auth.jwt.rolesClaim":      "roles",
	"auth.jwt.tenantClaim":     "tenant",
	"auth.jwt.requireExp":      true,
	"log.level":                "info",
	"log.format":               "text",
}

// EnvPrefix prefixes every environment variable: SAGARUNNER_REDIS_ADDR sets
// redis.addr.
const EnvPrefix = "SAGARUNNER"

// Load reads the configuration: defaults, then file (if not ""), then the
// environment, then the flags in bind (flag name → config key) that were set
// on fs. Every problem is reported at once.
func Load(file string, fs *pflag.FlagSet, bind map[string]string) (*Config, error) {
	var keyErr error
	v := viper.New()
	for k, d := range defaults {
		v.SetDefault(k, d)
	}
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	// AutomaticEnv only answers for keys viper knows; bind every default
	// key so SAGARUNNER_* works for them all.
	for k := range defaults {
		_ = v.BindEnv(k)
	}
	if file != "" {
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("config: read %s: %w", file, err)
		}
		keyErr = checkKeys(v, file)
	}
	if fs != nil {
		for flag, key := range bind {
			f := fs.Lookup(flag)
			if f == nil {
				return nil, fmt.Errorf("config: no flag %q to bind to %q", flag, key)
			}
			if f.Changed {
				if err := v.BindPFlag(key, f); err != nil {
					return nil, fmt.Errorf("config: bind flag %q: %w", flag, err)
				}
			}
		}
	}
	var c Config
	if err := v.Unmarshal(&c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c.RedisExplicit = os.Getenv(EnvPrefix+"_REDIS_ADDR") != "" || (file != "" && v.InConfig("redis.addr"))
	if fs != nil {
		for flag, key := range bind {
			if key == "redis.addr" && fs.Lookup(flag) != nil && fs.Lookup(flag).Changed {
				c.RedisExplicit = true
			}
		}
	}
	// A comma-separated SAGARUNNER_BROKERS arrives as one element.
	c.Brokers = splitList(c.Brokers)
	if err := errors.Join(keyErr, c.Validate()); err != nil {
		return nil, err
	}
	return &c, nil
}

func splitList(in []string) []string {
	var out []string
	for _, s := range in {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// known lists every accepted key; a file with other keys is rejected so a
// typo does not silently fall back to a default.
var known = func() map[string]bool {
	m := map[string]bool{}
	for k := range defaults {
		m[strings.ToLower(k)] = true
	}
	for _, k := range []string{"kafka.tls", "kafka.saslMechanism", "kafka.saslUser", "kafka.saslPassword",
		"redis.username", "redis.password", "http.publishRoles", "http.publishTopics", "auth.adminRoles", "redis.prefix", "auth.jwt.secret", "auth.jwt.issuer",
		"auth.jwt.audience", "timers.domains"} {
		m[strings.ToLower(k)] = true
	}
	return m
}()

func checkKeys(v *viper.Viper, file string) error {
	var errs []string
	for _, k := range v.AllKeys() {
		switch {
		case known[k]:
		case k == "auth.tokens":
			errs = append(errs, listKeys(v.Get(k), file, k, "token", "user", "roles", "tenant")...)
		case k == "statemanagers":
			errs = append(errs, listKeys(v.Get(k), file, k, "domain", "addr", "db", "username", "password",
				"prefix", "shards", "closedttl")...)
		default:
			errs = append(errs, fmt.Sprintf("%s: unknown key %q", file, k))
		}
	}
	sort.Strings(errs)
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

// listKeys checks the keys of each map in a list value.
func listKeys(val any, file, key string, allowed ...string) []string {
	items, ok := val.([]any)
	if !ok {
		return []string{fmt.Sprintf("%s: %s must be a list", file, key)}
	}
	var errs []string
	for i, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			errs = append(errs, fmt.Sprintf("%s: %s[%d] must be a mapping", file, key, i))
			continue
		}
		for k := range m {
			found := false
			for _, a := range allowed {
				if strings.EqualFold(k, a) {
					found = true
				}
			}
			if !found {
				errs = append(errs, fmt.Sprintf("%s: unknown key %q in %s[%d] (known: %s)", file, k, key, i, strings.Join(allowed, ", ")))
			}
		}
	}
	return errs
}

// Validate reports every inconsistency at once.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Brokers) == 0 {
		add("brokers: at least one broker is required")
	}
	if c.Group == "" {
		add("group: must not be empty")
	}
	for name, t := range map[string]string{"topics.requests": c.Topics.Requests, "topics.replies": c.Topics.Replies,
		"topics.notifications": c.Topics.Notifications, "topics.deadLetter": c.Topics.DeadLetter,
		"topics.taskEvents": c.Topics.TaskEvents, "topics.audit": c.Topics.Audit} {
		if t == "" {
			add("%s: must not be empty", name)
		}
	}
	if c.Topics.Requests == c.Topics.Replies {
		add("topics.replies: must differ from topics.requests")
	}
	if c.Topics.Partitions < 1 {
		add("topics.partitions: must be at least 1, got %d", c.Topics.Partitions)
	}
	checkRedis := func(name string, r Redis) {
		if r.Shards < 0 {
			add("%s.shards: must not be negative, got %d", name, r.Shards)
		}
		if r.ClosedTTL < 0 {
			add("%s.closedTTL: must not be negative", name)
		}
	}
	if c.Redis.Addr == "" {
		add("redis.addr: must not be empty")
	}
	if c.Redis.Shards < 1 {
		add("redis.shards: must be at least 1, got %d", c.Redis.Shards)
	}
	checkRedis("redis", c.Redis)
	seen := map[string]bool{}
	for i, sm := range c.StateManagers {
		name := fmt.Sprintf("stateManagers[%d]", i)
		if sm.Domain == "" {
			add("%s.domain: must not be empty", name)
		} else if seen[sm.Domain] {
			add("%s.domain: %q is listed twice", name, sm.Domain)
		}
		seen[sm.Domain] = true
		checkRedis(name, sm.Redis)
	}
	firstToken := map[string]int{}
	for i, t := range c.Auth.Tokens {
		if t.Token == "" {
			add("auth.tokens[%d].token: must not be empty", i)
		}
		if t.User == "" {
			add("auth.tokens[%d].user: must not be empty", i)
		}
		// Never print the token: configuration errors end up in logs.
		if j, dup := firstToken[t.Token]; dup && t.Token != "" {
			add("auth.tokens[%d].token: same token as auth.tokens[%d]; each token must stand for one identity", i, j)
		} else {
			firstToken[t.Token] = i
		}
	}
	for i, r := range c.Auth.AdminRoles {
		if r == "" {
			add("auth.adminRoles[%d]: must not be empty", i)
		}
	}
	internal := c.InternalTopics()
	for i, t := range c.HTTP.PublishTopics {
		switch {
		case t == "":
			add("http.publishTopics[%d]: must not be empty", i)
		case strings.HasPrefix(t, "__"):
			add("http.publishTopics[%d]: %q is a broker-internal topic", i, t)
		case internal[t] != "":
			add("http.publishTopics[%d]: %q is the %s topic; internal topics are never publishable over HTTP", i, t, internal[t])
		}
	}
	if c.Kafka.SessionTimeout <= 0 || c.Kafka.RebalanceTimeout <= 0 {
		add("kafka.sessionTimeout and kafka.rebalanceTimeout: must be positive")
	}
	if c.HTTP.Timeout <= 0 {
		add("http.timeout: must be positive")
	}
	if c.HTTP.MaxBody <= 0 {
		add("http.maxBody: must be positive")
	}
	if c.HTTP.IdleTimeout <= 0 {
		add("http.idleTimeout: must be positive")
	}
	for name, d := range map[string]time.Duration{"http.readTimeout": c.HTTP.ReadTimeout, "http.writeTimeout": c.HTTP.WriteTimeout} {
		if d <= c.HTTP.Timeout {
			add("%s: must exceed http.timeout (%v), or synchronous requests are cut before they answer, got %v", name, c.HTTP.Timeout, d)
		}
	}
	if c.HTTP.MaxHeaderBytes < 1024 {
		add("http.maxHeaderBytes: must be at least 1024, got %d", c.HTTP.MaxHeaderBytes)
	}
	if c.Runner.BatchSize < 1 || c.Runner.KeyConcurrency < 1 || c.Runner.MaxInFlight < c.Runner.BatchSize {
		add("runner: batchSize and keyConcurrency must be at least 1 and maxInFlight at least batchSize")
	}
	if c.Runner.MaxAttempts < 1 {
		add("runner.maxAttempts: must be at least 1, got %d", c.Runner.MaxAttempts)
	}
	if c.Runner.MaxHops < 1 {
		add("runner.maxHops: must be at least 1, got %d", c.Runner.MaxHops)
	}
	if c.Runner.MaxRecordBytes < 1024 {
		add("runner.maxRecordBytes: must be at least 1024, got %d", c.Runner.MaxRecordBytes)
	}
	if c.Runner.StuckAfter <= 0 {
		add("runner.stuckAfter: must be positive")
	}
	if k := c.Runner.SigningKey; k != "" && len(k) < MinSigningKeyBytes {
		// The length only: the key is a secret.
		add("runner.signingKey: must be at least %d bytes, got %d (leave it empty to share a random key through Redis)", MinSigningKeyBytes, len(k))
	}
	if c.Redis.MaxDomains < 1 {
		add("redis.maxDomains: must be at least 1, got %d", c.Redis.MaxDomains)
	}
	if c.Timers.PollInterval <= 0 {
		add("timers.pollInterval: must be positive")
	}
	if c.Timers.BatchSize < 1 {
		add("timers.batchSize: must be at least 1")
	}
	switch strings.ToLower(c.Kafka.SASLMechanism) {
	case "", "plain", "scram-sha-256", "scram-sha-512":
	default:
		add("kafka.saslMechanism: want plain, scram-sha-256 or scram-sha-512, got %q", c.Kafka.SASLMechanism)
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		add("log.level: want debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		add("log.format: want text or json, got %q", c.Log.Format)
	}
	return errors.Join(errs...)
}

// MinSigningKeyBytes is the shortest runner.signingKey accepted: an HMAC
// key shorter than its hash's output weakens it.
const MinSigningKeyBytes = 32

// InternalTopics maps each topic the runners own (requests, replies,
// notifications, task events, audit, dead letter) to what it is. None of
// them may be published to over HTTP: a record there would be read as the
// runners' own.
func (c *Config) InternalTopics() map[string]string {
	m := map[string]string{}
	for _, t := range []struct{ name, topic string }{
		{"dead-letter", c.Topics.DeadLetter}, {"audit", c.Topics.Audit}, {"task-event", c.Topics.TaskEvents},
		{"notification", c.Topics.Notifications}, {"reply", c.Topics.Replies}, {"request", c.Topics.Requests},
	} {
		if t.topic != "" {
			m[t.topic] = t.name
		}
	}
	return m
}

// AuthEnabled reports whether any authentication is configured.
func (c *Config) AuthEnabled() bool { return len(c.Auth.Tokens) > 0 || c.Auth.JWT.Secret != "" }
