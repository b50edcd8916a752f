package idemhttp_test

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// TestCrossPrincipal is row S4: 10,000 pairs of principals send the same
// key (and, a tenth of the time, keys and principals that shift bytes
// across the boundary between the two, "ab"+"c" against "a"+"bc"). Not
// one byte of a response made for one principal reaches another: every
// second request runs the handler itself.
func TestCrossPrincipal(t *testing.T) {
	const pairs = 10_000
	f := newFixture(t, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range pairs {
		a, b := "u"+randomText(rng, 0, 24), "u"+randomText(rng, 0, 24)
		keyA := strconv.Itoa(i) + "." + randomText(rng, 0, 48) // a fresh key per pair
		keyB := keyA
		if i%10 == 0 {
			// Shift a byte of the principal into the key.
			a = b + keyA[:1]
			keyB = keyA[:1] + keyA // the same bytes, split elsewhere
		}
		if a == b && keyA == keyB {
			continue
		}
		body := `{"amount":100}`
		wa := f.do(req{user: a, keys: []string{quote(keyA)}, body: body})
		wb := f.do(req{user: b, keys: []string{quote(keyB)}, body: body})
		if wa.Code != 201 || wb.Code != 201 {
			t.Fatalf("pair %d: statuses %d and %d, want 201 twice", i, wa.Code, wb.Code)
		}
		if wb.Header().Get("Idempotent-Replayed") != "" {
			t.Fatalf("pair %d: principal %q got a replay of %q's response", i, b, a)
		}
		var got struct{ User string }
		if err := json.Unmarshal(wb.Body.Bytes(), &got); err != nil || got.User != b {
			t.Fatalf("pair %d: principal %q got a response made for %q (%v)", i, b, got.User, err)
		}
		if got := wb.Header().Get("Set-Cookie"); got != "session=secret-"+b { // only live responses have one
			t.Fatalf("pair %d: %q got cookie %q", i, b, got)
		}
	}
	if runs, claims := f.app.runs.Load(), f.store.claims.Load(); runs != claims {
		t.Errorf("handler ran %d times for %d claims: some request was replayed", runs, claims)
	}
}

// randomText returns lo–hi printable ASCII characters, biased towards
// the bytes an encoding might use as separators.
func randomText(rng *rand.Rand, lo, hi int) string {
	const tricky = ":|/\\\"\x20,;=0123456789"
	n := lo + rng.IntN(hi-lo+1)
	b := make([]byte, n)
	for i := range b {
		if rng.IntN(3) == 0 {
			b[i] = tricky[rng.IntN(len(tricky))]
		} else {
			b[i] = byte(0x20 + rng.IntN(0x7f-0x20))
		}
	}
	return string(b)
}

// quote encodes key as a Structured Field string.
func quote(key string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(key) + `"`
}
