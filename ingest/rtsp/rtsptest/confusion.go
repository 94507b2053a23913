// Package rtsptest holds what the tests of the picture diagnosis share:
// the confusion table of verdicts against a camera's known fault.
package rtsptest

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/gridwatch/gridwatch/ingest/rtsp"
)

// Healthy is the ground truth of a camera without a picture fault, and
// the verdict of a sample without a condition.
const Healthy = "none"

// Confusion counts verdicts by ground truth: truth -> found -> samples.
type Confusion map[string]map[string]int

// Add counts one sample whose truth is want and whose conditions are got;
// it returns whether the sample was judged right: exactly its condition,
// or none for a healthy camera.
func (c Confusion) Add(want string, got []rtsp.Condition) bool {
	if c[want] == nil {
		c[want] = map[string]int{}
	}
	if len(got) == 0 {
		c[want][Healthy]++
		return want == Healthy
	}
	for _, g := range got {
		c[want][string(g)]++
	}
	return len(got) == 1 && string(got[0]) == want
}

// Table renders the confusion table as Markdown: a row per ground truth, a
// column per condition found.
func (c Confusion) Table() string {
	cols := []string{Healthy}
	for _, cond := range rtsp.Conditions {
		cols = append(cols, string(cond))
	}
	var b strings.Builder
	b.WriteString("| truth \\ found | " + strings.Join(cols, " | ") + " |\n|---|")
	b.WriteString(strings.Repeat("---|", len(cols)) + "\n")
	for _, want := range slices.Sorted(maps.Keys(c)) {
		b.WriteString("| " + want + " |")
		for _, col := range cols {
			if n := c[want][col]; n > 0 {
				fmt.Fprintf(&b, " %d |", n)
			} else {
				b.WriteString(" · |")
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}
