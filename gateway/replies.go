package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/saga/envelope"
)

// consumeReplies positions the client at the end of every reply partition,
// then hands each reply to the request waiting for its requestId. Replies
// nobody waits for (another instance's, or a request that gave up) are
// dropped. It returns when ctx is done or the client is closed.
func (g *Gateway) consumeReplies(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for {
		err := g.position(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		// A runner starting beside us may create the topic first; that
		// race is expected and the next look finds it.
		logf := g.log.Warn
		if errors.Is(err, kerr.TopicAlreadyExists) {
			logf = g.log.Debug
		}
		logf("gateway: positioning the reply consumer failed, retrying", "topic", g.cfg.ReplyTopic, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	g.positioned.Store(true)
	defer g.positioned.Store(false)
	for {
		fetches := g.client.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				g.log.Warn("gateway: reply fetch failed", "topic", topic, "partition", p, "err", err)
			}
		})
		fetches.EachRecord(g.deliver)
	}
}

// position adds every partition of the reply topic to the client at its
// current end offset, creating the topic when it does not exist yet. Using
// the exact listed offsets, rather than a reset policy, is what makes
// readiness mean something: any reply to a request produced after this
// returns lies at or beyond those offsets.
func (g *Gateway) position(ctx context.Context) error {
	adm := kadm.NewClient(g.client) // never Close it: that closes g.client.
	topic := g.cfg.ReplyTopic
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("list end offsets of %q: %w", topic, err)
	}
	err = ends.Error()
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return g.createReplyTopic(ctx, adm)
	}
	if err != nil {
		return fmt.Errorf("list end offsets of %q: %w", topic, err)
	}
	offsets := ends.KOffsets()
	if len(offsets[topic]) == 0 {
		return fmt.Errorf("reply topic %q has no partitions yet", topic)
	}
	g.client.AddConsumePartitions(offsets)
	return nil
}

// createReplyTopic creates the missing reply topic with the broker's
// default partitions and consumes it from offset 0, which is its end: a
// topic just created holds nothing. (Listing its offsets instead would wait
// out the client's metadata cache, which still says it does not exist.)
// When another instance created it first, the next attempt lists it.
func (g *Gateway) createReplyTopic(ctx context.Context, adm *kadm.Client) error {
	topic := g.cfg.ReplyTopic
	res, err := adm.CreateTopic(ctx, -1, -1, nil, topic)
	if err != nil {
		return fmt.Errorf("create reply topic %q: %w", topic, err)
	}
	if res.NumPartitions <= 0 {
		return fmt.Errorf("created reply topic %q but the broker did not say how many partitions it has", topic)
	}
	offsets := make(map[int32]kgo.Offset, res.NumPartitions)
	for p := range res.NumPartitions {
		offsets[p] = kgo.NewOffset().At(0)
	}
	g.client.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets})
	g.log.Info("gateway: created reply topic", "topic", topic, "partitions", res.NumPartitions)
	return nil
}

// deliver hands a reply to its waiter, if any. The key is the requestId by
// contract; the envelope's own requestMeta.requestId is the fallback for a
// producer that keyed differently.
func (g *Gateway) deliver(r *kgo.Record) {
	g.mu.Lock()
	ch := g.waiters[string(r.Key)] // looked up without copying the key
	g.mu.Unlock()
	var id string // the fallback's requestId; the key's is r.Key
	if ch == nil {
		id = gjson.GetBytes(r.Value, "requestMeta.requestId").String()
		if ch = g.waiter(id); ch == nil {
			return
		}
	}
	env, err := envelope.Decode(r.Value, nil)
	if err != nil {
		if id == "" {
			id = string(r.Key)
		}
		g.log.Warn("gateway: undecodable reply", "requestId", id, "partition", r.Partition, "offset", r.Offset, "err", err)
		return
	}
	select {
	case ch <- env:
	default: // a reply already arrived; the first one answers.
	}
}

func (g *Gateway) waiter(id string) chan *envelope.Envelope {
	if id == "" {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiters[id]
}

// await registers interest in a requestId before its request is produced,
// so a reply that beats ProduceSync back is not lost. unwait must follow.
func (g *Gateway) await(id string) <-chan *envelope.Envelope {
	ch := make(chan *envelope.Envelope, 1)
	g.mu.Lock()
	g.waiters[id] = ch
	g.mu.Unlock()
	return ch
}

// unwait ends the interest await registered: replies to id are dropped
// from now on.
func (g *Gateway) unwait(id string) {
	g.mu.Lock()
	delete(g.waiters, id)
	g.mu.Unlock()
}
