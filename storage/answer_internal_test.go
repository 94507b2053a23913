package storage

import (
	"context"
	"sync/atomic"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// AnswerInserts returns a DB on db's connection whose INSERTs, while an
// error is set with answer, are not sent and are answered with that error,
// as a server would answer them (answer(nil) lets them through again). It
// stands in for answers a test cannot make a real server give, such as a
// replicated table's UNKNOWN_STATUS_OF_INSERT.
func AnswerInserts(db *DB) (answered *DB, answer func(error)) {
	c := &answeringConn{Conn: db.conn}
	cp := &DB{conn: c, opts: db.opts, logger: db.logger, caps: db.caps, layout: db.layout}
	return cp, func(err error) {
		if err == nil {
			c.err.Store(nil)
			return
		}
		c.err.Store(&err)
	}
}

// answeringConn is a connection whose INSERTs are answered with err while
// it is set.
type answeringConn struct {
	driver.Conn
	err atomic.Pointer[error]
}

func (c *answeringConn) PrepareBatch(ctx context.Context, query string, opts ...driver.PrepareBatchOption) (driver.Batch, error) {
	b, err := c.Conn.PrepareBatch(ctx, query, opts...)
	if err != nil {
		return nil, err
	}
	if e := c.err.Load(); e != nil {
		return &answeredBatch{Batch: b, err: *e}, nil
	}
	return b, nil
}

// answeredBatch is a batch whose Send aborts it and returns err.
type answeredBatch struct {
	driver.Batch
	err error
}

func (b *answeredBatch) Send() error {
	_ = b.Batch.Abort()
	return b.err
}

func (b *answeredBatch) IsSent() bool { return true }
