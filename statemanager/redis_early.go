package statemanager

// Early answers in Redis (see EarlyAnswers). Keys, in the shard of the task
// id so that every script touches one slot:
//
//	{P:s}:ea:<id>   hash: request id -> "<seq>:<expiresAt>:<value>", the
//	                operations waiting for task <id>; start.lua checks it
//	                with one EXISTS in the same call that starts the task
//	{P:s}:eexp      zset expiresAt -> "<id>\x1f<request id>": the shard's
//	                early answers by expiry, which the timers sweep
//	{P:s}:nearly    string: how many early answers the shard keeps, against
//	                its share of EarlyMax
//	{P:s}:eseq      string: the shard's arrival counter (Parked.Seq)
//
// A task id holds no control character (the actions refuse one), so \x1f
// splits an index member unambiguously.

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// earlyKey is the infix of a task id's early answers.
const earlyKey = "ea:"

var (
	//go:embed scripts/early_park.lua
	earlyParkLua string
	//go:embed scripts/early_unpark.lua
	earlyUnparkLua string
	//go:embed scripts/early_expired.lua
	earlyExpiredLua string

	earlyParkScript    = redis.NewScript(earlyParkLua)
	earlyUnparkScript  = redis.NewScript(earlyUnparkLua)
	earlyExpiredScript = redis.NewScript(earlyExpiredLua)
)

// earlyLimits are a store's early-answer limits.
type earlyLimits struct {
	ttl time.Duration
	// perShard is the domain's EarlyMax divided among its shards: a
	// domain-wide counter would be a key outside the task's slot, which a
	// cluster cannot update in the same script. Task ids spread evenly over
	// the shards, so the shares fill together.
	perShard int
}

func newEarlyLimits(c RedisConfig) earlyLimits {
	shards := max(c.Shards, 1)
	return earlyLimits{ttl: c.EarlyTTL, perShard: (c.EarlyMax + shards - 1) / shards}
}

func (c RedisConfig) earlyDefaults() RedisConfig {
	if c.EarlyTTL == 0 {
		c.EarlyTTL = DefaultEarlyTTL
	}
	if c.EarlyMax == 0 {
		c.EarlyMax = DefaultEarlyMax
	}
	return c
}

func (c RedisConfig) validateEarly() []error {
	var errs []error
	if c.EarlyTTL < 0 || (c.EarlyTTL > 0 && c.EarlyTTL < time.Millisecond) {
		errs = append(errs, fmt.Errorf("statemanager: early TTL %v: want at least 1ms", c.EarlyTTL))
	}
	if c.EarlyMax < 0 {
		errs = append(errs, fmt.Errorf("statemanager: negative early max %d", c.EarlyMax))
	}
	return errs
}

var _ EarlyAnswers = (*RedisStore)(nil)

// StartEarly is Start reporting whether early answers wait; see
// EarlyAnswers.
func (s *RedisStore) StartEarly(ctx context.Context, t *Task) (*Task, bool, bool, error) {
	return s.start(ctx, t)
}

// earlyFlag reads the third element of a start reply: 1 when early answers
// wait for the id.
func earlyFlag(res interface{}) bool {
	arr, _ := res.([]interface{})
	if len(arr) < 3 {
		return false
	}
	n, _ := arr[2].(int64)
	return n == 1
}

// Park keeps p for its task; see EarlyAnswers.
func (s *RedisStore) Park(ctx context.Context, p Parked, at int64) (bool, error) {
	if p.TaskID == "" || p.Key == "" {
		return false, errors.New("statemanager: park: empty task id or key")
	}
	k := s.keysOf(p.TaskID)
	expires := at + s.early.ttl.Milliseconds()
	res, err := s.pipe.script(ctx, earlyParkScript,
		[]string{k.task + p.TaskID, k.prefix + earlyKey + p.TaskID, k.prefix + "eexp", k.prefix + "nearly", k.prefix + "eseq"},
		p.TaskID, p.Key, strconv.FormatInt(expires, 10), p.Value, EarlyPerTask, s.early.perShard)
	if err != nil {
		return false, fmt.Errorf("statemanager: redis park for %q: %w", p.TaskID, err)
	}
	outcome, _, err := scriptReply(res)
	if err != nil {
		return false, fmt.Errorf("statemanager: redis park for %q: %w", p.TaskID, err)
	}
	switch outcome {
	case "parked":
		return true, nil
	case "replay":
		return false, nil
	case "exists":
		return false, fmt.Errorf("%w: %q", ErrTaskExists, p.TaskID)
	case "fulltask":
		return false, fmt.Errorf("%w: task %q has %d waiting already", ErrEarlyFull, p.TaskID, EarlyPerTask)
	case "fullshard":
		return false, fmt.Errorf("%w: domain %q keeps as many as it may (its share of the early answers' limit)", ErrEarlyFull, s.domain)
	}
	return false, fmt.Errorf("statemanager: redis park for %q: unexpected reply %q", p.TaskID, outcome)
}

// Early returns the operations parked for id in arrival order; see
// EarlyAnswers.
func (s *RedisStore) Early(ctx context.Context, id string) ([]Parked, error) {
	if id == "" {
		return nil, nil
	}
	cmd := redis.NewMapStringStringCmd(ctx, "hgetall", s.keysOf(id).prefix+earlyKey+id)
	if err := s.pipe.do(ctx, &call{ctx: ctx, cmd: cmd}); err != nil {
		return nil, fmt.Errorf("statemanager: redis early answers of %q: %w", id, err)
	}
	m, err := cmd.Result()
	if err != nil {
		return nil, fmt.Errorf("statemanager: redis early answers of %q: %w", id, err)
	}
	out := make([]Parked, 0, len(m))
	for key, v := range m {
		if p, ok := parseParked(id, key, v); ok {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out, nil
}

// parseParked reads one "<seq>:<expiresAt>:<value>" hash value.
func parseParked(id, key, v string) (Parked, bool) {
	seq, rest, ok := strings.Cut(v, ":")
	if !ok {
		return Parked{}, false
	}
	exp, value, ok := strings.Cut(rest, ":")
	if !ok {
		return Parked{}, false
	}
	p := Parked{TaskID: id, Key: key, Value: []byte(value)}
	var err1, err2 error
	p.Seq, err1 = strconv.ParseInt(seq, 10, 64)
	p.ExpiresAt, err2 = strconv.ParseInt(exp, 10, 64)
	return p, err1 == nil && err2 == nil
}

// Unpark removes parked operations, one script call per shard in one round
// trip; see EarlyAnswers.
func (s *RedisStore) Unpark(ctx context.Context, refs []EarlyRef) error {
	byShard := map[int]*call{}
	var calls []*call
	for _, r := range refs {
		if r.TaskID == "" {
			continue
		}
		shard := ShardOf(r.TaskID, s.shards)
		c := byShard[shard]
		if c == nil {
			k := &s.shard[shard]
			c = &call{ctx: ctx, script: earlyUnparkScript, keys: []string{k.prefix + "eexp", k.prefix + "nearly"},
				args: []interface{}{k.prefix}}
			byShard[shard] = c
			calls = append(calls, c)
		}
		c.args = append(c.args, r.TaskID, r.Key)
	}
	if len(calls) == 0 {
		return nil
	}
	return s.pipe.doAll(ctx, fmt.Sprintf("unpark %d early answers", len(refs)), calls...)
}

// Expired returns up to limit (DefaultLimit if <= 0) expired operations of
// shard with one script call; see EarlyAnswers. When nothing is parked in
// the shard it reads one empty index.
func (s *RedisStore) Expired(ctx context.Context, shard int, now int64, limit int) ([]Parked, error) {
	if shard < 0 || shard >= s.shards {
		return nil, fmt.Errorf("statemanager: expired: shard %d outside 0..%d", shard, s.shards-1)
	}
	k := &s.shard[shard]
	res, err := earlyExpiredScript.Run(ctx, s.client, []string{k.prefix + "eexp", k.prefix + "nearly"},
		k.prefix, now, orDefault(limit)).Result()
	if err != nil {
		return nil, fmt.Errorf("statemanager: redis expired early answers of shard %d: %w", shard, err)
	}
	flat, _ := res.([]interface{})
	out := make([]Parked, 0, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		m, _ := flat[i].(string)
		v, _ := flat[i+1].(string)
		id, key, ok := strings.Cut(m, "\x1f")
		if !ok {
			continue
		}
		p, ok := parseParked(id, key, v)
		if !ok {
			// Unreadable (edited by hand): returned without a value, so
			// the caller removes it instead of meeting it on every sweep.
			p = Parked{TaskID: id, Key: key}
		}
		out = append(out, p)
	}
	return out, nil
}
