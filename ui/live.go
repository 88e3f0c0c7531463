package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/statemanager"
)

// liveEvent is what a stream is told: which task or instance changed and
// how. It carries ids and states only, never data or notes; the page
// fetches what it shows through the API, as the caller.
type liveEvent struct {
	Kind     string `json:"kind"` // "task" or "instance"
	Domain   string `json:"domain,omitempty"`
	TaskID   string `json:"taskId,omitempty"`
	Instance string `json:"instance,omitempty"`
	Type     string `json:"type,omitempty"`
	Status   string `json:"status,omitempty"`
	// tenant is the task's tenant, for a cheap first filter; audit
	// records do not always carry one.
	tenant string
}

// key names the task or instance the event is about, as pages mark what
// they showed.
func (e liveEvent) key() string {
	if e.Kind == "task" {
		return taskKey(e.Domain, e.TaskID)
	}
	return instanceKey(e.Instance)
}

func taskKey(domain, id string) string { return "task:" + domain + "/" + id }
func instanceKey(id string) string     { return "instance:" + id }

// rememberTasks marks tasks as shown to s.
func rememberTasks(s *session, lists ...[]*statemanager.Task) {
	var keys []string
	for _, l := range lists {
		for _, t := range l {
			keys = append(keys, taskKey(t.Domain, t.ID))
		}
	}
	s.remember(keys...)
}

// stream is one open Server-Sent Events response.
type stream struct {
	s    *session
	ch   chan liveEvent
	gone chan struct{}
	once sync.Once
}

func (st *stream) drop() { st.once.Do(func() { close(st.gone) }) }

// hub fans the feed's events out to the streams allowed to see them.
type hub struct {
	u         *UI
	topics    []string
	newClient func(opts ...kgo.Opt) (*kgo.Client, error)

	mu         sync.Mutex
	streams    map[*stream]struct{}
	closed     bool
	positioned chan struct{} // closed once the feed reads from the end of every partition
	running    bool          // Run was called; a second call returns at once
	stop       context.CancelFunc
	// recent keeps the last events with the time the feed read them, so
	// a stream opened by a page just rendered gets the changes it missed
	// between its data being read and its stream opening.
	recent []recentEvent
	next   int
}

// recentEvent is an event and when the feed read it.
type recentEvent struct {
	at time.Time
	ev liveEvent
}

// recentEvents is how many events a new stream can catch up on.
const recentEvents = 256

func (h *hub) record(ev liveEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := recentEvent{at: h.u.now(), ev: ev}
	if len(h.recent) < recentEvents {
		h.recent = append(h.recent, r)
		return
	}
	h.recent[h.next] = r
	h.next = (h.next + 1) % recentEvents
}

// since returns the recent events read at or after t, oldest first.
func (h *hub) since(t time.Time) []liveEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []liveEvent
	for i := range h.recent {
		r := h.recent[(h.next+i)%len(h.recent)]
		if !r.at.Before(t) {
			out = append(out, r.ev)
		}
	}
	return out
}

func newHub(u *UI, topics []string, newClient func(opts ...kgo.Opt) (*kgo.Client, error)) *hub {
	return &hub{u: u, topics: topics, newClient: newClient, streams: map[*stream]struct{}{}, positioned: make(chan struct{})}
}

func (h *hub) enabled() bool { return len(h.topics) > 0 }

// subscribe opens a stream for s, refused past the configured bounds.
func (h *hub) subscribe(s *session) (*stream, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return nil, fmt.Errorf("the server is shutting down")
	case len(h.streams) >= h.u.cfg.MaxStreams:
		return nil, fmt.Errorf("too many live streams are open")
	case s.streams >= h.u.cfg.StreamsPerSession:
		return nil, fmt.Errorf("this session has %d live streams open already", s.streams)
	}
	st := &stream{s: s, ch: make(chan liveEvent, h.u.cfg.StreamBuffer), gone: make(chan struct{})}
	h.streams[st] = struct{}{}
	s.streams++
	return st, nil
}

func (h *hub) unsubscribe(st *stream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.streams[st]; ok {
		delete(h.streams, st)
		st.s.streams--
	}
	st.drop()
}

// signedOut ends the streams of a session that signed out.
func (h *hub) signedOut(s *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for st := range h.streams {
		if st.s == s {
			st.drop()
		}
	}
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for st := range h.streams {
		st.drop()
	}
	if h.stop != nil {
		h.stop()
	}
}

// Run consumes the live-update topics until ctx ends or Shutdown is
// called; without them configured, or when it ran already, it returns at
// once. It reads every
// partition directly from its end, outside any consumer group: each
// gateway process sees every event, and none is replayed after a restart
// (pages load their state from the API; the feed only says when to).
func (u *UI) Run(ctx context.Context) {
	h := u.hub
	if !h.enabled() {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h.mu.Lock()
	if h.closed || h.running {
		h.mu.Unlock()
		return
	}
	h.running, h.stop = true, cancel
	h.mu.Unlock()

	offsets, cl := h.position(ctx)
	if cl == nil {
		return
	}
	defer cl.Close()
	partitions := partitionsOf(offsets)
	cl.AddConsumePartitions(offsets)
	close(h.positioned)
	u.log.Info("ui: live updates on", "topics", strings.Join(h.topics, ","))
	consuming := true
	for {
		if u.sessions.count() == 0 {
			// Nobody is signed in here: no page can be open to update or
			// to catch up. The feed stops fetching, so a gateway nobody
			// browses reads none of the system's events, and a sign-in
			// starts it again from the end (a page rendered after the
			// sign-in reads state newer than anything passed over).
			if consuming {
				cl.RemoveConsumePartitions(partitions)
				consuming = false
			}
			select {
			case <-ctx.Done():
				return
			case <-u.sessions.signedIn:
			case <-time.After(time.Second):
			}
			continue
		}
		if !consuming {
			offsets := h.ends(ctx, cl)
			if offsets == nil {
				return
			}
			partitions = partitionsOf(offsets)
			cl.AddConsumePartitions(offsets)
			consuming = true
		}
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		fetches.EachError(func(topic string, p int32, err error) {
			u.log.Warn("ui: live feed fetch failed", "topic", topic, "partition", p, "err", err)
		})
		fetches.EachRecord(func(rec *kgo.Record) {
			for _, ev := range h.parse(rec) {
				h.record(ev) // before dispatch: a stream opening now gets it one way or the other
				h.dispatch(ctx, ev)
			}
		})
	}
}

// position makes the feed's client and finds the end of every partition
// of the topics, retrying while they do not exist yet (a gateway may start
// before the runners create them).
func (h *hub) position(ctx context.Context) (map[string]map[int32]kgo.Offset, *kgo.Client) {
	cl, err := h.newClient()
	if err != nil {
		h.u.log.Error("ui: live updates off: the feed's Kafka client", "err", err)
		return nil, nil
	}
	offsets := h.ends(ctx, cl)
	if offsets == nil {
		cl.Close()
		return nil, nil
	}
	return offsets, cl
}

// ends finds the end of every partition of the topics, retrying while
// they do not exist yet; nil when ctx ended first.
func (h *hub) ends(ctx context.Context, cl *kgo.Client) map[string]map[int32]kgo.Offset {
	adm := kadm.NewClient(cl)
	wait := 200 * time.Millisecond
	for {
		ends, err := adm.ListEndOffsets(ctx, h.topics...)
		if err == nil {
			err = ends.Error()
		}
		if err == nil {
			offsets := map[string]map[int32]kgo.Offset{}
			ends.Each(func(o kadm.ListedOffset) {
				if offsets[o.Topic] == nil {
					offsets[o.Topic] = map[int32]kgo.Offset{}
				}
				offsets[o.Topic][o.Partition] = kgo.NewOffset().At(o.Offset)
			})
			return offsets
		}
		h.u.log.Debug("ui: live feed waits for its topics", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// parse reads a task-event or audit record; anything else, or anything
// malformed, yields nothing (the feed only hints; it never fails).
func (h *hub) parse(rec *kgo.Record) []liveEvent {
	// Every event of the system passes here, so it is read with gjson, a
	// few fields of a validated object, not decoded whole.
	if !gjson.ValidBytes(rec.Value) || len(rec.Value) == 0 || rec.Value[0] != '{' {
		return nil
	}
	if rec.Topic == h.u.cfg.TaskEventTopic {
		v := gjson.GetManyBytes(rec.Value, "taskId", "domain", "instance", "tenant", "status", "type")
		for _, s := range v {
			if s.Exists() && s.Type != gjson.String {
				return nil
			}
		}
		if v[0].Str == "" || v[1].Str == "" {
			return nil
		}
		return []liveEvent{{Kind: "task", Domain: v[1].Str, TaskID: v[0].Str, Instance: v[2].Str, Type: v[5].Str, Status: v[4].Str, tenant: v[3].Str}}
	}
	id := gjson.GetBytes(rec.Value, "instanceId")
	events := gjson.GetBytes(rec.Value, "events")
	if id.Type != gjson.String || id.Str == "" || !events.IsArray() {
		return nil
	}
	all := events.Array()
	if len(all) == 0 {
		return nil
	}
	last := all[len(all)-1]
	typ, status := last.Get("type"), last.Get("status")
	if !last.IsObject() || typ.Exists() && typ.Type != gjson.String || status.Exists() && status.Type != gjson.String {
		return nil
	}
	return []liveEvent{{Kind: "instance", Instance: id.Str, Type: typ.Str, Status: status.Str}}
}

// dispatch sends ev to every stream whose caller may see what it is
// about, asking the API once per distinct caller (a task or instance the
// API answers 404 for is not visible), or to which a page of the session
// showed it already (so a task claimed by another leaves the lists that
// showed it). A stream whose buffer is full is dropped: its page reloads
// when the browser reconnects.
func (h *hub) dispatch(ctx context.Context, ev liveEvent) {
	h.mu.Lock()
	byCaller := map[*session][]*stream{}
	for st := range h.streams {
		byCaller[st.s] = append(byCaller[st.s], st)
	}
	h.mu.Unlock()
	if len(byCaller) == 0 {
		return
	}
	// One API read per distinct caller, a few at once, so one event costs
	// as many reads as there are people watching, not tabs.
	type check struct {
		s  *session
		ok bool
	}
	checks := map[string]*check{}
	for s := range byCaller {
		if ck := callerKey(s); checks[ck] == nil {
			checks[ck] = &check{s: s}
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallelChecks)
	for _, c := range checks {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			c.ok = h.visible(ctx, c.s, ev)
		}()
	}
	wg.Wait()
	for s, streams := range byCaller {
		ok := checks[callerKey(s)].ok
		if !ok && !s.knows(ev.key()) {
			continue
		}
		if ok {
			s.remember(ev.key())
		}
		for _, st := range streams {
			select {
			case st.ch <- ev:
			default:
				st.drop()
			}
		}
	}
}

// parallelChecks bounds the visibility reads of one event in flight.
const parallelChecks = 8

// callerKey groups sessions of one identity: the same token is the same
// caller to the API.
func callerKey(s *session) string {
	return s.token + "\x00" + s.identity.Tenant + "\x00" + s.identity.User + "\x00" + strings.Join(slices.Sorted(slices.Values(s.identity.Roles)), ",")
}

// visible asks the API whether s may read what ev is about. A task of
// another tenant is skipped without asking: the event says whose it is.
func (h *hub) visible(ctx context.Context, s *session, ev liveEvent) bool {
	if h.u.authOn && ev.Kind == "task" && ev.tenant != s.identity.Tenant {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var path string
	if ev.Kind == "task" {
		path = apiPath("tasks", ev.Domain, ev.TaskID)
	} else {
		path = apiPath("instances", ev.Instance)
	}
	return h.u.call(ctx, s, http.MethodHead, path, nil, nil).OK()
}

// events serves GET /ui/events, the page's Server-Sent Events stream.
func (u *UI) events(w http.ResponseWriter, r *http.Request, s *session) {
	if !u.hub.enabled() {
		// 204 tells EventSource to stop reconnecting.
		w.WriteHeader(http.StatusNoContent)
		return
	}
	st, err := u.hub.subscribe(s)
	if err != nil {
		w.Header().Set("Retry-After", "10")
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	defer u.hub.unsubscribe(st)
	rc := http.NewResponseController(w)
	// The server's read and write timeouts bound requests; a stream is
	// bounded per write instead, so a reader that stops reading is cut
	// off within writeWait.
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(msg string) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeWait))
		if _, err := w.Write([]byte(msg)); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write("retry: 3000\n: connected\n\n") {
		return
	}
	heartbeat := time.NewTicker(u.cfg.Heartbeat)
	defer heartbeat.Stop()
	positioned := u.hub.positioned
	since := sinceParam(r, u.now())
	for {
		select {
		case <-r.Context().Done():
			return
		case <-st.gone:
			return
		case <-positioned:
			positioned = nil
			if !write("event: ready\ndata: {}\n\n") {
				return
			}
			// Changes since the page was rendered, which it may not show.
			for _, ev := range u.hub.since(since) {
				if u.hub.visible(r.Context(), s, ev) || s.knows(ev.key()) {
					b, _ := json.Marshal(ev)
					if !write("event: change\ndata: " + string(b) + "\n\n") {
						return
					}
				}
			}
		case ev := <-st.ch:
			b, _ := json.Marshal(ev)
			if !write("event: change\ndata: " + string(b) + "\n\n") {
				return
			}
		case <-heartbeat.C:
			if !u.sessions.alive(s) || !write(": ping\n\n") {
				return
			}
		}
	}
}

// writeWait bounds one write to a stream.
const writeWait = 10 * time.Second

// sinceParam reads the stream's since= (epoch milliseconds, when its page
// was rendered), bounded to the last minute: a page older than that
// reloads on its own when it reconnects.
func sinceParam(r *http.Request, now time.Time) time.Time {
	ms, err := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
	t := time.UnixMilli(ms)
	if err != nil || t.After(now) || now.Sub(t) > time.Minute {
		return now
	}
	return t
}

// partitionsOf lists the partitions of offsets by topic.
func partitionsOf(offsets map[string]map[int32]kgo.Offset) map[string][]int32 {
	out := make(map[string][]int32, len(offsets))
	for t, ps := range offsets {
		for p := range ps {
			out[t] = append(out[t], p)
		}
	}
	return out
}
