package alerts

import (
	"errors"
	"fmt"
)

// Sentinel errors of the alerts package. Callers branch on them with
// errors.Is; the API maps ErrNotFound to 404, ErrInvalidSilence to 422 and
// ErrBadFilter to 400.
var (
	// ErrNotFound means no alert (or silence) has the given id.
	ErrNotFound = errors.New("alerts: no such alert")
	// ErrInvalidSilence means a silence lacks what it needs (an actor, an
	// end in the future) or names a rule that does not exist.
	ErrInvalidSilence = errors.New("alerts: invalid silence")
	// ErrInvalidRules means a rules file failed validation; the error is a
	// *RuleError or a join of them.
	ErrInvalidRules = errors.New("alerts: invalid rules")
	// ErrBadFilter means list arguments are malformed (an unknown sort key,
	// a cursor that was not issued by List).
	ErrBadFilter = errors.New("alerts: invalid filter")
	// ErrClosed means the engine was closed.
	ErrClosed = errors.New("alerts: engine closed")
)

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
