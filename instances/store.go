package instances

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of Config.
const (
	DefaultPrefix      = "sagarunner-instances"
	DefaultShards      = 16
	DefaultTimelineCap = 1000
	DefaultRetention   = 7 * 24 * time.Hour
	// DefaultLimit and MaxLimit bound a listing page.
	DefaultLimit = 100
	MaxLimit     = 1000
	// scanBudget bounds the index entries one shard reads for one page,
	// so a filter that matches little costs a bounded read and a cursor
	// instead of a scan of every instance ever kept.
	scanBudget = 2000
)

// Config configures a Store; zero fields take the defaults above.
type Config struct {
	// Prefix is the key prefix; it must not contain '{' or '}', which
	// would break the per-shard hash tags.
	Prefix string
	// Shards spreads instances over this many hash slots; keep it fixed
	// per prefix.
	Shards int
	// TimelineCap bounds each timeline; the newest events are kept.
	TimelineCap int
	// Retention is how long an ended instance is kept.
	Retention time.Duration
}

// Validate fills defaults and checks c.
func (c *Config) Validate() error {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Shards == 0 {
		c.Shards = DefaultShards
	}
	if c.TimelineCap == 0 {
		c.TimelineCap = DefaultTimelineCap
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	var errs []error
	if strings.ContainsAny(c.Prefix, "{}") {
		errs = append(errs, fmt.Errorf("instances: prefix %q must not contain '{' or '}'", c.Prefix))
	}
	if c.Shards < 1 || c.Shards > 1024 {
		errs = append(errs, fmt.Errorf("instances: shards %d must be in [1, 1024]", c.Shards))
	}
	if c.TimelineCap < 1 {
		errs = append(errs, fmt.Errorf("instances: timelineCap %d must be at least 1", c.TimelineCap))
	}
	if c.Retention < time.Second {
		errs = append(errs, fmt.Errorf("instances: retention %v must be at least 1s", c.Retention))
	}
	return errors.Join(errs...)
}

var (
	//go:embed scripts/apply.lua
	applyLua string
	//go:embed scripts/list.lua
	listLua string

	applyScript = redis.NewScript(applyLua)
	listScript  = redis.NewScript(listLua)
)

// ErrNotFound: no instance with that id (or it expired).
var ErrNotFound = errors.New("instances: not found")

// TaskRef names an open task.
type TaskRef struct {
	Domain string `json:"domain"`
	ID     string `json:"id"`
}

// Result is the last result an instance's steps left.
type Result struct {
	Status  string `json:"status,omitempty"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// Instance is an instance's record.
type Instance struct {
	ID          string    `json:"id"`
	Saga        string    `json:"saga"`
	Version     int       `json:"version,omitempty"`
	Status      string    `json:"status"`
	Step        string    `json:"step,omitempty"`
	OpenTasks   []TaskRef `json:"openTasks"`
	StartedAt   int64     `json:"startedAt"`
	UpdatedAt   int64     `json:"updatedAt"`
	EndedAt     int64     `json:"endedAt,omitempty"`
	LastResult  Result    `json:"lastResult"`
	Tenant      string    `json:"tenant,omitempty"`
	Starter     string    `json:"starter,omitempty"`
	BusinessKey string    `json:"businessKey,omitempty"`
	// Participants acted on its tasks; they may see it.
	Participants []string `json:"participants,omitempty"`
}

// VisibleTo reports whether user may see the instance: its starter and the
// people who acted on its tasks (admins of its tenant are the caller's
// business: they see all of it).
func (in *Instance) VisibleTo(user string) bool {
	return user != "" && (in.Starter == user || slices.Contains(in.Participants, user))
}

// Store keeps instance records and timelines in Redis. It is safe for
// concurrent use.
type Store struct {
	rdb redis.UniversalClient
	cfg Config
	// general sends every group in the script's general form (tests
	// compare the two forms).
	general bool
}

// NewStore returns a store over rdb.
func NewStore(rdb redis.UniversalClient, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Store{rdb: rdb, cfg: cfg}, nil
}

// Config returns the validated config.
func (s *Store) Config() Config { return s.cfg }

func (s *Store) shardOf(id string) int { return shardOf(id, s.cfg.Shards) }

// shardPrefix is the key prefix of a shard: its hash tag keeps all of a
// shard's keys in one Redis Cluster slot.
func (s *Store) shardPrefix(shard int) string {
	return "{" + s.cfg.Prefix + ":" + strconv.Itoa(shard) + "}:"
}

// Apply writes the instance events of handled inputs, one slice per input,
// in order; see ApplyBatch.
func (s *Store) Apply(ctx context.Context, inputs ...[]Event) error {
	var b Batch
	n := 0
	for _, in := range inputs {
		n += len(in)
	}
	b.Grow(n)
	for _, in := range inputs {
		b.Add(in)
	}
	return s.ApplyBatch(ctx, &b)
}

// ApplyBatch writes b's events in one pipelined round trip: one script call
// per shard touched, each applying that shard's groups atomically. A run
// of a group already applied (same instance and key) is skipped, so a batch
// may be applied again. Errors are Redis's; nothing is applied in part
// within one group.
func (s *Store) ApplyBatch(ctx context.Context, b *Batch) error {
	if len(b.groups) == 0 {
		return nil
	}
	// Groups by shard, in order, without a map: a shard's calls list its
	// groups in the order they came.
	shardOfGroup := make([]int32, len(b.groups))
	var order []int
	count := make([]int32, s.cfg.Shards)
	for i := range b.groups {
		sh := shardOf(b.groups[i].id, s.cfg.Shards)
		shardOfGroup[i] = int32(sh)
		if count[sh] == 0 {
			order = append(order, sh)
		}
		count[sh]++
	}
	type call struct {
		keys   []string
		args   []any
		groups []int // b.groups of the call, in order
		cmd    *redis.Cmd
	}
	calls := make([]call, 0, len(order))
	perGroup := 5 + (2*len(b.runs)+9*len(b.evs))/len(b.groups)
	for _, sh := range order {
		p := s.shardPrefix(sh)
		c := call{keys: []string{p + "x"}, groups: make([]int, 0, count[sh])}
		c.args = make([]any, 0, 3+int(count[sh])*2*perGroup)
		c.args = append(c.args, p, s.cfg.TimelineCap, s.cfg.Retention.Milliseconds())
		for i := range b.groups {
			if int(shardOfGroup[i]) != sh {
				continue
			}
			c.groups = append(c.groups, i)
			var ok bool
			if !s.general {
				c.args, ok = b.appendFresh(c.args, &b.groups[i], p)
			}
			if !ok {
				c.args = b.appendArgs(c.args, &b.groups[i])
			}
		}
		calls = append(calls, c)
	}
	send := func() error {
		_, err := s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for i := range calls {
				calls[i].cmd = applyScript.EvalSha(ctx, pipe, calls[i].keys, calls[i].args...)
			}
			return nil
		})
		return err
	}
	run := func() error {
		err := send()
		if isNoScript(err) {
			// A restarted Redis lost the script; nothing ran.
			if err := applyScript.Load(ctx, s.rdb).Err(); err != nil {
				return fmt.Errorf("instances: load script: %w", err)
			}
			err = send()
		}
		if err != nil {
			return fmt.Errorf("instances: apply: %w", err)
		}
		return nil
	}
	if err := run(); err != nil {
		return err
	}
	// Groups in the fast form whose records existed go again, in the
	// general form: a replay, or an instance whose events were written
	// before its start.
	var again []call
	for _, c := range calls {
		left, err := c.cmd.Int64Slice()
		if err != nil {
			return fmt.Errorf("instances: apply: %w", err)
		}
		if len(left) == 0 {
			continue
		}
		a := call{keys: c.keys, args: append(make([]any, 0, 3+len(left)*perGroup), c.args[:3]...)}
		for _, at := range left {
			if at < 1 || int(at) > len(c.groups) {
				return fmt.Errorf("instances: apply: the script left group %d of %d", at, len(c.groups))
			}
			a.args = b.appendArgs(a.args, &b.groups[c.groups[at-1]])
		}
		again = append(again, a)
	}
	if len(again) == 0 {
		return nil
	}
	calls = again
	return run()
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// Get returns the instance's record. ErrNotFound when there is none.
func (s *Store) Get(ctx context.Context, id string) (*Instance, error) {
	got, err := s.getMany(ctx, []string{id})
	if err != nil {
		return nil, err
	}
	if got[0] == nil {
		return nil, ErrNotFound
	}
	return got[0], nil
}

// getMany reads records in one pipeline; a missing one is nil.
func (s *Store) getMany(ctx context.Context, ids []string) ([]*Instance, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	recs := make([]*redis.MapStringStringCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, id := range ids {
			recs[i] = pipe.HGetAll(ctx, s.shardPrefix(s.shardOf(id))+"i:"+id)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("instances: get: %w", err)
	}
	out := make([]*Instance, len(ids))
	for i, id := range ids {
		h := recs[i].Val()
		if h["status"] == "" || h["startedAt"] == "" {
			continue // none, or events whose start is not written yet
		}
		in := &Instance{ID: id, Saga: h["saga"], Status: h["status"], Step: h["step"], Tenant: h["tenant"],
			Starter: h["starter"], BusinessKey: h["bk"], OpenTasks: []TaskRef{},
			LastResult: Result{Status: h["lastStatus"], Code: h["lastCode"], Message: h["lastMessage"]}}
		in.Version, _ = strconv.Atoi(h["version"])
		in.StartedAt, _ = strconv.ParseInt(h["startedAt"], 10, 64)
		in.UpdatedAt, _ = strconv.ParseInt(h["updatedAt"], 10, 64)
		in.EndedAt, _ = strconv.ParseInt(h["endedAt"], 10, 64)
		open := !Ended(in.Status)
		for k, v := range h {
			switch {
			case strings.HasPrefix(k, "o:") && v == "1" && open:
				d, t, _ := strings.Cut(k[2:], "\t")
				in.OpenTasks = append(in.OpenTasks, TaskRef{Domain: d, ID: t})
			case strings.HasPrefix(k, "p:"):
				in.Participants = append(in.Participants, k[2:])
			}
		}
		slices.SortFunc(in.OpenTasks, func(a, b TaskRef) int { return strings.Compare(a.Domain+"\t"+a.ID, b.Domain+"\t"+b.ID) })
		slices.Sort(in.Participants)
		out[i] = in
	}
	return out, nil
}

// Timeline returns the instance's timeline, oldest first (at most
// TimelineCap events, the newest). ErrNotFound when there is no instance.
// Sequence numbers are implicit in the store: the last event's is the
// record's count of events, so the list and the count are read together.
func (s *Store) Timeline(ctx context.Context, id string) ([]Event, error) {
	p := s.shardPrefix(s.shardOf(id))
	var rec *redis.SliceCmd
	var list *redis.StringSliceCmd
	_, err := s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		rec = pipe.HMGet(ctx, p+"i:"+id, "startedAt", "seq")
		list = pipe.LRange(ctx, p+"l:"+id, 0, -1)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("instances: timeline: %w", err)
	}
	v := rec.Val()
	started, _ := v[0].(string)
	seqs, _ := v[1].(string)
	if started == "" {
		return nil, ErrNotFound
	}
	last, _ := strconv.ParseInt(seqs, 10, 64)
	raws := list.Val()
	out := make([]Event, 0, len(raws))
	for i, raw := range raws {
		var e Event
		if err := json.Unmarshal([]byte(raw), &e); err != nil {
			return nil, fmt.Errorf("instances: timeline of %q: %w", id, err)
		}
		e.Instance = id
		e.Seq = last - int64(len(raws)-1-i)
		out = append(out, e)
	}
	return out, nil
}

// CountOpen returns how many instances are open (RUNNING or WAITING),
// every tenant's, from one counter per shard: one pipelined round trip.
func (s *Store) CountOpen(ctx context.Context) (int64, error) {
	cmds := make([]*redis.StringCmd, s.cfg.Shards)
	_, err := s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for sh := range s.cfg.Shards {
			cmds[sh] = pipe.Get(ctx, s.shardPrefix(sh)+"nopen")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("instances: count open: %w", err)
	}
	var n int64
	for _, c := range cmds {
		v, _ := c.Int64()
		n += v
	}
	return n, nil
}
