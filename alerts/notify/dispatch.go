package notify

import "github.com/gridwatch/gridwatch/alerts"

// Dispatcher hands alert transitions to the notifiers, and is the one place
// that decides what is delivered: a transition whose alert a silence or a
// maintenance window covers (Transition.Silenced) reaches no notifier and
// is counted in gridwatch_notify_silenced_total. The web console's stream
// is no notifier: it still shows silenced transitions, marked.
type Dispatcher struct {
	// Targets receive every transition that is not silenced, in order.
	Targets []Notifier
	// Metrics defaults to unregistered metrics.
	Metrics *Metrics
}

// Run delivers the transitions of c until c is closed, such as an
// alerts.Subscription's C.
func (d *Dispatcher) Run(c <-chan alerts.Transition) {
	if d.Metrics == nil {
		d.Metrics = NewMetrics(nil)
	}
	for t := range c {
		if t.Silenced {
			d.Metrics.silenced.Inc()
			continue
		}
		for _, n := range d.Targets {
			n.Notify(t)
		}
	}
}
