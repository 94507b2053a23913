package cases

import (
	"crypto/rand"
	"slices"
	"time"
)

// Point is a location in WGS 84 degrees.
type Point struct {
	Lat float64 `json:"lat"`
	Lon float64 `json:"lon"`
}

// Case is one case (案卷) as it stands after its latest event. The Service
// keeps it in memory and stores it, with the events that led to it, before
// an action is answered.
type Case struct {
	ID string `json:"id"`
	// Version is the Seq of the case's latest event: the If-Match of the
	// next action.
	Version uint32 `json:"version"`
	Source  Source `json:"source"`
	// Reporter is who reported the case: the token name of a grid manager
	// or operator, the hotline's caller reference, or the alert's device.
	Reporter string `json:"reporter,omitempty"`
	// Origin is the outside key of the case: the alert id of a sensor or
	// camera case, the ticket number of a hotline ticket. A second intake
	// with the same source and origin returns the case instead of a new one.
	Origin      string `json:"origin,omitempty"`
	Category    string `json:"category,omitempty"`
	Description string `json:"description,omitempty"`
	Location    *Point `json:"location,omitempty"`
	Address     string `json:"address,omitempty"`
	Grid        string `json:"grid,omitempty"`
	// Device is the device of a sensor or camera case.
	Device string `json:"device,omitempty"`
	// Unit is the unit the case is dispatched to; empty before dispatch and
	// after a return.
	Unit string `json:"unit,omitempty"`
	// Dispatcher is the actor of the latest dispatch: a return is counted
	// against it.
	Dispatcher string    `json:"dispatcher,omitempty"`
	Status     Status    `json:"status"`
	Received   time.Time `json:"received"`
	Updated    time.Time `json:"updated"`
	Closed     time.Time `json:"closed,omitzero"`
	// SignDue, HandleDue and CloseDue are the deadlines in force, zero
	// when none applies yet.
	SignDue   time.Time `json:"sign_due,omitzero"`
	HandleDue time.Time `json:"handle_due,omitzero"`
	CloseDue  time.Time `json:"close_due,omitzero"`
	// SuspendedAt is when the handling clock stopped for a suspension.
	SuspendedAt time.Time `json:"suspended_at,omitzero"`
	// Pending is the request waiting for a supervisor: extend_request or
	// suspend_request; Extend is the extension asked for.
	Pending EventKind `json:"pending,omitempty"`
	Extend  *Limit    `json:"extend,omitempty"`
	// Supervised is set by supervision (督办).
	Supervised bool `json:"supervised,omitempty"`
	// Overdue names the deadlines the case missed: sign, handle, close.
	Overdue []string `json:"overdue,omitempty"`
	// Escalated is set when an overdue case was escalated.
	Escalated bool `json:"escalated,omitempty"`
	// Reminders counts the reminders of the deadline in force.
	Reminders uint8 `json:"reminders,omitempty"`
	// Reworks counts failed verifications, Returns the returns by units.
	Reworks uint16 `json:"reworks,omitempty"`
	Returns uint16 `json:"returns,omitempty"`
	// Joined are the alerts that joined the case after the one it came
	// from (its Origin).
	Joined []string `json:"joined,omitempty"`
	// MergedInto is the case a duplicate was merged into.
	MergedInto string `json:"merged_into,omitempty"`
	// Evidence are the content hashes of every photo attached to the case.
	Evidence     []string `json:"evidence,omitempty"`
	Satisfaction uint8    `json:"satisfaction,omitempty"`
}

// Open reports whether the case is still being worked: neither closed nor
// voided.
func (c *Case) Open() bool { return c.Status != StatusClosed && c.Status != StatusVoided }

// IsOverdue reports whether the case missed any deadline.
func (c *Case) IsOverdue() bool { return len(c.Overdue) > 0 }

// Clone returns a deep copy of c.
func (c Case) Clone() Case {
	if c.Location != nil {
		p := *c.Location
		c.Location = &p
	}
	if c.Extend != nil {
		x := *c.Extend
		c.Extend = &x
	}
	c.Overdue = slices.Clone(c.Overdue)
	c.Evidence = slices.Clone(c.Evidence)
	c.Joined = slices.Clone(c.Joined)
	return c
}

// idAlphabet is Crockford's base 32: no I, L, O or U to misread on a phone.
const idAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// newID returns a case id: "C", the date of receipt (in received's
// location: the Service's), and 8 random base-32 characters (40 bits), such as
// C20261202-7K3M9QXA, so that several nodes need no shared counter.
func newID(received time.Time) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+).
	for i := range b {
		b[i] = idAlphabet[b[i]&31]
	}
	return "C" + received.Format("20060102") + "-" + string(b)
}
