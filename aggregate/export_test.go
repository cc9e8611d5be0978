package aggregate

// CompactTableFenced exposes the leased compaction to the external tests.
var CompactTableFenced = (*Compactor).compactTable
