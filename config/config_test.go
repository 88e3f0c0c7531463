package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sagarunner.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	c, err := Load("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Brokers, ","); got != "localhost:9092" {
		t.Errorf("brokers = %q", got)
	}
	if c.Topics.Notifications != "HTM_TASK_CLOSED_NOTIFICATION" || c.Topics.Partitions != 16 || !c.Topics.Create {
		t.Errorf("topics = %+v", c.Topics)
	}
	if c.HTTP.Timeout != 10*time.Second || c.Timers.PollInterval != 10*time.Millisecond || c.Timers.MaxIdle != time.Second || c.Redis.ClosedTTL != 168*time.Hour {
		t.Errorf("durations: http %v timers %v/%v closedTTL %v", c.HTTP.Timeout, c.Timers.PollInterval, c.Timers.MaxIdle, c.Redis.ClosedTTL)
	}
	if c.AuthEnabled() {
		t.Error("auth enabled by default")
	}
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"topics.taskEvents", c.Topics.TaskEvents, "sagarunner-task-events"},
		{"topics.audit", c.Topics.Audit, "sagarunner-audit"},
		{"auth.jwt.tenantClaim", c.Auth.JWT.TenantClaim, "tenant"},
		{"auth.jwt.requireExp", c.Auth.JWT.RequireExp, true},
		{"http.readTimeout", c.HTTP.ReadTimeout, 30 * time.Second},
		{"http.writeTimeout", c.HTTP.WriteTimeout, 20 * time.Second},
		{"http.idleTimeout", c.HTTP.IdleTimeout, time.Minute},
		{"http.maxHeaderBytes", c.HTTP.MaxHeaderBytes, 65536},
		{"runner.maxAttempts", c.Runner.MaxAttempts, 5},
		{"runner.maxHops", c.Runner.MaxHops, 32},
		{"runner.maxRecordBytes", c.Runner.MaxRecordBytes, 1000000},
		{"runner.maxInFlightBytes", c.Runner.MaxInFlightBytes, 64 << 20},
		{"runner.stuckAfter", c.Runner.StuckAfter, 2 * time.Minute},
		{"runner.signingKey", c.Runner.SigningKey, ""},
		{"kafka.instanceId", c.Kafka.InstanceID, ""},
		{"redis.maxDomains", c.Redis.MaxDomains, 1024},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

func TestInternalTopics(t *testing.T) {
	c, err := Load("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := c.InternalTopics()
	for _, topic := range []string{"sagarunner-requests", "sagarunner-replies", "HTM_TASK_CLOSED_NOTIFICATION",
		"sagarunner-task-events", "sagarunner-audit", "sagarunner-dead-letter"} {
		if got[topic] == "" {
			t.Errorf("%s is not internal: %v", topic, got)
		}
	}
}

func TestSecurityKeys(t *testing.T) {
	c, err := Load(writeFile(t, `
auth:
  adminRoles: [ops]
  tokens:
    - {token: t1, user: alice, tenant: acme}
  jwt: {secret: s, tenantClaim: org, requireExp: false}
http: {publishTopics: [job-posts]}
runner: {signingKey: "0123456789abcdef0123456789abcdef"}
kafka: {instanceId: runner-1}
`), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Auth.Tokens[0].Tenant != "acme" || c.Auth.AdminRoles[0] != "ops" || c.Auth.JWT.TenantClaim != "org" || c.Auth.JWT.RequireExp ||
		c.HTTP.PublishTopics[0] != "job-posts" || len(c.Runner.SigningKey) != 32 || c.Kafka.InstanceID != "runner-1" {
		t.Fatalf("config %+v", c)
	}
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, `
brokers: [k1:9092, k2:9092]
group: from-file
redis: {addr: "file:6379", shards: 8}
http: {addr: ":9000"}
stateManagers:
  - {domain: Approvals, addr: "other:6379", prefix: appr}
auth:
  tokens:
    - {token: AbC-Secret, user: alice, roles: [manager]}
`)
	t.Setenv("SAGARUNNER_GROUP", "from-env")
	t.Setenv("SAGARUNNER_REDIS_ADDR", "env:6379")
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.String("http", "", "")
	if err := fs.Parse([]string{"--http", ":7000"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(file, fs, map[string]string{"http": "http.addr"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, got, want string }{
		{"brokers from file", strings.Join(c.Brokers, ","), "k1:9092,k2:9092"},
		{"env beats file", c.Group, "from-env"},
		{"env beats file (nested)", c.Redis.Addr, "env:6379"},
		{"flag beats file", c.HTTP.Addr, ":7000"},
		{"domain keeps its case", c.StateManagers[0].Domain, "Approvals"},
		{"state manager addr", c.StateManagers[0].Addr, "other:6379"},
		{"token keeps its case", c.Auth.Tokens[0].Token, "AbC-Secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
	if c.Redis.Shards != 8 || !c.AuthEnabled() {
		t.Errorf("shards %d auth %v", c.Redis.Shards, c.AuthEnabled())
	}
}

func TestMaxInFlightBytesFromEnv(t *testing.T) {
	t.Setenv("SAGARUNNER_RUNNER_MAXINFLIGHTBYTES", "1048576")
	c, err := Load("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Runner.MaxInFlightBytes != 1<<20 {
		t.Errorf("runner.maxInFlightBytes = %d, want 1048576", c.Runner.MaxInFlightBytes)
	}
	t.Setenv("SAGARUNNER_RUNNER_MAXINFLIGHTBYTES", "-1")
	if _, err := Load("", nil, nil); err == nil || !strings.Contains(err.Error(), "runner.maxInFlightBytes") {
		t.Errorf("a negative budget is accepted: %v", err)
	}
}

func TestBrokersFromEnvList(t *testing.T) {
	t.Setenv("SAGARUNNER_BROKERS", "a:1, b:2")
	c, err := Load("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Brokers, "|"); got != "a:1|b:2" {
		t.Errorf("brokers = %q", got)
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"unknown key", "grop: x\nredis: {adr: y}\n", []string{`unknown key "grop"`, `unknown key "redis.adr"`}},
		{"unknown token key", "auth: {tokens: [{token: t, usr: u}]}\n", []string{`unknown key "usr" in auth.tokens[0]`, "auth.tokens[0].user: must not be empty"}},
		{"bad values", "topics: {partitions: 0}\nlog: {level: loud}\ntimers: {batchSize: 0}\n",
			[]string{"topics.partitions", "log.level", "timers.batchSize"}},
		{"duplicate domain", "stateManagers: [{domain: a}, {domain: a}]\n", []string{`"a" is listed twice`}},
		{"duplicate token", "auth: {tokens: [{token: Tok-Secret, user: a}, {token: x, user: b}, {token: Tok-Secret, user: c}]}\n",
			[]string{"auth.tokens[2].token: same token as auth.tokens[0]"}},
		{"internal topic publishable", "http: {publishTopics: [sagarunner-requests, HTM_TASK_CLOSED_NOTIFICATION, sagarunner-audit, __consumer_offsets, x]}\n",
			[]string{"publishTopics[0]: \"sagarunner-requests\" is the request topic", "publishTopics[1]: \"HTM_TASK_CLOSED_NOTIFICATION\" is the notification topic",
				"publishTopics[2]: \"sagarunner-audit\" is the audit topic", "publishTopics[3]: \"__consumer_offsets\" is a broker-internal topic"}},
		{"renamed internal topic", "topics: {deadLetter: dl}\nhttp: {publishTopics: [dl]}\n", []string{"\"dl\" is the dead-letter topic"}},
		{"http bounds", "http: {timeout: 30s, maxHeaderBytes: 10, idleTimeout: 0s}\n",
			[]string{"http.readTimeout: must exceed http.timeout", "http.writeTimeout: must exceed http.timeout", "http.maxHeaderBytes", "http.idleTimeout"}},
		{"short signing key", "runner: {signingKey: Short-Secret}\n", []string{"runner.signingKey: must be at least 32 bytes, got 12"}},
		{"runner bounds", "runner: {maxAttempts: 0, maxHops: 0, maxRecordBytes: 10, stuckAfter: 0s}\nredis: {maxDomains: 0}\n",
			[]string{"runner.maxAttempts", "runner.maxHops", "runner.maxRecordBytes", "runner.stuckAfter", "redis.maxDomains"}},
		{"idle cap past the wake-up horizon", "timers: {maxIdle: 1m}\n", []string{"timers.maxIdle: must be between timers.pollInterval (10ms) and 10s, got 1m0s"}},
		{"idle cap below the poll interval", "timers: {pollInterval: 50ms, maxIdle: 20ms}\n", []string{"timers.maxIdle: must be between timers.pollInterval (50ms)"}},
		{"idle cap zero", "timers: {maxIdle: 0s}\n", []string{"timers.maxIdle: must be positive"}},
		{"in-flight bytes", "runner: {maxInFlightBytes: 4096}\n", []string{"runner.maxInFlightBytes: must be at least 65536, got 4096"}},
		{"empty admin role", "auth: {adminRoles: [\"\"]}\n", []string{"auth.adminRoles[0]"}},
		{"bad yaml", "brokers: [\n", []string{"sagarunner.yaml:1: invalid YAML: did not find expected node content"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeFile(t, tc.body), nil, nil)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			for _, secret := range []string{"Tok-Secret", "Short-Secret"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q prints a secret", err)
				}
			}
		})
	}
}

func TestExplicit(t *testing.T) {
	for _, tc := range []struct {
		name      string
		file      string
		env, flag [2]string // name, value
		wantRedis bool
		wantHTTP  bool
	}{
		{name: "defaults"},
		{name: "file", file: "redis: {addr: \"r:1\"}\nhttp: {addr: \":9\"}\n", wantRedis: true, wantHTTP: true},
		{name: "environment", env: [2]string{"SAGARUNNER_REDIS_ADDR", "e:1"}, wantRedis: true},
		{name: "http environment", env: [2]string{"SAGARUNNER_HTTP_ADDR", ":9"}, wantHTTP: true},
		{name: "flag", flag: [2]string{"http", "127.0.0.1:9"}, wantHTTP: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env[0] != "" {
				t.Setenv(tc.env[0], tc.env[1])
			}
			file := ""
			if tc.file != "" {
				file = writeFile(t, tc.file)
			}
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			fs.String("http", "", "")
			fs.String("redis", "", "")
			if tc.flag[0] != "" {
				if err := fs.Set(tc.flag[0], tc.flag[1]); err != nil {
					t.Fatal(err)
				}
			}
			c, err := Load(file, fs, map[string]string{"http": "http.addr", "redis": "redis.addr"})
			if err != nil {
				t.Fatal(err)
			}
			if c.RedisExplicit != tc.wantRedis || c.HTTPExplicit != tc.wantHTTP {
				t.Errorf("RedisExplicit=%v HTTPExplicit=%v, want %v %v", c.RedisExplicit, c.HTTPExplicit, tc.wantRedis, tc.wantHTTP)
			}
		})
	}
}

// TestExampleFile keeps sagarunner.example.yaml loadable and equal to the
// defaults it documents.
func TestExampleFile(t *testing.T) {
	c, err := Load("../sagarunner.example.yaml", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Load("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.RedisExplicit, d.RedisExplicit = false, false
	c.HTTPExplicit, d.HTTPExplicit = false, false
	if fmt.Sprintf("%+v", *c) != fmt.Sprintf("%+v", *d) {
		t.Errorf("example file differs from the defaults:\nfile     %+v\ndefaults %+v", *c, *d)
	}
}

// TestErrorPositions pins the shape of every problem: file:line:col: from
// the file, the flag or variable otherwise, all at once and in the same
// order on every run (some once came from map iteration).
func TestErrorPositions(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		env  map[string]string
		flag [2]string
		want []string // F stands for the file
	}{
		{name: "unknown keys", body: "grop: x\nredis: {adr: y}\n", want: []string{
			`F:1:1: unknown key "grop"`,
			`F:2:9: unknown key "redis.adr"`}},
		{name: "list items", body: "auth:\n  tokens:\n    - {token: t, usr: u}\n", want: []string{
			`F:3:7: auth.tokens[0].user: must not be empty`,
			`F:3:18: unknown key "usr" in auth.tokens[0] (known: token, user, roles, tenant)`}},
		{name: "values, sorted by position", body: "timers: {batchSize: 0}\nlog: {level: loud}\ntopics: {partitions: 0, requests: \"\"}\n", want: []string{
			`F:1:21: timers.batchSize: must be at least 1, got 0`,
			`F:2:14: log.level: want debug, info, warn or error, got "loud"`,
			`F:3:22: topics.partitions: must be at least 1, got 0`,
			`F:3:35: topics.requests: must not be empty`}},
		{name: "values of the wrong type", body: "topics: {partitions: abc}\nhttp: {maxBody: [1]}\n", want: []string{
			`F:1:22: topics.partitions: cannot parse value as 'int32': strconv.ParseInt: invalid syntax`,
			`F:2:17: http.maxBody: expected type 'int64', got unconvertible type '[]interface {}'`}},
		{name: "a section that is not a mapping", body: "redis: 5\n", want: []string{
			`F:1:8: redis: must be a mapping`}},
		{name: "environment and flag name themselves", body: "log: {format: xml}\n",
			env: map[string]string{"SAGARUNNER_RUNNER_MAXHOPS": "0"}, flag: [2]string{"group", ""}, want: []string{
				`F:1:15: log.format: want text or json, got "xml"`,
				`--group: group: must not be empty`,
				`SAGARUNNER_RUNNER_MAXHOPS: runner.maxHops: must be at least 1, got 0`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			file := writeFile(t, tc.body)
			want := strings.Join(tc.want, "\n")
			for range 20 {
				fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
				fs.String("group", "", "")
				if tc.flag[0] != "" {
					if err := fs.Set(tc.flag[0], tc.flag[1]); err != nil {
						t.Fatal(err)
					}
				}
				_, err := Load(file, fs, map[string]string{"group": "group"})
				if err == nil {
					t.Fatal("no error")
				}
				if got := strings.ReplaceAll(err.Error(), file, "F"); got != want {
					t.Fatalf("errors:\n got: %s\nwant: %s", got, want)
				}
			}
		})
	}
}
