// Package storage keeps gridwatch's data in ClickHouse: it renders the schema and
// its migrations for the server it meets (Debian's 18.16 up to current releases),
// writes Arrow batches through the native protocol, spools them on disk while the
// server is down, answers the queries of the API and the alert engine, and, when
// no clickhouse.addr is configured, runs and supervises a private local server
// under the data directory (LocalServer).
package storage
