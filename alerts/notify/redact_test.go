package notify

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
)

// robotPaths are chat-robot webhook paths whose key is part of the URL, as
// the services hand them out, and the secret parts of each.
var robotPaths = []struct {
	name, path string
	secrets    []string
}{
	{"dingtalk", "/robot/send?access_token=9f8e7d6c5b4a39281706dingtalk", []string{"9f8e7d6c5b4a39281706dingtalk"}},
	{"wecom", "/cgi-bin/webhook/send?key=693axxx6-7aoc-4bc4-97a0-0ec2sifa5aaa", []string{"693axxx6-7aoc-4bc4-97a0-0ec2sifa5aaa"}},
	{"feishu", "/open-apis/bot/v2/hook/0f1e2d3c-4b5a-6978-feishu-token", []string{"0f1e2d3c-4b5a-6978-feishu-token"}},
}

// signingSecret is the webhook's HMAC key in these tests.
const signingSecret = "hmac-signing-key-never-printed"

// TestWebhookSecretsNeverPrinted attacks the promise "secrets never appear
// in logs, metrics, errors": for robot URLs that carry their key (DingTalk
// access_token=, WeCom key=, Feishu /hook/{token}, and a password in the
// user info), a connection refused, a hung endpoint, a server error and a
// refusal are logged and returned as errors that name the host but never
// the key, the password or the signing secret; the metrics carry neither.
func TestWebhookSecretsNeverPrinted(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + closed.Addr().String()
	closed.Close() // nothing listens there any more: connection refused
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer hung.Close()
	defer close(release)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) }))
	defer failing.Close()
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad token "+r.URL.RawQuery, http.StatusForbidden)
	}))
	defer refusing.Close()

	for _, endpoint := range []struct{ name, base string }{
		{"connection refused", refused}, {"hung", hung.URL}, {"500", failing.URL}, {"403", refusing.URL},
	} {
		for _, robot := range robotPaths {
			t.Run(endpoint.name+"/"+robot.name, func(t *testing.T) {
				base := strings.Replace(endpoint.base, "http://", "http://robot:user-password-xyz@", 1)
				secrets := append([]string{"user-password-xyz", signingSecret}, robot.secrets...)
				var logs bytes.Buffer
				reg := prometheus.NewRegistry()
				w := &Webhook{URL: base + robot.path, Secret: []byte(signingSecret), InitialInterval: time.Millisecond,
					MaxElapsed: 50 * time.Millisecond, Metrics: NewMetrics(reg),
					Client: &http.Client{Timeout: 50 * time.Millisecond, CheckRedirect: keepPOST},
					Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
				if err := w.Start(context.Background()); err != nil {
					t.Fatal(err)
				}
				derr := w.deliver(t.Context(), Message{Delivery: "a1/1", Event: "ack", Body: []byte(`{}`)})
				if derr == nil {
					t.Fatal("delivered to a failing endpoint")
				}
				w.Notify(transition("a1", 2))
				poll(t, "failed counter", func() bool { return testutil.ToFloat64(w.Metrics.failed.WithLabelValues("webhook")) == 1 })
				_ = w.Close()
				metrics, err := testutil.CollectAndFormat(reg, expfmt.TypeTextPlain)
				if err != nil {
					t.Fatal(err)
				}
				host := strings.TrimPrefix(endpoint.base, "http://")
				if !strings.Contains(derr.Error(), host) || !strings.Contains(logs.String(), host) {
					t.Errorf("error %q or logs %q do not name the host %s", derr, logs.String(), host)
				}
				for _, secret := range secrets {
					for where, text := range map[string]string{"error": derr.Error(), "logs": logs.String(), "metrics": string(metrics)} {
						if strings.Contains(text, secret) {
							t.Errorf("%s holds the secret %q: %s", where, secret, text)
						}
					}
				}
			})
		}
	}
}

// TestWebhookRedirectIsNoSilentLoss attacks the notify.webhook_url promise
// "POST every transition as JSON, signed": an endpoint that answers 302 (an
// http:// URL redirected to https://, say) would have Go's client resend
// the POST as an empty GET, and the transition count as sent. It must count
// as failed instead, while a 307, which keeps the POST and its body, is
// followed.
func TestWebhookRedirectIsNoSilentLoss(t *testing.T) {
	for _, tc := range []struct {
		status    int
		delivered bool
	}{{http.StatusFound, false}, {http.StatusMovedPermanently, false}, {http.StatusTemporaryRedirect, true}} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			rc := &receiver{}
			mux := http.NewServeMux()
			mux.Handle("/final", rc)
			mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "/final", tc.status)
			})
			srv := httptest.NewServer(mux)
			defer srv.Close()
			w := &Webhook{URL: srv.URL + "/hook", Secret: []byte("k"), InitialInterval: time.Millisecond, MaxElapsed: 50 * time.Millisecond, Logger: quiet}
			if err := w.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			w.Notify(transition("a1", 1))
			poll(t, "an outcome", func() bool {
				return testutil.ToFloat64(w.Metrics.sent.WithLabelValues("webhook"))+testutil.ToFloat64(w.Metrics.failed.WithLabelValues("webhook")) == 1
			})
			sent := testutil.ToFloat64(w.Metrics.sent.WithLabelValues("webhook")) == 1
			rc.mu.Lock()
			defer rc.mu.Unlock()
			if sent != tc.delivered {
				t.Errorf("counted as sent: %v, want %v", sent, tc.delivered)
			}
			if sent && (len(rc.bodies) != 1 || len(rc.bodies[0]) == 0 || !Verify([]byte("k"), rc.bodies[0], rc.headers[0].Get(SignatureHeader))) {
				t.Errorf("counted as sent, but the receiver got %d requests: %q", len(rc.bodies), rc.bodies)
			}
		})
	}
}
