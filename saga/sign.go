package saga

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"strconv"
	"sync"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/saga/envelope"
)

// SignatureHeader names the header the engine signs continuations in; the
// hop count travels in actions.HopsHeader.
const (
	// SignatureHeader carries the hex HMAC-SHA256 of a continuation: only
	// a holder of the runners' key can make a record that resumes an
	// instance, so a producer with write access to the request topic
	// cannot push an instance past its approval step.
	SignatureHeader = "sagarunner-sig"
	// TaskEventHeader carries, on the continuation a task's close made,
	// that close's task event for the instance timeline: the hex MAC of
	// the record and the event, then the event (a task-event record's
	// value). The continuation's input writes it with its own steps, so a
	// close costs its instance one write instead of two. The MAC is under
	// a key of its own, so neither signature can pass for the other.
	TaskEventHeader = "sagarunner-task-event"
)

// signingKeyLen is the size of a drawn key: SHA-256's block-safe key size.
const signingKeyLen = 32

// newSigningKey draws a random key for an engine running alone.
func newSigningKey() []byte {
	k := make([]byte, signingKeyLen)
	if _, err := rand.Read(k); err != nil {
		// crypto/rand does not fail on supported platforms.
		panic("saga: draw signing key: " + err.Error())
	}
	return k
}

// signer signs and checks continuations. The MAC covers key and value, so
// a signed value cannot be replayed under another instance's key (the
// partition routing) either.
type signer struct {
	pool sync.Pool
	// events MACs carried task events (TaskEventHeader), under a key
	// derived from the signing key.
	events sync.Pool
}

func newSigner(key []byte) *signer {
	key = append([]byte(nil), key...)
	d := hmac.New(sha256.New, key)
	d.Write([]byte("sagarunner carried task events"))
	eventKey := d.Sum(nil)
	return &signer{
		pool:   sync.Pool{New: func() any { return hmac.New(sha256.New, key) }},
		events: sync.Pool{New: func() any { return hmac.New(sha256.New, eventKey) }},
	}
}

// eventMAC appends to dst the hex MAC of a continuation's key and value and
// the task event it carries, each length-prefixed so that no bytes can move
// from one to another.
func (s *signer) eventMAC(dst, key, value, event []byte) []byte {
	h := s.events.Get().(hash.Hash)
	h.Reset()
	var n [8]byte
	for _, b := range [][]byte{key, value} {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	h.Write(event)
	var sum [sha256.Size]byte
	dst = hex.AppendEncode(dst, h.Sum(sum[:0]))
	s.events.Put(h)
	return dst
}

// carry makes continuation r carry event (TaskEventHeader). r's key and
// value must be final.
func (s *signer) carry(r *envelope.Record, event []byte) {
	v := s.eventMAC(make([]byte, 0, 2*sha256.Size+len(event)), r.Key, r.Value, event)
	r.Headers = append(r.Headers, envelope.Header{Key: TaskEventHeader, Value: append(v, event...)})
}

// carried returns the task event rec carries, when it carries exactly one
// whose MAC holds: that proves the runners made rec, key and value as
// they are.
func (s *signer) carried(rec Record) ([]byte, bool) {
	var got []byte
	n := 0
	for _, h := range rec.Headers {
		if h.Key == TaskEventHeader {
			got, n = h.Value, n+1
		}
	}
	if n != 1 || len(got) <= 2*sha256.Size {
		return nil, false
	}
	mac, event := got[:2*sha256.Size], got[2*sha256.Size:]
	var buf [2 * sha256.Size]byte
	if subtle.ConstantTimeCompare(mac, s.eventMAC(buf[:0], rec.Key, rec.Value, event)) != 1 {
		return nil, false
	}
	return event, true
}

// mac appends the hex MAC of key||0x00||value to dst.
func (s *signer) mac(dst, key, value []byte) []byte {
	h := s.pool.Get().(hash.Hash)
	h.Reset()
	h.Write(key)
	h.Write([]byte{0})
	h.Write(value)
	var sum [sha256.Size]byte
	dst = hex.AppendEncode(dst, h.Sum(sum[:0]))
	s.pool.Put(h)
	return dst
}

// sign adds the signature header to a continuation record.
func (s *signer) sign(r *envelope.Record) {
	hs := make([]envelope.Header, 0, len(r.Headers)+1)
	for _, h := range r.Headers {
		if h.Key != SignatureHeader {
			hs = append(hs, h)
		}
	}
	r.Headers = append(hs, envelope.Header{Key: SignatureHeader, Value: s.mac(make([]byte, 0, 2*sha256.Size), r.Key, r.Value)})
}

// verify reports whether rec carries exactly one valid signature, compared
// in constant time.
func (s *signer) verify(rec Record) bool {
	var got []byte
	n := 0
	for _, h := range rec.Headers {
		if h.Key == SignatureHeader {
			got, n = h.Value, n+1
		}
	}
	if n != 1 {
		return false
	}
	var buf [2 * sha256.Size]byte
	return subtle.ConstantTimeCompare(got, s.mac(buf[:0], rec.Key, rec.Value)) == 1
}

// headerHops reads the hop count a record carries in its header (0 when
// absent or unreadable: the header can only raise the count, never lower
// the one in requestMeta).
func headerHops(rec Record) int {
	hops := 0
	for _, h := range rec.Headers {
		if h.Key == actions.HopsHeader {
			if n, err := strconv.Atoi(string(h.Value)); err == nil && n > hops {
				hops = n
			}
		}
	}
	return hops
}
