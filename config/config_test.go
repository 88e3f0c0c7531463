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
	if c.HTTP.Timeout != 10*time.Second || c.Timers.PollInterval != 10*time.Millisecond || c.Redis.ClosedTTL != 168*time.Hour {
		t.Errorf("durations: http %v timers %v closedTTL %v", c.HTTP.Timeout, c.Timers.PollInterval, c.Redis.ClosedTTL)
	}
	if c.AuthEnabled() {
		t.Error("auth enabled by default")
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
		{"bad yaml", "brokers: [\n", []string{"read"}},
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
		})
	}
}

func TestRedisExplicit(t *testing.T) {
	c, err := Load("", nil, nil)
	if err != nil || c.RedisExplicit {
		t.Fatalf("default: explicit=%v err=%v", c.RedisExplicit, err)
	}
	c, err = Load(writeFile(t, "redis: {addr: \"r:1\"}\n"), nil, nil)
	if err != nil || !c.RedisExplicit {
		t.Fatalf("file: explicit=%v err=%v", c.RedisExplicit, err)
	}
	t.Setenv("SAGARUNNER_REDIS_ADDR", "e:1")
	c, err = Load("", nil, nil)
	if err != nil || !c.RedisExplicit {
		t.Fatalf("env: explicit=%v err=%v", c.RedisExplicit, err)
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
	if fmt.Sprintf("%+v", *c) != fmt.Sprintf("%+v", *d) {
		t.Errorf("example file differs from the defaults:\nfile     %+v\ndefaults %+v", *c, *d)
	}
}
