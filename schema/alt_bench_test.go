package schema

import (
	"encoding/json"
	"reflect"
	"testing"

	gojson "github.com/goccy/go-json"
)

// BenchmarkDecodeAlternatives measures what the hand-written scanner was
// chosen against: unmarshalling into a struct generated with reflect.StructOf
// (pointer fields, to tell absent/null from zero). These numbers cover only
// the JSON step, without validation of strings' UTF-8, number ranges per
// column, timestamps or the Arrow append that BenchmarkDecode includes.
func BenchmarkDecodeAlternatives(b *testing.B) {
	t := SampleTables()[0]
	fields := make([]reflect.StructField, len(t.Fields))
	for i, f := range t.Fields {
		var typ reflect.Type
		switch f.Type {
		case TypeString, TypeTimestamp:
			typ = reflect.TypeFor[*string]()
		case TypeInt64:
			typ = reflect.TypeFor[*int64]()
		case TypeFloat64:
			typ = reflect.TypeFor[*float64]()
		case TypeBool:
			typ = reflect.TypeFor[*bool]()
		}
		fields[i] = reflect.StructField{Name: "F" + f.Name, Type: typ, Tag: reflect.StructTag(`json:"` + f.Name + `"`)}
	}
	st := reflect.StructOf(fields)
	events := sampleEvents(4096, 1)
	for _, alt := range []struct {
		name      string
		unmarshal func([]byte, any) error
	}{
		{"goccy_structof", gojson.Unmarshal},
		{"encoding_json_structof", json.Unmarshal},
	} {
		b.Run(alt.name, func(b *testing.B) {
			v := reflect.New(st)
			ptr := v.Interface()
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				v.Elem().SetZero()
				if err := alt.unmarshal(events[i%len(events)], ptr); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
	b.Run("scanner_only", func(b *testing.B) {
		d := NewDecoder(t, WithNow(fixedNow))
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := d.scan(events[i%len(events)]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}
