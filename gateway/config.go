package gateway

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sagarunner/sagarunner/auth"
	"github.com/sagarunner/sagarunner/ui"
)

// Defaults of Config.
const (
	DefaultAddr         = ":8080"
	DefaultRequestTopic = "sagarunner-requests"
	DefaultReplyTopic   = "sagarunner-replies"
	DefaultTimeout      = 10 * time.Second
	DefaultMaxBody      = 1 << 20
	// DefaultReadTimeout; raised to Timeout plus DefaultTimeoutMargin
	// when that is longer.
	DefaultReadTimeout = 30 * time.Second
	// DefaultTimeoutMargin is what WriteTimeout (and at least ReadTimeout)
	// add to Timeout by default, for producing the request and writing the
	// answer around the synchronous wait.
	DefaultTimeoutMargin  = 10 * time.Second
	DefaultIdleTimeout    = 60 * time.Second
	DefaultMaxHeaderBytes = 1 << 16
)

// Config configures a Gateway. Zero fields take their defaults in Validate.
type Config struct {
	// Addr is where Run listens (default ":8080").
	Addr string
	// RequestTopic is the runners' request topic, where a path saga without
	// a trigger topic is started (default "sagarunner-requests").
	RequestTopic string
	// ReplyTopic is where runners answer, named in every request's
	// requestMeta.replyTo (default "sagarunner-replies"). It must differ
	// from RequestTopic, or runners would consume their own answers.
	ReplyTopic string
	// Timeout is how long a synchronous request waits for its response
	// before answering 504 (default 10s).
	Timeout time.Duration
	// MaxBody is the largest accepted request body in bytes; larger ones
	// answer 413 (default 1 MiB).
	MaxBody int64
	// ShutdownTimeout bounds the graceful shutdown of Run and Serve
	// (default Timeout plus 5s, so requests already waiting can finish).
	ShutdownTimeout time.Duration
	// PublishRoles, when set and auth is on, limits POST /topics/{topic}
	// to callers holding one of these roles. Publishing can start any saga
	// on a listed topic, so operators usually keep it to a service role.
	PublishRoles []string
	// PublishTopics are the only topics POST /topics/{topic} publishes to;
	// any other answers 404 (default none). Listing an internal topic is
	// an error.
	PublishTopics []string
	// InternalTopics are the runners' own topics besides RequestTopic and
	// ReplyTopic (notifications, task events, audit, dead letter): never
	// publishable over HTTP, like every "__" topic, because a record there
	// would be read as the runners' own.
	InternalTopics []string
	// ReadTimeout bounds reading a whole request, body included (default
	// DefaultReadTimeout, at least Timeout plus DefaultTimeoutMargin). Go's
	// server keeps this deadline on the connection while the handler runs
	// and cancels the request when it passes, so it must exceed Timeout.
	ReadTimeout time.Duration
	// WriteTimeout bounds a request from the end of its headers to the end
	// of its answer; it must exceed Timeout (default Timeout plus
	// DefaultTimeoutMargin).
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long (default
	// DefaultIdleTimeout).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line and headers (default
	// DefaultMaxHeaderBytes).
	MaxHeaderBytes int
	// Auth configures caller identity; with nothing configured every
	// caller is trusted.
	Auth auth.Config
	// UI configures the web inbox served under /ui/.
	UI ui.Config
}

// Validate fills defaults and reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.RequestTopic == "" {
		c.RequestTopic = DefaultRequestTopic
	}
	if c.ReplyTopic == "" {
		c.ReplyTopic = DefaultReplyTopic
	}
	if c.RequestTopic == c.ReplyTopic {
		errs = append(errs, fmt.Errorf("gateway: request and reply topic are both %q", c.ReplyTopic))
	}
	for name, topic := range map[string]string{"request": c.RequestTopic, "reply": c.ReplyTopic} {
		if err := checkTopic(topic); err != nil {
			errs = append(errs, fmt.Errorf("gateway: %s topic: %w", name, err))
		}
	}
	errs = defaulted(errs, "timeout", &c.Timeout, DefaultTimeout)
	errs = defaulted(errs, "max body", &c.MaxBody, DefaultMaxBody)
	errs = defaulted(errs, "shutdown timeout", &c.ShutdownTimeout, c.Timeout+5*time.Second)
	for name, d := range map[string]*time.Duration{"read": &c.ReadTimeout, "write": &c.WriteTimeout} {
		switch {
		case *d == 0 && name == "read":
			*d = max(DefaultReadTimeout, c.Timeout+DefaultTimeoutMargin)
		case *d == 0:
			*d = c.Timeout + DefaultTimeoutMargin
		case *d <= c.Timeout:
			errs = append(errs, fmt.Errorf("gateway: %s timeout %v must exceed the synchronous wait %v, or waiting requests are cut off", name, *d, c.Timeout))
		}
	}
	errs = defaulted(errs, "idle timeout", &c.IdleTimeout, DefaultIdleTimeout)
	errs = defaulted(errs, "max header bytes", &c.MaxHeaderBytes, DefaultMaxHeaderBytes)
	for _, t := range c.PublishTopics {
		if err := checkTopic(t); err != nil {
			errs = append(errs, fmt.Errorf("gateway: publish topic: %w", err))
		} else if why := c.internal(t); why != "" {
			errs = append(errs, fmt.Errorf("gateway: publish topic %q is %s; internal topics are never publishable over HTTP", t, why))
		}
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.UI.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// internal says why topic is internal, or "" when it is not.
func (c *Config) internal(topic string) string {
	switch {
	case strings.HasPrefix(topic, "__"):
		return "a broker-internal topic"
	case topic == c.RequestTopic:
		return "the request topic"
	case topic == c.ReplyTopic:
		return "the reply topic"
	case slices.Contains(c.InternalTopics, topic):
		return "one of the runners' topics"
	}
	return ""
}

// checkTopic applies Kafka's topic name rules, so a bad name is refused
// with a reason instead of failing inside the producer.
func checkTopic(t string) error {
	if t == "" || len(t) > 249 || t == "." || t == ".." {
		return fmt.Errorf("invalid topic name %q", t)
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("invalid topic name %q: only letters, digits, '.', '_' and '-' are allowed", t)
		}
	}
	return nil
}

// defaulted fills *v with def when it is zero (unset) and records an error
// when it is negative.
func defaulted[T int | int64 | time.Duration](errs []error, name string, v *T, def T) []error {
	switch {
	case *v < 0:
		return append(errs, fmt.Errorf("gateway: %s %v is negative", name, *v))
	case *v == 0:
		*v = def
	}
	return errs
}
