package instances

import (
	"slices"
	"strconv"

	"github.com/sagarunner/sagarunner/saga/envelope"
)

// Batch is the instance events of a batch of handled inputs, grouped and
// encoded once: each event's JSON is written a single time, inside the
// audit record of its instance, and the same bytes go to Redis.
//
// Within one input, an instance's events form one group, applied
// atomically by one read, one write and one push. A group is deduplicated
// by runs: a replayed input makes the same events, so one check per run
// of events replaces one per event. A run is the events up to a task
// event, or a task event on its own: the same task event comes again from
// other inputs (a close replayed, recovered after a crash, fired with
// other deadlines) beside other events each time, so only its own key says
// whether it was applied; the run that follows it is keyed by its own
// first event. A run already applied is skipped, the rest of its group
// applied.
//
// The zero Batch is empty and ready to use; a Batch is not safe for
// concurrent use, and the events added must not change until it is applied.
type Batch struct {
	buf    []byte
	evs    []encEvent
	groups []group
	runs   []run
	audits []Audit
	seen   map[string]bool
}

// Audit is one audit-topic record (docs/AUDIT.md): the events one handled
// input added to one instance, keyed by the instance id.
type Audit struct {
	Instance string
	Value    []byte
}

// encEvent is an event, where its JSON lies in Batch.buf, and the task it
// names as the apply script reads it ("domain\ttaskId", or "").
type encEvent struct {
	e        *Event
	off, end int32
	ref      string
}

// group is what the apply script applies as one: events
// evs[first:first+n] of one instance, one input's, in runs
// runs[run0:run0+nruns].
type group struct {
	id          string
	maxAt       int64
	first, n    int32
	run0, nruns int32
}

// run is what the apply script deduplicates as one: the next n events of
// its group, applied unless key was.
type run struct {
	key string
	n   int32
}

// Len reports how many events b holds.
func (b *Batch) Len() int { return len(b.evs) }

// Grow makes room for n more events, of inputs about to be added, so that
// adding them does not reallocate as it goes.
func (b *Batch) Grow(n int) {
	if n <= 0 {
		return
	}
	b.buf = slices.Grow(b.buf, 256*n)
	b.evs = slices.Grow(b.evs, n)
	b.groups = slices.Grow(b.groups, n/2+1)
	b.runs = slices.Grow(b.runs, n)
}

// Add adds the events of one handled input, in order, and returns its
// audit records, one per instance in order of first appearance. The
// returned values stay valid after later calls.
func (b *Batch) Add(events []Event) []Audit {
	if len(events) == 0 {
		return nil
	}
	a0 := len(b.audits)
	if b.buf == nil {
		b.buf = make([]byte, 0, 256*len(events))
	}
	// Most inputs touch one instance; a map only for the rare input that
	// touches many (a shard's fired deadlines, recovered closes).
	if len(events) > 16 {
		clear(b.seen)
		if b.seen == nil {
			b.seen = map[string]bool{}
		}
	}
	for i := range events {
		id := events[i].Instance
		if b.seenBefore(events, i) {
			continue
		}
		off := len(b.buf)
		b.buf = envelope.AppendString(append(b.buf, `{"instanceId":`...), id, false)
		b.buf = append(b.buf, `,"events":[`...)
		b.groups = append(b.groups, group{id: id, maxAt: events[i].At, first: int32(len(b.evs)), run0: int32(len(b.runs))})
		g := &b.groups[len(b.groups)-1]
		var r *run
		for j := i; j < len(events); j++ {
			e := &events[j]
			if e.Instance != id {
				continue
			}
			if g.n > 0 {
				b.buf = append(b.buf, ',')
			}
			if e.Type == EventTask {
				// A task event is a run of its own: the same event is
				// made again by other inputs (a close replayed, recovered
				// after a crash, fired with others), each time beside
				// different events, so only its own key tells whether it
				// was applied.
				r = nil
			}
			if r == nil {
				b.runs = append(b.runs, run{key: e.Key})
				r = &b.runs[len(b.runs)-1]
				g.nruns++
			}
			r.n++
			g.n++
			g.maxAt = max(g.maxAt, e.At)
			start := len(b.buf)
			b.buf = e.AppendJSON(b.buf)
			ev := encEvent{e: e, off: int32(start), end: int32(len(b.buf))}
			if e.Type == EventTask || e.Type == EventStep && e.Status == StatusWaiting && e.TaskID != "" {
				ev.ref = e.Domain + "\t" + e.TaskID
			}
			b.evs = append(b.evs, ev)
			if e.Type == EventTask {
				r = nil // and what follows it starts another
			}
		}
		b.buf = append(b.buf, "]}"...)
		b.audits = append(b.audits, Audit{Instance: id, Value: b.buf[off:len(b.buf):len(b.buf)]})
	}
	return b.audits[a0:len(b.audits):len(b.audits)]
}

// seenBefore reports whether events[i]'s instance came earlier in events.
func (b *Batch) seenBefore(events []Event, i int) bool {
	id := events[i].Instance
	if len(events) > 16 {
		if b.seen[id] {
			return true
		}
		b.seen[id] = true
		return false
	}
	for j := range i {
		if events[j].Instance == id {
			return true
		}
	}
	return false
}

// json is the encoded event ev.
func (b *Batch) json(ev encEvent) []byte { return b.buf[ev.off:ev.end:ev.end] }

// Script arities: what the apply script reads of each event after its
// type, so that it never decodes JSON.
const (
	opStarted   = "S" // at, saga, version, tenant, actor, business key
	opWaiting   = "W" // step, "domain\ttaskId" or ""
	opStep      = "s" // step, status, code, message
	opTaskOpen  = "T" // "domain\ttaskId", actor
	opTaskClose = "t" // "domain\ttaskId", actor
	opEnd       = "E" // at, end status, status, code, message
	opOther     = "x" // nothing: kept in the timeline only
)

// appendArgs appends g's script arguments: id, max at, event count, field
// count, run count, each run's key and event count, then each event's type
// and fields, then the events' JSON.
//
// Strings and numbers go in as pointers into the batch and its events,
// which stay put until the call is written: boxing each value in an
// interface would allocate a copy of it, some twenty per start.
func (b *Batch) appendArgs(args []any, g *group) []any {
	head := len(args)
	args = append(args, &g.id, &g.maxAt, g.n, 0, g.nruns)
	runs := b.runs[g.run0 : g.run0+g.nruns]
	for i := range runs {
		args = append(args, &runs[i].key, runs[i].n)
	}
	fields := 0
	evs := b.evs[g.first : g.first+g.n]
	for i := range evs {
		n0 := len(args)
		args = appendOp(args, &evs[i])
		fields += len(args) - n0
	}
	args[head+3] = fields
	for _, ev := range evs {
		args = append(args, b.json(ev))
	}
	return args
}

func appendOp(args []any, ev *encEvent) []any {
	e := ev.e
	switch e.Type {
	case EventStarted:
		return append(args, opStarted, &e.At, &e.Saga, e.Version, &e.Tenant, &e.Actor, text(&e.BusinessKey))
	case EventStep:
		if e.Status == StatusWaiting {
			return append(args, opWaiting, &e.Step, &ev.ref)
		}
		return append(args, opStep, &e.Step, &e.Status, &e.Code, text(&e.Message))
	case EventTask:
		op := opTaskClose
		if e.Status == StatusWaiting || e.Status == taskInApproval {
			op = opTaskOpen
		}
		return append(args, op, &ev.ref, &e.Actor)
	case EventFinished, EventFailed, EventDeadLettered, EventCancelled:
		return append(args, opEnd, &e.At, endStatus(e.Type), &e.Status, &e.Code, text(&e.Message))
	}
	return append(args, opOther)
}

// text is free text *s as an argument: s itself unless it must be cut.
func text(s *string) any {
	if len(*s) <= maxText {
		return s
	}
	return cut(*s)
}

// taskInApproval is the open task status besides WAITING (statemanager's
// StatusInApproval, which this package does not import).
const taskInApproval = "IN_APPROVAL"

func endStatus(typ string) string {
	switch typ {
	case EventFinished:
		return StatusCompleted
	case EventCancelled:
		return StatusCancelled
	}
	return StatusFailed
}

// shardOf is FNV-1a of id, as hash/fnv computes it, without allocating.
func shardOf(id string, shards int) int {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return int(h % uint32(shards))
}

// maxParticipants bounds the people an instance records as having acted on
// its tasks (apply.lua's maxParticipants).
const maxParticipants = 100

// fresh is the state appendFresh keeps while it walks a group: what the
// apply script's general path would hold for a record that did not exist.
type fresh struct {
	fields  []any // HSET arguments, name then value, each name once
	refs    []string
	open    []bool // refs[i] open (true) or closed
	viewers []string
}

// set sets field name to v, in place when name was set before, as a
// second HSET of it would.
func (f *fresh) set(name string, v any) {
	for i := 0; i < len(f.fields); i += 2 {
		if f.fields[i].(string) == name {
			f.fields[i+1] = v
			return
		}
	}
	f.fields = append(f.fields, name, v)
}

// task returns ref's index in f.refs, -1 when the group has not named it.
func (f *fresh) task(ref string) int {
	for i, r := range f.refs {
		if r == ref {
			return i
		}
	}
	return -1
}

// appendFresh appends g's arguments in the form of a group that starts
// its instance (apply.lua's fast path): the whole record's fields, the
// listing indexes it enters and its events, computed here as the script's
// general path would compute them from no record at all. The script then
// only checks that the record does not exist and writes; when it does
// exist (a replay, or an event of the instance written before its start),
// it leaves the group for ApplyBatch to send again in the general form. ok
// is false, and args unchanged, when g does not open with a start.
//
// prefix is the shard's key prefix; the index keys are whole keys of it.
func (b *Batch) appendFresh(args []any, g *group, prefix string) (_ []any, ok bool) {
	evs := b.evs[g.first : g.first+g.n]
	if len(evs) == 0 || evs[0].e.Type != EventStarted {
		return args, false
	}
	start := evs[0].e
	var f fresh
	f.fields = make([]any, 0, 32)
	status, ended := "", false
	nt, np := 0, 0
	runs := b.runs[g.run0 : g.run0+g.nruns]
	pushed := 0
	evi := 0
	for x := range runs {
		for range runs[x].n {
			ev := &evs[evi]
			e := ev.e
			evi++
			switch e.Type {
			case EventStarted:
				if e == start {
					f.set("saga", &e.Saga)
					f.set("version", e.Version)
					if e.Tenant != "" {
						f.set("tenant", &e.Tenant)
					}
					if e.Actor != "" {
						f.set("starter", &e.Actor)
					}
					if e.BusinessKey != "" {
						f.set("bk", text(&e.BusinessKey))
					}
					f.set("startedAt", &e.At)
					if !ended {
						status = StatusRunning
					}
				}
			case EventStep:
				if e.Status == StatusWaiting {
					f.set("step", &e.Step)
					if ev.ref != "" && !ended && f.task(ev.ref) < 0 {
						f.refs, f.open = append(f.refs, ev.ref), append(f.open, true)
						nt++
						f.set("o:"+ev.ref, "1")
					}
				} else {
					f.set("step", &e.Step)
					f.set("lastStatus", &e.Status)
					f.set("lastCode", &e.Code)
					f.set("lastMessage", text(&e.Message))
				}
			case EventTask:
				t := f.task(ev.ref)
				if e.Status == StatusWaiting || e.Status == taskInApproval {
					if !ended && (t < 0 || !f.open[t]) {
						if t < 0 {
							f.refs, f.open = append(f.refs, ev.ref), append(f.open, true)
						} else {
							f.open[t] = true
						}
						nt++
						f.set("o:"+ev.ref, "1")
					}
				} else if t < 0 || f.open[t] {
					if t >= 0 {
						nt--
						f.open[t] = false
					} else {
						f.refs, f.open = append(f.refs, ev.ref), append(f.open, false)
					}
					f.set("o:"+ev.ref, "0")
				}
				if who := e.Actor; who != "" && who != start.Actor && !slices.Contains(f.viewers, who) && np < maxParticipants {
					np++
					f.viewers = append(f.viewers, who)
					f.set("p:"+who, "1")
				}
			case EventFinished, EventFailed, EventDeadLettered, EventCancelled:
				if e.Code != "" || e.Message != "" {
					f.set("lastStatus", &e.Status)
					f.set("lastCode", &e.Code)
					f.set("lastMessage", text(&e.Message))
				}
				if !ended {
					status, ended = endStatus(e.Type), true
					f.set("endedAt", &e.At)
				}
			}
		}
		pushed += int(runs[x].n)
		if x != len(runs)-1 {
			f.set("k:"+runs[x].key, pushed)
		}
	}
	if !ended {
		status = StatusRunning
		if nt > 0 {
			status = StatusWaiting
		}
	}
	f.set("status", status)
	f.set("seq", pushed)
	f.set("k:"+runs[len(runs)-1].key, pushed)
	if nt != 0 {
		f.set("nt", nt)
	}
	if np != 0 {
		f.set("np", np)
	}
	f.set("updatedAt", &g.maxAt)

	// The listing indexes of its tenant, all by startedAt.
	t := prefix + "t" + strconv.Itoa(len(start.Tenant)) + ":" + start.Tenant + ":"
	indexes := make([]any, 0, 4+len(f.viewers))
	indexes = append(indexes, t+"saga:"+start.Saga)
	if start.BusinessKey != "" {
		indexes = append(indexes, t+"bk:"+cut(start.BusinessKey))
	}
	if start.Actor != "" {
		indexes = append(indexes, t+"v:"+start.Actor)
	}
	for _, v := range f.viewers {
		indexes = append(indexes, t+"v:"+v)
	}
	end := freshOpen
	if ended {
		end = freshEnded
		indexes = append(indexes, t+"st:"+status)
	} else {
		indexes = append(indexes, t+"open")
	}
	args = append(args, &g.id, &g.maxAt, g.n, len(f.fields), 0, len(indexes), end, &start.At)
	args = append(args, f.fields...)
	args = append(args, indexes...)
	for _, ev := range evs {
		args = append(args, b.json(ev))
	}
	return args, true
}

// How a group in the fast form leaves its instance (apply.lua).
const (
	freshOpen  = "o" // open: counted in nopen
	freshEnded = "e" // ended: kept for the retention
)
