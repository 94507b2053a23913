package gb28181

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"

	"golang.org/x/text/encoding/simplifiedchinese"
)

// ContentType is the media type of MANSCDP bodies (GB/T 28181 §A). Devices
// spell it in any case ("Application/MANSCDP+xml").
const ContentType = "Application/MANSCDP+xml"

// MaxBodyBytes bounds a MANSCDP body; a catalog of a few hundred channels
// fits, larger messages are refused (413).
const MaxBodyBytes = 256 << 10

// The command types gridwatch reads and sends.
const (
	CmdKeepalive  = "Keepalive"
	CmdAlarm      = "Alarm"
	CmdCatalog    = "Catalog"
	CmdDeviceInfo = "DeviceInfo"
)

// Message is a MANSCDP message: a Notify, Query or Response with the fields
// of the commands gridwatch handles. Fields a command does not carry stay
// empty.
type Message struct {
	// XMLName is Notify, Query, Response or Control.
	XMLName  xml.Name
	CmdType  string `xml:"CmdType"`
	SN       uint32 `xml:"SN"`
	DeviceID string `xml:"DeviceID"`
	// Status of a Keepalive ("OK").
	Status string `xml:"Status,omitempty"`

	// Alarm fields.
	AlarmPriority    string     `xml:"AlarmPriority,omitempty"`
	AlarmMethod      string     `xml:"AlarmMethod,omitempty"`
	AlarmTime        string     `xml:"AlarmTime,omitempty"`
	AlarmDescription string     `xml:"AlarmDescription,omitempty"`
	AlarmInfo        *AlarmInfo `xml:"Info,omitempty"`

	// DeviceInfo fields.
	DeviceName   string `xml:"DeviceName,omitempty"`
	Result       string `xml:"Result,omitempty"`
	Manufacturer string `xml:"Manufacturer,omitempty"`
	Model        string `xml:"Model,omitempty"`
	Firmware     string `xml:"Firmware,omitempty"`
	Channel      string `xml:"Channel,omitempty"`

	// Catalog fields: SumNum is the channels of the whole catalog, which a
	// device may spread over several messages.
	SumNum     int          `xml:"SumNum,omitempty"`
	DeviceList *CatalogList `xml:"DeviceList,omitempty"`
}

// AlarmInfo is the Info element of an alarm (GB/T 28181-2016 §A.2.6.4).
type AlarmInfo struct {
	AlarmType string `xml:"AlarmType,omitempty"`
}

// CatalogList is a catalog's DeviceList.
type CatalogList struct {
	Num   int           `xml:"Num,attr"`
	Items []CatalogItem `xml:"Item"`
}

// CatalogItem is one channel (camera, alarm input…) or organisation node of
// a catalog.
type CatalogItem struct {
	DeviceID     string `xml:"DeviceID"`
	Name         string `xml:"Name,omitempty"`
	Manufacturer string `xml:"Manufacturer,omitempty"`
	Model        string `xml:"Model,omitempty"`
	CivilCode    string `xml:"CivilCode,omitempty"`
	ParentID     string `xml:"ParentID,omitempty"`
	// Status is ON or OFF (some devices write ONLINE/OFFLINE).
	Status string `xml:"Status,omitempty"`
}

// Online reports whether a catalog item's Status says it is on.
func (it CatalogItem) Online() bool {
	s := strings.ToUpper(strings.TrimSpace(it.Status))
	return s == "ON" || s == "ONLINE" || s == "OK"
}

// ParseMessage decodes a MANSCDP body. Bodies declare GB2312 (most
// devices), GBK, GB18030 or UTF-8; all are read. An error means the body is
// not a MANSCDP message: the device gets 400 and the error is counted.
func ParseMessage(body []byte) (Message, error) {
	var m Message
	dec := xml.NewDecoder(bytes.NewReader(body))
	dec.CharsetReader = charsetReader
	if err := dec.Decode(&m); err != nil {
		return Message{}, fmt.Errorf("%w: %w", ErrBadMANSCDP, err)
	}
	switch m.XMLName.Local {
	case "Notify", "Query", "Response", "Control":
	default:
		return Message{}, fmt.Errorf("%w: root element %q", ErrBadMANSCDP, truncate(m.XMLName.Local))
	}
	if m.CmdType == "" {
		return Message{}, fmt.Errorf("%w: no CmdType", ErrBadMANSCDP)
	}
	return m, nil
}

// charsetReader reads the Chinese national charsets; GB18030 is a superset
// of GBK and GB2312, so one decoder serves all three.
func charsetReader(charset string, in io.Reader) (io.Reader, error) {
	switch strings.ToLower(charset) {
	case "gb2312", "gbk", "gb18030", "cp936":
		return simplifiedchinese.GB18030.NewDecoder().Reader(in), nil
	case "utf-8", "utf8", "us-ascii", "ascii":
		return in, nil
	}
	return nil, fmt.Errorf("unsupported charset %q", truncate(charset))
}

// Encode renders m as a MANSCDP body in GB2312 (GB18030), the charset
// devices expect.
func (m Message) Encode() ([]byte, error) {
	body, err := xml.MarshalIndent(m, "", "")
	if err != nil {
		return nil, fmt.Errorf("gb28181: encode %s: %w", m.CmdType, err)
	}
	gb, err := simplifiedchinese.GB18030.NewEncoder().Bytes(body)
	if err != nil {
		return nil, fmt.Errorf("gb28181: encode %s: %w", m.CmdType, err)
	}
	return append([]byte(`<?xml version="1.0" encoding="GB2312"?>`+"\n"), append(gb, '\n')...), nil
}

// Query returns a Query of cmd for the device.
func Query(cmd string, sn uint32, device string) Message {
	return Message{XMLName: xml.Name{Local: "Query"}, CmdType: cmd, SN: sn, DeviceID: device}
}

// Alarm is an alarm notification of a device, as GB/T 28181 codes it.
type Alarm struct {
	// Device is the device that registered and sent it; Source is the
	// channel the alarm is about (the DeviceID of the notification), which
	// may be the device itself.
	Device, Source string
	// Priority is 1 (highest) to 4; 0 when the device did not say.
	Priority int
	// Method is 1 telephone, 2 device, 3 SMS, 4 GPS, 5 video analysis,
	// 6 device fault, 7 other; Type refines it (for method 5: 2 motion,
	// 6 intrusion…; for method 2: 1 video loss, 2 tampering…).
	Method, Type int
	// Time is AlarmTime as the device wrote it (local time, no zone).
	Time string
	// Description is the device's text.
	Description string
}

// alarmOf reads the alarm of a Notify.
func alarmOf(device string, m Message) Alarm {
	a := Alarm{
		Device: device, Source: m.DeviceID, Time: m.AlarmTime, Description: m.AlarmDescription,
		Priority: atoi(m.AlarmPriority), Method: atoi(m.AlarmMethod),
	}
	if a.Source == "" {
		a.Source = device
	}
	if m.AlarmInfo != nil {
		a.Type = atoi(m.AlarmInfo.AlarmType)
	}
	return a
}

// atoi reads a small code, 0 when absent or not a number.
func atoi(s string) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// truncate shortens s for quoting in an error or log.
func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
