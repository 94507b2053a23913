package storage

import (
	"errors"
	"fmt"
)

// Sentinel errors of the package. Callers test them with errors.Is; the
// errors returned wrap them with the details.
var (
	// ErrSchemaOutdated means the database lacks migrations this build
	// expects: run Migrate (gridwatch migrate) first.
	ErrSchemaOutdated = errors.New("storage: schema is not at the latest version")
	// ErrBadIdentifier means a database, table or column name is not a plain
	// ClickHouse identifier ([A-Za-z_][A-Za-z0-9_]*). Names are never quoted
	// from user input into SQL, so anything else is refused.
	ErrBadIdentifier = errors.New("storage: not a plain identifier")
	// ErrUnsupportedType means an Arrow column has a type the writer cannot
	// map onto a ClickHouse column.
	ErrUnsupportedType = errors.New("storage: unsupported Arrow type")
	// ErrNulls means an Arrow column holds nulls; gridwatch tables have no
	// Nullable columns.
	ErrNulls = errors.New("storage: column holds nulls")
	// ErrBadVersion means a server version string could not be parsed.
	ErrBadVersion = errors.New("storage: unparsable server version")
	// ErrBadQuery means query arguments are out of range (empty device, step
	// not positive, From not before To, too many buckets...).
	ErrBadQuery = errors.New("storage: invalid query")
	// ErrNoClickHouse means that no ClickHouse server binary could be found
	// for the managed local server.
	ErrNoClickHouse = errors.New("no ClickHouse server found: install it with `apt-get install clickhouse-server` (Debian) or set clickhouse.addr to use an existing server")
	// ErrDirInUse means that another gridwatch runs a local server on the
	// same directory.
	ErrDirInUse = errors.New("storage: directory is in use by another gridwatch")
)

// WriteError is returned by Writer.Write when a batch was not stored. The
// caller counts its Rows as dropped (or spools them); Permanent says whether
// sending the same rows again can ever succeed.
type WriteError struct {
	// Table is the table the batch was meant for.
	Table string
	// BatchID is the batch id given to Write.
	BatchID string
	// Rows is the number of rows in the batch.
	Rows int
	// Attempts is how many INSERTs were tried; 0 when the batch was refused
	// before any (unsupported type, nulls, bad names).
	Attempts int
	// Permanent is true when retrying cannot help: the server or the writer
	// rejected the data or the statement. False means the attempts ran out
	// (or ctx ended) on transient errors such as a server being down.
	Permanent bool
	// Err is the last error seen.
	Err error
}

// Error implements error.
func (e *WriteError) Error() string {
	kind := "transient"
	if e.Permanent {
		kind = "permanent"
	}
	return fmt.Sprintf("storage: insert %d rows into %s (batch %q) failed after %d attempts (%s): %v",
		e.Rows, e.Table, e.BatchID, e.Attempts, kind, e.Err)
}

// Unwrap returns the underlying error.
func (e *WriteError) Unwrap() error { return e.Err }

// ClickHouse exception codes the package branches on (src/Common/ErrorCodes.cpp).
const (
	codeUnknownTable    = 60
	codeUnknownDatabase = 81
)

// transientCode reports whether the same INSERT may succeed later after an
// exception with this code: overload, timeouts, resources, replication
// trouble. Any other exception is about the statement or the data and is
// permanent.
func transientCode(code int32) bool {
	switch code {
	case 3, // UNEXPECTED_END_OF_FILE
		32,   // ATTEMPT_TO_READ_AFTER_EOF
		159,  // TIMEOUT_EXCEEDED
		160,  // TOO_SLOW
		173,  // CANNOT_ALLOCATE_MEMORY
		201,  // QUOTA_EXPIRED
		202,  // TOO_MANY_SIMULTANEOUS_QUERIES
		203,  // NO_FREE_CONNECTION
		209,  // SOCKET_TIMEOUT
		210,  // NETWORK_ERROR
		225,  // NO_ZOOKEEPER
		236,  // ABORTED
		241,  // MEMORY_LIMIT_EXCEEDED
		242,  // TABLE_IS_READ_ONLY
		243,  // NOT_ENOUGH_SPACE
		244,  // UNEXPECTED_ZOOKEEPER_ERROR
		252,  // TOO_MANY_PARTS
		254,  // NO_ACTIVE_REPLICAS
		279,  // ALL_CONNECTION_TRIES_FAILED
		285,  // TOO_FEW_LIVE_REPLICAS
		319,  // UNKNOWN_STATUS_OF_INSERT
		364,  // RECEIVED_ERROR_TOO_MANY_REQUESTS
		394,  // QUERY_WAS_CANCELLED
		410,  // EXTERNAL_SERVER_IS_NOT_RESPONDING
		425,  // SYSTEM_ERROR
		439,  // CANNOT_SCHEDULE_TASK
		999,  // KEEPER_EXCEPTION
		1000: // POCO_EXCEPTION
		return true
	}
	return false
}
