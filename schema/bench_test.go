package schema

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// sampleEvents returns n realistic ~210-byte events of the sample table, with
// low-cardinality event_type/country/device and high-cardinality ids.
func sampleEvents(n int, seed uint64) [][]byte {
	r := rand.New(rand.NewPCG(seed, seed+1))
	types := []string{"page_view", "click", "add_to_cart", "purchase", "signup", "search"}
	countries := []string{"DE", "US", "FR", "GB", "IN", "BR", "JP", "NL", "ES", "IT"}
	devices := []string{"mobile", "desktop", "tablet", "tv"}
	base := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	out := make([][]byte, n)
	for i := range out {
		ts := base.Add(time.Duration(i) * 997 * time.Microsecond).Format("2006-01-02T15:04:05.000000Z07:00")
		out[i] = fmt.Appendf(nil, `{"ts":%q,"event_id":"%016x%016x","user_id":"u_%d","event_type":%q,"country":%q,"device":%q,"amount":%.2f,"latency_ms":%d,"ok":%t}`,
			ts, r.Uint64(), r.Uint64(), r.IntN(100000), types[r.IntN(len(types))], countries[r.IntN(len(countries))],
			devices[r.IntN(len(devices))], float64(r.IntN(100000))/100, r.IntN(2000), r.IntN(10) != 0)
	}
	return out
}

// cpuSeconds is the process's user+system CPU time. The benchmarks report
// throughput per CPU-second next to wall-clock throughput because the shared
// 2-core machine they run on is often oversubscribed, which inflates wall time
// but not CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func fixedNow() time.Time { return time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC) }

func BenchmarkDecode(b *testing.B) {
	t := SampleTables()[0]
	events := sampleEvents(4096, 1)
	var total int
	for _, e := range events {
		total += len(e)
	}
	d := NewDecoder(t, WithNow(fixedNow))
	batch := NewBatch(t, memory.NewGoAllocator())
	defer batch.Release()
	meta := Meta{Source: "kafka:events", Partition: "3"}
	b.SetBytes(int64(total / len(events)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuSeconds()
	for i := 0; i < b.N; i++ {
		meta.Offset = int64(i)
		if _, err := d.Decode(batch, events[i%len(events)], meta); err != nil {
			b.Fatal(err)
		}
		if batch.Len() == 65536 {
			batch.NewRecord().Release()
		}
	}
	cpu := cpuSeconds() - cpu0
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/cpu, "events/cpu-s")
}

func benchRecord(tb testing.TB, n int) (*Table, arrow.Record) {
	t := SampleTables()[0]
	d := NewDecoder(t, WithNow(fixedNow))
	batch := NewBatch(t, memory.NewGoAllocator())
	defer batch.Release()
	for i, e := range sampleEvents(n, 2) {
		if _, err := d.Decode(batch, e, Meta{Source: "kafka:events", Partition: "3", Offset: int64(i)}); err != nil {
			tb.Fatal(err)
		}
	}
	return t, batch.NewRecord()
}

func BenchmarkWriteParquet(b *testing.B) {
	for _, comp := range []string{"zstd", "snappy", "none"} {
		b.Run(comp, func(b *testing.B) {
			const rows = 100_000
			t, rec := benchRecord(b, rows)
			defer rec.Release()
			var buf bytes.Buffer
			b.ReportAllocs()
			b.ResetTimer()
			var size int64
			cpu0 := cpuSeconds()
			for i := 0; i < b.N; i++ {
				buf.Reset()
				n, err := WriteParquet(&buf, t, rec, nil, WriterOptions{Compression: comp})
				if err != nil {
					b.Fatal(err)
				}
				size = n
			}
			cpu := cpuSeconds() - cpu0
			b.ReportMetric(float64(b.N)*rows/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(float64(b.N)*rows/cpu, "rows/cpu-s")
			b.ReportMetric(float64(size)/rows, "bytes/row")
		})
	}
}
