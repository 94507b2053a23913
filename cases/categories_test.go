package cases

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/gridwatch/gridwatch/devices"
)

// defaultRules reads the names and device types of the alert engine's
// shipped rules.
func defaultRules(t *testing.T) []struct {
	Name  string
	Match struct{ Types []string }
} {
	t.Helper()
	b, err := os.ReadFile("../alerts/default_rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Rules []struct {
			Name  string
			Match struct{ Types []string }
		}
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Rules) < 20 {
		t.Fatalf("read %d default rules", len(f.Rules))
	}
	return f.Rules
}

func TestShippedCategoriesCoverTheCatalogAndRules(t *testing.T) {
	cats := DefaultCategories()
	def, _ := cats.Get("E0699")
	for _, typ := range devices.Types() {
		// A rule no category lists (device_silent) files the case under the
		// device's own component.
		c := cats.ForDevice(typ.ID, "device_silent")
		if !slices.Contains(c.DeviceTypes, typ.ID) {
			t.Errorf("%s: device_silent gives %s (%s), which does not list the type", typ.ID, c.Code, c.NameEN)
		}
	}
	named := map[string]bool{}
	for _, r := range defaultRules(t) {
		named[r.Name] = true
		for _, typ := range r.Match.Types {
			c := cats.ForDevice(typ, r.Name)
			if c.Code == def.Code || !slices.Contains(c.Rules, r.Name) && !slices.Contains(c.DeviceTypes, typ) {
				t.Errorf("rule %s on %s: category %s covers neither", r.Name, typ, c.Code)
			}
		}
	}
	for _, c := range cats.All() {
		for _, r := range c.Rules {
			if !named[r] {
				t.Errorf("category %s lists rule %q, which is no default rule", c.Code, r)
			}
		}
	}
	if c := cats.ForDevice("unknown_type", "unknown_rule"); c.Code != def.Code {
		t.Errorf("an unclaimed case gets %s, want the default %s", c.Code, def.Code)
	}
}

func TestShippedCategoriesShape(t *testing.T) {
	cats := DefaultCategories()
	levels := map[string]int{}
	for _, c := range cats.All() {
		levels[c.Level]++
		if !strings.HasPrefix(c.Code, c.Major) || c.Major[:1] != map[string]string{LevelComponent: "C", LevelEvent: "E"}[c.Level] {
			t.Errorf("%s: code, major %s and level %s disagree", c.Code, c.Major, c.Level)
		}
		if c.NameZH == "" || c.NameEN == "" {
			t.Errorf("%s: a shipped category has both names", c.Code)
		}
	}
	if levels[LevelComponent] < 10 || levels[LevelEvent] < 10 {
		t.Errorf("levels: %v", levels)
	}
	// Gas, fire and flooding are emergencies in natural hours.
	for rule, route := range map[string]string{"gas_leak": "gas", "waste_bin_fire": "fire", "underpass_flooding": "water"} {
		c := cats.ForDevice("", rule)
		if !c.Emergency || c.Limits.Handle.Unit != NaturalHours || c.Route != route {
			t.Errorf("%s: %+v, want an emergency of %s in natural hours", rule, c, route)
		}
	}
	for _, code := range []string{"E0101", "E0302", "E0501", "E0403", "C0117", "C0201"} { // rubbish, road damage, street vending, waterlogging, hydrant, streetlight
		if _, ok := cats.Get(code); !ok {
			t.Errorf("no category %s", code)
		}
	}
}

func TestCategoryJSON(t *testing.T) {
	c, _ := DefaultCategories().Get("E0401")
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"limits":{"sign_for":"0.25 natural_hours","handle":"2 natural_hours","close":"24 natural_hours"}`) {
		t.Fatalf("JSON %s", b)
	}
	var back Category
	if err := json.Unmarshal(b, &back); err != nil || back.Limits != c.Limits {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
}

func TestCategoriesExtendedByConfig(t *testing.T) {
	path := t.TempDir() + "/categories.yaml"
	doc := `
default: X9901
categories:
  - code: C0101
    level: component
    major: C01
    name_zh: 上水井盖
    route: water
    limits: {sign_for: 1 working_hours, handle: 8 working_hours, close: 3 working_days}
  - code: X9901
    level: event
    major: X99
    name_en: local other
    route: municipal
    limits: {sign_for: 2 working_hours, handle: 3 working_days, close: 10 working_days}
    rules: [local_rule]
`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cats, err := LoadCategories(path)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := cats.Get("C0101"); c.Limits.Handle != (Limit{8, WorkingHours}) {
		t.Errorf("C0101 not replaced: %+v", c.Limits)
	}
	if c := cats.ForDevice("gas", "local_rule"); c.Code != "X9901" {
		t.Errorf("local_rule -> %s", c.Code)
	}
	if c := cats.ForDevice("nope", "nope"); c.Code != "X9901" {
		t.Errorf("default -> %s", c.Code)
	}
	if c := cats.ForDevice("gas", "gas_leak"); c.Code != "E0401" {
		t.Errorf("shipped rules still map: gas_leak -> %s", c.Code)
	}
	if n := len(cats.All()); n != len(DefaultCategories().All())+1 {
		t.Errorf("%d categories", n)
	}
}

func TestCategoriesReject(t *testing.T) {
	entry := func(extra string) string {
		return "categories:\n  - {code: X1, level: event, major: X, name_en: x, route: municipal, " +
			"limits: {sign_for: 1 working_hours, handle: 1 working_days, close: 2 working_days}" + extra + "}\n"
	}
	for _, tc := range []struct{ doc, want string }{
		{strings.Replace(entry(""), "route: municipal", "route: parks", 1), "'route' \"parks\" is not one of"},
		{strings.Replace(entry(""), "level: event", "level: thing", 1), "'level'"},
		{strings.Replace(entry(""), "handle: 1 working_days, ", "", 1), "'limits.handle' is missing"},
		{strings.Replace(entry(""), "1 working_days", "1 weeks", 1), "unit \"weeks\""},
		{entry(", emergency: true"), "of an emergency must be in natural_hours"},
		{entry(", rules: [gas_leak]"), "rule \"gas_leak\" is already in \"E0401\""},
		{entry(", device_types: [gas]"), "device type \"gas\" is already in"},
		{entry(", device_types: [toaster]"), "\"toaster\" is not a device type"},
		{entry("") + "  - {code: X1}\n", "code \"X1\" appears twice"},
		{entry(", colour: red"), "field colour not found"},
		{"default: NOPE\n", "'default': \"NOPE\" is not a category"},
		{"categories:\n  - {code: C0150, level: component, major: C01, name_en: m, route: municipal, " +
			"limits: {sign_for: 1 working_hours, handle: 1 working_days, close: 2 working_days}}\n", "device type \"manhole_cover\" is in no category"},
	} {
		_, err := ParseCategories([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", tc.doc, err, tc.want)
		}
	}
}
