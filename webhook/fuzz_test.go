package webhook

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzParseHeader checks that the signature header parser never panics,
// returns only its sentinels, admits only headers with one decimal
// timestamp and 1–MaxSignatures signatures, and parses whatever Sign makes.
func FuzzParseHeader(f *testing.F) {
	for _, s := range []string{
		"t=1767225600,v1=95c23362308fd41e2c4a889a3a7075d4f4556b560c3811f248a2412dfe8416b9",
		"t=1,v1=" + strings.Repeat("0", 64),
		" v0=x , t=12 ,v1=zz", "t=,v1=", "t=1,t=2", "", ",", "=", "t=99999999999999999999,v1=00",
	} {
		f.Add(s, []byte(`{"id":"evt_1"}`))
	}
	f.Fuzz(func(t *testing.T, s string, body []byte) {
		h, err := parseHeader(s)
		if err != nil {
			if !errors.Is(err, ErrNoSignature) && !errors.Is(err, ErrMalformedHeader) {
				t.Fatalf("parseHeader(%q) = %v, want a sentinel", s, err)
			}
		} else {
			if h.n < 1 || h.n > MaxSignatures || h.ts == "" || h.t < 0 {
				t.Fatalf("parseHeader(%q) = %+v", s, h)
			}
			for i := 0; i < len(h.ts); i++ {
				if h.ts[i] < '0' || h.ts[i] > '9' {
					t.Fatalf("parseHeader(%q): timestamp %q is not decimal", s, h.ts)
				}
			}
		}
		// Whatever Sign makes verifies, and a flipped body does not.
		secret := []byte(s)
		v := Verifier{Secrets: [][]byte{secret}}
		signed := Sign(secret, time.Now(), body)
		if err := v.Verify(signed, body); err != nil {
			t.Fatalf("Verify(Sign(...)) = %v", err)
		}
		if err := v.Verify(signed, append(body, 'x')); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("Verify of an extended body = %v, want ErrBadSignature", err)
		}
	})
}
