package kinesis

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want error
	}{
		{"defaults", func(*Config) {}, nil},
		{"bad start position", func(c *Config) { c.StartPosition = "earliest" }, ErrBadStartPosition},
		{"polling faster than Kinesis allows", func(c *Config) { c.PollInterval = 100 * time.Millisecond }, ErrBadPoll},
		{"lease shorter than three renewals", func(c *Config) { c.LeaseDuration, c.LeaseRenew = 10*time.Second, 4*time.Second }, ErrBadLease},
		{"key without secret", func(c *Config) { c.AccessKeyID = "AKIA" }, ErrHalfCredentials},
		{"secret without key", func(c *Config) { c.SecretAccessKey = "s" }, ErrHalfCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{}.WithDefaults()
			tc.edit(&c)
			err := c.Validate()
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Validate = %v, want %v", err, tc.want)
			}
		})
	}
	if err := (Config{MaxRecords: 20_000}).WithDefaults().Validate(); err == nil {
		t.Error("max_records 20000: want an error")
	}
}

func TestConfigLogValueHidesSecret(t *testing.T) {
	c := Config{AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI"}.WithDefaults()
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("cfg", "kinesis", c)
	if strings.Contains(b.String(), "wJalrXUtnFEMI") || !strings.Contains(b.String(), "AKIAEXAMPLE") {
		t.Errorf("logged %s", b.String())
	}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%v", &c)} {
		if strings.Contains(s, "wJalrXUtnFEMI") {
			t.Errorf("printed %s", s)
		}
	}
}
