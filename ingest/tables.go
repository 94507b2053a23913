package ingest

import (
	"unique"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
)

// Table names, as the storage writer knows them.
const (
	TelemetryTable = "telemetry"
	RejectedTable  = "rejected"
)

// TelemetrySchema is the Arrow schema of telemetry batches. Field names are
// the ClickHouse column names; the writer maps them one to one.
var TelemetrySchema = arrow.NewSchema([]arrow.Field{
	{Name: "ts", Type: arrow.FixedWidthTypes.Timestamp_ms},
	{Name: "received", Type: arrow.FixedWidthTypes.Timestamp_ms},
	{Name: "device", Type: arrow.BinaryTypes.String},
	{Name: "grid", Type: arrow.BinaryTypes.String},
	{Name: "metric", Type: arrow.BinaryTypes.String},
	{Name: "value", Type: arrow.PrimitiveTypes.Float64},
}, nil)

// RejectedSchema is the Arrow schema of rejected batches. Field names are the
// ClickHouse column names.
var RejectedSchema = arrow.NewSchema([]arrow.Field{
	{Name: "ts", Type: arrow.FixedWidthTypes.Timestamp_ms},
	{Name: "device", Type: arrow.BinaryTypes.String},
	{Name: "topic", Type: arrow.BinaryTypes.String},
	{Name: "reason", Type: arrow.BinaryTypes.String},
	{Name: "detail", Type: arrow.BinaryTypes.String},
	{Name: "payload", Type: arrow.BinaryTypes.Binary},
}, nil)

// arrowOffsetBytes is what each variable-length value costs besides its
// bytes: one int32 offset.
const arrowOffsetBytes = 4

// AppendReading appends r to a builder of TelemetrySchema.
func AppendReading(b *array.RecordBuilder, r Reading) {
	b.Field(0).(*array.TimestampBuilder).Append(arrow.Timestamp(r.TS))
	b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(r.Received))
	b.Field(2).(*array.StringBuilder).Append(r.Device)
	b.Field(3).(*array.StringBuilder).Append(r.Grid)
	b.Field(4).(*array.StringBuilder).Append(r.Metric)
	b.Field(5).(*array.Float64Builder).Append(r.Value)
}

// ReadingsOf appends the rows of rec, a record of TelemetrySchema, to dst
// as readings and returns it: the inverse of AppendReading. The strings are
// interned copies, so a reading kept holds no Arrow buffer.
func ReadingsOf(rec arrow.Record, dst []Reading) []Reading {
	ts := rec.Column(0).(*array.Timestamp)
	received := rec.Column(1).(*array.Timestamp)
	device := rec.Column(2).(*array.String)
	grid := rec.Column(3).(*array.String)
	metric := rec.Column(4).(*array.String)
	value := rec.Column(5).(*array.Float64)
	for i := range int(rec.NumRows()) {
		dst = append(dst, Reading{
			TS:       int64(ts.Value(i)),
			Received: int64(received.Value(i)),
			Device:   unique.Make(device.Value(i)).Value(),
			Grid:     unique.Make(grid.Value(i)).Value(),
			Metric:   unique.Make(metric.Value(i)).Value(),
			Value:    value.Value(i),
		})
	}
	return dst
}

// ReadingSize estimates the Arrow bytes of r: three 8-byte numbers and three
// strings with their offsets.
func ReadingSize(r Reading) int {
	return 3*8 + 3*arrowOffsetBytes + len(r.Device) + len(r.Grid) + len(r.Metric)
}

// AppendRejection appends r to a builder of RejectedSchema.
func AppendRejection(b *array.RecordBuilder, r Rejection) {
	b.Field(0).(*array.TimestampBuilder).Append(arrow.Timestamp(r.TS))
	b.Field(1).(*array.StringBuilder).Append(r.Device)
	b.Field(2).(*array.StringBuilder).Append(r.Topic)
	b.Field(3).(*array.StringBuilder).Append(r.Reason)
	b.Field(4).(*array.StringBuilder).Append(r.Detail)
	b.Field(5).(*array.BinaryBuilder).Append(r.Payload)
}

// RejectionSize estimates the Arrow bytes of r.
func RejectionSize(r Rejection) int {
	return 8 + 5*arrowOffsetBytes + len(r.Device) + len(r.Topic) + len(r.Reason) + len(r.Detail) + len(r.Payload)
}

// NewTelemetryBatcher returns a batcher of readings for the telemetry table
// that hands its batches to write. Set other settings before Start.
func NewTelemetryBatcher(write WriteFunc) *Batcher[Reading] {
	return &Batcher[Reading]{
		Table:     TelemetryTable,
		Schema:    TelemetrySchema,
		AppendRow: AppendReading,
		RowSize:   ReadingSize,
		Write:     write,
	}
}

// NewRejectedBatcher returns a batcher of rejections for the rejected table
// that hands its batches to write. Set other settings before Start.
func NewRejectedBatcher(write WriteFunc) *Batcher[Rejection] {
	return &Batcher[Rejection]{
		Table:     RejectedTable,
		Schema:    RejectedSchema,
		AppendRow: AppendRejection,
		RowSize:   RejectionSize,
		Write:     write,
	}
}
