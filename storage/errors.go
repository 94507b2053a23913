package storage

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
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
	// ErrNoSecretKey means a device with a plain RTSP password was to be
	// saved without Options.Secrets to seal it with.
	ErrNoSecretKey = errors.New("storage: no secrets key to seal RTSP passwords with")
	// ErrNoCluster means that the server is not set up for Options.Cluster:
	// the cluster is not in its remote_servers, or the shard and replica
	// macros are missing (deploy/clickhouse has both).
	ErrNoCluster = errors.New("storage: the server is not set up for the cluster")
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
	// Class is the class of Err (Classify): Permanent or Unclassified when
	// the server or the writer refused the data or the statement and no
	// retry was made, Transient when the attempts ran out (or ctx ended) on
	// errors such as a server being down.
	Class ErrorClass
	// Err is the last error seen.
	Err error
}

// Error implements error.
func (e *WriteError) Error() string {
	return fmt.Sprintf("storage: insert %d rows into %s (batch %q) failed after %d attempts (%s): %v",
		e.Rows, e.Table, e.BatchID, e.Attempts, e.Class, e.Err)
}

// Unwrap returns the underlying error.
func (e *WriteError) Unwrap() error { return e.Err }

// ClickHouse exception codes the package branches on (src/Common/ErrorCodes.cpp).
const (
	codeDuplicateColumn = 15
	// codeIllegalColumn is what 18.16 answers an ADD COLUMN of a column
	// that is there already with; later servers answer DUPLICATE_COLUMN.
	codeIllegalColumn   = 44
	codeUnknownTable    = 60
	codeUnknownDatabase = 81
	// codeUnknownStatus is UNKNOWN_STATUS_OF_INSERT: a replicated table lost
	// ZooKeeper while committing the part, which it keeps until a check
	// finds whether the commit went through.
	codeUnknownStatus = 319
)

// ErrorClass says whether a statement that failed may succeed if it is
// sent again unchanged.
type ErrorClass int

// The error classes, from Classify.
const (
	// Transient errors may pass later: the network, a server down,
	// restarting, overloaded or short of memory, timeouts, too many parts,
	// and credentials or rights (the server's configuration, not the
	// batch, is wrong).
	Transient ErrorClass = iota
	// Permanent errors cannot pass as the table stands: a missing table,
	// database or column, a column of another type, data the server cannot
	// parse, an Arrow column the writer cannot map.
	Permanent
	// Unclassified is a server exception whose code is on neither list, or
	// a driver error that is not plainly about the data: it may be either.
	Unclassified
)

// String implements fmt.Stringer.
func (c ErrorClass) String() string {
	switch c {
	case Transient:
		return "transient"
	case Permanent:
		return "permanent"
	}
	return "unclassified"
}

// Classify tells the class of err, an error from an INSERT or a query
// (a *WriteError or what it wraps). Server exceptions are classified by
// code; the writer's refusals (ErrUnsupportedType, ErrNulls,
// ErrBadIdentifier) and the driver's client-side errors about the data (an
// Arrow type the table column does not take) are permanent; other driver
// errors are unclassified; anything else is the connection or the server
// going away, which is transient.
func Classify(err error) ErrorClass {
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		return classifyCode(ex.Code)
	}
	if errors.Is(err, ErrUnsupportedType) || errors.Is(err, ErrNulls) || errors.Is(err, ErrBadIdentifier) {
		return Permanent
	}
	var (
		convErr *column.ColumnConverterError
		colErr  *column.Error
		opErr   *clickhouse.OpError
	)
	if errors.As(err, &convErr) || errors.As(err, &colErr) {
		return Permanent
	}
	if errors.As(err, &opErr) {
		// OpError has no Unwrap; it wraps the column errors of Append and
		// reports a column the block lacks, both about the data. Its other
		// uses (an unexpected packet) are not.
		if errors.As(opErr.Err, &convErr) || errors.As(opErr.Err, &colErr) ||
			strings.HasPrefix(opErr.Op, "Append") || opErr.Op == "batch.Column" {
			return Permanent
		}
		return Unclassified
	}
	return Transient
}

// classifyCode classifies a server exception by its code
// (src/Common/ErrorCodes.cpp). Both lists are explicit, so that a code on
// neither (new in a later server, or rare) is Unclassified rather than
// taken for permanent and a batch set aside that one more try would store.
func classifyCode(code int32) ErrorClass {
	switch code {
	case 3, // UNEXPECTED_END_OF_FILE
		32,   // ATTEMPT_TO_READ_AFTER_EOF
		159,  // TIMEOUT_EXCEEDED
		160,  // TOO_SLOW
		164,  // READONLY
		173,  // CANNOT_ALLOCATE_MEMORY
		192,  // UNKNOWN_USER
		193,  // WRONG_PASSWORD
		194,  // REQUIRED_PASSWORD
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
		497,  // ACCESS_DENIED
		516,  // AUTHENTICATION_FAILED
		999,  // KEEPER_EXCEPTION
		1000: // POCO_EXCEPTION
		return Transient
	case 6, // CANNOT_PARSE_TEXT
		8,   // THERE_IS_NO_COLUMN
		10,  // NOT_FOUND_COLUMN_IN_BLOCK
		15,  // DUPLICATE_COLUMN
		16,  // NO_SUCH_COLUMN_IN_TABLE
		20,  // NUMBER_OF_COLUMNS_DOESNT_MATCH
		26,  // CANNOT_PARSE_QUOTED_STRING
		27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
		38,  // CANNOT_PARSE_DATE
		41,  // CANNOT_PARSE_DATETIME
		43,  // ILLEGAL_TYPE_OF_ARGUMENT
		44,  // ILLEGAL_COLUMN
		47,  // UNKNOWN_IDENTIFIER
		50,  // UNKNOWN_TYPE
		53,  // TYPE_MISMATCH
		60,  // UNKNOWN_TABLE
		62,  // SYNTAX_ERROR
		69,  // ARGUMENT_OUT_OF_BOUND
		70,  // CANNOT_CONVERT_TYPE
		72,  // CANNOT_PARSE_NUMBER
		81,  // UNKNOWN_DATABASE
		108, // NO_DATA_TO_INSERT
		117, // INCORRECT_DATA
		122, // INCOMPATIBLE_COLUMNS
		131, // TOO_LARGE_STRING_SIZE
		321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
		352: // AMBIGUOUS_COLUMN_NAME
		return Permanent
	}
	return Unclassified
}
