package cases_test

import (
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/cases"
)

// TestScheduleResume checks that a suspension stops a working-time clock:
// the working time left when it stopped is counted again from the
// resumption, on the shipped calendar; an emergency's clock runs in natural
// time.
func TestScheduleResume(t *testing.T) {
	s := cases.Schedule{Calendar: cases.DefaultCalendar(), Categories: cases.DefaultCategories()}
	cst := cases.DefaultCalendar().Location()
	at := func(d, hm string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04", d+" "+hm, cst)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// Friday 2026-03-06 16:30, due Monday 10:00: 2 working hours left
	// (16:30-17:30, 09:00-10:00). Resumed Tuesday 09:00: due 11:00.
	got := s.Resume("C0101", at("2026-03-09", "10:00"), at("2026-03-06", "16:30"), at("2026-03-10", "09:00"))
	if want := at("2026-03-10", "11:00"); !got.Equal(want) {
		t.Errorf("working time: %v, want %v", got, want)
	}
	// Already overdue when suspended: the deadline stays.
	due := at("2026-03-06", "10:00")
	if got := s.Resume("C0101", due, at("2026-03-06", "16:30"), at("2026-03-10", "09:00")); !got.Equal(due) {
		t.Errorf("overdue: %v, want %v", got, due)
	}
	var emergency string
	for _, c := range s.Categories.All() {
		if c.Emergency && c.Limits.Handle.Unit == cases.NaturalHours {
			emergency = c.Code
			break
		}
	}
	if emergency == "" {
		t.Fatal("no emergency category in natural hours")
	}
	got = s.Resume(emergency, at("2026-03-07", "02:00"), at("2026-03-06", "23:00"), at("2026-03-07", "08:00"))
	if want := at("2026-03-07", "11:00"); !got.Equal(want) {
		t.Errorf("natural time: %v, want %v", got, want)
	}
	if _, err := s.Extend(due, cases.Limit{N: 2, Unit: "fortnights"}); err == nil {
		t.Error("an extension in fortnights was accepted")
	}
	if got, err := s.Extend(at("2026-03-06", "17:00"), cases.Limit{N: 1, Unit: cases.WorkingHours}); err != nil || !got.Equal(at("2026-03-09", "09:30")) {
		t.Errorf("extend by 1 working hour from Friday 17:00: %v %v", got, err)
	}
}
