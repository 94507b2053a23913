package api

import "errors"

// Sentinel errors of the api package.
var (
	// ErrInvalidTokens means a tokens file failed validation; the error
	// names the entry and field.
	ErrInvalidTokens = errors.New("invalid tokens")
)
