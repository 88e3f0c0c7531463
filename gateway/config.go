package gateway

import (
	"errors"
	"fmt"
	"time"

	"github.com/sagarunner/sagarunner/auth"
)

// Defaults of Config.
const (
	DefaultAddr         = ":8080"
	DefaultRequestTopic = "sagarunner-requests"
	DefaultReplyTopic   = "sagarunner-replies"
	DefaultTimeout      = 10 * time.Second
	DefaultMaxBody      = 1 << 20
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
	// on any topic, so operators usually keep it to a service role.
	PublishRoles []string
	// Auth configures caller identity; with nothing configured every
	// caller is trusted.
	Auth auth.Config
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
	switch {
	case c.Timeout < 0:
		errs = append(errs, fmt.Errorf("gateway: timeout %v is negative", c.Timeout))
	case c.Timeout == 0:
		c.Timeout = DefaultTimeout
	}
	switch {
	case c.MaxBody < 0:
		errs = append(errs, fmt.Errorf("gateway: max body %d is negative", c.MaxBody))
	case c.MaxBody == 0:
		c.MaxBody = DefaultMaxBody
	}
	switch {
	case c.ShutdownTimeout < 0:
		errs = append(errs, fmt.Errorf("gateway: shutdown timeout %v is negative", c.ShutdownTimeout))
	case c.ShutdownTimeout == 0:
		c.ShutdownTimeout = c.Timeout + 5*time.Second
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
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
