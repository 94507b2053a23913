package server

import (
	"context"
	"time"
)

// retentionInterval is how often the server drops expired partitions.
const retentionInterval = time.Hour

// retention runs storage.DB.DropExpired while the server runs, so that
// clickhouse.retention_days holds on servers without table TTL (18.16) and
// for tables created before an upgrade brought it. In a cluster only the
// holder of the retention lease runs it.
type retention struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startRetention starts the retention loop when clickhouse.retention_days
// is set: at once, then every retentionInterval.
func (s *Server) startRetention(life context.Context) {
	if s.Config.ClickHouse.RetentionDays == 0 {
		return
	}
	ctx, cancel := context.WithCancel(life)
	s.retention = retention{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.retention.done)
		tick := time.NewTicker(retentionInterval)
		defer tick.Stop()
		for {
			s.coord.retention.Do(ctx, func(ctx context.Context) {
				if _, err := s.db.DropExpired(ctx, s.Now()); err != nil && ctx.Err() == nil {
					s.Logger.Warn("dropping expired partitions failed; retrying in an hour", "retention_days", s.Config.ClickHouse.RetentionDays, "err", err)
				}
			})
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

// closeRetention stops the retention loop and waits for it. It is safe to
// call twice, and when the loop never started.
func (s *Server) closeRetention() {
	if s.retention.cancel != nil {
		s.retention.cancel()
		<-s.retention.done
	}
}
