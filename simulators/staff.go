package simulators

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gridwatch/gridwatch/cases"
)

// Staff defaults.
const (
	DefaultStaffEvery = 5 * time.Second
	DefaultStaffKeep  = 2
)

// Staff is the city's staff working the case loop through gridwatch's
// HTTP API, as people at their consoles would: at its start a grid
// manager's patrol report (left received) and an operator's case
// (registered); then, every Every, the oldest case of each step moves one
// step on while more than Keep wait at it: dispatched cases are signed
// for, handled, verified, closed and evaluated. So a demo shows cases of
// every step, and rankings with something to rank.
type Staff struct {
	// URL is gridwatch's HTTP base, such as http://127.0.0.1:8080. Required.
	URL string
	// Token is the bearer token, of a role that may take every action
	// (admin); empty for an API open to this host.
	Token string
	// At is where the staff's own reports are. Required.
	At cases.Point
	// Category is the category of those reports. It defaults to E0101.
	Category string
	// Every is how often a step is taken. It defaults to 5 s.
	Every time.Duration
	// Keep is how many cases stay waiting at each step. It defaults to 2.
	Keep int
	// Client defaults to an http.Client with a 10 s timeout.
	Client *http.Client
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// staffSteps are the moves the staff makes, from the status a case waits
// in: the action and what it sends besides the version.
var staffSteps = []struct {
	from cases.Status
	kind cases.EventKind
	body map[string]any
}{
	{cases.StatusDispatched, cases.EventSign, nil},
	{cases.StatusHandling, cases.EventHandle, map[string]any{"note": "handled on site"}},
	{cases.StatusHandled, cases.EventVerifyPass, map[string]any{"note": "checked on site"}},
	{cases.StatusVerified, cases.EventClose, nil},
}

// Run works until ctx ends; it returns ctx's error. A refused action (a
// conflict with another client, say) is logged and tried again later.
func (s *Staff) Run(ctx context.Context) error {
	if s.Every <= 0 {
		s.Every = DefaultStaffEvery
	}
	if s.Keep <= 0 {
		s.Keep = DefaultStaffKeep
	}
	if s.Category == "" {
		s.Category = "E0101"
	}
	if s.Client == nil {
		s.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	s.reports(ctx)
	t := time.NewTicker(s.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if err := s.step(ctx); err != nil && ctx.Err() == nil {
				s.Logger.Info("demo staff", "err", err)
			}
		}
	}
}

// reports hands in the patrol report and the operator's case, and
// registers the latter.
func (s *Staff) reports(ctx context.Context) {
	for _, r := range []map[string]any{
		{"source": "patrol", "category": s.Category, "description": "巡查上报：井盖破损 · patrol: broken manhole cover", "location": s.At},
		{"source": "operator", "category": s.Category, "description": "值班员受理：路面积水 · operator: water on the road", "location": s.At, "address": "demo"},
	} {
		var c cases.Case
		if err := s.call(ctx, http.MethodPost, "/api/v1/cases", r, &c); err != nil {
			s.Logger.Info("demo staff report", "err", err)
			continue
		}
		if r["source"] == "operator" {
			if err := s.act(ctx, c, cases.EventRegister, map[string]any{"force": true}); err != nil {
				s.Logger.Info("demo staff register", "case", c.ID, "err", err)
			}
		}
	}
}

// step moves the oldest case of each step on, and evaluates the closed
// cases not evaluated yet.
func (s *Staff) step(ctx context.Context) error {
	var page cases.Page
	if err := s.call(ctx, http.MethodGet, "/api/v1/cases?limit=1000&status=dispatched,handling,handled,verified,closed", nil, &page); err != nil {
		return err
	}
	at := map[cases.Status][]cases.Case{}
	for _, c := range page.Cases {
		at[c.Status] = append(at[c.Status], c)
	}
	for _, st := range staffSteps {
		list := at[st.from]
		if len(list) <= s.Keep {
			continue
		}
		oldest := slices.MinFunc(list, func(a, b cases.Case) int { return a.Received.Compare(b.Received) })
		if err := s.act(ctx, oldest, st.kind, st.body); err != nil {
			s.Logger.Info("demo staff", "case", oldest.ID, "action", st.kind, "err", err)
		}
	}
	for _, c := range at[cases.StatusClosed] {
		if c.Satisfaction == 0 {
			h := fnv.New32a()
			h.Write([]byte(c.ID))
			if err := s.act(ctx, c, cases.EventEvaluate, map[string]any{"satisfaction": 3 + h.Sum32()%3}); err != nil {
				s.Logger.Info("demo staff evaluate", "case", c.ID, "err", err)
			}
		}
	}
	return nil
}

// act takes an action on c at the version it was listed with.
func (s *Staff) act(ctx context.Context, c cases.Case, kind cases.EventKind, body map[string]any) error {
	req := map[string]any{"version": c.Version}
	for k, v := range body {
		req[k] = v
	}
	return s.call(ctx, http.MethodPost, "/api/v1/cases/"+c.ID+"/"+string(kind), req, nil)
}

// call sends a request with body as JSON and decodes the answer into out
// (when set); an answer other than 2xx is an error naming it.
func (s *Staff) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(s.URL, "/")+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if s.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.Token)
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(msg))
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
