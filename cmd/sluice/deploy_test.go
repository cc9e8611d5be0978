package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/config"
	"gopkg.in/yaml.v3"
)

// The configuration files under deploy/ load with the binary's own loader
// (unknown keys rejected, ${VAR} expanded, every section validated), and
// bind their HTTP listener where a container needs it.
func TestDeployConfigsLoad(t *testing.T) {
	env := map[string]string{
		"KAFKA_BROKERS": "kafka-1:9092", "S3_ACCESS_KEY": "ak", "S3_SECRET_KEY": "sk",
		"RAW_BUCKET": "lake", "SUMMARY_BUCKET": "summaries",
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	for _, tc := range []struct {
		name string
		path func(t *testing.T) string
	}{
		{"compose sluice.yaml", func(*testing.T) string { return "../../deploy/sluice/sluice.yaml" }},
		{"k8s ConfigMap sluice.yaml", func(t *testing.T) string { return configMapFile(t, "../../deploy/k8s/configmap.yaml") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Load(tc.path(t))
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			if !strings.HasPrefix(cfg.HTTP.Addr, "0.0.0.0:") {
				t.Errorf("http.addr = %q: inside a container it must bind 0.0.0.0, or probes and Prometheus cannot reach it", cfg.HTTP.Addr)
			}
			if cfg.Store.S3 == nil || cfg.SummaryStore == nil || cfg.SummaryStore.S3 == nil {
				t.Fatalf("want S3 raw and summary stores, got %+v / %+v", cfg.Store, cfg.SummaryStore)
			}
			if cfg.Store.S3.Bucket != "lake" || cfg.SummaryStore.S3.Bucket != "summaries" {
				t.Errorf("buckets = %q, %q; want lake, summaries (the ones the stack creates)", cfg.Store.S3.Bucket, cfg.SummaryStore.S3.Bucket)
			}
			if cfg.Store.S3.AccessKey != "ak" || cfg.Store.S3.SecretKey != "sk" {
				t.Errorf("credentials do not come from the environment: %q/%q", cfg.Store.S3.AccessKey, cfg.Store.S3.SecretKey)
			}
			if len(cfg.Kafka.Brokers) != 1 || cfg.Kafka.Brokers[0] != "kafka-1:9092" {
				t.Errorf("kafka.brokers = %v, want [kafka-1:9092] from KAFKA_BROKERS", cfg.Kafka.Brokers)
			}
			if len(cfg.Tables) == 0 {
				t.Error("no tables")
			}
		})
	}
}

// A missing secret is a clear error, not an empty credential.
func TestDeployConfigNeedsSecrets(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "kafka-1:9092")
	if _, ok := os.LookupEnv("S3_ACCESS_KEY"); ok {
		t.Skip("S3_ACCESS_KEY is set in the environment")
	}
	_, err := config.Load("../../deploy/sluice/sluice.yaml")
	if err == nil || !strings.Contains(err.Error(), "S3_ACCESS_KEY") {
		t.Fatalf("loadConfig without S3_ACCESS_KEY: %v, want an error naming it", err)
	}
}

// configMapFile writes the sluice.yaml key of the ConfigMap in path to a
// temporary file.
func configMapFile(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var doc struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if body, ok := doc.Data["sluice.yaml"]; doc.Kind == "ConfigMap" && ok {
			p := filepath.Join(t.TempDir(), "sluice.yaml")
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
	t.Fatalf("%s: no ConfigMap with a sluice.yaml key", path)
	return ""
}

// Every manifest under deploy/k8s parses, and the workloads' container
// ports and probes use the port the ConfigMap binds.
func TestDeployK8sManifests(t *testing.T) {
	files, err := filepath.Glob("../../deploy/k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests (%v)", err)
	}
	workloads := 0
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
								Image string   `yaml:"image"`
								Args  []string `yaml:"args"`
								Ports []struct {
									ContainerPort int `yaml:"containerPort"`
								} `yaml:"ports"`
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
			if doc.Kind != "Deployment" && doc.Kind != "StatefulSet" {
				continue
			}
			workloads++
			for _, c := range doc.Spec.Template.Spec.Containers {
				if len(c.Args) < 3 || c.Args[1] != "--config" {
					t.Errorf("%s: args %v, want <subcommand> --config <file>", f, c.Args)
				}
				if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 8080 {
					t.Errorf("%s: ports %+v, want 8080 (http.addr of the ConfigMap)", f, c.Ports)
				}
			}
		}
	}
	if workloads != 2 {
		t.Errorf("%d workloads, want 2 (ingest StatefulSet, aggregate Deployment)", workloads)
	}
}
