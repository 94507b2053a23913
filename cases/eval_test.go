package cases

import (
	"math"
	"strings"
	"testing"
	"time"
)

func near(t *testing.T, what string, got *float64, want float64) {
	t.Helper()
	if got == nil || math.Abs(*got-want) > 1e-9 {
		t.Errorf("%s = %v, want %g", what, deref(got), want)
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestIndicators(t *testing.T) {
	tl := Tally{Key: "U", Received: 12, Misrouted: 1, WrongReturns: 2, Withdrawn: 1, Signed: 9, SignedOnTime: 8,
		Handled: 8, HandledOnTime: 6, Reworked: 2, Reworks: 3, Extended: 1, Closed: 7, ClosedOnTime: 5, Overdue: 3,
		SatisfactionSum: 17, SatisfactionN: 4, SignTime: 9 * 10 * time.Minute, HandleTime: 8 * 3 * time.Hour,
		SignSettled: 10, HandleSettled: 10, CloseSettled: 10, ExtendSettled: 10, ReturnSettled: 12}
	in := IndicatorsOf(tl, false)
	// 10 accountable: 12 received less 1 misrouted and 1 withdrawn, all
	// settled.
	near(t, "sign on time", in.SignOnTime, 0.8)
	near(t, "handling", in.Handling, 0.8)
	near(t, "handling on time", in.HandlingOnTime, 0.6)
	near(t, "closing", in.Closing, 0.7)
	near(t, "closing on time", in.ClosingOnTime, 0.5)
	near(t, "rework", in.Rework, 0.25)
	near(t, "extension", in.Extension, 0.1)
	near(t, "return (unit)", in.Return, 2.0/12)
	near(t, "satisfaction", in.Satisfaction, 4.25)
	if in.MTTA != 10*time.Minute || in.MTTR != 3*time.Hour {
		t.Errorf("MTTA %s, MTTR %s", in.MTTA, in.MTTR)
	}
	near(t, "return (dispatcher)", IndicatorsOf(tl, true).Return, 1.0/12)

	// The composite with the default weights, by hand.
	want := 100 * (0.10*0.8 + 0.10*0.8 + 0.25*0.6 + 0.10*0.7 + 0.20*0.5 + 0.10*(1-0.25) + 0.05*(1-0.1) + 0.10*(4.25-1)/4)
	near(t, "composite", DefaultWeights.Composite(in), want)
	// Without evaluations, satisfaction's weight is left out.
	in.Satisfaction = nil
	want = 100 * (0.10*0.8 + 0.10*0.8 + 0.25*0.6 + 0.10*0.7 + 0.20*0.5 + 0.10*(1-0.25) + 0.05*(1-0.1)) / 0.9
	near(t, "composite without satisfaction", DefaultWeights.Composite(in), want)
	// A weight of the return rate (none by default) brings in 1 - 2/12.
	withReturn := DefaultWeights
	withReturn.Return = 0.1
	want = 100 * (0.10*0.8 + 0.10*0.8 + 0.25*0.6 + 0.10*0.7 + 0.20*0.5 + 0.10*(1-0.25) + 0.05*(1-0.1) + 0.10*(1-2.0/12)) / 1.0
	near(t, "composite with the return rate", withReturn.Composite(in), want)
	if c := DefaultWeights.Composite(IndicatorsOf(Tally{Key: "idle"}, false)); c != nil {
		t.Errorf("composite of nothing = %v", *c)
	}
	// Dispatched, within the sign-for deadline: nothing to judge yet, so
	// no rate (not 0%) and no composite, and pending for every step; once
	// it is overdue for the sign-for, the sign-for rate counts it, and
	// the other steps still wait.
	waiting := Tally{Key: "new", Received: 1}
	if in := IndicatorsOf(waiting, false); in.SignOnTime != nil || in.HandlingOnTime != nil || in.Closing != nil || in.Extension != nil ||
		in.Return != nil || DefaultWeights.Composite(in) != nil || in.SignPending != 1 || in.HandlePending != 1 || in.ClosePending != 1 {
		t.Errorf("a pending assignment has rates: %+v", in)
	}
	waiting.Overdue, waiting.SignSettled = 1, 1
	if in := IndicatorsOf(waiting, false); in.HandlingOnTime != nil || in.Closing != nil || in.SignPending != 0 || in.HandlePending != 1 {
		t.Errorf("late for its sign-for only: %+v", in)
	}
	near(t, "sign on time, overdue", IndicatorsOf(waiting, false).SignOnTime, 0)
	// One of two signed for, on time, the other within its deadline: the
	// rate is of the one settled, 100%, not 50%.
	signed := Tally{Key: "signed", Received: 2, Signed: 1, SignedOnTime: 1, SignSettled: 1, ReturnSettled: 1}
	near(t, "sign on time, one of two signed", IndicatorsOf(signed, false).SignOnTime, 1)
	near(t, "return, one of two signed", IndicatorsOf(signed, false).Return, 0)
	if in := IndicatorsOf(signed, false); in.HandlingOnTime != nil || in.SignPending != 1 {
		t.Errorf("handling on time before anything is handled or late: %+v", in)
	}

	// The score: 1000 + 8×1 + 5×2 − 3×5 − 3×3 − 2×5.
	if s := (Scoring{}).Score(tl); s != 1000+8+10-15-9-10 {
		t.Errorf("score %g", s)
	}
}

func TestEvaluateRanksAndBands(t *testing.T) {
	e := Evaluation{}
	res := e.Evaluate([]Tally{
		{Key: "late", Received: 50, Signed: 50, Overdue: 45},                       // 1000 − 225 = 775: called in
		{Key: "good", Received: 10, Signed: 10, SignedOnTime: 10, ClosedOnTime: 5}, // 1020
		{Key: "tie-b", Received: 2, Overdue: 2},                                    // 990
		{Key: "tie-a", Received: 2, Overdue: 2},                                    // 990
		{Key: "idle"},                                                              // 1000
		{Key: "mid", Received: 30, Overdue: 30},                                    // 850
	}, ByScore, false)
	var got []string
	for _, r := range res {
		got = append(got, r.Key)
	}
	if strings.Join(got, ",") != "good,idle,tie-a,tie-b,mid,late" {
		t.Fatalf("order %v", got)
	}
	bands := map[string]string{}
	ranks := map[string]int{}
	for _, r := range res {
		bands[r.Key], ranks[r.Key] = r.Band, r.Rank
		if r.CallIn != (r.Key == "late") {
			t.Errorf("%s: call-in %v at %g", r.Key, r.CallIn, r.Score)
		}
	}
	if bands["good"] != "优秀 excellent" || bands["idle"] != "优秀 excellent" || bands["tie-a"] != "良好 good" ||
		bands["mid"] != "合格 pass" || bands["late"] != CallInBand {
		t.Errorf("bands %v", bands)
	}
	if ranks["tie-a"] != 3 || ranks["tie-b"] != 3 || ranks["mid"] != 5 {
		t.Errorf("ranks %v: equal scores and composites share a rank", ranks)
	}

	// With a base, the points not given count nothing: here only overdue
	// ones are deducted.
	custom := Evaluation{Scoring: Scoring{Base: 100, Overdue: 10, CallIn: 60, Bands: []Band{{"A", 90}, {"B", 60}}}}
	r := custom.Evaluate([]Tally{{Key: "x", Overdue: 3, SignedOnTime: 4, ClosedOnTime: 2, Reworks: 1}}, ByScore, false)[0]
	if r.Score != 70 || r.Band != "B" || r.CallIn {
		t.Errorf("custom scoring: %+v", r)
	}
}

func TestEvaluationCheck(t *testing.T) {
	if err := (Evaluation{}).Check("cases.evaluation."); err != nil {
		t.Fatal(err)
	}
	for _, e := range []Evaluation{
		{Weights: Weights{Handling: -1}},
		{Scoring: Scoring{Overdue: -5}},
		{Scoring: Scoring{Base: 100, CallIn: 200}},
		{Scoring: Scoring{Bands: []Band{{"A", 900}, {"B", 950}}}},
	} {
		if err := e.Check("cases.evaluation."); err == nil || !strings.Contains(err.Error(), "'cases.evaluation.") {
			t.Errorf("%+v: err %v", e, err)
		}
	}
}
