package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/config"
)

func TestLoadConfigExpandsEnvInValuesOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sluice.yaml")
	body := `# a comment may mention ${NOT_SET_ANYWHERE} without breaking the file
kafka:
  brokers: ["${SLUICE_T_BROKER:-127.0.0.1:9092}"]
  fetch_max_bytes: ${SLUICE_T_FETCH}
store:
  s3: {endpoint: "127.0.0.1:9000", bucket: lake, access_key: "${SLUICE_T_AK}", secret_key: "${SLUICE_T_SK}"}
`
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLUICE_T_FETCH", "1048576")
	t.Setenv("SLUICE_T_AK", "key: with yaml")
	t.Setenv("SLUICE_T_SK", `"quoted #secret`)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Kafka.Brokers; len(got) != 1 || got[0] != "127.0.0.1:9092" {
		t.Errorf("default not applied: %v", got)
	}
	if cfg.Kafka.FetchMaxBytes != 1048576 {
		t.Errorf("number from the environment: %d", cfg.Kafka.FetchMaxBytes)
	}
	if cfg.Store.S3.AccessKey != "key: with yaml" || cfg.Store.S3.SecretKey != `"quoted #secret` {
		t.Errorf("secrets must arrive verbatim: %q %q", cfg.Store.S3.AccessKey, cfg.Store.S3.SecretKey)
	}

	os.Unsetenv("SLUICE_T_SK")
	_, err = config.Load(path)
	if err == nil || !strings.Contains(err.Error(), "SLUICE_T_SK") {
		t.Fatalf("a missing variable must be named: %v", err)
	}
}
