package schema

import (
	"bytes"
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Marshal writes tables as a table definitions file, with every default
// spelled out: Parse reads it back to the same tables. Use it to show the
// effective definitions (what Parse made of a file).
func Marshal(tables []*Table) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(tablesFile{Tables: tables}); err != nil {
		return nil, fmt.Errorf("marshal tables: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("marshal tables: %w", err)
	}
	return buf.Bytes(), nil
}

// MarshalYAML writes the rollup: section in the form UnmarshalYAML reads:
// durations as text, whole days as "1d".
func (r Rollup) MarshalYAML() (any, error) {
	y := rollupYAML{Dimensions: r.Dimensions}
	for _, w := range r.Windows {
		y.Windows = append(y.Windows, formatDuration(w))
	}
	lateness, horizon := formatDuration(r.AllowedLateness), formatDuration(r.LateHorizon)
	y.AllowedLateness, y.LateHorizon = &lateness, &horizon
	for _, m := range r.Measures {
		my := measureYAML{Name: m.Name, Kind: string(m.Kind), Field: m.Field, Quantiles: m.Quantiles}
		if m.RelativeAccuracy != 0 {
			ra := m.RelativeAccuracy
			my.RelativeAccuracy = &ra
		}
		if m.Precision != 0 {
			p := m.Precision
			my.Precision = &p
		}
		y.Measures = append(y.Measures, my)
	}
	return y, nil
}

// formatDuration is the inverse of parseDuration, the way table files spell
// durations: 1d, 2h, 5m, 30s, else as time.Duration does (1m30s).
func formatDuration(d time.Duration) string {
	for _, u := range []struct {
		d      time.Duration
		suffix string
	}{{day, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if d > 0 && d%u.d == 0 && (u.d != day || d <= maxWindow) { // parseDuration takes up to 366d
			return fmt.Sprintf("%d%s", d/u.d, u.suffix)
		}
	}
	return d.String()
}

// MarshalYAML writes the retention: section in the form UnmarshalYAML
// reads: whole days as "90d", the rest as time.Duration spells them.
func (r Retention) MarshalYAML() (any, error) {
	var y struct {
		Raw       string `yaml:"raw,omitempty"`
		Summaries string `yaml:"summaries,omitempty"`
	}
	format := func(d time.Duration) string {
		switch {
		case d == 0:
			return "" // forever: the key is left out
		case d%day == 0 && d/day <= maxRetentionDays:
			return fmt.Sprintf("%dd", d/day)
		}
		return d.String()
	}
	y.Raw, y.Summaries = format(r.Raw), format(r.Summaries)
	return y, nil
}
