package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sagarunner/sagarunner/bench"
)

func init() {
	prev := addExtraCommands
	addExtraCommands = func(root *cobra.Command) {
		prev(root)
		root.AddCommand(newBenchCmd())
	}
}

func newBenchCmd() *cobra.Command {
	var cfg bench.Config
	var levels, writeSagas string
	cmd := &cobra.Command{
		Use:   "bench --scenario NAME [--n N] [--brokers B] [--redis ADDR] [--layout single|cluster] [--compare]",
		Short: "Measure a runner: StartTask/ProceedTask throughput, task lifecycle flows, deadline lateness, HTTP, memory",
		Long: "Drives a runner with one scenario and prints one JSON line per measurement on stdout:\n" +
			"  start     N records start N tasks (rate until every offset is committed; startedAt - sentAt)\n" +
			"  proceed   N direct ProceedTask records close N waiting tasks (notification and continuation)\n" +
			"  lifecycle N flows of start, claim, complete (one approval required) and approve over Kafka,\n" +
			"            each step sent when the one before is answered (flows/s; each step's p50/p99)\n" +
			"  timeout   --waiting tasks wait, --due of them fall due over --window (lateness of each firing)\n" +
			"  http      --clients concurrent POST /bench/ProceedTask over N tasks\n" +
			"  rss       the runner's memory at each of --levels waiting tasks\n" +
			"  all       every scenario in turn\n" +
			"With no --brokers the broker is embedded in the bench process; with no --redis a redis-server\n" +
			"is started on a free port (an embedded miniredis when none is on PATH). The runner under test\n" +
			"is this binary's `run`, started as a child process so its peak RSS and CPU time are its own;\n" +
			"--runner=external measures a running deployment instead (load the bench sagas into it first:\n" +
			"--write-sagas DIR).\n" +
			"--layout=cluster starts a Redis Cluster of --redis-nodes redis-server processes and --runners\n" +
			"child runners sharing one consumer group; --compare runs the single layout (one redis-server,\n" +
			"one runner) and then the cluster layout, each on a Redis of its own (and, without --brokers, a\n" +
			"broker of its own), and ends with one line per scenario comparing them\n" +
			"(\"compare\":\"cluster/single\").",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if writeSagas != "" {
				if err := bench.WriteSagas(writeSagas); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote the bench sagas to %s\n", writeSagas)
				return nil
			}
			for _, l := range strings.Split(levels, ",") {
				if l = strings.TrimSpace(l); l == "" {
					continue
				}
				v, err := strconv.Atoi(l)
				if err != nil {
					return fmt.Errorf("--levels: %q is not a number", l)
				}
				cfg.Levels = append(cfg.Levels, v)
			}
			cfg.Out, cfg.Log = cmd.OutOrStdout(), cmd.ErrOrStderr()
			return bench.Run(cmd.Context(), cfg)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.Scenario, "scenario", "", "start, proceed, lifecycle, timeout, http, rss or all (required)")
	fs.IntVar(&cfg.N, "n", 0, "records, flows or requests (default 200000; lifecycle 50000; http 20000)")
	fs.StringSliceVar(&cfg.Brokers, "brokers", nil, "Kafka seed brokers (default: an embedded broker)")
	fs.StringVar(&cfg.Redis, "redis", "", "Redis address (default: a redis-server started on a free port)")
	fs.IntVar(&cfg.Partitions, "partitions", 16, "partitions of the bench topics and the runner's, and its deadline shards")
	fs.StringVar(&cfg.Runner, "runner", bench.RunnerChild, "child (start the runner as a child process) or external")
	fs.StringVar(&cfg.Layout, "layout", bench.LayoutSingle, "single (one redis-server, one runner) or cluster (a Redis Cluster and several runners)")
	fs.IntVar(&cfg.RedisNodes, "redis-nodes", 3, "cluster layout: redis-server processes of the Redis Cluster, each a master of an equal share of the slots")
	fs.IntVar(&cfg.Runners, "runners", 2, "cluster layout: child runners, sharing one consumer group")
	fs.BoolVar(&cfg.Compare, "compare", false, "run the single layout, then the cluster layout, and print a line comparing them")
	fs.StringVar(&cfg.Group, "group", "", "the runner's consumer group (default: a fresh one per child; external: sagarunner)")
	fs.StringVar(&cfg.HTTP, "http", "", "gateway base URL of an external runner, for the http scenario")
	fs.StringVar(&cfg.RequestTopic, "request-topic", "", "the runner's request topic (default sagarunner-requests)")
	fs.StringVar(&cfg.NotificationTopic, "notification-topic", "", "the notification topic (default HTM_TASK_CLOSED_NOTIFICATION)")
	fs.IntVar(&cfg.Waiting, "waiting", 1_000_000, "timeout: waiting tasks")
	fs.IntVar(&cfg.Due, "due", 100_000, "timeout: tasks of those that fall due within --window")
	fs.DurationVar(&cfg.Window, "window", 0, "timeout, rss: the span the due deadlines are spread over (default 10s)")
	fs.StringVar(&levels, "levels", "10000,1000000", "rss: waiting-task counts to measure the runner at")
	fs.IntVar(&cfg.Preloaders, "preloaders", 64, "timeout, rss: goroutines storing the waiting tasks")
	fs.IntVar(&cfg.Clients, "clients", 64, "http: concurrent clients")
	fs.IntVar(&cfg.Rate, "rate", 0, "start, proceed: records per second; lifecycle: flows per second (0: as fast as possible)")
	fs.IntVar(&cfg.Sample, "sample", 10_000, "start: tasks whose latency is read back from Redis")
	fs.DurationVar(&cfg.Timeout, "timeout", 0, "bound on each measured phase (default 10m)")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write the child runner's CPU profile to this file (cluster layout or --compare: FILE.LAYOUT[.RUNNER])")
	fs.StringVar(&writeSagas, "write-sagas", "", "write the bench sagas into this folder and exit")
	return cmd
}
