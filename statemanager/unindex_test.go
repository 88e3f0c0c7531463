package statemanager

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sagarunner/sagarunner/internal/redistest"
)

// TestUnindexIsReindexToNothing: lib.lua's unindex, which every close
// runs, leaves exactly what reindex(tp, id, f, nil) leaves, for tasks in
// every kind of family: a user's, roles (repeated too), a claimer and an
// executor (the same person too), IN_APPROVAL with and without approver
// roles, a priority, and a closed task (in none).
func TestUnindexIsReindexToNothing(t *testing.T) {
	ctx := context.Background()
	_, rdb := redistest.Start(t)
	// Each task enters its families with reindex, with a neighbour that
	// stays, then leaves them by the function named in ARGV[1].
	body := `
local f = {}
for i = 4, #ARGV, 2 do f[ARGV[i]] = ARGV[i + 1] end
local tp, id = ARGV[2], ARGV[3]
local other = {}
for k, v in pairs(f) do other[k] = v end
other['dm'], other['pm'] = nil, nil
reindex(tp, 'neighbour', nil, other)
reindex(tp, id, nil, f)
if ARGV[1] == 'unindex' then unindex(tp, id, f) else reindex(tp, id, f, nil) end
return 0
`
	script := redis.NewScript(withLib(libLua, body))
	tasks := []map[string]string{
		{"s": "WAITING", "s0": "100"},
		{"s": "WAITING", "s0": "100", "dl": "500", "u": "ann", "r": "clerk", "pr": "3"},
		{"s": "WAITING", "s0": "100", "r": "clerk\x1fboss\x1fclerk", "cl": "bob", "cp": "bob"},
		{"s": "WAITING", "s0": "100", "u": "", "cl": "bob", "cp": "cid", "pr": "-2"},
		{"s": "IN_APPROVAL", "s0": "100", "r": "clerk\x1fboss", "cp": "bob"},
		{"s": "IN_APPROVAL", "s0": "100", "r": "clerk", "ar": "director\x1fauditor\x1fdirector", "cl": "bob", "cp": "eve", "dl": "900"},
		{"s": "COMPLETED", "s0": "100", "r": "clerk"},
	}
	for i, f := range tasks {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			var dumps [2][]string
			for j, how := range []string{"unindex", "reindex"} {
				tp := fmt.Sprintf("{t%d}:%s:", i, how)
				args := []any{how, tp, "task"}
				for k, v := range f {
					args = append(args, k, v)
				}
				if err := script.Run(ctx, rdb, []string{tp + "x"}, args...).Err(); err != nil {
					t.Fatal(err)
				}
				dumps[j] = dumpPrefix(t, rdb, tp)
			}
			if !slices.Equal(dumps[0], dumps[1]) {
				t.Fatalf("unindex left\n%s\nreindex left\n%s", strings.Join(dumps[0], "\n"), strings.Join(dumps[1], "\n"))
			}
			if f["s"] != "COMPLETED" && len(dumps[0]) == 0 {
				t.Fatal("the neighbour is listed nowhere")
			}
		})
	}
}

// dumpPrefix reads the zsets and counters under prefix, prefix cut off.
func dumpPrefix(t *testing.T, rdb *redis.Client, prefix string) []string {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range keys {
		var v any
		if rdb.Type(ctx, k).Val() == "zset" {
			v = rdb.ZRangeWithScores(ctx, k, 0, -1).Val()
		} else {
			v = rdb.Get(ctx, k).Val()
		}
		out = append(out, fmt.Sprintf("%s %v", strings.TrimPrefix(k, prefix), v))
	}
	slices.Sort(out)
	return out
}
