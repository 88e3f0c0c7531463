// Package actions holds every saga action, one file per action family, behind
// the Action interface. Each action registers a Spec by name in init(); the
// Spec declares its parameters once, and that declaration drives YAML
// validation, pattern compilation at load time and the docs. Actions stay
// pure: an envelope in, effects and an output envelope out; they never touch
// Kafka or HTTP.
package actions
