package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/gridwatch/gridwatch/alerts/notify"
	"github.com/gridwatch/gridwatch/cases"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// TestDailyScoreNoticeIntegration checks that at cases.evaluation.notice_at
// every unit gets its score notice, signed on the webhook and on MQTT
// under cases/scores/{unit} for a staff subscriber of the whole city.
func TestDailyScoreNoticeIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; skipped under -short")
	}
	const secret = "hook-secret-of-the-score-test"
	var mu sync.Mutex
	var hooked []cases.ScoreNotice
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var sn cases.ScoreNotice
		if r.Header.Get(notify.EventHeader) != "case_score" {
			return // an alert transition
		}
		if !notify.Verify([]byte(secret), b, r.Header.Get(notify.SignatureHeader)) || json.Unmarshal(b, &sn) != nil ||
			r.Header.Get(notify.DeliveryHeader) != "score/"+sn.Unit+"/"+sn.Day {
			t.Errorf("score notice %s with %v", b, r.Header)
		}
		mu.Lock()
		hooked = append(hooked, sn)
		mu.Unlock()
	}))
	defer receiver.Close()
	units := filepath.Join(t.TempDir(), "units.yaml")
	if err := os.WriteFile(units, []byte("- {code: water, name: 水务局, categories: [water]}\n- {code: cg-d01, categories: [municipal], districts: [D01]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cst, _ := time.LoadLocation("Asia/Shanghai")
	// The server's clock stands at 20 seconds before 08:00 on 2 March
	// 2026 until the server is up, then runs: a start slower than that
	// (a fresh-clone run on a loaded box) would otherwise find 08:00 gone
	// and schedule the notices for the next day. The notices' timer,
	// armed during the start, fires 20 s later: by then the staff
	// subscriber below must be subscribed, as the MQTT notices are not
	// kept for it (at 2 s, a loaded box could miss them).
	start := time.Date(2026, 3, 2, 7, 59, 40, 0, cst)
	var began atomic.Pointer[time.Time]
	now := func() time.Time {
		if b := began.Load(); b != nil {
			return start.Add(time.Since(*b))
		}
		return start
	}
	const token = "admin-token-for-the-score-test"
	addr, database := storagetest.Database(t)
	srv := startServerAt(t, now, addr, database, nil, func(c *Config) {
		c.API.AdminToken = token
		c.Units.File = units
		c.Notify.WebhookURL, c.Notify.WebhookSecret = receiver.URL, secret
	})
	up := time.Now()
	began.Store(&up)
	var mqMu sync.Mutex
	var topics []string
	staff := paho.NewClient(paho.NewClientOptions().AddBroker(mqttURL(srv)).SetClientID("console-scores").
		SetUsername("admin").SetPassword(token).SetAutoReconnect(false))
	if tok := staff.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect the staff subscriber: %v", tok.Error())
	}
	defer staff.Disconnect(250)
	if tok := staff.Subscribe("cases/scores/#", 1, func(_ paho.Client, m paho.Message) {
		mqMu.Lock()
		topics = append(topics, m.Topic())
		mqMu.Unlock()
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		mu.Lock()
		n := len(hooked)
		mu.Unlock()
		mqMu.Lock()
		m := len(topics)
		mqMu.Unlock()
		if n >= 2 && m >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook got %d notices, MQTT %d", n, m)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	var got []string
	for _, sn := range hooked {
		got = append(got, sn.Unit)
		if sn.Day != "2026-03-02" || !sn.From.Equal(time.Date(2026, 3, 1, 0, 0, 0, 0, cst)) || !sn.To.Equal(time.Date(2026, 3, 2, 0, 0, 0, 0, cst)) ||
			sn.Score != 1000 || sn.Of != 2 || sn.Band == "" {
			t.Errorf("notice %+v", sn)
		}
	}
	slices.Sort(got)
	mqMu.Lock()
	defer mqMu.Unlock()
	slices.Sort(topics)
	if !slices.Equal(got, []string{"cg-d01", "water"}) || !slices.Equal(topics, []string{"cases/scores/cg-d01", "cases/scores/water"}) {
		t.Fatalf("webhook %v, MQTT %v", got, topics)
	}
}
