package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/config"
	"github.com/sagarunner/sagarunner/internal/app"
)

func newPublishCmd() *cobra.Command {
	var topic, key string
	cmd := &cobra.Command{
		Use:   "publish --topic T [--key K] [FILE|-]",
		Short: "Publish events to a topic, one JSON object per line",
		Long: "Reads one JSON object per line from FILE or standard input and produces each to the topic.\n" +
			"The key is --key when given, else the event's requestMeta.requestId, else none.\n" +
			"Every line is checked before anything is sent: one bad line publishes nothing.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if topic == "" {
				return fmt.Errorf("--topic is required")
			}
			c, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			var in io.Reader = cmd.InOrStdin()
			name := "stdin"
			if len(args) == 1 && args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				in, name = f, args[0]
			}
			recs, err := readEvents(in, name, topic, key)
			if err != nil {
				return err
			}
			if len(recs) == 0 {
				return fmt.Errorf("%s: no events to publish", name)
			}
			opts, err := app.KafkaOpts(c)
			if err != nil {
				return err
			}
			cl, err := kgo.NewClient(append(opts, kgo.AllowAutoTopicCreation())...)
			if err != nil {
				return err
			}
			defer cl.Close()
			// One bounded look for a broker first: an unreachable one is
			// then one error naming the addresses, not a produce timeout.
			pingCtx, cancelPing := context.WithTimeout(cmd.Context(), brokerPingTimeout)
			err = cl.Ping(pingCtx)
			cancelPing()
			if err != nil {
				return fmt.Errorf("cannot reach a Kafka broker at %s within %v (set them with --brokers, brokers or %s_BROKERS): %w",
					strings.Join(c.Brokers, ","), brokerPingTimeout, config.EnvPrefix, err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			res := cl.ProduceSync(ctx, recs...)
			for _, r := range res {
				if r.Err != nil {
					return fmt.Errorf("produce to %s: %w", topic, r.Err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s/%d@%d key=%s\n", r.Record.Topic, r.Record.Partition, r.Record.Offset, r.Record.Key)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&topic, "topic", "", "topic to publish to (required)")
	cmd.Flags().StringVar(&key, "key", "", "record key (default: the event's requestMeta.requestId)")
	addConfigFlags(cmd, "brokers")
	return cmd
}

// brokerPingTimeout bounds how long publish looks for a broker.
const brokerPingTimeout = 10 * time.Second

// readEvents parses every non-empty line as a JSON object, reporting all bad
// lines at once.
func readEvents(in io.Reader, name, topic, key string) ([]*kgo.Record, error) {
	var recs []*kgo.Record
	var bad []string
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if !gjson.ValidBytes(b) || !gjson.ParseBytes(b).IsObject() {
			bad = append(bad, fmt.Sprintf("%s:%d: not a JSON object", name, line))
			continue
		}
		k := key
		if k == "" {
			k = gjson.GetBytes(b, "requestMeta.requestId").String()
		}
		r := &kgo.Record{Topic: topic, Value: append([]byte(nil), b...)}
		if k != "" {
			r.Key = []byte(k)
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("%s", joinLines(bad))
	}
	return recs, nil
}

func joinLines(s []string) string {
	var b bytes.Buffer
	for i, l := range s {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(l)
	}
	return b.String()
}
