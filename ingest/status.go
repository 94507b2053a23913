package ingest

import (
	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"

	"github.com/gridwatch/gridwatch/devices"
)

// StatusTable is the table of device online/offline changes.
const StatusTable = "device_status"

// StatusSchema is the Arrow schema of device status batches. Field names are
// the ClickHouse column names.
var StatusSchema = arrow.NewSchema([]arrow.Field{
	{Name: "ts", Type: arrow.FixedWidthTypes.Timestamp_ms},
	{Name: "device", Type: arrow.BinaryTypes.String},
	{Name: "status", Type: arrow.BinaryTypes.String},
	{Name: "reason", Type: arrow.BinaryTypes.String},
}, nil)

// AppendStatus appends c to a builder of StatusSchema; status is "online"
// or "offline".
func AppendStatus(b *array.RecordBuilder, c devices.StatusChange) {
	status := "offline"
	if c.Online {
		status = "online"
	}
	b.Field(0).(*array.TimestampBuilder).Append(arrow.Timestamp(c.At.UnixMilli()))
	b.Field(1).(*array.StringBuilder).Append(c.Device)
	b.Field(2).(*array.StringBuilder).Append(status)
	b.Field(3).(*array.StringBuilder).Append(c.Reason)
}

// StatusSize estimates the Arrow bytes of c.
func StatusSize(c devices.StatusChange) int {
	return 8 + 3*arrowOffsetBytes + len(c.Device) + len("offline") + len(c.Reason)
}

// NewStatusBatcher returns a batcher of status changes for the device_status
// table that hands its batches to write. Set other settings before Start.
func NewStatusBatcher(write WriteFunc) *Batcher[devices.StatusChange] {
	return &Batcher[devices.StatusChange]{
		Table:     StatusTable,
		Schema:    StatusSchema,
		AppendRow: AppendStatus,
		RowSize:   StatusSize,
		Write:     write,
	}
}
