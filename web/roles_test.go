package web_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/gridwatch/gridwatch/api"
	"github.com/gridwatch/gridwatch/cases"
)

// roleCase is one line of the lifecycle's answers: what a token of Role
// may do to a case of Status, its own or not (reported by it, dispatched
// to its unit), with a request Pending and evaluated or not.
type roleCase struct {
	Role      string   `json:"role"`
	Status    string   `json:"status"`
	Own       bool     `json:"own"`
	Pending   string   `json:"pending"`
	Evaluated bool     `json:"evaluated"`
	Actions   []string `json:"actions"`
}

// ready are the preconditions of the lifecycle's actions beyond cases.May
// (cases.Service.apply): a request needs none waiting, an approval its
// request, an evaluation a case not evaluated yet. The console offers a
// refusal only for a request waiting too, which the lifecycle does not
// insist on.
func ready(k cases.EventKind, c *cases.Case) bool {
	switch k {
	case cases.EventExtendRequest, cases.EventSuspendRequest:
		return c.Pending == ""
	case cases.EventExtendApprove, cases.EventExtendReject:
		return c.Pending == cases.EventExtendRequest
	case cases.EventSuspendApprove, cases.EventSuspendReject:
		return c.Pending == cases.EventSuspendRequest
	case cases.EventEvaluate:
		return c.Satisfaction == 0
	}
	return true
}

// TestConsoleRolesMatchLifecycle checks the console's table of who may do
// what (src/roles.js, run by node: e2e/roles.test.mjs) against the case
// loop's own rules (cases.May) for every API role, status and case, so the
// console shows exactly the actions the server would take: no button that
// can only be refused, none missing.
func TestConsoleRolesMatchLifecycle(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the console's role table is checked by node: %v", err)
		}
		t.Skipf("no node: %v", err)
	}
	var roles []string
	for r := api.RoleViewer; r <= api.RoleAdmin; r++ {
		roles = append(roles, r.String())
	}
	statuses := []cases.Status{cases.StatusReceived, cases.StatusRegistered, cases.StatusDispatched, cases.StatusHandling,
		cases.StatusSuspended, cases.StatusHandled, cases.StatusVerified, cases.StatusClosed, cases.StatusVoided}
	var table []roleCase
	for _, role := range roles {
		for _, st := range statuses {
			for _, own := range []bool{true, false} {
				for _, pending := range []cases.EventKind{"", cases.EventExtendRequest, cases.EventSuspendRequest} {
					for _, evaluated := range []bool{false, true} {
						c := cases.Case{ID: "C20260101-AAAAAAAA", Status: st, Reporter: "someone", Unit: "other-unit", Pending: pending}
						if own {
							c.Reporter, c.Unit = "me", "my-unit"
						}
						if evaluated {
							c.Satisfaction = 4
						}
						actor := cases.Actor{Name: "me", Role: cases.Role(role)}
						if role == api.RoleUnit.String() {
							actor.Unit = "my-unit"
						}
						line := roleCase{Role: role, Status: string(st), Own: own, Pending: string(pending), Evaluated: evaluated, Actions: []string{}}
						for _, k := range cases.Actions() {
							if cases.May(&c, k, actor) == nil && ready(k, &c) {
								line.Actions = append(line.Actions, string(k))
							}
						}
						table = append(table, line)
					}
				}
			}
		}
	}
	raw, err := json.Marshal(map[string]any{"roles": roles, "table": table})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "roles.json")
	if err := os.WriteFile(file, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, "--test", "--test-reporter=spec", "e2e/roles.test.mjs")
	cmd.Env = append(os.Environ(), "GW_ROLES="+file)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test e2e/roles.test.mjs: %v\n%s", err, out)
	}
}
