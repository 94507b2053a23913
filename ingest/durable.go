package ingest

import (
	"maps"
	"sync"
	"unique"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
)

// DefaultDurableIndexKeys bounds a DurableIndex: about 53 MiB of keys (16
// bytes a key in its segment's list, about 37 in the map), the readings of
// a few minutes of a large fleet's spool.
const DefaultDurableIndexKeys = 1 << 20

// durableIndexShrinkKeys is the fewest keys the index's map must have held
// before it is rebuilt smaller (see DurableIndex.Remove).
const durableIndexShrinkKeys = 1 << 14

// readingKey identifies a telemetry row: (device, metric, ts). The device
// and metric are interned as one pair, so that a key is 16 bytes and holds
// no Arrow buffer.
type readingKey struct {
	series unique.Handle[seriesName]
	ts     int64
}

// seriesName is a device's metric.
type seriesName struct{ device, metric string }

// keyOf returns the key of a reading; unique.Make copies the strings, out
// of an Arrow buffer too.
func keyOf(device, metric string, ts int64) readingKey {
	return readingKey{series: unique.Make(seriesName{device, metric}), ts: ts}
}

// DurableIndex knows the readings of the telemetry segments a disk spool
// holds (a spool.Index): those recovered at start and those spooled since,
// until their replay stored them in ClickHouse. With ClickHouse, it tells
// whether the readings of a redelivered message are durable already. It
// holds at most MaxKeys readings; the readings of a segment beyond that are
// not indexed (a redelivery of them is then stored twice, never lost).
// Its methods are safe for concurrent use.
type DurableIndex struct {
	// MaxKeys bounds the readings indexed. It defaults to
	// DefaultDurableIndexKeys.
	MaxKeys int

	mu   sync.Mutex
	segs map[uint64][]readingKey
	keys map[readingKey]int // how many indexed segments hold the key
	size int                // keys held by segs, with repeats
	peak int                // the most keys held since keys was made
}

// Add indexes the readings of segment seq when it holds telemetry (a record
// of TelemetrySchema) and there is room.
func (x *DurableIndex) Add(seq uint64, table string, rec arrow.Record) {
	if table != TelemetryTable || rec.NumCols() != int64(len(TelemetrySchema.Fields())) {
		return
	}
	ts, ok1 := rec.Column(0).(*array.Timestamp)
	device, ok2 := rec.Column(2).(*array.String)
	metric, ok3 := rec.Column(4).(*array.String)
	if !ok1 || !ok2 || !ok3 {
		return
	}
	n := int(rec.NumRows())
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.MaxKeys <= 0 {
		x.MaxKeys = DefaultDurableIndexKeys
	}
	if x.segs == nil {
		x.segs, x.keys = make(map[uint64][]readingKey), make(map[readingKey]int)
	}
	if x.size+n > x.MaxKeys {
		return
	}
	keys := make([]readingKey, n)
	for i := range n {
		keys[i] = keyOf(device.Value(i), metric.Value(i), int64(ts.Value(i)))
		x.keys[keys[i]]++
	}
	x.segs[seq] = keys
	x.size += n
	x.peak = max(x.peak, len(x.keys))
}

// Remove forgets the readings of segment seq.
func (x *DurableIndex) Remove(seq uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	keys, ok := x.segs[seq]
	if !ok {
		return
	}
	delete(x.segs, seq)
	x.size -= len(keys)
	for _, k := range keys {
		if x.keys[k]--; x.keys[k] == 0 {
			delete(x.keys, k)
		}
	}
	if x.peak >= durableIndexShrinkKeys && len(x.keys) < x.peak/4 {
		// A Go map keeps the table of the most keys it held: after a
		// backlog it was most of a durable node's index (12.8 of 15.6 MB,
		// the backlog replayed). Copied into one sized for what is left,
		// at most a quarter of the peak, amortized over the removals.
		keys := make(map[readingKey]int, len(x.keys))
		maps.Copy(keys, x.keys)
		x.keys, x.peak = keys, len(keys)
	}
}

// Contains sets held[i] when readings[i] is in an indexed segment.
func (x *DurableIndex) Contains(readings []Reading, held []bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for i, r := range readings {
		if x.keys[keyOf(r.Device, r.Metric, r.TS)] > 0 {
			held[i] = true
		}
	}
}
