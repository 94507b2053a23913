package cases

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Role is the role an actor acts in. The API maps its token roles onto
// these names; the lifecycle decides from them who may take which action.
type Role string

// Roles. Operators and dispatchers of the command centre may do the same
// in the case loop.
const (
	RoleViewer     Role = "viewer"
	RoleReporter   Role = "reporter"   // a grid manager (网格员) or other reporter
	RoleUnit       Role = "unit"       // a department unit's staff, bound to its unit
	RoleOperator   Role = "operator"   // a command-centre operator
	RoleDispatcher Role = "dispatcher" // a command-centre dispatcher
	RoleSupervisor Role = "supervisor" // verifies and approves
	RoleAdmin      Role = "admin"
	RoleSystem     Role = "system" // the service itself: intake of alerts, deadlines
)

// Actor is who takes an action.
type Actor struct {
	// Name is recorded as the event's actor: a token name.
	Name string
	Role Role
	// Unit is the unit a RoleUnit actor works for: it acts only on cases
	// dispatched to that unit.
	Unit string
}

// System is the actor of the service's own events.
var System = Actor{Name: "system", Role: RoleSystem}

// Action is one step a person takes on a case; Kind names it by the event
// it records.
type Action struct {
	Case string
	Kind EventKind
	// Version is the case version the actor saw; another current version
	// fails the action with a *ConflictError. Required.
	Version uint32
	Actor   Actor
	// Note is the comment, or the reason a return, void, rejection or
	// failed verification requires.
	Note string
	// Evidence are content hashes of photos (see Photos) attached.
	Evidence []string
	// Unit is the unit to dispatch to; empty takes the routed one.
	Unit string
	// Into is the case a merge merges this one into.
	Into string
	// Category, Location, Address and Grid correct the case on
	// registration; empty keeps what the report said. Grid is found from
	// Location when empty.
	Category string
	Location *Point
	Address  string
	Grid     string
	// Force registers a case despite possible duplicates.
	Force bool
	// Extend is the extension an extend_request asks for.
	Extend *Limit
	// Satisfaction is 1..5 for evaluate.
	Satisfaction uint8
	// Within, when set, is the actor's scope: a registration that moves
	// the case outside it is refused.
	Within func(grid string) bool
}

// Role sets of the rules below.
var (
	centre     = []Role{RoleOperator, RoleDispatcher, RoleSupervisor, RoleAdmin}
	supervisor = []Role{RoleSupervisor, RoleAdmin}
	unitStaff  = []Role{RoleUnit, RoleAdmin}
	verifiers  = []Role{RoleReporter, RoleOperator, RoleDispatcher, RoleSupervisor, RoleAdmin}
	anyStaff   = []Role{RoleReporter, RoleUnit, RoleOperator, RoleDispatcher, RoleSupervisor, RoleAdmin}
)

// rule says from which statuses an action applies, where it leads (empty:
// the status stays), and who may take it. A RoleUnit actor acts only on
// its unit's cases, a RoleReporter only on the cases it reported.
type rule struct {
	from  []Status
	to    Status
	roles []Role
}

// openStatuses are the statuses of a case being worked.
var openStatuses = []Status{StatusReceived, StatusRegistered, StatusDispatched, StatusHandling,
	StatusSuspended, StatusHandled, StatusVerified}

// rules are the lifecycle (GB/T 30428; 12345: 受理、派单、办理、回复、督办、办结、回访、评价):
//
//	received --register--> registered --dispatch--> dispatched --sign--> handling
//	received, registered --void / merge--> voided
//	dispatched --return--> registered (re-routed by a dispatcher)
//	handling --suspend_approve--> suspended --resume--> handling
//	handling --handle--> handled --verify_pass--> verified --close--> closed
//	handled --verify_fail--> handling (rework)
//
// Extensions are asked for and decided while handling; notes and
// supervision apply to any open case, evaluation to a closed one.
var rules = map[EventKind]rule{
	EventRegister:       {[]Status{StatusReceived}, StatusRegistered, centre},
	EventMerge:          {[]Status{StatusReceived, StatusRegistered}, StatusVoided, centre},
	EventVoid:           {[]Status{StatusReceived, StatusRegistered}, StatusVoided, centre},
	EventDispatch:       {[]Status{StatusRegistered, StatusDispatched}, StatusDispatched, centre},
	EventSign:           {[]Status{StatusDispatched}, StatusHandling, unitStaff},
	EventReturn:         {[]Status{StatusDispatched}, StatusRegistered, unitStaff},
	EventNote:           {openStatuses, "", anyStaff},
	EventExtendRequest:  {[]Status{StatusHandling}, "", unitStaff},
	EventExtendApprove:  {[]Status{StatusHandling}, "", supervisor},
	EventExtendReject:   {[]Status{StatusHandling}, "", supervisor},
	EventSuspendRequest: {[]Status{StatusHandling}, "", unitStaff},
	EventSuspendApprove: {[]Status{StatusHandling}, StatusSuspended, supervisor},
	EventSuspendReject:  {[]Status{StatusHandling}, "", supervisor},
	EventResume:         {[]Status{StatusSuspended}, StatusHandling, []Role{RoleUnit, RoleDispatcher, RoleSupervisor, RoleAdmin}},
	EventHandle:         {[]Status{StatusHandling}, StatusHandled, unitStaff},
	EventVerifyPass:     {[]Status{StatusHandled}, StatusVerified, verifiers},
	EventVerifyFail:     {[]Status{StatusHandled}, StatusHandling, verifiers},
	EventClose:          {[]Status{StatusVerified}, StatusClosed, centre},
	EventEvaluate:       {[]Status{StatusClosed}, "", verifiers},
	EventSupervise:      {openStatuses, "", supervisor},
}

// Actions returns the kinds of the actions people take, in lifecycle order:
// each has its endpoint.
func Actions() []EventKind {
	return []EventKind{EventRegister, EventMerge, EventVoid, EventDispatch, EventSign, EventReturn, EventNote,
		EventExtendRequest, EventExtendApprove, EventExtendReject, EventSuspendRequest, EventSuspendApprove,
		EventSuspendReject, EventResume, EventHandle, EventVerifyPass, EventVerifyFail, EventClose,
		EventEvaluate, EventSupervise}
}

// May reports whether actor may take an action of kind on c in its present
// status; the error says why not, wrapping ErrForbidden or
// ErrInvalidAction.
func May(c *Case, kind EventKind, actor Actor) error {
	r, ok := rules[kind]
	if !ok {
		return fmt.Errorf("%w: no action %q", ErrInvalidAction, kind)
	}
	if !slices.Contains(r.roles, actor.Role) {
		return fmt.Errorf("%w: %s needs the role %s, not %s", ErrForbidden, kind, roleList(r.roles), actor.Role)
	}
	switch actor.Role {
	case RoleUnit:
		if actor.Unit == "" || actor.Unit != c.Unit {
			return fmt.Errorf("%w: case %s is not dispatched to unit %q", ErrForbidden, c.ID, actor.Unit)
		}
	case RoleReporter:
		if actor.Name != c.Reporter {
			return fmt.Errorf("%w: %s may %s only the cases it reported", ErrForbidden, actor.Name, kind)
		}
	}
	if !slices.Contains(r.from, c.Status) {
		return fmt.Errorf("%w: %s does not apply to a %s case", ErrInvalidAction, kind, c.Status)
	}
	return nil
}

// roleList names roles for a message.
func roleList(roles []Role) string {
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = string(r)
	}
	return strings.Join(names, " or ")
}

// needs returns an ErrInvalidAction error when cond is false.
func needs(cond bool, kind EventKind, what string) error {
	if cond {
		return nil
	}
	return fmt.Errorf("%w: %s needs %s", ErrInvalidAction, kind, what)
}

// startDispatch starts the sign-for deadline of a dispatch at now: a
// sign-for missed by the unit dispatched before is not this one's.
func (s *Service) startDispatch(c *Case, now time.Time) {
	c.SignDue, c.HandleDue, c.Reminders = s.Timing.Due(c.Category, StepSign, now), time.Time{}, 0
	c.Overdue = slices.DeleteFunc(c.Overdue, func(s string) bool { return s == string(StepSign) })
}

// apply plans the action on next, a copy of the case, at now, and returns
// the event it records (without Seq). Lookups of other cases go through
// the Service (duplicates, routing); nothing is changed there.
func (s *Service) apply(next *Case, a Action, now time.Time) (Event, error) {
	if err := May(next, a.Kind, a.Actor); err != nil {
		return Event{}, err
	}
	r := rules[a.Kind]
	ev := Event{Kind: a.Kind, Note: a.Note, Evidence: a.Evidence}
	reason := func() error { return needs(strings.TrimSpace(a.Note) != "", a.Kind, "a reason (note)") }
	switch a.Kind {
	case EventRegister:
		if err := s.register(next, a); err != nil {
			return Event{}, err
		}
		next.CloseDue = s.Timing.Due(next.Category, StepClose, now)
		ev.Due = next.CloseDue
	case EventMerge:
		if err := needs(a.Into != "" && a.Into != next.ID, a.Kind, "the case to merge into (into)"); err != nil {
			return Event{}, err
		}
		next.MergedInto = a.Into
		ev.Note = strings.TrimSpace("into " + a.Into + " " + a.Note)
	case EventVoid, EventReturn, EventVerifyFail:
		if err := reason(); err != nil {
			return Event{}, err
		}
	case EventExtendReject, EventSuspendReject:
		if err := awaiting(next, a.Kind); err != nil {
			return Event{}, err
		}
		if err := reason(); err != nil {
			return Event{}, err
		}
		next.Pending, next.Extend = "", nil
	case EventDispatch:
		unit := a.Unit
		if unit == "" && s.Route != nil {
			unit = s.Route(s.route(next.Category), next.Grid)
		}
		if err := needs(unit != "", a.Kind, "a unit: none handles this category in this grid"); err != nil {
			return Event{}, err
		}
		next.Unit, next.Dispatcher = unit, a.Actor.Name
		s.startDispatch(next, now)
		ev.Due = next.SignDue
	case EventSign:
		ev.Due = next.SignDue
		next.HandleDue, next.Reminders = s.Timing.Due(next.Category, StepHandle, now), 0
	case EventNote:
		if err := needs(strings.TrimSpace(a.Note) != "" || len(a.Evidence) > 0, a.Kind, "a note or evidence"); err != nil {
			return Event{}, err
		}
	case EventExtendRequest, EventSuspendRequest:
		if err := needs(next.Pending == "", a.Kind, "no other request waiting ("+string(next.Pending)+")"); err != nil {
			return Event{}, err
		}
		if err := reason(); err != nil {
			return Event{}, err
		}
		if a.Kind == EventExtendRequest {
			if err := needs(a.Extend != nil && !a.Extend.IsZero(), a.Kind, "the extension asked for (extend, such as \"2 working_days\")"); err != nil {
				return Event{}, err
			}
			if _, err := s.Timing.Extend(next.HandleDue, *a.Extend); err != nil {
				return Event{}, fmt.Errorf("%w: %w", ErrInvalidAction, err)
			}
			x := *a.Extend
			next.Extend = &x
			ev.Note = strings.TrimSpace(fmt.Sprintf("%g %s: %s", x.N, x.Unit, a.Note))
		}
		next.Pending = a.Kind
	case EventExtendApprove:
		if err := awaiting(next, a.Kind); err != nil {
			return Event{}, err
		}
		due, err := s.Timing.Extend(next.HandleDue, *next.Extend)
		if err != nil {
			return Event{}, fmt.Errorf("%w: %w", ErrInvalidAction, err)
		}
		next.HandleDue, next.Pending, next.Extend, next.Reminders = due, "", nil, 0
		next.Overdue = slices.DeleteFunc(next.Overdue, func(s string) bool { return s == string(StepHandle) })
		ev.Due = due
	case EventSuspendApprove:
		if err := awaiting(next, a.Kind); err != nil {
			return Event{}, err
		}
		next.Pending, next.SuspendedAt = "", now
	case EventResume:
		next.HandleDue = s.Timing.Resume(next.Category, next.HandleDue, next.SuspendedAt, now)
		if !next.CloseDue.IsZero() {
			next.CloseDue = s.Timing.Resume(next.Category, next.CloseDue, next.SuspendedAt, now)
		}
		next.SuspendedAt, next.Reminders = time.Time{}, 0
		ev.Due = next.HandleDue
	case EventHandle:
		ev.Due = next.HandleDue
		next.Pending, next.Extend = "", nil
	case EventVerifyPass:
	case EventClose:
		next.Closed = now
		ev.Due = next.CloseDue
	case EventEvaluate:
		if err := needs(a.Satisfaction >= 1 && a.Satisfaction <= 5, a.Kind, "a satisfaction of 1..5"); err != nil {
			return Event{}, err
		}
		if err := needs(next.Satisfaction == 0, a.Kind, "a case not evaluated yet"); err != nil {
			return Event{}, err
		}
		next.Satisfaction, ev.Satisfaction = a.Satisfaction, a.Satisfaction
	case EventSupervise:
		next.Supervised = true
	}
	if a.Kind == EventVerifyFail {
		// Rework (返工) gets a fresh handling limit from now.
		next.Reworks++
		next.HandleDue, next.Reminders = s.Timing.Due(next.Category, StepHandle, now), 0
		next.Overdue = slices.DeleteFunc(next.Overdue, func(s string) bool { return s == string(StepHandle) })
		ev.Due = next.HandleDue
	}
	if a.Kind == EventReturn {
		next.Returns++
		ev.Unit = next.Unit
		next.Unit, next.SignDue, next.HandleDue, next.Reminders = "", time.Time{}, time.Time{}, 0
		next.Overdue = slices.DeleteFunc(next.Overdue, func(s string) bool { return s != string(StepClose) })
	}
	if r.to != "" {
		next.Status = r.to
	}
	next.Evidence = appendNew(next.Evidence, a.Evidence...)
	return ev, nil
}

// decides names the request each supervisor's decision answers.
var decides = map[EventKind]EventKind{
	EventExtendApprove: EventExtendRequest, EventExtendReject: EventExtendRequest,
	EventSuspendApprove: EventSuspendRequest, EventSuspendReject: EventSuspendRequest,
}

// awaiting returns an ErrInvalidAction error unless c waits for the
// decision kind on its request: a supervisor approves or refuses only what
// was asked for.
func awaiting(c *Case, kind EventKind) error {
	asked := decides[kind]
	if c.Pending == asked && (asked != EventExtendRequest || c.Extend != nil) {
		return nil
	}
	waiting := "none is waiting"
	if c.Pending != "" {
		waiting = "the request waiting is " + string(c.Pending)
	}
	return fmt.Errorf("%w: %s answers a pending %s, and %s", ErrInvalidAction, kind, asked, waiting)
}

// appendNew appends the values not in list yet.
func appendNew(list []string, vs ...string) []string {
	for _, v := range vs {
		if !slices.Contains(list, v) {
			list = append(list, v)
		}
	}
	return list
}
