package lake

import (
	"fmt"
	"strings"
	"time"
)

// The keys of every other object Sluice keeps in a store are built here,
// so that the lake's layout reads in one place. The commit protocol's own
// records sit beside their types: commit links and checkpoints
// (commit.go, checkpoint.go), compactions (compaction.go), manifests
// (manifest.go), retention (retention.go), table fields (tablefields.go).
// Names handed in are already safe for a key; the packages that own the
// objects make them so.

// RawObjectKey is the key of a raw object named name (unique per flush
// attempt) in the event-time hour of hour:
// <table>/dt=YYYY-MM-DD/hour=HH/<name>.parquet.
func RawObjectKey(table string, hour time.Time, name string) string {
	return RawHourPrefix(table, hour) + name + ".parquet"
}

// DeadLetterKey is the key of the dead letters of a flush named name,
// filed under the hour at which they were written:
// _deadletter/<table>/dt=YYYY-MM-DD/hour=HH/<name>.jsonl.
func DeadLetterKey(table string, at time.Time, name string) string {
	return DeadLetterRoot + table + "/" + hourSegments(at) + name + ".jsonl"
}

// SummaryWindowPrefix is where the summaries of the windows named window
// of a table live, in the summary store.
func SummaryWindowPrefix(table, window string) string { return table + "/" + window + "/" }

// SummaryKey is the key, in the summary store, of the windows named window
// in the unit (a UTC day, or an hour when hourly) starting at unitStart:
// <table>/<window>/dt=YYYY-MM-DD/day.parquet or .../hour=HH.parquet.
func SummaryKey(table, window string, unitStart time.Time, hourly bool) string {
	unitStart = unitStart.UTC()
	unit := "day"
	if hourly {
		unit = fmt.Sprintf("hour=%02d", unitStart.Hour())
	}
	return table + "/" + window + "/dt=" + unitStart.Format(time.DateOnly) + "/" + unit + ".parquet"
}

// BatchRunRoot is where one batch run of a table keeps its partial
// summaries and dead letters; run names the run's inputs.
func BatchRunRoot(table, run string) string { return "_batch/" + table + "/" + run + "/" }

// BatchPartialKey is the key of the partial summary of split n of a batch
// run's file id, under the run's root (aggregate.AppendPartial's format).
func BatchPartialKey(root, id string, n int) string {
	return fmt.Sprintf("%spartials/%s.%05d.partial", root, id, n)
}

// BatchDeadLetterKey is the key of the dead letters of the split whose
// partial summary is partialKey, under the run's root.
func BatchDeadLetterKey(root, partialKey string) string {
	return strings.Replace(strings.TrimSuffix(partialKey, ".partial")+".jsonl", root+"partials/", root+"deadletters/", 1)
}

// LocksRoot is where the aggregator's leases and their fences live, in the
// summary store.
const LocksRoot = "_sluice/locks/"

// LockPrefix is where the leases of job name live, one per time slot, and
// its fence.
func LockPrefix(name string) string { return LocksRoot + name + "/" }

// LockKey is the key of the lease of job name for time slot slot.
func LockKey(name string, slot int64) string {
	return fmt.Sprintf("%s%020d.json", LockPrefix(name), slot)
}

// LockFenceKey is the key of the fence of job name.
func LockFenceKey(name string) string { return LockPrefix(name) + "fence.json" }

// RunCursorsRoot is where the aggregator's run cursors live, in the summary
// store.
const RunCursorsRoot = "_sluice/cursors/"

// RunCursorKey is the key of a table's run cursor.
func RunCursorKey(table string) string { return RunCursorsRoot + table + ".json" }

// CompactionCursorKey is where the compactor keeps its cursor over a
// table's links, in the lake (the compactor has no summary store). It sorts
// apart from the aggregator's run cursors, which live in the summary store
// (possibly the same bucket) as RunCursorKey.
func CompactionCursorKey(table string) string {
	return RunCursorsRoot + "compaction/" + table + ".json"
}

// SweepCursorKey is where the sweeper keeps its cursor over a table's
// links and the hours it still watches, in the lake.
func SweepCursorKey(table string) string { return RunCursorsRoot + "sweep/" + table + ".json" }

// SweepIndexRoot is the prefix of the sweeper's hour indexes: per table and
// event-time hour, every object a link names there (any kind, any rows).
const SweepIndexRoot = "_sluice/sweepindex/"

// SweepIndexKey is where the sweeper's index of one hour lives.
func SweepIndexKey(table string, hour time.Time) string {
	hour = hour.UTC()
	return fmt.Sprintf("%s%s/dt=%s/hour=%02d.json", SweepIndexRoot, table, hour.Format(time.DateOnly), hour.Hour())
}

// SweepHintsRoot is the prefix of the hints compactors leave the sweeper:
// one per compaction attempt, naming the hour it writes to.
const SweepHintsRoot = "_sluice/sweephints/"

// SweepHintPrefix is where the hints of a table live.
func SweepHintPrefix(table string) string { return SweepHintsRoot + table + "/" }

// SweepHintKey is the hint of one compaction attempt into hour.
func SweepHintKey(table string, hour time.Time, attempt string) string {
	return fmt.Sprintf("%s%s-%s", SweepHintPrefix(table), hour.UTC().Format("2006-01-02T15"), attempt)
}

// KinesisLeaseKey is where the lease of a shard read into table is kept.
func KinesisLeaseKey(table, stream, shard string) string {
	return "_sluice/leases/kinesis/" + table + "/" + stream + "/" + shard + ".json"
}

// InboxLedgerRoot is where the inbox ledger of a table lives.
func InboxLedgerRoot(table string) string { return "_sluice/inbox/" + table + "/" }

// InboxEntriesPrefix holds a ledger's entries, one per (file, version).
func InboxEntriesPrefix(table string) string { return InboxLedgerRoot(table) + "files/" }

// InboxOpenPrefix holds a ledger's markers of files claimed and not yet
// finished.
func InboxOpenPrefix(table string) string { return InboxLedgerRoot(table) + "open/" }

// InboxEntryKey is the key of the entry of file id (its key and version,
// encoded by the inbox).
func InboxEntryKey(table, id string) string { return InboxEntriesPrefix(table) + id + ".json" }

// InboxOpenKey is the key of the marker of file id.
func InboxOpenKey(table, id string) string { return InboxOpenPrefix(table) + id }

// InboxCursorKey is the key of a ledger's listing cursor.
func InboxCursorKey(table string) string { return InboxLedgerRoot(table) + "cursor.json" }

// IdempotencyRoot holds HTTP ingest's Idempotency-Key claims.
const IdempotencyRoot = "_sluice/http/idempotency/"

// IdempotencyClaimKey is the key of claim (a digest of the caller's key)
// for table.
func IdempotencyClaimKey(table, claim string) string {
	return IdempotencyRoot + table + "/" + claim + ".json"
}

// ActionsRoot is where the action log lives: one object per firing.
const ActionsRoot = "_sluice/actions/"

// ActionsPrefix is where the action-log entries of a table (all: "") or of
// one rule of it ("": all its rules) live.
func ActionsPrefix(table, rule string) string {
	prefix := ActionsRoot
	if table != "" {
		prefix += table + "/"
		if rule != "" {
			prefix += rule + "/"
		}
	}
	return prefix
}

// ActionKey is the key of the action-log entry of firing id of rule:
// _sluice/actions/<table>/<rule>/<firing id>.json.
func ActionKey(table, rule, id string) string {
	return ActionsRoot + table + "/" + rule + "/" + id + ".json"
}

// PendingActionsRoot is where the outbox's markers live: an empty object
// per firing not yet delivered or dead-lettered.
const PendingActionsRoot = "_sluice/ops/pending/"

// PendingActionsPrefix is where the markers of a table's pending firings
// live.
func PendingActionsPrefix(table string) string { return PendingActionsRoot + table + "/" }

// PendingActionKey is the marker of firing id of rule:
// _sluice/ops/pending/<table>/<rule>/<firing id>.
func PendingActionKey(table, rule, id string) string {
	return PendingActionsPrefix(table) + rule + "/" + id
}

// OpsEndpointKey is where the state of a webhook endpoint is kept.
func OpsEndpointKey(name string) string { return "_sluice/ops/endpoints/" + name + ".json" }

// OpsRuleStateKey is where a window rule's state lives.
func OpsRuleStateKey(table, rule string) string {
	return "_sluice/ops/rules/" + table + "/" + rule + ".json"
}

// OpsCursorKey is where the cursor of a table's event rules over one
// partition lives.
func OpsCursorKey(table, source, partition string) string {
	return "_sluice/ops/cursors/" + table + "/" + source + "/" + partition + ".json"
}

// WebSigningKey holds the secret the web tier signs tokens with.
const WebSigningKey = "_sluice/web/signing-key"

// APIKeysRoot holds one object per API key of the web tier.
const APIKeysRoot = "_sluice/web/keys/"

// APIKeyKey is the key of the object of API key id.
func APIKeyKey(id string) string { return APIKeysRoot + id + ".json" }
