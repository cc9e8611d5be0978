package auth

import (
	"errors"
	"fmt"
	"strings"
)

// Scope is one permission: "admin", "append:<table>" or "read:<table>";
// the table "*" means every table.
type Scope string

// Actions a scope grants.
const (
	ActionAppend = "append"
	ActionRead   = "read"
	ActionAdmin  = "admin"
)

// ErrBadScope is wrapped by ParseScope's errors.
var ErrBadScope = errors.New("invalid scope")

// ParseScope checks s.
func ParseScope(s string) (Scope, error) {
	if s == ActionAdmin {
		return Scope(s), nil
	}
	action, table, ok := strings.Cut(s, ":")
	if !ok || (action != ActionAppend && action != ActionRead) {
		return "", fmt.Errorf("%w %q: want admin, append:<table> or read:<table>", ErrBadScope, s)
	}
	if table != "*" && !validTable(table) {
		return "", fmt.Errorf("%w %q: %q is not a table name", ErrBadScope, s, table)
	}
	return Scope(s), nil
}

func validTable(t string) bool {
	if t == "" || len(t) > 128 || t[0] == '_' {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Allows reports whether s grants action on table (table "" for actions
// not tied to one, which only admin grants).
func (s Scope) Allows(action, table string) bool {
	if s == ActionAdmin {
		return true
	}
	a, t, _ := strings.Cut(string(s), ":")
	return a == action && table != "" && (t == "*" || t == table)
}

// Scopes is what a caller holds.
type Scopes []Scope

// Allows reports whether any scope grants action on table.
func (ss Scopes) Allows(action, table string) bool {
	for _, s := range ss {
		if s.Allows(action, table) {
			return true
		}
	}
	return false
}

// Covers reports whether ss grants everything want grants: a caller may
// only mint tokens narrower than itself.
func (ss Scopes) Covers(want Scopes) bool {
	for _, w := range want {
		if ss.Allows(ActionAdmin, "") {
			continue
		}
		a, t, _ := strings.Cut(string(w), ":")
		if w == ActionAdmin || (t == "*" && !ss.hasExact(a+":*")) || (t != "*" && !ss.Allows(a, t)) {
			return false
		}
	}
	return true
}

func (ss Scopes) hasExact(s string) bool {
	for _, x := range ss {
		if string(x) == s {
			return true
		}
	}
	return false
}
