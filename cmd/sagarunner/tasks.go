package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sagarunner/sagarunner/internal/app"

	"github.com/spf13/cobra"

	"github.com/sagarunner/sagarunner/statemanager"
)

func newTasksCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tasks",
		Short: "Read waiting and closed tasks from the state managers",
	}
	cmd.AddCommand(newTasksListCmd(), newTasksGetCmd())
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
			c, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			res, closeAll, err := app.BuildStores(c)
			if err != nil {
				return err
			}
			defer closeAll()
			st, err := res.Store(domain)
			if err != nil {
				return err
			}
			tasks, err := st.List(cmd.Context(), f)
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
	fs.StringVar(&f.Status, "status", "", "WAITING (default), COMPLETED, TIMEOUT or CANCELLED")
	fs.IntVar(&f.Limit, "limit", 100, "at most this many tasks")
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
			c, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			res, closeAll, err := app.BuildStores(c)
			if err != nil {
				return err
			}
			defer closeAll()
			st, err := res.Store(args[0])
			if err != nil {
				return err
			}
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

func fmtMillis(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339)
}
