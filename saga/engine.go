package saga

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sort"

	"github.com/sagarunner/sagarunner/actions"
)

// Engine runs saga instances. It never touches Kafka or HTTP: it returns the
// records to produce. It is safe for concurrent use.
type Engine struct {
	set *Set
	cfg Config
}

// NewEngine returns an engine over the loaded sagas.
func NewEngine(set *Set, cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Engine{set: set, cfg: cfg}, nil
}

// Sagas returns the loaded sagas.
func (e *Engine) Sagas() *Set { return e.set }

// Config returns the engine's validated config.
func (e *Engine) Config() Config { return e.cfg }

var errTODO = errors.New("saga: not implemented yet")

// Handle: see the contract in api.go.
func (e *Engine) Handle(ctx context.Context, rec Record) (Output, error) { return Output{}, errTODO }

// FireDue: see the contract in api.go.
func (e *Engine) FireDue(ctx context.Context, domain string, shard, limit int) (Output, int, error) {
	return Output{}, 0, errTODO
}

// Recover: see the contract in api.go.
func (e *Engine) Recover(ctx context.Context, domain string, shard int, closedBefore int64, limit int) (Output, error) {
	return Output{}, errTODO
}

// Ack: see the contract in api.go.
func (e *Engine) Ack(ctx context.Context, acks []actions.Ack) error { return errTODO }

// Domains lists the state-manager domains the loaded sagas use, sorted.
func (e *Engine) Domains() []string { return nil }

// NewID returns a random request id.
func NewID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func sortStrings(s []string) { sort.Strings(s) }
