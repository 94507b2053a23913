package api

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/gridwatch/gridwatch/alerts/notify"
	"github.com/gridwatch/gridwatch/cases"
)

// Cases is what the case endpoints need from the case loop;
// *cases.Service is one.
type Cases interface {
	List(f cases.Filter) (cases.Page, error)
	All(f cases.Filter) (iter.Seq[cases.Case], error)
	Get(ctx context.Context, id string) (cases.Case, []cases.Event, error)
	Report(ctx context.Context, r cases.Report) (cases.Case, bool, error)
	Act(ctx context.Context, a cases.Action) (cases.Case, error)
	Subscribe(buffer int) *cases.Subscription
}

// caseRoutes registers the case endpoints when a case loop is configured.
// The lifecycle (cases.May) decides which role may take which action on
// which case; the routes only keep out the roles that may take none.
func (s *Server) caseRoutes(rt, public *routes) {
	if s.Cases == nil {
		return
	}
	rt.Require(RoleViewer, "GET /api/v1/cases", s.listCases)
	rt.Require(RoleReporter, "POST /api/v1/cases", s.reportCase)
	rt.Require(RoleViewer, "GET /api/v1/cases/stream", s.streamCases)
	rt.Require(RoleViewer, "GET /api/v1/cases/export.csv", s.exportCases)
	rt.Require(RoleViewer, "GET /api/v1/cases/{id}", s.getCase)
	if s.CaseCategories != nil {
		rt.Require(RoleViewer, "GET /api/v1/cases/categories", s.listCaseCategories)
	}
	for _, kind := range cases.Actions() {
		rt.Require(RoleReporter, "POST /api/v1/cases/{id}/"+string(kind), s.actOnCase(kind))
	}
	if s.Photos != nil {
		rt.Require(RoleReporter, "POST /api/v1/cases/photos", s.uploadPhoto)
		rt.Require(RoleViewer, "GET /api/v1/cases/{id}/photos/{hash}", s.getPhoto)
	}
	if len(s.HotlineSecret) > 0 {
		public.Handle("POST /api/v1/cases/hotline", http.HandlerFunc(s.hotlineTicket))
	}
}

// caseActor is the principal as an actor of the case loop.
func caseActor(p *principal) cases.Actor {
	return cases.Actor{Name: p.name, Role: cases.Role(p.role.String()), Unit: p.unit}
}

// seesCase reports whether the principal may see c: in its grid scope, and
// for a unit token dispatched to its unit.
func (p *principal) seesCase(c *cases.Case) bool {
	return p.sees(c.Grid) && (p.role != RoleUnit || c.Unit == p.unit)
}

// caseFilter reads the list filters of a request, bounded to what the
// principal sees.
func (s *Server) caseFilter(r *http.Request) (cases.Filter, error) {
	q := r.URL.Query()
	p := principalFrom(r.Context())
	f := cases.Filter{
		Category: q.Get("category"), Unit: q.Get("unit"), Grid: q.Get("grid"), Cursor: q.Get("cursor"),
		InScope: s.InScope, Visible: p.seesCase,
	}
	for _, v := range queryList(q["status"]) {
		f.Status = append(f.Status, cases.Status(v))
	}
	for _, v := range queryList(q["source"]) {
		f.Source = append(f.Source, cases.Source(v))
	}
	if v := q.Get("overdue"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return f, fmt.Errorf("'overdue' must be true or false, not %q", v)
		}
		f.Overdue = &b
	}
	var err error
	if f.From, err = parseTime(q.Get("from"), f.From); err != nil {
		return f, fmt.Errorf("'from': %w", err)
	}
	if f.To, err = parseTime(q.Get("to"), f.To); err != nil {
		return f, fmt.Errorf("'to': %w", err)
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return f, errors.New("'from' must be before 'to'")
	}
	if v := q.Get("limit"); v != "" {
		if f.Limit, err = strconv.Atoi(v); err != nil || f.Limit <= 0 || f.Limit > cases.MaxListLimit {
			return f, fmt.Errorf("'limit' must be 1..%d, not %q", cases.MaxListLimit, v)
		}
	}
	return f, nil
}

// listCases serves GET /api/v1/cases: one page of the cases the filters
// select, newest received first, with the cursor of the next page.
func (s *Server) listCases(w http.ResponseWriter, r *http.Request) {
	f, err := s.caseFilter(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	page, err := s.Cases.List(f)
	if err != nil {
		s.caseError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// caseJSON is a case with its timeline.
type caseJSON struct {
	cases.Case
	Timeline []cases.Event `json:"timeline"`
}

// visibleCase returns the case with its timeline, or answers 404 when it
// does not exist or the principal may not see it.
func (s *Server) visibleCase(w http.ResponseWriter, r *http.Request) (cases.Case, []cases.Event, bool) {
	id := r.PathValue("id")
	c, events, err := s.Cases.Get(r.Context(), id)
	if err == nil && !principalFrom(r.Context()).seesCase(&c) {
		err = fmt.Errorf("%w: %q", cases.ErrNotFound, id)
	}
	if err != nil {
		s.caseError(w, r, err)
		return cases.Case{}, nil, false
	}
	return c, events, true
}

// getCase serves GET /api/v1/cases/{id}: the case and its timeline, oldest
// event first. The ETag is the case's version, for If-Match.
func (s *Server) getCase(w http.ResponseWriter, r *http.Request) {
	c, events, ok := s.visibleCase(w, r)
	if !ok {
		return
	}
	if events == nil {
		events = []cases.Event{}
	}
	w.Header().Set("ETag", etag(uint64(c.Version)))
	writeJSON(w, http.StatusOK, caseJSON{Case: c, Timeline: events})
}

// reportRequest is the body of POST /api/v1/cases.
type reportRequest struct {
	// Source defaults to patrol for a reporter and operator for the
	// command centre.
	Source      cases.Source `json:"source"`
	Category    string       `json:"category"`
	Description string       `json:"description"`
	Location    *cases.Point `json:"location"`
	Address     string       `json:"address"`
	Grid        string       `json:"grid"`
	// Origin and Reporter are a hotline ticket's number and caller.
	Origin   string   `json:"origin"`
	Reporter string   `json:"reporter"`
	Evidence []string `json:"evidence"`
}

// report turns the request into a report by p.
func (req *reportRequest) report(p *principal) cases.Report {
	src := req.Source
	if src == "" {
		src = cases.SourceOperator
		if p.role <= RoleReporter {
			src = cases.SourcePatrol
		}
	}
	return cases.Report{
		Source: src, Actor: caseActor(p), Reporter: req.Reporter, Origin: req.Origin, Category: req.Category,
		Description: req.Description, Location: req.Location, Address: req.Address, Grid: req.Grid, Evidence: req.Evidence,
		Within: p.sees,
	}
}

// reportCase serves POST /api/v1/cases: a patrol report, an operator's
// case or a hotline ticket. 201 with the new case; 200 with the case a
// ticket of the same origin already opened.
func (s *Server) reportCase(w http.ResponseWriter, r *http.Request) {
	var req reportRequest
	if !s.readJSON(w, r, &req) {
		s.actions.refused.WithLabelValues("bad_body").Inc()
		return
	}
	p := principalFrom(r.Context())
	if req.Grid != "" && !p.sees(req.Grid) {
		writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("grid %q is outside this token's scope", req.Grid))
		return
	}
	if !s.photosKnown(w, req.Evidence) {
		return
	}
	s.answerReport(w, r, req.report(p))
}

// answerReport hands a report to the case loop and answers with the case.
func (s *Server) answerReport(w http.ResponseWriter, r *http.Request, rep cases.Report) {
	c, created, err := s.Cases.Report(r.Context(), rep)
	if err != nil {
		s.caseError(w, r, err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
		w.Header().Set("Location", "/api/v1/cases/"+c.ID)
	}
	w.Header().Set("ETag", etag(uint64(c.Version)))
	writeJSON(w, code, c)
}

// photosKnown answers 422 unless every hash names a stored photo.
func (s *Server) photosKnown(w http.ResponseWriter, hashes []string) bool {
	for _, h := range hashes {
		if s.Photos == nil || !s.Photos.Has(h) {
			s.actions.refused.WithLabelValues("unknown_evidence").Inc()
			writeError(w, http.StatusUnprocessableEntity, "invalid_action",
				fmt.Sprintf("evidence %q is no uploaded photo: POST it to /api/v1/cases/photos first", h))
			return false
		}
	}
	return true
}

// caseActionRequest is the body of an action; each action reads the
// fields it needs. Version may instead come in an If-Match header.
type caseActionRequest struct {
	Version      uint32       `json:"version"`
	Note         string       `json:"note"`
	Evidence     []string     `json:"evidence"`
	Unit         string       `json:"unit"`
	Into         string       `json:"into"`
	Category     string       `json:"category"`
	Location     *cases.Point `json:"location"`
	Address      string       `json:"address"`
	Grid         string       `json:"grid"`
	Force        bool         `json:"force"`
	Extend       *cases.Limit `json:"extend"`
	Satisfaction uint8        `json:"satisfaction"`
}

// actOnCase serves POST /api/v1/cases/{id}/{kind}. The version the actor
// saw is required, in the body or as If-Match; a stale one gets 409.
func (s *Server) actOnCase(kind cases.EventKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req caseActionRequest
		if r.ContentLength != 0 && !s.readJSON(w, r, &req) {
			s.actions.refused.WithLabelValues("bad_body").Inc()
			return
		}
		version := uint64(req.Version)
		if !s.ifMatch(w, r, &version, "case") {
			return
		}
		cur, _, ok := s.visibleCase(w, r)
		if !ok {
			return
		}
		if version == 0 {
			s.refuseAction(w, http.StatusPreconditionRequired, "version_required", "send the case version you saw, as If-Match or the body's \"version\"")
			return
		}
		if version > math.MaxUint32 {
			// No case gets there: it is stale.
			s.caseError(w, r, &cases.ConflictError{ID: cur.ID, Given: math.MaxUint32, Current: cur.Version})
			return
		}
		req.Version = uint32(version)
		if !s.photosKnown(w, req.Evidence) {
			return
		}
		if kind == cases.EventDispatch && req.Unit != "" && !s.knownUnit(w, req.Unit) {
			return
		}
		p := principalFrom(r.Context())
		if req.Grid != "" && !p.sees(req.Grid) {
			writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("grid %q is outside this token's scope", req.Grid))
			return
		}
		c, err := s.Cases.Act(r.Context(), cases.Action{
			Case: r.PathValue("id"), Kind: kind, Version: req.Version, Actor: caseActor(p),
			Note: req.Note, Evidence: req.Evidence, Unit: req.Unit, Into: req.Into, Category: req.Category,
			Location: req.Location, Address: req.Address, Grid: req.Grid, Force: req.Force, Extend: req.Extend,
			Satisfaction: req.Satisfaction, Within: p.sees,
		})
		if err != nil {
			s.caseError(w, r, err)
			return
		}
		w.Header().Set("ETag", etag(uint64(c.Version)))
		writeJSON(w, http.StatusOK, c)
	}
}

// streamCases serves GET /api/v1/cases/stream?grid=: Server-Sent Events,
// one per stored event of a case the principal sees (under grid, when
// given): "id: {case}/{seq}", "event: {kind}", "data: {"event", "case"}".
// See serveStream for heartbeats, overflow and slow clients.
func (s *Server) streamCases(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	grid := r.URL.Query().Get("grid")
	serveStream(s, w, r, "case", func() (<-chan cases.Change, func() uint64, func()) {
		sub := s.Cases.Subscribe(s.StreamBuffer)
		return sub.C, sub.Dropped, sub.Close
	}, func(c cases.Change) bool {
		return p.seesCase(&c.Case) && (grid == "" || s.InScope(grid, c.Case.Grid))
	}, func(w io.Writer, c cases.Change) error {
		data, err := json.Marshal(c)
		if err != nil {
			return fmt.Errorf("encode case change: %w", err)
		}
		_, err = fmt.Fprintf(w, "id: %s/%d\nevent: %s\ndata: %s\n\n", c.Event.CaseID, c.Event.Seq, c.Event.Kind, data)
		return err
	})
}

// caseExportColumns is the header of the case CSV export.
var caseExportColumns = []string{
	"id", "version", "source", "status", "category", "grid", "unit", "reporter", "origin", "device", "address",
	"lat", "lon", "description", "received", "sign_due", "handle_due", "close_due", "closed", "overdue",
	"supervised", "escalated", "reworks", "returns", "merged_into", "satisfaction", "updated",
}

// exportCases serves GET /api/v1/cases/export.csv: every case the list
// filters select (cursor and limit aside), in the list's order.
func (s *Server) exportCases(w http.ResponseWriter, r *http.Request) {
	f, err := s.caseFilter(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	f.Cursor = ""
	all, err := s.Cases.All(f)
	if err != nil {
		s.caseError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="cases.csv"`)
	out := csv.NewWriter(w)
	_ = out.Write(caseExportColumns)
	for c := range all {
		lat, lon := "", ""
		if c.Location != nil {
			lat, lon = strconv.FormatFloat(c.Location.Lat, 'f', -1, 64), strconv.FormatFloat(c.Location.Lon, 'f', -1, 64)
		}
		row := []string{
			c.ID, strconv.FormatUint(uint64(c.Version), 10), string(c.Source), string(c.Status), cell(c.Category), cell(c.Grid),
			cell(c.Unit), cell(c.Reporter), cell(c.Origin), cell(c.Device), cell(c.Address), lat, lon, cell(c.Description),
			csvTime(c.Received), csvTime(c.SignDue), csvTime(c.HandleDue), csvTime(c.CloseDue), csvTime(c.Closed),
			strings.Join(c.Overdue, " "), strconv.FormatBool(c.Supervised), strconv.FormatBool(c.Escalated),
			strconv.Itoa(int(c.Reworks)), strconv.Itoa(int(c.Returns)), c.MergedInto, strconv.Itoa(int(c.Satisfaction)),
			csvTime(c.Updated),
		}
		if err := out.Write(row); err != nil {
			return // the client went away
		}
	}
	out.Flush()
}

// uploadPhoto serves POST /api/v1/cases/photos: the body is one JPEG or PNG
// picture (the type is sniffed from the content); the answer is its hash,
// to attach to a report or an action as evidence.
func (s *Server) uploadPhoto(w http.ResponseWriter, r *http.Request) {
	hash, err := s.Photos.Put(r.Body)
	switch {
	case errors.Is(err, cases.ErrPhotoTooLarge):
		s.actions.refused.WithLabelValues("photo_too_large").Inc()
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", err.Error())
	case errors.Is(err, cases.ErrBadPhoto):
		s.actions.refused.WithLabelValues("bad_photo").Inc()
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", err.Error())
	case err != nil:
		s.internalError(w, r, err)
	default:
		writeJSON(w, http.StatusCreated, map[string]string{"hash": hash})
	}
}

// getPhoto serves GET /api/v1/cases/{id}/photos/{hash}: a photo of a case
// the principal sees, and only one attached to that case.
func (s *Server) getPhoto(w http.ResponseWriter, r *http.Request) {
	c, _, ok := s.visibleCase(w, r)
	if !ok {
		return
	}
	hash := r.PathValue("hash")
	attached := false
	for _, h := range c.Evidence {
		attached = attached || h == hash
	}
	f, typ, err := s.Photos.Open(hash)
	if !attached || errors.Is(err, cases.ErrNoPhoto) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("case %s has no photo %q", c.ID, hash))
		return
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", typ)
	w.Header().Set("Cache-Control", "private, max-age=86400, immutable")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = io.Copy(w, f)
}

// hotlineTicket serves POST /api/v1/cases/hotline: the 12345 hotline
// system's webhook. It carries no bearer token: the body must be signed,
// X-Gridwatch-Signature being "sha256=" and the hex HMAC-SHA256 of the body
// under cases.hotline_secret (the scheme of gridwatch's own webhooks). The
// body is a report with source hotline; origin (the ticket number) makes a
// resent ticket the same case.
func (s *Server) hotlineTicket(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the body may hold at most %d bytes", MaxBodyBytes))
		return
	}
	if !notify.Verify(s.HotlineSecret, body, r.Header.Get(notify.SignatureHeader)) {
		s.hotlineRefused.Inc()
		writeError(w, http.StatusUnauthorized, "bad_signature", "the body's "+notify.SignatureHeader+" is missing or wrong")
		return
	}
	var req reportRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "body: "+err.Error())
		return
	}
	if req.Origin == "" || len(req.Evidence) > 0 || (req.Source != "" && req.Source != cases.SourceHotline) {
		writeError(w, http.StatusBadRequest, "bad_request", "a hotline ticket needs its number as origin, and takes no other source and no evidence")
		return
	}
	req.Source = cases.SourceHotline
	hotline := &principal{name: "hotline", role: RoleOperator}
	rep := req.report(hotline)
	rep.Actor = cases.Actor{Name: "hotline", Role: cases.RoleSystem}
	s.answerReport(w, r, rep)
}

// caseError answers with the status a case loop error calls for.
func (s *Server) caseError(w http.ResponseWriter, r *http.Request, err error) {
	var conflict *cases.ConflictError
	switch {
	case errors.As(err, &conflict):
		w.Header().Set("ETag", etag(uint64(conflict.Current)))
		writeError(w, http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, cases.ErrDuplicate):
		// The message names the candidates.
		writeError(w, http.StatusUnprocessableEntity, "duplicate", err.Error())
	case errors.Is(err, cases.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("case %q not found", r.PathValue("id")))
	case errors.Is(err, cases.ErrForbidden):
		writeError(w, http.StatusForbidden, "forbidden", err.Error())
	case errors.Is(err, cases.ErrInvalidAction):
		writeError(w, http.StatusUnprocessableEntity, "invalid_action", err.Error())
	case errors.Is(err, cases.ErrBadFilter):
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, cases.ErrNotSaved):
		s.Logger.Warn("case action not saved", "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "not_saved",
			"the action was not saved (the case store is unavailable) and nothing changed: retry it")
	case errors.Is(err, cases.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the case loop is shutting down")
	default:
		s.internalError(w, r, err)
	}
}

// listCaseCategories serves GET /api/v1/cases/categories: the case
// categories in table order, for report forms and their names.
func (s *Server) listCaseCategories(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"categories": s.CaseCategories()})
}
