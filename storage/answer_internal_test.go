package storage

import (
	"context"
	"sync/atomic"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// AnswerInserts returns a DB on db's connection whose INSERTs, while an
// error is set with answer, are not sent and are answered with that error,
// as a server would answer them (answer(nil, nil) lets them through again).
// The answer comes once after is closed, or at once when after is nil, so
// that it can come after the caller gave up. It stands in for answers a
// test cannot make a real server give, such as a replicated table's
// UNKNOWN_STATUS_OF_INSERT.
func AnswerInserts(db *DB) (answered *DB, answer func(err error, after <-chan struct{})) {
	c := &answeringConn{Conn: db.conn}
	cp := &DB{conn: c, opts: db.opts, logger: db.logger, caps: db.caps, layout: db.layout}
	return cp, func(err error, after <-chan struct{}) {
		if err == nil {
			c.answer.Store(nil)
			return
		}
		c.answer.Store(&insertAnswer{err: err, after: after})
	}
}

// insertAnswer is the answer of an answeringConn's INSERTs.
type insertAnswer struct {
	err   error
	after <-chan struct{}
}

// answeringConn is a connection whose INSERTs are answered with answer
// while it is set.
type answeringConn struct {
	driver.Conn
	answer atomic.Pointer[insertAnswer]
}

func (c *answeringConn) PrepareBatch(ctx context.Context, query string, opts ...driver.PrepareBatchOption) (driver.Batch, error) {
	b, err := c.Conn.PrepareBatch(ctx, query, opts...)
	if err != nil {
		return nil, err
	}
	if a := c.answer.Load(); a != nil {
		return &answeredBatch{Batch: b, answer: a}, nil
	}
	return b, nil
}

// answeredBatch is a batch whose Send aborts it and returns its answer's
// error once the answer is due.
type answeredBatch struct {
	driver.Batch
	answer *insertAnswer
}

func (b *answeredBatch) Send() error {
	_ = b.Batch.Abort()
	if b.answer.after != nil {
		<-b.answer.after
	}
	return b.answer.err
}

func (b *answeredBatch) IsSent() bool { return true }

// ColumnsThere is db.columnsThere, for the external tests.
func ColumnsThere(ctx context.Context, db *DB, st string) bool { return db.columnsThere(ctx, st) }
