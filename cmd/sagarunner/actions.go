package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sagarunner/sagarunner/actions"
)

func newActionsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "actions",
		Short: "Print the reference of every action and its parameters (Markdown)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprint(cmd.OutOrStdout(), actions.Default.Markdown())
			return err
		},
	}
}
