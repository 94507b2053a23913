package storage

import (
	"context"
	"time"

	"github.com/gridwatch/gridwatch/cases"
)

// eventsSource is the case summaries computed from the raw events at
// query time: what the statistics cost without the table.
func (db *DB) eventsSource() string {
	return "(" + caseSummarySelect(db.layout, db.opts.Database, "1") + ")"
}

// CaseTalliesFromEvents is CaseTallies computed from the raw events, for
// tests and benchmarks to hold the summaries against.
func (db *DB) CaseTalliesFromEvents(ctx context.Context, by CaseStatsBy, from, to time.Time, inScope func(string) bool) ([]cases.Tally, error) {
	return db.caseTallies(ctx, by, from, to, inScope, db.eventsSource())
}

// CaseActionsFromEvents is CaseActions computed from the raw events: each
// (case, seq) counted once per role, actor, kind and grid, the way
// CaseActions counted before the summaries. (Reading the actions from
// eventsSource alone makes ClickHouse 18.16 drop a column the query
// needs.)
func (db *DB) CaseActionsFromEvents(ctx context.Context, from, to time.Time, inScope func(string) bool) ([]cases.ActionCount, error) {
	source := "(SELECT [" + db.msExpr("ts") + "] AS `action.ts`, [" + actionWho("CAST(role AS String)", "CAST(kind AS String)", "actor") +
		"] AS `action.who`, [grid] AS `action.grid` FROM " + quoteTable(db.opts.Database, "case_events") +
		" LIMIT 1 BY case_id, seq, role, actor, kind, grid)"
	return db.caseActions(ctx, from, to, inScope, source)
}
