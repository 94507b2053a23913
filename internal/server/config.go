package server

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"

	"github.com/gridwatch/gridwatch/alerts/notify"
	"github.com/gridwatch/gridwatch/api"
	"github.com/gridwatch/gridwatch/devices"
)

// EnvPrefix starts every environment variable that sets a config key.
const EnvPrefix = "GRIDWATCH_"

// Config is gridwatch's whole configuration: one typed tree. Every leaf has a
// key path (its koanf tags joined by dots), an environment variable
// (EnvPrefix + the path upper-cased, dots as underscores) and a flag
// (--path). The help tags are what `gridwatch serve --help` prints.
type Config struct {
	DataDir string `koanf:"data_dir" help:"directory for the managed ClickHouse and other local state"`
	Log     struct {
		Level  string `koanf:"level" help:"log level: debug, info, warn or error"`
		Format string `koanf:"format" help:"log format: text or json"`
	} `koanf:"log"`
	MQTT struct {
		Listen            string        `koanf:"listen" help:"MQTT TCP listener address"`
		MaxPacketSize     int           `koanf:"max_packet_size" help:"largest MQTT packet accepted, in bytes; larger ones are refused before they are read"`
		TLSListen         string        `koanf:"tls_listen" help:"MQTT TLS listener address (TLS >= 1.2); empty opens none"`
		TLSCert           string        `koanf:"tls_cert" help:"PEM certificate chain of the MQTT TLS listener"`
		TLSKey            string        `koanf:"tls_key" help:"PEM private key of the MQTT TLS listener"`
		TLSClientCA       string        `koanf:"tls_client_ca" help:"PEM CA bundle; when set, devices may log in with a client certificate whose CN is their id"`
		MaxTopicLength    int           `koanf:"max_topic_length" help:"longest topic a client may publish to, in bytes"`
		MaxInflight       int           `koanf:"max_inflight" help:"unacknowledged QoS 1/2 messages per client (MQTT 5 receive maximum)"`
		MaxSubscriptions  int           `koanf:"max_subscriptions" help:"topic filters a client may hold; a SUBSCRIBE beyond ends its connection"`
		MessageRate       float64       `koanf:"message_rate" help:"publishes per second per client; beyond the burst they are dropped and counted (-1: unlimited)"`
		MessageBurst      int           `koanf:"message_burst" help:"publishes a client may send at once above message_rate"`
		ByteRate          float64       `koanf:"byte_rate" help:"payload bytes per second per client (-1: unlimited)"`
		ByteBurst         int           `koanf:"byte_burst" help:"payload bytes a client may send at once above byte_rate"`
		ProxyProtocolFrom string        `koanf:"proxy_protocol_from" help:"comma-separated networks (CIDR) of TCP load balancers whose connections begin with a PROXY protocol header (HAProxy send-proxy-v2), naming the device's own address for the per-address limits and bans; from there a connection without one is refused; empty reads none"`
		ConnRatePerIP     float64       `koanf:"conn_rate_per_ip" help:"new connections per second per source address, an IPv4 address or an IPv6 /64 (-1: unlimited)"`
		ConnBurstPerIP    int           `koanf:"conn_burst_per_ip" help:"new connections a source address may open at once above conn_rate_per_ip"`
		FlapConnects      int           `koanf:"flap_connects" help:"connections of one client id within flap_window that ban it for flap_ban"`
		FlapWindow        time.Duration `koanf:"flap_window" help:"window over which flap_connects are counted"`
		FlapBan           time.Duration `koanf:"flap_ban" help:"how long a flapping client id is refused"`
		AuthFailures      int           `koanf:"auth_failures" help:"failed logins with one client id from one source address within auth_failure_window that ban that pair for auth_failure_ban"`
		AuthFailureWindow time.Duration `koanf:"auth_failure_window" help:"window over which auth_failures are counted"`
		AuthFailureBan    time.Duration `koanf:"auth_failure_ban" help:"how long a (source address, client id) pair is refused after auth_failures, even with the right secret"`
	} `koanf:"mqtt"`
	HTTP struct {
		Listen string `koanf:"listen" help:"HTTP listener address for the API, /metrics and health checks"`
		// PprofListen serves Go's profiler apart from the API: it shows
		// the process's internals to anyone who can reach it, so it takes
		// no token and must be a loopback address.
		PprofListen string `koanf:"pprof_listen" help:"loopback address serving Go's profiler at /debug/pprof/, for profiling under load; empty serves none"`
	} `koanf:"http"`
	API struct {
		AdminToken string        `koanf:"admin_token" help:"bootstrap admin bearer token: an admin of the whole city; with neither it nor api.tokens_file, /api/v1 is open to this host only (http.listen must be a loopback address)" secret:"true"`
		TokensFile string        `koanf:"tokens_file" help:"YAML list of API tokens {name, role, grid, token_hash}; make entries with 'gridwatch token new'"`
		MaxSilence time.Duration `koanf:"max_silence" help:"longest silence or maintenance window the API accepts"`
	} `koanf:"api"`
	Notify struct {
		WebhookURL    string `koanf:"webhook_url" help:"URL that alert transitions are POSTed to as signed JSON; empty sends none"`
		WebhookSecret string `koanf:"webhook_secret" help:"HMAC-SHA256 key of the webhook's X-Gridwatch-Signature header" secret:"true"`
		MQTT          bool   `koanf:"mqtt" help:"publish alert transitions on the embedded broker under alerts/{grid}/{severity}"`
	} `koanf:"notify"`
	ClickHouse struct {
		Addr          string `koanf:"addr" help:"ClickHouse native address host:port; with clickhouse.cluster, a comma-separated list of its servers, the first used while it answers and the next ones while it does not; empty starts a private local ClickHouse under data_dir"`
		Database      string `koanf:"database" help:"ClickHouse database"`
		User          string `koanf:"user" help:"ClickHouse user"`
		Password      string `koanf:"password" help:"ClickHouse password" secret:"true"`
		TLS           bool   `koanf:"tls" help:"connect to ClickHouse over TLS"`
		TLSSkipVerify bool   `koanf:"tls_skip_verify" help:"do not verify the ClickHouse server certificate (testing only)"`
		RetentionDays int    `koanf:"retention_days" help:"days of telemetry to keep; 0 keeps everything"`
		Cluster       string `koanf:"cluster" help:"cluster in the servers' remote_servers to create the schema on: ReplicatedMergeTree tables under Distributed ones (needs ZooKeeper and the shard and replica macros, see deploy/clickhouse); empty is one server"`
	} `koanf:"clickhouse"`
	Ingest struct {
		BatchRows  int           `koanf:"batch_rows" help:"rows per insert: a batch is flushed when it reaches this many rows"`
		BatchBytes int           `koanf:"batch_bytes" help:"a batch is flushed when it reaches this many bytes"`
		BatchAge   time.Duration `koanf:"batch_age" help:"a batch is flushed when its oldest row is this old"`
		MaxPending int           `koanf:"max_pending" help:"sealed batches waiting for ClickHouse per table before publishers are slowed down"`
		// Reliability: the disk spool, durable acks and shutdown (issue 6).
		SpoolMaxBytes         int           `koanf:"spool_max_bytes" help:"bound of the disk spool under data_dir/spool that holds batches while ClickHouse is down; when full, QoS 1 telemetry is refused (no PUBACK) and QoS 0 dropped and counted"`
		DurableAck            bool          `koanf:"durable_ack" help:"send a QoS 1 PUBACK only once the reading is fsynced in the spool, so it survives kill -9 and power loss"`
		DurableCommitInterval time.Duration `koanf:"durable_commit_interval" help:"with durable_ack, how long a group commit collects readings before one fsync"`
		InsertTimeout         time.Duration `koanf:"insert_timeout" help:"bound of one ClickHouse INSERT; a slower or hung server sends batches to the spool"`
		ShutdownTimeout       time.Duration `koanf:"shutdown_timeout" help:"bound of the final flush at shutdown, after mqtt clients are disconnected"`
		MemoryLimit           int           `koanf:"memory_limit" help:"soft memory limit of the process in bytes (Go GC target); 0 leaves it unset (with durable_ack, unless GOGC is set, the GC then runs at GOGC 50)"`
	} `koanf:"ingest"`
	Devices struct {
		File           string        `koanf:"file" help:"devices CSV file (id,type,grid[,lat,lon,name,install_date,secret,rtsp_url,rtsp_sub_url,sip_password]) imported at start"`
		ReloadInterval time.Duration `koanf:"reload_interval" help:"how often the server checks ClickHouse for registry changes made by 'gridwatch devices import'"`
	} `koanf:"devices"`
	Secrets struct {
		KeyFile string `koanf:"key_file" help:"AES-256 key (base64) sealing the registry's RTSP and SIP passwords; empty uses data_dir/secret.key, created 0600 by the first gridwatch serve (admin commands never create it). Every node sharing a registry needs the same key; a file its group or others may read or write is refused"`
	} `koanf:"secrets"`
	Cameras CamerasConfig `koanf:"cameras"`
	GB28181 GB28181Config `koanf:"gb28181"`
	Rules   RulesConfig   `koanf:"rules"`
	Units   UnitsConfig   `koanf:"units"`
	Grids   GridsConfig   `koanf:"grids"`
	Cases   CasesConfig   `koanf:"cases"`
	// Upstream is an external MQTT broker whose shared subscription the
	// node consumes (issue 14, cluster mode b).
	Upstream UpstreamConfig `koanf:"upstream"`
	// Cluster is how the nodes coordinate (issue 14, one cluster, one
	// truth).
	Cluster ClusterConfig `koanf:"cluster"`
}

// Default returns the configuration used where nothing else is said.
func Default() Config {
	var c Config
	c.DataDir = "./gridwatch-data"
	c.Log.Level = "info"
	c.Log.Format = "text"
	c.MQTT.Listen = ":1883"
	c.MQTT.MaxPacketSize = 64 << 10
	c.MQTT.MaxTopicLength = 256
	c.MQTT.MaxInflight = 64
	c.MQTT.MaxSubscriptions = 32
	c.MQTT.MessageRate, c.MQTT.MessageBurst = 10, 50
	c.MQTT.ByteRate, c.MQTT.ByteBurst = 64<<10, 256<<10
	c.MQTT.ConnRatePerIP, c.MQTT.ConnBurstPerIP = 20, 200
	c.MQTT.FlapConnects, c.MQTT.FlapWindow, c.MQTT.FlapBan = 10, time.Minute, 5*time.Minute
	c.MQTT.AuthFailures, c.MQTT.AuthFailureWindow, c.MQTT.AuthFailureBan = 10, time.Minute, 5*time.Minute
	c.Devices.ReloadInterval = 5 * time.Second
	c.HTTP.Listen = ":8080"
	c.API.MaxSilence = api.DefaultMaxSilence
	c.Notify.MQTT = true
	c.Cases.defaults()
	c.ClickHouse.Database = "gridwatch"
	c.ClickHouse.User = "default"
	// Batches of 50k rows or 8 MiB, at least once a second: ClickHouse wants
	// few large inserts (about one per second per table), and a second is the
	// latency budget between a reading and its row.
	c.Ingest.BatchRows = 50_000
	c.Ingest.BatchBytes = 8 << 20
	c.Ingest.BatchAge = time.Second
	c.Ingest.MaxPending = 4
	// A GiB of spool holds about an hour of 100k readings/s; a group commit
	// every 10 ms keeps durable PUBACKs fast at a few hundred fsyncs/s.
	c.Ingest.SpoolMaxBytes = 1 << 30
	c.Ingest.DurableCommitInterval = 10 * time.Millisecond
	c.Ingest.InsertTimeout = 10 * time.Second
	c.Ingest.ShutdownTimeout = 20 * time.Second
	c.Cameras = defaultCameras()
	c.GB28181 = defaultGB28181()
	c.Upstream = defaultUpstream()
	c.Cluster = defaultCluster()
	return c
}

// Validate checks the configuration; its errors name the offending key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("'%s' %s", key, fmt.Sprintf(format, args...)))
	}
	if c.DataDir == "" {
		bad("data_dir", "must not be empty")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "must be text or json, not %q", c.Log.Format)
	}
	for key, addr := range map[string]string{"mqtt.listen": c.MQTT.Listen, "http.listen": c.HTTP.Listen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad(key, "must be host:port, such as :1883 (%v)", err)
		}
	}
	if c.HTTP.PprofListen != "" {
		host, _, err := net.SplitHostPort(c.HTTP.PprofListen)
		switch {
		case err != nil:
			bad("http.pprof_listen", "must be host:port, such as 127.0.0.1:6060 (%v)", err)
		case !api.IsLoopbackHost(host):
			bad("http.pprof_listen", "must be a loopback address such as 127.0.0.1:6060, not %s: the profiler takes no token", c.HTTP.PprofListen)
		}
	}
	if c.MQTT.MaxPacketSize < 1024 || c.MQTT.MaxPacketSize > 256<<20 {
		bad("mqtt.max_packet_size", "must be between 1024 and %d bytes", 256<<20)
	}
	if c.MQTT.TLSListen != "" {
		if _, _, err := net.SplitHostPort(c.MQTT.TLSListen); err != nil {
			bad("mqtt.tls_listen", "must be host:port, such as :8883 (%v)", err)
		}
		if c.MQTT.TLSCert == "" || c.MQTT.TLSKey == "" {
			bad("mqtt.tls_listen", "needs mqtt.tls_cert and mqtt.tls_key")
		}
	}
	for key, v := range map[string]int{"mqtt.max_topic_length": c.MQTT.MaxTopicLength, "mqtt.max_inflight": c.MQTT.MaxInflight,
		"mqtt.max_subscriptions": c.MQTT.MaxSubscriptions, "mqtt.message_burst": c.MQTT.MessageBurst, "mqtt.byte_burst": c.MQTT.ByteBurst,
		"mqtt.conn_burst_per_ip": c.MQTT.ConnBurstPerIP, "mqtt.flap_connects": c.MQTT.FlapConnects,
		"mqtt.auth_failures": c.MQTT.AuthFailures} {
		if v <= 0 {
			bad(key, "must be > 0")
		}
	}
	if _, err := proxyNetworks(c.MQTT.ProxyProtocolFrom); err != nil {
		bad("mqtt.proxy_protocol_from", "%v", err)
	}
	if c.MQTT.MaxInflight > 65535 {
		bad("mqtt.max_inflight", "must be at most 65535")
	}
	for key, v := range map[string]float64{"mqtt.message_rate": c.MQTT.MessageRate, "mqtt.byte_rate": c.MQTT.ByteRate, "mqtt.conn_rate_per_ip": c.MQTT.ConnRatePerIP} {
		if v == 0 || v < -1 {
			bad(key, "must be > 0, or -1 for unlimited")
		}
	}
	if c.MQTT.FlapWindow <= 0 || c.MQTT.FlapBan <= 0 {
		bad("mqtt.flap_window", "and mqtt.flap_ban must be > 0")
	}
	if c.MQTT.AuthFailureWindow <= 0 || c.MQTT.AuthFailureBan <= 0 {
		bad("mqtt.auth_failure_window", "and mqtt.auth_failure_ban must be > 0")
	}
	if c.Devices.ReloadInterval < 100*time.Millisecond {
		bad("devices.reload_interval", "must be >= 100ms")
	}
	addrs := split(c.ClickHouse.Addr)
	for _, a := range addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("clickhouse.addr", "must be host:port, such as 127.0.0.1:9000, or a comma-separated list of them (%v)", err)
		}
	}
	if len(addrs) > 1 && c.ClickHouse.Cluster == "" {
		bad("clickhouse.addr", "lists %d servers: failing over between them needs clickhouse.cluster, whose replicas they are", len(addrs))
	}
	if c.API.TokensFile != "" {
		if _, err := os.Stat(c.API.TokensFile); err != nil {
			bad("api.tokens_file", "cannot be read: %v", err)
		}
	}
	// shortSecret flags a secret set shorter than least: why says what a
	// guess of it gives away.
	shortSecret := func(key, v string, least int, why string) {
		if n := len(v); n > 0 && n < least {
			bad(key, "must be at least %d characters, not %d: %s", least, n, why)
		}
	}
	shortSecret("api.admin_token", c.API.AdminToken, api.MinAdminTokenLen, "it makes an admin of whoever guesses it (make one with 'gridwatch token new')")
	if c.API.AdminToken == "" && c.API.TokensFile == "" {
		if err := openListen(c.HTTP.Listen); err != nil {
			bad("http.listen", "%v", err)
		}
	}
	if c.API.MaxSilence <= 0 {
		bad("api.max_silence", "must be > 0")
	}
	if c.Notify.WebhookURL != "" {
		if u, err := url.Parse(c.Notify.WebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("notify.webhook_url", "must be an http or https URL")
		}
		if c.Notify.WebhookSecret == "" {
			bad("notify.webhook_secret", "must be set when notify.webhook_url is")
		}
		shortSecret("notify.webhook_secret", c.Notify.WebhookSecret, notify.MinSecretLen, "a receiver would accept forged notifications signed with a guess")
	}
	if c.ClickHouse.Database == "" {
		bad("clickhouse.database", "must not be empty")
	}
	if c.ClickHouse.RetentionDays < 0 {
		bad("clickhouse.retention_days", "must be >= 0")
	}
	if c.ClickHouse.Cluster != "" && c.ClickHouse.Addr == "" {
		bad("clickhouse.cluster", "needs clickhouse.addr: the managed local ClickHouse is one server")
	}
	if c.Ingest.BatchRows <= 0 {
		bad("ingest.batch_rows", "must be > 0")
	}
	if c.Ingest.BatchBytes < 4096 {
		bad("ingest.batch_bytes", "must be >= 4096")
	}
	if c.Ingest.BatchAge <= 0 {
		bad("ingest.batch_age", "must be > 0")
	}
	if c.Ingest.MaxPending <= 0 {
		bad("ingest.max_pending", "must be > 0")
	}
	if c.Ingest.SpoolMaxBytes < 1<<20 {
		bad("ingest.spool_max_bytes", "must be >= 1 MiB")
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"ingest.durable_commit_interval", c.Ingest.DurableCommitInterval},
		{"ingest.insert_timeout", c.Ingest.InsertTimeout},
		{"ingest.shutdown_timeout", c.Ingest.ShutdownTimeout},
	} {
		if d.v <= 0 {
			bad(d.key, "must be > 0")
		}
	}
	if c.Ingest.MemoryLimit < 0 {
		bad("ingest.memory_limit", "must be >= 0")
	}
	if c.Devices.File != "" {
		if _, err := os.Stat(c.Devices.File); err != nil {
			bad("devices.file", "cannot be read: %v", err)
		}
	}
	c.Cameras.validate(bad)
	c.GB28181.validate(bad)
	c.Rules.validate(bad)
	c.Units.validate(bad)
	c.Cases.validate(bad, notify.MinSecretLen)
	c.Upstream.validate(bad)
	c.Cluster.validate(c.Upstream.Brokers == "", bad)
	if c.Cluster.ZooKeeper != "" && c.ClickHouse.Addr == "" {
		bad("cluster.zookeeper", "needs clickhouse.addr: the nodes of a cluster share one ClickHouse (or ClickHouse cluster), not each a managed one")
	}
	if c.Grids.File != "" {
		if _, err := os.Stat(c.Grids.File); err != nil {
			bad("grids.file", "cannot be read: %v", err)
		}
	}
	if _, err := c.Grids.basemap(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// errOpenAPI explains why an API without tokens may not listen beyond this
// host.
var errOpenAPI = errors.New("neither api.admin_token nor api.tokens_file (with a token) is set, so every /api/v1 request would act as an unscoped admin: set a token, or listen on a loopback address such as 127.0.0.1:8080")

// openListen checks addr (host:port) as the listener of an API without
// tokens: its host must be loopback (127.0.0.0/8, ::1, localhost) or empty,
// which httpListen narrows to 127.0.0.1.
func openListen(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" || api.IsLoopbackHost(host) {
		return nil // a malformed address has its own error
	}
	return fmt.Errorf("is %s, not a loopback address, and %w", addr, errOpenAPI)
}

// secretKeyFile is the path of the key sealing the registry's secrets:
// secrets.key_file, or data_dir/secret.key.
func (c *Config) secretKeyFile() string {
	if c.Secrets.KeyFile != "" {
		return c.Secrets.KeyFile
	}
	return filepath.Join(c.DataDir, devices.SecretKeyFile)
}

// checkSecretKeyMode refuses a secrets key file its group or other users
// may read or write (any of the mode bits 0077): whoever reads it opens
// every RTSP password of the registry, and whoever writes it makes this
// node seal them under a key of theirs. A file that is not there yet is
// for load to handle (serve creates it 0600).
func (c *Config) checkSecretKeyMode() error {
	path := c.secretKeyFile()
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("secrets.key_file: %w", err)
	case st.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("secrets.key_file %s has mode %04o: its group or other users may read or change it, "+
			"and it opens every RTSP password of the registry. Refusing it: chmod 600 %s, owned by the user gridwatch runs as "+
			"(the same key on every node)", path, st.Mode().Perm(), path)
	}
	return nil
}

// noSecretKey is the error of an admin command that needs the secrets key
// where there is none.
func (c *Config) noSecretKey() error {
	return fmt.Errorf("%s: %w: this host has no secrets key (secrets.key_file; when empty, data_dir/secret.key with data_dir %q). "+
		"Only `gridwatch serve` makes one, since a key made here would seal RTSP passwords no server can open: "+
		"copy the servers' key here, or set secrets.key_file to it", c.secretKeyFile(), fs.ErrNotExist, c.DataDir)
}

// httpListen is the address the HTTP server listens on: http.listen, but
// for an API without tokens (open) one with no host (":8080", all
// interfaces) is narrowed to 127.0.0.1, and one with another non-loopback
// host is refused.
func (c *Config) httpListen(open bool) (string, error) {
	if !open {
		return c.HTTP.Listen, nil
	}
	if err := openListen(c.HTTP.Listen); err != nil {
		return "", fmt.Errorf("http.listen %w", err)
	}
	host, port, err := net.SplitHostPort(c.HTTP.Listen)
	if err != nil {
		return "", fmt.Errorf("http.listen %s: %w", c.HTTP.Listen, err)
	}
	if host == "" {
		return net.JoinHostPort("127.0.0.1", port), nil
	}
	return c.HTTP.Listen, nil
}

// configKey describes one leaf of Config.
type configKey struct {
	path   string // "clickhouse.addr"
	help   string
	secret bool
	field  reflect.Value // addressable field inside a Config
}

// EnvName returns the environment variable that sets the key.
func (k configKey) EnvName() string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(k.path, ".", "_"))
}

// keys lists every leaf of c, in declaration order.
func keys(c *Config) []configKey {
	var out []configKey
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			path := prefix + f.Tag.Get("koanf")
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
				walk(v.Field(i), path+".")
				continue
			}
			out = append(out, configKey{path: path, help: f.Tag.Get("help"), secret: f.Tag.Get("secret") == "true", field: v.Field(i)})
		}
	}
	walk(reflect.ValueOf(c).Elem(), "")
	return out
}

// AddFlags defines one flag per config key on fs, named by the key path, with
// the default from Default() and the environment variable in its usage.
func AddFlags(fs *pflag.FlagSet) {
	def := Default()
	fs.String("config", "", "YAML config file (env "+EnvPrefix+"CONFIG)")
	for _, k := range keys(&def) {
		usage := fmt.Sprintf("%s (env %s)", k.help, k.EnvName())
		switch v := k.field.Addr().Interface().(type) {
		case *string:
			if k.secret {
				fs.String(k.path, "", usage) // never print a secret as a default
			} else {
				fs.String(k.path, *v, usage)
			}
		case *int:
			fs.Int(k.path, *v, usage)
		case *bool:
			fs.Bool(k.path, *v, usage)
		case *time.Duration:
			fs.Duration(k.path, *v, usage)
		case *float64:
			fs.Float64(k.path, *v, usage)
		default:
			panic(fmt.Sprintf("config key %s: unsupported type %T", k.path, v))
		}
	}
}

// Load builds the configuration: defaults, then the YAML file named by
// --config or GRIDWATCH_CONFIG, then GRIDWATCH_* environment variables, then
// flags that were set on fs (which may be nil). It validates the result.
func Load(fs *pflag.FlagSet) (Config, error) {
	cfg := Default()
	known := make(map[string]string) // env name -> key path
	paths := make(map[string]bool)
	for _, k := range keys(&cfg) {
		known[k.EnvName()] = k.path
		paths[k.path] = true
	}
	ko := koanf.New(".")

	path := os.Getenv(EnvPrefix + "CONFIG")
	if fs != nil {
		if f := fs.Lookup("config"); f != nil && f.Changed {
			path = f.Value.String()
		}
	}
	if path != "" {
		if err := ko.Load(file.Provider(path), yaml.Parser()); err != nil {
			return cfg, fmt.Errorf("config file %s: %w", path, err)
		}
	}
	envProvider := env.ProviderWithValue(EnvPrefix, ".", func(name, value string) (string, any) {
		return known[name], value // unknown names map to "" and are skipped
	})
	if err := ko.Load(envProvider, nil); err != nil {
		return cfg, fmt.Errorf("environment: %w", err)
	}
	if fs != nil {
		flags := posflag.ProviderWithFlag(fs, ".", ko, func(f *pflag.Flag) (string, any) {
			// A command's own flags (gridwatch demo --devices) are no
			// config keys.
			if !f.Changed || !paths[f.Name] {
				return "", nil
			}
			return f.Name, posflag.FlagVal(fs, f)
		})
		if err := ko.Load(flags, nil); err != nil {
			return cfg, fmt.Errorf("flags: %w", err)
		}
	}
	dec := &mapstructure.DecoderConfig{
		DecodeHook:       mapstructure.StringToTimeDurationHookFunc(),
		WeaklyTypedInput: true,
		ErrorUnused:      true,
		Result:           &cfg,
		TagName:          "koanf",
	}
	if err := ko.UnmarshalWithConf("", nil, koanf.UnmarshalConf{DecoderConfig: dec}); err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	return cfg, cfg.Validate()
}

// UnknownEnv returns the GRIDWATCH_* variables in environ that name no
// config key, so a typo is reported instead of silently ignored.
func UnknownEnv(environ []string) []string {
	def := Default()
	// The CLI's client variables name no key but are gridwatch's.
	known := map[string]bool{EnvPrefix + "CONFIG": true, EnvPrefix + "SERVER": true, EnvPrefix + "TOKEN": true}
	for _, k := range keys(&def) {
		known[k.EnvName()] = true
	}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, EnvPrefix) && !known[name] && !strings.HasPrefix(name, EnvPrefix+"TEST_") {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
