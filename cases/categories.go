package cases

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/gridwatch/gridwatch/devices"
)

// Category levels (GB/T 30428.2).
const (
	LevelComponent = "component" // 部件: an object of the city
	LevelEvent     = "event"     // 事件: something happening in the street
)

// Limits are a category's time limits.
type Limits struct {
	// SignFor runs from dispatch to the unit's sign-for (签收).
	SignFor Limit `yaml:"sign_for" json:"sign_for"`
	// Handle runs from sign-for to the unit's report that it is handled.
	Handle Limit `yaml:"handle" json:"handle"`
	// Close runs from registration (立案) to closure (结案).
	Close Limit `yaml:"close" json:"close"`
}

// Category is a case category: what the case is about, which unit category
// handles it, and how long each step may take.
type Category struct {
	// Code is GB/T 30428-style: C or E, major class, minor class ("C0101").
	Code string `yaml:"code" json:"code"`
	// Level is LevelComponent or LevelEvent.
	Level string `yaml:"level" json:"level"`
	// Major is the code of the major class ("C01").
	Major  string `yaml:"major" json:"major"`
	NameZH string `yaml:"name_zh" json:"name_zh"`
	NameEN string `yaml:"name_en" json:"name_en"`
	// Route is the unit category that handles the case (a category of the
	// device catalog, as in the units file: municipal, water, …).
	Route  string `yaml:"route" json:"route"`
	Limits Limits `yaml:"limits" json:"limits"`
	// DeviceTypes are the device types whose cases belong here when their
	// alert's rule is in no category's Rules.
	DeviceTypes []string `yaml:"device_types" json:"device_types,omitempty"`
	// Rules are the alert rules whose cases belong here.
	Rules []string `yaml:"rules" json:"rules,omitempty"`
	// Emergency categories (gas, fire, flooding) run in natural hours.
	Emergency bool `yaml:"emergency" json:"emergency,omitempty"`
}

// Categories is a table of case categories. It is immutable and safe for
// concurrent use.
type Categories struct {
	list   []Category     // in file order, extensions last
	byCode map[string]int // code -> index in list
	byRule map[string]int
	byType map[string]int
	def    int // the category of a case nothing else claims
}

// categoriesFile is the YAML form of a table (cases/categories.yaml).
type categoriesFile struct {
	// Default is the code of the category for a device case of a type and
	// rule no category claims.
	Default    string     `yaml:"default"`
	Categories []Category `yaml:"categories"`
}

//go:embed categories.yaml
var shippedCategories []byte

// DefaultCategories returns the shipped table (cases/categories.yaml).
func DefaultCategories() *Categories {
	t, err := ParseCategories(nil)
	if err != nil {
		panic(fmt.Sprintf("cases: the embedded categories are invalid: %v", err)) // a build defect, caught by tests
	}
	return t
}

// LoadCategories returns the shipped table extended by the file at path:
// its categories replace the shipped ones of the same code or are added,
// and its default, when set, replaces the shipped default. An empty path
// gives the shipped table.
func LoadCategories(path string) (*Categories, error) {
	if path == "" {
		return DefaultCategories(), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read categories: %w", err)
	}
	t, err := ParseCategories(b)
	if err != nil {
		return nil, fmt.Errorf("categories %s: %w", path, err)
	}
	return t, nil
}

// ParseCategories returns the shipped table extended by the YAML document
// ext (nil for none), checked as a whole.
func ParseCategories(ext []byte) (*Categories, error) {
	base, err := decodeCategories(shippedCategories)
	if err != nil {
		return nil, fmt.Errorf("shipped table: %w", err)
	}
	if ext != nil {
		f, err := decodeCategories(ext)
		if err != nil {
			return nil, err
		}
		if f.Default != "" {
			base.Default = f.Default
		}
		for _, c := range f.Categories {
			if i := slices.IndexFunc(base.Categories, func(b Category) bool { return b.Code == c.Code }); i >= 0 {
				base.Categories[i] = c
			} else {
				base.Categories = append(base.Categories, c)
			}
		}
	}
	return newCategories(base)
}

func decodeCategories(doc []byte) (categoriesFile, error) {
	var f categoriesFile
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return f, err
	}
	seen := map[string]bool{}
	for i, c := range f.Categories {
		if seen[c.Code] {
			return f, fmt.Errorf("'categories[%d]': code %q appears twice", i, c.Code)
		}
		seen[c.Code] = true
	}
	return f, nil
}

func newCategories(f categoriesFile) (*Categories, error) {
	t := &Categories{list: f.Categories, byCode: map[string]int{}, byRule: map[string]int{}, byType: map[string]int{}}
	routes := devices.Categories()
	var errs []error
	for i, c := range t.list {
		if err := c.check(routes); err != nil {
			errs = append(errs, fmt.Errorf("category %q: %w", c.Code, err))
			continue
		}
		t.byCode[c.Code] = i
		for _, r := range c.Rules {
			if j, dup := t.byRule[r]; dup {
				errs = append(errs, fmt.Errorf("category %q: rule %q is already in %q", c.Code, r, t.list[j].Code))
			}
			t.byRule[r] = i
		}
		for _, d := range c.DeviceTypes {
			if j, dup := t.byType[d]; dup {
				errs = append(errs, fmt.Errorf("category %q: device type %q is already in %q", c.Code, d, t.list[j].Code))
			}
			t.byType[d] = i
		}
	}
	for _, typ := range devices.Types() {
		if _, ok := t.byType[typ.ID]; !ok {
			errs = append(errs, fmt.Errorf("device type %q is in no category's device_types", typ.ID))
		}
	}
	def, ok := t.byCode[f.Default]
	if !ok {
		errs = append(errs, fmt.Errorf("'default': %q is not a category", f.Default))
	}
	t.def = def
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// check validates one category against the known unit routes.
func (c Category) check(routes []string) error {
	switch {
	case c.Code == "" || strings.ContainsAny(c.Code, " \t\n,;"):
		return errors.New("'code' must be a non-empty word")
	case c.Level != LevelComponent && c.Level != LevelEvent:
		return fmt.Errorf("'level' %q is not %s or %s", c.Level, LevelComponent, LevelEvent)
	case c.Major == "":
		return errors.New("'major' is empty")
	case c.NameZH == "" && c.NameEN == "":
		return errors.New("'name_zh' and 'name_en' are both empty")
	case !slices.Contains(routes, c.Route):
		return fmt.Errorf("'route' %q is not one of %s", c.Route, strings.Join(routes, ", "))
	}
	for _, l := range []struct {
		key string
		l   Limit
	}{{"sign_for", c.Limits.SignFor}, {"handle", c.Limits.Handle}, {"close", c.Limits.Close}} {
		if l.l.IsZero() {
			return fmt.Errorf("'limits.%s' is missing", l.key)
		}
		if c.Emergency && l.l.Unit != NaturalHours {
			return fmt.Errorf("'limits.%s' of an emergency must be in %s", l.key, NaturalHours)
		}
	}
	for _, d := range c.DeviceTypes {
		if _, ok := devices.LookupType(d); !ok {
			return fmt.Errorf("'device_types': %q is not a device type", d)
		}
	}
	return nil
}

// Get returns the category of code.
func (t *Categories) Get(code string) (Category, bool) {
	i, ok := t.byCode[code]
	if !ok {
		return Category{}, false
	}
	return t.list[i], true
}

// All returns every category, shipped ones first, in file order.
func (t *Categories) All() []Category { return slices.Clone(t.list) }

// ForDevice returns the category of a case raised by rule on a device of
// deviceType: the category listing the rule, else the one listing the
// device type, else the default category.
func (t *Categories) ForDevice(deviceType, rule string) Category {
	if i, ok := t.byRule[rule]; ok {
		return t.list[i]
	}
	if i, ok := t.byType[deviceType]; ok {
		return t.list[i]
	}
	return t.list[t.def]
}
