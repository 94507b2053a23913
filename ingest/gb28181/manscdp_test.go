package gb28181

import (
	"errors"
	"testing"

	"golang.org/x/text/encoding/simplifiedchinese"
)

// gb2312 encodes s as a GB2312 device would.
func gb2312(t testing.TB, s string) []byte {
	b, err := simplifiedchinese.GB18030.NewEncoder().Bytes([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var messageCases = []struct {
	name string
	body string
	ok   bool
}{
	{"keepalive", `<?xml version="1.0" encoding="GB2312"?>
<Notify><CmdType>Keepalive</CmdType><SN>43</SN><DeviceID>34020000001320000001</DeviceID><Status>OK</Status></Notify>`, true},
	{"catalog", `<?xml version="1.0" encoding="GB2312"?>
<Response><CmdType>Catalog</CmdType><SN>7</SN><DeviceID>34020000001110000001</DeviceID><SumNum>2</SumNum>
<DeviceList Num="2"><Item><DeviceID>34020000001310000001</DeviceID><Name>东门</Name><Status>ON</Status></Item>
<Item><DeviceID>34020000001310000002</DeviceID><Name>西门</Name><Status>OFF</Status></Item></DeviceList></Response>`, true},
	{"alarm utf-8", `<?xml version="1.0" encoding="UTF-8"?>
<Notify><CmdType>Alarm</CmdType><SN>1</SN><DeviceID>34020000001340000001</DeviceID><AlarmPriority>1</AlarmPriority>
<AlarmMethod>5</AlarmMethod><AlarmTime>2026-12-02T01:00:00</AlarmTime><Info><AlarmType>6</AlarmType></Info></Notify>`, true},
	{"no declaration", `<Notify><CmdType>Keepalive</CmdType><SN>1</SN></Notify>`, true},
	{"not xml", `hello`, false},
	{"truncated", `<Notify><CmdType>Keepalive</CmdType>`, false},
	{"other root", `<Foo><CmdType>Keepalive</CmdType></Foo>`, false},
	{"no cmdtype", `<Notify><SN>1</SN></Notify>`, false},
	{"unknown charset", `<?xml version="1.0" encoding="EBCDIC"?><Notify><CmdType>Keepalive</CmdType></Notify>`, false},
	{"bad SN", `<Notify><CmdType>Keepalive</CmdType><SN>-x</SN></Notify>`, false},
}

func TestParseMessage(t *testing.T) {
	for _, c := range messageCases {
		t.Run(c.name, func(t *testing.T) {
			m, err := ParseMessage(gb2312(t, c.body))
			if c.ok != (err == nil) {
				t.Fatalf("err = %v, want ok %v", err, c.ok)
			}
			if err != nil && !errors.Is(err, ErrBadMANSCDP) {
				t.Fatalf("err %v does not wrap ErrBadMANSCDP", err)
			}
			if c.name == "catalog" {
				if m.SumNum != 2 || len(m.DeviceList.Items) != 2 || m.DeviceList.Items[0].Name != "东门" ||
					!m.DeviceList.Items[0].Online() || m.DeviceList.Items[1].Online() {
					t.Fatalf("catalog %+v", m.DeviceList)
				}
			}
			if c.name == "alarm utf-8" {
				if a := alarmOf("34020000001320000001", m); a.Source != "34020000001340000001" || a.Priority != 1 || a.Method != 5 || a.Type != 6 {
					t.Fatalf("alarm %+v", a)
				}
			}
		})
	}
}

// TestEncodeRoundTrip checks that a query gridwatch sends reads back, in
// GB2312 as devices expect.
func TestEncodeRoundTrip(t *testing.T) {
	q := Query(CmdCatalog, 9, "34020000001320000001")
	q.DeviceName = "南门摄像机"
	body, err := q.Encode()
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseMessage(body)
	if err != nil {
		t.Fatal(err)
	}
	if m.XMLName.Local != "Query" || m.CmdType != CmdCatalog || m.SN != 9 || m.DeviceName != "南门摄像机" {
		t.Fatalf("round trip %+v", m)
	}
}

func FuzzParseMessage(f *testing.F) {
	for _, c := range messageCases {
		f.Add([]byte(c.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := ParseMessage(body)
		if err != nil {
			return
		}
		if m.CmdType == "" {
			t.Fatal("a message without CmdType was accepted")
		}
		_ = alarmOf("34020000001320000001", m)
	})
}
