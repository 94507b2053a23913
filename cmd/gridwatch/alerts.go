package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gridwatch/gridwatch/alerts"
)

// apiClient talks to a gridwatch server's HTTP API with a bearer token.
type apiClient struct {
	server string
	token  string
	http   *http.Client
}

// apiFlags adds the connection flags to cmd and returns the client they
// configure.
func apiFlags(cmd *cobra.Command) *apiClient {
	c := &apiClient{http: &http.Client{Timeout: 30 * time.Second}}
	server := os.Getenv("GRIDWATCH_SERVER")
	if server == "" {
		server = "http://127.0.0.1:8080"
	}
	cmd.PersistentFlags().StringVar(&c.server, "server", server, "gridwatch server URL (env GRIDWATCH_SERVER)")
	cmd.PersistentFlags().StringVar(&c.token, "token", "", "API bearer token (env GRIDWATCH_TOKEN)")
	return c
}

// do sends a request and decodes a JSON answer into out; an error answer
// becomes an error carrying the API's code and message.
func (c *apiClient) do(ctx context.Context, method, path string, header http.Header, body, out any) (http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.server, "/")+path, rd)
	if err != nil {
		return nil, fmt.Errorf("--server: %w", err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	token := c.token
	if token == "" {
		token = os.Getenv("GRIDWATCH_TOKEN")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error.Code != "" {
			return nil, &apiError{status: resp.StatusCode, code: e.Error.Code, message: e.Error.Message}
		}
		return nil, fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return nil, fmt.Errorf("%s %s: answer is not the expected JSON: %w", method, path, err)
		}
	}
	return resp.Header, nil
}

// apiError is an error answer of the API.
type apiError struct {
	status        int
	code, message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%s (%d %s)", e.message, e.status, e.code) }

func alertsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alerts",
		Short: "List, show and act on alerts (work orders) through a server's API",
		Long: `List, show and act on alerts through the HTTP API of a running server.
The token (--token or GRIDWATCH_TOKEN) decides what you see and may do.`,
	}
	c := apiFlags(cmd)
	var asJSON bool
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print the API's JSON instead of a table")
	cmd.AddCommand(alertsListCommand(c, &asJSON), alertsShowCommand(c, &asJSON))
	for _, kind := range []alerts.ActionKind{alerts.ActionAck, alerts.ActionDispatch, alerts.ActionResolve, alerts.ActionClose, alerts.ActionReopen, alerts.ActionComment} {
		cmd.AddCommand(alertsActionCommand(c, &asJSON, kind))
	}
	return cmd
}

func alertsListCommand(c *apiClient, asJSON *bool) *cobra.Command {
	filters := []struct{ name, help string }{
		{"grid", "grid code: alerts in it or below it"},
		{"unit", "responsible unit"},
		{"status", "statuses, comma-separated: new, acknowledged, dispatched, resolved, closed, reopened"},
		{"condition", "conditions, comma-separated: firing, cleared"},
		{"severity", "severities, comma-separated: info, minor, major, critical"},
		{"rule", "rule name"},
		{"device", "device id"},
		{"from", "fired at or after: RFC 3339 or epoch ms"},
		{"to", "fired before: RFC 3339 or epoch ms"},
		{"sort", "fired, updated or severity; prefix - for descending (default -fired)"},
		{"cursor", "continue after a previous page (its next cursor)"},
	}
	values := make([]string, len(filters))
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List alerts, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			for i, f := range filters {
				if values[i] != "" {
					q.Set(f.name, values[i])
				}
			}
			if limit > 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			var page alerts.Page
			if _, err := c.do(cmd.Context(), http.MethodGet, "/api/v1/alerts?"+q.Encode(), nil, nil, &page); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(cmd.OutOrStdout(), page)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tVERSION\tSEVERITY\tCONDITION\tSTATUS\tGRID\tDEVICE\tUNIT\tRULE\tFIRED\tOVERDUE")
			now := time.Now()
			for _, a := range page.Alerts {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.Version, a.Severity, a.Condition, a.Status,
					a.Grid, dash(a.Device), dash(a.Unit), a.Rule, a.Fired.Local().Format(time.DateTime), yesNo(a.Overdue(now)))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if page.Next != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "more: --cursor %s\n", page.Next)
			}
			return nil
		},
	}
	for i, f := range filters {
		cmd.Flags().StringVar(&values[i], f.name, "", f.help)
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "page size (default 100, at most 1000)")
	return cmd
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
				{"severity", a.Severity.String()}, {"condition", string(a.Condition)}, {"status", string(a.Status)},
				{"grid", a.Grid}, {"device", dash(a.Device)}, {"members", dash(strings.Join(a.Members, ","))},
				{"category", a.Category}, {"unit", dash(a.Unit)},
				{"fired", timeOrDash(a.Fired)}, {"ack due", timeOrDash(a.AckDue)}, {"resolve due", timeOrDash(a.ResolveDue)},
				{"overdue", yesNo(a.Overdue(time.Now()))},
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

func alertsActionCommand(c *apiClient, asJSON *bool, kind alerts.ActionKind) *cobra.Command {
	var body struct {
		Unit string `json:"unit,omitempty"`
		Note string `json:"note,omitempty"`
	}
	var version uint64
	cmd := &cobra.Command{
		Use: string(kind) + " ID",
		Short: map[alerts.ActionKind]string{
			alerts.ActionAck:      "Sign for an alert (new or reopened -> acknowledged)",
			alerts.ActionDispatch: "Dispatch an alert to a unit (or reassign it)",
			alerts.ActionResolve:  "Mark an alert's work done (acknowledged or dispatched -> resolved)",
			alerts.ActionClose:    "Close a resolved alert after verifying it",
			alerts.ActionReopen:   "Reopen a resolved or closed alert",
			alerts.ActionComment:  "Add a note (--note) to an alert's timeline",
		}[kind],
		Long: `Without --version, the alert's current version is fetched first and the action
applies to what the server holds now; with --version, the action fails with a
conflict when someone changed the alert since you saw that version.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/api/v1/alerts/" + url.PathEscape(args[0])
			var a alerts.Alert
			if err := c.act(cmd.Context(), path, string(kind), version, body, &a); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(cmd.OutOrStdout(), a)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s, version %d\n", a.ID, a.Status, a.Version)
			return nil
		},
	}
	cmd.Flags().Uint64Var(&version, "version", 0, "the alert version you saw; default: the current one")
	cmd.Flags().StringVar(&body.Note, "note", "", "a note for the timeline")
	if kind == alerts.ActionDispatch {
		cmd.Flags().StringVar(&body.Unit, "unit", "", "the unit to dispatch to, a code of the units table (gridwatch units import); default: the routed unit")
	}
	return cmd
}

// act posts an action to path/kind under If-Match: version, or the
// current version of the thing at path (its ETag) when version is 0.
func (c *apiClient) act(ctx context.Context, path, kind string, version uint64, body, out any) error {
	if version == 0 {
		h, err := c.do(ctx, http.MethodGet, path, nil, nil, nil)
		if err != nil {
			return err
		}
		if version, err = strconv.ParseUint(strings.Trim(h.Get("ETag"), `"`), 10, 64); err != nil {
			return fmt.Errorf("%s: the server sent no version (ETag %q)", path, h.Get("ETag"))
		}
	}
	h := http.Header{"If-Match": {`"` + strconv.FormatUint(version, 10) + `"`}}
	_, err := c.do(ctx, http.MethodPost, path+"/"+kind, h, body, out)
	return err
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func timeOrDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}
