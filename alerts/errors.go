package alerts

import (
	"errors"
	"fmt"
)

// Sentinel errors of the alerts package. Callers branch on them with
// errors.Is; the API maps ErrNotFound to 404, ErrConflict to 409 and
// ErrInvalidAction to 422, ErrNotSaved to 503.
var (
	// ErrNotFound means no alert has the given id.
	ErrNotFound = errors.New("alerts: no such alert")
	// ErrConflict means an action named a version that is no longer the
	// alert's current one: someone else changed it first. The error is a
	// *ConflictError.
	ErrConflict = errors.New("alerts: stale alert version")
	// ErrInvalidAction means an action is not allowed in the alert's current
	// status (resolving a new alert, closing an open one...) or lacks what
	// it needs (a unit to dispatch to).
	ErrInvalidAction = errors.New("alerts: action not allowed")
	// ErrInvalidRules means a rules file failed validation; the error is a
	// *RuleError or a join of them.
	ErrInvalidRules = errors.New("alerts: invalid rules")
	// ErrBadFilter means list or statistics arguments are malformed (an
	// unknown sort key, a cursor that was not issued by List, To before
	// From).
	ErrBadFilter = errors.New("alerts: invalid filter")
	// ErrNotSaved means the Store failed to save an action: it was not
	// applied, and the API answers 503.
	ErrNotSaved = errors.New("alerts: action not saved")
	// ErrClosed means the engine was closed.
	ErrClosed = errors.New("alerts: engine closed")
)

// ConflictError is returned by Engine.Act when the action's version is not
// the alert's current version. It wraps ErrConflict.
type ConflictError struct {
	// ID is the alert's id.
	ID string
	// Given is the version the caller sent; Current is the alert's version.
	Given, Current uint64
}

// Error implements error.
func (e *ConflictError) Error() string {
	return fmt.Sprintf("alerts: alert %s is at version %d, not %d: reload it and retry", e.ID, e.Current, e.Given)
}

// Unwrap returns ErrConflict.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// RuleError names the rule and field of a rules file that failed
// validation. It wraps ErrInvalidRules.
type RuleError struct {
	// Rule is the rule's name, or its position ("rules[3]") when unnamed;
	// empty for errors outside the rules list.
	Rule string
	// Field is the YAML key path inside the rule, such as "escalate.to".
	Field string
	// Err says what is wrong.
	Err error
}

// Error implements error.
func (e *RuleError) Error() string {
	if e.Rule == "" {
		return fmt.Sprintf("alerts: %s: %v", e.Field, e.Err)
	}
	return fmt.Sprintf("alerts: rule %q: %s: %v", e.Rule, e.Field, e.Err)
}

// Unwrap returns ErrInvalidRules and the cause.
func (e *RuleError) Unwrap() []error { return []error{ErrInvalidRules, e.Err} }
