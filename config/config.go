package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
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
	// Tasks configures the task lifecycle's early answers.
	Tasks Tasks `mapstructure:"tasks"`
	// Instances configures instance tracking (SPEC §13).
	Instances Instances `mapstructure:"instances"`
	// Log configures logging.
	Log Log `mapstructure:"log"`

	// RedisExplicit reports whether redis.addr was given (file, environment
	// or flag) rather than defaulted; `dev` embeds a Redis when it was not.
	RedisExplicit bool `mapstructure:"-"`
	// HTTPExplicit reports whether http.addr was given rather than
	// defaulted; `dev` listens on the loopback interface when it was not.
	HTTPExplicit bool `mapstructure:"-"`
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
	// MaxInFlightBytes bounds the bytes of polled records not yet
	// committed, and of their outputs, across all partitions; past it
	// partitions pause fetching until half of it is free. A record larger
	// than all of it is still handled (default 67108864, 64 MiB; at least
	// 65536).
	MaxInFlightBytes int `mapstructure:"maxInFlightBytes"`
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
	// MaxIdle is the longest a shard with nothing due sleeps before it is
	// looked at again (default 1s, at least pollInterval, at most 10s):
	// a start or a moved deadline wakes it sooner, and a lost wake-up
	// delays a deadline by at most this.
	MaxIdle time.Duration `mapstructure:"maxIdle"`
	// Domains whose deadlines are fired besides those the sagas name.
	Domains []string `mapstructure:"domains"`
}

// Tasks configures the early answers of the task lifecycle (SPEC §12): an
// operation that arrives on Kafka before its task starts waits for it.
type Tasks struct {
	// EarlyTTL is how long such an operation waits before it is
	// dead-lettered EARLY_EXPIRED (default 10m).
	EarlyTTL time.Duration `mapstructure:"earlyTTL"`
	// EarlyMax bounds the operations waiting in one domain (default
	// 100000); past it they are dead-lettered EARLY_REFUSED.
	EarlyMax int `mapstructure:"earlyMax"`
}

// Instances configures the instance records, timelines and audit trail,
// kept in the default Redis.
type Instances struct {
	// Enabled turns tracking on (default true); off, no instance is
	// recorded and nothing goes to topics.audit.
	Enabled bool `mapstructure:"enabled"`
	// TimelineCap bounds each instance's timeline; the newest events are
	// kept (default 1000).
	TimelineCap int `mapstructure:"timelineCap"`
	// Retention is how long an ended instance is kept (default 168h).
	Retention time.Duration `mapstructure:"retention"`
	// Prefix is the Redis key prefix (default "sagarunner-instances").
	Prefix string `mapstructure:"prefix"`
	// Shards spreads instances over this many Redis Cluster slots
	// (default 16); keep it fixed per prefix.
	Shards int `mapstructure:"shards"`
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
	"runner.maxInFlightBytes":  64 << 20,
	"runner.maxAttempts":       5,
	"runner.maxHops":           32,
	"runner.maxRecordBytes":    1000000,
	"runner.stuckAfter":        "2m",
	"runner.signingKey":        "",
	"timers.pollInterval":      "10ms",
	"timers.batchSize":         500,
	"timers.maxIdle":           "1s",
	"tasks.earlyTTL":           "10m",
	"tasks.earlyMax":           10000,
	"instances.enabled":        true,
	"instances.timelineCap":    1000,
	"instances.retention":      "168h",
	"instances.prefix":         "sagarunner-instances",
	"instances.shards":         16,
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
// on fs. Every problem is reported at once, as Errors: each located at its
// file:line:col, or naming the flag or environment variable that set the
// value.
func Load(file string, fs *pflag.FlagSet, bind map[string]string) (*Config, error) {
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
	var errs Errors
	pos := filePositions{}
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, Errors{{File: file, Reason: fmt.Sprintf("read: %v", unwrapPathError(err))}}
		}
		// yaml.v3 first: its nodes carry the positions viper drops, and a
		// syntax error is reported at its line.
		var perrs Errors
		if pos, perrs = parseFile(file, data); pos == nil {
			return nil, perrs
		}
		errs = append(errs, perrs...)
		v.SetConfigType("yaml")
		if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
			return nil, Errors{{File: file, Reason: err.Error()}}
		}
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
	// locate says where key's value came from, the same precedence as
	// viper's: a flag, then the environment, then the file.
	flagOf := func(key string) string {
		for flag, k := range bind {
			if strings.EqualFold(k, key) && fs != nil && fs.Lookup(flag) != nil && fs.Lookup(flag).Changed {
				return "--" + flag
			}
		}
		return ""
	}
	locate := func(e Error) Error {
		if e.File != "" || e.Key == "" {
			return e
		}
		if f := flagOf(e.Key); f != "" {
			e.Source = f
			return e
		}
		if os.Getenv(envVar(e.Key)) != "" {
			e.Source = envVar(e.Key)
			return e
		}
		if at, ok := pos.lookup(e.Key); ok {
			e.File, e.Line, e.Col = file, at.line, at.col
		}
		return e
	}
	var c Config
	if err := v.Unmarshal(&c); err != nil {
		// A value of the wrong type leaves its field zero; checking the
		// rest would only add noise about it.
		reported := map[string]bool{}
		for _, e := range errs {
			reported[strings.ToLower(e.Key)] = true
		}
		for _, e := range decodeErrors(err) {
			if !reported[strings.ToLower(e.Key)] { // "must be a mapping" already says it
				errs = append(errs, locate(e))
			}
		}
		return nil, errs.orNil()
	}
	explicit := func(key string) bool {
		return flagOf(key) != "" || os.Getenv(envVar(key)) != "" || (file != "" && v.InConfig(key))
	}
	c.RedisExplicit = explicit("redis.addr")
	c.HTTPExplicit = explicit("http.addr")
	// A comma-separated SAGARUNNER_BROKERS arrives as one element.
	c.Brokers = splitList(c.Brokers)
	for _, e := range c.validate() {
		errs = append(errs, locate(e))
	}
	if err := errs.orNil(); err != nil {
		return nil, err
	}
	return &c, nil
}

// decodeLine is one problem of mapstructure's decoding error: 'key' reason.
var decodeLine = regexp.MustCompile(`^'([^']+)' (.*)$`)

// decodeErrors splits viper's decoding error into one Error per key.
func decodeErrors(err error) Errors {
	var out Errors
	for _, line := range strings.Split(err.Error(), "\n") {
		if sub := decodeLine.FindStringSubmatch(strings.TrimSpace(line)); sub != nil {
			out = append(out, Error{Key: sub[1], Reason: sub[2]})
		}
	}
	if len(out) == 0 {
		out = append(out, Error{Reason: err.Error()})
	}
	return out
}

// unwrapPathError drops the path from an *fs.PathError, which the message
// already starts with.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// envVar is the environment variable that sets key: SAGARUNNER_REDIS_ADDR
// for redis.addr.
func envVar(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
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

// listItems are the keys holding lists of mappings, with the keys each
// item may have.
var listItems = map[string][]string{
	"auth.tokens":   {"token", "user", "roles", "tenant"},
	"statemanagers": {"domain", "addr", "db", "username", "password", "prefix", "shards", "closedTTL"},
}

// Validate reports every inconsistency at once, as Errors sorted by key.
func (c *Config) Validate() error { return c.validate().orNil() }

// validate returns each problem under the key it is about, for Load to
// locate.
func (c *Config) validate() Errors {
	var errs Errors
	add := func(key, format string, args ...any) {
		errs = append(errs, Error{Key: key, Reason: fmt.Sprintf(format, args...)})
	}
	if len(c.Brokers) == 0 {
		add("brokers", "at least one broker is required")
	}
	if c.Group == "" {
		add("group", "must not be empty")
	}
	for _, t := range []struct{ key, topic string }{{"topics.requests", c.Topics.Requests}, {"topics.replies", c.Topics.Replies},
		{"topics.notifications", c.Topics.Notifications}, {"topics.deadLetter", c.Topics.DeadLetter},
		{"topics.taskEvents", c.Topics.TaskEvents}, {"topics.audit", c.Topics.Audit}} {
		if t.topic == "" {
			add(t.key, "must not be empty")
		}
	}
	if c.Topics.Requests == c.Topics.Replies {
		add("topics.replies", "must differ from topics.requests")
	}
	if c.Topics.Partitions < 1 {
		add("topics.partitions", "must be at least 1, got %d", c.Topics.Partitions)
	}
	// A state manager's zero shards and closedTTL mean "as the default
	// section", so only negative values are wrong there.
	checkRedis := func(name string, r Redis) {
		if r.Shards < 0 {
			add(name+".shards", "must not be negative, got %d", r.Shards)
		}
		if r.ClosedTTL < 0 {
			add(name+".closedTTL", "must not be negative")
		}
	}
	if c.Redis.Addr == "" {
		add("redis.addr", "must not be empty")
	}
	if c.Redis.Shards < 1 {
		add("redis.shards", "must be at least 1, got %d", c.Redis.Shards)
	}
	if c.Redis.ClosedTTL < 0 {
		add("redis.closedTTL", "must not be negative")
	}
	seen := map[string]bool{}
	for i, sm := range c.StateManagers {
		name := fmt.Sprintf("stateManagers[%d]", i)
		if sm.Domain == "" {
			add(name+".domain", "must not be empty")
		} else if seen[sm.Domain] {
			add(name+".domain", "%q is listed twice", sm.Domain)
		}
		seen[sm.Domain] = true
		checkRedis(name, sm.Redis)
	}
	firstToken := map[string]int{}
	for i, t := range c.Auth.Tokens {
		if t.Token == "" {
			add(fmt.Sprintf("auth.tokens[%d].token", i), "must not be empty")
		}
		if t.User == "" {
			add(fmt.Sprintf("auth.tokens[%d].user", i), "must not be empty")
		}
		// Never print the token: configuration errors end up in logs.
		if j, dup := firstToken[t.Token]; dup && t.Token != "" {
			add(fmt.Sprintf("auth.tokens[%d].token", i), "same token as auth.tokens[%d]; each token must stand for one identity", j)
		} else {
			firstToken[t.Token] = i
		}
	}
	for i, r := range c.Auth.AdminRoles {
		if r == "" {
			add(fmt.Sprintf("auth.adminRoles[%d]", i), "must not be empty")
		}
	}
	internal := c.InternalTopics()
	for i, t := range c.HTTP.PublishTopics {
		key := fmt.Sprintf("http.publishTopics[%d]", i)
		switch {
		case t == "":
			add(key, "must not be empty")
		case strings.HasPrefix(t, "__"):
			add(key, "%q is a broker-internal topic", t)
		case internal[t] != "":
			add(key, "%q is the %s topic; internal topics are never publishable over HTTP", t, internal[t])
		}
	}
	for _, d := range []struct {
		key string
		d   time.Duration
	}{{"kafka.sessionTimeout", c.Kafka.SessionTimeout}, {"kafka.rebalanceTimeout", c.Kafka.RebalanceTimeout},
		{"http.timeout", c.HTTP.Timeout}, {"http.idleTimeout", c.HTTP.IdleTimeout},
		{"runner.stuckAfter", c.Runner.StuckAfter}, {"timers.pollInterval", c.Timers.PollInterval},
		{"timers.maxIdle", c.Timers.MaxIdle}, {"tasks.earlyTTL", c.Tasks.EarlyTTL}} {
		if d.d <= 0 {
			add(d.key, "must be positive, got %v", d.d)
		}
	}
	// The bounds of timers.Config.MaxIdle (statemanager.WakeHorizon), named
	// by key here.
	if t := c.Timers; t.MaxIdle > 0 && (t.MaxIdle < t.PollInterval || t.MaxIdle > 10*time.Second) {
		add("timers.maxIdle", "must be between timers.pollInterval (%v) and 10s, got %v", t.PollInterval, t.MaxIdle)
	}
	if c.HTTP.MaxBody <= 0 {
		add("http.maxBody", "must be positive, got %d", c.HTTP.MaxBody)
	}
	if in := c.Instances; in.Enabled {
		if in.TimelineCap < 1 {
			add("instances.timelineCap", "must be at least 1, got %d", in.TimelineCap)
		}
		if in.Retention < time.Second {
			add("instances.retention", "must be at least 1s, got %v", in.Retention)
		}
		if in.Shards < 1 || in.Shards > 1024 {
			add("instances.shards", "must be in [1, 1024], got %d", in.Shards)
		}
		if in.Prefix == "" || strings.ContainsAny(in.Prefix, "{}") {
			add("instances.prefix", "must be non-empty without '{' or '}', got %q", in.Prefix)
		}
	}
	for _, d := range []struct {
		key string
		d   time.Duration
	}{{"http.readTimeout", c.HTTP.ReadTimeout}, {"http.writeTimeout", c.HTTP.WriteTimeout}} {
		if d.d <= c.HTTP.Timeout {
			add(d.key, "must exceed http.timeout (%v), or synchronous requests are cut before they answer, got %v", c.HTTP.Timeout, d.d)
		}
	}
	if c.HTTP.MaxHeaderBytes < 1024 {
		add("http.maxHeaderBytes", "must be at least 1024, got %d", c.HTTP.MaxHeaderBytes)
	}
	for _, n := range []struct {
		key    string
		n, min int
	}{{"runner.batchSize", c.Runner.BatchSize, 1}, {"runner.keyConcurrency", c.Runner.KeyConcurrency, 1},
		{"runner.maxAttempts", c.Runner.MaxAttempts, 1}, {"runner.maxHops", c.Runner.MaxHops, 1},
		{"runner.maxInFlightBytes", c.Runner.MaxInFlightBytes, 1 << 16},
		{"runner.maxRecordBytes", c.Runner.MaxRecordBytes, 1024}, {"redis.maxDomains", c.Redis.MaxDomains, 1},
		{"timers.batchSize", c.Timers.BatchSize, 1}, {"tasks.earlyMax", c.Tasks.EarlyMax, 1}} {
		if n.n < n.min {
			add(n.key, "must be at least %d, got %d", n.min, n.n)
		}
	}
	if c.Runner.BatchSize >= 1 && c.Runner.MaxInFlight < c.Runner.BatchSize {
		add("runner.maxInFlight", "must be at least runner.batchSize (%d), got %d", c.Runner.BatchSize, c.Runner.MaxInFlight)
	}
	if k := c.Runner.SigningKey; k != "" && len(k) < MinSigningKeyBytes {
		// The length only: the key is a secret.
		add("runner.signingKey", "must be at least %d bytes, got %d (leave it empty to share a random key through Redis)", MinSigningKeyBytes, len(k))
	}
	switch strings.ToLower(c.Kafka.SASLMechanism) {
	case "", "plain", "scram-sha-256", "scram-sha-512":
	default:
		add("kafka.saslMechanism", "want plain, scram-sha-256 or scram-sha-512, got %q", c.Kafka.SASLMechanism)
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "want debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		add("log.format", "want text or json, got %q", c.Log.Format)
	}
	errs.sort()
	return errs
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
