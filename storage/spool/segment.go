package spool

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/ipc"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// A segment file holds one batch:
//
//	magic "GWSPOOL1"
//	uint16 table length, table
//	uint16 batch id length, batch id
//	uint32 payload length, payload (an Arrow IPC stream of one record)
//	uint32 CRC-32C (Castagnoli) of everything before it
//
// Integers are little-endian. The checksum covers the header too, so a
// flipped bit anywhere is caught, and the lengths catch a truncated file.
const segmentMagic = "GWSPOOL1"

// castagnoli is the CRC-32C table, the checksum with hardware support.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// segment is one decoded segment file.
type segment struct {
	Table  string
	ID     string
	Record arrow.Record
}

// encodeSegment returns the file contents of a segment holding rec.
func encodeSegment(table, id string, rec arrow.Record) ([]byte, error) {
	if len(table) > 0xffff || len(id) > 0xffff {
		return nil, fmt.Errorf("%w: table or batch id longer than 65535 bytes", ErrCorrupt)
	}
	// The Arrow IPC stream is written in place after the header, into one
	// buffer sized for it: a group commit encodes a segment every few
	// milliseconds, and growing a buffer and copying it into another were
	// most of its allocations.
	b := make([]byte, 0, len(segmentMagic)+2+len(table)+2+len(id)+4+ipcSize(rec)+4)
	b = append(b, segmentMagic...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(table)))
	b = append(b, table...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(id)))
	b = append(b, id...)
	at := len(b)
	payload := bytes.NewBuffer(binary.LittleEndian.AppendUint32(b, 0))
	w := ipc.NewWriter(payload, ipc.WithSchema(rec.Schema()))
	if err := w.Write(rec); err != nil {
		return nil, fmt.Errorf("encode arrow ipc: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("encode arrow ipc: %w", err)
	}
	b = payload.Bytes()
	binary.LittleEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

// ipcSize estimates the bytes of rec as an Arrow IPC stream: its buffers,
// each padded to 8 bytes, and room for the schema and record messages.
func ipcSize(rec arrow.Record) int {
	n := 4096
	for _, col := range rec.Columns() {
		for _, buf := range col.Data().Buffers() {
			if buf != nil {
				n += (buf.Len() + 7) &^ 7
			}
		}
	}
	return n
}

// decodeSegment checks and decodes the contents of a segment file. Any
// damage (truncation, flipped bits, a payload that is not one Arrow record)
// is an error wrapping ErrCorrupt. The caller releases the record.
func decodeSegment(data []byte, mem memory.Allocator) (segment, error) {
	var s segment
	if len(data) < len(segmentMagic)+2+2+4+4 || string(data[:len(segmentMagic)]) != segmentMagic {
		return s, fmt.Errorf("%w: bad header", ErrCorrupt)
	}
	body, sum := data[:len(data)-4], binary.LittleEndian.Uint32(data[len(data)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return s, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	rest := body[len(segmentMagic):]
	field := func(lenBytes int) ([]byte, bool) {
		if len(rest) < lenBytes {
			return nil, false
		}
		var n int
		if lenBytes == 2 {
			n = int(binary.LittleEndian.Uint16(rest))
		} else {
			n = int(binary.LittleEndian.Uint32(rest))
		}
		rest = rest[lenBytes:]
		if len(rest) < n {
			return nil, false
		}
		v := rest[:n]
		rest = rest[n:]
		return v, true
	}
	table, ok1 := field(2)
	id, ok2 := field(2)
	payload, ok3 := field(4)
	if !ok1 || !ok2 || !ok3 || len(rest) != 0 {
		return s, fmt.Errorf("%w: bad lengths", ErrCorrupt)
	}
	r, err := ipc.NewReader(bytes.NewReader(payload), ipc.WithAllocator(mem))
	if err != nil {
		return s, fmt.Errorf("%w: arrow ipc: %w", ErrCorrupt, err)
	}
	defer r.Release()
	if !r.Next() {
		return s, fmt.Errorf("%w: arrow ipc holds no record: %v", ErrCorrupt, r.Err())
	}
	rec := r.Record()
	rec.Retain()
	if r.Next() {
		rec.Release()
		return s, fmt.Errorf("%w: arrow ipc holds more than one record", ErrCorrupt)
	}
	return segment{Table: string(table), ID: string(id), Record: rec}, nil
}
