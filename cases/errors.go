package cases

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors of the cases package. The API maps ErrNotFound to 404,
// ErrConflict to 409, ErrForbidden to 403, ErrInvalidAction and
// ErrDuplicate to 422, ErrNotSaved to 503.
var (
	// ErrNotFound means no case has the given id.
	ErrNotFound = errors.New("cases: no such case")
	// ErrConflict means an action named a version that is no longer the
	// case's: someone acted first. The error is a *ConflictError.
	ErrConflict = errors.New("cases: stale case version")
	// ErrForbidden means the actor's role (or unit) may not take the action
	// on this case.
	ErrForbidden = errors.New("cases: not allowed for this role")
	// ErrInvalidAction means the action does not apply in the case's
	// status, or lacks what it needs (a reason, a unit, a satisfaction).
	ErrInvalidAction = errors.New("cases: action not allowed")
	// ErrDuplicate means registration found open cases of the same
	// category nearby; the error is a *DuplicateError. Merge into one, or
	// register with Force.
	ErrDuplicate = errors.New("cases: possible duplicate")
	// ErrNotSaved means the Store failed: nothing changed and the action
	// may be sent again.
	ErrNotSaved = errors.New("cases: action not saved")
	// ErrBadFilter means list arguments are malformed.
	ErrBadFilter = errors.New("cases: invalid filter")
	// ErrClosed means the service was closed.
	ErrClosed = errors.New("cases: service closed")
)

// ConflictError is returned when an action's version is not the case's. It
// wraps ErrConflict.
type ConflictError struct {
	ID             string
	Given, Current uint32
}

// Error implements error.
func (e *ConflictError) Error() string {
	return fmt.Sprintf("cases: case %s is at version %d, not %d: reload it and retry", e.ID, e.Current, e.Given)
}

// Unwrap returns ErrConflict.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// DuplicateError lists the open cases a registration may duplicate. It
// wraps ErrDuplicate.
type DuplicateError struct {
	ID         string
	Candidates []string
}

// Error implements error.
func (e *DuplicateError) Error() string {
	return fmt.Sprintf("cases: case %s may duplicate open case(s) %s of the same category nearby: merge it, or register with force",
		e.ID, strings.Join(e.Candidates, ", "))
}

// Unwrap returns ErrDuplicate.
func (e *DuplicateError) Unwrap() error { return ErrDuplicate }
