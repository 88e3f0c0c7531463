package instances

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
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

func (s *Store) shardOf(id string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return int(h.Sum32() % uint32(s.cfg.Shards))
}

// shardPrefix is the key prefix of a shard: its hash tag keeps all of a
// shard's keys in one Redis Cluster slot.
func (s *Store) shardPrefix(shard int) string {
	return "{" + s.cfg.Prefix + ":" + strconv.Itoa(shard) + "}:"
}

// Apply writes events, in order, in one pipelined round trip: one script
// call per shard touched, each applying that shard's instances atomically.
// Events already applied (same instance and Key) are skipped, so Apply may
// be repeated with the same events. Errors are Redis's; nothing is applied
// in part within one instance.
func (s *Store) Apply(ctx context.Context, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	type group struct {
		id     string
		events [][]byte
	}
	shards := map[int][]*group{}
	byID := map[string]*group{}
	var order []int
	var buf []byte
	for i := range events {
		e := &events[i]
		g := byID[e.Instance]
		if g == nil {
			g = &group{id: e.Instance}
			byID[e.Instance] = g
			sh := s.shardOf(e.Instance)
			if _, ok := shards[sh]; !ok {
				order = append(order, sh)
			}
			shards[sh] = append(shards[sh], g)
		}
		buf = e.AppendJSON(buf[:0])
		g.events = append(g.events, slices.Clone(buf))
	}
	type call struct {
		keys []string
		args []any
		cmd  *redis.Cmd
	}
	calls := make([]*call, 0, len(order))
	for _, sh := range order {
		p := s.shardPrefix(sh)
		args := []any{p, s.cfg.TimelineCap, s.cfg.Retention.Milliseconds()}
		for _, g := range shards[sh] {
			args = append(args, g.id, len(g.events))
			for _, ev := range g.events {
				args = append(args, ev)
			}
		}
		calls = append(calls, &call{keys: []string{p + "x"}, args: args})
	}
	run := func(calls []*call) error {
		_, err := s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for _, c := range calls {
				c.cmd = applyScript.EvalSha(ctx, pipe, c.keys, c.args...)
			}
			return nil
		})
		return err
	}
	if err := run(calls); err != nil {
		if !isNoScript(err) {
			return fmt.Errorf("instances: apply: %w", err)
		}
		// A restarted Redis lost the script; nothing ran.
		if err := applyScript.Load(ctx, s.rdb).Err(); err != nil {
			return fmt.Errorf("instances: load script: %w", err)
		}
		if err := run(calls); err != nil {
			return fmt.Errorf("instances: apply: %w", err)
		}
	}
	return nil
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
	type reads struct {
		rec   *redis.MapStringStringCmd
		open  *redis.StringSliceCmd
		users *redis.StringSliceCmd
	}
	rs := make([]reads, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, id := range ids {
			p := s.shardPrefix(s.shardOf(id))
			rs[i] = reads{pipe.HGetAll(ctx, p+"i:"+id), pipe.SMembers(ctx, p+"o:"+id), pipe.SMembers(ctx, p+"p:"+id)}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("instances: get: %w", err)
	}
	out := make([]*Instance, len(ids))
	for i, id := range ids {
		h := rs[i].rec.Val()
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
		for _, ref := range rs[i].open.Val() {
			d, t, _ := strings.Cut(ref, "\t")
			in.OpenTasks = append(in.OpenTasks, TaskRef{Domain: d, ID: t})
		}
		slices.SortFunc(in.OpenTasks, func(a, b TaskRef) int { return strings.Compare(a.Domain+"\t"+a.ID, b.Domain+"\t"+b.ID) })
		in.Participants = rs[i].users.Val()
		slices.Sort(in.Participants)
		out[i] = in
	}
	return out, nil
}

// Timeline returns the instance's timeline, oldest first (at most
// TimelineCap events, the newest). ErrNotFound when there is no instance.
func (s *Store) Timeline(ctx context.Context, id string) ([]Event, error) {
	p := s.shardPrefix(s.shardOf(id))
	var exists *redis.IntCmd
	var started *redis.StringCmd
	var list *redis.StringSliceCmd
	_, err := s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		exists = pipe.Exists(ctx, p+"i:"+id)
		started = pipe.HGet(ctx, p+"i:"+id, "startedAt")
		list = pipe.LRange(ctx, p+"l:"+id, 0, -1)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("instances: timeline: %w", err)
	}
	if exists.Val() == 0 {
		return nil, ErrNotFound
	}
	if started.Val() == "" {
		return nil, ErrNotFound
	}
	out := make([]Event, 0, len(list.Val()))
	for _, raw := range list.Val() {
		var e Event
		if err := json.Unmarshal([]byte(raw), &e); err != nil {
			return nil, fmt.Errorf("instances: timeline of %q: %w", id, err)
		}
		e.Instance = id
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
