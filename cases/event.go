// Package cases is the city-management case loop (案卷/工单) of GB/T 30428 and
// the 12345 hotline: intake from sensor alerts, camera faults, patrol reports
// and hotline tickets; registration, dispatch to the responsible unit,
// sign-for, handling, verification, closure and evaluation, each step an
// Event on record, with deadlines in working time.
//
// The stored events are the single source of the evaluation: every indicator
// and score is computed from the case_events table for any period, so each
// event carries what the evaluation needs (the unit it concerns, the deadline
// it is measured against) as of the moment it happened.
package cases

import "time"

// Status is where a case stands in its lifecycle.
type Status string

// Statuses, in the order a case usually passes them.
const (
	// StatusReceived: taken in (受理), not yet registered.
	StatusReceived Status = "received"
	// StatusRegistered: registered (立案), waiting for dispatch.
	StatusRegistered Status = "registered"
	// StatusDispatched: dispatched (派遣) to a unit, waiting for its sign-for.
	StatusDispatched Status = "dispatched"
	// StatusHandling: signed for (签收) by the unit, being handled (处置).
	StatusHandling Status = "handling"
	// StatusSuspended: suspended (挂账/缓办) on a supervisor's approval.
	StatusSuspended Status = "suspended"
	// StatusHandled: the unit reports it handled, waiting for verification (核查).
	StatusHandled Status = "handled"
	// StatusVerified: verification passed, waiting for closure (结案).
	StatusVerified Status = "verified"
	// StatusClosed: closed (结案). Evaluation (评价) may follow.
	StatusClosed Status = "closed"
	// StatusVoided: voided (作废) with a reason, or merged into another case.
	StatusVoided Status = "voided"
)

// Source is where a case came from.
type Source string

// Sources.
const (
	SourceAlert    Source = "alert"    // a firing device alert
	SourceCamera   Source = "camera"   // a camera fault
	SourcePatrol   Source = "patrol"   // a grid manager's patrol report (网格员上报)
	SourceHotline  Source = "hotline"  // a 12345 hotline ticket
	SourceOperator Source = "operator" // a command-centre operator
)

// EventKind is what happened to a case.
type EventKind string

// Event kinds. Each action of the lifecycle records one event; the system
// records the deadline events.
const (
	EventReceive        EventKind = "receive"         // 受理: the case is taken in
	EventRegister       EventKind = "register"        // 立案
	EventMerge          EventKind = "merge"           // merged into another case (recorded on both)
	EventVoid           EventKind = "void"            // 作废, with a reason
	EventDispatch       EventKind = "dispatch"        // 派遣 to Unit; Due is the sign-for deadline
	EventSign           EventKind = "sign"            // 签收 by Unit; Due is the sign-for deadline met or missed
	EventReturn         EventKind = "return"          // 回退/退单 by Unit; counted against the dispatcher (Actor of the dispatch)
	EventNote           EventKind = "note"            // a note or evidence added while handling
	EventExtendRequest  EventKind = "extend_request"  // 延期 asked for by Unit
	EventExtendApprove  EventKind = "extend_approve"  // approved by a supervisor; Due is the new handling deadline
	EventExtendReject   EventKind = "extend_reject"   // refused by a supervisor
	EventSuspendRequest EventKind = "suspend_request" // 挂账/缓办 asked for by Unit
	EventSuspendApprove EventKind = "suspend_approve" // approved by a supervisor
	EventSuspendReject  EventKind = "suspend_reject"  // refused by a supervisor
	EventResume         EventKind = "resume"          // a suspended case resumes
	EventHandle         EventKind = "handle"          // 处置 reported done by Unit; Due is the handling deadline
	EventVerifyPass     EventKind = "verify_pass"     // 核查 passed (by the reporter, a supervisor, or "system" for a sensor case that stayed clear)
	EventVerifyFail     EventKind = "verify_fail"     // 核查 failed: rework (返工) for Unit
	EventClose          EventKind = "close"           // 结案; Due is the closing deadline
	EventEvaluate       EventKind = "evaluate"        // 评价/回访: Satisfaction 1..5
	EventSupervise      EventKind = "supervise"       // 督办: flagged for the command centre
	EventRemind         EventKind = "remind"          // a deadline reminder (bounded)
	EventOverdue        EventKind = "overdue"         // a deadline passed; Note names which (sign, handle, close)
	EventEscalate       EventKind = "escalate"        // escalated after being overdue
)

// Event is one step of a case, as stored in the case_events table. It is
// immutable once stored; (CaseID, Seq) identifies it.
type Event struct {
	CaseID string `json:"case_id"`
	// Seq numbers a case's events from 1; the case's version after the
	// event equals it.
	Seq uint32    `json:"seq"`
	TS  time.Time `json:"ts"`
	// Actor is who did it: a token or user name, or "system".
	Actor string `json:"actor"`
	// Role is the role the actor acted in (reporter, unit, dispatcher,
	// supervisor, operator, admin, system).
	Role string    `json:"role"`
	Kind EventKind `json:"kind"`
	From Status    `json:"from,omitempty"`
	To   Status    `json:"to,omitempty"`
	// Unit is the unit the event concerns: the unit dispatched to, signing,
	// returning, handling, asking for an extension, or reworking; for other
	// events the case's unit at the time (empty before dispatch).
	Unit string `json:"unit,omitempty"`
	// Grid, Category and Source are the case's at the time of the event, so
	// the evaluation groups without joining.
	Grid     string `json:"grid,omitempty"`
	Category string `json:"category,omitempty"`
	Source   Source `json:"source,omitempty"`
	// Due is the deadline the event is measured against (see EventKind),
	// zero when none: an event is on time when TS <= Due.
	Due time.Time `json:"due,omitzero"`
	// Note is free text: the actor's comment, a reason, or the system's
	// explanation. For a merge it names the other case.
	Note string `json:"note,omitempty"`
	// Evidence are content hashes of photos attached with the event.
	Evidence []string `json:"evidence,omitempty"`
	// Satisfaction is 1..5 on an evaluate event, else 0.
	Satisfaction uint8 `json:"satisfaction,omitempty"`
}

// OnTime reports whether the event met its deadline; an event without one
// is on time.
func (e Event) OnTime() bool { return e.Due.IsZero() || !e.TS.After(e.Due) }
