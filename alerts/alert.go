// Package alerts is detection: it turns observations (telemetry readings,
// camera health) into alerts by rules and their evaluation engine, with
// grouping, inhibition, silences and maintenance windows.
//
// An alert is a detection record: its Condition says what the world looks
// like (pending while a rule's `for` runs, firing, cleared). A cleared
// alert is resolved for good; the next firing of its rule is a new alert.
// Every change is an Event, the audit trail. The work that an alert calls
// for is a case (package cases), which the alert raises or joins through
// the engine's subscription; Alert.Case links the two.
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

// Condition is the state of what an alert watches.
type Condition string

// Conditions of an alert.
const (
	// ConditionPending means the rule's condition holds but not yet for the
	// rule's `for` duration (or the alert waits to be grouped). Pending
	// alerts are not listed.
	ConditionPending Condition = "pending"
	// ConditionFiring means the rule's condition holds.
	ConditionFiring Condition = "firing"
	// ConditionCleared means the rule's clear condition held long enough:
	// the alert is resolved and stays so.
	ConditionCleared Condition = "cleared"
	// ConditionInactive marks a pending alert whose condition went away
	// before it fired; it is kept only in storage, as a tombstone.
	ConditionInactive Condition = "inactive"
)

// Alert is one detection record. Values returned by the engine are copies:
// changing them changes nothing.
type Alert struct {
	// ID identifies the alert.
	ID string `json:"id"`
	// Version counts the alert's changes, each an Event. Repeats of the
	// condition do not change it.
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
	// Category is the rule's or device type's category, such as "water".
	Category string `json:"category"`
	// Severity is the current severity; BaseSeverity is the rule's.
	Severity     Severity  `json:"severity"`
	BaseSeverity Severity  `json:"base_severity"`
	Condition    Condition `json:"condition"`
	// Case is the id of the case the alert raised or joined; empty until
	// the case loop took it in (see Engine.LinkCase and EventCase).
	Case string `json:"case,omitempty"`
	// Summary is a human line, such as "level_cm 42 > 30".
	Summary string `json:"summary"`
	// Value is the last value that matched; Count how many observations
	// matched while firing.
	Value float64 `json:"value"`
	Count uint64  `json:"count"`
	// PendingSince is when the condition started to hold in the current
	// pending phase; zero when not pending.
	PendingSince time.Time `json:"pending_since,omitzero"`
	// Fired is when the alert fired.
	Fired time.Time `json:"fired,omitzero"`
	// LastSeen is when the condition last matched.
	LastSeen time.Time `json:"last_seen,omitzero"`
	// Cleared is when the condition last cleared; zero while firing.
	Cleared time.Time `json:"cleared,omitzero"`
	// Escalated is set while the rule's time escalation is in effect.
	Escalated bool `json:"escalated"`
	// Updated is when the alert last changed.
	Updated time.Time `json:"updated"`
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

// Event kinds, all the engine's (actor "system"). Traces stored by releases
// whose alerts carried work orders also hold refire, overdue, remind, ack,
// dispatch, resolve, close, reopen and comment events.
const (
	EventFire       EventKind = "fire"
	EventClear      EventKind = "clear"
	EventEscalate   EventKind = "escalate"
	EventDeescalate EventKind = "deescalate"
	EventJoin       EventKind = "join"
	// EventCase records the case the alert raised or joined (To), the
	// case loop's answer (see Engine.LinkCase).
	EventCase EventKind = "case"
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
	// Actor is who did it: "system", or a user in traces stored by
	// releases whose alerts carried work orders.
	Actor string    `json:"actor"`
	Kind  EventKind `json:"kind"`
	// From and To are the states before and after: conditions for fire and
	// clear, severities for escalations, the device for a join, case ids
	// for a case event.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// Note is free text: the engine's explanation.
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
