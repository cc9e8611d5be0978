package schema

import (
	"errors"
	"fmt"
)

// ErrIncompatibleChange is wrapped by Evolve's error: the table as
// configured cannot read what the lake already holds.
var ErrIncompatibleChange = errors.New("incompatible table change")

// StoredField is a field as the lake remembers it: what decides whether old
// objects can still be read.
type StoredField struct {
	Name     string `json:"name"`
	Type     Type   `json:"type"`
	Unit     string `json:"unit,omitempty"`
	Nullable bool   `json:"nullable,omitempty"`
}

// StoredFields is the form of t's fields the lake keeps.
func (t *Table) StoredFields() []StoredField {
	out := make([]StoredField, len(t.Fields))
	for i, f := range t.Fields {
		out[i] = StoredField{Name: f.Name, Type: f.Type, Unit: f.Unit, Nullable: f.Nullable}
	}
	return out
}

// Evolve checks that t, as configured, can read objects written with the
// fields stored (the lake's record of the table), and reports whether they
// differ. Accepted without a migration: adding a nullable field (old objects
// read it as NULL), making a required field nullable, reordering fields.
// Refused, naming the field: changing a field's type or unit, removing a
// field that was required, adding a required field (old objects lack it),
// making a nullable field required.
func (t *Table) Evolve(stored []StoredField) (changed bool, err error) {
	now := map[string]Field{}
	for _, f := range t.Fields {
		now[f.Name] = f
	}
	seen := map[string]bool{}
	for _, s := range stored {
		seen[s.Name] = true
		f, ok := now[s.Name]
		switch {
		case !ok && !s.Nullable:
			return false, fmt.Errorf("table %s: %w: field %s was removed, but it is required in the objects already written", t.Name, ErrIncompatibleChange, s.Name)
		case !ok:
			changed = true // a nullable field dropped: old objects keep it, readers ignore it
		case f.Type != s.Type:
			return false, fmt.Errorf("table %s: %w: field %s changed type from %s to %s", t.Name, ErrIncompatibleChange, s.Name, s.Type, f.Type)
		case f.Unit != s.Unit:
			return false, fmt.Errorf("table %s: %w: field %s changed unit from %q to %q", t.Name, ErrIncompatibleChange, s.Name, s.Unit, f.Unit)
		case s.Nullable && !f.Nullable:
			return false, fmt.Errorf("table %s: %w: field %s became required, but objects already written hold NULLs in it", t.Name, ErrIncompatibleChange, s.Name)
		case !s.Nullable && f.Nullable:
			changed = true
		}
	}
	for _, f := range t.Fields {
		if seen[f.Name] {
			continue
		}
		if !f.Nullable {
			return false, fmt.Errorf("table %s: %w: field %s was added as required, but objects already written lack it (add it as nullable)", t.Name, ErrIncompatibleChange, f.Name)
		}
		changed = true
	}
	return changed, nil
}
