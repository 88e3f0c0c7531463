package main

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/sagarunner/sagarunner/internal/app"

	"github.com/alicebob/miniredis/v2"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sagarunner/sagarunner/config"
)

func newDevCmd() *cobra.Command {
	var kafkaPort int
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run everything in one process: embedded Kafka broker, embedded Redis, runner and gateway",
		Long: "Starts an embedded Kafka-protocol broker on --kafka-port (any Kafka client, such as\n" +
			"kcat -b localhost:9092, can talk to it), an embedded in-memory Redis unless --redis or\n" +
			"--config names one, the sagas in ./sagas beside the built-in /ProceedTask and /TimeoutTask,\n" +
			"and the HTTP gateway on " + devHTTPAddr + " (only this machine; --http :8080 opens it to all\n" +
			"interfaces), where POST /topics/{topic} publishes to the sagas' trigger topics. Nothing is\n" +
			"kept when it stops. Authentication is off, every caller trusted, unless --config configures\n" +
			"auth; the start-up output says which.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if !cfg.HTTPExplicit {
				// With auth off by default, the gateway must not be
				// reachable from the network unless asked for.
				cfg.HTTP.Addr = devHTTPAddr
			}

			broker, err := kfake.NewCluster(kfake.Ports(kafkaPort), kfake.NumBrokers(1),
				kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(int(cfg.Topics.Partitions)))
			if err != nil {
				return fmt.Errorf("start the embedded Kafka broker on port %d: %w (is the port taken? pick another with --kafka-port)", kafkaPort, err)
			}
			defer broker.Close()
			cfg.Brokers = broker.ListenAddrs()

			redisNote := "external"
			if !cfg.RedisExplicit {
				mr := miniredis.NewMiniRedis()
				if err := mr.StartAddr("127.0.0.1:0"); err != nil {
					return fmt.Errorf("start the embedded Redis: %w", err)
				}
				defer mr.Close()
				cfg.Redis.Addr = mr.Addr()
				redisNote = "embedded, in memory; pass --redis host:port to use a real one"
			}

			// Listening before the app starts makes a taken port a clear
			// error and lets the banner print the port actually bound
			// (--http 127.0.0.1:0 picks a free one).
			var ln net.Listener
			if cfg.HTTP.Addr != "" {
				ln, err = net.Listen("tcp", cfg.HTTP.Addr)
				if err != nil {
					return fmt.Errorf("listen for HTTP on %s: %w (is the port taken? pick another with --http)", cfg.HTTP.Addr, err)
				}
				cfg.HTTP.Addr = ln.Addr().String()
			}

			log := newLogger(cfg.Log)
			// dev publishes to the sagas' trigger topics over HTTP, so a
			// saga can be tried with one curl; run publishes only to what
			// http.publishTopics lists.
			a, err := app.New(cfg, log, app.Options{PublishSagaTopics: true, Listener: ln, DevUserPicker: true})
			if err != nil {
				if ln != nil {
					_ = ln.Close()
				}
				return err
			}
			defer a.Close()
			printBanner(out, cfg, a, redisNote)
			return a.Run(cmd.Context())
		},
	}
	cmd.Flags().IntVar(&kafkaPort, "kafka-port", 9092, "port of the embedded Kafka broker")
	addConfigFlags(cmd, "sagas", "http", "redis")
	// dev's defaults differ from run's: say what dev does.
	cmd.Flags().Lookup("redis").Usage = "Redis address host:port (default: an embedded in-memory Redis)"
	cmd.Flags().Lookup("http").Usage = "HTTP gateway listen address (default " + devHTTPAddr + "; \"\" turns it off)"
	return cmd
}

// devHTTPAddr is where dev serves HTTP unless told otherwise: the loopback
// interface, because dev trusts every caller.
const devHTTPAddr = "127.0.0.1:8080"

func printBanner(w io.Writer, cfg *config.Config, a *app.App, redisNote string) {
	fmt.Fprintln(w, "sagarunner dev")
	fmt.Fprintf(w, "  kafka     %s   (embedded broker; try: kcat -b localhost:%s -L)\n",
		strings.Join(cfg.Brokers, ","), port(cfg.Brokers[0]))
	fmt.Fprintf(w, "  redis     %s   (%s)\n", cfg.Redis.Addr, redisNote)
	if cfg.HTTP.Addr != "" {
		scope := "   (this machine only; --http :8080 for every interface)"
		if host, _, err := net.SplitHostPort(cfg.HTTP.Addr); err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
			scope = "   (every interface)"
		}
		fmt.Fprintf(w, "  http      http://%s%s\n", displayAddr(cfg.HTTP.Addr), scope)
		who := "continue as a trusted caller"
		if n := len(cfg.Auth.Tokens); n > 0 {
			who = fmt.Sprintf("pick one of the %d configured users", n)
		}
		fmt.Fprintf(w, "  ui        http://%s/ui/   (web inbox: tasks and instances; %s)\n", displayAddr(cfg.HTTP.Addr), who)
	} else {
		fmt.Fprintln(w, "  http      off")
	}
	switch gw := a.Gateway(); {
	case gw == nil:
	case gw.AuthEnabled():
		fmt.Fprintln(w, "  auth      on: callers need a bearer token")
	default:
		fmt.Fprintln(w, "  auth      none configured: every caller is trusted")
	}
	fmt.Fprintf(w, "  topics    requests=%s replies=%s notifications=%s dead-letter=%s\n",
		cfg.Topics.Requests, cfg.Topics.Replies, cfg.Topics.Notifications, cfg.Topics.DeadLetter)
	fmt.Fprintf(w, "            task-events=%s audit=%s\n", cfg.Topics.TaskEvents, cfg.Topics.Audit)
	if pub := app.PublishTopics(cfg, a.Sagas(), true); len(pub) > 0 && cfg.HTTP.Addr != "" {
		fmt.Fprintf(w, "  publish   POST /topics/{topic} to %s\n", strings.Join(pub, ", "))
	}
	fmt.Fprintf(w, "  sagas     %d from %s\n", len(a.Sagas().Sagas), cfg.Sagas)
	for _, g := range a.Sagas().Sagas {
		var trig []string
		if g.Trigger.Topic != "" {
			trig = append(trig, "topic "+g.Trigger.Topic)
		}
		if g.Trigger.Path != "" {
			trig = append(trig, "POST "+g.Trigger.Path)
		}
		fmt.Fprintf(w, "    %-24s %s\n", g.Name, strings.Join(trig, ", "))
	}
	fmt.Fprintln(w, "Ctrl-C stops it.")
}

func port(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return p
}

func displayAddr(addr string) string {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	if _, err := strconv.Atoi(p); err != nil {
		return addr
	}
	return net.JoinHostPort(host, p)
}
