package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/schema"
)

// The lake remembers a table's fields: an accepted change is recorded as a
// new version, a refused one stops startup with an error naming the field.
func TestCheckTableFields(t *testing.T) {
	ctx := context.Background()
	b := objstoretest.NewLocal(t)
	logger := slog.New(slog.DiscardHandler)
	table := func(edit func(string) string) *schema.Table {
		tables, err := schema.Parse([]byte(edit(string(schema.SampleYAML))), "t.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return tables[0]
	}
	same := func(y string) string { return y }
	if err := app.CheckTableFields(ctx, b, []*schema.Table{table(same)}, logger); err != nil {
		t.Fatal(err)
	}
	withBrowser := func(y string) string {
		return strings.Replace(y, "      - {name: ok, type: bool}\n", "      - {name: ok, type: bool}\n      - {name: browser, type: string, nullable: true}\n", 1)
	}
	if err := app.CheckTableFields(ctx, b, []*schema.Table{table(withBrowser)}, logger); err != nil {
		t.Fatalf("adding a nullable field: %v", err)
	}
	if v, _, found, err := lake.NewCommitLog(b).TableFields(ctx, "events"); err != nil || !found || v != 1 {
		t.Fatalf("recorded version = %d, %v, %v; want 1", v, found, err)
	}
	// Back to the shape without it: a nullable field may be dropped.
	if err := app.CheckTableFields(ctx, b, []*schema.Table{table(same)}, logger); err != nil {
		t.Fatalf("dropping a nullable field: %v", err)
	}
	changedType := func(y string) string {
		return strings.Replace(y, "{name: latency_ms, type: int64}", "{name: latency_ms, type: float64}", 1)
	}
	err := app.CheckTableFields(ctx, b, []*schema.Table{table(changedType)}, logger)
	if !errors.Is(err, schema.ErrIncompatibleChange) || !strings.Contains(err.Error(), "latency_ms") {
		t.Fatalf("type change: err = %v, want a refusal naming latency_ms", err)
	}
}
