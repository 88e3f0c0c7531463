package statemanager

// The listings of a RedisStore: the inbox (SPEC §12) read from the listing
// families the start, apply and close scripts keep (see the key layout in
// redis.go), one script call per shard over the few zsets a filter names,
// reading about a page of each.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// countWalkCap bounds the entries a Count walks in one shard when the
// filter is not read off the cardinalities (see Count).
const countWalkCap = 10_000

// List returns up to f.Limit (DefaultLimit if <= 0) tasks of f.Tenant
// matching f after f.Cursor, in f.Sort's order for open tasks and by
// ClosedAt for closed ones; see Filter. Closed tasks are listed while kept
// (ClosedTTL after close). Each shard runs one script over the few indexes
// the filter names (see planList), reading about f.Limit entries of each.
func (s *RedisStore) List(ctx context.Context, f Filter) ([]*Task, error) {
	page, err := s.ListPage(ctx, f)
	return page.Tasks, err
}

var _ Pager = (*RedisStore)(nil)

// ListPage lists one page of f; see Pager. Each shard's script walks at
// most walkCap(limit) index entries: a filter that passes over many (a
// candidate's role full of tasks claimed by others) ends the page short,
// with a cursor after the last entry walked, rather than holding Redis
// for a walk of the whole index.
func (s *RedisStore) ListPage(ctx context.Context, f Filter) (Page, error) {
	limit := orDefault(f.Limit)
	q := f
	q.Limit = limit + 1
	plan, err := planList(q, s.closedTTL)
	if err != nil {
		return Page{}, err
	}
	if len(plan.families) == 0 {
		return Page{}, nil
	}
	tasks, cut, err := s.list(ctx, q, plan)
	if err != nil {
		return Page{}, err
	}
	if len(tasks) > limit {
		tasks = tasks[:limit]
		return Page{Tasks: tasks, Next: CursorAfter(f, tasks[limit-1])}, nil
	}
	if cut != "" {
		return Page{Tasks: tasks, Next: cursorAt(f, cut)}, nil
	}
	return Page{Tasks: tasks}, nil
}

// walkCap bounds the index entries one shard's script walks for a page of
// limit tasks.
func walkCap(limit int) int { return max(4*limit, 256) }

// listPlan is what one listing reads in every shard: index families, named
// relative to the tenant prefix, and the secondary filters the script
// applies to their entries.
type listPlan struct {
	status string
	sort   string
	limit  int
	// families are the index families read: each is three zsets for open
	// tasks, one per order (see indexKey).
	families []string
	// user, role and claimedBy filter on taskUser, taskRoles and
	// claimedBy ("" = any); candidate, when set, keeps the tasks it may
	// take up.
	user, role, claimedBy string
	candidate             *Viewer
	// window is ClosedTTL for closed indexes (see list.lua), 0 for open.
	window int64
	// after is the sort key the listing continues after ("" = from the
	// start).
	after string
}

// lex reports whether the plan's zsets are ordered by member (the deadline
// and priority orders) rather than scored by time.
func (p listPlan) lex() bool {
	return Open(p.status) && (p.sort == SortDeadline || p.sort == SortPriority)
}

// indexKey is the zset of family fam in the plan's order: the family
// itself is scored by startedAt (closedAt for closed tasks), d:<fam> and
// p:<fam> are ordered by lib.lua's deadlineMember and priorityMember.
func (p listPlan) indexKey(fam string) string {
	if !Open(p.status) {
		return fam
	}
	switch p.sort {
	case SortDeadline:
		return "d:" + fam
	case SortPriority:
		return "p:" + fam
	}
	return fam
}

// filtered reports whether the script filters the families' entries on
// more than their status.
func (p listPlan) filtered() bool {
	return p.user != "" || p.role != "" || p.claimedBy != "" || p.candidate != nil
}

// planList picks the families holding exactly what f asks for. No plan
// reads an index of another tenant, or one a viewer could not see all of.
func planList(f Filter, closedTTL time.Duration) (listPlan, error) {
	p := listPlan{status: statusOf(f), sort: f.Sort, limit: orDefault(f.Limit)}
	switch p.status {
	case StatusWaiting, StatusInApproval, StatusCompleted, StatusTimeout, StatusCancelled:
	default:
		return p, fmt.Errorf("%w: unknown status %q", ErrInvalidFilter, f.Status)
	}
	if p.sort == "" {
		p.sort = SortStartedAt
	}
	if !slices.Contains(Sorts, p.sort) {
		return p, fmt.Errorf("%w: unknown sort %q: one of %v", ErrInvalidFilter, f.Sort, Sorts)
	}
	if !Open(p.status) && p.sort != SortStartedAt {
		return p, fmt.Errorf("%w: closed tasks are listed by the time they closed; sort=%s is for open ones", ErrInvalidFilter, p.sort)
	}
	after, err := afterKey(f)
	if err != nil {
		return p, err
	}
	p.after = after
	v := f.Viewer
	all := v == nil || v.Admin
	p.user, p.role, p.claimedBy, p.candidate = f.User, f.Role, f.ClaimedBy, f.Candidate
	if !all && p.candidate != nil {
		p.candidate = &Viewer{User: v.User, Roles: v.Roles}
	}
	add := func(fam string) {
		if !slices.Contains(p.families, fam) {
			p.families = append(p.families, fam)
		}
	}
	roles := func(prefix string, rs []string) {
		for _, r := range rs {
			if r != "" {
				add(prefix + r)
			}
		}
	}
	if Open(p.status) {
		switch {
		case f.ClaimedBy != "" && (all || f.ClaimedBy == v.User):
			// c:<user> also holds the tasks the user completed: the
			// claimedBy filter stays.
			add("c:" + f.ClaimedBy)
		case f.User != "" && (all || f.User == v.User):
			add("u:" + f.User)
			p.user = "" // the index is the filter
		case f.Role != "" && (all || slices.Contains(v.Roles, f.Role)):
			add("r:" + f.Role)
			p.role = ""
		case p.candidate != nil && p.status == StatusInApproval:
			roles("a:", p.candidate.Roles)
		case p.candidate != nil:
			if p.candidate.User != "" {
				add("u:" + p.candidate.User)
			}
			roles("r:", p.candidate.Roles)
		case all:
			add("waiting")
		default:
			// The viewer's own inbox: its user's tasks and its roles', those
			// it claimed or completed, and those it may approve.
			if v.User != "" {
				add("u:" + v.User)
				add("c:" + v.User)
			}
			roles("r:", v.Roles)
			if p.status == StatusInApproval {
				roles("a:", v.Roles)
			}
		}
		return p, nil
	}
	// Closed tasks are indexed by status and by who acted on them.
	p.window = closedTTL.Milliseconds()
	if p.candidate != nil {
		return p, nil // a closed task has no candidates
	}
	actor := f.User
	if actor == "" {
		actor = f.ClaimedBy
	}
	if !all {
		if actor != "" && actor != v.User {
			return p, nil // another person's history is not the viewer's
		}
		actor = v.User
		if actor == "" {
			return p, nil
		}
	}
	switch {
	case actor != "":
		add("cb:" + p.status + ":" + actor)
		if p.user == actor {
			p.user = ""
		}
	case f.Role != "":
		return p, fmt.Errorf("%w: closed tasks are listed by status and by the user who acted on them, not by role %q alone", ErrInvalidFilter, f.Role)
	default:
		add("closed:" + p.status)
	}
	// taskUser is no filter of a person's history: User named the actor.
	p.user = ""
	return p, nil
}

// listArgs lays the plan out as list.lua's ARGV for shard k; countCap > 0
// asks for a count.
func (p listPlan) listArgs(k *shardKeys, countCap int) []interface{} {
	var cand, cUser, cRoles string
	if p.candidate != nil {
		cand, cUser, cRoles = "1", p.candidate.User, joinRoles(p.candidate.Roles)
	}
	kind := "s"
	switch {
	case p.byPriority():
		kind = "p"
	case p.lex():
		kind = "l"
	}
	return []interface{}{k.task, p.limit, p.status, p.user, p.role, p.window,
		kind, p.after, p.claimedBy, cand, cUser, cRoles, countCap, walkCap(p.limit)}
}

// keys are the zsets of the plan in the shard of k for tenant.
func (p listPlan) keys(k *shardKeys, tenant string) []string {
	tp := tenantPrefix(k.prefix, tenant)
	keys := make([]string, len(p.families))
	for i, fam := range p.families {
		keys[i] = tp + p.indexKey(fam)
	}
	if p.byPriority() {
		// The families by start too: their priority-0 tasks, which no p:
		// index holds (see priorityMember).
		for _, fam := range p.families {
			keys = append(keys, tp+fam)
		}
	}
	return keys
}

// byPriority reports whether the plan lists open tasks by priority.
func (p listPlan) byPriority() bool { return Open(p.status) && p.sort == SortPriority }

// runShards runs the list script on every shard in one pipeline, loading
// it where it is missing.
func (s *RedisStore) runShards(ctx context.Context, tenant string, plan listPlan, countCap int) ([]*redis.Cmd, error) {
	run := func() ([]*redis.Cmd, error) {
		cmds := make([]*redis.Cmd, s.shards)
		_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range s.shard {
				k := &s.shard[i]
				cmds[i] = listScript.Run(ctx, p, plan.keys(k, tenant), plan.listArgs(k, countCap)...)
			}
			return nil
		})
		return cmds, err
	}
	cmds, err := run()
	if isNoScript(err) {
		// Script.Run in a pipeline cannot fall back to EVAL; load the
		// script on every node and run the listing once more.
		if err := s.loadListScript(ctx); err != nil {
			return nil, err
		}
		cmds, err = run()
	}
	if err != nil {
		return nil, fmt.Errorf("statemanager: redis list: %w", err)
	}
	return cmds, nil
}

// list reads plan's page in every shard and merges them. cut is "" when
// every shard walked to its end or filled its page, else the least sort key
// at which a shard stopped its walk (walkCap): only tasks up to it are
// known in order, so the page holds those and the listing goes on after
// it.
func (s *RedisStore) list(ctx context.Context, f Filter, plan listPlan) ([]*Task, string, error) {
	cmds, err := s.runShards(ctx, f.Tenant, plan, 0)
	if err != nil {
		return nil, "", err
	}
	type keyed struct {
		key string
		t   *Task
	}
	var all []keyed
	cut := ""
	for _, c := range cmds {
		reply, _ := c.Val().([]interface{})
		if len(reply) != 2 {
			return nil, "", fmt.Errorf("statemanager: redis list: unexpected reply %T of %d", c.Val(), len(reply))
		}
		if k, _ := reply[1].(string); k != "" && (cut == "" || k < cut) {
			cut = k
		}
		rows, _ := reply[0].([]interface{})
		for _, r := range rows {
			fields, _ := r.([]interface{})
			t := s.decode(fields)
			// The indexes already hold only what the plan may show; this
			// keeps a hand-edited or stale index from ever widening it.
			if t.Tenant != f.Tenant || !t.VisibleTo(f.Tenant, f.Viewer) {
				continue
			}
			all = append(all, keyed{sortKey(plan.status, plan.sort, t), t})
		}
	}
	// Each shard's rows are in order; the page is the first of them all,
	// up to where a shard's walk stopped.
	sort.Slice(all, func(i, j int) bool { return all[i].key < all[j].key })
	if cut != "" {
		n := sort.Search(len(all), func(i int) bool { return all[i].key > cut })
		all = all[:n]
	}
	if len(all) > plan.limit {
		all, cut = all[:plan.limit], ""
	}
	out := make([]*Task, len(all))
	for i, k := range all {
		out[i] = k.t
	}
	return out, cut, nil
}

var _ TaskCounter = (*RedisStore)(nil)

// Count answers how many tasks List would list for f over all its pages;
// see TaskCounter. It is exact, read off the index cardinalities in one
// pipelined round trip, when the filter names one family of open tasks
// and nothing else: the tenant's open tasks (an admin's or trusted
// caller's), one taskUser's, one role's, or the IN_APPROVAL ones of an
// approver role. Otherwise each shard's script walks the families the
// filter names, exactly as List reads them, and the count is exact up to
// countWalkCap entries per shard; past that it is the sum of the
// families' cardinalities, an upper bound (exact=false). Closed tasks are
// always walked (their indexes keep entries of expired decisions until a
// listing reads them).
func (s *RedisStore) Count(ctx context.Context, f Filter) (int64, bool, error) {
	f.Cursor = ""
	plan, err := planList(f, s.closedTTL)
	if err != nil {
		return 0, false, err
	}
	if len(plan.families) == 0 {
		return 0, true, nil
	}
	plan.sort = SortStartedAt
	if Open(plan.status) && len(plan.families) == 1 && !plan.filtered() {
		return s.countCards(ctx, f.Tenant, plan)
	}
	cmds, err := s.runShards(ctx, f.Tenant, plan, countWalkCap)
	if err != nil {
		return 0, false, err
	}
	var n int64
	exact := true
	for _, c := range cmds {
		r, _ := c.Val().([]interface{})
		if len(r) != 2 {
			return 0, false, fmt.Errorf("statemanager: redis count: unexpected reply %v", c.Val())
		}
		if ok, _ := r[1].(int64); ok == 1 {
			v, _ := r[0].(int64)
			n += v
			continue
		}
		exact = false
	}
	if exact {
		return n, true, nil
	}
	return s.countBound(ctx, f.Tenant, plan)
}

// countCards reads the count of a plan of one open family off its
// cardinality and its IN_APPROVAL counter (q:<family>, kept by lib.lua's
// reindex); the approver families hold IN_APPROVAL tasks only.
func (s *RedisStore) countCards(ctx context.Context, tenant string, plan listPlan) (int64, bool, error) {
	fam := plan.families[0]
	approvers := len(fam) > 2 && fam[:2] == "a:"
	cards := make([]*redis.IntCmd, s.shards)
	inApproval := make([]*redis.StringCmd, s.shards)
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range s.shard {
			tp := tenantPrefix(s.shard[i].prefix, tenant)
			cards[i] = p.ZCard(ctx, tp+fam)
			if !approvers {
				inApproval[i] = p.Get(ctx, tp+"q:"+fam)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, false, fmt.Errorf("statemanager: redis count: %w", err)
	}
	var n int64
	for i := range cards {
		card := cards[i].Val()
		var q int64
		if !approvers {
			q, _ = strconv.ParseInt(inApproval[i].Val(), 10, 64)
			q = min(max(q, 0), card)
		}
		switch {
		case approvers && plan.status == StatusInApproval:
			n += card
		case approvers:
		case plan.status == StatusInApproval:
			n += q
		default:
			n += card - q
		}
	}
	return n, true, nil
}

// countBound is the sum of the plan's families' cardinalities over every
// shard: an upper bound of its count.
func (s *RedisStore) countBound(ctx context.Context, tenant string, plan listPlan) (int64, bool, error) {
	var cmds []*redis.IntCmd
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range s.shard {
			for _, k := range plan.keys(&s.shard[i], tenant) {
				cmds = append(cmds, p.ZCard(ctx, k))
			}
		}
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("statemanager: redis count: %w", err)
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, false, nil
}

// loadListScript loads the list script where the pipeline will run it: on
// every master of a cluster, or on the one server.
func (s *RedisStore) loadListScript(ctx context.Context) error {
	var err error
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return listScript.Load(ctx, c).Err()
		})
	} else {
		err = listScript.Load(ctx, s.client).Err()
	}
	if err != nil {
		return fmt.Errorf("statemanager: redis load list script: %w", err)
	}
	return nil
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}
