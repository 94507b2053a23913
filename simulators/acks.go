package simulators

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/gridwatch/gridwatch/storage"
)

// Ack is a message the broker acknowledged (for QoS 0: a message sent).
type Ack struct {
	Device string
	// TS is the message's "ts" in ms since the epoch: a fleet gives each
	// message of a device its own.
	TS int64
	// Readings is how many readings the message carried.
	Readings int
}

// ackHeader is the first line of an acks file.
var ackHeader = []string{"device", "ts", "readings"}

// AckLog records acknowledged messages, so that a checker can tell later
// whether each was stored exactly once. Its Add is a Fleet's OnSent. It is
// safe for concurrent use.
type AckLog struct {
	mu   sync.Mutex
	w    *bufio.Writer
	csv  *csv.Writer
	acks []Ack
	n    int
	err  error
}

// NewAckLog returns a log that writes every ack to w as a CSV line
// (device,ts,readings, after a header), keeping none in memory; a nil w
// keeps them in memory instead, for Acks.
func NewAckLog(w io.Writer) *AckLog {
	l := &AckLog{}
	if w != nil {
		l.w = bufio.NewWriter(w)
		l.csv = csv.NewWriter(l.w)
		l.err = l.csv.Write(ackHeader)
	}
	return l
}

// Add records a.
func (l *AckLog) Add(a Ack) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	if l.csv == nil {
		l.acks = append(l.acks, a)
		return
	}
	if l.err == nil {
		l.err = l.csv.Write([]string{a.Device, strconv.FormatInt(a.TS, 10), strconv.Itoa(a.Readings)})
	}
}

// Len returns the number of acks recorded.
func (l *AckLog) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// Acks returns a copy of the acks kept in memory: all of them for a log
// without writer, none otherwise.
func (l *AckLog) Acks() []Ack {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Ack(nil), l.acks...)
}

// Flush writes out what is buffered and returns the first write error.
func (l *AckLog) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.csv == nil {
		return nil
	}
	l.csv.Flush()
	if l.err == nil {
		l.err = l.csv.Error()
	}
	if l.err == nil {
		l.err = l.w.Flush()
	}
	return l.err
}

// ReadAcks reads a file written by an AckLog.
func ReadAcks(r io.Reader) ([]Ack, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = len(ackHeader)
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("acks: header: %w", err)
	}
	for i, h := range ackHeader {
		if head[i] != h {
			return nil, fmt.Errorf("acks: header %q, want %q", head, ackHeader)
		}
	}
	var acks []Ack
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return acks, nil
		}
		if err != nil {
			return nil, fmt.Errorf("acks: %w", err)
		}
		line, _ := cr.FieldPos(0)
		// A CSV reader turns a quoted field's \r\n into \n, so a device
		// id with a control character would not read back as written; no
		// device id holds one.
		if strings.IndexFunc(rec[0], unicode.IsControl) >= 0 {
			return nil, fmt.Errorf("acks: line %d: device %q: a control character", line, rec[0])
		}
		ts, err := strconv.ParseInt(rec[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("acks: line %d: ts %q: %w", line, rec[1], err)
		}
		n, err := strconv.Atoi(rec[2])
		if err != nil || n < 1 {
			return nil, fmt.Errorf("acks: line %d: readings %q: want a positive count", line, rec[2])
		}
		acks = append(acks, Ack{Device: rec[0], TS: ts, Readings: n})
	}
}

// SetCheck is the outcome of comparing acknowledged messages with the
// telemetry stored.
type SetCheck struct {
	// Acked is the number of acknowledged messages.
	Acked int `json:"acked"`
	// Missing is the acknowledged messages with fewer distinct readings
	// stored than they carried.
	Missing int `json:"missing"`
	// Duplicates is the readings stored more than once, of any message.
	Duplicates int `json:"duplicates"`
	// Examples names up to maxExamples of the messages missing and of
	// those with readings duplicated (device@ts), for finding them in the
	// logs and the tables.
	Examples []string `json:"examples,omitempty"`
}

// maxExamples is how many messages SetCheck.Examples names of each kind.
const maxExamples = 5

// OK reports whether nothing acknowledged is missing and nothing is
// duplicated.
func (c SetCheck) OK() bool { return c.Missing == 0 && c.Duplicates == 0 }

func (c SetCheck) String() string {
	out := fmt.Sprintf("%d acknowledged messages: %d missing, %d readings duplicated", c.Acked, c.Missing, c.Duplicates)
	if len(c.Examples) > 0 {
		out += " (" + strings.Join(c.Examples, ", ") + ")"
	}
	return out
}

// CheckAcks compares acks with stored, as storage.DB.TelemetryMessages
// counts it. A message stored but not acknowledged (its PUBACK was lost on
// the way) is neither missing nor a duplicate.
func CheckAcks(acks []Ack, stored map[string]map[int64]storage.MessageRows) SetCheck {
	c := SetCheck{Acked: len(acks)}
	for _, a := range acks {
		m := stored[a.Device][a.TS]
		if m.Rows-m.Repeated < uint64(a.Readings) {
			if c.Missing++; c.Missing <= maxExamples {
				c.Examples = append(c.Examples, fmt.Sprintf("missing %s@%d: %d of %d readings", a.Device, a.TS, m.Rows-m.Repeated, a.Readings))
			}
		}
	}
	duplicated := 0
	for device, byTS := range stored {
		for ts, m := range byTS {
			if m.Repeated == 0 {
				continue
			}
			c.Duplicates += int(m.Repeated)
			if duplicated++; duplicated <= maxExamples {
				c.Examples = append(c.Examples, fmt.Sprintf("duplicated %s@%d: %d rows too many", device, ts, m.Repeated))
			}
		}
	}
	return c
}

// CheckStored compares acks with the telemetry in db, again every second
// while messages are missing (a spool may still be replaying), until wait
// has passed or ctx ends.
func CheckStored(ctx context.Context, db *storage.DB, acks []Ack, wait time.Duration) (SetCheck, error) {
	deadline := time.Now().Add(wait)
	for {
		stored, err := db.TelemetryMessages(ctx)
		if err != nil {
			return SetCheck{}, err
		}
		c := CheckAcks(acks, stored)
		if c.Missing == 0 || !time.Now().Before(deadline) {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return c, nil
		case <-time.After(time.Second):
		}
	}
}
