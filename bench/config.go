package bench

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"
)

// Scenarios lists the scenario names Run accepts, in the order `all` runs
// them.
var Scenarios = []string{"start", "proceed", "lifecycle", "timeout", "http", "rss"}

// Layouts of the deployment the bench starts.
const (
	// LayoutSingle is one redis-server and one child runner.
	LayoutSingle = "single"
	// LayoutCluster is a Redis Cluster of Config.RedisNodes redis-server
	// processes and Config.Runners child runners sharing one consumer
	// group, so they split the partitions.
	LayoutCluster = "cluster"
)

// ClusterScenarios are the scenarios the cluster layout runs: every one
// but http, which drives the gateway of a single runner.
var ClusterScenarios = []string{"start", "proceed", "lifecycle", "timeout", "rss"}

// Runner modes.
const (
	// RunnerChild starts the runner under test as a child process.
	RunnerChild = "child"
	// RunnerExternal measures a runner that is already running against the
	// given brokers and Redis; it must have the bench sagas loaded
	// (WriteSagas) and runner memory and CPU are not reported.
	RunnerExternal = "external"
)

// Names the bench sagas and the runner share. The domain and topics are
// fixed in the embedded saga files.
const (
	Domain     = "bench"
	StartTopic = "bench-start"
	DoneTopic  = "bench-done"
	// LifecycleTopic starts the lifecycle scenario's flows, and
	// ReplyTopic receives the runner's answers to their steps.
	LifecycleTopic = "bench-lifecycle"
	ReplyTopic     = "bench-replies"
	HTTPPath       = "/bench/ProceedTask"
)

// Config configures one bench run. Zero fields take the defaults named in
// their comments when Validate runs.
type Config struct {
	// Scenario is one of Scenarios, or "all".
	Scenario string
	// N is the number of records (start, proceed), flows (lifecycle), HTTP
	// requests (http), or is unused (timeout, rss). Default 200,000 (start,
	// proceed), 50,000 (lifecycle) and 20,000 (http).
	N int

	// Brokers of the Kafka cluster; none starts an embedded broker in the
	// bench process.
	Brokers []string
	// Redis address of the state managers; "" starts a redis-server on a
	// free port (or, when none is on PATH, an embedded miniredis).
	Redis string
	// Partitions of the topics the bench creates and of the runner's
	// created topics; also the runner's deadline shards. Default 16.
	Partitions int

	// Runner is RunnerChild (default) or RunnerExternal.
	Runner string

	// Layout is LayoutSingle (default) or LayoutCluster. The cluster
	// layout starts its own Redis Cluster and child runners, so it takes
	// neither Redis nor an external runner.
	Layout string
	// RedisNodes is the cluster layout's number of redis-server processes,
	// each a master of an equal share of the slots (default 3).
	RedisNodes int
	// Runners is the cluster layout's number of child runners (default 2).
	Runners int
	// Compare runs the scenarios in the single layout, then in the
	// cluster layout, each on a Redis of its own (and, without Brokers, an
	// embedded broker of its own), and ends with one comparison line per
	// measurement.
	Compare bool
	// RunnerCommand is the argv of the child runner, which is configured
	// through SAGARUNNER_* variables. Default: this executable with
	// `run --insecure`.
	RunnerCommand []string
	// RunnerEnv is added to the child runner's environment.
	RunnerEnv []string
	// CPUProfile, when set, is where the child runner writes its CPU
	// profile (passed as SAGARUNNER_CPUPROFILE).
	CPUProfile string

	// Group is the runner's consumer group. Default: a fresh group per
	// child runner; with an external runner, "sagarunner".
	Group string
	// RequestTopic and NotificationTopic default to the runner defaults.
	RequestTopic      string
	NotificationTopic string
	// HTTP is the gateway's base URL for the http scenario with an
	// external runner (a child runner gets a free port).
	HTTP string

	// Waiting is how many waiting tasks the timeout scenario stores
	// (default 1,000,000), Due how many of them fall due (default 100,000)
	// spread over Window (default 10 s).
	Waiting int
	Due     int
	Window  time.Duration
	// Levels are the waiting-task counts the rss scenario measures the
	// runner at (default 10,000 and 1,000,000); each fires Due deadlines
	// (default there 10,000) over Window.
	Levels []int
	// Preloaders is how many goroutines store the timeout scenario's tasks
	// (default 64).
	Preloaders int

	// Clients is the number of concurrent HTTP clients (default 64).
	Clients int
	// Rate paces start and proceed records, and lifecycle flows, per
	// second; 0 produces as fast as possible.
	Rate int
	// Sample is how many start latencies are read back from Redis
	// (default 10,000).
	Sample int
	// Timeout bounds each measured phase (default 10 minutes).
	Timeout time.Duration

	// Out receives the JSON lines (default os.Stdout); Log progress and
	// warnings (default os.Stderr).
	Out io.Writer
	Log io.Writer
}

// Validate fills the defaults and reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("bench: "+format, args...)) }
	if c.Scenario != "all" && !slices.Contains(Scenarios, c.Scenario) {
		bad("unknown scenario %q (want one of %v or all)", c.Scenario, Scenarios)
	}
	if c.Runner == "" {
		c.Runner = RunnerChild
	}
	switch c.Runner {
	case RunnerChild:
	case RunnerExternal:
		if len(c.Brokers) == 0 {
			bad("--runner=external needs the brokers of the running deployment")
		}
		if c.Redis == "" {
			bad("--runner=external needs the Redis of the running deployment")
		}
		if c.CPUProfile != "" {
			bad("a CPU profile can only be taken of a child runner")
		}
		if c.Group == "" {
			c.Group = "sagarunner"
		}
	default:
		bad("--runner must be %s or %s, got %q", RunnerChild, RunnerExternal, c.Runner)
	}
	nonNeg := func(name string, v *int, def int) {
		switch {
		case *v < 0:
			bad("%s %d is negative", name, *v)
		case *v == 0:
			*v = def
		}
	}
	if c.Layout == "" {
		c.Layout = LayoutSingle
	}
	switch c.Layout {
	case LayoutSingle, LayoutCluster:
	default:
		bad("--layout must be %s or %s, got %q", LayoutSingle, LayoutCluster, c.Layout)
	}
	if c.Layout == LayoutCluster || c.Compare {
		what := "--layout=" + LayoutCluster
		if c.Compare {
			what = "--compare"
		}
		if c.Runner == RunnerExternal {
			bad("%s starts its own runners; it cannot measure --runner=external", what)
		}
		if c.Redis != "" {
			bad("%s starts its own Redis Cluster; leave --redis out", what)
		}
		if c.Scenario != "all" && slices.Contains(Scenarios, c.Scenario) && !slices.Contains(ClusterScenarios, c.Scenario) {
			bad("%s runs %v or all, not %s (it drives the gateway of one runner)", what, ClusterScenarios, c.Scenario)
		}
	}
	nonNeg("redis-nodes", &c.RedisNodes, 3)
	nonNeg("runners", &c.Runners, 2)
	if c.RedisNodes > 64 {
		bad("redis-nodes %d is more than 64", c.RedisNodes)
	}
	if c.Runners > 64 {
		bad("runners %d is more than 64", c.Runners)
	}
	nonNeg("partitions", &c.Partitions, 16)
	if (c.Layout == LayoutCluster || c.Compare) && c.Runners > c.Partitions {
		bad("runners %d exceed partitions %d: a runner with no partition would measure nothing", c.Runners, c.Partitions)
	}
	nonNeg("waiting", &c.Waiting, 1_000_000)
	nonNeg("due", &c.Due, 100_000)
	nonNeg("preloaders", &c.Preloaders, 64)
	nonNeg("clients", &c.Clients, 64)
	nonNeg("sample", &c.Sample, 10_000)
	if c.N < 0 {
		bad("n %d is negative", c.N)
	}
	if c.Rate < 0 {
		bad("rate %d is negative", c.Rate)
	}
	if c.Due > c.Waiting {
		bad("due %d exceeds waiting %d", c.Due, c.Waiting)
	}
	if len(c.Levels) == 0 {
		c.Levels = []int{10_000, 1_000_000}
	}
	for i, l := range c.Levels {
		if l <= 0 || (i > 0 && l <= c.Levels[i-1]) {
			bad("levels must be positive and increasing, got %v", c.Levels)
			break
		}
	}
	if c.Window == 0 {
		c.Window = 10 * time.Second
	} else if c.Window < 0 {
		bad("window %v is negative", c.Window)
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Minute
	}
	if c.RequestTopic == "" {
		c.RequestTopic = "sagarunner-requests"
	}
	if c.NotificationTopic == "" {
		c.NotificationTopic = "HTM_TASK_CLOSED_NOTIFICATION"
	}
	if c.Out == nil {
		c.Out = os.Stdout
	}
	if c.Log == nil {
		c.Log = os.Stderr
	}
	return errors.Join(errs...)
}

// defaultN is the record count of a scenario when Config.N is zero.
func defaultN(scenario string) int {
	switch scenario {
	case "http":
		return 20_000
	case "lifecycle":
		return 50_000
	}
	return 200_000
}

// Result is one JSON line. Fields that do not apply to a scenario are left
// out.
type Result struct {
	Scenario   string  `json:"scenario"`
	N          int     `json:"n"`
	Partitions int     `json:"partitions"`
	Rate       float64 `json:"rate"`
	Seconds    float64 `json:"seconds"`
	P50        float64 `json:"p50_ms"`
	P99        float64 `json:"p99_ms"`
	Max        float64 `json:"max_ms"`

	// start: Sampled latencies read back from Redis.
	Sampled int `json:"sampled,omitempty"`
	// proceed, lifecycle: continuation effect (bench-done record) latencies,
	// from the proceed or the approval.
	DoneP50 *float64 `json:"done_p50_ms,omitempty"`
	DoneP99 *float64 `json:"done_p99_ms,omitempty"`
	// lifecycle: each step's latency to its answer (P50 and P99 above are
	// the whole flow's, start to continuation effect).
	StartP50    *float64 `json:"start_p50_ms,omitempty"`
	StartP99    *float64 `json:"start_p99_ms,omitempty"`
	ClaimP50    *float64 `json:"claim_p50_ms,omitempty"`
	ClaimP99    *float64 `json:"claim_p99_ms,omitempty"`
	CompleteP50 *float64 `json:"complete_p50_ms,omitempty"`
	CompleteP99 *float64 `json:"complete_p99_ms,omitempty"`
	ApproveP50  *float64 `json:"approve_p50_ms,omitempty"`
	ApproveP99  *float64 `json:"approve_p99_ms,omitempty"`
	// http: requests that did not answer 200.
	Errors *int `json:"errors,omitempty"`
	// Clients is the HTTP concurrency.
	Clients int `json:"clients,omitempty"`

	// timeout and rss (Duplicates also proceed: notifications and
	// continuation effects seen more than once).
	Waiting           int      `json:"waiting,omitempty"`
	WindowS           float64  `json:"window_s,omitempty"`
	LatenessP50       *float64 `json:"lateness_p50_ms,omitempty"`
	LatenessP99       *float64 `json:"lateness_p99_ms,omitempty"`
	LatenessMax       *float64 `json:"lateness_max_ms,omitempty"`
	SeenLatenessP99   *float64 `json:"seen_lateness_p99_ms,omitempty"`
	Fired             *int     `json:"fired,omitempty"`
	Duplicates        *int     `json:"duplicates,omitempty"`
	Unexpected        *int     `json:"unexpected,omitempty"`
	PreloadRate       float64  `json:"preload_rate,omitempty"`
	PreloadS          float64  `json:"preload_s,omitempty"`
	DueLoadedBeforeMS *int64   `json:"due_loaded_before_first_deadline_ms,omitempty"`

	// Runner process figures (child runners only), summed over the
	// runners; with several runners, each one's in the _each lists.
	RunnerPeakRSSMB     *float64  `json:"runner_peak_rss_mb,omitempty"`
	RunnerRSSMB         *float64  `json:"runner_rss_mb,omitempty"`
	RunnerCPUS          *float64  `json:"runner_cpu_s,omitempty"`
	RunnerCPUPct        *float64  `json:"runner_cpu_pct,omitempty"`
	RunnerPeakRSSMBEach []float64 `json:"runner_peak_rss_mb_each,omitempty"`
	RunnerRSSMBEach     []float64 `json:"runner_rss_mb_each,omitempty"`
	RunnerCPUSEach      []float64 `json:"runner_cpu_s_each,omitempty"`
	// CPU seconds of the rest of the machine's work in the same phase:
	// redis-server (when the bench started it; summed over a cluster's
	// nodes, each node's in RedisCPUSEach) and the bench process with the
	// embedded broker.
	RedisCPUS     *float64  `json:"redis_cpu_s,omitempty"`
	RedisCPUSEach []float64 `json:"redis_cpu_s_each,omitempty"`
	BenchCPUS     *float64  `json:"bench_cpu_s,omitempty"`

	// Layout is single or cluster; the cluster layout's Redis processes
	// and runners.
	Layout     string `json:"layout"`
	RedisNodes int    `json:"redis_nodes,omitempty"`
	Runners    int    `json:"runners,omitempty"`
	// RunnerPartitionsEach is how many partitions of the request topic
	// each member of the runners' group owned during the phase (cluster
	// layout), in the group's member order: the runners split the work.
	RunnerPartitionsEach []int `json:"runner_partitions_each,omitempty"`
	// RedisShardsEach is how many of the shards, each one hash tag and so
	// one slot, each Redis node serves (cluster layout): a node's share of
	// the tasks and their scripts.
	RedisShardsEach []int `json:"redis_shards_each,omitempty"`

	Redis  string `json:"redis"`
	Broker string `json:"broker"`
	Load1  string `json:"load1,omitempty"`
}

func ptr[T any](v T) *T { return &v }
