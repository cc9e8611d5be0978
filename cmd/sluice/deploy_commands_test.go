package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/internal/config"
	"gopkg.in/yaml.v3"
)

// The deployment files' commands are checked like the README's (see
// checkCommandLine in readme_test.go), and the compose load test is run.

// composeFile is the part of docker-compose.yml the flag check needs.
type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Entrypoint  any               `yaml:"entrypoint"`
		Command     any               `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
	} `yaml:"services"`
}

var (
	// composeRef is compose's variable syntax in values: ${VAR} and ${VAR:-default}.
	composeRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)
	// composeIngestHost is an ingester's /metrics address inside the stack.
	composeIngestHost = regexp.MustCompile(`ingest-\d+:8080`)
)

// composeExpand replaces compose variables with env's values, or their
// defaults.
func composeExpand(s string, env map[string]string) string {
	return composeRef.ReplaceAllStringFunc(s, func(m string) string {
		sub := composeRef.FindStringSubmatch(m)
		if v, ok := env[sub[1]]; ok {
			return v
		}
		return sub[3]
	})
}

// sluiceService is one compose service that runs the Sluice image.
type sluiceService struct {
	name    string
	args    []string          // expanded
	env     map[string]string // expanded
	volumes map[string]string // container dir -> host dir (relative to the repository)
}

func composeSluiceServices(t *testing.T, env map[string]string) []sluiceService {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(raw, &cf); err != nil {
		t.Fatal(err)
	}
	var out []sluiceService
	for name, s := range cf.Services {
		if !strings.HasPrefix(s.Image, "sluice:") {
			continue
		}
		if s.Entrypoint != nil {
			t.Errorf("compose service %s: an entrypoint of its own; the checks assume the image's (sluice)", name)
		}
		svc := sluiceService{name: name, env: map[string]string{}, volumes: map[string]string{}}
		switch c := s.Command.(type) {
		case []any:
			for _, w := range c {
				svc.args = append(svc.args, composeExpand(fmt.Sprint(w), env))
			}
		case string:
			words, _, err := splitShell(composeExpand(c, env))
			if err != nil {
				t.Fatalf("compose service %s: command: %v", name, err)
			}
			svc.args = words
		default:
			t.Errorf("compose service %s: no command", name)
		}
		for k, v := range s.Environment {
			svc.env[k] = composeExpand(v, env)
		}
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && strings.HasPrefix(parts[0], ".") {
				svc.volumes[parts[1]] = parts[0]
			}
		}
		out = append(out, svc)
	}
	if len(out) == 0 {
		t.Fatal("docker-compose.yml: no service runs the sluice image")
	}
	return out
}

// flagValue returns the value of --name in args (--name=v or --name v).
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// Every command of the compose stack and the Kubernetes manifests parses
// with the real command tree, and a compose service's --config is a file
// its volumes mount, which loads with the service's environment.
func TestDeployCommands(t *testing.T) {
	for _, svc := range composeSluiceServices(t, nil) {
		t.Run("compose "+svc.name, func(t *testing.T) {
			if err := checkCommandLine(svc.args, true); err != nil {
				t.Fatalf("command %v: %v", svc.args, err)
			}
			cfgPath, ok := flagValue(svc.args, "config")
			if !ok {
				return
			}
			host := ""
			for dir, hostDir := range svc.volumes {
				if rel, ok := strings.CutPrefix(cfgPath, strings.TrimSuffix(dir, "/")+"/"); ok {
					host = filepath.Join(repoRoot, hostDir, rel)
				}
			}
			if host == "" {
				t.Fatalf("--config %s: no volume of the service mounts it (%v)", cfgPath, svc.volumes)
			}
			for k, v := range svc.env {
				t.Setenv(k, v)
			}
			if _, err := config.Load(host); err != nil {
				t.Fatalf("--config %s (%s): %v", cfgPath, host, err)
			}
		})
	}
	files, err := filepath.Glob(filepath.Join(repoRoot, "deploy", "k8s", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests (%v)", err)
	}
	containers := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		for {
			var doc struct {
				Kind string `yaml:"kind"`
				Spec struct {
					Template struct {
						Spec struct {
							Containers []struct {
								Name    string   `yaml:"name"`
								Image   string   `yaml:"image"`
								Command []string `yaml:"command"`
								Args    []string `yaml:"args"`
							} `yaml:"containers"`
						} `yaml:"spec"`
					} `yaml:"template"`
				} `yaml:"spec"`
			}
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			for _, c := range doc.Spec.Template.Spec.Containers {
				if c.Image != "sluice" && !strings.HasPrefix(c.Image, "sluice:") {
					continue
				}
				containers++
				if len(c.Command) > 0 {
					t.Errorf("%s: container %s replaces the image's entrypoint (sluice) with %v", f, c.Name, c.Command)
				}
				if err := checkCommandLine(c.Args, true); err != nil {
					t.Errorf("%s: container %s: args %v: %v", filepath.Base(f), c.Name, c.Args, err)
				}
			}
		}
	}
	if containers == 0 {
		t.Error("no Kubernetes container runs the sluice image")
	}
}

// The compose stack's load test, run as docker-compose.yml writes it (with
// LOADTEST_RATE and LOADTEST_DURATION set short), against a running
// pipeline in this process: the stack's sluice.yaml is replaced by one
// naming the same kind of pipeline here (its broker, its stores), and the
// ingesters' host names by this process's /metrics.
func TestComposeLoadtestRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a pipeline and a load test")
	}
	var loadtest *sluiceService
	for _, svc := range composeSluiceServices(t, map[string]string{"LOADTEST_RATE": "2000", "LOADTEST_DURATION": "3s"}) {
		if len(svc.args) > 0 && svc.args[0] == "loadtest" {
			loadtest = &svc
		}
	}
	if loadtest == nil {
		t.Fatal("docker-compose.yml has no service running sluice loadtest")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	st, err := app.StartStack(ctx, slog.New(slog.DiscardHandler), app.StackOptions{DataDir: dir, KafkaAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Partitions: 4, FlushEvery: time.Second, AggInterval: time.Second, Group: "compose-loadtest"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stackCtx, stopStack := context.WithCancel(ctx)
	stackDone := make(chan error, 1)
	go func() { stackDone <- st.Run(stackCtx) }()
	defer func() {
		stopStack()
		if err := <-stackDone; err != nil {
			t.Errorf("stack: %v", err)
		}
	}()
	cfgPath := filepath.Join(dir, "sluice.yaml")
	cfg := fmt.Sprintf("kafka: {brokers: [%q]}\nstore: {local_dir: %q}\nsummary_store: {local_dir: %q}\naggregate: {idle_timeout: %s}\n",
		st.BrokerAddr(), st.LakeDir, st.SummaryDir, st.Config.Aggregate.IdleTimeout)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, a := range loadtest.args {
		if v, ok := strings.CutPrefix(a, "--config="); ok && strings.HasPrefix(v, "/etc/sluice/") {
			a = "--config=" + cfgPath
		}
		a = composeIngestHost.ReplaceAllString(a, st.HTTPAddr())
		args = append(args, a)
	}
	var stdout, stderr bytes.Buffer
	if code := run(ctx, append(args, "--quiet", "--log-level", "warn"), &stdout, &stderr); code != exitOK {
		t.Fatalf("sluice %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "OK") {
		t.Errorf("no verdict in the report:\n%s", stdout.String())
	}
}

// The image build's -X flag names the variable the version comes from (a
// wrong name links silently and leaves the version unset), so `sluice
// version` and every Parquet footer name the release.
func TestImageBuildSetsVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	raw, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`-X (\S+)=\$\{VERSION\}`).FindStringSubmatch(string(raw))
	if m == nil {
		t.Fatal("deploy/Dockerfile: no -X <variable>=${VERSION} in the build's -ldflags")
	}
	bin := filepath.Join(t.TempDir(), "sluice")
	if out, err := exec.Command("go", "build", "-ldflags", "-X "+m[1]+"=v9.9.9-image", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "sluice v9.9.9-image") {
		t.Errorf("built with -X %s=v9.9.9-image, sluice version says %q", m[1], out)
	}
}
