package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/gridwatch/gridwatch/cases"
)

func casesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cases",
		Short: "List, show and act on cases, and import hotline tickets, through a server's API",
		Long: `List, show and act on cases (案卷) through the HTTP API of a running server, and
import 12345 hotline tickets from CSV. The token (--token or GRIDWATCH_TOKEN) decides
what you see and may do.`,
	}
	c := apiFlags(cmd)
	var asJSON bool
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print the API's JSON instead of a table")
	cmd.AddCommand(casesListCommand(c, &asJSON), casesShowCommand(c, &asJSON), casesActCommand(c, &asJSON), casesImportCommand(c))
	return cmd
}

func casesListCommand(c *apiClient, asJSON *bool) *cobra.Command {
	filters := []listFilter{
		{"status", "statuses, comma-separated: received, registered, dispatched, handling, suspended, handled, verified, closed, voided"},
		{"source", "sources, comma-separated: alert, camera, patrol, hotline, operator"},
		{"category", "category code"},
		{"unit", "unit code"},
		{"grid", "grid code: cases in it or below it"},
		{"overdue", "true: only cases that missed a deadline; false: only the others"},
		{"from", "received at or after: RFC 3339 or epoch ms"},
		{"to", "received before: RFC 3339 or epoch ms"},
		{"cursor", "continue after a previous page (its next cursor)"},
	}
	return listCommand(c, asJSON, "List cases, newest received first", "/api/v1/cases", filters, func(w io.Writer, page *cases.Page) string {
		fmt.Fprintln(w, "ID\tVERSION\tSTATUS\tSOURCE\tCATEGORY\tGRID\tUNIT\tRECEIVED\tOVERDUE")
		for _, k := range page.Cases {
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Version, k.Status, k.Source, dash(k.Category),
				dash(k.Grid), dash(k.Unit), timeOrDash(k.Received), dash(strings.Join(k.Overdue, ",")))
		}
		return page.Next
	})
}

// caseWithTimeline is the answer of GET /api/v1/cases/{id}.
type caseWithTimeline struct {
	cases.Case
	Timeline []cases.Event `json:"timeline"`
}

func casesShowCommand(c *apiClient, asJSON *bool) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a case and its timeline",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var k caseWithTimeline
			if _, err := c.do(cmd.Context(), http.MethodGet, "/api/v1/cases/"+url.PathEscape(args[0]), nil, nil, &k); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(cmd.OutOrStdout(), k)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			for _, row := range [][2]string{
				{"id", k.ID}, {"version", strconv.FormatUint(uint64(k.Version), 10)}, {"status", string(k.Status)},
				{"source", string(k.Source)}, {"reporter", dash(k.Reporter)}, {"category", dash(k.Category)},
				{"description", dash(k.Description)}, {"address", dash(k.Address)}, {"grid", dash(k.Grid)}, {"unit", dash(k.Unit)},
				{"received", timeOrDash(k.Received)}, {"sign due", timeOrDash(k.SignDue)}, {"handle due", timeOrDash(k.HandleDue)},
				{"close due", timeOrDash(k.CloseDue)}, {"overdue", dash(strings.Join(k.Overdue, ","))}, {"supervised", yesNo(k.Supervised)},
			} {
				fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
			}
			fmt.Fprintln(tw, "\nTIME\tSEQ\tACTOR\tROLE\tEVENT\tFROM\tTO\tUNIT\tDUE\tNOTE")
			for _, e := range k.Timeline {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", timeOrDash(e.TS), e.Seq, e.Actor, e.Role, e.Kind,
					dash(string(e.From)), dash(string(e.To)), dash(e.Unit), timeOrDash(e.Due), e.Note)
			}
			return tw.Flush()
		},
	}
}

// caseAction is the body of a case action, as the CLI sends it.
type caseAction struct {
	Note         string       `json:"note,omitempty"`
	Evidence     []string     `json:"evidence,omitempty"`
	Unit         string       `json:"unit,omitempty"`
	Into         string       `json:"into,omitempty"`
	Category     string       `json:"category,omitempty"`
	Location     *cases.Point `json:"location,omitempty"`
	Address      string       `json:"address,omitempty"`
	Grid         string       `json:"grid,omitempty"`
	Force        bool         `json:"force,omitempty"`
	Extend       string       `json:"extend,omitempty"`
	Satisfaction uint8        `json:"satisfaction,omitempty"`
}

func casesActCommand(c *apiClient, asJSON *bool) *cobra.Command {
	var body caseAction
	var version uint64
	var lat, lon float64
	var kinds []string
	for _, k := range cases.Actions() {
		kinds = append(kinds, string(k))
	}
	cmd := &cobra.Command{
		Use:   "act ID ACTION",
		Short: "Take an action on a case: " + strings.Join(kinds, ", "),
		Long: `Take an action of the case loop (see the README's table of who may take which).
Without --version, the case's current version is fetched first and the action
applies to what the server holds now; with --version, the action fails with a
conflict when someone changed the case since you saw that version.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !strings.Contains(","+strings.Join(kinds, ",")+",", ","+args[1]+",") {
				return fmt.Errorf("unknown action %q: want one of %s", args[1], strings.Join(kinds, ", "))
			}
			if cmd.Flags().Changed("lat") || cmd.Flags().Changed("lon") {
				body.Location = &cases.Point{Lat: lat, Lon: lon}
			}
			var k cases.Case
			if err := c.act(cmd.Context(), "/api/v1/cases/"+url.PathEscape(args[0]), args[1], version, body, &k); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(cmd.OutOrStdout(), k)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s, version %d\n", k.ID, k.Status, k.Version)
			return nil
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&version, "version", 0, "the case version you saw; default: the current one")
	f.StringVar(&body.Note, "note", "", "a note, or the reason void, return, the rejections and verify_fail need")
	f.StringSliceVar(&body.Evidence, "evidence", nil, "photo hashes (sha256:…) uploaded before, comma-separated")
	f.StringVar(&body.Unit, "unit", "", "dispatch: the unit; default: the routed one")
	f.StringVar(&body.Into, "into", "", "merge: the case to merge into")
	f.StringVar(&body.Category, "category", "", "register: the category code")
	f.Float64Var(&lat, "lat", 0, "register: the latitude")
	f.Float64Var(&lon, "lon", 0, "register: the longitude")
	f.StringVar(&body.Address, "address", "", "register: the address")
	f.StringVar(&body.Grid, "grid", "", "register: the grid code; default: found from the location")
	f.BoolVar(&body.Force, "force", false, "register despite possible duplicates")
	f.StringVar(&body.Extend, "extend", "", `extend_request: how much, such as "2 working_days"`)
	f.Uint8Var(&body.Satisfaction, "satisfaction", 0, "evaluate: 1..5")
	return cmd
}

// ticketColumns are the columns of a hotline ticket CSV; origin and
// description are required.
var ticketColumns = []string{"origin", "description", "category", "address", "grid", "lat", "lon", "reporter"}

// ticketRequest is one ticket as POST /api/v1/cases takes it.
type ticketRequest struct {
	Source      cases.Source `json:"source"`
	Origin      string       `json:"origin"`
	Description string       `json:"description"`
	Category    string       `json:"category,omitempty"`
	Address     string       `json:"address,omitempty"`
	Grid        string       `json:"grid,omitempty"`
	Location    *cases.Point `json:"location,omitempty"`
	Reporter    string       `json:"reporter,omitempty"`
}

// readTicket reads one CSV record of the columns at col.
func readTicket(rec []string, col map[string]int) (ticketRequest, error) {
	get := func(name string) string {
		if i, ok := col[name]; ok && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	t := ticketRequest{Source: cases.SourceHotline, Origin: get("origin"), Description: get("description"), Category: get("category"),
		Address: get("address"), Grid: get("grid"), Reporter: get("reporter")}
	if t.Origin == "" || t.Description == "" {
		return t, errors.New("origin and description are required")
	}
	if lat, lon := get("lat"), get("lon"); lat != "" || lon != "" {
		la, err1 := strconv.ParseFloat(lat, 64)
		lo, err2 := strconv.ParseFloat(lon, 64)
		if err1 != nil || err2 != nil {
			return t, fmt.Errorf("lat %q, lon %q: both must be numbers", lat, lon)
		}
		t.Location = &cases.Point{Lat: la, Lon: lo}
	}
	return t, nil
}

func casesImportCommand(c *apiClient) *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE.csv",
		Short: "Import 12345 hotline tickets from CSV, one case each",
		Long: `Import hotline tickets from a CSV file with a header row: origin (the ticket
number) and description required; category, address, grid, lat, lon and reporter
optional. Each becomes a case of source hotline (operator or dispatcher token); a
ticket imported again returns its case instead of a new one, so a rerun after a
failure is safe. Every rejected row is printed with its line and reason, and the
command exits non-zero when any was rejected.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			r := csv.NewReader(f)
			r.FieldsPerRecord = -1
			header, err := r.Read()
			if err != nil {
				return fmt.Errorf("%s: header: %w", args[0], err)
			}
			col := map[string]int{}
			for i, h := range header {
				col[strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))] = i
			}
			for _, need := range ticketColumns[:2] {
				if _, ok := col[need]; !ok {
					return fmt.Errorf("%s: the header lacks %q (columns: %s)", args[0], need, strings.Join(ticketColumns, ","))
				}
			}
			out := cmd.OutOrStdout()
			var created, existing, rejected int
			for {
				rec, err := r.Read()
				if errors.Is(err, io.EOF) {
					break
				}
				line, _ := r.FieldPos(0)
				if err != nil {
					rejected++
					fmt.Fprintf(out, "line %d: %v\n", line, err)
					continue
				}
				t, err := readTicket(rec, col)
				if err == nil {
					var h http.Header
					if h, err = c.do(cmd.Context(), http.MethodPost, "/api/v1/cases", nil, t, nil); err == nil {
						if h.Get("Location") != "" {
							created++
						} else {
							existing++
						}
						continue
					}
				}
				rejected++
				fmt.Fprintf(out, "line %d (%s): %v\n", line, dash(t.Origin), err)
			}
			fmt.Fprintf(out, "%d cases opened, %d tickets already held, %d rejected\n", created, existing, rejected)
			if rejected > 0 {
				return fmt.Errorf("%d tickets rejected", rejected)
			}
			return nil
		},
	}
}
