package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"syscall"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

func TestColumnValues(t *testing.T) {
	mem := memory.NewGoAllocator()
	build := func(dt arrow.DataType, fill func(array.Builder)) arrow.Array {
		b := array.NewBuilder(mem, dt)
		defer b.Release()
		fill(b)
		return b.NewArray()
	}
	cases := []struct {
		name string
		arr  arrow.Array
		want any
	}{
		{"timestamp ms", build(arrow.FixedWidthTypes.Timestamp_ms, func(b array.Builder) {
			b.(*array.TimestampBuilder).AppendValues([]arrow.Timestamp{1732233600123, -1}, nil)
		}), []int64{1732233600123, -1}},
		{"int64", build(arrow.PrimitiveTypes.Int64, func(b array.Builder) {
			b.(*array.Int64Builder).AppendValues([]int64{-5, 7}, nil)
		}), []int64{-5, 7}},
		{"uint64", build(arrow.PrimitiveTypes.Uint64, func(b array.Builder) {
			b.(*array.Uint64Builder).AppendValues([]uint64{1 << 63}, nil)
		}), []uint64{1 << 63}},
		{"uint32", build(arrow.PrimitiveTypes.Uint32, func(b array.Builder) {
			b.(*array.Uint32Builder).AppendValues([]uint32{3}, nil)
		}), []uint32{3}},
		{"uint16", build(arrow.PrimitiveTypes.Uint16, func(b array.Builder) {
			b.(*array.Uint16Builder).AppendValues([]uint16{4}, nil)
		}), []uint16{4}},
		{"uint8", build(arrow.PrimitiveTypes.Uint8, func(b array.Builder) {
			b.(*array.Uint8Builder).AppendValues([]uint8{5}, nil)
		}), []uint8{5}},
		{"float64", build(arrow.PrimitiveTypes.Float64, func(b array.Builder) {
			b.(*array.Float64Builder).AppendValues([]float64{0.1, -2.5}, nil)
		}), []float64{0.1, -2.5}},
		{"float32", build(arrow.PrimitiveTypes.Float32, func(b array.Builder) {
			b.(*array.Float32Builder).AppendValues([]float32{1.5}, nil)
		}), []float32{1.5}},
		{"string", build(arrow.BinaryTypes.String, func(b array.Builder) {
			b.(*array.StringBuilder).AppendValues([]string{"pm25", "", "水位"}, nil)
		}), []string{"pm25", "", "水位"}},
		{"binary", build(arrow.BinaryTypes.Binary, func(b array.Builder) {
			b.(*array.BinaryBuilder).AppendValues([][]byte{{0xff, 0x00}, []byte("{}")}, nil)
		}), []string{"\xff\x00", "{}"}},
		{"boolean", build(arrow.FixedWidthTypes.Boolean, func(b array.Builder) {
			b.(*array.BooleanBuilder).AppendValues([]bool{true, false, true}, nil)
		}), []uint8{1, 0, 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			defer c.arr.Release()
			got, err := columnValues(c.arr)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %#v, want %#v", got, c.want)
			}
		})
	}
}

// TestColumnValuesSliced checks that an array slice (non-zero offset) yields
// its own values, not the parent's.
func TestColumnValuesSliced(t *testing.T) {
	b := array.NewTimestampBuilder(memory.NewGoAllocator(), arrow.FixedWidthTypes.Timestamp_ms.(*arrow.TimestampType))
	b.AppendValues([]arrow.Timestamp{1, 2, 3, 4}, nil)
	arr := b.NewArray()
	defer arr.Release()
	s := array.NewSlice(arr, 1, 3)
	defer s.Release()
	got, err := columnValues(s)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{2, 3}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestColumnValuesRejects(t *testing.T) {
	mem := memory.NewGoAllocator()
	withNull := array.NewFloat64Builder(mem)
	withNull.AppendValues([]float64{1, 2}, []bool{true, false})
	nulls := withNull.NewArray()
	defer nulls.Release()
	secs := array.NewTimestampBuilder(mem, &arrow.TimestampType{Unit: arrow.Second})
	secs.Append(1)
	seconds := secs.NewArray()
	defer seconds.Release()
	i32 := array.NewInt32Builder(mem)
	i32.Append(1)
	int32s := i32.NewArray()
	defer int32s.Release()

	for _, c := range []struct {
		name string
		arr  arrow.Array
		want error
	}{
		{"nulls", nulls, ErrNulls},
		{"timestamp in seconds", seconds, ErrUnsupportedType},
		{"int32", int32s, ErrUnsupportedType},
	} {
		if _, err := columnValues(c.arr); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
}

// TestClassify attacks the spool's promise that a transient error never
// sets a batch aside: network trouble, overload, timeouts and credentials
// are Transient, schema and data errors Permanent, and a server code on
// neither list Unclassified, never Permanent.
func TestClassify(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want ErrorClass
	}{
		{"too many parts", &clickhouse.Exception{Code: 252, Message: "Too many parts"}, Transient},
		{"memory limit", fmt.Errorf("insert: %w", &clickhouse.Exception{Code: 241}), Transient},
		{"timeout", &clickhouse.Exception{Code: 159}, Transient},
		{"wrong password", &clickhouse.Exception{Code: 193}, Transient},
		{"authentication failed", &clickhouse.Exception{Code: 516}, Transient},
		{"unknown column", &clickhouse.Exception{Code: 16, Message: "No such column"}, Permanent},
		{"type mismatch", &clickhouse.Exception{Code: 53}, Permanent},
		{"cannot parse", &clickhouse.Exception{Code: 6}, Permanent},
		{"syntax", &clickhouse.Exception{Code: 62}, Permanent},
		{"unknown table", &clickhouse.Exception{Code: codeUnknownTable}, Permanent},
		{"in a write error", &WriteError{Err: &clickhouse.Exception{Code: codeUnknownTable}}, Permanent},
		{"unknown code", &clickhouse.Exception{Code: 49, Message: "Logical error"}, Unclassified},
		{"nulls", fmt.Errorf("column v: %w", ErrNulls), Permanent},
		{"conversion", &column.ColumnConverterError{Op: "Append", To: "String", From: "[]float64"}, Permanent},
		{"wrapped conversion", &clickhouse.OpError{Op: "Append", Err: &column.ColumnConverterError{Op: "Append", To: "String", From: "[]float64"}}, Permanent},
		{"unexpected packet", &clickhouse.OpError{Op: "process", Err: errors.New("unexpected packet 42")}, Unclassified},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, Transient},
		{"eof", io.EOF, Transient},
		{"pool timeout", clickhouse.ErrAcquireConnTimeout, Transient},
		{"deadline", context.DeadlineExceeded, Transient},
	} {
		if got := Classify(c.err); got != c.want {
			t.Errorf("Classify(%s: %v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

func TestMonthPartitionEnd(t *testing.T) {
	for _, c := range []struct {
		p    string
		want string
		ok   bool
	}{
		{"202411", "2024-12-01T00:00:00Z", true},
		{"202412", "2025-01-01T00:00:00Z", true},
		{"197001", "1970-02-01T00:00:00Z", true},
		{"202413", "", false},
		{"202400", "", false},
		{"+20241", "", false},
		{"20241", "", false},
		{"tuple()", "", false},
	} {
		end, ok := monthPartitionEnd(c.p)
		if ok != c.ok || ok && end.Format("2006-01-02T15:04:05Z07:00") != c.want {
			t.Errorf("monthPartitionEnd(%q) = %v, %v; want %s, %v", c.p, end, ok, c.want, c.ok)
		}
	}
}
