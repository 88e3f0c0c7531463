package runner

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// eventLogInterval is the least time between two logged retries or dead
// letters of one partition: a poison flood or an outage must not turn into a
// log flood, yet every partition in trouble still shows at once.
const eventLogInterval = time.Second

// eventLog logs retries, dead letters and notable outcomes rate-limited per
// partition and message, so one kind of event flooding a partition does not
// hide another; a line says how many of its kind were suppressed since the
// last one. The map holds one entry per partition (or deadline shard) and
// message ever seen: the cluster bounds the first, the code the second.
type eventLog struct {
	out   *slog.Logger
	every time.Duration
	now   func() time.Time // time.Now; tests move it by hand

	mu   sync.Mutex
	last map[eventKey]*eventState
}

// eventKey is what one rate limit covers: a message (a constant of the
// code, never request data) on one partition.
type eventKey struct {
	tp  topicPartition
	msg string
}

type eventState struct {
	at         time.Time
	suppressed int
}

func newEventLog(log *slog.Logger) *eventLog {
	return &eventLog{out: log, every: eventLogInterval, now: time.Now, last: map[eventKey]*eventState{}}
}

// log writes msg with the partition's coordinates, unless the partition had
// a line with msg less than every ago.
func (l *eventLog) log(level slog.Level, tp topicPartition, msg string, attrs ...any) {
	l.logf(level, tp, msg, func() []any { return attrs })
}

// logf is log with the attributes built only when the line is written, for
// attributes that cost a parse.
func (l *eventLog) logf(level slog.Level, tp topicPartition, msg string, build func() []any) {
	now := l.now()
	l.mu.Lock()
	k := eventKey{tp, msg}
	st := l.last[k]
	if st == nil {
		st = &eventState{}
		l.last[k] = st
	}
	if !st.at.IsZero() && now.Sub(st.at) < l.every {
		st.suppressed++
		l.mu.Unlock()
		return
	}
	suppressed := st.suppressed
	st.at, st.suppressed = now, 0
	l.mu.Unlock()
	attrs := append([]any{"topic", tp.topic, "partition", tp.partition}, build()...)
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	l.out.Log(context.Background(), level, msg, attrs...)
}
