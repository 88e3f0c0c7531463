package instances

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// SortStartedAt is the one order of a listing: newest start first. Every
// filter of SPEC §13 is served by an index in that order, written only when
// an instance starts or ends, so tracking costs no index write per step.
const SortStartedAt = "startedAt"

// Filter selects a listing page. Tenant always applies: a listing never
// crosses tenants.
type Filter struct {
	Tenant string
	// Viewer, when set, narrows the listing to the instances that user
	// started or acted on (a non-admin); empty lists all of the tenant's.
	Viewer                      string
	Saga, Status, BusinessKey   string
	StartedAfter, StartedBefore int64 // epoch ms, inclusive; 0: unbounded
	Sort                        string
	Limit                       int
	// Cursor is the NextCursor of the previous page.
	Cursor string
}

// Page is one listing page. NextCursor is empty on the last page; a page
// may be shorter than the limit and still have one, when a selective filter
// left part of the indexes unread.
type Page struct {
	Instances  []*Instance
	NextCursor string
}

// ErrBadFilter: a filter or cursor the store cannot use (HTTP 400).
var ErrBadFilter = errors.New("instances: bad filter")

type position struct {
	score int64
	id    string
}

func (p position) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(p.score, 10) + ":" + p.id))
}

func decodeCursor(c string) (position, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil {
		s, id, ok := strings.Cut(string(b), ":")
		if n, perr := strconv.ParseInt(s, 10, 64); ok && perr == nil && id != "" {
			return position{n, id}, nil
		}
	}
	return position{}, fmt.Errorf("%w: cursor %.40q is not one this server gave", ErrBadFilter, c)
}

// after orders positions newest first: p comes after q in a listing.
func (p position) after(q position) bool {
	return p.score < q.score || p.score == q.score && p.id < q.id
}

// List returns a page of the tenant's instances, newest first. Its Redis
// work is bounded by the page: each shard's index read reads at most a page
// of matches or scanBudget index entries, whichever comes first.
func (s *Store) List(ctx context.Context, f Filter) (Page, error) {
	if f.Limit <= 0 {
		f.Limit = DefaultLimit
	}
	if f.Limit > MaxLimit {
		return Page{}, fmt.Errorf("%w: limit %d is above %d", ErrBadFilter, f.Limit, MaxLimit)
	}
	if f.Sort != "" && f.Sort != SortStartedAt {
		return Page{}, fmt.Errorf("%w: sort %q is not startedAt", ErrBadFilter, f.Sort)
	}
	if f.Status != "" && !slices.Contains(Statuses, f.Status) {
		return Page{}, fmt.Errorf("%w: status %q is not one of %s", ErrBadFilter, f.Status, strings.Join(Statuses, ", "))
	}
	var cur *position
	if f.Cursor != "" {
		p, err := decodeCursor(f.Cursor)
		if err != nil {
			return Page{}, err
		}
		cur = &p
	}
	indexes := s.indexes(f)
	after, before := "", ""
	if f.StartedAfter > 0 {
		after = strconv.FormatInt(f.StartedAfter, 10)
	}
	if f.StartedBefore > 0 {
		before = strconv.FormatInt(f.StartedBefore, 10)
	}
	// Each shard's index is a source of the merge below; a listing of
	// every status merges the open index with the ended ones.
	cmds := make([]*redis.Cmd, 0, s.cfg.Shards*len(indexes))
	_, err := s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for sh := range s.cfg.Shards {
			p := s.shardPrefix(sh)
			t := p + "t" + strconv.Itoa(len(f.Tenant)) + ":" + f.Tenant + ":"
			cs, cid := "", ""
			if cur != nil {
				cs, cid = strconv.FormatInt(cur.score, 10), cur.id
			}
			for _, index := range indexes {
				cmds = append(cmds, listScript.EvalSha(ctx, pipe, []string{t + index}, p, cs, cid, f.Limit, scanBudget,
					f.Saga, f.Status, f.BusinessKey, f.Viewer, after, before))
			}
		}
		return nil
	})
	if isNoScript(err) {
		if err := listScript.Load(ctx, s.rdb).Err(); err != nil {
			return Page{}, fmt.Errorf("instances: load script: %w", err)
		}
		return s.List(ctx, f)
	}
	if err != nil {
		return Page{}, fmt.Errorf("instances: list: %w", err)
	}
	var found []position
	var stop *position // the newest point some shard has not read past
	for _, c := range cmds {
		vals, _ := c.Val().([]any)
		n := len(vals)
		if n%2 == 1 {
			score, _ := strconv.ParseInt(fmt.Sprint(vals[n-2]), 10, 64)
			p := position{score, fmt.Sprint(vals[n-1])}
			if stop == nil || stop.after(p) {
				stop = &p
			}
			n -= 3
		}
		for i := 0; i+1 < n; i += 2 {
			score, _ := strconv.ParseInt(fmt.Sprint(vals[i+1]), 10, 64)
			found = append(found, position{score, fmt.Sprint(vals[i])})
		}
	}
	slices.SortFunc(found, func(a, b position) int {
		switch {
		case a == b:
			return 0
		case a.after(b):
			return 1
		}
		return -1
	})
	// Past a shard's stop point there may be matches it did not read:
	// the page ends there, and the cursor resumes from it.
	var page []position
	next := ""
	for _, p := range found {
		if stop != nil && p.after(*stop) {
			next = stop.encode()
			break
		}
		if len(page) == f.Limit {
			next = page[len(page)-1].encode()
			break
		}
		page = append(page, p)
	}
	if next == "" && stop != nil && len(page) < f.Limit {
		next = stop.encode()
	}
	if next == "" && len(page) == f.Limit {
		// A shard may hold more than it returned.
		next = page[len(page)-1].encode()
	}
	ids := make([]string, len(page))
	for i, p := range page {
		ids[i] = p.id
	}
	got, err := s.getMany(ctx, ids)
	if err != nil {
		return Page{}, err
	}
	out := Page{Instances: make([]*Instance, 0, len(got)), NextCursor: next}
	for _, in := range got {
		if in != nil {
			out.Instances = append(out.Instances, in)
		}
	}
	return out, nil
}

// indexes picks the indexes that hold the fewest entries beside what f
// asks for; the list script filters the rest.
func (s *Store) indexes(f Filter) []string {
	switch {
	case f.Viewer != "":
		return []string{"v:" + f.Viewer}
	case f.BusinessKey != "":
		return []string{"bk:" + f.BusinessKey}
	case f.Saga != "":
		return []string{"saga:" + f.Saga}
	case Ended(f.Status):
		return []string{"st:" + f.Status}
	case f.Status != "":
		return []string{"open"}
	}
	return []string{"open", "st:" + StatusCompleted, "st:" + StatusFailed, "st:" + StatusCancelled}
}
