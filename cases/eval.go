package cases

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"time"
)

// The evaluation (综合评价) counts assignments: an assignment is one
// dispatch of a case to a unit, from its dispatch event to the next
// dispatch of the case (or its end). An assignment belongs to the period of
// its dispatch, and everything that happened to it since counts for it,
// whenever it happened, so a case is counted once, in the period it was
// given to the unit. Storage tallies the assignments of a period per unit,
// grid or dispatcher (Tally); Evaluate turns the tallies into indicators,
// the composite and the score, and ranks them.

// Tally is what the stored events say of the assignments of a period that
// share a key (a unit, a grid, a dispatcher).
type Tally struct {
	Key string `json:"key"`
	// Received counts the assignments (dispatch events) of the period.
	Received int `json:"received"`
	// Misrouted counts assignments the unit returned (回退) and that were
	// then dispatched to another unit, or are waiting to be: counted
	// against the dispatcher, not the unit. A returned case voided or
	// merged before it was dispatched again is withdrawn instead.
	Misrouted int `json:"misrouted"`
	// WrongReturns counts assignments the unit returned and that came back
	// to the same unit: counted against the unit.
	WrongReturns int `json:"wrong_returns"`
	// Withdrawn counts assignments whose case was voided or merged into
	// another while assigned.
	Withdrawn int `json:"withdrawn"`
	// Signed counts signed-for assignments; SignedOnTime those signed by
	// their deadline.
	Signed       int `json:"signed"`
	SignedOnTime int `json:"signed_on_time"`
	// Handled counts assignments the unit reported handled; HandledOnTime
	// those whose last handle report met its (possibly extended) deadline.
	Handled       int `json:"handled"`
	HandledOnTime int `json:"handled_on_time"`
	// Reworked counts assignments that failed verification at least once;
	// Reworks the failed verifications.
	Reworked int `json:"reworked"`
	Reworks  int `json:"reworks"`
	// Extended counts assignments with an approved extension.
	Extended int `json:"extended"`
	// Closed counts assignments closed while with the unit; ClosedOnTime
	// those closed by the closing deadline.
	Closed       int `json:"closed"`
	ClosedOnTime int `json:"closed_on_time"`
	// Overdue counts the accountable assignments (not misrouted, not
	// withdrawn) that missed any deadline (a late sign-for, handle report
	// or closure, or an overdue event), each once.
	Overdue int `json:"overdue"`
	// SatisfactionSum and SatisfactionN add up the evaluations (1..5).
	SatisfactionSum int `json:"satisfaction_sum"`
	SatisfactionN   int `json:"satisfaction_n"`
	// SignTime and HandleTime add up, over signed and handled assignments,
	// the time from dispatch to sign-for and to the last handle report.
	SignTime   time.Duration `json:"-"`
	HandleTime time.Duration `json:"-"`
	// SignSettled, HandleSettled and CloseSettled count the accountable
	// assignments whose step has its outcome: done, or overdue (an
	// overdue event of the step while assigned), or the assignment over
	// (returned, withdrawn, closed, or dispatched again). The others are
	// pending for the step: not yet due, they count for no rate.
	SignSettled   int `json:"sign_settled"`
	HandleSettled int `json:"handle_settled"`
	CloseSettled  int `json:"close_settled"`
	// ExtendSettled counts the accountable assignments extended or whose
	// handling is settled; ReturnSettled the assignments (accountable or
	// not) signed for or over, which can no longer be returned.
	ExtendSettled int `json:"extend_settled"`
	ReturnSettled int `json:"return_settled"`
}

// Add adds o's counts to t's (t keeps its key).
func (t *Tally) Add(o Tally) {
	t.Received += o.Received
	t.Misrouted += o.Misrouted
	t.WrongReturns += o.WrongReturns
	t.Withdrawn += o.Withdrawn
	t.Signed += o.Signed
	t.SignedOnTime += o.SignedOnTime
	t.Handled += o.Handled
	t.HandledOnTime += o.HandledOnTime
	t.Reworked += o.Reworked
	t.Reworks += o.Reworks
	t.Extended += o.Extended
	t.Closed += o.Closed
	t.ClosedOnTime += o.ClosedOnTime
	t.Overdue += o.Overdue
	t.SatisfactionSum += o.SatisfactionSum
	t.SatisfactionN += o.SatisfactionN
	t.SignTime += o.SignTime
	t.HandleTime += o.HandleTime
	t.SignSettled += o.SignSettled
	t.HandleSettled += o.HandleSettled
	t.CloseSettled += o.CloseSettled
	t.ExtendSettled += o.ExtendSettled
	t.ReturnSettled += o.ReturnSettled
}

// ActionCount is how many events of a kind an actor recorded in a role:
// the evaluation of staff by role.
type ActionCount struct {
	Role  string    `json:"role"`
	Actor string    `json:"actor"`
	Kind  EventKind `json:"kind"`
	N     int       `json:"n"`
}

// Accountable is the number of assignments the key answers for: received,
// less the misrouted and the withdrawn ones.
func (t Tally) Accountable() int { return t.Received - t.Misrouted - t.Withdrawn }

// Indicators are the rates of a Tally, each in [0, 1], over the
// assignments whose outcome for it is settled (see Tally): a case still
// within its deadline for a step counts for none of the step's rates, and
// is counted pending instead. A rate of nothing settled (no accountable
// assignment, nothing handled, no evaluation) is nil: a unit whose only
// case was just dispatched has no on-time sign-for rate yet, rather than
// 0%.
type Indicators struct {
	SignOnTime     *float64 `json:"sign_on_time_rate"`     // 按时签收率: SignedOnTime / SignSettled
	Handling       *float64 `json:"handling_rate"`         // 处置率: Handled / HandleSettled
	HandlingOnTime *float64 `json:"handling_on_time_rate"` // 按期处置率: HandledOnTime / HandleSettled
	Closing        *float64 `json:"closing_rate"`          // 结案率: Closed / CloseSettled
	ClosingOnTime  *float64 `json:"closing_on_time_rate"`  // 按期结案率: ClosedOnTime / CloseSettled
	Rework         *float64 `json:"rework_rate"`           // 返工率: Reworked / Handled
	Extension      *float64 `json:"extension_rate"`        // 延期率: Extended / ExtendSettled
	Return         *float64 `json:"return_rate"`           // 回退率: WrongReturns / ReturnSettled (a unit), Misrouted / ReturnSettled (a dispatcher)
	// Satisfaction is the mean evaluation, 1..5.
	Satisfaction *float64 `json:"satisfaction"`
	// MTTA and MTTR are the mean times from dispatch to sign-for and to the
	// last handle report.
	MTTA time.Duration `json:"-"`
	MTTR time.Duration `json:"-"`
	// SignPending, HandlePending and ClosePending count the accountable
	// assignments not yet settled for the step.
	SignPending   int `json:"sign_pending"`
	HandlePending int `json:"handle_pending"`
	ClosePending  int `json:"close_pending"`
}

func ratio(n, d int) *float64 {
	if d <= 0 {
		return nil
	}
	r := float64(n) / float64(d)
	return &r
}

// IndicatorsOf computes t's rates. forDispatcher chooses the return rate
// of a dispatcher (misroutes) over that of a unit (wrong returns).
func IndicatorsOf(t Tally, forDispatcher bool) Indicators {
	acc := t.Accountable()
	in := Indicators{
		SignOnTime:     ratio(t.SignedOnTime, t.SignSettled),
		Handling:       ratio(t.Handled, t.HandleSettled),
		HandlingOnTime: ratio(t.HandledOnTime, t.HandleSettled),
		Closing:        ratio(t.Closed, t.CloseSettled),
		ClosingOnTime:  ratio(t.ClosedOnTime, t.CloseSettled),
		Rework:         ratio(t.Reworked, t.Handled),
		Extension:      ratio(t.Extended, t.ExtendSettled),
		Return:         ratio(t.WrongReturns, t.ReturnSettled),
		SignPending:    acc - t.SignSettled,
		HandlePending:  acc - t.HandleSettled,
		ClosePending:   acc - t.CloseSettled,
	}
	if forDispatcher {
		in.Return = ratio(t.Misrouted, t.ReturnSettled)
	}
	if t.SatisfactionN > 0 {
		s := float64(t.SatisfactionSum) / float64(t.SatisfactionN)
		in.Satisfaction = &s
	}
	if t.Signed > 0 {
		in.MTTA = t.SignTime / time.Duration(t.Signed)
	}
	if t.Handled > 0 {
		in.MTTR = t.HandleTime / time.Duration(t.Handled)
	}
	return in
}

// Weights weigh the indicators in the composite (综合指标值). Rates of
// what should be low (rework, extension, returns) enter as 1 - rate, satisfaction
// as (s - 1) / 4. An indicator without a value (nil) leaves its weight out.
type Weights struct {
	SignOnTime     float64 `yaml:"sign_on_time" json:"sign_on_time"`
	Handling       float64 `yaml:"handling" json:"handling"`
	HandlingOnTime float64 `yaml:"handling_on_time" json:"handling_on_time"`
	Closing        float64 `yaml:"closing" json:"closing"`
	ClosingOnTime  float64 `yaml:"closing_on_time" json:"closing_on_time"`
	Rework         float64 `yaml:"rework" json:"rework"`
	Extension      float64 `yaml:"extension" json:"extension"`
	Satisfaction   float64 `yaml:"satisfaction" json:"satisfaction"`
	// Return weighs 1 - 回退率 (a unit's wrong returns, a dispatcher's
	// misroutes); it defaults to 0, out of the composite.
	Return float64 `yaml:"return" json:"return"`
}

// DefaultWeights are the composite's default weights; they add up to 1.
var DefaultWeights = Weights{
	SignOnTime: 0.10, Handling: 0.10, HandlingOnTime: 0.25, Closing: 0.10,
	ClosingOnTime: 0.20, Rework: 0.10, Extension: 0.05, Satisfaction: 0.10,
}

// Composite is the weighted mean of the indicators on a 0..100 scale, or
// nil when no weighted indicator has a value.
func (w Weights) Composite(in Indicators) *float64 {
	var sum, weight float64
	add := func(wt float64, v *float64, invert bool) {
		if v == nil || wt <= 0 {
			return
		}
		x := *v
		if invert {
			x = 1 - x
		}
		sum += wt * x
		weight += wt
	}
	add(w.SignOnTime, in.SignOnTime, false)
	add(w.Handling, in.Handling, false)
	add(w.HandlingOnTime, in.HandlingOnTime, false)
	add(w.Closing, in.Closing, false)
	add(w.ClosingOnTime, in.ClosingOnTime, false)
	add(w.Rework, in.Rework, true)
	add(w.Extension, in.Extension, true)
	add(w.Return, in.Return, true)
	if in.Satisfaction != nil {
		s := (*in.Satisfaction - 1) / 4
		add(w.Satisfaction, &s, false)
	}
	if weight == 0 {
		return nil
	}
	c := 100 * sum / weight
	return &c
}

// Scoring is a unit's score (考核分): Base, plus points for each assignment
// signed for on time and each closed on time, less points for each overdue
// assignment, each failed verification and each wrong return. A Scoring
// without a Base is DefaultScoring (with its own Bands, if any); with one,
// its points and call-in score are as given, 0 counting nothing.
type Scoring struct {
	// Base defaults to 1000.
	Base float64 `yaml:"base" json:"base"`
	// SignOnTime defaults to 1 point per assignment signed for on time.
	SignOnTime float64 `yaml:"sign_on_time" json:"sign_on_time"`
	// CloseOnTime defaults to 2 points per assignment closed on time.
	CloseOnTime float64 `yaml:"close_on_time" json:"close_on_time"`
	// Overdue defaults to 5 points per overdue assignment.
	Overdue float64 `yaml:"overdue" json:"overdue"`
	// Rework defaults to 3 points per failed verification.
	Rework float64 `yaml:"rework" json:"rework"`
	// WrongReturn defaults to 5 points per wrong return.
	WrongReturn float64 `yaml:"wrong_return" json:"wrong_return"`
	// CallIn is the score below which a unit is called in (约谈). It
	// defaults to 800.
	CallIn float64 `yaml:"call_in" json:"call_in"`
	// Bands name score ranges, highest first; a unit gets the first band
	// whose Min its score reaches, and below them all the call-in band. They
	// default to 优秀 (1000), 良好 (900), 合格 (CallIn).
	Bands []Band `yaml:"bands" json:"bands"`
}

// Band is a named score range of the ranking.
type Band struct {
	Name string  `yaml:"name" json:"name"`
	Min  float64 `yaml:"min" json:"min"`
}

// CallInBand is the band of units scoring below Scoring.CallIn.
const CallInBand = "约谈 call-in"

// DefaultScoring is the score of a Scoring without a Base.
var DefaultScoring = Scoring{Base: 1000, SignOnTime: 1, CloseOnTime: 2, Overdue: 5, Rework: 3, WrongReturn: 5, CallIn: 800}

// withDefaults is s, or DefaultScoring when s has no Base, with the bands
// filled in.
func (s Scoring) withDefaults() Scoring {
	if s.Base == 0 {
		bands := s.Bands
		s = DefaultScoring
		s.Bands = bands
	}
	if len(s.Bands) == 0 {
		s.Bands = []Band{{"优秀 excellent", s.Base}, {"良好 good", s.Base - (s.Base-s.CallIn)/2}, {"合格 pass", s.CallIn}}
	}
	return s
}

// Score computes t's score.
func (s Scoring) Score(t Tally) float64 {
	s = s.withDefaults()
	return s.Base + s.SignOnTime*float64(t.SignedOnTime) + s.CloseOnTime*float64(t.ClosedOnTime) -
		s.Overdue*float64(t.Overdue) - s.Rework*float64(t.Reworks) - s.WrongReturn*float64(t.WrongReturns)
}

// Evaluation configures Evaluate.
type Evaluation struct {
	// Weights default to DefaultWeights when all zero.
	Weights Weights `yaml:"weights" json:"weights"`
	Scoring Scoring `yaml:"scoring" json:"scoring"`
}

// Check validates e, naming the key under prefix.
func (e Evaluation) Check(prefix string) error {
	w := e.Weights
	for _, v := range []float64{w.SignOnTime, w.Handling, w.HandlingOnTime, w.Closing, w.ClosingOnTime, w.Rework, w.Extension, w.Satisfaction, w.Return} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("'%sweights' must be >= 0", prefix)
		}
	}
	s := e.Scoring
	for _, v := range []float64{s.Base, s.CallIn, s.SignOnTime, s.CloseOnTime, s.Overdue, s.Rework, s.WrongReturn} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("'%sscoring' points must be >= 0", prefix)
		}
	}
	s = s.withDefaults()
	if s.CallIn > s.Base {
		return fmt.Errorf("'%sscoring.call_in' %g is above 'scoring.base' %g", prefix, s.CallIn, s.Base)
	}
	for i, b := range s.Bands {
		if b.Name == "" || i > 0 && b.Min >= s.Bands[i-1].Min {
			return errors.New("'" + prefix + "scoring.bands' need names and strictly decreasing min")
		}
	}
	return nil
}

// Result is the evaluation of one key.
type Result struct {
	Tally
	Indicators
	// Composite is 综合指标值, 0..100 (nil without data).
	Composite *float64 `json:"composite"`
	// Score is the unit score (units only; 0 otherwise).
	Score float64 `json:"score"`
	// Band names the score band; CallIn is set below the call-in score.
	Band   string `json:"band,omitempty"`
	CallIn bool   `json:"call_in"`
	// Rank is the place in the ranking, from 1.
	Rank int `json:"rank"`
}

// RankBy chooses what Evaluate ranks by.
type RankBy int

const (
	// ByScore ranks units: by score, then composite.
	ByScore RankBy = iota
	// ByComposite ranks grids and dispatchers by composite.
	ByComposite
)

// Evaluate computes the indicators, composites and, ranking by score, the
// scores and bands of tallies, and ranks them: highest first, ties broken
// by composite and key; equal values share a rank.
func (e Evaluation) Evaluate(tallies []Tally, by RankBy, forDispatcher bool) []Result {
	w := e.Weights
	if w == (Weights{}) {
		w = DefaultWeights
	}
	s := e.Scoring.withDefaults()
	out := make([]Result, len(tallies))
	for i, t := range tallies {
		r := Result{Tally: t, Indicators: IndicatorsOf(t, forDispatcher)}
		r.Composite = w.Composite(r.Indicators)
		if by == ByScore {
			r.Score = s.Score(t)
			r.Band, r.CallIn = CallInBand, r.Score < s.CallIn
			for _, b := range s.Bands {
				if r.Score >= b.Min {
					r.Band = b.Name
					break
				}
			}
			if r.CallIn {
				r.Band = CallInBand
			}
		}
		out[i] = r
	}
	comp := func(r Result) float64 {
		if r.Composite == nil {
			return -1
		}
		return *r.Composite
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Score != b.Score {
			return a.Score > b.Score
		}
		if comp(a) != comp(b) {
			return comp(a) > comp(b)
		}
		return a.Key < b.Key
	})
	for i := range out {
		out[i].Rank = i + 1
		if i > 0 && out[i].Score == out[i-1].Score && comp(out[i]) == comp(out[i-1]) {
			out[i].Rank = out[i-1].Rank
		}
	}
	return out
}
