package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gridwatch/gridwatch/cases"
)

// Cases are stored as two tables: case_events, the trace (one row per
// event, never changed), and cases, one row per save of a case with its
// whole state as a JSON document beside the columns a query filters on
// (ReplacingMergeTree by revision: the latest save wins). A save writes
// the events first: a case row never names a version whose event is
// missing. An event whose case row failed to save (the action was
// refused) has a Seq above the case's version; it is not loaded, and the
// next action's event, taking the same Seq, replaces it.

// SaveCases stores events, then the rows of cs under revision: a save
// that fails before its case rows are stored is a refused action, whose
// event the next action's replaces. The case_summaries rows of the cases
// of events stored are recomputed after it returns (see summarizer): the
// statistics read them once they are.
func (db *DB) SaveCases(ctx context.Context, cs []cases.Case, revision uint64, events []cases.Event) error {
	if err := db.saveCaseEvents(ctx, events); err != nil {
		return err
	}
	firsts := make(map[string]time.Time, len(cs))
	for _, c := range cs {
		firsts[c.ID] = c.Received
	}
	touched := make(map[string]time.Time, len(events))
	for _, ev := range events {
		touched[ev.CaseID] = firsts[ev.CaseID]
	}
	db.summarizer().add(touched)
	if len(cs) == 0 {
		return nil
	}
	n := len(cs)
	var (
		ids, stats, srcs, cats, grids, units, docs = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		revs                                       = make([]uint64, n)
		vers                                       = make([]uint32, n)
		received, updated                          = make([]int64, n), make([]int64, n)
		overdue                                    = make([]uint8, n)
	)
	for i := range cs {
		c := &cs[i]
		doc, err := json.Marshal(c)
		if err != nil {
			return fmt.Errorf("storage: encode case %s: %w", c.ID, err)
		}
		ids[i], revs[i], vers[i], docs[i] = c.ID, revision, c.Version, string(doc)
		stats[i], srcs[i], cats[i], grids[i], units[i] = string(c.Status), string(c.Source), c.Category, c.Grid, c.Unit
		received[i], updated[i], overdue[i] = toMs(c.Received), toMs(c.Updated), flag(c.IsOverdue())
	}
	query := "INSERT INTO " + quoteTable(db.opts.Database, "cases") +
		" (id, revision, version, status, source, category, grid, unit, received, updated, overdue, doc)"
	if err := insertColumns(ctx, db.conn, query, []any{ids, revs, vers, stats, srcs, cats, grids, units, received, updated, overdue, docs}); err != nil {
		return fmt.Errorf("storage: save %d cases: %w", n, err)
	}
	return nil
}

// saveCaseEvents stores case events.
func (db *DB) saveCaseEvents(ctx context.Context, events []cases.Event) error {
	if len(events) == 0 {
		return nil
	}
	n := len(events)
	str := func() []string { return make([]string, n) }
	var (
		ts, due                               = make([]int64, n), make([]int64, n)
		ids, actors, roles, kinds, froms, tos = str(), str(), str(), str(), str(), str()
		units, grids, cats, srcs, notes       = str(), str(), str(), str(), str()
		seqs                                  = make([]uint32, n)
		evidence                              = make([][]string, n)
		sats                                  = make([]uint8, n)
	)
	for i, ev := range events {
		ts[i], due[i], ids[i], seqs[i] = toMs(ev.TS), toMs(ev.Due), ev.CaseID, ev.Seq
		actors[i], roles[i], kinds[i], froms[i], tos[i] = ev.Actor, ev.Role, string(ev.Kind), string(ev.From), string(ev.To)
		units[i], grids[i], cats[i], srcs[i], notes[i] = ev.Unit, ev.Grid, ev.Category, string(ev.Source), ev.Note
		evidence[i], sats[i] = ev.Evidence, ev.Satisfaction
		if evidence[i] == nil {
			evidence[i] = []string{}
		}
	}
	query := "INSERT INTO " + quoteTable(db.opts.Database, "case_events") +
		" (ts, case_id, seq, actor, role, kind, from_status, to_status, unit, grid, category, source, due, note, evidence, satisfaction)"
	cols := []any{ts, ids, seqs, actors, roles, kinds, froms, tos, units, grids, cats, srcs, due, notes, evidence, sats}
	if err := insertColumns(ctx, db.conn, query, cols); err != nil {
		return fmt.Errorf("storage: save %d case events: %w", n, err)
	}
	return nil
}

// latestCases is the query of the latest row of each case; argMax, not
// FINAL, as LoadAlerts explains.
func (db *DB) latestCases(where string) string {
	return "SELECT id, argMax(doc, revision) AS x_doc FROM " + quoteTable(db.opts.Database, "cases") +
		" " + where + " GROUP BY id"
}

// LoadCases returns the latest row of every case that is open, or was
// last changed at or after closedSince, with their events up to each
// case's version.
func (db *DB) LoadCases(ctx context.Context, closedSince time.Time) ([]cases.Case, []cases.Event, error) {
	query := "SELECT x_doc FROM (SELECT id, argMax(doc, revision) AS x_doc, argMax(status, revision) AS x_status," +
		" argMax(" + db.msExpr("updated") + ", revision) AS x_updated FROM " + quoteTable(db.opts.Database, "cases") +
		" GROUP BY id) WHERE x_status NOT IN ('closed', 'voided') OR x_updated >= ?"
	cs, err := db.scanCases(ctx, query, closedSince.UnixMilli())
	if err != nil {
		return nil, nil, err
	}
	db.healCaseSummaries(cs)
	events, err := db.caseEvents(ctx, cs)
	return cs, events, err
}

// LoadCasesChanged returns the latest row of every case saved (by any node)
// at a revision at or after since, with their events up to each case's
// version.
func (db *DB) LoadCasesChanged(ctx context.Context, since uint64) ([]cases.Case, []cases.Event, error) {
	// GLOBAL IN: on a Distributed table a plain IN would run the subquery
	// on every shard again, which ClickHouse refuses by default.
	changed := "WHERE id GLOBAL IN (SELECT id FROM " + quoteTable(db.opts.Database, "cases") + " WHERE revision >= ?)"
	cs, err := db.scanCases(ctx, "SELECT x_doc FROM ("+db.latestCases(changed)+")", since)
	if err != nil {
		return nil, nil, err
	}
	events, err := db.caseEvents(ctx, cs)
	return cs, events, err
}

// healCaseSummaries asks for the summaries of the cases of cs saved within
// summaryHealWindow of the latest of them: those whose refresh a crash
// just after their save may have lost.
func (db *DB) healCaseSummaries(cs []cases.Case) {
	var latest time.Time
	for _, c := range cs {
		if c.Updated.After(latest) {
			latest = c.Updated
		}
	}
	since := map[string]time.Time{}
	for _, c := range cs {
		if !c.Updated.Before(latest.Add(-summaryHealWindow)) {
			since[c.ID] = c.Received
		}
	}
	db.summarizer().add(since)
}

// LoadCase returns one case and its events, cases.ErrNotFound when none.
func (db *DB) LoadCase(ctx context.Context, id string) (cases.Case, []cases.Event, error) {
	cs, err := db.scanCases(ctx, "SELECT x_doc FROM ("+db.latestCases("WHERE id = ?")+")", id)
	if err != nil {
		return cases.Case{}, nil, err
	}
	if len(cs) == 0 {
		return cases.Case{}, nil, fmt.Errorf("%w: %q", cases.ErrNotFound, id)
	}
	events, err := db.caseEvents(ctx, cs)
	return cs[0], events, err
}

// scanCases runs a query of case documents.
func (db *DB) scanCases(ctx context.Context, query string, args ...any) ([]cases.Case, error) {
	rows, err := db.conn.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: load cases: %w", err)
	}
	defer rows.Close()
	var out []cases.Case
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return nil, fmt.Errorf("storage: load cases: %w", err)
		}
		var c cases.Case
		if err := json.Unmarshal([]byte(doc), &c); err != nil {
			return nil, fmt.Errorf("storage: decode a case: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: load cases: %w", err)
	}
	return out, nil
}

// caseEvents returns the events of cs up to each one's version, one per
// case and Seq (the latest stored, should a refused action have left
// one), ordered by case and Seq.
func (db *DB) caseEvents(ctx context.Context, cs []cases.Case) ([]cases.Event, error) {
	const chunk = 1000
	version := make(map[string]uint32, len(cs))
	for _, c := range cs {
		version[c.ID] = c.Version
	}
	var out []cases.Event
	for start := 0; start < len(cs); start += chunk {
		ids := make([]string, 0, chunk)
		for _, c := range cs[start:min(start+chunk, len(cs))] {
			ids = append(ids, c.ID)
		}
		query := "SELECT " + db.msExpr("ts") + ", case_id, seq, actor, role, kind, from_status, to_status, unit, grid, category, source, " +
			db.msExpr("due") + ", note, evidence, satisfaction FROM " + quoteTable(db.opts.Database, "case_events") +
			" WHERE has(?, case_id) ORDER BY case_id, seq, ts DESC"
		rows, err := db.conn.Query(ctx, query, ids)
		if err != nil {
			return nil, fmt.Errorf("storage: load case events: %w", err)
		}
		var last cases.Event
		for rows.Next() {
			var (
				ev                           cases.Event
				ts, due                      int64
				kind, from, to, source, role string
			)
			if err := rows.Scan(&ts, &ev.CaseID, &ev.Seq, &ev.Actor, &role, &kind, &from, &to, &ev.Unit, &ev.Grid,
				&ev.Category, &source, &due, &ev.Note, &ev.Evidence, &ev.Satisfaction); err != nil {
				rows.Close()
				return nil, fmt.Errorf("storage: load case events: %w", err)
			}
			if ev.Seq > version[ev.CaseID] || (ev.CaseID == last.CaseID && ev.Seq == last.Seq) {
				continue
			}
			ev.TS, ev.Due, ev.Role = fromMs(ts), fromMs(due), role
			ev.Kind, ev.From, ev.To, ev.Source = cases.EventKind(kind), cases.Status(from), cases.Status(to), cases.Source(source)
			if len(ev.Evidence) == 0 {
				ev.Evidence = nil
			}
			out = append(out, ev)
			last = ev
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("storage: load case events: %w", err)
		}
	}
	return out, nil
}
