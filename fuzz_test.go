package idem

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzValidateKey checks that the key policy admits exactly the keys it
// publishes, and that every admitted key derives a well-formed store key.
func FuzzValidateKey(f *testing.F) {
	for _, k := range []string{"order-1234", "", "a\nb", "ключ", "\xff", strings.Repeat("k", maxKeyLen+1)} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		err := validateKey(key)
		printable := utf8.ValidString(key) && strings.IndexFunc(key, unicode.IsControl) < 0
		want := len(key) >= 1 && len(key) <= maxKeyLen && printable
		if (err == nil) != want {
			t.Fatalf("validateKey(%q) = %v, want valid %t", key, err, want)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("validateKey(%q) = %v, want ErrInvalidKey", key, err)
			}
			return
		}
		_, sk := storeKey("ns", key)
		digest := sha256.Sum256([]byte(key))
		if want := "ns/" + hex.EncodeToString(digest[:]); sk != want {
			t.Fatalf("storeKey(%q) = %q, want %q", key, sk, want)
		}
	})
}

// FuzzDecodeOutcome checks that any stored bytes decode without panicking,
// and that whatever decodes survives a re-encode.
func FuzzDecodeOutcome(f *testing.F) {
	for _, b := range [][]byte{nil, {outcomeVersion, kindValue}, []byte("\x01v{}"), []byte("\x01e\x04codemsg"), []byte("\x01e\xff\xff\xff"), []byte("\x02v")} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := decodeOutcome(b)
		if err != nil {
			if !errors.Is(err, errBadOutcome) {
				t.Fatalf("decodeOutcome(%q) = %v, want errBadOutcome", b, err)
			}
			return
		}
		again, err := decodeOutcome(o.encode())
		if err != nil || !equalOutcomes(o, again) {
			t.Fatalf("re-encoding %+v gave %+v, %v", o, again, err)
		}
	})
}

// FuzzOutcomeRoundTrip checks that every value and every error (code up to
// maxCodeLen) is recorded and read back exactly.
func FuzzOutcomeRoundTrip(f *testing.F) {
	f.Add(false, []byte(`{"id":"ch_1"}`), "", "")
	f.Add(true, []byte(nil), "card_declined", "charge: card declined")
	f.Add(true, []byte(nil), "", "")
	f.Fuzz(func(t *testing.T, isErr bool, value []byte, code, message string) {
		if len(code) > maxCodeLen {
			code = code[:maxCodeLen]
		}
		o := outcome{isErr: isErr, value: value, code: code, message: message}
		if isErr {
			o.value = nil
		} else {
			o.code, o.message = "", ""
		}
		got, err := decodeOutcome(o.encode())
		if err != nil || !equalOutcomes(o, got) {
			t.Fatalf("round trip of %+v = %+v, %v", o, got, err)
		}
	})
}

func equalOutcomes(a, b outcome) bool {
	return a.isErr == b.isErr && bytes.Equal(a.value, b.value) && a.code == b.code && a.message == b.message
}
