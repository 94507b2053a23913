package api

import "errors"

// Sentinel errors of the api package.
var (
	// ErrInvalidTokens means a tokens file failed validation; the error
	// names the entry and field.
	ErrInvalidTokens = errors.New("invalid tokens")
	// ErrNotQuarantined means the spool's quarantine holds no segment of
	// the name given.
	ErrNotQuarantined = errors.New("not a quarantined spool segment")
)
