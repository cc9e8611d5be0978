package inspect

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/sluicehq/sluice/lake"
)

// maxJSONObjectBytes bounds what inspect reads of one .json object: commit
// records are small, and a huge file is not one.
const maxJSONObjectBytes = 64 << 20

// jsonObjectReport is a .json object: a commit record when it is one.
type jsonObjectReport struct {
	Object string             `json:"object"`
	Size   int64              `json:"size"`
	Commit *lake.CommitRecord `json:"commit,omitempty"`
	JSON   json.RawMessage    `json:"json,omitempty"` // when not a commit record
}

func inspectJSONObject(ctx context.Context, obj inspectObject) (*jsonObjectReport, error) {
	rc, err := obj.open(ctx)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", obj.name, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxJSONObjectBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", obj.name, err)
	}
	if len(data) > maxJSONObjectBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes, not inspecting", obj.name, maxJSONObjectBytes)
	}
	rep := &jsonObjectReport{Object: obj.name, Size: obj.size}
	var rec lake.CommitRecord
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err == nil && rec.Version > 0 && rec.Table != "" && rec.Source != "" {
		if rec.Version == 1 { // the positions of a version-1 record are its offsets
			rec.Kind, rec.First, rec.Next = lake.LinkData, lake.PositionOf(max(0, rec.FirstOffset)), lake.PositionOf(max(0, rec.NextOffset))
		}
		rep.Commit = &rec
		return rep, nil
	}
	if !json.Valid(data) {
		return nil, fmt.Errorf("%s: not valid JSON", obj.name)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		return nil, fmt.Errorf("%s: %w", obj.name, err)
	}
	rep.JSON = compact.Bytes()
	return rep, nil
}

// deadLetterReport is a .jsonl object of dead letters.
type deadLetterReport struct {
	Object       string            `json:"object"`
	Size         int64             `json:"size"`
	Lines        int64             `json:"lines"`
	InvalidLines int64             `json:"invalid_lines"`
	Reasons      map[string]int64  `json:"reasons"`
	Sample       []json.RawMessage `json:"sample,omitempty"`
}

// maxDeadLetterLine is far above a dead letter of the largest record a table
// accepts plus its envelope.
const maxDeadLetterLine = 16 << 20

func inspectDeadLetters(ctx context.Context, obj inspectObject, n int) (*deadLetterReport, error) {
	rc, err := obj.open(ctx)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", obj.name, err)
	}
	defer rc.Close()
	rep := &deadLetterReport{Object: obj.name, Size: obj.size, Reasons: map[string]int64{}}
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 64<<10), maxDeadLetterLine)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		rep.Lines++
		var dl struct {
			Reason string `json:"reason"`
		}
		if err := json.Unmarshal(line, &dl); err != nil {
			rep.InvalidLines++
			continue
		}
		if dl.Reason == "" {
			dl.Reason = "(none)"
		}
		rep.Reasons[dl.Reason]++
		if len(rep.Sample) < n {
			rep.Sample = append(rep.Sample, bytes.Clone(line))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", obj.name, err)
	}
	return rep, nil
}

// SummaryReport aggregates the Parquet objects under a prefix.
type SummaryReport struct {
	Prefix          string          `json:"prefix"`
	Objects         int             `json:"objects"`
	Size            int64           `json:"size"`
	Rows            int64           `json:"rows"`
	RowGroups       int             `json:"row_groups"`
	Compression     []string        `json:"compression"`
	Schemas         []schemaGroup   `json:"schemas"`
	EventTime       *eventTimeRange `json:"event_time,omitempty"`
	CommitRecords   int             `json:"json_objects"`
	DeadLetterFiles int             `json:"jsonl_objects"`
	Unreadable      []string        `json:"unreadable,omitempty"`
	Sample          []orderedRow    `json:"sample,omitempty"`
	// Lake is set when the prefix lies in a lake: the totals are of its
	// committed set.
	Lake *lakeSummary `json:"lake,omitempty"`
}

// schemaGroup is one distinct schema and how many objects have it.
type schemaGroup struct {
	Columns []parquetColumn `json:"columns"`
	Objects int             `json:"objects"`
	First   string          `json:"first_object"`
}

func inspectSummary(ctx context.Context, out *inspectPrinter, o Options, target string, objs []inspectObject, lake *lakeSummary) error {
	sum := SummaryReport{Prefix: target, Lake: lake}
	codecs := map[string]bool{}
	schemaIdx := map[string]int{}
	for _, obj := range objs {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch obj.kind {
		case kindJSON:
			sum.CommitRecords++
			continue
		case kindJSONL:
			sum.DeadLetterFiles++
			continue
		}
		rep, err := inspectParquet(ctx, obj, o.Rows-len(sum.Sample), o.EventTimeColumn)
		if err != nil {
			sum.Unreadable = append(sum.Unreadable, obj.name)
			out.objectError(obj.name, err)
			continue
		}
		sum.Objects++
		sum.Size += rep.Size
		sum.Rows += rep.Rows
		sum.RowGroups += rep.RowGroups
		for _, c := range rep.Compression {
			codecs[c] = true
		}
		key := schemaKey(rep.Columns)
		if i, ok := schemaIdx[key]; ok {
			sum.Schemas[i].Objects++
		} else {
			schemaIdx[key] = len(sum.Schemas)
			sum.Schemas = append(sum.Schemas, schemaGroup{Columns: rep.Columns, Objects: 1, First: obj.name})
		}
		sum.EventTime = sum.EventTime.merge(rep.EventTime)
		sum.Sample = append(sum.Sample, rep.Sample...)
	}
	for c := range codecs {
		sum.Compression = append(sum.Compression, c)
	}
	sort.Strings(sum.Compression)
	if err := out.summary(&sum); err != nil {
		return err
	}
	if len(sum.Unreadable) > 0 {
		return fmt.Errorf("inspect %s: %d of %d Parquet objects could not be read", target, len(sum.Unreadable), len(sum.Unreadable)+sum.Objects)
	}
	return nil
}

func schemaKey(cols []parquetColumn) string {
	var b strings.Builder
	for _, c := range cols {
		fmt.Fprintf(&b, "%s|%s|%s|%s\n", c.Name, c.Physical, c.Logical, c.Repetition)
	}
	return b.String()
}
