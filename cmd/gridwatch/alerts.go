package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/gridwatch/gridwatch/alerts"
)

func alertsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alerts",
		Short: "List and show alerts through a server's API",
		Long: `List and show alerts, the detection records, through the HTTP API of a running
server. The work an alert calls for is its case: act on it with gridwatch cases act.
The token (--token or GRIDWATCH_TOKEN) decides what you see.`,
		// The work-order actions of earlier releases get a pointer to
		// where they went rather than the help text.
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 0:
				return cmd.Help()
			case slices.Contains([]string{"ack", "dispatch", "resolve", "close", "reopen", "comment"}, args[0]):
				return fmt.Errorf("gridwatch alerts %s is gone: alerts no longer carry work orders; act on the alert's case "+
					"(gridwatch cases list --source alert, gridwatch cases act CASE ACTION)", args[0])
			}
			return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
		},
	}
	c := apiFlags(cmd)
	var asJSON bool
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print the API's JSON instead of a table")
	cmd.AddCommand(alertsListCommand(c, &asJSON), alertsShowCommand(c, &asJSON))
	return cmd
}

func alertsListCommand(c *apiClient, asJSON *bool) *cobra.Command {
	filters := []listFilter{
		{"grid", "grid code: alerts in it or below it"},
		{"condition", "conditions, comma-separated: firing, cleared"},
		{"severity", "severities, comma-separated: info, minor, major, critical"},
		{"rule", "rule name"},
		{"device", "device id"},
		{"from", "fired at or after: RFC 3339 or epoch ms"},
		{"to", "fired before: RFC 3339 or epoch ms"},
		{"sort", "fired, updated or severity; prefix - for descending (default -fired)"},
		{"cursor", "continue after a previous page (its next cursor)"},
	}
	return listCommand(c, asJSON, "List alerts, newest first", "/api/v1/alerts", filters, func(w io.Writer, page *alerts.Page) string {
		fmt.Fprintln(w, "ID\tVERSION\tSEVERITY\tCONDITION\tGRID\tDEVICE\tRULE\tFIRED\tCLEARED")
		for _, a := range page.Alerts {
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.Version, a.Severity, a.Condition,
				a.Grid, dash(a.Device), a.Rule, timeOrDash(a.Fired), timeOrDash(a.Cleared))
		}
		return page.Next
	})
}

// alertWithTimeline is the answer of GET /api/v1/alerts/{id}.
type alertWithTimeline struct {
	alerts.Alert
	Timeline []alerts.Event `json:"timeline"`
}

func alertsShowCommand(c *apiClient, asJSON *bool) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show an alert and its timeline",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var a alertWithTimeline
			if _, err := c.do(cmd.Context(), http.MethodGet, "/api/v1/alerts/"+url.PathEscape(args[0]), nil, nil, &a); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(cmd.OutOrStdout(), a)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			for _, row := range [][2]string{
				{"id", a.ID}, {"version", strconv.FormatUint(a.Version, 10)}, {"rule", a.Rule}, {"summary", a.Summary},
				{"severity", a.Severity.String()}, {"escalated", yesNo(a.Escalated)}, {"condition", string(a.Condition)},
				{"grid", a.Grid}, {"device", dash(a.Device)}, {"members", dash(strings.Join(a.Members, ","))},
				{"category", a.Category}, {"fired", timeOrDash(a.Fired)}, {"cleared", timeOrDash(a.Cleared)},
			} {
				fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
			}
			fmt.Fprintln(tw, "\nTIME\tVERSION\tACTOR\tEVENT\tFROM\tTO\tNOTE")
			for _, e := range a.Timeline {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", timeOrDash(e.TS), e.Version, e.Actor, e.Kind, dash(e.From), dash(e.To), e.Note)
			}
			return tw.Flush()
		},
	}
}
