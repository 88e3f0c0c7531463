package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/sagas"
)

func newValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate [paths...]",
		Short: "Check saga files; print every error as file:line:col: reason",
		Long: "Loads the saga files or folders given (default ./sagas) exactly as the runner does, beside\n" +
			"the built-in /ProceedTask and /TimeoutTask sagas, and reports every problem at once. A saga\n" +
			"with a built-in's name or path replaces it. Several versions of one saga may be loaded\n" +
			"together: each is checked on its own, only a (name, version) defined twice is an error, and\n" +
			"only the highest version's trigger starts instances (the older ones finish theirs).\n" +
			"Exits non-zero when any file is invalid.",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{"./sagas"}
			}
			set, shadowed, err := saga.LoadWithBuiltIns(actions.Default, sagas.BuiltIn(), args...)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return exitError{code: 1}
			}
			out := cmd.OutOrStdout()
			for _, g := range set.Sagas {
				trig := g.Trigger.Topic
				if g.Trigger.Path != "" {
					if trig != "" {
						trig += ", "
					}
					trig += "POST " + g.Trigger.Path
				}
				origin := ""
				if strings.HasPrefix(g.File, saga.BuiltInPrefix) {
					origin = "  built-in"
				}
				if cur, _ := set.ByName(g.Name); cur != g {
					// Its trigger starts nothing: say so, or an operator
					// would expect both versions to start instances.
					trig = fmt.Sprintf("superseded by v%d: finishes its instances, starts none", cur.Version)
				}
				fmt.Fprintf(out, "ok  %-28s v%d  %d steps  (%s)%s\n", g.Name, g.Version, len(g.Steps), trig, origin)
			}
			for _, s := range shadowed {
				if !s.Same {
					fmt.Fprintf(out, "note  %s:%d: saga %q replaces the built-in %q\n", s.By.File, s.By.Line, s.By.Name, s.BuiltIn.Name)
				}
			}
			return nil
		},
	}
}
