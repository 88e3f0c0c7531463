package saga

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
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
}

func newSigner(key []byte) *signer {
	key = append([]byte(nil), key...)
	return &signer{pool: sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}}
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
