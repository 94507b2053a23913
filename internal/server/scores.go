package server

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/gridwatch/gridwatch/alerts/notify"
	"github.com/gridwatch/gridwatch/broker"
	"github.com/gridwatch/gridwatch/cases"
	"github.com/gridwatch/gridwatch/storage"
)

// CaseEvaluationConfig are the cases.evaluation.* keys: the composite's
// weights, the unit scores and the daily score notice.
type CaseEvaluationConfig struct {
	Weights     CaseWeightsConfig `koanf:"weights"`
	Scoring     CaseScoringConfig `koanf:"scoring"`
	DailyNotice bool              `koanf:"daily_notice" help:"send each unit its score of the month so far once a day (webhook notify.webhook_url, MQTT cases/scores/{unit} with notify.mqtt)"`
	NoticeAt    time.Duration     `koanf:"notice_at" help:"time of day the daily score notices go out, after midnight in the calendar's timezone"`
}

// CaseWeightsConfig are the weights of the composite (综合指标值).
type CaseWeightsConfig struct {
	SignOnTime     float64 `koanf:"sign_on_time" help:"weight of 按时签收率 (signed for on time) in the composite"`
	Handling       float64 `koanf:"handling" help:"weight of 处置率 (handled)"`
	HandlingOnTime float64 `koanf:"handling_on_time" help:"weight of 按期处置率 (handled on time)"`
	Closing        float64 `koanf:"closing" help:"weight of 结案率 (closed)"`
	ClosingOnTime  float64 `koanf:"closing_on_time" help:"weight of 按期结案率 (closed on time)"`
	Rework         float64 `koanf:"rework" help:"weight of 1 - 返工率 (rework)"`
	Extension      float64 `koanf:"extension" help:"weight of 1 - 延期率 (extension)"`
	Satisfaction   float64 `koanf:"satisfaction" help:"weight of the satisfaction ((mean - 1) / 4)"`
	Return         float64 `koanf:"return" help:"weight of 1 - 回退率 (a unit's wrong returns, a dispatcher's misroutes); 0 leaves it out"`
}

// CaseScoringConfig is the unit score (考核分).
type CaseScoringConfig struct {
	Base        float64 `koanf:"base" help:"score of a unit before points are added and deducted"`
	CallIn      float64 `koanf:"call_in" help:"score below which a unit is called in (约谈); the bands are 优秀 from base, 良好 from halfway to call_in, 合格 from call_in"`
	SignOnTime  float64 `koanf:"sign_on_time" help:"points added per assignment signed for on time"`
	CloseOnTime float64 `koanf:"close_on_time" help:"points added per assignment closed on time"`
	Overdue     float64 `koanf:"overdue" help:"points deducted per overdue assignment"`
	Rework      float64 `koanf:"rework" help:"points deducted per failed verification"`
	WrongReturn float64 `koanf:"wrong_return" help:"points deducted per wrong return (a case returned that came back to the unit)"`
}

// defaults of the cases.evaluation.* keys.
func (c *CaseEvaluationConfig) defaults() {
	w := cases.DefaultWeights
	c.Weights = CaseWeightsConfig(w)
	c.Scoring = CaseScoringConfig{Base: 1000, CallIn: 800, SignOnTime: 1, CloseOnTime: 2, Overdue: 5, Rework: 3, WrongReturn: 5}
	c.DailyNotice, c.NoticeAt = true, 8*time.Hour
}

// evaluation is the cases.Evaluation of the keys.
func (c *CaseEvaluationConfig) evaluation() cases.Evaluation {
	sc := c.Scoring
	return cases.Evaluation{Weights: cases.Weights(c.Weights), Scoring: cases.Scoring{Base: sc.Base, CallIn: sc.CallIn,
		SignOnTime: sc.SignOnTime, CloseOnTime: sc.CloseOnTime, Overdue: sc.Overdue, Rework: sc.Rework, WrongReturn: sc.WrongReturn}}
}

// validate checks the cases.evaluation.* keys.
func (c *CaseEvaluationConfig) validate(bad func(key, format string, args ...any)) {
	if err := c.evaluation().Check("cases.evaluation."); err != nil {
		bad("cases.evaluation", "%v", err)
	}
	sc := c.Scoring
	if sc.Base <= 0 {
		bad("cases.evaluation.scoring.base", "must be > 0")
	}
	for key, v := range map[string]float64{"call_in": sc.CallIn, "sign_on_time": sc.SignOnTime, "close_on_time": sc.CloseOnTime,
		"overdue": sc.Overdue, "rework": sc.Rework, "wrong_return": sc.WrongReturn} {
		if v < 0 {
			bad("cases.evaluation.scoring."+key, "must be >= 0 (0: none)")
		}
	}
	if c.NoticeAt < 0 || c.NoticeAt >= 24*time.Hour {
		bad("cases.evaluation.notice_at", "must be a time of day, 0s to 23h59m")
	}
}

// scoreNotice runs the daily score notice.
type scoreNotice struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startScoreNotice sends each unit its score every day through the
// notifiers that are configured (cases.evaluation.daily_notice).
func (s *Server) startScoreNotice(ctx context.Context) {
	cfg := &s.Config.Cases.Evaluation
	if !cfg.DailyNotice || s.cases.svc == nil || (s.staff.webhook == nil && !s.Config.Notify.MQTT) {
		return
	}
	var mqtt *notify.MQTT
	if s.Config.Notify.MQTT {
		mqtt = &notify.MQTT{Publish: s.broker.Publish, QoS: 1, Logger: s.Logger, Metrics: s.staff.metrics}
	}
	webhook := s.staff.webhook
	n := &cases.Notice{
		Tallies: func(ctx context.Context, from, to time.Time) ([]cases.Tally, error) {
			return s.db.CaseTallies(ctx, storage.CaseStatsByUnit, from, to, nil)
		},
		Units: func() []string {
			var out []string
			for _, u := range s.Units() {
				out = append(out, u.Code)
			}
			return out
		},
		Send: func(sn cases.ScoreNotice) {
			body, err := json.Marshal(sn)
			if err != nil {
				s.Logger.Error("score notice not encoded", "unit", sn.Unit, "err", err)
				return
			}
			m := notify.Message{Delivery: "score/" + sn.Unit + "/" + sn.Day, Event: "case_score", Topic: ScoreTopic(sn.Unit), Body: body}
			if webhook != nil {
				webhook.Send(m)
			}
			if mqtt != nil {
				mqtt.Send(m)
			}
		},
		Evaluation: cfg.evaluation(),
		Location:   s.cases.calendar.Location(),
		At:         cfg.NoticeAt,
		Now:        s.Now,
		Logger:     s.Logger.With("part", "score notice"),
	}
	if s.coord.coord != nil {
		n.Duty = s.coord.scores.Do
		n.Claim = func(_ context.Context, day string) (bool, error) { return s.coord.claimDay(leaseScoreNotice, day) }
	}
	ctx, s.scores.cancel = context.WithCancel(ctx)
	s.scores.wg.Add(1)
	go func() {
		defer s.scores.wg.Done()
		n.Run(ctx)
	}()
}

// closeScoreNotice stops the daily notice; safe when it never started.
func (s *Server) closeScoreNotice() {
	if s.scores.cancel != nil {
		s.scores.cancel()
		s.scores.wg.Wait()
	}
}

// ScoreTopic is the MQTT topic of a unit's score notice.
func ScoreTopic(unit string) string { return broker.ScoreTopicPrefix + notify.TopicLevel(unit) }
