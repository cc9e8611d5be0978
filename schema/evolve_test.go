package schema

import (
	"errors"
	"strings"
	"testing"
)

func TestEvolve(t *testing.T) {
	base := SampleTables()[0]
	stored := base.StoredFields()
	edit := func(f func(*Table)) *Table {
		c := *base
		c.Fields = append([]Field(nil), base.Fields...)
		f(&c)
		return &c
	}
	field := func(c *Table, name string) *Field { return &c.Fields[c.FieldIndex(name)] }
	for _, tc := range []struct {
		name    string
		table   *Table
		changed bool
		refuse  string // the field the error must name; "" if accepted
	}{
		{"unchanged", base, false, ""},
		{"nullable field added", edit(func(c *Table) { c.Fields = append(c.Fields, Field{Name: "browser", Type: TypeString, Nullable: true}) }), true, ""},
		{"required field made nullable", edit(func(c *Table) { field(c, "amount").Nullable = true }), true, ""},
		{"nullable field removed", edit(func(c *Table) {
			c.Fields = append(c.Fields[:c.FieldIndex("device")], c.Fields[c.FieldIndex("device")+1:]...)
		}), true, ""},
		{"required field added", edit(func(c *Table) { c.Fields = append(c.Fields, Field{Name: "browser", Type: TypeString}) }), false, "browser"},
		{"required field removed", edit(func(c *Table) {
			c.Fields = append(c.Fields[:c.FieldIndex("amount")], c.Fields[c.FieldIndex("amount")+1:]...)
		}), false, "amount"},
		{"type changed", edit(func(c *Table) { field(c, "latency_ms").Type = TypeFloat64 }), false, "latency_ms"},
		{"unit changed", edit(func(c *Table) { field(c, "ts").Unit = "millis" }), false, "ts"},
		{"nullable made required", edit(func(c *Table) { field(c, "country").Nullable = false }), false, "country"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changed, err := tc.table.Evolve(stored)
			if tc.refuse != "" {
				if !errors.Is(err, ErrIncompatibleChange) || !strings.Contains(err.Error(), "field "+tc.refuse+" ") {
					t.Fatalf("err = %v, want a refusal naming field %s", err, tc.refuse)
				}
				return
			}
			if err != nil || changed != tc.changed {
				t.Fatalf("Evolve = %v, %v; want changed %v", changed, err, tc.changed)
			}
		})
	}
}
