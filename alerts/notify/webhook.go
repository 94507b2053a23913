package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/gridwatch/gridwatch/alerts"
)

// Headers of a webhook request.
const (
	// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the body
	// under the webhook's secret (the scheme GitHub uses).
	SignatureHeader = "X-Gridwatch-Signature"
	// DeliveryHeader is "{alert id}/{version}" for a transition, the
	// Message's Delivery otherwise: the same for every retry, so a receiver
	// can drop duplicates.
	DeliveryHeader = "X-Gridwatch-Delivery"
	// EventHeader is the event kind, such as "ack".
	EventHeader = "X-Gridwatch-Event"
)

// MinSecretLen is the shortest signing secret (notify.webhook_secret) the
// server accepts: a short one lets a stranger forge notifications that the
// receiver takes for gridwatch's.
const MinSecretLen = 16

// Sign returns the SignatureHeader value of body under secret.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify reports whether signature is Sign(secret, body), in constant time.
// Receivers written in Go can use it.
func Verify(secret, body []byte, signature string) bool {
	return hmac.Equal([]byte(signature), []byte(Sign(secret, body)))
}

// Message is one notification other than an alert transition, such as a
// unit's daily score: a JSON body, with what names it on each channel.
type Message struct {
	// Delivery identifies the message (DeliveryHeader): the same for every
	// retry, so a receiver can drop duplicates.
	Delivery string
	// Event is its kind (EventHeader), such as "case_score".
	Event string
	// Topic is the MQTT topic it is published on.
	Topic string
	// Body is the JSON document.
	Body []byte
}

// Webhook POSTs transitions and messages as JSON to a URL, one at a time in
// the order they came, each signed and retried with exponential backoff.
// They wait in a bounded queue; when it is full, new ones are dropped and
// counted.
type Webhook struct {
	// URL receives the POSTs. Required. Robots of chat services carry their
	// key in it (DingTalk access_token=, WeCom key=, Feishu /hook/{token}),
	// so logs and errors show only its scheme and host.
	URL string
	// Secret keys the HMAC-SHA256 signature of each body. Required.
	Secret []byte
	// Client sends the requests. It defaults to a client with a 10-second
	// timeout that follows only redirects keeping the method and body (307,
	// 308): a 301, 302 or 303 would turn the signed POST into an empty GET.
	Client *http.Client
	// QueueSize bounds the transitions waiting to be sent. It defaults to
	// 1024.
	QueueSize int
	// InitialInterval is the delay before the first retry; later ones grow
	// 1.5 times each, with jitter. It defaults to 1 second.
	InitialInterval time.Duration
	// MaxElapsed is how long one transition is retried before it counts as
	// failed. It defaults to 5 minutes.
	MaxElapsed time.Duration
	// ShutdownGrace is how long Close lets queued transitions go out. It
	// defaults to 5 seconds.
	ShutdownGrace time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Metrics defaults to unregistered metrics.
	Metrics *Metrics

	redacted  string       // URL without its path, query and user, for logs
	mu        sync.RWMutex // guards closed against Notify's send
	closed    bool
	queue     chan Message
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// errRejected marks a response that retrying will not change.
var errRejected = errors.New("webhook rejected the request")

// Start begins delivering in the background.
func (w *Webhook) Start(ctx context.Context) error {
	u, err := url.Parse(w.URL)
	if err != nil || u.Host == "" || len(w.Secret) == 0 {
		return errors.New("notify: webhook needs an absolute URL and a Secret")
	}
	w.redacted = redactURL(u)
	if w.Client == nil {
		w.Client = &http.Client{Timeout: 10 * time.Second, CheckRedirect: keepPOST}
	}
	if w.QueueSize <= 0 {
		w.QueueSize = 1024
	}
	if w.InitialInterval <= 0 {
		w.InitialInterval = time.Second
	}
	if w.MaxElapsed <= 0 {
		w.MaxElapsed = 5 * time.Minute
	}
	if w.ShutdownGrace <= 0 {
		w.ShutdownGrace = 5 * time.Second
	}
	if w.Logger == nil {
		w.Logger = slog.Default()
	}
	if w.Metrics == nil {
		w.Metrics = NewMetrics(nil)
	}
	w.queue = make(chan Message, w.QueueSize)
	w.done = make(chan struct{})
	ctx, w.cancel = context.WithCancel(ctx)
	go w.run(ctx)
	return nil
}

// Notify implements Notifier. It never blocks: when the queue is full the
// transition is dropped and counted.
func (w *Webhook) Notify(t alerts.Transition) {
	payload, err := body(t)
	if err != nil {
		w.Metrics.failed.WithLabelValues("webhook").Inc()
		w.Logger.Warn("alert transition not delivered to webhook", "alert", t.Event.AlertID, "err", err)
		return
	}
	w.Send(Message{Delivery: t.Event.AlertID + "/" + strconv.FormatUint(t.Event.Version, 10), Event: string(t.Event.Kind), Body: payload})
}

// Send queues m. It never blocks: when the queue is full m is dropped and
// counted.
func (w *Webhook) Send(m Message) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.Metrics.dropped.WithLabelValues("webhook", "shutdown").Inc()
		return
	}
	select {
	case w.queue <- m:
	default:
		w.Metrics.dropped.WithLabelValues("webhook", "queue_full").Inc()
	}
}

// Close stops taking transitions, lets the queued ones go out for up to
// ShutdownGrace, then cancels the rest (counted as dropped). It is safe to
// call twice.
func (w *Webhook) Close() error {
	w.closeOnce.Do(func() {
		if w.done == nil {
			return
		}
		w.mu.Lock()
		w.closed = true
		close(w.queue)
		w.mu.Unlock()
		grace := time.AfterFunc(w.ShutdownGrace, w.cancel)
		<-w.done
		grace.Stop()
		w.cancel()
	})
	return nil
}

// run delivers the queue in order until it is closed and drained.
func (w *Webhook) run(ctx context.Context) {
	defer close(w.done)
	var lastLog time.Time
	var unlogged int
	for m := range w.queue {
		if ctx.Err() != nil {
			w.Metrics.dropped.WithLabelValues("webhook", "shutdown").Inc()
			continue
		}
		err := w.deliver(ctx, m)
		switch {
		case err == nil:
			w.Metrics.sent.WithLabelValues("webhook").Inc()
		case ctx.Err() != nil:
			w.Metrics.dropped.WithLabelValues("webhook", "shutdown").Inc()
		default:
			w.Metrics.failed.WithLabelValues("webhook").Inc()
			// A dead endpoint fails every transition: log once a minute.
			if unlogged++; time.Since(lastLog) >= time.Minute {
				w.Logger.Warn("notifications not delivered to webhook", "url", w.redacted, "failed", unlogged, "last", m.Delivery, "err", err)
				lastLog, unlogged = time.Now(), 0
			}
		}
	}
}

// deliver POSTs one message, retrying until it is accepted, refused for
// good, MaxElapsed has passed or ctx ends.
func (w *Webhook) deliver(ctx context.Context, m Message) error {
	payload := m.Body
	signature := Sign(w.Secret, payload)
	post := func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(payload))
		if err != nil {
			return backoff.Permanent(fmt.Errorf("build the request: %w", redact(err)))
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(SignatureHeader, signature)
		req.Header.Set(DeliveryHeader, m.Delivery)
		req.Header.Set(EventHeader, m.Event)
		resp, err := w.Client.Do(req)
		if err != nil {
			return redact(err)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		switch {
		case resp.StatusCode < 300:
			return nil
		case resp.StatusCode >= 500, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout:
			return fmt.Errorf("webhook answered %s", resp.Status)
		default:
			return backoff.Permanent(fmt.Errorf("%w: %s", errRejected, resp.Status))
		}
	}
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(w.InitialInterval),
		backoff.WithMaxElapsedTime(w.MaxElapsed),
	)
	retried := func(error, time.Duration) { w.Metrics.retries.WithLabelValues("webhook").Inc() }
	if err := backoff.RetryNotify(post, backoff.WithContext(b, ctx), retried); err != nil {
		return fmt.Errorf("post %s to %s: %w", m.Delivery, w.redacted, err)
	}
	return nil
}

// redactURL returns u's scheme and host only: the path, query and user
// info of a webhook URL may hold its key.
func redactURL(u *url.URL) string {
	r := u.Scheme + "://" + u.Host
	if u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
		r += "/[redacted]"
	}
	return r
}

// redact returns err without the URL a *url.Error of http.Client.Do
// carries: it prints the request's full URL, the webhook's key with it (or
// a redirect's target). The caller names the redacted URL instead.
func redact(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	return fmt.Errorf("%s: %w", ue.Op, ue.Err)
}

// keepPOST is the default client's CheckRedirect: it follows only the
// redirects that keep the method and body, and hands back any other
// redirect as the answer, a refusal.
func keepPOST(req *http.Request, via []*http.Request) error {
	if req.Method != via[0].Method {
		return http.ErrUseLastResponse
	}
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	return nil
}
