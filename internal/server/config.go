package server

import (
	"errors"
	"fmt"
	"net"
	"os"
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
		Listen        string `koanf:"listen" help:"MQTT TCP listener address"`
		MaxPacketSize int    `koanf:"max_packet_size" help:"largest MQTT packet accepted, in bytes; larger ones are refused before they are read"`
	} `koanf:"mqtt"`
	HTTP struct {
		Listen string `koanf:"listen" help:"HTTP listener address for the API, /metrics and health checks"`
	} `koanf:"http"`
	API struct {
		AdminToken string `koanf:"admin_token" help:"bootstrap admin bearer token; when set, /api/v1 requires it" secret:"true"`
	} `koanf:"api"`
	ClickHouse struct {
		Addr          string `koanf:"addr" help:"ClickHouse native address host:port; empty starts a private local ClickHouse under data_dir"`
		Database      string `koanf:"database" help:"ClickHouse database"`
		User          string `koanf:"user" help:"ClickHouse user"`
		Password      string `koanf:"password" help:"ClickHouse password" secret:"true"`
		TLS           bool   `koanf:"tls" help:"connect to ClickHouse over TLS"`
		TLSSkipVerify bool   `koanf:"tls_skip_verify" help:"do not verify the ClickHouse server certificate (testing only)"`
		RetentionDays int    `koanf:"retention_days" help:"days of telemetry to keep; 0 keeps everything"`
	} `koanf:"clickhouse"`
	Ingest struct {
		BatchRows  int           `koanf:"batch_rows" help:"rows per insert: a batch is flushed when it reaches this many rows"`
		BatchBytes int           `koanf:"batch_bytes" help:"a batch is flushed when it reaches this many bytes"`
		BatchAge   time.Duration `koanf:"batch_age" help:"a batch is flushed when its oldest row is this old"`
		MaxPending int           `koanf:"max_pending" help:"sealed batches waiting for ClickHouse per table before publishers are slowed down"`
	} `koanf:"ingest"`
	Devices struct {
		File string `koanf:"file" help:"devices CSV file (id,type,grid[,lat,lon,name,secret,rtsp_url]) loaded at start"`
	} `koanf:"devices"`
}

// Default returns the configuration used where nothing else is said.
func Default() Config {
	var c Config
	c.DataDir = "./gridwatch-data"
	c.Log.Level = "info"
	c.Log.Format = "text"
	c.MQTT.Listen = ":1883"
	c.MQTT.MaxPacketSize = 64 << 10
	c.HTTP.Listen = ":8080"
	c.ClickHouse.Database = "gridwatch"
	c.ClickHouse.User = "default"
	// Batches of 50k rows or 8 MiB, at least once a second: ClickHouse wants
	// few large inserts (about one per second per table), and a second is the
	// latency budget between a reading and its row.
	c.Ingest.BatchRows = 50_000
	c.Ingest.BatchBytes = 8 << 20
	c.Ingest.BatchAge = time.Second
	c.Ingest.MaxPending = 4
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
	if c.MQTT.MaxPacketSize < 1024 || c.MQTT.MaxPacketSize > 256<<20 {
		bad("mqtt.max_packet_size", "must be between 1024 and %d bytes", 256<<20)
	}
	if c.ClickHouse.Addr != "" {
		if _, _, err := net.SplitHostPort(c.ClickHouse.Addr); err != nil {
			bad("clickhouse.addr", "must be host:port, such as 127.0.0.1:9000 (%v)", err)
		}
	}
	if c.ClickHouse.Database == "" {
		bad("clickhouse.database", "must not be empty")
	}
	if c.ClickHouse.RetentionDays < 0 {
		bad("clickhouse.retention_days", "must be >= 0")
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
	if c.Devices.File != "" {
		if _, err := os.Stat(c.Devices.File); err != nil {
			bad("devices.file", "cannot be read: %v", err)
		}
	}
	return errors.Join(errs...)
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
	for _, k := range keys(&cfg) {
		known[k.EnvName()] = k.path
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
			if !f.Changed || f.Name == "config" {
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
	known := map[string]bool{EnvPrefix + "CONFIG": true}
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
