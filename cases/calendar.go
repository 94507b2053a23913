package cases

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// LimitUnit is the clock a time limit runs on.
type LimitUnit string

// Limit units. Working time counts only the working hours of workdays;
// natural hours run around the clock, for emergencies (gas, fire, flooding).
const (
	WorkingHours LimitUnit = "working_hours"
	WorkingDays  LimitUnit = "working_days"
	NaturalHours LimitUnit = "natural_hours"
)

// Limit is a time limit such as "2 working_hours". A working day is the
// length of one workday's working hours (7 h by default), so "1
// working_days" from 10:00 on a Monday is due at 10:00 on Tuesday, and from
// Friday evening at the end of Monday's working hours.
type Limit struct {
	N    float64
	Unit LimitUnit
}

// ParseLimit reads a limit written as "<number> <unit>", such as
// "0.5 working_hours", "3 working_days" or "2 natural_hours".
func ParseLimit(s string) (Limit, error) {
	num, unit, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok {
		return Limit{}, fmt.Errorf("limit %q: want \"<number> <unit>\" with unit %s, %s or %s", s, WorkingHours, WorkingDays, NaturalHours)
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n <= 0 || math.IsInf(n, 0) || math.IsNaN(n) {
		return Limit{}, fmt.Errorf("limit %q: %q is not a positive number", s, num)
	}
	l := Limit{N: n, Unit: LimitUnit(strings.TrimSpace(unit))}
	switch l.Unit {
	case WorkingHours, WorkingDays, NaturalHours:
		return l, nil
	}
	return Limit{}, fmt.Errorf("limit %q: unit %q is not one of %s, %s, %s", s, l.Unit, WorkingHours, WorkingDays, NaturalHours)
}

// IsZero reports whether l sets no limit.
func (l Limit) IsZero() bool { return l.N <= 0 }

// String writes l as ParseLimit reads it.
func (l Limit) String() string {
	return strconv.FormatFloat(l.N, 'f', -1, 64) + " " + string(l.Unit)
}

// MarshalText writes l as ParseLimit reads it (JSON and YAML use it).
func (l Limit) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText reads l with ParseLimit.
func (l *Limit) UnmarshalText(b []byte) error {
	v, err := ParseLimit(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// Calendar is a business calendar: working hours on workdays, where a
// workday is a weekday that is not a public holiday, or a make-up workday
// (调休) on a weekend. Times are read in the calendar's timezone. A Calendar
// is immutable and safe for concurrent use.
type Calendar struct {
	loc     *time.Location
	spans   []span // working hours of a workday, sorted, disjoint
	dayLen  time.Duration
	weekend [7]bool
	off     map[civilDate]string // public holidays, with their names
	work    map[civilDate]string // make-up workdays, with their names
	years   map[int]bool         // years the holidays cover
}

// span is a working period of a day, in minutes since midnight: [from, to).
type span struct{ from, to int }

type civilDate struct {
	y int
	m time.Month
	d int
}

func dateOf(t time.Time) civilDate {
	y, m, d := t.Date()
	return civilDate{y, m, d}
}

// CalendarFile is the YAML form of a calendar (see deploy/calendar.yaml).
type CalendarFile struct {
	// Timezone is an IANA zone name. It defaults to Asia/Shanghai.
	Timezone string `yaml:"timezone"`
	// WorkingHours are the working periods of a workday as "HH:MM-HH:MM".
	// They default to 09:00-12:00 and 13:30-17:30.
	WorkingHours []string `yaml:"working_hours"`
	// Weekend are the days off of a normal week, as English day names.
	// They default to saturday and sunday.
	Weekend []string `yaml:"weekend"`
	// Holidays are the public holidays and their make-up workdays.
	Holidays []HolidayEntry `yaml:"holidays"`
}

// HolidayEntry is one holiday of a year: the days off From..To (inclusive)
// and the make-up workdays (调休) that go with it.
type HolidayEntry struct {
	Name string `yaml:"name"`
	From Date   `yaml:"from"`
	To   Date   `yaml:"to"`
	Work []Date `yaml:"work"`
}

// Date is a calendar date written YYYY-MM-DD.
type Date struct{ civilDate }

// UnmarshalText reads a YYYY-MM-DD date.
func (d *Date) UnmarshalText(b []byte) error {
	t, err := time.Parse(time.DateOnly, string(b))
	if err != nil {
		return fmt.Errorf("date %q: want YYYY-MM-DD", b)
	}
	d.civilDate = dateOf(t)
	return nil
}

func (d civilDate) String() string { return fmt.Sprintf("%04d-%02d-%02d", d.y, d.m, d.d) }

func (d civilDate) next() civilDate {
	return dateOf(time.Date(d.y, d.m, d.d+1, 0, 0, 0, 0, time.UTC))
}

func (d civilDate) before(e civilDate) bool {
	return time.Date(d.y, d.m, d.d, 0, 0, 0, 0, time.UTC).Before(time.Date(e.y, e.m, e.d, 0, 0, 0, 0, time.UTC))
}

//go:embed calendar.yaml
var shippedCalendar []byte

// DefaultCalendar returns the shipped calendar (cases/calendar.yaml):
// Asia/Shanghai, 09:00-12:00 and 13:30-17:30, Saturday and Sunday off, and
// China's public holidays and make-up workdays of the years it lists. A
// city with its own file loads it with LoadCalendar.
func DefaultCalendar() *Calendar {
	c, err := ParseCalendar(shippedCalendar)
	if err != nil {
		panic(fmt.Sprintf("cases: the default calendar is invalid: %v", err)) // a build defect, caught by tests
	}
	return c
}

// LoadCalendar reads a calendar from a YAML file.
func LoadCalendar(path string) (*Calendar, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read calendar: %w", err)
	}
	c, err := ParseCalendar(b)
	if err != nil {
		return nil, fmt.Errorf("calendar %s: %w", path, err)
	}
	return c, nil
}

// ParseCalendar reads a calendar from YAML; unknown keys are errors.
func ParseCalendar(doc []byte) (*Calendar, error) {
	var f CalendarFile
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	return NewCalendar(f)
}

// NewCalendar checks f and builds its calendar, filling in the defaults.
func NewCalendar(f CalendarFile) (*Calendar, error) {
	if f.Timezone == "" {
		f.Timezone = "Asia/Shanghai"
	}
	if len(f.WorkingHours) == 0 {
		f.WorkingHours = []string{"09:00-12:00", "13:30-17:30"}
	}
	if f.Weekend == nil {
		f.Weekend = []string{"saturday", "sunday"}
	}
	loc, err := time.LoadLocation(f.Timezone)
	if err != nil {
		return nil, fmt.Errorf("'timezone': %w", err)
	}
	c := &Calendar{loc: loc, off: map[civilDate]string{}, work: map[civilDate]string{}, years: map[int]bool{}}
	for _, s := range f.WorkingHours {
		sp, err := parseSpan(s)
		if err != nil {
			return nil, fmt.Errorf("'working_hours': %w", err)
		}
		c.spans = append(c.spans, sp)
	}
	sort.Slice(c.spans, func(i, j int) bool { return c.spans[i].from < c.spans[j].from })
	for i, sp := range c.spans {
		if i > 0 && sp.from < c.spans[i-1].to {
			return nil, fmt.Errorf("'working_hours': %q overlaps the period before it", f.WorkingHours[i])
		}
		c.dayLen += time.Duration(sp.to-sp.from) * time.Minute
	}
	for _, w := range f.Weekend {
		d, ok := weekdays[strings.ToLower(w)]
		if !ok {
			return nil, fmt.Errorf("'weekend': %q is not a day name (monday … sunday)", w)
		}
		c.weekend[d] = true
	}
	if c.weekend == [7]bool{true, true, true, true, true, true, true} {
		return nil, errors.New("'weekend': a week needs at least one workday")
	}
	for i, h := range f.Holidays {
		if err := c.addHoliday(h); err != nil {
			return nil, fmt.Errorf("'holidays[%d]' (%s): %w", i, h.Name, err)
		}
	}
	return c, nil
}

var weekdays = map[string]time.Weekday{
	"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday, "wednesday": time.Wednesday,
	"thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday,
}

// maxHoliday bounds one holiday's length, to catch a mistyped year.
const maxHoliday = 31

func (c *Calendar) addHoliday(h HolidayEntry) error {
	if h.Name == "" {
		return errors.New("'name' is empty")
	}
	if h.From == (Date{}) || h.To == (Date{}) {
		return errors.New("'from' and 'to' are required")
	}
	if h.To.before(h.From.civilDate) {
		return fmt.Errorf("'to' %s is before 'from' %s", h.To, h.From)
	}
	n := 0
	for d := h.From.civilDate; !h.To.before(d); d = d.next() {
		if n++; n > maxHoliday {
			return fmt.Errorf("%s to %s is longer than %d days", h.From, h.To, maxHoliday)
		}
		if other, dup := c.off[d]; dup {
			return fmt.Errorf("%s is already a day off of %s", d, other)
		}
		if other, dup := c.work[d]; dup {
			return fmt.Errorf("%s is already a make-up workday of %s", d, other)
		}
		c.off[d] = h.Name
		c.years[d.y] = true
	}
	for _, w := range h.Work {
		if other, dup := c.off[w.civilDate]; dup {
			return fmt.Errorf("make-up workday %s is a day off of %s", w, other)
		}
		if other, dup := c.work[w.civilDate]; dup {
			return fmt.Errorf("%s is already a make-up workday of %s", w, other)
		}
		c.work[w.civilDate] = h.Name
		c.years[w.y] = true
	}
	return nil
}

func parseSpan(s string) (span, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return span{}, fmt.Errorf("%q: want HH:MM-HH:MM", s)
	}
	from, err1 := parseClock(a)
	to, err2 := parseClock(b)
	if err := errors.Join(err1, err2); err != nil {
		return span{}, fmt.Errorf("%q: %w", s, err)
	}
	if to <= from {
		return span{}, fmt.Errorf("%q: the end is not after the start", s)
	}
	return span{from, to}, nil
}

func parseClock(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "24:00" {
		return 24 * 60, nil
	}
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// Location returns the calendar's timezone.
func (c *Calendar) Location() *time.Location { return c.loc }

// WorkdayLength is the working time of one workday: the unit of
// WorkingDays.
func (c *Calendar) WorkdayLength() time.Duration { return c.dayLen }

// Covers reports whether the calendar knows the public holidays of year.
// A year it does not cover is computed with weekends only: a deployment
// should warn, and the city should add the year to its calendar file.
func (c *Calendar) Covers(year int) bool { return c.years[year] }

// IsWorkday reports whether the day of t (in the calendar's timezone) is a
// workday.
func (c *Calendar) IsWorkday(t time.Time) bool { return c.isWorkday(dateOf(t.In(c.loc))) }

func (c *Calendar) isWorkday(d civilDate) bool {
	if _, ok := c.work[d]; ok {
		return true
	}
	if _, ok := c.off[d]; ok {
		return false
	}
	return !c.weekend[time.Date(d.y, d.m, d.d, 0, 0, 0, 0, time.UTC).Weekday()]
}

// HolidayName returns the name of the holiday whose day off or make-up
// workday the day of t is, or "".
func (c *Calendar) HolidayName(t time.Time) string {
	d := dateOf(t.In(c.loc))
	if n, ok := c.off[d]; ok {
		return n
	}
	return c.work[d]
}

// Due returns when a limit that starts at from runs out: from plus the
// limit in natural time, or the instant the limit's working time has passed
// from from on. A limit ending exactly at the end of a working period is
// due then, not at the start of the next. A zero limit has no due time: Due
// returns the zero time.
func (c *Calendar) Due(from time.Time, l Limit) time.Time {
	if l.IsZero() {
		return time.Time{}
	}
	switch l.Unit {
	case NaturalHours:
		return from.Add(hours(l.N)).In(c.loc)
	case WorkingDays:
		return c.addWorking(from, time.Duration(math.Round(l.N*float64(c.dayLen/time.Second)))*time.Second)
	default:
		return c.addWorking(from, hours(l.N))
	}
}

func hours(n float64) time.Duration {
	return time.Duration(math.Round(n*3600)) * time.Second
}

// addWorking returns the instant at which d of working time has passed
// since from (d > 0).
func (c *Calendar) addWorking(from time.Time, d time.Duration) time.Time {
	t := from.In(c.loc)
	for day := dateOf(t); ; day = day.next() {
		if !c.isWorkday(day) {
			continue
		}
		for _, sp := range c.spans {
			start, end := c.at(day, sp.from), c.at(day, sp.to)
			if !end.After(t) {
				continue
			}
			if start.Before(t) {
				start = t
			}
			avail := end.Sub(start)
			if d <= avail {
				return start.Add(d)
			}
			d -= avail
		}
	}
}

// at returns the instant minute minutes after midnight of day.
func (c *Calendar) at(day civilDate, minute int) time.Time {
	return time.Date(day.y, day.m, day.d, minute/60, minute%60, 0, 0, c.loc)
}

// WorkingBetween returns the working time in [a, b): zero when b is not
// after a. It pauses a clock while a case is suspended and converts
// between working time and due times.
func (c *Calendar) WorkingBetween(a, b time.Time) time.Duration {
	if !b.After(a) {
		return 0
	}
	a, b = a.In(c.loc), b.In(c.loc)
	var sum time.Duration
	last := dateOf(b)
	for day := dateOf(a); !last.before(day); day = day.next() {
		if !c.isWorkday(day) {
			continue
		}
		for _, sp := range c.spans {
			start, end := c.at(day, sp.from), c.at(day, sp.to)
			if start.Before(a) {
				start = a
			}
			if end.After(b) {
				end = b
			}
			if end.After(start) {
				sum += end.Sub(start)
			}
		}
	}
	return sum
}
