package saga

import (
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/clock"
	"github.com/sagarunner/sagarunner/instances"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

func taskEventTestRecord(note string) envelope.Record {
	t := &statemanager.Task{ID: "task-1", Domain: "workflow", Saga: "approval", RequestID: "req-1", Tenant: "acme", Status: "COMPLETED"}
	return actions.TaskEventRecord("task-events", t, statemanager.Event{Type: "completed", At: 1_700_000_000_123,
		Actor: "bob", Outcome: "approved", Note: note, RequestID: "rq"})
}

// A task event's instance event carries what its record says, escapes and
// all, and a record of the topic that names no instance makes none.
func TestTaskEventsReadTheRecords(t *testing.T) {
	e := &Engine{cfg: Config{Topics: actions.Topics{TaskEvents: "task-events"}}}
	rec := taskEventTestRecord("a \"quoted\"\nnote é")
	out := Output{Records: []envelope.Record{rec, {Topic: "task-events", Value: []byte(`{"taskId":"x","domain":"d","status":"WAITING"}`)},
		{Topic: "other", Value: rec.Value}}}
	e.taskEvents(&out)
	want := []instances.Event{{Instance: "req-1", Key: "t" + strconv.FormatUint(fnv64a(rec.Value), 36), Type: instances.EventTask, At: 1_700_000_000_123,
		Actor: "bob", Status: "COMPLETED", Domain: "workflow", TaskID: "task-1", Task: "completed", Outcome: "approved",
		Note: "a \"quoted\"\nnote é"}}
	if !reflect.DeepEqual(out.Instances, want) {
		t.Fatalf("events:\n%+v\nwant\n%+v", out.Instances, want)
	}
}

func BenchmarkTaskEvents(b *testing.B) {
	e := &Engine{cfg: Config{Topics: actions.Topics{TaskEvents: "task-events"}}}
	recs := []envelope.Record{taskEventTestRecord("")}
	b.ReportAllocs()
	for range b.N {
		out := Output{Records: recs}
		e.taskEvents(&out)
	}
}

// carryEngine is an engine with the topics and signer carrying needs.
func carryEngine() *Engine {
	return &Engine{cfg: Config{Topics: actions.Topics{TaskEvents: "task-events", Continuations: "continuations"},
		TrackInstances: true, MaxRecordBytes: DefaultMaxRecordBytes, Clock: clock.Real{}}, signer: newSigner([]byte("test key"))}
}

// closeOutput is what a close makes, in TaskEffects' order: its
// continuation (keyed by the instance), its notification, its task event.
func closeOutput(instance string) Output {
	ev := taskEventTestRecord("")
	cont := envelope.Record{Topic: "continuations", Key: []byte(instance),
		Value: []byte(`{"requestMeta":{"requestId":"` + instance + `"},"sagaMeta":{"saga":"approval","version":1,"stepId":"approve"},"result":{"status":"SUCCESS"}}`)}
	return Output{Records: []envelope.Record{cont, {Topic: "notifications", Value: []byte(`{}`)}, ev}}
}

func asRecord(r envelope.Record) Record {
	return Record{Topic: r.Topic, Key: r.Key, Value: r.Value, Headers: append([]envelope.Header(nil), r.Headers...)}
}

// A close's task event rides on the continuation the close made: the close
// writes no instance event, and the continuation's input (or its dead
// letter) gets exactly the event the close would have written.
func TestCloseEventRidesOnItsContinuation(t *testing.T) {
	e := carryEngine()
	out := closeOutput("req-1")
	want, _ := taskEventOf(out.Records[2].Value)
	e.taskEvents(&out)
	if len(out.Instances) != 0 {
		t.Fatalf("the close wrote %+v itself", out.Instances)
	}
	e.seal(&out)
	cont := asRecord(out.Records[0])
	got, ok := e.carriedEvent(cont)
	if !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("carried %+v, %v; want %+v", got, ok, want)
	}
	if !e.signer.verify(cont) {
		t.Fatal("carrying broke the continuation's signature")
	}
	dead := e.DeadInstance(cont, "DEAD", "attempts spent")
	if len(dead) != 2 || !reflect.DeepEqual(dead[0], want) || dead[1].Type != instances.EventDeadLettered {
		t.Fatalf("dead letter's events: %+v", dead)
	}
}

// A carried event is believed only with its MAC, on the record it was made
// for: a producer who can write to the continuations topic cannot put an
// event into a timeline, move one to another instance or record, or alter
// one.
func TestCarriedEventNeedsItsMAC(t *testing.T) {
	e := carryEngine()
	out := closeOutput("req-1")
	e.taskEvents(&out)
	e.seal(&out)
	good := asRecord(out.Records[0])
	header := func(r Record) *envelope.Header {
		for i := range r.Headers {
			if r.Headers[i].Key == TaskEventHeader {
				return &r.Headers[i]
			}
		}
		t.Fatal("no carried event")
		return nil
	}
	cases := map[string]func(r *Record){
		"event altered": func(r *Record) {
			h := header(*r)
			h.Value = []byte(strings.Replace(string(h.Value), `"bob"`, `"eve"`, 1))
		},
		"value altered": func(r *Record) { r.Value = []byte(strings.Replace(string(r.Value), "SUCCESS", "FAIL", 1)) },
		"another key":   func(r *Record) { r.Key = []byte("req-2") },
		"twice":         func(r *Record) { r.Headers = append(r.Headers, *header(*r)) },
		"MAC only":      func(r *Record) { h := header(*r); h.Value = h.Value[:64] },
		"forged": func(r *Record) {
			h := header(*r)
			other := carryEngine()
			other.signer = newSigner([]byte("another key"))
			h.Value = other.signer.eventMAC(nil, r.Key, r.Value, out.Records[2].Value)
			h.Value = append(h.Value, out.Records[2].Value...)
		},
		"signature as MAC": func(r *Record) {
			h := header(*r)
			h.Value = append(e.signer.mac(nil, r.Key, r.Value), out.Records[2].Value...)
		},
	}
	for name, tamper := range cases {
		r := asRecord(out.Records[0])
		r.Headers = nil
		for _, h := range good.Headers {
			r.Headers = append(r.Headers, envelope.Header{Key: h.Key, Value: append([]byte(nil), h.Value...)})
		}
		tamper(&r)
		if ev, ok := e.carriedEvent(r); ok {
			t.Errorf("%s: carried %+v", name, ev)
		}
	}
	if _, ok := e.carriedEvent(good); !ok {
		t.Fatal("the untouched record lost its event")
	}
}

// A close's event is written with the close itself when it cannot ride:
// no continuation of its instance (the key differs, or another task event
// lies between), one that carries already, or one with no room left; and
// an open task's events are always written at once.
func TestCloseEventWrittenAtOnceWhenItCannotRide(t *testing.T) {
	e := carryEngine()
	for name, out := range map[string]Output{
		"another instance": closeOutput("req-2"),
		"no continuation":  {Records: closeOutput("req-1").Records[1:]},
		"event between": func() Output {
			o := closeOutput("req-1")
			o.Records = append(o.Records[:1], append([]envelope.Record{{Topic: "task-events", Value: []byte(`{}`)}}, o.Records[1:]...)...)
			return o
		}(),
		"no room": func() Output {
			o := closeOutput("req-1")
			o.Records[0].Value = append(o.Records[0].Value[:len(o.Records[0].Value)-1], []byte(`,"pad":"`+strings.Repeat("x", DefaultMaxRecordBytes-len(o.Records[0].Value)-300)+`"}`)...)
			return o
		}(),
	} {
		e.taskEvents(&out)
		if len(out.Instances) != 1 || out.Instances[0].Instance != "req-1" {
			t.Errorf("%s: events %+v", name, out.Instances)
		}
	}
	out := closeOutput("req-1")
	out.Records = append(out.Records, out.Records[2]) // the same close twice: carried once
	e.taskEvents(&out)
	if len(out.Instances) != 1 {
		t.Errorf("a second event for one continuation: %+v", out.Instances)
	}
	open := closeOutput("req-1")
	open.Records[2].Value = []byte(strings.Replace(string(open.Records[2].Value), `"COMPLETED"`, `"WAITING"`, 1))
	e.taskEvents(&open)
	if len(open.Instances) != 1 || len(open.Records[0].Headers) != 0 {
		t.Errorf("an open task's event rode: %+v, headers %v", open.Instances, open.Records[0].Headers)
	}
}
