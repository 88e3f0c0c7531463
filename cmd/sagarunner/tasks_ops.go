package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/config"
	"github.com/sagarunner/sagarunner/internal/app"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// The task operations of SPEC §12 on the command line. Each one is sent to
// the runners as the direct action record POST /tasks/{domain}/{id}/{op}
// produces, and the command waits for the runner's answer. Writing Redis
// from here instead would skip what only a runner does with a change: the
// rules of actions/lifecyclerules.go judged against the task as it is, the
// resumed saga of a closed task, its notification and its task events.

// taskOpIdentityDoc is the trust statement every operation's help carries.
const taskOpIdentityDoc = "The command line is a trusted operator tool, like any producer the Kafka ACLs let write\n" +
	"the request topic: --as, --roles and --tenant become the request's identity as given, and the\n" +
	"runner authorizes the operation against it exactly as for an HTTP caller. Without --as and\n" +
	"--roles the operation is made by a trusted caller, which every rule lets through (a claim,\n" +
	"an approval and a reject still need a user, so they need --as)."

// Bounds on what the command sends: a task id no saga makes comes near the
// first, and a record past the second would be refused by the broker's
// default max.message.bytes anyway.
const (
	maxOpTaskIDLen = 512
	maxOpDataBytes = 512 << 10
	maxRequestID   = 128
	maxIdentityLen = 256
)

// The elements of an operation's envelope, as the gateway names them: the
// fields are its input, the task's state after it is its answer.
const (
	opInputElement  = "parameters"
	opOutputElement = "task"
)

// opFields are the values of every operation's own flags; each operation
// registers the flags it takes.
type opFields struct {
	override  bool
	outcome   string
	data      string
	note      string
	user      string
	role      string
	reason    string
	timeout   time.Duration
	timeoutOn string
	text      string
}

// taskOpSpec declares one operation of the command line.
type taskOpSpec struct {
	use    string // the subcommand
	action string // the direct action it sends
	short  string
	// needsUser: the lifecycle's rules refuse the operation from a caller
	// without a user, so it is a usage error to leave out --as.
	needsUser bool
	flags     func(fs *pflag.FlagSet, f *opFields)
	// input checks the flags and returns the operation's fields of the
	// action's input (taskId and domain are added to them); an error is a
	// usage error.
	input func(cmd *cobra.Command, f *opFields) (map[string]any, error)
}

var taskOpSpecs = []taskOpSpec{
	{use: "claim", action: "ClaimTask", short: "Claim a waiting task for --as, so other candidates cannot complete it", needsUser: true,
		flags: func(fs *pflag.FlagSet, f *opFields) {
			fs.BoolVar(&f.override, "override", false, "take the task from whoever holds it (an admin only)")
		},
		input: func(_ *cobra.Command, f *opFields) (map[string]any, error) {
			if f.override {
				return map[string]any{"override": true}, nil
			}
			return map[string]any{}, nil
		}},
	{use: "unclaim", action: "UnclaimTask", short: "Give a claimed task back to its candidates",
		input: func(*cobra.Command, *opFields) (map[string]any, error) { return map[string]any{}, nil }},
	{use: "assign", action: "AssignTask", short: "Reassign a waiting task to --user (claimed by them) or back to the group --role",
		flags: func(fs *pflag.FlagSet, f *opFields) {
			fs.StringVar(&f.user, "user", "", "the user the task is assigned to")
			fs.StringVar(&f.role, "role", "", "the role the task goes back to, unclaimed")
		},
		input: func(_ *cobra.Command, f *opFields) (map[string]any, error) {
			switch {
			case f.user == "" && f.role == "":
				return nil, errors.New("assign needs --user or --role")
			case f.user != "" && f.role != "":
				return nil, errors.New("assign takes --user or --role, not both")
			case f.user != "":
				return map[string]any{"user": f.user}, nil
			}
			return map[string]any{"role": f.role}, nil
		}},
	{use: "complete", action: "CompleteTask", short: "Complete a waiting task with an outcome, as ProceedTask; with required approvals it awaits them",
		flags: func(fs *pflag.FlagSet, f *opFields) {
			fs.StringVar(&f.outcome, "outcome", "", "one of the task's possibleOutcomes (required when it declares them)")
			fs.StringVar(&f.data, "data", "", "completion data: JSON, or @FILE to read it from a file")
			fs.StringVar(&f.note, "note", "", "a note kept in the history and the notification")
		},
		input: func(cmd *cobra.Command, f *opFields) (map[string]any, error) {
			in := map[string]any{}
			if f.outcome != "" {
				in["outcome"] = f.outcome
			}
			if f.note != "" {
				in["note"] = f.note
			}
			if cmd.Flags().Changed("data") {
				data, err := readData(f.data)
				if err != nil {
					return nil, err
				}
				in["data"] = data
			}
			return in, nil
		}},
	{use: "approve", action: "ApproveTask", short: "Approve a completed task awaiting approval (not by the one who completed it)", needsUser: true,
		flags: noteFlag, input: noteInput},
	{use: "reject", action: "RejectTask", short: "Reject a completion awaiting approval: it goes back to its executor", needsUser: true,
		flags: noteFlag, input: noteInput},
	{use: "cancel", action: "CancelTask", short: "Cancel an open task: it closes CANCELLED and its saga continues with CANCELLED",
		flags: func(fs *pflag.FlagSet, f *opFields) {
			fs.StringVar(&f.reason, "reason", "", "why, kept in the history")
		},
		input: func(_ *cobra.Command, f *opFields) (map[string]any, error) {
			if f.reason != "" {
				return map[string]any{"reason": f.reason}, nil
			}
			return map[string]any{}, nil
		}},
	{use: "deadline", action: "SetDeadline", short: "Move an open task's deadline; one in the past times it out at once",
		flags: func(fs *pflag.FlagSet, f *opFields) {
			fs.DurationVar(&f.timeout, "timeout", 0, "the new deadline from now, such as 10m or 36h")
			fs.StringVar(&f.timeoutOn, "timeout-on", "", "the new deadline as RFC 3339 (2030-01-02T15:04:05Z) or epoch milliseconds")
		},
		input: func(cmd *cobra.Command, f *opFields) (map[string]any, error) {
			hasTimeout, hasOn := cmd.Flags().Changed("timeout"), cmd.Flags().Changed("timeout-on")
			switch {
			case hasTimeout == hasOn:
				return nil, errors.New("deadline needs --timeout or --timeout-on, one of them")
			case hasTimeout:
				if f.timeout < 0 {
					return nil, fmt.Errorf("--timeout: want a duration from now, not negative, got %v (a deadline in the past: --timeout-on)", f.timeout)
				}
				return map[string]any{"timeout": f.timeout.Milliseconds()}, nil
			}
			on, err := parseInstant(f.timeoutOn)
			if err != nil {
				return nil, fmt.Errorf("--timeout-on: %w", err)
			}
			return map[string]any{"timeoutOn": on}, nil
		}},
	{use: "comment", action: "CommentTask", short: "Add a comment to an open task's history",
		flags: func(fs *pflag.FlagSet, f *opFields) {
			fs.StringVar(&f.text, "text", "", "the comment (required)")
		},
		input: func(_ *cobra.Command, f *opFields) (map[string]any, error) {
			if strings.TrimSpace(f.text) == "" {
				return nil, errors.New("comment needs --text")
			}
			return map[string]any{"text": f.text}, nil
		}},
}

func noteFlag(fs *pflag.FlagSet, f *opFields) {
	fs.StringVar(&f.note, "note", "", "a note kept in the history")
}

func noteInput(_ *cobra.Command, f *opFields) (map[string]any, error) {
	if f.note != "" {
		return map[string]any{"note": f.note}, nil
	}
	return map[string]any{}, nil
}

// opCommon are the flags every operation takes.
type opCommon struct {
	as        string
	roles     []string
	tenant    string
	asJSON    bool
	wait      time.Duration
	requestID string
}

func newTaskOpCmds() []*cobra.Command {
	cmds := make([]*cobra.Command, 0, len(taskOpSpecs))
	for _, spec := range taskOpSpecs {
		cmds = append(cmds, newTaskOpCmd(spec))
	}
	return cmds
}

func newTaskOpCmd(spec taskOpSpec) *cobra.Command {
	var f opFields
	var common opCommon
	cmd := &cobra.Command{
		Use:   spec.use + " DOMAIN ID",
		Short: spec.short,
		Long: spec.short + ".\n\n" +
			"The operation is produced to the request topic as the direct action " + spec.action + " (the record\n" +
			"POST /tasks/{domain}/{id}/" + httpOpName(spec.use) + " makes) and the command waits --wait for the runner's answer:\n" +
			"the task's state after it, or the refusal's code and message (exit 1). A refused or\n" +
			"repeated operation changes nothing; --request-id makes a retry of an answer that never came\n" +
			"safe, since a runner applies one request id once.\n\n" + taskOpIdentityDoc,
		Args: taskArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			env, err := taskOpEnvelope(cmd, spec, &f, &common, args[0], args[1])
			if err != nil {
				return usageError(cmd, err)
			}
			c, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			reply, err := exchangeTaskOp(cmd.Context(), c, env, common.wait)
			if err != nil {
				return err
			}
			return printTaskOpReply(cmd, reply, env.RequestMeta.RequestID, common.asJSON)
		},
	}
	fs := cmd.Flags()
	if spec.flags != nil {
		spec.flags(fs, &f)
	}
	fs.StringVar(&common.as, "as", "", "the user the operation is made as (requestMeta.user)")
	fs.StringSliceVar(&common.roles, "roles", nil, "the roles of that user, comma separated")
	fs.StringVar(&common.tenant, "tenant", "", "the tenant of that user (default: the default tenant)")
	fs.BoolVar(&common.asJSON, "json", false, "print the task's state, or the refusal, as one JSON object")
	fs.DurationVar(&common.wait, "wait", 10*time.Second, "how long to wait for the runner's answer")
	fs.StringVar(&common.requestID, "request-id", "", "the request id (default: a new random one); repeat one to retry safely")
	addConfigFlags(cmd, "brokers")
	return cmd
}

// taskArgs wants DOMAIN and ID; anything else is a usage error (exit 2).
func taskArgs(cmd *cobra.Command, args []string) error {
	if len(args) != 2 {
		return usageError(cmd, fmt.Errorf("want DOMAIN and ID, got %d argument(s)", len(args)))
	}
	return nil
}

// httpOpName is the operation's segment in the HTTP path, which names the
// comment operation by its collection.
func httpOpName(use string) string {
	if use == "comment" {
		return "comments"
	}
	return use
}

// taskOpEnvelope checks the arguments and flags and builds the operation's
// direct action request, all before anything connects; every error is a
// usage error.
func taskOpEnvelope(cmd *cobra.Command, spec taskOpSpec, f *opFields, common *opCommon, domain, id string) (*envelope.Envelope, error) {
	var errs []error
	if !statemanager.ValidDomain(domain) {
		errs = append(errs, fmt.Errorf("DOMAIN: want 1 to 64 letters, digits, '.', '_' or '-', got %q", domain))
	}
	if reason := badOpText(id, maxOpTaskIDLen); reason != "" {
		errs = append(errs, fmt.Errorf("ID %s", reason))
	}
	if spec.needsUser && common.as == "" {
		errs = append(errs, fmt.Errorf("%s needs a user: give --as", spec.use))
	}
	for flag, names := range map[string][]string{"--as": {common.as}, "--tenant": {common.tenant}, "--roles": common.roles} {
		for _, name := range names {
			if reason := badOpText(name, maxIdentityLen); reason != "" && (name != "" || flag == "--roles") {
				errs = append(errs, fmt.Errorf("%s: a name that %s", flag, reason))
			}
		}
	}
	if common.wait <= 0 {
		errs = append(errs, fmt.Errorf("--wait: want a positive duration, got %v", common.wait))
	}
	reqID := common.requestID
	if reqID == "" {
		reqID = newRequestID()
	} else if reason := badOpText(reqID, maxRequestID); reason != "" {
		errs = append(errs, fmt.Errorf("--request-id %s", reason))
	}
	in, err := spec.input(cmd, f)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	in["taskId"], in["domain"] = id, domain
	body, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	return &envelope.Envelope{
		RequestMeta: envelope.RequestMeta{RequestID: reqID, User: common.as, Roles: common.roles, Tenant: common.tenant,
			CreatedAt: time.Now().UnixMilli()},
		EventMeta: envelope.EventMeta{Action: spec.action, Domain: domain, InputElement: opInputElement, OutputElement: opOutputElement},
		Payload:   append(append([]byte(`{"`+opInputElement+`":`), body...), '}'),
	}, nil
}

// badOpText says why s cannot name a task, a caller or a request, or "".
func badOpText(s string, max int) string {
	switch {
	case s == "":
		return "is empty"
	case len(s) > max:
		return fmt.Sprintf("of %d bytes is longer than %d", len(s), max)
	case !utf8.ValidString(s):
		return fmt.Sprintf("%.40q is not valid UTF-8", s)
	case strings.ContainsFunc(s, unicode.IsControl):
		return fmt.Sprintf("%.40q holds a control character", s)
	}
	return ""
}

// readData is --data: JSON given inline, or read from the file after @.
func readData(v string) (json.RawMessage, error) {
	name := "--data"
	b := []byte(v)
	if file, ok := strings.CutPrefix(v, "@"); ok {
		fh, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("--data: %w", err)
		}
		defer fh.Close()
		b, err = io.ReadAll(io.LimitReader(fh, maxOpDataBytes+1))
		if err != nil {
			return nil, fmt.Errorf("--data: %w", err)
		}
		name = "--data " + v
	}
	if len(b) > maxOpDataBytes {
		return nil, fmt.Errorf("%s: longer than %d bytes", name, maxOpDataBytes)
	}
	if !gjson.ValidBytes(b) {
		return nil, fmt.Errorf("%s: not valid JSON", name)
	}
	return json.RawMessage(b), nil
}

// parseInstant reads RFC 3339 or epoch milliseconds.
func parseInstant(s string) (int64, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		if ms <= 0 {
			return 0, fmt.Errorf("want a positive epoch time in ms, got %d", ms)
		}
		return ms, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("want RFC 3339 (2030-01-02T15:04:05Z) or epoch milliseconds, got %q", s)
	}
	if t.UnixMilli() <= 0 {
		return 0, fmt.Errorf("%q is before 1970", s)
	}
	return t.UnixMilli(), nil
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "cli-" + hex.EncodeToString(b[:])
}

// exchangeTaskOp produces env to the request topic, its answer addressed to
// the reply topic, and returns that answer. The reply consumer is
// positioned at the end of the reply topic before the record is produced,
// so the answer cannot pass it by.
func exchangeTaskOp(ctx context.Context, c *config.Config, env *envelope.Envelope, wait time.Duration) (*envelope.Envelope, error) {
	reqID := env.RequestMeta.RequestID
	env.RequestMeta.ReplyTo = c.Topics.Replies
	value := env.Encode()
	// The runners read it with the strict decoder; a record it refuses
	// would only be dead-lettered.
	if _, err := envelope.Decode(value, nil); err != nil {
		return nil, fmt.Errorf("the operation's record does not decode: %w", err)
	}
	// The command waits for the answer now, so an unknown task must be
	// TASK_NOT_FOUND at once, not an operation kept for a task that may
	// start later (an early answer).
	rec := &kgo.Record{Topic: c.Topics.Requests, Key: []byte(reqID), Value: value,
		Headers: []kgo.RecordHeader{{Key: actions.NoEarlyHeader, Value: []byte("1")}}}
	opts, err := app.KafkaOpts(c)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(opts, kgo.FetchMaxWait(200*time.Millisecond))...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	pingCtx, cancelPing := context.WithTimeout(ctx, brokerPingTimeout)
	err = cl.Ping(pingCtx)
	cancelPing()
	if err != nil {
		return nil, fmt.Errorf("cannot reach a Kafka broker at %s within %v (set them with --brokers, brokers or %s_BROKERS): %w",
			strings.Join(c.Brokers, ","), brokerPingTimeout, config.EnvPrefix, err)
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	replyTopic := c.Topics.Replies
	if err := positionReplies(ctx, cl, replyTopic); err != nil {
		return nil, err
	}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return nil, fmt.Errorf("produce to %s: %w", rec.Topic, err)
	}
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("no answer to request %s on %s within %v: is a runner consuming %s? The operation may still be applied; "+
				"run it again with --request-id %s to see its result without applying it twice", reqID, replyTopic, wait, rec.Topic, reqID)
		}
		var reply *envelope.Envelope
		fs.EachRecord(func(r *kgo.Record) {
			if reply != nil || (string(r.Key) != reqID && gjson.GetBytes(r.Value, "requestMeta.requestId").String() != reqID) {
				return
			}
			if env, err := envelope.Decode(r.Value, nil); err == nil && env.RequestMeta.RequestID == reqID {
				reply = env
			}
		})
		if reply != nil {
			return reply, nil
		}
	}
}

// positionReplies adds every partition of topic to cl at its current end.
// A reply topic that does not exist means no runner of this configuration
// ever started (runners create it), so nothing would answer: that is an
// error now rather than a wait.
func positionReplies(ctx context.Context, cl *kgo.Client, topic string) error {
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	switch {
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		return fmt.Errorf("the reply topic %s does not exist: has a runner with this configuration (topics.replies) started?", topic)
	case err != nil:
		return fmt.Errorf("position on the reply topic %s: %w", topic, err)
	case len(ends[topic]) == 0:
		return fmt.Errorf("the reply topic %s has no partitions", topic)
	}
	cl.AddConsumePartitions(ends.KOffsets())
	return nil
}

// opState is the task's state an operation answers with.
type opState struct {
	TaskID    string `json:"taskId"`
	Domain    string `json:"domain"`
	Status    string `json:"status"`
	ClaimedBy string `json:"claimedBy"`
	Deadline  int64  `json:"deadline"`
	Outcome   string `json:"outcome"`
	Approvals []struct {
		User string `json:"user"`
		At   int64  `json:"at"`
	} `json:"approvals"`
}

// printTaskOpReply prints the task's state after the operation, or the
// refusal and exit 1.
func printTaskOpReply(cmd *cobra.Command, reply *envelope.Envelope, reqID string, asJSON bool) error {
	res := reply.Result
	out := cmd.OutOrStdout()
	if res.Status == envelope.StatusFail {
		code := orElse(res.Code, "FAILED")
		if asJSON {
			b, _ := json.Marshal(map[string]string{"status": res.Status, "code": code, "message": res.Message, "requestId": reqID})
			fmt.Fprintln(out, string(b))
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "%s: refused: %s: %s\n", cmd.CommandPath(), code, res.Message)
		return exitError{code: 1}
	}
	raw := reply.Get(opOutputElement).Raw
	if asJSON {
		fmt.Fprintln(out, orElse(raw, "{}"))
		return nil
	}
	var st opState
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return fmt.Errorf("the runner answered request %s without the task's state: %w", reqID, err)
	}
	approvals := make([]string, len(st.Approvals))
	for i, a := range st.Approvals {
		approvals[i] = a.User
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tCLAIMED BY\tOUTCOME\tAPPROVALS\tDEADLINE")
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", st.TaskID, st.Status, orElse(st.ClaimedBy, "-"), orElse(st.Outcome, "-"),
		orElse(strings.Join(approvals, ","), "-"), fmtMillis(st.Deadline))
	return tw.Flush()
}

// orElse is s, or dflt when s is empty.
func orElse(s, dflt string) string {
	if s == "" {
		return dflt
	}
	return s
}

func newTasksHistoryCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "history DOMAIN ID",
		Short: "Show every event of a task, oldest first, read from its state manager",
		Long: "Shows every event of a task (started, claimed, assigned, completed, approved, commented, ...)\n" +
			"with its time, actor and old and new values, while the task is open or kept after it closed\n" +
			"(redis.closedTTL). It reads Redis and changes nothing.",
		Args: taskArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			domain, id := args[0], args[1]
			var errs []error
			if !statemanager.ValidDomain(domain) {
				errs = append(errs, fmt.Errorf("DOMAIN: want 1 to 64 letters, digits, '.', '_' or '-', got %q", domain))
			}
			if reason := badOpText(id, maxOpTaskIDLen); reason != "" {
				errs = append(errs, fmt.Errorf("ID %s", reason))
			}
			if len(errs) > 0 {
				return usageError(cmd, errors.Join(errs...))
			}
			st, closeAll, err := openStore(cmd, domain)
			if err != nil {
				return err
			}
			defer closeAll()
			lc, ok := st.(statemanager.Lifecycle)
			if !ok {
				return fmt.Errorf("the state manager of %q keeps no task history", domain)
			}
			events, err := lc.History(cmd.Context(), id)
			if errors.Is(err, statemanager.ErrNotFound) {
				return fmt.Errorf("no task %q in domain %q (unknown, or closed longer ago than redis.closedTTL)", id, domain)
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				for _, e := range events {
					b, _ := json.Marshal(e)
					fmt.Fprintln(out, string(b))
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tEVENT\tACTOR\tFROM\tTO\tOUTCOME\tNOTE")
			for _, e := range events {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, fmtMillis(e.At), e.Type, orElse(e.Actor, "-"),
					orElse(e.From, "-"), orElse(e.To, "-"), orElse(e.Outcome, "-"), orElse(oneLine(e.Note), "-"))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per event")
	addConfigFlags(cmd, "redis")
	return cmd
}

// oneLine keeps a note from breaking the table: a note is free text of
// whoever acted on the task.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) > 80 {
		s = string([]rune(s)[:79]) + "…"
	}
	return s
}
