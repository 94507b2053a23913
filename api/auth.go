package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// Role is what a bearer token may do. An endpoint names the weakest role
// it admits; the case loop (cases.May) decides further which role may take
// which action on a case.
type Role uint8

// Roles, from the weakest.
const (
	// RoleViewer reads: alerts, cases, their timelines, statistics,
	// telemetry.
	RoleViewer Role = iota + 1
	// RoleReporter also reports cases (a grid manager's patrol, 网格员上报),
	// verifies and evaluates the cases it reported.
	RoleReporter
	// RoleUnit is the staff of one department unit (Token.Unit): it sees
	// the cases dispatched to its unit and signs for, returns, handles
	// them and asks for extensions and suspensions.
	RoleUnit
	// RoleOperator is a command-centre operator: it acts on alerts,
	// creates silences and maintenance windows, registers, dispatches and
	// closes cases.
	RoleOperator
	// RoleDispatcher is a command-centre dispatcher: an operator's rights.
	RoleDispatcher
	// RoleSupervisor also approves extensions and suspensions, verifies
	// and supervises (督办) cases.
	RoleSupervisor
	// RoleAdmin may do everything, including what a future endpoint
	// registered without a role needs for a method other than GET.
	RoleAdmin
)

var roleNames = [...]string{"", "viewer", "reporter", "unit", "operator", "dispatcher", "supervisor", "admin"}

// roleChoice lists the role names for messages.
const roleChoice = "viewer, reporter, unit, operator, dispatcher, supervisor or admin"

// String returns the role's name, such as "operator".
func (r Role) String() string {
	if r > 0 && int(r) < len(roleNames) {
		return roleNames[r]
	}
	return fmt.Sprintf("role(%d)", r)
}

// ParseRole parses a role name.
func ParseRole(name string) (Role, error) {
	for i, n := range roleNames {
		if i > 0 && n == name {
			return Role(i), nil
		}
	}
	return 0, fmt.Errorf("unknown role %q: want %s", name, roleChoice)
}

// MarshalText implements encoding.TextMarshaler.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Role) UnmarshalText(b []byte) error {
	v, err := ParseRole(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// Token is one bearer token the API accepts, as an entry of the tokens file.
// Only the token's hash is kept: the file may be read by more people than
// may use its tokens.
type Token struct {
	// Name identifies the token's holder; it is the actor recorded in the
	// alert trail.
	Name string `yaml:"name"`
	// Role is what the token may do.
	Role Role `yaml:"role"`
	// Grid is the token's scope: the root of the grid subtree it sees and
	// acts in. Empty means the whole city.
	Grid string `yaml:"grid"`
	// Unit is the unit code a unit token works for; required with the role
	// unit, refused with any other.
	Unit string `yaml:"unit,omitempty"`
	// Hash is HashToken of the token.
	Hash string `yaml:"token_hash"`
}

// MinAdminTokenLen is the shortest bootstrap admin token (api.admin_token)
// accepted: the token is set by hand, and a short one could be guessed.
// Tokens of the tokens file are stored hashed and made by NewToken.
const MinAdminTokenLen = 16

// tokenPrefix starts every token NewToken makes, so that a leaked one is
// recognisable to secret scanners.
const tokenPrefix = "gwt_"

// NewToken returns a fresh bearer token: 256 bits from crypto/rand.
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("new token: %w", err)
	}
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// HashToken returns the form in which a token is stored: "sha256:" and the
// hex SHA-256 of the token. A fast hash is enough because tokens are
// machine-made with 256 bits of entropy (NewToken): nobody can guess one
// from its hash, so a slow password hash (bcrypt, argon2) would only add
// tens of milliseconds to every request.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// parseTokenHash decodes a HashToken string.
func parseTokenHash(s string) ([]byte, error) {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok {
		return nil, errors.New(`must start with "sha256:" (see gridwatch token new)`)
	}
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return nil, errors.New("must be 64 hex digits after sha256:")
	}
	return b, nil
}

// ReadTokens reads a tokens file: a YAML list of Token entries. Every entry
// is checked; the errors name the entry and its field.
func ReadTokens(r io.Reader) ([]Token, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read tokens: %w", err)
	}
	var tokens []Token
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&tokens); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %w", ErrInvalidTokens, err)
	}
	var errs []error
	names := make(map[string]int, len(tokens))
	hashes := make(map[string]int, len(tokens))
	for i, t := range tokens {
		bad := func(field, format string, args ...any) {
			errs = append(errs, fmt.Errorf("%w: tokens[%d] (%q): %s %s", ErrInvalidTokens, i, t.Name, field, fmt.Sprintf(format, args...)))
		}
		if t.Name == "" {
			bad("name", "must not be empty")
		} else if j, dup := names[t.Name]; dup {
			bad("name", "repeats tokens[%d]", j)
		}
		names[t.Name] = i
		if t.Role == 0 {
			bad("role", "must be %s", roleChoice)
		}
		if t.Role == RoleUnit && t.Unit == "" {
			bad("unit", "must name the unit of a token with the role unit")
		} else if t.Role != RoleUnit && t.Unit != "" {
			bad("unit", "is only for the role unit, not %s", t.Role)
		}
		if _, err := parseTokenHash(t.Hash); err != nil {
			bad("token_hash", "%v", err)
		} else if j, dup := hashes[t.Hash]; dup {
			bad("token_hash", "repeats tokens[%d]", j)
		}
		hashes[t.Hash] = i
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return tokens, nil
}

// ReadTokensFile reads the tokens file at path (api.tokens_file).
func ReadTokensFile(path string) ([]Token, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	defer f.Close()
	tokens, err := ReadTokens(f)
	if err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	return tokens, nil
}

// InScopeFunc reports whether grid lies in the subtree rooted at scope
// (scope itself included). The grid hierarchy decides; PrefixScope is the
// default.
type InScopeFunc func(scope, grid string) bool

// PrefixScope is the InScopeFunc of hierarchical grid codes, where a
// child's code extends its parent's after a dash: D01 holds D01-S02 and
// D01-S02-G03, but not D010.
func PrefixScope(scope, grid string) bool {
	rest, ok := strings.CutPrefix(grid, scope)
	return ok && (rest == "" || rest[0] == '-')
}

// principal is who a request acts as.
type principal struct {
	// name is the token's name, the actor of what the request does.
	name string
	role Role
	// scope is the root of the grid subtree the principal sees; empty for
	// the whole city.
	scope string
	// unit is the unit of a RoleUnit principal.
	unit    string
	inScope InScopeFunc
}

// sees reports whether grid is in the principal's scope.
func (p *principal) sees(grid string) bool {
	return p.scope == "" || p.inScope(p.scope, grid)
}

type principalKey struct{}

// principalFrom returns the request's principal; authenticate put it there.
func principalFrom(ctx context.Context) *principal {
	p, _ := ctx.Value(principalKey{}).(*principal)
	return p
}

// credential is a configured token, by its hash.
type credential struct {
	hash []byte
	p    *principal
}

// authenticator maps bearer tokens to principals.
type authenticator struct {
	creds []credential
	// open, with no token configured at all (Server.Open), lets every
	// request made directly from this host in as an unscoped admin: a
	// development setup. A request from another address, or one that a
	// proxy forwarded (it may come from anywhere), is refused.
	open *principal
}

// newAuthenticator builds the credentials from the bootstrap admin token
// and the configured tokens. A token whose hash does not parse (ReadTokens
// refuses those) is logged and matches nothing.
func newAuthenticator(adminToken string, tokens []Token, inScope InScopeFunc, logger *slog.Logger) *authenticator {
	a := &authenticator{}
	if adminToken != "" {
		sum := sha256.Sum256([]byte(adminToken))
		a.creds = append(a.creds, credential{hash: sum[:], p: &principal{name: "admin", role: RoleAdmin, inScope: inScope}})
	}
	for i, t := range tokens {
		h, err := parseTokenHash(t.Hash)
		if err != nil {
			logger.Error("api token ignored", "token", t.Name, "index", i, "err", err)
			continue
		}
		a.creds = append(a.creds, credential{hash: h, p: &principal{name: t.Name, role: t.Role, scope: t.Grid, unit: t.Unit, inScope: inScope}})
	}
	return a
}

// lookup returns the principal of a bearer token, or nil. It compares the
// token's hash with every credential in constant time, without stopping at
// a match, so the time taken says nothing about which token matched.
func (a *authenticator) lookup(token string) *principal {
	sum := sha256.Sum256([]byte(token))
	var found *principal
	for _, c := range a.creds {
		if subtle.ConstantTimeCompare(sum[:], c.hash) == 1 {
			found = c.p
		}
	}
	return found
}

// TokenHolder returns a check of API tokens for other front doors, such as
// MQTT subscribers (broker.StaffFunc): ok when token is the bearer token
// named name (the bootstrap admin token is named "admin"), with the grid
// scope of the token. With no token configured it admits nobody: the open
// development mode of the HTTP API does not extend to them.
func TokenHolder(adminToken string, tokens []Token, logger *slog.Logger) func(name string, token []byte) (scope string, ok bool) {
	a := newAuthenticator(adminToken, tokens, nil, logger)
	return func(name string, token []byte) (string, bool) {
		p := a.lookup(string(token))
		if p == nil || p.name != name {
			return "", false
		}
		return p.scope, true
	}
}

// middleware puts the request's principal in its context, or answers 401.
func (a *authenticator) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := a.open
		if p != nil {
			if err := fromThisHost(r); err != nil {
				writeError(w, http.StatusForbidden, "open_api_local_only",
					"no API token is configured (api.admin_token, api.tokens_file), so the API answers only requests made directly from its own host: "+err.Error())
				return
			}
		} else if token, ok := bearerToken(r); ok {
			p = a.lookup(token)
		}
		if p == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gridwatch"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// bearerToken returns the token of the request's Authorization header.
// The scheme is matched without regard to case (RFC 9110 11.1); the token
// is taken as sent, so one with a space or a character more matches
// nothing.
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	return token, ok && strings.EqualFold(scheme, "Bearer") && token != ""
}

// proxyHeaders are the request headers that say a proxy forwarded it.
var proxyHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-Ip"}

// fromThisHost checks that r came straight from a program on this host.
// The peer is the TCP connection's, and must be loopback: a proxy header is
// never trusted to name the client, but its presence means the request came
// through a proxy, which may serve anyone, so it is refused. A browser on
// this host may be made to send requests by any web page, so the Host must
// name this host (a page that rebinds its DNS name to 127.0.0.1 sends its
// own name) and an Origin, when sent, must be a page of this host
// (cross-site request forgery).
func fromThisHost(r *http.Request) error {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("this one came from %s", host)
	}
	for _, h := range proxyHeaders {
		if r.Header.Get(h) != "" {
			return fmt.Errorf("this one was forwarded by a proxy (%s header)", h)
		}
	}
	if !IsLoopbackHost(hostOnly(r.Host)) {
		return fmt.Errorf("this one is for host %q, not a loopback address or localhost", r.Host)
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || !IsLoopbackHost(u.Hostname()) {
			return fmt.Errorf("this one was sent by a web page of %q", origin)
		}
	}
	return nil
}

// hostOnly strips the port, if any, of a Host header.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

// IsLoopbackHost reports whether host is localhost or a loopback address:
// the hosts an API without tokens may listen on and be named by.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// requireRole answers 403 unless the request's principal has at least role.
func requireRole(role Role, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p := principalFrom(r.Context()); p == nil || p.role < role {
			writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("this needs the %s role", role))
			return
		}
		next(w, r)
	}
}

// whoami serves GET /api/v1/whoami: the name, role, grid scope and unit
// (of a unit token) of the request's token, which the console shows after sign-in. It never echoes
// the token.
func whoami(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	writeJSON(w, http.StatusOK, map[string]string{"name": p.name, "role": p.role.String(), "grid": p.scope, "unit": p.unit})
}
