package cases

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/6tail/lunar-go/HolidayUtil"
)

var shanghai = mustLoc("Asia/Shanghai")

func mustLoc(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return l
}

// sh is a wall-clock time in Shanghai: "2026-03-02 10:00".
func sh(s string) time.Time {
	t, err := time.ParseInLocation("2006-01-02 15:04", s, shanghai)
	if err != nil {
		panic(err)
	}
	return t
}

var dueCases = []struct {
	name  string
	from  time.Time
	limit string
	want  time.Time
}{
	{"within the morning", sh("2026-03-02 10:00"), "1 working_hours", sh("2026-03-02 11:00")},
	{"over lunch", sh("2026-03-02 11:30"), "1 working_hours", sh("2026-03-02 14:00")},
	{"starting at lunch", sh("2026-03-02 12:30"), "0.5 working_hours", sh("2026-03-02 14:00")},
	{"ending at the end of the morning", sh("2026-03-02 09:00"), "3 working_hours", sh("2026-03-02 12:00")},
	{"ending at the end of the day", sh("2026-03-02 09:00"), "7 working_hours", sh("2026-03-02 17:30")},
	{"before hours", sh("2026-03-02 07:00"), "2 working_hours", sh("2026-03-02 11:00")},
	{"over a night", sh("2026-03-02 17:00"), "1 working_hours", sh("2026-03-03 09:30")},
	{"received at night", sh("2026-03-02 22:15"), "0.25 working_hours", sh("2026-03-03 09:15")},
	{"over a weekend", sh("2026-03-06 17:00"), "1 working_hours", sh("2026-03-09 09:30")},
	{"received on a Sunday", sh("2026-03-08 15:00"), "4 working_hours", sh("2026-03-09 14:30")},
	{"over Labour Day", sh("2026-04-30 17:00"), "1 working_hours", sh("2026-05-06 09:30")},
	{"onto a make-up Saturday", sh("2026-05-08 17:00"), "1 working_hours", sh("2026-05-09 09:30")},
	{"onto a make-up Sunday", sh("2026-09-19 10:00"), "1 working_hours", sh("2026-09-20 10:00")},
	{"into New Year's make-up Sunday", sh("2026-01-03 12:00"), "2 working_hours", sh("2026-01-04 11:00")},
	{"before Spring Festival onto its make-up Saturday", sh("2026-02-13 16:00"), "3 working_hours", sh("2026-02-14 10:30")},
	{"over Spring Festival", sh("2026-02-14 17:00"), "1 working_hours", sh("2026-02-24 09:30")},
	{"over National Day", sh("2026-09-30 17:00"), "1 working_hours", sh("2026-10-08 09:30")},
	{"a working day", sh("2026-03-02 10:00"), "1 working_days", sh("2026-03-03 10:00")},
	{"a working day from Friday night", sh("2026-03-06 20:00"), "1 working_days", sh("2026-03-09 17:30")},
	{"working days over the year end", sh("2026-12-31 15:00"), "2 working_days", sh("2027-01-05 15:00")},
	{"working days over Spring Festival 2027", sh("2027-02-04 09:00"), "3 working_days", sh("2027-02-15 17:30")},
	{"natural hours over a night", sh("2026-03-07 23:00"), "2 natural_hours", sh("2026-03-08 01:00")},
	{"natural hours on a holiday", sh("2026-10-01 08:00"), "0.5 natural_hours", sh("2026-10-01 08:30")},
	{"from UTC", time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC), "1 working_hours", sh("2026-03-02 10:00")},
}

func TestDue(t *testing.T) {
	c := DefaultCalendar()
	for _, tc := range dueCases {
		t.Run(tc.name, func(t *testing.T) {
			l, err := ParseLimit(tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			got := c.Due(tc.from, l)
			if !got.Equal(tc.want) {
				t.Fatalf("Due(%s, %s) = %s, want %s", tc.from.In(shanghai).Format(time.DateTime), l,
					got.In(shanghai).Format("Mon 2006-01-02 15:04"), tc.want.Format("Mon 2006-01-02 15:04"))
			}
			if got.Location().String() != c.Location().String() {
				t.Errorf("Due returned a time in %s, want the calendar's zone", got.Location())
			}
			if l.Unit != NaturalHours {
				want := hours(l.N)
				if l.Unit == WorkingDays {
					want = time.Duration(l.N * float64(c.WorkdayLength()))
				}
				if w := c.WorkingBetween(tc.from, got); w != want {
					t.Errorf("WorkingBetween(from, due) = %s, want %s", w, want)
				}
			}
		})
	}
}

func TestDueOfZeroLimitIsNone(t *testing.T) {
	if d := DefaultCalendar().Due(sh("2026-03-02 10:00"), Limit{}); !d.IsZero() {
		t.Fatalf("Due of no limit = %s, want the zero time", d)
	}
}

func TestWorkingBetween(t *testing.T) {
	c := DefaultCalendar()
	for _, tc := range []struct {
		a, b time.Time
		want time.Duration
	}{
		{sh("2026-03-02 10:00"), sh("2026-03-02 15:00"), 3*time.Hour + 30*time.Minute},
		{sh("2026-03-06 17:00"), sh("2026-03-09 09:30"), time.Hour},
		{sh("2026-03-02 12:05"), sh("2026-03-02 13:25"), 0},
		{sh("2026-03-02 15:00"), sh("2026-03-02 10:00"), 0},
		{sh("2026-09-30 00:00"), sh("2026-10-11 00:00"), 4 * 7 * time.Hour}, // Sep 30, Oct 8, 9 and the make-up Saturday Oct 10
		// 2026: 261 weekdays, 19 of them holidays, 6 make-up weekend days.
		{sh("2026-01-01 00:00"), sh("2027-01-01 00:00"), 248 * 7 * time.Hour},
	} {
		if got := c.WorkingBetween(tc.a, tc.b); got != tc.want {
			t.Errorf("WorkingBetween(%s, %s) = %s, want %s", tc.a.Format(time.DateTime), tc.b.Format(time.DateTime), got, tc.want)
		}
	}
}

// TestDueInvertsWorkingBetween checks, for random starts and limits over
// the shipped years, that the working time from a start to its due time is
// the limit, and that just before the due time it is less.
func TestDueInvertsWorkingBetween(t *testing.T) {
	c := DefaultCalendar()
	r := rand.New(rand.NewPCG(1, 2))
	start := sh("2025-12-20 00:00")
	for i := 0; i < 2000; i++ {
		from := start.Add(time.Duration(r.Int64N(int64(2 * 365 * 24 * time.Hour)))).Truncate(time.Minute)
		l := Limit{N: float64(1+r.IntN(40)) / 4, Unit: WorkingHours}
		if i%3 == 0 {
			l = Limit{N: float64(1 + r.IntN(10)), Unit: WorkingDays}
		}
		due := c.Due(from, l)
		want := hours(l.N)
		if l.Unit == WorkingDays {
			want = time.Duration(l.N) * c.WorkdayLength()
		}
		if got := c.WorkingBetween(from, due); got != want {
			t.Fatalf("from %s, %s: due %s, working time %s", from, l, due, got)
		}
		if got := c.WorkingBetween(from, due.Add(-time.Minute)); got >= want {
			t.Fatalf("from %s, %s: due %s is not the first instant the limit is reached", from, l, due)
		}
		if !c.IsWorkday(due) {
			t.Fatalf("from %s, %s: due %s on a day off", from, l, due)
		}
	}
}

// TestShippedCalendarMatchesLunarGo cross-checks the shipped holidays and
// make-up workdays against an independent table (6tail/lunar-go).
func TestShippedCalendarMatchesLunarGo(t *testing.T) {
	c := DefaultCalendar()
	for _, year := range []int{2026, 2027} {
		if !c.Covers(year) {
			t.Fatalf("the shipped calendar does not cover %d", year)
		}
		want := map[civilDate]bool{} // date -> workday
		l := HolidayUtil.GetHolidaysByYear(year)
		for e := l.Front(); e != nil; e = e.Next() {
			h := e.Value.(*HolidayUtil.Holiday)
			d, err := time.Parse(time.DateOnly, h.GetDay())
			if err != nil {
				t.Fatal(err)
			}
			want[dateOf(d)] = h.IsWork()
		}
		for d := (civilDate{year, 1, 1}); d.y == year; d = d.next() {
			workday, special := want[d]
			_, off := c.off[d]
			_, work := c.work[d]
			if special && (off == workday || work != workday) || !special && (off || work) {
				t.Errorf("%s: shipped off=%v work=%v; lunar-go special=%v workday=%v", d, off, work, special, workday)
			}
		}
	}
}

func TestCalendarFromFile(t *testing.T) {
	c, err := ParseCalendar([]byte(`
timezone: Europe/Berlin
working_hours: ["14:00-18:00", "08:00-12:00"]
weekend: [Sunday]
holidays:
  - {name: Local, from: 2026-03-03, to: 2026-03-03}
`))
	if err != nil {
		t.Fatal(err)
	}
	berlin := mustLoc("Europe/Berlin")
	from := time.Date(2026, 3, 2, 17, 0, 0, 0, berlin)  // Monday
	got := c.Due(from, Limit{N: 2, Unit: WorkingHours}) // Tuesday is the local holiday
	want := time.Date(2026, 3, 4, 9, 0, 0, 0, berlin)   // Wednesday
	if !got.Equal(want) || c.WorkdayLength() != 8*time.Hour {
		t.Fatalf("Due = %s (day %s), want %s", got, c.WorkdayLength(), want)
	}
	sat := time.Date(2026, 3, 7, 10, 0, 0, 0, berlin)
	if !c.IsWorkday(sat) || c.Covers(2027) || c.HolidayName(want.AddDate(0, 0, -1)) != "Local" {
		t.Fatal("Saturday is a workday with a Sunday-only weekend; 2027 is not covered; Mar 3 is Local")
	}
}

func TestCalendarRejects(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`working_hours: ["09:00-12:00", "11:00-13:00"]`, "overlaps"},
		{`working_hours: ["09:00-08:00"]`, "not after the start"},
		{`working_hours: ["9h-12h"]`, "not HH:MM"},
		{`weekend: [monday, tuesday, wednesday, thursday, friday, saturday, sunday]`, "at least one workday"},
		{`weekend: [caturday]`, "not a day name"},
		{`timezone: Mars/Olympus`, "'timezone'"},
		{`holidays: [{name: A, from: 2026-13-01, to: 2026-13-02}]`, "want YYYY-MM-DD"},
		{`holidays: [{name: A, from: 2026-05-05, to: 2026-05-01}]`, "before 'from'"},
		{`holidays: [{name: A, from: 2026-01-01, to: 2027-01-01}]`, "longer than"},
		{`holidays: [{name: A, from: 2026-05-01, to: 2026-05-05, work: [2026-05-03]}]`, "is a day off of A"},
		{"holidays: [{name: A, from: 2026-05-01, to: 2026-05-05}, {name: B, from: 2026-05-05, to: 2026-05-06}]", "already a day off of A"},
		{`holidays: [{from: 2026-05-01, to: 2026-05-05}]`, "'name' is empty"},
		{`holidays: [{name: A, from: 2026-05-01}]`, "'from' and 'to' are required"},
		{`workinghours: ["09:00-12:00"]`, "not found"},
	} {
		_, err := ParseCalendar([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", tc.doc, err, tc.want)
		}
	}
}

func TestParseLimit(t *testing.T) {
	for _, s := range []string{"2 working_hours", "0.5 working_days", "4 natural_hours"} {
		l, err := ParseLimit(s)
		if err != nil || l.String() != s {
			t.Errorf("ParseLimit(%q) = %v, %v; want it back", s, l, err)
		}
	}
	for _, s := range []string{"", "2", "2 hours", "-1 working_hours", "0 working_days", "NaN natural_hours", "x working_hours"} {
		if _, err := ParseLimit(s); err == nil {
			t.Errorf("ParseLimit(%q) accepted", s)
		}
	}
}

func FuzzDue(f *testing.F) {
	for _, tc := range dueCases {
		f.Add(tc.from.Unix(), tc.limit)
	}
	c := DefaultCalendar()
	f.Fuzz(func(t *testing.T, from int64, limit string) {
		l, err := ParseLimit(limit)
		if err != nil || l.N > 1000 || from < 0 || from > 1<<34 {
			return
		}
		ft := time.Unix(from, 0)
		due := c.Due(ft, l)
		if due.Before(ft) {
			t.Fatalf("Due(%s, %s) = %s is before the start", ft, l, due)
		}
	})
}
