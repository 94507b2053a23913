package api

import (
	_ "embed"
	"net/http"
)

// openAPI is the hand-written OpenAPI 3 description of the API; a test
// checks that it lists every registered route.
//
//go:embed openapi.json
var openAPI []byte

// serveOpenAPI serves GET /api/v1/openapi.json.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}
