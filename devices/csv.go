package devices

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
)

// csvColumns are the columns of the registry CSV format, in the order
// WriteCSV emits them. id, type and grid are required on import.
var csvColumns = []string{"id", "type", "grid", "lat", "lon", "name", "secret", "rtsp_url"}

// ReadCSV reads devices from the registry CSV format: a header row naming at
// least id, type and grid, in any order, then one device per row. Errors name
// the line. Unknown columns are ignored so newer files load on older servers.
func ReadCSV(r io.Reader) ([]Device, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("devices csv: empty file, want a header row")
	}
	if err != nil {
		return nil, fmt.Errorf("devices csv: header: %w", err)
	}
	col := make(map[string]int, len(header))
	for i, h := range header {
		col[strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))] = i
	}
	for _, req := range []string{"id", "type", "grid"} {
		if _, ok := col[req]; !ok {
			return nil, fmt.Errorf("devices csv: header lacks required column %q", req)
		}
	}
	field := func(rec []string, name string) string {
		if i, ok := col[name]; ok && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	var out []Device
	seen := make(map[string]int)
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			return nil, fmt.Errorf("devices csv: %w", err)
		}
		d := Device{
			ID:     field(rec, "id"),
			Type:   field(rec, "type"),
			Grid:   field(rec, "grid"),
			Name:   field(rec, "name"),
			Secret: field(rec, "secret"),
		}
		if d.ID == "" || d.Type == "" || d.Grid == "" {
			return nil, fmt.Errorf("devices csv: line %d: id, type and grid must not be empty", line)
		}
		if prev, dup := seen[d.ID]; dup {
			return nil, fmt.Errorf("devices csv: line %d: device %q already defined on line %d", line, d.ID, prev)
		}
		seen[d.ID] = line
		if raw := field(rec, "rtsp_url"); raw != "" {
			if d.RTSPURL, d.RTSPUser, d.RTSPPassword, err = splitRTSPURL(raw); err != nil {
				return nil, fmt.Errorf("devices csv: line %d: %w", line, err)
			}
		}
		for _, c := range []struct {
			name string
			dst  *float64
		}{{"lat", &d.Lat}, {"lon", &d.Lon}} {
			s := field(rec, c.name)
			if s == "" {
				continue
			}
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return nil, fmt.Errorf("devices csv: line %d: %s %q is not a number", line, c.name, s)
			}
			*c.dst = v
		}
		out = append(out, d)
	}
}

// WriteCSV writes devs in the registry CSV format, secrets included: the
// output is an import file and must be handled like one.
func WriteCSV(w io.Writer, devs []Device) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvColumns); err != nil {
		return err
	}
	for _, d := range devs {
		rec := []string{d.ID, d.Type, d.Grid, formatCoord(d.Lat, d.Lon, d.Lat), formatCoord(d.Lat, d.Lon, d.Lon), d.Name, d.Secret, joinRTSPURL(d)}
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
		return "", "", "", errors.New("rtsp_url must be an rtsp:// or rtsps:// URL with a host")
	}
	if u.User != nil {
		user = u.User.Username()
		password, _ = u.User.Password()
		u.User = nil
	}
	return u.String(), user, password, nil
}

// joinRTSPURL puts a camera's credentials back into its URL, for export.
func joinRTSPURL(d Device) string {
	if d.RTSPURL == "" || d.RTSPUser == "" {
		return d.RTSPURL
	}
	u, err := url.Parse(d.RTSPURL)
	if err != nil {
		return d.RTSPURL
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
