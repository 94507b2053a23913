package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/gridwatch/gridwatch/api"
)

func tokenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Make API tokens",
	}
	var t api.Token
	var role string
	newCmd := &cobra.Command{
		Use:   "new",
		Short: "Make a new API token and print it with its api.tokens_file entry",
		Long: `Make a new random API token. The token is printed once, for its holder; the
tokens file keeps only its hash, so add the printed entry to the file named
by api.tokens_file and restart the server.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if t.Role, err = api.ParseRole(role); err != nil {
				return fmt.Errorf("--role: %w", err)
			}
			if t.Name == "" {
				return fmt.Errorf("--name is required")
			}
			if (t.Role == api.RoleUnit) != (t.Unit != "") {
				return fmt.Errorf("--unit is required with --role unit, and only with it")
			}
			token, err := api.NewToken()
			if err != nil {
				return err
			}
			t.Hash = api.HashToken(token)
			entry, err := yaml.Marshal([]api.Token{t})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "token (give it to %s; it is not stored): %s\n\nentry for api.tokens_file:\n%s", t.Name, token, entry)
			return nil
		},
	}
	newCmd.Flags().StringVar(&t.Name, "name", "", "who holds the token; recorded as the actor of their actions")
	newCmd.Flags().StringVar(&role, "role", "viewer", "viewer, reporter, unit, operator, dispatcher, supervisor or admin")
	newCmd.Flags().StringVar(&t.Unit, "unit", "", "the unit code a token of the role unit works for")
	newCmd.Flags().StringVar(&t.Grid, "grid", "", "grid code the token is limited to, with everything below it; empty: the whole city")
	cmd.AddCommand(newCmd)
	return cmd
}
