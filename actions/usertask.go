package actions

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jmespath/go-jmespath"
	"github.com/tidwall/gjson"

	"github.com/sagarunner/sagarunner/clock"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// maxTaskIDLen bounds a task id in bytes: it is a Redis key and the key of
// every notification, and an unbounded one is a memory and record-size
// hazard.
const maxTaskIDLen = 512

// taskInput reads what every task action starts from: the input at
// inputElement, the task id in it and the data shaped by inputPattern. On a
// missing element or a failing pattern env already holds the FAIL result.
func taskInput(env *envelope.Envelope, x *Exec, inputElement, taskIDPath string, pattern *jmespath.JMESPath, rawPattern string) (in []byte, id string, data []byte, ok bool) {
	if in, ok = input(env, inputElement); !ok {
		return nil, "", nil, false
	}
	if id, ok = taskID(env, x, in, taskIDPath); !ok {
		return nil, "", nil, false
	}
	if reason := badTaskID(id); reason != "" {
		env.Fail(CodeBadInput, "task id %s", reason)
		return nil, "", nil, false
	}
	if data, ok = shape(env, pattern, "inputPattern", rawPattern, in); !ok {
		return nil, "", nil, false
	}
	return in, id, data, true
}

// splitRoles turns "admin, manager," into [admin manager].
func splitRoles(s string) []string {
	var out []string
	for _, r := range strings.Split(s, ",") {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	return out
}

// trusted reports a caller with no identity: a Kafka producer, or a gateway
// running without auth. Task assignment does not apply to it.
func trusted(rm envelope.RequestMeta) bool { return rm.User == "" && len(rm.Roles) == 0 }

// mayClose applies a task's taskUser/taskRoles and the admin roles to an
// authenticated caller of the task's tenant (the caller checks the tenant).
// A caller with neither user nor roles is trusted: it is a Kafka producer or
// a gateway running without auth, both outside the reach of task assignment.
func mayClose(rm envelope.RequestMeta, adminRoles []string, t *statemanager.Task) bool {
	if trusted(rm) {
		return true
	}
	if t.User == "" && len(t.Roles) == 0 {
		return true
	}
	if t.User != "" && rm.User == t.User {
		return true
	}
	for _, r := range rm.Roles {
		if r != "" && (slices.Contains(t.Roles, r) || slices.Contains(adminRoles, r)) {
			return true
		}
	}
	return false
}

func caller(rm envelope.RequestMeta) string {
	if rm.User != "" {
		return "user " + strconv.Quote(rm.User)
	}
	return "roles " + strconv.Quote(strings.Join(rm.Roles, ","))
}

// taskID resolves the task id at path in the action's input. When it
// resolves to nothing the id is <requestId>:<stepId>:<runnerPartition>, which
// is unique per step of an instance and the same on every replay.
func taskID(env *envelope.Envelope, x *Exec, in []byte, path string) (string, bool) {
	if path != "" {
		v := lookup(env, in, path)
		id, ok, err := scalarString(v)
		if err != nil {
			env.Fail(CodeBadInput, "task id at %q: %v", path, err)
			return "", false
		}
		if ok {
			return id, true
		}
	}
	return fmt.Sprintf("%s:%s:%d", env.RequestMeta.RequestID, env.SagaMeta.StepID, x.Partition), true
}

// storedPayload returns the payload of a task's suspended envelope.
func storedPayload(t *statemanager.Task) []byte {
	p := gjson.GetBytes(t.Envelope, "payload")
	if !p.Exists() || p.Type == gjson.Null {
		return []byte(`{}`)
	}
	return []byte(p.Raw)
}

// enrich writes data at path in payload; no path or no data writes nothing.
func enrich(payload []byte, path string, data []byte) ([]byte, error) {
	if path == "" || len(data) == 0 {
		return payload, nil
	}
	return envelope.SetIn(payload, path, data)
}

func storeOf(x *Exec, domain string) (statemanager.Store, error) {
	if x.Stores == nil {
		return nil, errors.New("no state managers configured")
	}
	s, err := x.Stores.Store(domain)
	if err != nil {
		return nil, fmt.Errorf("state manager %q: %w", domain, err)
	}
	return s, nil
}

func nowMillis(x *Exec) int64 {
	if x.Clock == nil {
		return clock.NowMillis(clock.Real{})
	}
	return clock.NowMillis(x.Clock)
}

// validDomain keeps a domain named in a request to what is safe as a Redis
// key prefix: a caller's domain must never reach a key layout it could break.
// The rule is the store resolver's own, so nothing passed here is refused
// there.
func validDomain(d string) bool { return statemanager.ValidDomain(d) }

// domainReason says why a domain is refused, quoting at most a prefix of it.
func domainReason(d string) string {
	if len(d) > 80 {
		d = d[:80] + "..."
	}
	return fmt.Sprintf("domain %q: want 1 to 64 letters, digits, '.', '_' or '-'", d)
}

// badTaskID says why id cannot be a task id, or "". A task id is a Redis key
// and the key and taskId of its notification: it must be text that reads
// the same everywhere (valid UTF-8: invalid bytes would be replaced on the
// way into JSON, so the notification would name another id), printable, and
// bounded.
func badTaskID(id string) string {
	switch {
	case id == "":
		return "is empty"
	case len(id) > maxTaskIDLen:
		return fmt.Sprintf("of %d bytes is longer than %d", len(id), maxTaskIDLen)
	case !utf8.ValidString(id):
		return fmt.Sprintf("%.40q is not valid UTF-8", id)
	case strings.ContainsFunc(id, unicode.IsControl):
		return fmt.Sprintf("%.40q holds a control character", id)
	}
	return ""
}

// badName says why a taskUser or taskRoles entry cannot be stored, or "":
// the store joins roles with \x1f and keys indexes by them.
func badName(n string) string {
	if strings.ContainsFunc(n, unicode.IsControl) || !utf8.ValidString(n) {
		return "holds a control character or invalid UTF-8"
	}
	return ""
}
