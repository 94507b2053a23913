package server

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// TestDeployFilesMatchTheConfig: the deploy files (deploy/) set only config
// keys the server has, with values it accepts, so that they fit the server
// as it is configured today: the Kubernetes ConfigMap's gridwatch.yaml
// (unknown keys in a file are errors), and every GRIDWATCH_ variable of the
// compose files, the systemd unit and the Dockerfile.
func TestDeployFilesMatchTheConfig(t *testing.T) {
	deploy := filepath.Join("..", "..", "deploy")
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	raw, err := os.ReadFile(filepath.Join(deploy, "k8s", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil || cm.Data["gridwatch.yaml"] == "" {
		t.Fatalf("deploy/k8s/config.yaml: %v, no gridwatch.yaml", err)
	}
	file := filepath.Join(t.TempDir(), "gridwatch.yaml")
	if err := os.WriteFile(file, []byte(cm.Data["gridwatch.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvPrefix+"API_ADMIN_TOKEN", "0123456789abcdef") // from the Secret
	load(t, "deploy/k8s/config.yaml", "--config", file)

	// ${VAR:?message} and ${VAR} stand for what the operator exports.
	subst := regexp.MustCompile(`\$\{[^}]*\}`)
	sample := "0123456789abcdef0123"
	composes, _ := filepath.Glob(filepath.Join(deploy, "compose", "*.yml"))
	if len(composes) < 2 {
		t.Fatalf("compose files: %v", composes)
	}
	for _, f := range composes {
		var doc struct {
			Services map[string]struct {
				Environment map[string]string `yaml:"environment"`
			} `yaml:"services"`
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		nodes := 0
		for name, svc := range doc.Services {
			env := map[string]string{}
			for k, v := range svc.Environment {
				if strings.HasPrefix(k, EnvPrefix) {
					env[k] = subst.ReplaceAllString(v, sample)
				}
			}
			if len(env) == 0 {
				continue
			}
			nodes++
			withEnv(t, f+" service "+name, env)
		}
		if nodes == 0 {
			t.Errorf("%s configures no gridwatch service", f)
		}
	}

	// Environment= of the unit and ENV of the image.
	envLine := map[string]*regexp.Regexp{
		filepath.Join(deploy, "systemd", "gridwatch.service"): regexp.MustCompile(`(?m)^#?Environment=(GRIDWATCH_[A-Z0-9_]+)=(\S+)`),
		filepath.Join(deploy, "..", "Dockerfile"):             regexp.MustCompile(`(GRIDWATCH_[A-Z0-9_]+)=(\S+)`),
	}
	for f, re := range envLine {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		env := map[string]string{}
		for _, m := range re.FindAllStringSubmatch(string(raw), -1) {
			env[m[1]] = strings.ReplaceAll(m[2], "%d", t.TempDir()) // systemd's credentials directory
		}
		if len(env) == 0 {
			t.Errorf("%s sets no GRIDWATCH_ variable", f)
		}
		withEnv(t, f, env)
	}
}

// withEnv loads the config with env set, as a node started with it would.
func withEnv(t *testing.T, what string, env map[string]string) {
	t.Helper()
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	if unknown := UnknownEnv(environ); len(unknown) > 0 {
		t.Errorf("%s sets variables that name no config key: %v", what, unknown)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	load(t, what)
	for k := range env {
		os.Unsetenv(k)
	}
}

// load loads and validates the config with the flags given.
func load(t *testing.T, what string, args ...string) {
	t.Helper()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(fs)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		t.Errorf("%s: %v", what, err)
	}
}
