package lake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/objstore"
)

// The lake remembers each table's fields, so that a configuration change
// that could no longer read the objects already written is refused at
// startup instead of failing later, object by object. The record is
// versioned: fields-<n>.json, each created conditionally at its number;
// the newest is the table's current shape. Its content is the schema
// package's business (a JSON list of fields); the lake only keeps it.

// TableFieldsPrefix is where a table's field records live.
func TableFieldsPrefix(table string) string { return "_sluice/tables/" + table + "/" }

// TableFieldsKey is the key of version n of a table's field record.
func TableFieldsKey(table string, n int64) string {
	return fmt.Sprintf("%sfields-%010d.json", TableFieldsPrefix(table), n)
}

// TableFields returns the newest field record of table and its version,
// found=false if none was ever written.
func (l *CommitLog) TableFields(ctx context.Context, table string) (version int64, data []byte, found bool, err error) {
	if err := ValidateCommitNames(table, "s", "p"); err != nil {
		return 0, nil, false, err
	}
	var newest string
	err = l.b.Iter(ctx, TableFieldsPrefix(table)+"fields-", func(a objstore.ObjectAttrs) error {
		newest = a.Key
		return nil
	})
	if err != nil || newest == "" {
		return 0, nil, false, err
	}
	digits := strings.TrimSuffix(strings.TrimPrefix(newest, TableFieldsPrefix(table)+"fields-"), ".json")
	if version, err = strconv.ParseInt(digits, 10, 64); err != nil {
		return 0, nil, false, fmt.Errorf("table fields record %s: bad name", newest)
	}
	rc, err := l.b.Get(ctx, newest)
	if err != nil {
		return 0, nil, false, fmt.Errorf("read %s: %w", newest, err)
	}
	defer rc.Close()
	data, err = io.ReadAll(io.LimitReader(rc, maxRecordSize))
	if err != nil {
		return 0, nil, false, fmt.Errorf("read %s: %w", newest, err)
	}
	return version, data, true, nil
}

// RecordTableFields writes version n of table's field record, unless
// another process wrote that version first (then it returns nil if the
// content is the same, an error wrapping ErrCommitConflict if not).
func (l *CommitLog) RecordTableFields(ctx context.Context, table string, n int64, data []byte) error {
	key := TableFieldsKey(table, n)
	err := l.b.PutIfAbsent(ctx, key, data)
	if errors.Is(err, objstore.ErrExists) {
		rc, gerr := l.b.Get(ctx, key)
		if gerr != nil {
			return fmt.Errorf("record table fields %s: %w", key, gerr)
		}
		defer rc.Close()
		got, _ := io.ReadAll(io.LimitReader(rc, maxRecordSize))
		if string(got) == string(data) {
			return nil
		}
		return fmt.Errorf("record table fields %s: %w: another process recorded other fields", key, ErrCommitConflict)
	}
	if err != nil {
		return fmt.Errorf("record table fields %s: %w", key, err)
	}
	return nil
}
