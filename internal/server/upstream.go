package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/gridwatch/gridwatch/broker"
)

// UpstreamConfig is the upstream.* keys: an external MQTT broker or cluster
// whose shared subscription the node consumes, beside its embedded broker
// (the README's cluster mode (b)).
type UpstreamConfig struct {
	Brokers              string        `koanf:"brokers" help:"comma-separated URLs (tcp://, ssl://, ws://, wss://) of an external MQTT broker or cluster whose devices/{id}/telemetry the node consumes through a shared subscription, trusting the broker's authentication and ACL for the device id in the topic; empty consumes none"`
	ClientID             string        `koanf:"client_id" help:"the node's MQTT client id on the upstream broker, required with upstream.brokers: unique to the node and the same across its restarts, since its persistent session holds what the node has not acknowledged"`
	Username             string        `koanf:"username" help:"the node's username on the upstream broker"`
	Password             string        `koanf:"password" help:"the node's password on the upstream broker" secret:"true"`
	Topics               string        `koanf:"topics" help:"comma-separated topic filters subscribed at QoS 1: devices/{id}/telemetry is ingested, devices/{id}/status (online/offline, and wills) followed; a plain (not $share/) filter on several nodes would give every node every message"`
	TLSCA                string        `koanf:"tls_ca" help:"PEM CA bundle verifying an ssl:// or wss:// upstream broker; empty uses the system's roots"`
	TLSCert              string        `koanf:"tls_cert" help:"PEM client certificate for the upstream broker, with upstream.tls_key"`
	TLSKey               string        `koanf:"tls_key" help:"PEM private key of upstream.tls_cert"`
	KeepAlive            time.Duration `koanf:"keepalive" help:"MQTT keepalive with the upstream broker"`
	ConnectTimeout       time.Duration `koanf:"connect_timeout" help:"bound of a connection attempt and its subscription"`
	MaxReconnectInterval time.Duration `koanf:"max_reconnect_interval" help:"longest wait between connection attempts (exponential backoff from 500ms)"`
}

// defaultUpstream is the upstream.* defaults: no upstream broker.
func defaultUpstream() UpstreamConfig {
	return UpstreamConfig{
		Topics:               broker.DefaultUpstreamTopic + "," + broker.DefaultUpstreamStatusTopic,
		KeepAlive:            30 * time.Second,
		ConnectTimeout:       10 * time.Second,
		MaxReconnectInterval: time.Minute,
	}
}

// upstreamSchemes are the URL schemes paho dials.
var upstreamSchemes = map[string]bool{"tcp": true, "mqtt": true, "ssl": true, "tls": true, "mqtts": true, "ws": true, "wss": true}

// split splits a comma-separated list, dropping blanks.
func split(list string) []string {
	var out []string
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// validate checks the upstream.* keys. A URL is named by scheme and host
// only, so that no error repeats a password written into one.
func (c *UpstreamConfig) validate(bad func(key, format string, args ...any)) {
	brokers := split(c.Brokers)
	for _, b := range brokers {
		u, err := url.Parse(b)
		switch {
		case err != nil:
			bad("upstream.brokers", "holds an address that is not a URL such as tcp://mqtt.example:1883")
		case u.User != nil:
			bad("upstream.brokers", "must not carry credentials in a URL (%s://%s): set upstream.username and upstream.password", u.Scheme, u.Host)
		case !upstreamSchemes[u.Scheme] || u.Host == "":
			bad("upstream.brokers", "must be tcp://, ssl://, ws:// or wss:// URLs with a host, not %s://%s", u.Scheme, u.Host)
		}
	}
	if len(brokers) > 0 && c.ClientID == "" {
		bad("upstream.client_id", "must be set with upstream.brokers: one per node, the same across its restarts")
	}
	topics := split(c.Topics)
	if len(topics) == 0 {
		bad("upstream.topics", "must name at least one topic filter, such as %s", broker.DefaultUpstreamTopic)
	}
	for _, t := range topics {
		if err := topicFilterError(t); err != "" {
			bad("upstream.topics", "%q: %s", t, err)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("upstream.tls_cert", "and upstream.tls_key go together")
	}
	for key, d := range map[string]time.Duration{"upstream.keepalive": c.KeepAlive, "upstream.connect_timeout": c.ConnectTimeout,
		"upstream.max_reconnect_interval": c.MaxReconnectInterval} {
		if d <= 0 {
			bad(key, "must be > 0")
		}
	}
}

// topicFilterError says what is wrong with an MQTT topic filter, or "".
func topicFilterError(f string) string {
	levels := strings.Split(f, "/")
	if strings.HasPrefix(f, "$share/") {
		if len(levels) < 3 || levels[1] == "" || strings.ContainsAny(levels[1], "+#") {
			return "a shared subscription is $share/{group}/{filter}"
		}
		levels = levels[2:]
	}
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return "# must be the last level"
		case l != "#" && l != "+" && strings.ContainsAny(l, "+#"):
			return "+ and # must fill a whole level"
		}
	}
	return ""
}

// upstreamTLS is the TLS configuration of the upstream connection: TLS 1.2
// at least, the CA and client certificate when set.
func upstreamTLS(c *UpstreamConfig) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLSCA != "" {
		pool, err := loadCertPool("upstream.tls_ca", c.TLSCA)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	if c.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("upstream.tls_cert/upstream.tls_key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// loadCertPool reads a PEM CA bundle, the value of key.
func loadCertPool(key, path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s: no PEM certificate", key, path)
	}
	return pool, nil
}

// startUpstream consumes the upstream broker's shared subscription into
// ingest, when upstream.brokers is set.
func (s *Server) startUpstream(ctx context.Context, ingest broker.IngestFunc) error {
	c := &s.Config.Upstream
	brokers := split(c.Brokers)
	if len(brokers) == 0 {
		return nil
	}
	tc, err := upstreamTLS(c)
	if err != nil {
		return err
	}
	s.upstream = &broker.Upstream{
		Brokers:              brokers,
		ClientID:             c.ClientID,
		Username:             c.Username,
		Password:             c.Password,
		TLSConfig:            tc,
		Topics:               split(c.Topics),
		KeepAlive:            c.KeepAlive,
		ConnectTimeout:       c.ConnectTimeout,
		MaxReconnectInterval: c.MaxReconnectInterval,
		Ingest:               ingest,
		Status:               s.reportStatus,
		Lookup:               s.registry.Lookup,
		DurableAck:           s.Config.Ingest.DurableAck,
		Logger:               s.Logger,
		Registerer:           s.metrics,
	}
	return s.upstream.Start(ctx)
}
