package statemanager

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// The orders of a listing of open tasks (Filter.Sort). Closed tasks are
// always listed by ClosedAt.
const (
	// SortStartedAt lists the oldest first (the default).
	SortStartedAt = "startedAt"
	// SortDeadline lists the earliest deadline first, tasks without a
	// deadline last, the oldest first among equals.
	SortDeadline = "deadline"
	// SortPriority lists the highest priority first, the oldest first
	// among equals.
	SortPriority = "priority"
)

// Sorts are the values Filter.Sort accepts ("" is SortStartedAt).
var Sorts = []string{SortStartedAt, SortDeadline, SortPriority}

// Sort-key bounds. A sort key is fixed-width decimal numbers then the id,
// so byte order is the listing's order in Go, in Redis and in its scripts;
// every number stays below 2^53, which a Lua number holds exactly. A
// deadline at or past keyMax sorts as none, a priority beyond
// ±keyPriorityMax as that bound.
const (
	keyMax          int64 = 9_000_000_000_000_000
	keyPriorityZero int64 = 5_000_000_000_000_000
	keyPriorityMax  int64 = 4_000_000_000_000_000
	keyWidth              = 16
)

func keyNum(n int64) string {
	n = min(max(n, 0), keyMax)
	s := strconv.FormatInt(n, 10)
	return strings.Repeat("0", keyWidth-len(s)) + s
}

// sortKey is t's place in a listing of status in order sort (lib.lua's
// deadlineMember and priorityMember compute the same).
func sortKey(status, sort string, t *Task) string {
	if !Open(status) {
		return keyNum(t.ClosedAt) + t.ID
	}
	switch sort {
	case SortDeadline:
		dl := t.Deadline
		if dl <= 0 || dl >= keyMax {
			dl = keyMax
		}
		return keyNum(dl) + keyNum(t.StartedAt) + t.ID
	case SortPriority:
		p := min(max(int64(t.Priority), -keyPriorityMax), keyPriorityMax)
		return keyNum(keyPriorityZero-p) + keyNum(t.StartedAt) + t.ID
	}
	return keyNum(t.StartedAt) + t.ID
}

// keyDigits is how many digits open a sort key of status and sort.
func keyDigits(status, sort string) int {
	if Open(status) && (sort == SortDeadline || sort == SortPriority) {
		return 2 * keyWidth
	}
	return keyWidth
}

// statusOf is the status f lists: WAITING unless it names one.
func statusOf(f Filter) string {
	if f.Status == "" {
		return StatusWaiting
	}
	return f.Status
}

// cursorVersion is the version of the cursor's encoding: a cursor of
// another version is refused, never misread.
const cursorVersion = 1

// maxCursorLen bounds an encoded cursor: a sort key is two numbers and an
// id.
const maxCursorLen = 2048

// cursor is what Filter.Cursor carries, base64url-encoded JSON: the
// listing it belongs to and where its last page ended. It only says where
// to go on: every filter and the viewer's visibility apply as on the first
// page, so a forged cursor shows nothing its bearer could not list without
// one.
type cursor struct {
	V int    `json:"v"`
	F uint32 `json:"f"` // the listing's fingerprint (fingerprint)
	K string `json:"k"` // the sort key of the last task listed
}

// fingerprint names a listing: its status, order and filters. A cursor is
// only valid for the listing it came from, since a sort key means nothing
// in another order.
func fingerprint(f Filter) uint32 {
	status := statusOf(f)
	sort := f.Sort
	if sort == "" {
		sort = SortStartedAt
	}
	parts := []string{status, sort, f.User, f.Role, f.ClaimedBy, f.Tenant}
	if f.Candidate != nil {
		parts = append(parts, "candidate", f.Candidate.User, joinRoles(f.Candidate.Roles))
	}
	return crc32.ChecksumIEEE([]byte(strings.Join(parts, "\x00")))
}

// CursorAfter returns the cursor of the page that follows a page of f
// ending with last: f with it as Cursor lists the tasks after last.
func CursorAfter(f Filter, last *Task) string {
	return cursorAt(f, sortKey(statusOf(f), f.Sort, last))
}

// afterKey decodes f.Cursor into the sort key to list after ("" without a
// cursor). A cursor that is malformed, of another version or of another
// listing is ErrInvalidFilter.
func afterKey(f Filter) (string, error) {
	if f.Cursor == "" {
		return "", nil
	}
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w: cursor %s", ErrInvalidFilter, why)
	}
	if len(f.Cursor) > maxCursorLen {
		return bad("too long")
	}
	b, err := base64.RawURLEncoding.DecodeString(f.Cursor)
	if err != nil {
		return bad("is not base64url")
	}
	var c cursor
	if err := json.Unmarshal(b, &c); err != nil {
		return bad("is malformed")
	}
	if c.V != cursorVersion {
		return bad(fmt.Sprintf("of version %d, not %d", c.V, cursorVersion))
	}
	if c.F != fingerprint(f) {
		return bad("belongs to another listing (status, sort or filters changed)")
	}
	n := keyDigits(statusOf(f), f.Sort)
	if len(c.K) <= n {
		return bad("is malformed")
	}
	for i := 0; i < n; i++ {
		if c.K[i] < '0' || c.K[i] > '9' {
			return bad("is malformed")
		}
	}
	return c.K, nil
}

// Page is one page of a listing: its tasks and the cursor of the next
// page, "" on the last one.
type Page struct {
	Tasks []*Task
	Next  string
}

// Pager is an optional extension of Store whose listing pages itself: its
// pages may end short of f.Limit, with a Next cursor, where its walk of the
// indexes reached its bound; only the page with no Next is the last.
type Pager interface {
	ListPage(ctx context.Context, f Filter) (Page, error)
}

// cursorAt returns the cursor of f's listing going on after sort key k.
func cursorAt(f Filter, k string) string {
	b, _ := json.Marshal(cursor{V: cursorVersion, F: fingerprint(f), K: k})
	return base64.RawURLEncoding.EncodeToString(b)
}

// ListPage lists the page of f that f.Cursor points at (the first without
// one), f.Limit tasks (DefaultLimit if <= 0), through s's Pager when it
// has one. Otherwise it asks s for one task more than the page, so the
// last page is known as such and has no Next.
func ListPage(ctx context.Context, s Store, f Filter) (Page, error) {
	if p, ok := s.(Pager); ok {
		return p.ListPage(ctx, f)
	}
	limit := orDefault(f.Limit)
	q := f
	q.Limit = limit + 1
	tasks, err := s.List(ctx, q)
	if err != nil {
		return Page{}, err
	}
	if len(tasks) <= limit {
		return Page{Tasks: tasks}, nil
	}
	tasks = tasks[:limit]
	return Page{Tasks: tasks, Next: CursorAfter(f, tasks[limit-1])}, nil
}

// TaskCounter is an optional extension of Store: Count answers how many
// tasks List would list for f over all its pages (f.Limit and f.Cursor
// are ignored). exact is false when n is an upper bound (see the
// implementation). A filter List refuses is ErrInvalidFilter.
type TaskCounter interface {
	Count(ctx context.Context, f Filter) (n int64, exact bool, err error)
}
