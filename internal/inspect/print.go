package inspect

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"
)

// inspectPrinter writes reports as text tables or as one JSON object a line.
type inspectPrinter struct {
	w     io.Writer
	json  bool
	first bool
}

func newInspectPrinter(w io.Writer, o Options) *inspectPrinter {
	return &inspectPrinter{w: w, json: o.Format == "json", first: true}
}

// maxCell keeps wide values (long strings, raw records) from wrecking a table.
const maxCell = 48

func (p *inspectPrinter) header(title string) {
	if !p.first {
		fmt.Fprintln(p.w)
	}
	p.first = false
	fmt.Fprintf(p.w, "== %s\n", title)
}

func (p *inspectPrinter) emitJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	b = append(b, '\n')
	_, err = p.w.Write(b)
	return err
}

// objectError reports an object that could not be read, without stopping
// the walk over the others.
func (p *inspectPrinter) objectError(name string, err error) {
	if p.json {
		_ = p.emitJSON(map[string]string{"object": name, "error": err.Error()})
		return
	}
	p.header(name)
	fmt.Fprintf(p.w, "error: %v\n", err)
}

func (p *inspectPrinter) parquet(r *ParquetReport) error {
	if p.json {
		return p.emitJSON(r)
	}
	p.header(r.Object)
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "size\t%s\n", humanBytes(r.Size))
	fmt.Fprintf(tw, "rows\t%d\n", r.Rows)
	fmt.Fprintf(tw, "row groups\t%d\n", r.RowGroups)
	fmt.Fprintf(tw, "compression\t%s\n", strings.Join(r.Compression, ", "))
	if r.CreatedBy != "" {
		fmt.Fprintf(tw, "created by\t%s\n", r.CreatedBy)
	}
	fmt.Fprintf(tw, "event time\t%s\n", formatRange(r.EventTime))
	for _, k := range sortedKeys(r.Metadata) {
		fmt.Fprintf(tw, "metadata %s\t%s\n", k, truncate(r.Metadata[k], 2*maxCell))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	p.columns(r.Columns)
	p.rows(r.Sample)
	return nil
}

func (p *inspectPrinter) columns(cols []parquetColumn) {
	fmt.Fprintln(p.w, "schema:")
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  COLUMN\tPHYSICAL\tLOGICAL\tREPETITION")
	for _, c := range cols {
		logical := c.Logical
		if logical == "" {
			logical = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", c.Name, c.Physical, logical, c.Repetition)
	}
	_ = tw.Flush()
}

func (p *inspectPrinter) rows(rows []orderedRow) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(p.w, "first %d rows:\n", len(rows))
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	names := make([]string, len(rows[0]))
	for i, c := range rows[0] {
		names[i] = c.name
	}
	fmt.Fprintln(tw, "  "+strings.Join(names, "\t"))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = truncate(formatCell(c.value), maxCell)
		}
		fmt.Fprintln(tw, "  "+strings.Join(cells, "\t"))
	}
	_ = tw.Flush()
}

func (p *inspectPrinter) jsonObject(r *jsonObjectReport) error {
	if p.json {
		return p.emitJSON(r)
	}
	p.header(r.Object)
	if r.Commit == nil {
		fmt.Fprintf(p.w, "JSON document (%s), not a commit record:\n%s\n", humanBytes(r.Size), truncate(string(r.JSON), 4096))
		return nil
	}
	c := r.Commit
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "commit record\tversion %d\n", c.Version)
	fmt.Fprintf(tw, "table\t%s\n", c.Table)
	fmt.Fprintf(tw, "source\t%s partition %s\n", c.Source, c.Partition)
	fmt.Fprintf(tw, "link\t%d (%s)\n", c.Seq, c.Kind)
	fmt.Fprintf(tw, "positions\t[%s, %s)  (%d positions)\n", c.First, c.Next, c.First.Distance(c.Next))
	fmt.Fprintf(tw, "records\t%d\n", c.Records)
	fmt.Fprintf(tw, "dead letters\t%d\n", c.DeadLetters)
	fmt.Fprintf(tw, "writer\t%s\n", c.Writer)
	fmt.Fprintf(tw, "committed at\t%s\n", c.CommittedAt.UTC().Format(time.RFC3339Nano))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(p.w, "objects (%d):\n", len(c.Objects))
	tw = tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  KEY\tKIND\tROWS\tSIZE\tEVENT TIME")
	for _, o := range c.Objects {
		et := "-"
		if o.MinEventTimeMicros != 0 || o.MaxEventTimeMicros != 0 {
			et = time.UnixMicro(o.MinEventTimeMicros).UTC().Format(time.RFC3339Nano) + " .. " +
				time.UnixMicro(o.MaxEventTimeMicros).UTC().Format(time.RFC3339Nano)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\n", o.Key, o.Kind, o.Rows, humanBytes(o.Size), et)
	}
	return tw.Flush()
}

func (p *inspectPrinter) deadLetters(r *deadLetterReport) error {
	if p.json {
		return p.emitJSON(r)
	}
	p.header(r.Object)
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "dead letters\t%d (%s)\n", r.Lines, humanBytes(r.Size))
	if r.InvalidLines > 0 {
		fmt.Fprintf(tw, "invalid lines\t%d\n", r.InvalidLines)
	}
	reasons := sortedKeys(r.Reasons)
	sort.SliceStable(reasons, func(i, j int) bool { return r.Reasons[reasons[i]] > r.Reasons[reasons[j]] })
	for _, k := range reasons {
		fmt.Fprintf(tw, "reason %s\t%d\n", k, r.Reasons[k])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Sample) == 0 {
		return nil
	}
	fmt.Fprintf(p.w, "first %d:\n", len(r.Sample))
	tw = tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  SOURCE\tPARTITION\tOFFSET\tREASON\tFIELD\tERROR\tVALUE")
	for _, line := range r.Sample {
		var dl map[string]any
		if err := json.Unmarshal(line, &dl); err != nil {
			continue
		}
		value := str(dl["value"])
		if b64 := str(dl["value_b64"]); b64 != "" {
			if raw, err := base64.StdEncoding.DecodeString(b64); err == nil {
				value = fmt.Sprintf("%q", raw)
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", str(dl["source"]), str(dl["partition"]), deadLetterPlace(dl),
			str(dl["reason"]), str(dl["field"]), truncate(str(dl["error"]), maxCell), truncate(value, maxCell))
	}
	return tw.Flush()
}

// deadLetterPlace is where a dead letter's record was: its offset in the
// partition, and for a record read from a file its place in the file (a
// split's positions count lines within the split, which the file does not
// show).
func deadLetterPlace(dl map[string]any) string {
	place := str(dl["offset"])
	if place == "" {
		place = str(dl["position"])
	}
	var at []string
	if v := str(dl["file_offset"]); v != "" {
		at = append(at, "byte "+v)
	}
	if v := str(dl["file_line"]); v != "" {
		at = append(at, "line "+v)
	}
	if v := str(dl["file_row"]); v != "" {
		at = append(at, "row "+v)
	}
	if len(at) > 0 {
		place += " (file " + strings.Join(at, ", ") + ")"
	}
	return place
}

func (p *inspectPrinter) summary(s *SummaryReport) error {
	if p.json {
		return p.emitJSON(s)
	}
	p.header("summary of " + s.Prefix)
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "parquet objects\t%d\n", s.Objects)
	fmt.Fprintf(tw, "size\t%s\n", humanBytes(s.Size))
	fmt.Fprintf(tw, "rows\t%d\n", s.Rows)
	fmt.Fprintf(tw, "row groups\t%d\n", s.RowGroups)
	fmt.Fprintf(tw, "compression\t%s\n", strings.Join(s.Compression, ", "))
	fmt.Fprintf(tw, "event time\t%s\n", formatRange(s.EventTime))
	fmt.Fprintf(tw, "json objects\t%d\n", s.CommitRecords)
	fmt.Fprintf(tw, "jsonl objects\t%d\n", s.DeadLetterFiles)
	if s.Lake != nil {
		fmt.Fprintf(tw, "committed set\tof lake %s (tables %s)\n", s.Lake.Root, strings.Join(s.Lake.Tables, ", "))
		fmt.Fprintf(tw, "not committed\t%d objects left out (replaced by a compaction, or orphans)\n", s.Lake.NotCommitted)
	}
	if len(s.Unreadable) > 0 {
		fmt.Fprintf(tw, "unreadable\t%d\n", len(s.Unreadable))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for i, g := range s.Schemas {
		if len(s.Schemas) > 1 {
			fmt.Fprintf(p.w, "schema %d of %d: %d objects, first %s\n", i+1, len(s.Schemas), g.Objects, g.First)
		}
		p.columns(g.Columns)
	}
	p.rows(s.Sample)
	return nil
}

func formatRange(r *eventTimeRange) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%s .. %s  (column %s, from %s)",
		r.Min.Format(time.RFC3339Nano), r.Max.Format(time.RFC3339Nano), r.Column, r.From)
}

func formatCell(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case time.Time:
		return x.Format(time.RFC3339Nano)
	case bytesValue:
		return "0x" + fmt.Sprintf("%x", []byte(x))
	case string:
		// Tabs and newlines would break the table's alignment.
		return strings.NewReplacer("\t", `\t`, "\n", `\n`, "\r", `\r`).Replace(x)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = formatCell(e)
		}
		return "[" + strings.Join(parts, " ") + "]"
	default:
		return fmt.Sprint(x)
	}
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func str(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return fmt.Sprintf("%.0f", x)
	default:
		return fmt.Sprint(x)
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB (%d bytes)", float64(n)/float64(div), "KMGTPE"[exp], n)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
