package statemanager

// Key layout of a RedisStore with key prefix P and N shards. Every key of one
// task lives under the hash tag {P:s}, s = ShardOf(id, N), so each script
// touches a single Redis Cluster hash slot and runs atomically on one node:
//
//	{P:s}:t:<id>      hash: the task fields, its data and envelope, and once
//	                  closed the decision (field names in field*)
//	{P:s}:h:<id>      list: the task's history, one JSON Event per entry, oldest
//	                  first; the newest historyCap (1,000) are kept
//	{P:s}:k:<id>      set: the keys of the changes applied to the open task,
//	                  so a replayed change is told from a new one
//	{P:s}:due         zset deadline -> id of open tasks that have a deadline
//	{P:s}:pending     zset closedAt -> id of closed tasks whose effects are not acked
//	{P:s}:nwaiting    string: how many tasks of the shard are open, every tenant's
//	P:watermark       string: the end of the last TimeoutBetween range
//	P:wake            pub/sub channel: timer wake-ups "<shard> <deadline> <sender>"
//	                  for deadlines within WakeHorizon (wake.go)
//
// and the listing indexes of each tenant, under the tenant prefix T: {P:s}:
// itself for the default tenant "" (a single-tenant store writes exactly the
// keys it always did), {P:s}:n<len>:<tenant>: for any other, the length
// keeping a tenant with ':' in its name out of another tenant's keys:
//
//	T waiting         zset startedAt -> id of the tenant's open tasks (the inbox),
//	                  WAITING and IN_APPROVAL alike
//	T u:<user>        zset startedAt -> id of open tasks of one taskUser
//	T r:<role>        zset startedAt -> id of open tasks offered to one role
//	T c:<user>        zset startedAt -> id of open tasks the user claimed or
//	                  completed (its executor's, while IN_APPROVAL)
//	T a:<role>        zset startedAt -> id of IN_APPROVAL tasks the role approves
//	T d:<family>      zset of the same tasks as <family> (any of the five
//	                  above), every score 0, member deadline|startedAt|id
//	                  (sortKey): the deadline order, read with ZRANGEBYLEX
//	T p:<family>      the same in the priority order
//	T q:<family>      string: how many of <family>'s tasks are IN_APPROVAL
//	                  (not kept for a:), so a count of one status is read
//	                  off the cardinalities
//	T closed:<status> zset closedAt -> id of closed tasks of one status
//	T cb:<status>:<user>
//	                  zset closedAt -> id of tasks of one status the user
//	                  acted on: closed, held claimed when they closed, or
//	                  completed as executor
//
// The open families of a task are written by lib.lua's reindex only, from
// the task's fields before and after a change, so start, apply and close
// keep them in step inside their one script. A start writes three zsets
// per family (the tenant's, its user's, each role's), where it wrote one.
//
// A listing reads the few indexes that hold exactly what it asks for (see
// Filter and redis_list.go), never a larger one filtered. The closed indexes are trimmed to
// ClosedTTL by every close that writes them, a per-closer index also expires
// ClosedTTL after its last write (people come and go), and a listing drops
// the entries of decisions that expired meanwhile, so no index keeps dead
// entries to be read again.
//
// A closed task's hash has no TTL until Ack: the decision must survive until
// its effects are durable, however late that is. Ack sets ClosedTTL on it, so
// replays and GETs find the decision for that long afterwards; the task's
// history and change keys get the same TTL in the same step, and a new start
// that replaces a closed task deletes them with its hash.
//
// Every change of a task bumps its version (the hash's "v", Task.Version):
// Start writes 1, each Apply and the close add 1. Each change appends exactly
// one event to the history, whose Seq is the version it made, so event n of
// a history is the change that made version n.

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of RedisConfig.
const (
	DefaultShards    = 16
	DefaultClosedTTL = 7 * 24 * time.Hour
	// DefaultLimit is used by Due, Between, Pending and List when the caller
	// passes a limit <= 0, so an unbounded read cannot stall Redis.
	DefaultLimit = 1000
	// roleSep joins roles in the task hash; it cannot appear in a role.
	roleSep = "\x1f"
)

var (
	// lib.lua holds the helpers of the scripts that write tasks; what
	// each uses of it is prepended to it (withLib: Lua has no include), so
	// a close is one piece of code whichever script makes it.
	//go:embed scripts/lib.lua
	libLua string
	//go:embed scripts/start.lua
	startLua string
	//go:embed scripts/close.lua
	closeLua string
	//go:embed scripts/ack.lua
	ackLua string
	//go:embed scripts/watermark.lua
	watermarkLua string
	//go:embed scripts/list.lua
	listLua string
	//go:embed scripts/apply.lua
	applyLua string
	//go:embed scripts/history.lua
	historyLua string

	// redis.Script runs EVALSHA and falls back to EVAL on NOSCRIPT, so the
	// script bodies cross the network once per server.
	startScript     = redis.NewScript(withLib(libLua, startLua))
	closeScript     = redis.NewScript(withLib(libLua, closeLua))
	ackScript       = redis.NewScript(withLib(libLua, ackLua))
	applyScript     = redis.NewScript(withLib(libLua, applyLua))
	historyScript   = redis.NewScript(historyLua)
	watermarkScript = redis.NewScript(watermarkLua)
	listScript      = redis.NewScript(withLib(libLua, listLua))
)

// How the pipeliner merges the concurrent calls of one shard (see merger):
// a start is one item of start.lua, a close one group of close.lua (the
// due and pending keys and the shard prefix in common), an ack some ids of
// ack.lua (the pending key, ClosedTTL and the shard prefix in common).
var (
	startMerger = &merger{replies: func(*call) int { return 1 }}
	closeMerger = &merger{keyHead: 2, argHead: 1, replies: func(c *call) int { return len(c.keys) - 2 }}
	ackMerger   = &merger{keyHead: 1, argHead: 2}
)

// RedisConfig configures one domain's RedisStore.
type RedisConfig struct {
	// Prefix is the key prefix; default: the domain name. It must not
	// contain '{' or '}', which would break the per-shard hash tags.
	Prefix string
	// Shards is the number of deadline shards; default 16. Changing it for
	// existing data moves tasks to other shards: keep it fixed per prefix.
	Shards int
	// ClosedTTL is how long a closed task's decision is kept after its
	// effects are acked, for idempotent replays and GET; default 7 days.
	ClosedTTL time.Duration
	// DisablePipelining makes every Start, Get, Close and Ack its own round
	// trip. Default false: calls that arrive while earlier ones are in
	// flight share pipelines (see pipeliner), which costs a lone caller
	// nothing and saves Redis a read and a write per command under load;
	// the starts, closes and acks among them of one shard share one script
	// call.
	DisablePipelining bool
	// PipelineBatches is how many pipelines the store keeps in flight at
	// once; default DefaultPipelineBatches (2).
	PipelineBatches int
	// PipelineMaxBatch caps the commands of one pipeline; default
	// DefaultPipelineMaxBatch (256).
	PipelineMaxBatch int
	// EarlyTTL is how long an early answer waits for its task (see
	// EarlyAnswers); default DefaultEarlyTTL (10 minutes). EarlyMax bounds
	// the early answers of the domain, each shard keeping its share;
	// default DefaultEarlyMax.
	EarlyTTL time.Duration
	EarlyMax int
}

// WithDefaults returns c with zero fields set to their defaults.
func (c RedisConfig) WithDefaults() RedisConfig {
	if c.Shards == 0 {
		c.Shards = DefaultShards
	}
	if c.ClosedTTL == 0 {
		c.ClosedTTL = DefaultClosedTTL
	}
	c = c.earlyDefaults()
	if !c.DisablePipelining {
		if c.PipelineBatches == 0 {
			c.PipelineBatches = DefaultPipelineBatches
		}
		if c.PipelineMaxBatch == 0 {
			c.PipelineMaxBatch = DefaultPipelineMaxBatch
		}
	}
	return c
}

// Validate reports every problem of c at once. Zero fields are valid: they
// take their defaults.
func (c RedisConfig) Validate() error {
	var errs []error
	if strings.ContainsAny(c.Prefix, "{}") {
		errs = append(errs, fmt.Errorf("statemanager: prefix %q must not contain '{' or '}'", c.Prefix))
	}
	if c.Shards < 0 || c.Shards > 16384 {
		errs = append(errs, fmt.Errorf("statemanager: shards %d outside 1..16384", c.Shards))
	}
	if c.ClosedTTL < 0 {
		errs = append(errs, fmt.Errorf("statemanager: negative closed TTL %v", c.ClosedTTL))
	} else if c.ClosedTTL > 0 && c.ClosedTTL < time.Millisecond {
		errs = append(errs, fmt.Errorf("statemanager: closed TTL %v below 1ms", c.ClosedTTL))
	}
	errs = append(errs, c.validateEarly()...)
	if c.PipelineBatches < 0 {
		errs = append(errs, fmt.Errorf("statemanager: negative pipeline batches %d", c.PipelineBatches))
	}
	if c.PipelineMaxBatch < 0 {
		errs = append(errs, fmt.Errorf("statemanager: negative pipeline max batch %d", c.PipelineMaxBatch))
	}
	if c.DisablePipelining && (c.PipelineBatches != 0 || c.PipelineMaxBatch != 0) {
		errs = append(errs, errors.New("statemanager: pipeline batches or max batch set with pipelining disabled"))
	}
	return errors.Join(errs...)
}

// RedisStore is the production Store: one domain's tasks in Redis (or Redis
// Cluster), every change made by one Lua script on one hash slot.
type RedisStore struct {
	client    redis.UniversalClient
	domain    string
	shards    int
	closedTTL time.Duration
	watermark string
	shard     []shardKeys
	// pipe carries the per-record calls (Start, Get, Close, Ack).
	pipe *pipeliner
	// early holds the early-answer limits (redis_early.go).
	early earlyLimits
}

// shardKeys are the precomputed keys of one shard.
type shardKeys struct {
	prefix  string // "{P:s}:"
	task    string // "{P:s}:t:"
	history string // "{P:s}:h:"
	applied string // "{P:s}:k:"
	due     string
	pending string
}

// tenantPrefix is the prefix of a tenant's listing indexes in the shard of
// prefix p; the scripts compute the same (see the key layout above).
func tenantPrefix(p, tenant string) string {
	if tenant == "" {
		return p
	}
	return p + "n" + strconv.Itoa(len(tenant)) + ":" + tenant + ":"
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns the store of domain on client. Every Task it returns
// has Domain set to domain.
func NewRedisStore(client redis.UniversalClient, domain string, cfg RedisConfig) (*RedisStore, error) {
	if client == nil {
		return nil, errors.New("statemanager: nil redis client")
	}
	if domain == "" {
		return nil, errors.New("statemanager: empty domain name")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = domain
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("statemanager: domain %q: %w", domain, err)
	}
	s := &RedisStore{
		client:    client,
		domain:    domain,
		shards:    cfg.Shards,
		closedTTL: cfg.ClosedTTL,
		watermark: cfg.Prefix + ":watermark",
		shard:     make([]shardKeys, cfg.Shards),
		pipe:      newPipeliner(client, cfg.PipelineBatches, cfg.PipelineMaxBatch),
		early:     newEarlyLimits(cfg),
	}
	for i := range s.shard {
		p := "{" + cfg.Prefix + ":" + strconv.Itoa(i) + "}:"
		s.shard[i] = shardKeys{prefix: p, task: p + "t:", history: p + "h:", applied: p + "k:", due: p + "due", pending: p + "pending"}
	}
	return s, nil
}

// Domain is the domain this store serves.
func (s *RedisStore) Domain() string { return s.domain }

// Shards is the number of deadline shards.
func (s *RedisStore) Shards() int { return s.shards }

// ShardOf maps a task id to its shard.
func (s *RedisStore) ShardOf(id string) int { return ShardOf(id, s.shards) }

func (s *RedisStore) keysOf(id string) *shardKeys { return &s.shard[ShardOf(id, s.shards)] }

// Start stores t as WAITING; see Store.Start. It also returns ErrClosePending
// (transient) when t.ID is a closed task of another request whose effects are
// not acked yet.
func (s *RedisStore) Start(ctx context.Context, t *Task) (*Task, bool, error) {
	stored, created, _, err := s.start(ctx, t)
	return stored, created, err
}

// start is Start that also reports whether early answers wait for the id
// (see StartEarly), which the script learns in the same call.
func (s *RedisStore) start(ctx context.Context, t *Task) (*Task, bool, bool, error) {
	if t == nil || t.ID == "" {
		return nil, false, false, errors.New("statemanager: start: empty task id")
	}
	if err := checkJoinable(t.User, t.Roles, t.PossibleOutcomes, t.ApproverRoles); err != nil {
		return nil, false, false, fmt.Errorf("statemanager: start %q: %w", t.ID, err)
	}
	stored := *t
	stored.Domain = s.domain
	stored.Status = StatusWaiting
	if stored.Deadline < 0 {
		stored.Deadline = 0
	}
	// The listings sort on StartedAt as a non-negative number (sortKey).
	if stored.StartedAt <= 0 {
		stored.StartedAt = time.Now().UnixMilli()
	}
	stored.ClosedAt, stored.ClosedBy, stored.CloseData, stored.CloseKey, stored.EnrichPath = 0, "", nil, "", ""
	stored.ClaimedBy, stored.Outcome, stored.Note, stored.CompletedBy, stored.Approvals = "", "", "", "", nil
	stored.Version = 1

	k := s.keysOf(t.ID)
	res, err := s.pipe.scriptCall(ctx, &call{ctx: ctx, script: startScript, merge: startMerger, slot: k.prefix,
		keys: []string{k.task + t.ID, k.due, k.pending, k.history + t.ID, k.applied + t.ID, k.prefix + earlyKey + t.ID},
		args: []interface{}{k.prefix, t.ID, t.Name, t.Spec, t.Action, joinRoles(t.Roles), t.User, t.Saga, t.StepID,
			t.RequestID, strconv.FormatInt(stored.StartedAt, 10), strconv.FormatInt(stored.Deadline, 10),
			[]byte(t.Data), []byte(t.Envelope), t.StartKey, t.Tenant,
			joinRoles(t.PossibleOutcomes), strconv.Itoa(t.RequiredApprovals), joinRoles(t.ApproverRoles), strconv.Itoa(t.Priority),
			t.StartedBy, sortKey(StatusWaiting, SortDeadline, &stored), priorityMember(&stored)},
	})
	if err != nil {
		return nil, false, false, fmt.Errorf("statemanager: redis start %q: %w", t.ID, err)
	}
	// start.lua answers one reply per task it starts, here one.
	if arr, ok := res.([]interface{}); ok && len(arr) == 1 {
		res = arr[0]
	} else {
		return nil, false, false, fmt.Errorf("statemanager: redis start %q: malformed script reply %T", t.ID, res)
	}
	outcome, fields, err := scriptReply(res)
	if err != nil {
		return nil, false, false, fmt.Errorf("statemanager: redis start %q: %w", t.ID, err)
	}
	early := earlyFlag(res)
	switch outcome {
	case "created":
		s.WakeTimers(ctx, t.ID, stored.Deadline)
		return &stored, true, early, nil
	case "exists":
		return s.decode(fields), false, early, nil
	case "pending":
		return nil, false, false, fmt.Errorf("%w: %q", ErrClosePending, t.ID)
	}
	return nil, false, false, fmt.Errorf("statemanager: redis start %q: unexpected reply %q", t.ID, outcome)
}

// Get returns the task, waiting or closed, or ErrNotFound.
func (s *RedisStore) Get(ctx context.Context, id string) (*Task, error) {
	if id == "" {
		return nil, fmt.Errorf("%w: empty id", ErrNotFound)
	}
	cmd := redis.NewMapStringStringCmd(ctx, "hgetall", s.keysOf(id).task+id)
	if err := s.pipe.do(ctx, &call{ctx: ctx, cmd: cmd}); err != nil {
		return nil, fmt.Errorf("statemanager: redis get %q: %w", id, err)
	}
	m, err := cmd.Result()
	if err != nil {
		return nil, fmt.Errorf("statemanager: redis get %q: %w", id, err)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	t := &Task{ID: id, Domain: s.domain}
	for k, v := range m {
		t.set(k, v)
	}
	return t, nil
}

// Close records the decision in one atomic script; see Store.Close. An empty
// c.Key never matches an earlier close, so a keyless close is not replayable.
func (s *RedisStore) Close(ctx context.Context, c Close) (*Task, bool, error) {
	if c.ID == "" {
		return nil, false, fmt.Errorf("%w: empty id", ErrNotFound)
	}
	// One script serves one close and many: a single close is a batch of one.
	res, err := s.CloseMany(ctx, []string{c.ID}, c)
	if err != nil {
		return nil, false, fmt.Errorf("statemanager: close %q: %w", c.ID, err)
	}
	return res[0].Task, res[0].Replay, res[0].Err
}

var _ BatchCloser = (*RedisStore)(nil)

// closeCountArg is the place of a close.lua group's count of ids in its
// call's args.
const closeCountArg = 13

// CloseMany closes ids with one decision, as Close does each, with one
// script call per shard and one round trip for all (see BatchCloser).
func (s *RedisStore) CloseMany(ctx context.Context, ids []string, c Close) ([]CloseResult, error) {
	switch c.Status {
	case StatusCompleted, StatusTimeout, StatusCancelled:
	default:
		return nil, fmt.Errorf("statemanager: close: invalid status %q", c.Status)
	}
	at := c.At
	if at <= 0 {
		at = time.Now().UnixMilli()
	}
	// A plain close writes no history event: History rebuilds it from the
	// decision (see closingEvent), so the hot path writes no list.
	tail := ""
	onlyIfDue := ""
	if c.OnlyIfDue {
		onlyIfDue = "1"
	}
	results := make([]CloseResult, len(ids))
	type shardCall struct {
		call *call
		idx  []int
	}
	byShard := map[int]*shardCall{}
	var calls []*shardCall
	for i, id := range ids {
		if id == "" {
			results[i].Err = fmt.Errorf("%w: empty id", ErrNotFound)
			continue
		}
		shard := ShardOf(id, s.shards)
		sc := byShard[shard]
		if sc == nil {
			k := &s.shard[shard]
			// One group of close.lua: the decision, its count of ids
			// (set below) and the ids.
			sc = &shardCall{call: &call{ctx: ctx, script: closeScript, merge: closeMerger, slot: k.prefix,
				keys: []string{k.due, k.pending},
				args: []interface{}{k.prefix, c.Status, strconv.FormatInt(at, 10), c.By, []byte(c.Data),
					c.Key, c.EnrichPath, strconv.FormatInt(at-s.closedTTL.Milliseconds(), 10),
					s.closedTTL.Milliseconds(), c.Outcome, c.Note, tail, onlyIfDue, 0}}}
			byShard[shard] = sc
			calls = append(calls, sc)
		}
		sc.call.keys = append(sc.call.keys, s.shard[shard].task+id)
		sc.call.args = append(sc.call.args, id)
		sc.idx = append(sc.idx, i)
	}
	if len(calls) == 0 {
		return results, nil
	}
	cs := make([]*call, len(calls))
	for i, sc := range calls {
		sc.call.args[closeCountArg] = len(sc.idx)
		cs[i] = sc.call
	}
	if err := s.pipe.do(ctx, cs...); err != nil {
		return nil, fmt.Errorf("statemanager: redis close %d tasks: %w", len(ids), err)
	}
	for _, sc := range calls {
		res, err := sc.call.cmd.(*redis.Cmd).Result()
		if err != nil {
			return nil, fmt.Errorf("statemanager: redis close %d tasks: %w", len(sc.idx), err)
		}
		replies, ok := res.([]interface{})
		if !ok || len(replies) != len(sc.idx) {
			return nil, fmt.Errorf("statemanager: redis close many: unexpected reply %T of %d", res, len(replies))
		}
		for j, reply := range replies {
			i := sc.idx[j]
			id := ids[i]
			r := &results[i]
			outcome, fields, err := scriptReply(reply)
			var failed scriptError
			if errors.As(err, &failed) {
				// This id failed alone; the others are answered.
				r.Err = fmt.Errorf("statemanager: redis close %q: %w", id, err)
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("statemanager: redis close %q: %w", id, err)
			}
			switch outcome {
			case "ok":
				r.Task = s.decode(fields)
			case "replay":
				r.Task, r.Replay = s.decode(fields), true
			case "closed":
				r.Task, r.Err = s.decode(fields), fmt.Errorf("%w: %q", ErrClosed, id)
			case "stale":
				r.Task, r.Err = s.decode(fields), fmt.Errorf("%w: %q is not due any more", ErrStale, id)
			case "approvals":
				r.Task, r.Err = s.decode(fields), fmt.Errorf("%w: %q", ErrNeedsApproval, id)
			case "notfound":
				r.Err = fmt.Errorf("%w: %q", ErrNotFound, id)
			default:
				return nil, fmt.Errorf("statemanager: redis close %q: unexpected reply %q", id, outcome)
			}
		}
	}
	return results, nil
}

// Ack drops the task from the pending set and starts its ClosedTTL.
func (s *RedisStore) Ack(ctx context.Context, id string) error {
	k := s.keysOf(id)
	if _, err := s.pipe.scriptCall(ctx, &call{ctx: ctx, script: ackScript, merge: ackMerger, slot: k.prefix,
		keys: []string{k.pending, k.task + id}, args: []interface{}{s.closedTTL.Milliseconds(), k.prefix, id}}); err != nil {
		return fmt.Errorf("statemanager: redis ack %q: %w", id, err)
	}
	return nil
}

var _ BatchAcker = (*RedisStore)(nil)

// AckMany acks ids as Ack does each, with one script call per shard and one
// round trip for all of them (see BatchAcker).
func (s *RedisStore) AckMany(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	byShard := map[int]*call{}
	calls := make([]*call, 0, min(len(ids), s.shards))
	for _, id := range ids {
		shard := ShardOf(id, s.shards)
		c := byShard[shard]
		if c == nil {
			k := &s.shard[shard]
			c = &call{ctx: ctx, script: ackScript, merge: ackMerger, slot: k.prefix, keys: []string{k.pending},
				args: []interface{}{s.closedTTL.Milliseconds(), k.prefix}}
			byShard[shard] = c
			calls = append(calls, c)
		}
		c.keys = append(c.keys, s.shard[shard].task+id)
		c.args = append(c.args, id)
	}
	return s.pipe.doAll(ctx, fmt.Sprintf("ack %d tasks", len(ids)), calls...)
}

// Due returns up to limit (DefaultLimit if <= 0) waiting tasks of shard whose
// deadline is at or before until, earliest first.
func (s *RedisStore) Due(ctx context.Context, shard int, until int64, limit int) ([]Due, error) {
	if shard < 0 || shard >= s.shards {
		return nil, fmt.Errorf("statemanager: due: shard %d outside 0..%d", shard, s.shards-1)
	}
	zs, err := s.client.ZRangeByScoreWithScores(ctx, s.shard[shard].due, &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(until, 10), Count: int64(orDefault(limit)),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("statemanager: redis due shard %d: %w", shard, err)
	}
	return toDue(zs), nil
}

// Between returns up to limit (DefaultLimit if <= 0) waiting tasks across all
// shards whose deadline lies in [from, to], earliest first.
func (s *RedisStore) Between(ctx context.Context, from, to int64, limit int) ([]Due, error) {
	limit = orDefault(limit)
	if to < from {
		return nil, nil
	}
	cmds := make([]*redis.ZSliceCmd, s.shards)
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range s.shard {
			cmds[i] = p.ZRangeByScoreWithScores(ctx, s.shard[i].due, &redis.ZRangeBy{
				Min: strconv.FormatInt(from, 10), Max: strconv.FormatInt(to, 10), Count: int64(limit),
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("statemanager: redis between [%d, %d]: %w", from, to, err)
	}
	var all []Due
	for _, c := range cmds {
		all = append(all, toDue(c.Val())...)
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].Deadline != all[j].Deadline {
			return all[i].Deadline < all[j].Deadline
		}
		return all[i].ID < all[j].ID
	})
	if len(all) > limit {
		all = all[:limit]
	}
	return all, nil
}

// Pending returns up to limit (DefaultLimit if <= 0) closed tasks of shard
// whose effects were not acked and that closed at or before closedBefore.
func (s *RedisStore) Pending(ctx context.Context, shard int, closedBefore int64, limit int) ([]*Task, error) {
	if shard < 0 || shard >= s.shards {
		return nil, fmt.Errorf("statemanager: pending: shard %d outside 0..%d", shard, s.shards-1)
	}
	k := &s.shard[shard]
	ids, err := s.client.ZRangeByScore(ctx, k.pending, &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(closedBefore, 10), Count: int64(orDefault(limit)),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("statemanager: redis pending shard %d: %w", shard, err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err = s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, k.task+id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("statemanager: redis pending shard %d: %w", shard, err)
	}
	out := make([]*Task, 0, len(ids))
	for i, c := range cmds {
		m := c.Val()
		if len(m) == 0 || Open(m[fieldStatus]) {
			// The hash can only be gone or open again if someone deleted
			// keys by hand; nothing is left to redo.
			s.client.ZRem(ctx, k.pending, ids[i])
			continue
		}
		t := &Task{ID: ids[i], Domain: s.domain}
		for f, v := range m {
			t.set(f, v)
		}
		out = append(out, t)
	}
	return out, nil
}

var _ Counter = (*RedisStore)(nil)

// CountWaiting returns how many tasks wait in the store, across every
// tenant: the sum of the shards' counters, which the start and close
// scripts keep in step with the tasks. It costs one pipelined GET per
// shard. (Tasks stored before the counter existed are not counted.)
func (s *RedisStore) CountWaiting(ctx context.Context) (int64, error) {
	cmds := make([]*redis.StringCmd, s.shards)
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range cmds {
			cmds[i] = p.Get(ctx, s.shard[i].prefix+"nwaiting")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("statemanager: redis count waiting: %w", err)
	}
	var n int64
	for _, c := range cmds {
		v, err := c.Int64()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("statemanager: redis count waiting: %w", err)
		}
		n += v
	}
	return n, nil
}

// Watermark returns the end of the last TimeoutBetween range (0 if none).
func (s *RedisStore) Watermark(ctx context.Context) (int64, error) {
	v, err := s.client.Get(ctx, s.watermark).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("statemanager: redis watermark: %w", err)
	}
	return v, nil
}

// SetWatermark moves the watermark forward to ms, atomically; an older ms
// is ignored.
func (s *RedisStore) SetWatermark(ctx context.Context, ms int64) error {
	if err := watermarkScript.Run(ctx, s.client, []string{s.watermark}, ms).Err(); err != nil {
		return fmt.Errorf("statemanager: redis set watermark %d: %w", ms, err)
	}
	return nil
}

// Hash fields of a task. Short names keep the hash small: it is read and
// written on every start and close.
const (
	fieldID         = "id"
	fieldName       = "n"
	fieldSpec       = "sp"
	fieldAction     = "a"
	fieldRoles      = "r"
	fieldUser       = "u"
	fieldSaga       = "sg"
	fieldStepID     = "st"
	fieldRequestID  = "rq"
	fieldStartKey   = "sk"
	fieldStartedAt  = "s0"
	fieldDeadline   = "dl"
	fieldData       = "d"
	fieldEnvelope   = "e"
	fieldStatus     = "s"
	fieldClosedAt   = "ca"
	fieldClosedBy   = "cb"
	fieldCloseData  = "cd"
	fieldCloseKey   = "ck"
	fieldEnrichPath = "ep"
	fieldTenant     = "tn"
	// The lifecycle (SPEC §12). Lists are joined by roleSep like the
	// roles; approvals are JSON, written by Go only.
	fieldClaimedBy         = "cl"
	fieldPossibleOutcomes  = "po"
	fieldRequiredApprovals = "ra"
	fieldApproverRoles     = "ar"
	fieldPriority          = "pr"
	fieldOutcome           = "oc"
	fieldNote              = "no"
	fieldCompletedBy       = "cp"
	fieldApprovals         = "ap"
	fieldVersion           = "v"
	fieldStartedBy         = "sb"
)

// set assigns one hash field to t; unknown fields are ignored so a newer
// writer's extra fields do not break an older reader.
func (t *Task) set(field, v string) {
	switch field {
	case fieldID:
		t.ID = v
	case fieldName:
		t.Name = v
	case fieldSpec:
		t.Spec = v
	case fieldAction:
		t.Action = v
	case fieldRoles:
		t.Roles = strings.Split(v, roleSep)
	case fieldUser:
		t.User = v
	case fieldSaga:
		t.Saga = v
	case fieldStepID:
		t.StepID = v
	case fieldRequestID:
		t.RequestID = v
	case fieldStartKey:
		t.StartKey = v
	case fieldStartedAt:
		t.StartedAt, _ = strconv.ParseInt(v, 10, 64)
	case fieldDeadline:
		t.Deadline, _ = strconv.ParseInt(v, 10, 64)
	case fieldData:
		t.Data = []byte(v)
	case fieldEnvelope:
		t.Envelope = []byte(v)
	case fieldStatus:
		t.Status = v
	case fieldClosedAt:
		t.ClosedAt, _ = strconv.ParseInt(v, 10, 64)
	case fieldClosedBy:
		t.ClosedBy = v
	case fieldCloseData:
		t.CloseData = []byte(v)
	case fieldCloseKey:
		t.CloseKey = v
	case fieldEnrichPath:
		t.EnrichPath = v
	case fieldTenant:
		t.Tenant = v
	case fieldClaimedBy:
		t.ClaimedBy = v
	case fieldPossibleOutcomes:
		t.PossibleOutcomes = strings.Split(v, roleSep)
	case fieldRequiredApprovals:
		t.RequiredApprovals, _ = strconv.Atoi(v)
	case fieldApproverRoles:
		t.ApproverRoles = strings.Split(v, roleSep)
	case fieldPriority:
		t.Priority, _ = strconv.Atoi(v)
	case fieldOutcome:
		t.Outcome = v
	case fieldNote:
		t.Note = v
	case fieldCompletedBy:
		t.CompletedBy = v
	case fieldApprovals:
		t.Approvals = nil
		_ = json.Unmarshal([]byte(v), &t.Approvals)
	case fieldVersion:
		t.Version, _ = strconv.ParseInt(v, 10, 64)
	case fieldStartedBy:
		t.StartedBy = v
	}
}

// decode builds a Task from an HGETALL-style flat array of a script reply.
func (s *RedisStore) decode(flat []interface{}) *Task {
	t := &Task{Domain: s.domain}
	for i := 0; i+1 < len(flat); i += 2 {
		k, _ := flat[i].(string)
		v, _ := flat[i+1].(string)
		t.set(k, v)
	}
	return t
}

// scriptError is the failure of one item of a script serving many, which
// the script answers as the value {"error", message} (itemReply in lib.lua)
// so that the other items still run. It is a redis.Error, as the same
// failure of a call of its own would be.
type scriptError string

func (e scriptError) Error() string { return string(e) }

// RedisError marks scriptError a redis.Error.
func (scriptError) RedisError() {}

// scriptReply splits a {outcome, [HGETALL]} script reply. The reply
// {"error", message} is a scriptError.
func scriptReply(res interface{}) (string, []interface{}, error) {
	arr, ok := res.([]interface{})
	if !ok || len(arr) == 0 {
		return "", nil, fmt.Errorf("malformed script reply %T", res)
	}
	outcome, ok := arr[0].(string)
	if !ok {
		return "", nil, fmt.Errorf("malformed script reply outcome %T", arr[0])
	}
	if outcome == "error" && len(arr) == 2 {
		msg, _ := arr[1].(string)
		return "", nil, scriptError(msg)
	}
	var fields []interface{}
	if len(arr) > 1 {
		fields, _ = arr[1].([]interface{})
	}
	return outcome, fields, nil
}

func joinRoles(roles []string) string {
	if len(roles) == 0 {
		return ""
	}
	kept := make([]string, 0, len(roles))
	for _, r := range roles {
		if r != "" {
			kept = append(kept, r)
		}
	}
	return strings.Join(kept, roleSep)
}

func toDue(zs []redis.Z) []Due {
	if len(zs) == 0 {
		return nil
	}
	out := make([]Due, len(zs))
	for i, z := range zs {
		id, _ := z.Member.(string)
		out[i] = Due{ID: id, Deadline: int64(z.Score)}
	}
	return out
}

func orDefault(limit int) int {
	if limit <= 0 {
		return DefaultLimit
	}
	return limit
}

// priorityMember is the start's member of its families' priority orders,
// "" for priority 0: those tasks are listed by priority from the families'
// order by start (list.lua), so most starts write one sorted-set entry
// fewer per family.
func priorityMember(t *Task) string {
	if t.Priority == 0 {
		return ""
	}
	return sortKey(StatusWaiting, SortPriority, t)
}
