package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// CheckTableFields compares each configured table with the fields the lake
// remembers for it: a change the objects already written cannot follow (a
// type changed, a required field added or removed) stops the process with
// an error naming the field; an accepted one (a nullable field added) is
// recorded as the table's new shape. A table seen for the first time is
// recorded as it is.
func CheckTableFields(ctx context.Context, b objstore.Bucket, tables []*schema.Table, logger *slog.Logger) error {
	log := lake.NewCommitLog(b)
	for _, t := range tables {
		version, data, found, err := log.TableFields(ctx, t.Name)
		if err != nil {
			return fmt.Errorf("table %s: read its recorded fields: %w", t.Name, err)
		}
		changed := !found
		if found {
			var stored []schema.StoredField
			if err := json.Unmarshal(data, &stored); err != nil {
				return fmt.Errorf("table %s: recorded fields (version %d): %w", t.Name, version, err)
			}
			if changed, err = t.Evolve(stored); err != nil {
				return err
			}
		}
		if !changed {
			continue
		}
		next, err := json.Marshal(t.StoredFields())
		if err != nil {
			return err
		}
		if found {
			version++
		}
		if err := log.RecordTableFields(ctx, t.Name, version, next); err != nil {
			return fmt.Errorf("table %s: %w", t.Name, err)
		}
		logger.Info("table fields recorded", "table", t.Name, "version", version)
	}
	return nil
}
