package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sagarunner/sagarunner/instances"
	"github.com/sagarunner/sagarunner/internal/app"
	"github.com/sagarunner/sagarunner/saga/envelope"
)

// The instance commands read the instance store as GET /instances does,
// as an operator with Redis access: every tenant's instances are theirs to
// read with --tenant. A cancel goes to the runners like POST
// /instances/{id}/cancel, so its tasks, onCancel step and end happen where
// every other step does.
func newInstancesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "instances",
		Short: "Read saga instances and their timelines, and cancel them through the runners",
	}
	cmd.AddCommand(newInstancesListCmd(), newInstancesGetCmd(), newInstancesTimelineCmd(), newInstancesCancelCmd())
	return cmd
}

// openInstances opens the instance store of the configuration.
func openInstances(cmd *cobra.Command) (*instances.Store, func(), error) {
	c, err := loadConfig(cmd)
	if err != nil {
		return nil, nil, err
	}
	if !c.Instances.Enabled {
		return nil, nil, errors.New("instance tracking is off (instances.enabled)")
	}
	if err := pingRedis(cmd.Context(), c, ""); err != nil {
		return nil, nil, err
	}
	rdb := app.RedisClient(c.Redis)
	st, err := instances.NewStore(rdb, instances.Config{Prefix: c.Instances.Prefix, Shards: c.Instances.Shards,
		TimelineCap: c.Instances.TimelineCap, Retention: c.Instances.Retention})
	if err != nil {
		rdb.Close()
		return nil, nil, err
	}
	return st, func() { rdb.Close() }, nil
}

func newInstancesListCmd() *cobra.Command {
	var f instances.Filter
	var after, before string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List a tenant's instances, newest first (the next page's cursor goes to stderr)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.Status = strings.ToUpper(f.Status)
			var errs []error
			for _, t := range []struct {
				flag, v string
				dst     *int64
			}{{"--started-after", after, &f.StartedAfter}, {"--started-before", before, &f.StartedBefore}} {
				if t.v == "" {
					continue
				}
				ts, err := time.Parse(time.RFC3339, t.v)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: want an RFC 3339 time, got %q", t.flag, t.v))
					continue
				}
				*t.dst = ts.UnixMilli()
			}
			if len(errs) > 0 {
				return usageError(cmd, errors.Join(errs...))
			}
			st, closeFn, err := openInstances(cmd)
			if err != nil {
				return err
			}
			defer closeFn()
			page, err := st.List(cmd.Context(), f)
			if errors.Is(err, instances.ErrBadFilter) {
				return usageError(cmd, err)
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				for _, in := range page.Instances {
					b, _ := json.Marshal(in)
					fmt.Fprintln(out, string(b))
				}
			} else {
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSAGA\tSTATUS\tSTEP\tBUSINESS KEY\tSTARTER\tSTARTED\tUPDATED")
				for _, in := range page.Instances {
					fmt.Fprintf(tw, "%s\t%s/v%d\t%s\t%s\t%s\t%s\t%s\t%s\n", in.ID, in.Saga, in.Version, in.Status, orElse(in.Step, "-"),
						orElse(in.BusinessKey, "-"), orElse(in.Starter, "-"), fmtMillis(in.StartedAt), fmtMillis(in.UpdatedAt))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			if page.NextCursor != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "next page: --cursor %s\n", page.NextCursor)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.Tenant, "tenant", "", "the tenant whose instances to list (default: the default tenant)")
	fs.StringVar(&f.Saga, "saga", "", "only instances of this saga")
	fs.StringVar(&f.Status, "status", "", "only instances with this status: "+strings.Join(instances.Statuses, ", "))
	fs.StringVar(&f.BusinessKey, "business-key", "", "only instances with this business key")
	fs.StringVar(&f.Viewer, "visible-to", "", "only instances this user started or acted on")
	fs.StringVar(&after, "started-after", "", "only instances started at or after this RFC 3339 time")
	fs.StringVar(&before, "started-before", "", "only instances started at or before this RFC 3339 time")
	fs.StringVar(&f.Sort, "sort", instances.SortStartedAt, "order, newest first: startedAt (the only one)")
	fs.IntVar(&f.Limit, "limit", instances.DefaultLimit, fmt.Sprintf("instances per page, at most %d", instances.MaxLimit))
	fs.StringVar(&f.Cursor, "cursor", "", "the cursor of the next page, as a previous list printed it")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object per instance")
	addConfigFlags(cmd, "redis")
	return cmd
}

func instanceArg(cmd *cobra.Command, args []string) error {
	if len(args) != 1 || args[0] == "" || len(args[0]) > maxRequestID {
		return usageError(cmd, fmt.Errorf("want one instance ID of 1 to %d bytes", maxRequestID))
	}
	return nil
}

func newInstancesGetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "Show an instance's record as JSON",
		Args:  instanceArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, closeFn, err := openInstances(cmd)
			if err != nil {
				return err
			}
			defer closeFn()
			in, err := st.Get(cmd.Context(), args[0])
			if err != nil {
				return instanceErr(args[0], err)
			}
			b, _ := json.MarshalIndent(in, "", "  ")
			fmt.Fprintln(cmd.OutOrStdout(), string(b))
			return nil
		},
	}
	addConfigFlags(cmd, "redis")
	return cmd
}

func instanceErr(id string, err error) error {
	if errors.Is(err, instances.ErrNotFound) {
		return fmt.Errorf("no instance %q", id)
	}
	return err
}

func newInstancesTimelineCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "timeline ID",
		Short: "Print an instance's timeline, oldest first",
		Args:  instanceArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, closeFn, err := openInstances(cmd)
			if err != nil {
				return err
			}
			defer closeFn()
			tl, err := st.Timeline(cmd.Context(), args[0])
			if err != nil {
				return instanceErr(args[0], err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				for i := range tl {
					fmt.Fprintln(out, string(tl[i].AppendJSON(nil)))
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tAT\tEVENT\tSTEP/TASK\tSTATUS\tACTOR\tDETAIL")
			for _, e := range tl {
				what, detail := e.Step, strings.TrimSpace(e.Code+" "+e.Message)
				if e.Type == instances.EventTask {
					what, detail = e.Domain+"/"+e.TaskID, strings.TrimSpace(e.Task+" "+e.Outcome+" "+e.Note)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, fmtMillis(e.At), e.Type, orElse(what, "-"),
					orElse(e.Status, "-"), orElse(e.Actor, "-"), orElse(detail, "-"))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per event")
	addConfigFlags(cmd, "redis")
	return cmd
}

func newInstancesCancelCmd() *cobra.Command {
	var common opCommon
	var reason string
	cmd := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel an instance through the runners: its open tasks close CANCELLED, its onCancel step runs",
		Long: "Cancel an instance through the runners: its open tasks close CANCELLED, the saga's onCancel step\n" +
			"runs if it declares one, and the instance ends CANCELLED. The request is produced as the direct\n" +
			"action CancelInstance (what POST /instances/{id}/cancel makes) and the command waits --wait for the\n" +
			"answer. An ended instance is refused INSTANCE_ENDED (exit 1).\n\n" + taskOpIdentityDoc,
		Args: instanceArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(reason) > 1000 {
				return usageError(cmd, errors.New("--reason: at most 1000 bytes"))
			}
			if common.wait <= 0 {
				return usageError(cmd, fmt.Errorf("--wait: want a positive duration, got %v", common.wait))
			}
			reqID := common.requestID
			if reqID == "" {
				reqID = newRequestID()
			}
			body, _ := json.Marshal(map[string]string{"instanceId": args[0], "reason": reason})
			env := &envelope.Envelope{
				RequestMeta: envelope.RequestMeta{RequestID: reqID, User: common.as, Roles: common.roles, Tenant: common.tenant,
					CreatedAt: time.Now().UnixMilli()},
				EventMeta: envelope.EventMeta{Action: "CancelInstance", InputElement: opInputElement, OutputElement: "cancel"},
				Payload:   append(append([]byte(`{"`+opInputElement+`":`), body...), '}'),
			}
			c, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			reply, err := exchangeTaskOp(cmd.Context(), c, env, common.wait)
			if err != nil {
				return err
			}
			res := reply.Result
			if res.Status == envelope.StatusFail {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: refused: %s: %s\n", cmd.CommandPath(), orElse(res.Code, "FAILED"), res.Message)
				return exitError{code: 1}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "instance %s cancelled\n", args[0])
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&reason, "reason", "", "why, kept in the timeline and the tasks' history")
	fs.StringVar(&common.as, "as", "", "the user the cancel is made as (requestMeta.user): an admin or the starter")
	fs.StringSliceVar(&common.roles, "roles", nil, "the roles of that user, comma separated")
	fs.StringVar(&common.tenant, "tenant", "", "the tenant of that user (default: the default tenant)")
	fs.DurationVar(&common.wait, "wait", 10*time.Second, "how long to wait for the runner's answer")
	fs.StringVar(&common.requestID, "request-id", "", "the request id (default: a new random one)")
	addConfigFlags(cmd, "brokers")
	return cmd
}
