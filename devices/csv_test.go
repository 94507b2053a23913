package devices

import (
	"bytes"
	"strings"
	"testing"
)

func TestReadCSV(t *testing.T) {
	in := "\ufeffid,type,grid,lat,lon,name,secret,rtsp_url,extra\n" +
		"aq-1,air_quality,G1,30.1,120.2,Station 1,s1-long-enough-secret,,x\n" +
		"cam-1,camera,G2,,,Gate,,rtsp://admin:p%40ss@10.0.0.5:554/Streaming/101,\n"
	in = strings.Replace(in, ",extra\n", ",extra,sip_password\n", 1) + "34020000001320000001,camera,G3,,,GB,,,,gb-pass-1\n"
	devs, err := ReadCSV(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Device{
		{ID: "aq-1", Type: "air_quality", Grid: "G1", Lat: 30.1, Lon: 120.2, Name: "Station 1", Secret: "s1-long-enough-secret"},
		{ID: "cam-1", Type: "camera", Grid: "G2", Name: "Gate", RTSPURL: "rtsp://10.0.0.5:554/Streaming/101", RTSPUser: "admin", RTSPPassword: "p@ss"},
		{ID: "34020000001320000001", Type: "camera", Grid: "G3", Name: "GB", SIPPassword: "gb-pass-1"},
	}
	if len(devs) != len(want) {
		t.Fatalf("got %d devices, want %d", len(devs), len(want))
	}
	for i := range want {
		if devs[i] != want[i] {
			t.Errorf("device %d = %+v, want %+v", i, devs[i], want[i])
		}
	}

	var buf bytes.Buffer
	if err := WriteCSV(&buf, devs); err != nil {
		t.Fatal(err)
	}
	again, err := ReadCSV(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for i := range devs {
		if again[i] != devs[i] {
			t.Errorf("round trip %d = %+v, want %+v", i, again[i], devs[i])
		}
	}
}

func TestReadCSVErrors(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"empty", "", "empty file"},
		{"no grid column", "id,type\nx,noise\n", `lacks required column "grid"`},
		{"empty id", "id,type,grid\n,noise,G1\n", "line 2: id and type must not be empty"},
		{"duplicate", "id,type,grid\na,noise,G1\na,noise,G2\n", `line 3: device "a" already defined on line 2`},
		{"bad lat", "id,type,grid,lat\na,noise,G1,north\n", `line 2: lat "north" is not a number`},
		{"weak secret", "id,type,grid,secret\na,noise,G1,hunter2\n", "line 2: secret is shorter than 16 characters"},
		{"bad rtsp url hides password", "id,type,grid,rtsp_url\nc,camera,G1,http://u:hunter2@h/x\n", "line 2: rtsp_url: must be"},
		// A password that looks sealed would be stored as it is, in plain text.
		{"password posing as sealed", "id,type,grid,rtsp_url\nc,camera,G1,rtsp://u:gwsec1:hunter2@h/x\n", "line 2: rtsp_url: password must not start with gwsec1:"},
		{"SIP password posing as sealed", "id,type,grid,sip_password\nc,camera,G1,gwsec1:x\n", "line 2: sip_password must not start with gwsec1:"},
		{"SIP password too long", "id,type,grid,sip_password\nc,camera,G1," + strings.Repeat("p", 129) + "\n", "line 2: sip_password is longer than 128 characters"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadCSV(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}
