package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/tidwall/gjson"

	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// betweenPage bounds how many due tasks TimeoutBetween asks the store for at
// once, so a large range is swept in pages instead of one huge reply.
const betweenPage = 100

func init() {
	Default.Register(&Spec{
		Name:   "TimeoutBetween",
		Sweeps: true,
		Doc: "Times out every waiting task whose deadline lies in [from, to], each exactly as an automatic " +
			"timeout would, then moves the state manager's watermark to the end of the range. The domain " +
			"defaults to " + DefaultDomain + ".",
		Domain:        Optional,
		InputElement:  Optional,
		OutputElement: Optional,
		Params: []Param{
			{Name: "fromTimePath", Type: Path, Doc: "Path of the start of the range (epoch ms or RFC 3339); default: the last watermark", Example: "start"},
			{Name: "toTimePath", Type: Path, Doc: "Path of the end of the range (epoch ms or RFC 3339), which becomes the new watermark; default: now", Example: "end"},
		},
		New: newTimeoutBetween,
	})
}

type timeoutBetween struct {
	domain        string
	inputElement  string
	outputElement string
	fromTimePath  string
	toTimePath    string
}

func newTimeoutBetween(c Config) (Action, error) {
	a := &timeoutBetween{
		domain:        c.Domain,
		inputElement:  c.InputElement,
		outputElement: c.OutputElement,
		fromTimePath:  c.String("fromTimePath"),
		toTimePath:    c.String("toTimePath"),
	}
	if a.domain == "" {
		a.domain = DefaultDomain
	}
	if !validDomain(a.domain) {
		return nil, fmt.Errorf("TimeoutBetween: %s", domainReason(a.domain))
	}
	return a, nil
}

// Execute sweeps [from, to] page by page. Each task is closed with
// TimeoutKey, so a task the automatic timer fired meanwhile is the same
// decision, and a task a proceed won is skipped. The watermark moves only
// after the sweep, so a crash mid-way sweeps the range again on redelivery.
func (a *timeoutBetween) Execute(ctx context.Context, x *Exec, env *envelope.Envelope) (Outcome, error) {
	in, ok := input(env, a.inputElement)
	if !ok {
		return Outcome{Env: env}, nil
	}
	store, err := storeOf(x, a.domain)
	if err != nil {
		return Outcome{}, fmt.Errorf("TimeoutBetween: %w", err)
	}
	now := nowMillis(x)
	to, found, ok := timeAt(env, in, a.toTimePath, "toTimePath")
	if !ok {
		return Outcome{Env: env}, nil
	}
	if !found {
		to = now
	}
	from, found, ok := timeAt(env, in, a.fromTimePath, "fromTimePath")
	if !ok {
		return Outcome{Env: env}, nil
	}
	if !found {
		if from, err = store.Watermark(ctx); err != nil {
			return Outcome{}, fmt.Errorf("TimeoutBetween: watermark of %q: %w: %w", a.domain, ErrRetryable, err)
		}
	}

	var out Outcome
	count := 0
	seen := map[string]bool{}
	scoped := !trusted(env.RequestMeta)
	for from <= to {
		due, err := store.Between(ctx, from, to, betweenPage)
		if err != nil {
			return Outcome{}, fmt.Errorf("TimeoutBetween: due tasks of %q: %w: %w", a.domain, ErrRetryable, err)
		}
		fresh := 0
		for _, d := range due {
			if seen[d.ID] {
				continue
			}
			seen[d.ID] = true
			fresh++
			if scoped {
				// A caller with an identity sweeps its own tenant only:
				// the due index is shared by every tenant of the domain.
				t, err := store.Get(ctx, d.ID)
				switch {
				case errors.Is(err, statemanager.ErrNotFound):
					continue
				case err != nil:
					return Outcome{}, fmt.Errorf("TimeoutBetween: get %q in %q: %w: %w", d.ID, a.domain, ErrRetryable, err)
				case t.Tenant != env.RequestMeta.Tenant:
					continue
				}
			}
			t, recs, err := CloseTask(ctx, x, a.domain, statemanager.Close{
				ID: d.ID, Status: statemanager.StatusTimeout, At: now, Key: TimeoutKey,
			})
			switch {
			case errors.Is(err, statemanager.ErrNotFound), errors.Is(err, statemanager.ErrClosed), errors.Is(err, statemanager.ErrStale):
				continue // closed by someone else since Between: their decision stands
			case err != nil:
				return Outcome{}, fmt.Errorf("TimeoutBetween: %w", err)
			}
			out.Records = append(out.Records, recs...)
			out.Acks = append(out.Acks, Ack{Domain: a.domain, ID: t.ID})
			count++
		}
		// A page with nothing new means the store keeps returning tasks
		// that cannot be closed; stop rather than spin.
		if len(due) < betweenPage || fresh == 0 {
			break
		}
	}
	// The watermark is the domain's, shared by every tenant: only a
	// trusted caller (a scheduler's tick) moves it.
	if !scoped {
		if err := store.SetWatermark(ctx, to); err != nil {
			return Outcome{}, fmt.Errorf("TimeoutBetween: watermark of %q: %w: %w", a.domain, ErrRetryable, err)
		}
	}
	env.Succeed()
	if a.outputElement != "" {
		res, _ := json.Marshal(struct {
			Count int   `json:"count"`
			From  int64 `json:"from"`
			To    int64 `json:"to"`
		}{count, from, to})
		if err := env.Set(a.outputElement, res); err != nil {
			env.Fail(CodeBadInput, "output element %q: %v", a.outputElement, err)
		}
	}
	out.Env = env
	return out, nil
}

// timeAt reads a time at path in the input: epoch ms as a number or numeric
// string, or an RFC 3339 string. found=false when no path is configured or it
// resolves to nothing; ok=false (FAIL set) when the value is not a time.
func timeAt(env *envelope.Envelope, in []byte, path, param string) (ms int64, found, ok bool) {
	if path == "" {
		return 0, false, true
	}
	v := lookup(env, in, path)
	switch v.Type {
	case gjson.Null:
		return 0, false, true
	case gjson.Number:
		if n, err := strconv.ParseInt(v.Raw, 10, 64); err == nil {
			return n, true, true
		}
		if f := v.Float(); f == float64(int64(f)) {
			return int64(f), true, true
		}
	case gjson.String:
		if n, err := strconv.ParseInt(v.Str, 10, 64); err == nil {
			return n, true, true
		}
		if t, err := time.Parse(time.RFC3339Nano, v.Str); err == nil {
			return t.UnixMilli(), true, true
		}
	}
	env.Fail(CodeBadInput, "%s %q: want epoch milliseconds or an RFC 3339 time, got %s", param, path, v.Raw)
	return 0, false, false
}
