package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/gridwatch/gridwatch/storage"
)

// Spool replays the batches the disk spool set aside (its quarantine);
// the server is one.
type Spool interface {
	// ReplayQuarantined stores the quarantined segment file in ClickHouse,
	// unless the ledger shows it stored already (rows is then 0), and
	// deletes it. An error wraps ErrNotQuarantined when there is no such
	// segment, else it is ClickHouse's.
	ReplayQuarantined(ctx context.Context, file string) (rows int, err error)
}

// spoolRoutes registers the spool endpoints when a spool is configured.
func (s *Server) spoolRoutes(rt *routes) {
	if s.Spool == nil {
		return
	}
	rt.Require(RoleAdmin, "POST /api/v1/spool/quarantine/{file}/replay", s.replayQuarantined)
}

// replayQuarantined serves POST /api/v1/spool/quarantine/{file}/replay: the
// way `gridwatch spool replay` stores a set-aside batch while the server
// runs, which holds the managed ClickHouse. A segment ClickHouse still
// refuses stays, and the answer says why.
func (s *Server) replayQuarantined(w http.ResponseWriter, r *http.Request) {
	file := r.PathValue("file")
	rows, err := s.Spool.ReplayQuarantined(r.Context(), file)
	switch {
	case errors.Is(err, ErrNotQuarantined):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case err != nil && storage.Classify(err) == storage.Transient:
		s.Logger.Warn("quarantined segment not replayed", "file", file, "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", fmt.Sprintf("%s stays in the quarantine: %v", file, err))
	case err != nil:
		s.Logger.Warn("quarantined segment not replayed", "file", file, "err", err)
		writeError(w, http.StatusUnprocessableEntity, "not_replayed", fmt.Sprintf("%s stays in the quarantine: %v", file, err))
	default:
		writeJSON(w, http.StatusOK, map[string]any{"file": file, "rows": rows})
	}
}
