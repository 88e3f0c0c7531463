package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/sagarunner/sagarunner/config"
	"github.com/sagarunner/sagarunner/internal/app"
	"github.com/sagarunner/sagarunner/statemanager"
)

func newTasksCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tasks",
		Short: "Read tasks from the state managers and act on them through the runners",
	}
	cmd.AddCommand(newTasksListCmd(), newTasksGetCmd(), newTasksHistoryCmd())
	cmd.AddCommand(newTaskOpCmds()...)
	return cmd
}

func newTasksListCmd() *cobra.Command {
	var f statemanager.Filter
	var domain string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tasks of a domain (default: waiting tasks of workflow)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkListFlags(&f, domain); err != nil {
				return usageError(cmd, err)
			}
			st, closeAll, err := openStore(cmd, domain)
			if err != nil {
				return err
			}
			defer closeAll()
			tasks, err := st.List(cmd.Context(), f)
			if errors.Is(err, statemanager.ErrInvalidFilter) {
				return usageError(cmd, err)
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				for _, t := range tasks {
					t.Envelope = nil
					b, _ := json.Marshal(t)
					fmt.Fprintln(out, string(b))
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATUS\tNAME\tUSER\tROLES\tSAGA/STEP\tDEADLINE")
			for _, t := range tasks {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s/%s\t%s\n", t.ID, t.Status, t.Name, t.User,
					strings.Join(t.Roles, ","), t.Saga, t.StepID, fmtMillis(t.Deadline))
			}
			return tw.Flush()
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&domain, "domain", "workflow", "state-manager domain")
	fs.StringVar(&f.User, "user", "", "only tasks of this user")
	fs.StringVar(&f.Role, "role", "", "only tasks open to this role")
	fs.StringVar(&f.Status, "status", "", "WAITING (default), COMPLETED, TIMEOUT or CANCELLED, in any case")
	fs.StringVar(&f.Tenant, "tenant", "", "tenant whose tasks are listed (default: the default tenant)")
	fs.IntVar(&f.Limit, "limit", 100, "at most this many tasks (1 to "+strconv.Itoa(maxListLimit)+")")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object per task")
	addConfigFlags(cmd, "redis")
	return cmd
}

func newTasksGetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get DOMAIN ID",
		Short: "Show one task as JSON, with its suspended envelope",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !statemanager.ValidDomain(args[0]) {
				return usageError(cmd, fmt.Errorf("DOMAIN: want 1 to 64 letters, digits, '.', '_' or '-', got %q", args[0]))
			}
			st, closeAll, err := openStore(cmd, args[0])
			if err != nil {
				return err
			}
			defer closeAll()
			t, err := st.Get(cmd.Context(), args[1])
			if err != nil {
				return err
			}
			b, _ := json.MarshalIndent(t, "", "  ")
			fmt.Fprintln(cmd.OutOrStdout(), string(b))
			return nil
		},
	}
	addConfigFlags(cmd, "redis")
	return cmd
}

// maxListLimit bounds --limit: one listing is read into memory whole.
const maxListLimit = 10000

// listStatuses are the values --status takes.
var listStatuses = []string{statemanager.StatusWaiting, statemanager.StatusInApproval, statemanager.StatusCompleted, statemanager.StatusTimeout, statemanager.StatusCancelled}

// checkListFlags refuses filter values that cannot match anything, before
// anything connects: a typo must not pass for an empty inbox. It
// normalises --status to upper case.
func checkListFlags(f *statemanager.Filter, domain string) error {
	var errs []error
	if f.Status != "" {
		up := strings.ToUpper(f.Status)
		if !slices.Contains(listStatuses, up) {
			errs = append(errs, fmt.Errorf("--status: want one of %s, got %q", strings.Join(listStatuses, ", "), f.Status))
		}
		f.Status = up
	}
	if f.Limit < 1 || f.Limit > maxListLimit {
		errs = append(errs, fmt.Errorf("--limit: want 1 to %d, got %d", maxListLimit, f.Limit))
	}
	if !statemanager.ValidDomain(domain) {
		errs = append(errs, fmt.Errorf("--domain: want 1 to 64 letters, digits, '.', '_' or '-', got %q", domain))
	}
	return errors.Join(errs...)
}

// usageError prints err and the hint to --help, and exits 2 like any other
// misuse of the command line.
func usageError(cmd *cobra.Command, err error) error {
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", cmd.CommandPath(), line)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "See '%s --help'.\n", cmd.CommandPath())
	return exitError{code: 2}
}

// redisPingTimeout bounds how long a command waits for Redis before saying
// it cannot reach it.
const redisPingTimeout = 5 * time.Second

// pingRedis checks the Redis holding domain answers, so an unreachable one
// is one error naming its address rather than go-redis logging every
// retry of every command.
func pingRedis(ctx context.Context, c *config.Config, domain string) error {
	redis.SetLogger(quietRedisLog{})
	r := c.Redis
	for _, sm := range c.StateManagers {
		if sm.Domain == domain && sm.Addr != "" {
			if sm.Username == "" && sm.Password == "" {
				sm.Username, sm.Password = r.Username, r.Password
			}
			r = sm.Redis
		}
	}
	cl := app.RedisClient(r)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, redisPingTimeout)
	defer cancel()
	if err := cl.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("cannot reach Redis at %s (set it with --redis, redis.addr or %s_REDIS_ADDR): %w", r.Addr, config.EnvPrefix, err)
	}
	return nil
}

// quietRedisLog drops go-redis's own log lines: the command reports the
// one error that matters.
type quietRedisLog struct{}

func (quietRedisLog) Printf(context.Context, string, ...any) {}

func fmtMillis(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339)
}

// openStore is the state manager of a domain as the configuration names
// it, for a command that reads or writes tasks directly; closeAll releases
// its connections.
func openStore(cmd *cobra.Command, domain string) (statemanager.Store, func(), error) {
	c, err := loadConfig(cmd)
	if err != nil {
		return nil, nil, err
	}
	if err := pingRedis(cmd.Context(), c, domain); err != nil {
		return nil, nil, err
	}
	res, closeAll, err := app.BuildStores(c)
	if err != nil {
		return nil, nil, err
	}
	st, err := res.Store(domain)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return st, closeAll, nil
}
