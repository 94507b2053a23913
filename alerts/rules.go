package alerts

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"

	"github.com/gridwatch/gridwatch/devices"
)

// defaultRulesYAML is the rule set shipped for the device catalog.
//
//go:embed default_rules.yaml
var defaultRulesYAML []byte

// RulesFile is the YAML document of a rules file.
type RulesFile struct {
	// Rules are the alerting rules; names are unique.
	Rules []Rule `yaml:"rules"`
	// SLA and Scoring are keys of releases whose alerts carried work
	// orders; a file that still sets them is refused with where they went
	// (see removedKeys).
	SLA     yaml.Node `yaml:"sla"`
	Scoring yaml.Node `yaml:"scoring"`
}

// removedKeys say where the work-order keys of the rules file went: the
// deadlines, reminders and scores of the work that alerts call for are the
// case loop's (package cases).
var removedKeys = map[string]string{
	"sla":        "deadlines and reminders are the case loop's: time limits per category (cases.categories_file) on the business calendar, reminders in cases.remind_before, cases.remind_every and cases.max_reminders",
	"scoring":    "unit scores are the case evaluation's: cases.evaluation.scoring",
	"auto_close": "an alert is resolved when its condition clears; the case it raised verifies itself after cases.clear_for",
}

// Rule is one alerting rule as written in a rules file. A rule either has a
// Condition over a Metric's values or Absent, the silence it tolerates.
type Rule struct {
	// Name identifies the rule; it is stored with its alerts.
	Name string `yaml:"name"`
	// Description says what the alert means, for staff.
	Description string `yaml:"description"`
	// Match selects the devices the rule applies to; empty matches all.
	Match Match `yaml:"match"`
	// Metric is the metric whose observations evaluate Condition.
	Metric string `yaml:"metric"`
	// Window is the span of recent values behind the avg, low, high, rate,
	// delta and samples variables. It defaults to 0: only value is set.
	Window time.Duration `yaml:"window"`
	// Condition is an expr-lang boolean expression over the variables value,
	// avg, low, high, rate (change per minute), delta, samples and m (the
	// device's latest value of every metric, m.pm10).
	Condition string `yaml:"condition"`
	// For is how long Condition must hold before the alert fires.
	For time.Duration `yaml:"for"`
	// Clear is the expression that clears a firing alert. It defaults to
	// "not (Condition)"; a separate threshold gives hysteresis.
	Clear string `yaml:"clear"`
	// ClearFor is how long Clear must hold before the alert clears.
	ClearFor time.Duration `yaml:"clear_for"`
	// Absent, when > 0, makes this an absence rule: it fires when a device
	// has sent nothing for Absent times its type's report interval, and
	// clears at its next observation.
	Absent float64 `yaml:"absent"`
	// Severity is the alert's severity when it fires. Required.
	Severity Severity `yaml:"severity"`
	// Category decides the responsible unit. It defaults to the device
	// type's category.
	Category string `yaml:"category"`
	// Escalate raises the severity after the alert fired for a while; it
	// returns to Severity when the condition clears.
	Escalate *Escalation `yaml:"escalate"`
	// AutoClose is a key of releases whose alerts carried work orders; a
	// rule that still sets it is refused (see removedKeys).
	AutoClose yaml.Node `yaml:"auto_close"`
	// Inhibits mutes the device's other, non-inhibiting rules while this
	// rule fires for it. Absence rules always inhibit.
	Inhibits bool `yaml:"inhibits"`
	// NoGroup keeps the rule out of storm grouping: it always raises one
	// alert per device.
	NoGroup bool `yaml:"no_group"`
}

// Match selects devices. Each non-empty list must contain the device's
// value; empty lists match everything.
type Match struct {
	Types      []string `yaml:"types"`
	Categories []string `yaml:"categories"`
	// Grids match a device in any of these grids or below them.
	Grids   []string `yaml:"grids"`
	Devices []string `yaml:"devices"`
}

// Escalation raises an alert's severity once it has fired for After.
type Escalation struct {
	After time.Duration `yaml:"after"`
	To    Severity      `yaml:"to"`
}

// RuleSet is a validated, compiled rules file. It is immutable and safe to
// share.
type RuleSet struct {
	// File is the parsed document.
	File   RulesFile
	rules  []*rule
	byName map[string]*rule
	// windows is the longest window any rule needs, per metric.
	windows map[string]time.Duration
}

// rule is a compiled Rule.
type rule struct {
	Rule
	cond, clear                    *vm.Program
	types, categories, grids, devs map[string]bool
	// ranged is set when an expression reads low or high, the figures of
	// a window that take a pass over it.
	ranged bool
}

// env is what rule expressions see.
type env struct {
	Value   float64            `expr:"value"`
	Avg     float64            `expr:"avg"`
	Low     float64            `expr:"low"`
	High    float64            `expr:"high"`
	Rate    float64            `expr:"rate"`
	Delta   float64            `expr:"delta"`
	Samples int                `expr:"samples"`
	M       map[string]float64 `expr:"m"`
}

// DefaultRules returns the rule set shipped for the device catalog.
func DefaultRules() *RuleSet {
	rs, err := ParseRules(defaultRulesYAML)
	if err != nil {
		panic(fmt.Sprintf("alerts: the embedded default rules are invalid: %v", err)) // a build defect, caught by tests
	}
	return rs
}

// LoadRules reads and parses a rules file.
func LoadRules(path string) (*RuleSet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("alerts: read rules: %w", err)
	}
	rs, err := ParseRules(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rs, nil
}

// ParseRules parses, validates and compiles a rules document. Its errors
// wrap ErrInvalidRules and name the rule and field.
func ParseRules(doc []byte) (*RuleSet, error) {
	var f RulesFile
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRules, err)
	}
	rs := &RuleSet{File: f, byName: map[string]*rule{}, windows: map[string]time.Duration{}}
	var errs []error
	bad := func(r, field, format string, args ...any) {
		errs = append(errs, &RuleError{Rule: r, Field: field, Err: fmt.Errorf(format, args...)})
	}
	if !f.SLA.IsZero() {
		bad("", "sla", "is no longer read: %s", removedKeys["sla"])
	}
	if !f.Scoring.IsZero() {
		bad("", "scoring", "is no longer read: %s", removedKeys["scoring"])
	}
	seen := map[string]bool{}
	for i, r := range f.Rules {
		name := r.Name
		if name == "" {
			name = fmt.Sprintf("rules[%d]", i)
			bad(name, "name", "is required")
		} else if seen[name] {
			bad(name, "name", "is used by another rule")
		}
		seen[name] = true
		c, rerrs := compileRule(name, r)
		errs = append(errs, rerrs...)
		if c == nil {
			continue
		}
		rs.rules = append(rs.rules, c)
		rs.byName[name] = c
		if r.Window > rs.windows[r.Metric] {
			rs.windows[r.Metric] = r.Window
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return rs, nil
}

// compileRule validates r and compiles its expressions.
func compileRule(name string, r Rule) (*rule, []error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &RuleError{Rule: name, Field: field, Err: fmt.Errorf(format, args...)})
	}
	c := &rule{Rule: r,
		types: set(r.Match.Types), categories: set(r.Match.Categories), grids: set(r.Match.Grids), devs: set(r.Match.Devices)}
	for _, t := range r.Match.Types {
		if _, ok := devices.LookupType(t); !ok {
			bad("match.types", "unknown device type %q", t)
		}
	}
	if r.Severity == 0 {
		bad("severity", "is required: info, minor, major or critical")
	}
	if !r.AutoClose.IsZero() {
		bad("auto_close", "is no longer read: %s", removedKeys["auto_close"])
	}
	for field, d := range map[string]time.Duration{"window": r.Window, "for": r.For, "clear_for": r.ClearFor} {
		if d < 0 {
			bad(field, "must be >= 0, not %s", d)
		}
	}
	if e := r.Escalate; e != nil {
		if e.After <= 0 {
			bad("escalate.after", "must be > 0")
		}
		if e.To <= r.Severity {
			bad("escalate.to", "must be above the rule's severity %s", r.Severity)
		}
	}
	switch {
	case r.Absent < 0:
		bad("absent", "must be > 0")
	case r.Absent > 0:
		if r.Condition != "" || r.Clear != "" || r.Metric != "" {
			bad("absent", "an absence rule has no metric, condition or clear")
		}
	default:
		if r.Metric == "" {
			bad("metric", "is required unless the rule is an absence rule (absent)")
		}
		var err error
		names := identifiers{}
		if c.cond, err = compileExpr(r.Condition, names); err != nil {
			bad("condition", "%v", err)
		}
		clear := r.Clear
		if clear == "" {
			clear = "not (" + r.Condition + ")"
		}
		if c.clear, err = compileExpr(clear, names); err != nil && r.Clear != "" {
			bad("clear", "%v", err)
		}
		c.ranged = names["low"] || names["high"] || names["$env"]
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// compileExpr compiles a boolean rule expression, adding the variables it
// reads to names.
func compileExpr(src string, names identifiers) (*vm.Program, error) {
	if src == "" {
		return nil, errors.New("is required")
	}
	return expr.Compile(src, expr.Env(env{}), expr.AsBool(), expr.Patch(names))
}

// identifiers collects the names an expression reads ($env for all of
// them), as an expr-lang patcher that changes nothing.
type identifiers map[string]bool

func (ids identifiers) Visit(n *ast.Node) {
	if id, ok := (*n).(*ast.IdentifierNode); ok {
		ids[id.Value] = true
	}
}

// set returns the members of list as a set, or nil for an empty list.
func set(list []string) map[string]bool {
	if len(list) == 0 {
		return nil
	}
	m := make(map[string]bool, len(list))
	for _, s := range list {
		m[s] = true
	}
	return m
}

// matches reports whether r applies to a device of type typ in grid, whose
// grid ancestors are ancestors.
func (r *rule) matches(dev, typ, category, grid string, ancestors []string) bool {
	if r.devs != nil && !r.devs[dev] || r.types != nil && !r.types[typ] ||
		r.categories != nil && !r.categories[category] {
		return false
	}
	return r.grids == nil || r.grids[grid] || slices.ContainsFunc(ancestors, func(g string) bool { return r.grids[g] })
}

// category returns the category of r's alerts for a device of type t.
func (r *rule) category(t devices.Type) string {
	if r.Category != "" {
		return r.Category
	}
	return t.Category
}

// inhibiting reports whether r mutes the device's other rules while firing.
func (r *rule) inhibiting() bool { return r.Inhibits || r.Absent > 0 }

// Names returns the names of the rules, in file order.
func (rs *RuleSet) Names() []string {
	out := make([]string, len(rs.rules))
	for i, r := range rs.rules {
		out[i] = r.Name
	}
	return out
}
