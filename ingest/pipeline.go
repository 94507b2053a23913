package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/gridwatch/gridwatch/devices"
)

// ReasonUnknownDevice is the rejection reason of a message from a device id
// the registry does not hold.
const ReasonUnknownDevice = "unknown_device"

// DefaultRejectedPayloadBytes is how much of a rejected payload is kept: enough
// to see what a device sent, too little for a flood of bad messages to fill
// the rejected table.
const DefaultRejectedPayloadBytes = 256

// Pipeline turns telemetry messages into readings for the telemetry batcher
// and, for what cannot be stored, rejections for the rejected batcher. Its
// methods are safe for concurrent use; settings must not change after the
// first message.
type Pipeline struct {
	// Lookup finds a device in the registry. Required.
	Lookup func(id string) (devices.Device, bool)
	// Telemetry batches readings. Required; started and closed by the owner.
	Telemetry *Batcher[Reading]
	// Rejected batches rejections. Required; started and closed by the owner.
	Rejected *Batcher[Rejection]
	// Decoder decodes payloads; its zero value uses the default limits.
	Decoder Decoder
	// RejectedPayloadBytes is how many leading bytes of a rejected payload
	// are kept. It defaults to 256.
	RejectedPayloadBytes int
	// Now tells the receive time. It defaults to time.Now. The decoder's
	// future window is judged against the later of Now and the time Now
	// told at the first message plus the monotonic time elapsed since, so a
	// wall clock stepped back (NTP, a resumed VM) rejects no device's
	// correct timestamp as bad_timestamp.
	Now func() time.Time
	// Logger logs rejected messages at debug level. It defaults to
	// discarding.
	Logger *slog.Logger
	// Metrics counts messages, readings and rejections. It defaults to
	// unregistered metrics.
	Metrics *PipelineMetrics
	// Observe, when set, receives the decoded readings of each message the
	// batcher took, such as the alert engine's ObserveReadings; readings of
	// a message refused (ErrNotStored) are not evaluated, since the device
	// sends them again. It is called on the client's goroutine and must
	// neither block nor keep the slice.
	Observe func([]Reading)
	// Admit, when set, is asked before each message; an error refuses the
	// message, unread, with an error wrapping it and ErrNotStored (the spool
	// is full). It defaults to admitting all.
	Admit func() error
	// Stored, when set, is asked about the readings of a redelivered message
	// (the MQTT DUP flag: the device missed the PUBACK of an earlier copy,
	// say because gridwatch crashed after the copy was durable), all of one
	// device: it sets stored[i] when readings[i] is stored or durable
	// already. Those readings are not stored again but counted; a message
	// all of whose readings were is acknowledged as stored. On an error the
	// readings are stored (a duplicate rather than a loss). It defaults to
	// storing redeliveries again.
	Stored func(ctx context.Context, readings []Reading, stored []bool) error

	once    sync.Once
	initErr error
	// epoch is Now at the first message, and epochMono the monotonic clock
	// then: epoch plus the monotonic time since is a wall clock no step
	// sets back.
	epoch, epochMono time.Time
	scratch          sync.Pool // of *pipelineScratch
}

// pipelineScratch holds the buffers of one message, reused across messages.
type pipelineScratch struct {
	points   []Point
	readings []Reading
	stored   []bool
}

// setDefaults checks the required settings and fills in defaults.
func (p *Pipeline) setDefaults() {
	if p.Lookup == nil || p.Telemetry == nil || p.Rejected == nil {
		p.initErr = errors.New("pipeline: Lookup, Telemetry and Rejected are required")
	}
	if p.RejectedPayloadBytes <= 0 {
		p.RejectedPayloadBytes = DefaultRejectedPayloadBytes
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	if p.Metrics == nil {
		p.Metrics = NewPipelineMetrics(nil)
	}
	p.scratch.New = func() any { return new(pipelineScratch) }
	p.epoch, p.epochMono = p.Now(), time.Now()
}

// latest returns the latest time in ms since the epoch that the wall clock
// is known to have passed: its reading at the first message plus the
// monotonic time since.
func (p *Pipeline) latest() int64 {
	return p.epoch.UnixMilli() + time.Since(p.epochMono).Milliseconds()
}

// HandleTelemetry decodes the payload of a devices/{id}/telemetry message
// from deviceID and hands its readings, stamped with the device's grid, to
// the telemetry batcher and its problems to the rejected batcher. The broker
// calls it from the client's goroutine, so a full batcher slows that client.
//
// dup is the MQTT DUP flag: the message may have been received before (see
// Stored).
//
// The Receipt tells when the readings taken are written (with a durable
// spool: fsynced on disk); the broker waits for it before a PUBACK in
// durable-ack mode. The error is nil when every value was taken; it wraps
// ErrUnknownDevice when the device is not registered; ErrMalformed when
// values were rejected (the good ones beside them are taken); and
// ErrNotStored when the message was refused or a batcher dropped rows.
func (p *Pipeline) HandleTelemetry(ctx context.Context, deviceID, topic string, payload []byte, dup bool) (Receipt, error) {
	p.once.Do(p.setDefaults)
	if p.initErr != nil {
		return Receipt{}, p.initErr
	}
	if p.Admit != nil {
		if err := p.Admit(); err != nil {
			p.Metrics.message(outcomeDropped)
			return Receipt{}, fmt.Errorf("device %q: %w: %w", deviceID, ErrNotStored, err)
		}
	}
	received := p.Now().UnixMilli()
	dev, ok := p.Lookup(deviceID)
	if !ok {
		problems := []Problem{{Reason: ReasonUnknownDevice, Detail: "device is not registered"}}
		rejErr := p.reject(ctx, received, deviceID, topic, payload, problems)
		p.Metrics.message(outcomeUnknownDevice)
		return Receipt{}, errors.Join(fmt.Errorf("device %q: %w", deviceID, ErrUnknownDevice), rejErr)
	}

	sc := p.scratch.Get().(*pipelineScratch)
	defer p.scratch.Put(sc)
	var problems []Problem
	sc.points, problems = p.Decoder.Decode(payload, received, p.latest(), sc.points[:0])
	// The decoder knows JSON, not devices; the catalog says which metrics
	// the device's type has and their physical ranges.
	typ, _ := devices.LookupType(dev.Type)
	var invalid []Problem
	sc.points, invalid = Validate(typ, sc.points)
	if room := p.Decoder.MaxProblems - len(problems); len(invalid) > room {
		// Validation obeys the decoder's bound on listed problems, so a
		// message of a thousand unknown metrics is a few rejected rows.
		room = max(room, 0)
		problems = append(problems, invalid[:room]...)
		invalid = []Problem{{Reason: ReasonTooManyProblems, Detail: fmt.Sprintf("%d more invalid values not listed", len(invalid)-room)}}
	}
	problems = append(problems, invalid...)
	sc.readings = sc.readings[:0]
	for _, pt := range sc.points {
		sc.readings = append(sc.readings, Reading{
			TS: pt.TS, Received: received, Device: dev.ID, Grid: dev.Grid, Metric: pt.Metric, Value: pt.Value,
		})
	}

	duplicates := 0
	if dup && p.Stored != nil && len(sc.readings) > 0 {
		duplicates = p.dropStored(ctx, sc)
	}

	var (
		receipt          Receipt
		storeErr, rejErr error
	)
	if len(sc.readings) > 0 {
		var err error
		receipt, err = p.Telemetry.Add(ctx, sc.readings...)
		p.Metrics.readings.Add(float64(len(sc.readings)))
		switch {
		case err != nil:
			// The broker refuses the message and a QoS 1 device sends it
			// again: evaluating it now would count its readings twice.
			storeErr = fmt.Errorf("device %q: store readings: %w: %w", deviceID, ErrNotStored, err)
		case p.Observe != nil:
			p.Observe(sc.readings)
		}
	}
	var malformed error
	if len(problems) > 0 {
		rejErr = p.reject(ctx, received, deviceID, topic, payload, problems)
		malformed = fmt.Errorf("device %q: %d problems, first %s: %s: %w",
			deviceID, len(problems), problems[0].Reason, problems[0].Detail, ErrMalformed)
		p.Logger.Debug("telemetry rejected", "device", deviceID, "readings", len(sc.readings),
			"problems", len(problems), "reason", problems[0].Reason, "detail", problems[0].Detail)
	}

	outcome := outcomeStored
	switch {
	case storeErr != nil || rejErr != nil:
		outcome = outcomeDropped
	case duplicates > 0 && len(sc.readings) == 0 && len(problems) == 0:
		outcome = outcomeDuplicate
	case len(problems) > 0 && len(sc.readings) > 0:
		outcome = outcomePartial
	case len(problems) > 0:
		outcome = outcomeRejected
	}
	p.Metrics.message(outcome)
	return receipt, errors.Join(malformed, storeErr, rejErr)
}

// dropStored removes from sc.readings those Stored says are stored already,
// counts them and returns how many there were. When Stored fails, it keeps
// them all.
func (p *Pipeline) dropStored(ctx context.Context, sc *pipelineScratch) int {
	sc.stored = slices.Grow(sc.stored[:0], len(sc.readings))[:len(sc.readings)]
	clear(sc.stored)
	if err := p.Stored(ctx, sc.readings, sc.stored); err != nil {
		p.Metrics.duplicateChecks.WithLabelValues(checkFailed).Inc()
		p.Logger.Warn("redelivered telemetry: cannot tell whether it is stored already; storing it",
			"device", sc.readings[0].Device, "readings", len(sc.readings), "err", err)
		return 0
	}
	kept := sc.readings[:0]
	for i, r := range sc.readings {
		if !sc.stored[i] {
			kept = append(kept, r)
		}
	}
	n := len(sc.readings) - len(kept)
	sc.readings = kept
	p.Metrics.duplicateChecks.WithLabelValues(checkDone).Inc()
	p.Metrics.duplicates.Add(float64(n))
	return n
}

// reject hands one rejection per problem to the rejected batcher, keeping
// the first RejectedPayloadBytes of the payload.
func (p *Pipeline) reject(ctx context.Context, received int64, deviceID, topic string, payload []byte, problems []Problem) error {
	payload = payload[:min(len(payload), p.RejectedPayloadBytes)]
	rows := make([]Rejection, len(problems))
	for i, pr := range problems {
		rows[i] = Rejection{
			TS: received, Device: deviceID, Topic: topic, Reason: pr.Reason, Detail: pr.Detail, Payload: payload,
		}
		p.Metrics.rejections.WithLabelValues(pr.Reason).Inc()
	}
	if _, err := p.Rejected.Add(ctx, rows...); err != nil {
		return fmt.Errorf("device %q: store rejections: %w", deviceID, err)
	}
	return nil
}
