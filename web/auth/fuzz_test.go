package auth

import (
	"reflect"
	"testing"
	"time"
)

// FuzzTokenParse: any string is refused or parsed without panic, and what
// parses was signed by the key: a token signed with another secret, or a
// changed one, never parses.
func FuzzTokenParse(f *testing.F) {
	s, _ := NewSigner([]byte("0123456789abcdef0123456789abcdef"))
	other, _ := NewSigner([]byte("fedcba9876543210fedcba9876543210"))
	now := time.Unix(1_800_000_000, 0)
	good, _ := s.Sign(Claims{KeyID: "sk_0123456789ab", Scopes: Scopes{"read:events"}, Filters: map[string]string{"country": "DE"}, Expires: now.Add(time.Hour).Unix()})
	f.Add(good)
	f.Add(good[:len(good)-2])
	f.Add("st_.")
	f.Add("st_e30.AAAA")
	f.Add("sk_0123456789ab_" + "x")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := s.Parse(tok, now)
		if err != nil {
			return
		}
		if _, err := other.Parse(tok, now); err == nil {
			t.Fatal("a token parsed under two secrets")
		}
		again, err := s.Sign(c)
		if err != nil {
			t.Fatalf("parsed claims do not sign again: %v", err)
		}
		c2, err := s.Parse(again, now)
		if err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip: %+v vs %+v (%v)", c, c2, err)
		}
		if !c.Scopes.Allows(ActionRead, "x") && len(c.Scopes) == 0 {
			t.Fatal("parsed a token without scopes")
		}
	})
}
