package devices

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// csvColumns are the columns of the registry CSV format, in the order
// WriteCSV emits them. id, type and grid are required in the header.
var csvColumns = []string{"id", "type", "grid", "lat", "lon", "name", "install_date", "secret", "rtsp_url", "rtsp_sub_url", "sip_password"}

// maxSIPPasswordLen bounds a GB/T 28181 SIP password (devices take at most
// 32 or 64 characters).
const maxSIPPasswordLen = 128

// maxIDLen bounds device ids and grid codes: they appear in MQTT topics and
// every telemetry row.
const maxIDLen = 64

// RowError is a row of an import file that was rejected.
type RowError struct {
	// Line is the 1-based line of a CSV row, or the 1-based position of a
	// GeoJSON feature.
	Line int `json:"line"`
	// ID is the row's device id or grid code, when it had one.
	ID string `json:"id,omitempty"`
	// Reason says what is wrong; it never quotes a secret.
	Reason string `json:"reason"`
}

func (e RowError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

// CSVOptions are the settings of ParseCSV.
type CSVOptions struct {
	// Locate places a device that has coordinates but no grid; nil leaves
	// such a device rejected.
	Locate func(lat, lon float64) (string, bool)
	// Progress, when set, is called every ProgressEvery rows with the
	// number of rows read so far.
	Progress      func(rows int)
	ProgressEvery int
}

// ParseCSV reads devices from the registry CSV format: a header row naming
// at least id, type and grid, in any order, then one device per row (unknown
// columns are ignored so newer files load on older servers). It validates
// every row and returns the good devices and, for the others, a RowError with
// its line and reason; a later row with an id seen before is rejected. It
// returns an error only when the file as a whole cannot be read.
//
// A row is valid when its id is 1-64 characters of [A-Za-z0-9._-], its type
// is in the catalog, its coordinates are numbers within WGS 84 bounds, its
// install date is YYYY-MM-DD, its RTSP URLs are rtsp:// or rtsps://, and it
// has a grid or coordinates that opts.Locate places in one.
func ParseCSV(r io.Reader, opts CSVOptions) ([]Device, []RowError, error) {
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = 10000
	}
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, nil, errors.New("devices csv: empty file, want a header row")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("devices csv: header: %w", err)
	}
	col := make(map[string]int, len(header))
	for i, h := range header {
		col[strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))] = i
	}
	for _, req := range []string{"id", "type", "grid"} {
		if _, ok := col[req]; !ok {
			return nil, nil, fmt.Errorf("devices csv: header lacks required column %q", req)
		}
	}
	var (
		out      []Device
		rejected []RowError
		seen     = make(map[string]int)
		rows     int
	)
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, rejected, nil
		}
		var perr *csv.ParseError
		if errors.As(err, &perr) {
			// A quoting error loses the row; the reader goes on at the next one.
			rejected = append(rejected, RowError{Line: perr.Line, Reason: perr.Err.Error()})
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("devices csv: %w", err)
		}
		// Only a record read without error has a field to ask for: FieldPos
		// panics after a parse error (found by FuzzParseCSV).
		line, _ := cr.FieldPos(0)
		if rows++; opts.Progress != nil && rows%opts.ProgressEvery == 0 {
			opts.Progress(rows)
		}
		field := func(name string) string {
			if i, ok := col[name]; ok && i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		d, reason := parseRow(field, opts.Locate)
		if reason == "" {
			if prev, dup := seen[d.ID]; dup {
				reason = fmt.Sprintf("device %q already defined on line %d", d.ID, prev)
			}
		}
		if reason != "" {
			rejected = append(rejected, RowError{Line: line, ID: d.ID, Reason: reason})
			continue
		}
		seen[d.ID] = line
		out = append(out, d)
	}
}

// parseRow builds and validates the device of one row.
func parseRow(field func(string) string, locate func(lat, lon float64) (string, bool)) (Device, string) {
	d := Device{
		ID:          field("id"),
		Type:        field("type"),
		Grid:        field("grid"),
		Name:        field("name"),
		InstallDate: field("install_date"),
		Secret:      field("secret"),
	}
	if d.ID == "" || d.Type == "" {
		return d, "id and type must not be empty"
	}
	if reason := checkID("id", d.ID); reason != "" {
		return d, reason
	}
	if _, ok := LookupType(d.Type); !ok {
		return d, fmt.Sprintf("type %q is not in the device catalog", d.Type)
	}
	if d.Secret != "" && len(d.Secret) < MinSecretLen {
		return d, fmt.Sprintf("secret is shorter than %d characters (use gridwatch devices provision to generate one)", MinSecretLen)
	}
	if d.Grid != "" {
		if reason := checkID("grid", d.Grid); reason != "" {
			return d, reason
		}
	}
	for _, c := range []struct {
		name  string
		dst   *float64
		limit float64
	}{{"lat", &d.Lat, 90}, {"lon", &d.Lon, 180}} {
		s := field(c.name)
		if s == "" {
			continue
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || math.Abs(v) > c.limit {
			return d, fmt.Sprintf("%s %q is not a number within ±%g", c.name, truncate(s), c.limit)
		}
		*c.dst = v
	}
	if d.InstallDate != "" {
		if _, err := time.Parse(time.DateOnly, d.InstallDate); err != nil {
			return d, fmt.Sprintf("install_date %q is not YYYY-MM-DD", truncate(d.InstallDate))
		}
	}
	var err error
	if raw := field("rtsp_url"); raw != "" {
		if d.RTSPURL, d.RTSPUser, d.RTSPPassword, err = splitRTSPURL(raw); err != nil {
			return d, "rtsp_url: " + err.Error()
		}
	}
	if raw := field("rtsp_sub_url"); raw != "" {
		var user, pass string
		if d.RTSPSubURL, user, pass, err = splitRTSPURL(raw); err != nil {
			return d, "rtsp_sub_url: " + err.Error()
		}
		if d.RTSPUser == "" {
			d.RTSPUser, d.RTSPPassword = user, pass
		}
	}
	if d.SIPPassword = field("sip_password"); d.SIPPassword != "" {
		if len(d.SIPPassword) > maxSIPPasswordLen {
			return d, fmt.Sprintf("sip_password is longer than %d characters", maxSIPPasswordLen)
		}
		if IsSealed(d.SIPPassword) {
			return d, "sip_password must not start with " + sealedPrefix
		}
	}
	if d.Grid == "" {
		if d.Lat == 0 && d.Lon == 0 {
			return d, "grid is empty and there are no coordinates to place the device"
		}
		if locate == nil {
			return d, "grid is empty and no grids are loaded to place the device"
		}
		g, ok := locate(d.Lat, d.Lon)
		if !ok {
			return d, fmt.Sprintf("grid is empty and no grid contains %.6f,%.6f", d.Lat, d.Lon)
		}
		d.Grid = g
	}
	return d, ""
}

// checkID returns why id cannot be a device id or grid code, or "". Ids go
// into MQTT topics, so the topic characters / + # are never allowed.
func checkID(what, id string) string {
	if id == "" || len(id) > maxIDLen {
		return fmt.Sprintf("%s must be 1-%d characters", what, maxIDLen)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Sprintf("%s %q may hold only letters, digits, '-', '_' and '.'", what, truncate(id))
		}
	}
	return ""
}

// truncate shortens s for quoting in a reason.
func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// ReadCSV reads devices like ParseCSV but fails on the first rejected row.
// The server uses it for devices.file, which must be right as a whole.
func ReadCSV(r io.Reader) ([]Device, error) {
	devs, rejected, err := ParseCSV(r, CSVOptions{})
	if err != nil {
		return nil, err
	}
	if len(rejected) > 0 {
		return nil, fmt.Errorf("devices csv: %w (%d rows rejected)", rejected[0], len(rejected))
	}
	return devs, nil
}

// WriteCSV writes devs in the registry CSV format. Plain secrets and RTSP
// credentials are written when the devices hold them (an import file being
// generated); callers exporting the registry clear them first.
func WriteCSV(w io.Writer, devs []Device) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvColumns); err != nil {
		return err
	}
	for _, d := range devs {
		rec := []string{d.ID, d.Type, d.Grid, formatCoord(d.Lat, d.Lon, d.Lat), formatCoord(d.Lat, d.Lon, d.Lon),
			d.Name, d.InstallDate, d.Secret, joinRTSPURL(d.RTSPURL, d), joinRTSPURL(d.RTSPSubURL, d), d.SIPPassword}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// splitRTSPURL parses an rtsp:// or rtsps:// URL and takes its credentials
// out. Errors never repeat the URL, which may hold a password.
func splitRTSPURL(raw string) (clean, user, password string, err error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "rtsp" && u.Scheme != "rtsps") || u.Host == "" {
		return "", "", "", errors.New("must be an rtsp:// or rtsps:// URL with a host")
	}
	if u.User != nil {
		user = u.User.Username()
		password, _ = u.User.Password()
		u.User = nil
	}
	if IsSealed(password) {
		// It would be stored as it is, taken for a sealed value.
		return "", "", "", errors.New("password must not start with " + sealedPrefix)
	}
	return u.String(), user, password, nil
}

// joinRTSPURL puts a camera's credentials back into one of its URLs.
func joinRTSPURL(raw string, d Device) string {
	if raw == "" || d.RTSPUser == "" {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.User = url.UserPassword(d.RTSPUser, d.RTSPPassword)
	return u.String()
}

// formatCoord renders v, or nothing when the device has no coordinates.
func formatCoord(lat, lon, v float64) string {
	if lat == 0 && lon == 0 {
		return ""
	}
	return strconv.FormatFloat(v, 'f', 6, 64)
}
