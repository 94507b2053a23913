// Package alerts turns observations (telemetry readings, camera health) into
// alerts and alerts into work orders: rules and their evaluation engine, the
// work-order lifecycle with its SLA clock, routing to units, and statistics.
//
// An alert has two axes. Its Condition says what the world looks like
// (pending while a rule's `for` runs, firing, cleared); its Status says where
// the work order stands (new, acknowledged, dispatched, resolved, closed,
// reopened). Every change of either is an Event, the audit trail.
package alerts

import (
	"fmt"
	"time"
)

// Severity ranks alerts; higher is worse.
type Severity uint8

// Severities, from least to most urgent.
const (
	SeverityInfo Severity = iota + 1
	SeverityMinor
	SeverityMajor
	SeverityCritical
)

var severityNames = [...]string{"", "info", "minor", "major", "critical"}

// String returns the severity's name, such as "major"; the zero Severity,
// none set, is "".
func (s Severity) String() string {
	if int(s) < len(severityNames) {
		return severityNames[s]
	}
	return fmt.Sprintf("severity(%d)", s)
}

// ParseSeverity parses a severity name; "" is the zero Severity, so that
// every String round-trips through JSON, YAML and storage.
func ParseSeverity(name string) (Severity, error) {
	for i, n := range severityNames {
		if n == name {
			return Severity(i), nil
		}
	}
	return 0, fmt.Errorf("unknown severity %q: want info, minor, major or critical", name)
}

// MarshalText implements encoding.TextMarshaler.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// raise returns the next severity up, capped at critical.
func (s Severity) raise() Severity { return min(s+1, SeverityCritical) }

// Condition is the state of what an alert watches.
type Condition string

// Conditions of an alert.
const (
	// ConditionPending means the rule's condition holds but not yet for the
	// rule's `for` duration (or the alert waits to be grouped). Pending
	// alerts are not work orders yet and are not listed by default.
	ConditionPending Condition = "pending"
	// ConditionFiring means the rule's condition holds.
	ConditionFiring Condition = "firing"
	// ConditionCleared means the rule's clear condition held long enough.
	ConditionCleared Condition = "cleared"
	// ConditionInactive marks a pending alert whose condition went away
	// before it fired; it is kept only in storage, as a tombstone.
	ConditionInactive Condition = "inactive"
)

// Status is where an alert's work order stands.
type Status string

// Work-order statuses. A pending alert has the empty status.
const (
	StatusNew          Status = "new"
	StatusAcknowledged Status = "acknowledged"
	StatusDispatched   Status = "dispatched"
	StatusResolved     Status = "resolved"
	StatusClosed       Status = "closed"
	StatusReopened     Status = "reopened"
)

// awaitingAck reports whether s is a status that still needs signing for.
func (s Status) awaitingAck() bool { return s == StatusNew || s == StatusReopened }

// open reports whether the work order of status s is still being worked.
func (s Status) open() bool { return s != StatusResolved && s != StatusClosed && s != "" }

// Alert is one alert and its work order. Values returned by the engine are
// copies: changing them changes nothing.
type Alert struct {
	// ID identifies the alert.
	ID string `json:"id"`
	// Version counts the alert's changes; actions must name it (optimistic
	// concurrency). Repeats of the condition do not change it.
	Version uint64 `json:"version"`
	// Revision orders the stored rows of the alert (ReplacingMergeTree
	// version); it grows with every save, repeats included.
	Revision uint64 `json:"-"`
	// Rule is the name of the rule that raised it.
	Rule string `json:"rule"`
	// Device is the device it is about; empty for a grid-level alert.
	Device string `json:"device,omitempty"`
	// Grid is the grid cell of the device, or of the grouped devices.
	Grid string `json:"grid"`
	// Members are the devices a grid-level (storm) alert groups.
	Members []string `json:"members,omitempty"`
	// Category decides the responsible unit, such as "water".
	Category string `json:"category"`
	// Unit is the unit (department) the work order is routed or dispatched
	// to; empty when no unit handles the category in the grid.
	Unit string `json:"unit,omitempty"`
	// Severity is the current severity; BaseSeverity is the rule's.
	Severity     Severity  `json:"severity"`
	BaseSeverity Severity  `json:"base_severity"`
	Condition    Condition `json:"condition"`
	Status       Status    `json:"status,omitempty"`
	// Summary is a human line, such as "level_cm 42 > 30".
	Summary string `json:"summary"`
	// Value is the last value that matched; Count how many observations
	// matched while firing.
	Value float64 `json:"value"`
	Count uint64  `json:"count"`
	// PendingSince is when the condition started to hold in the current
	// pending phase; zero when not pending.
	PendingSince time.Time `json:"pending_since,omitzero"`
	// Fired is when the alert fired and its work order was created.
	Fired time.Time `json:"fired,omitzero"`
	// Refired is when the condition last fired again after clearing.
	Refired time.Time `json:"refired,omitzero"`
	// LastSeen is when the condition last matched.
	LastSeen time.Time `json:"last_seen,omitzero"`
	// Cleared is when the condition last cleared; zero while firing.
	Cleared time.Time `json:"cleared,omitzero"`
	// Acked, Dispatched, Resolved and Closed are when the work order last
	// reached those statuses.
	Acked      time.Time `json:"acked,omitzero"`
	Dispatched time.Time `json:"dispatched,omitzero"`
	Resolved   time.Time `json:"resolved,omitzero"`
	Closed     time.Time `json:"closed,omitzero"`
	// AckDue and ResolveDue are the SLA deadlines.
	AckDue     time.Time `json:"ack_due,omitzero"`
	ResolveDue time.Time `json:"resolve_due,omitzero"`
	// AckOverdue and ResolveOverdue are set when a deadline passed first.
	AckOverdue     bool `json:"ack_overdue"`
	ResolveOverdue bool `json:"resolve_overdue"`
	// Escalated is set while the rule's time escalation is in effect.
	Escalated bool `json:"escalated"`
	// NextReminder is when the next reminder goes out while unacknowledged.
	NextReminder time.Time `json:"next_reminder,omitzero"`
	// Updated is when the alert last changed.
	Updated time.Time `json:"updated"`
}

// Overdue reports whether a deadline of a has passed unmet at now.
func (a *Alert) Overdue(now time.Time) bool {
	if !a.Status.open() && a.Status != StatusResolved {
		return false
	}
	ackLate := a.Status.awaitingAck() && !a.AckDue.IsZero() && !now.Before(a.AckDue)
	resolveLate := a.Status.open() && !a.ResolveDue.IsZero() && !now.Before(a.ResolveDue)
	return ackLate || resolveLate
}

// clone returns a deep copy of a.
func (a *Alert) clone() Alert {
	c := *a
	if a.Members != nil {
		c.Members = append([]string(nil), a.Members...)
	}
	return c
}

// EventKind says what an Event records.
type EventKind string

// Event kinds. Fire, Refire, Clear, Escalate, Deescalate, Overdue, Remind,
// Join, Unsilence and Close by the rule are the engine's (actor "system");
// the rest are actions.
const (
	EventFire       EventKind = "fire"
	EventRefire     EventKind = "refire"
	EventClear      EventKind = "clear"
	EventEscalate   EventKind = "escalate"
	EventDeescalate EventKind = "deescalate"
	EventOverdue    EventKind = "overdue"
	EventRemind     EventKind = "remind"
	EventJoin       EventKind = "join"
	EventAck        EventKind = "ack"
	EventDispatch   EventKind = "dispatch"
	EventResolve    EventKind = "resolve"
	EventClose      EventKind = "close"
	EventReopen     EventKind = "reopen"
	EventComment    EventKind = "comment"
	// EventUnsilence announces an alert that still fires when the silence
	// or maintenance window covering it ended: notifiers, which skipped
	// its silenced transitions, hear of it now.
	EventUnsilence EventKind = "unsilence"
)

// ActorSystem is the actor of the engine's own events.
const ActorSystem = "system"

// Event is one step in an alert's trace: a row of alert_events.
type Event struct {
	// AlertID is the alert's id.
	AlertID string `json:"alert_id"`
	// Version is the alert's version after the event; it is unique per
	// alert, so it also identifies the event.
	Version uint64 `json:"version"`
	// TS is when it happened.
	TS time.Time `json:"ts"`
	// Actor is who did it: a user or token name, or "system".
	Actor string    `json:"actor"`
	Kind  EventKind `json:"kind"`
	// From and To are the states before and after: statuses for work-order
	// actions, conditions for fire and clear, severities for escalations.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// Note is free text: the actor's comment or the engine's explanation.
	Note string `json:"note,omitempty"`
}

// Transition is what subscribers receive: an event and the alert right
// after it.
type Transition struct {
	Event Event `json:"event"`
	Alert Alert `json:"alert"`
	// Silenced is set when a silence or maintenance window covers the
	// alert: notify.Dispatcher hands it to no notifier.
	Silenced bool `json:"silenced,omitempty"`
}
