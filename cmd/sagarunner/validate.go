package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/saga"
)

func newValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate [paths...]",
		Short: "Check saga files; print every error as file:line: reason",
		Long: "Loads the saga files or folders given (default ./sagas) exactly as the runner does and\n" +
			"reports every problem at once. Exits non-zero when any file is invalid.",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{"./sagas"}
			}
			set, err := saga.Load(actions.Default, args...)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return exitError{code: 1}
			}
			for _, g := range set.Sagas {
				trig := g.Trigger.Topic
				if g.Trigger.Path != "" {
					if trig != "" {
						trig += ", "
					}
					trig += "POST " + g.Trigger.Path
				}
				fmt.Fprintf(cmd.OutOrStdout(), "ok  %-28s v%d  %d steps  (%s)\n", g.Name, g.Version, len(g.Steps), trig)
			}
			return nil
		},
	}
}
