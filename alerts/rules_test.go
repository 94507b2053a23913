package alerts_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/devices"
)

var ruleErrorCases = []struct {
	name, doc string
	// want is the rule and field the error must name; empty means valid.
	want string
}{
	{"valid", "rules:\n  - {name: a, metric: x, condition: value > 1, severity: minor}\n", ""},
	{"absence", "rules:\n  - {name: a, absent: 2, severity: minor}\n", ""},
	{"no name", "rules:\n  - {metric: x, condition: value > 1, severity: minor}\n", `rule "rules[0]": name`},
	{"duplicate", "rules:\n  - {name: a, metric: x, condition: value > 1, severity: minor}\n  - {name: a, metric: x, condition: value > 2, severity: minor}\n", `rule "a": name`},
	{"bad expression", "rules:\n  - {name: a, metric: x, condition: value >, severity: minor}\n", `rule "a": condition`},
	{"unknown variable", "rules:\n  - {name: a, metric: x, condition: velue > 1, severity: minor}\n", `rule "a": condition`},
	{"not boolean", "rules:\n  - {name: a, metric: x, condition: value + 1, severity: minor}\n", `rule "a": condition`},
	{"bad clear", "rules:\n  - {name: a, metric: x, condition: value > 1, clear: value <, severity: minor}\n", `rule "a": clear`},
	{"no severity", "rules:\n  - {name: a, metric: x, condition: value > 1}\n", `rule "a": severity`},
	{"bad escalation", "rules:\n  - {name: a, metric: x, condition: value > 1, severity: major, escalate: {after: 1m, to: minor}}\n", `rule "a": escalate.to`},
	{"unknown type", "rules:\n  - {name: a, match: {types: [toaster]}, metric: x, condition: value > 1, severity: minor}\n", `rule "a": match.types`},
	{"no metric", "rules:\n  - {name: a, condition: value > 1, severity: minor}\n", `rule "a": metric`},
	{"absence with condition", "rules:\n  - {name: a, absent: 2, metric: x, condition: value > 1, severity: minor}\n", `rule "a": absent`},
	{"negative for", "rules:\n  - {name: a, metric: x, condition: value > 1, for: -1m, severity: minor}\n", `rule "a": for`},
	// The work-order keys of earlier releases say where they went.
	{"sla", "sla: {ack: {major: 30m}}\nrules: []\n", "sla: is no longer read: deadlines and reminders are the case loop's"},
	{"scoring", "scoring: {overdue: 3}\nrules: []\n", "scoring: is no longer read: unit scores are the case evaluation's: cases.evaluation.scoring"},
	{"auto_close", "rules:\n  - {name: a, metric: x, condition: value > 1, severity: minor, auto_close: true}\n", `rule "a": auto_close: is no longer read`},
	{"unknown key", "rules:\n  - {name: a, metric: x, condition: value > 1, severity: minor, fro: 1m}\n", "fro"},
}

func TestParseRulesErrors(t *testing.T) {
	for _, c := range ruleErrorCases {
		_, err := alerts.ParseRules([]byte(c.doc))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (!errors.Is(err, alerts.ErrInvalidRules) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v; want ErrInvalidRules naming %s", c.name, err, c.want)
		}
	}
}

func FuzzParseRules(f *testing.F) {
	for _, c := range ruleErrorCases {
		f.Add(c.doc)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		if _, err := alerts.ParseRules([]byte(doc)); err != nil && !errors.Is(err, alerts.ErrInvalidRules) {
			t.Fatalf("error %v does not wrap ErrInvalidRules", err)
		}
	})
}

// TestDefaultRulesCoverCatalog checks that the shipped rules parse and give
// every catalog type an absence rule and every metric of the DESIGN.md
// types at least one rule.
func TestDefaultRulesCoverCatalog(t *testing.T) {
	rs := alerts.DefaultRules()
	covered := map[string]bool{}
	for _, r := range rs.File.Rules {
		covered[r.Metric] = true
	}
	for _, typ := range devices.Types() {
		for _, m := range typ.Metrics {
			if !covered[m.Name] && m.Name != "pm10" && m.Name != "return_temp_c" && m.Name != "lamp_on" {
				t.Errorf("type %s metric %s has no default rule", typ.ID, m.Name)
			}
		}
	}
}

// TestRuleWatcher rewrites a rules file and waits for the reload; an
// invalid rewrite keeps the rules in force.
func TestRuleWatcher(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	write := func(doc string) {
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("rules: []\n")
	got := make(chan *alerts.RuleSet, 4)
	w := &alerts.RuleWatcher{Path: path, Apply: func(rs *alerts.RuleSet) { got <- rs }, Every: 10 * time.Millisecond}
	w.Start(t.Context())
	defer w.Close()
	write("rules:\n  - {name: invalid, metric: x, condition: value >, severity: minor}\n  - {name: x}\n")
	write("rules:\n  - {name: fresh, metric: x, condition: value > 1, severity: minor}\n")
	select {
	case rs := <-got:
		if names := rs.Names(); len(names) != 1 || names[0] != "fresh" {
			t.Fatalf("reloaded rules %v, want [fresh]", names)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no reload within 10s")
	}
	w.Close()
	w.Close()
}
