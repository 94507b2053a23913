package main

// The HTTP API client the admin commands (alerts, cases, units, ...) share.

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

// listFilter is a flag of a list command, passed on as the query parameter
// of its name.
type listFilter struct{ name, help string }

// listCommand is the list subcommand of the API collection at path: each
// filter is a flag passed on as its query parameter, with --limit. The page
// P is printed as JSON with --json, else by table, which writes the
// header and a row per item to a tabwriter, followed by the cursor of the
// next page, which table returns.
func listCommand[P any](c *apiClient, asJSON *bool, short, path string, filters []listFilter, table func(w io.Writer, page *P) (next string)) *cobra.Command {
	values := make([]string, len(filters))
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: short,
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
			var page P
			if _, err := c.do(cmd.Context(), http.MethodGet, path+"?"+q.Encode(), nil, nil, &page); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(cmd.OutOrStdout(), page)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			next := table(tw, &page)
			if err := tw.Flush(); err != nil {
				return err
			}
			if next != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "more: --cursor %s\n", next)
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
