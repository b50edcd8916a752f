package idemhttp

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzParseKey checks that the Idempotency-Key parser never admits a key
// outside the published policy, and that every key in the policy, sent as
// a Structured Field string, parses back to itself.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{`"abc"`, `abc`, `"a\"b\\c"`, `""`, `"abc`, `"a";p=1`, " \"k\"\t", "caf\u00e9", strings.Repeat("k", 256)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		key, err := parseKey(v)
		if err == nil {
			if len(key) < 1 || len(key) > MaxKeyLen {
				t.Fatalf("parseKey(%q) = %q: %d characters, want 1–%d", v, key, len(key), MaxKeyLen)
			}
			for i := 0; i < len(key); i++ {
				if key[i] < 0x20 || key[i] > 0x7e {
					t.Fatalf("parseKey(%q) = %q: byte %#x is not printable ASCII", v, key, key[i])
				}
			}
		}
		// Every printable key survives quoting.
		printable := len(v) >= 1 && len(v) <= MaxKeyLen && strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r > 0x7e }) < 0
		if printable {
			got, err := parseKey(quote(v))
			if err != nil || got != v {
				t.Fatalf("parseKey(quote(%q)) = %q, %v; want the key back", v, got, err)
			}
		}
	})
}

// quote encodes key as a Structured Field string.
func quote(key string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(key); i++ {
		if key[i] == '"' || key[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(key[i])
	}
	b.WriteByte('"')
	return b.String()
}

// FuzzDecodeRecord checks that any stored bytes decode without panicking,
// that what decodes is safe to write out, and that it survives a
// re-encode.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(kindResponse, 201, 1, appendField(nil, "Content-Type", "application/json"), []byte(`{"id":"ch_1"}`)))
	f.Add(encodeRecord(kindTooLarge, 200, 0, nil, nil))
	f.Add([]byte{recordVersion, kindResponse, 0xc8, 0x01, 0x00})
	f.Add([]byte{recordVersion, kindResponse, 0xc8, 0x01, 0xff, 0xff, 0x03})
	f.Add([]byte("\x01r\xc9\x01\x01\x03Bad\x02a\nbody"))
	f.Add([]byte{0x02, 'r'})
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeRecord(b)
		if err != nil {
			if !errors.Is(err, errBadRecord) {
				t.Fatalf("decodeRecord(%q) = %v, want errBadRecord", b, err)
			}
			return
		}
		if rec.status < 200 || rec.status > 999 {
			t.Fatalf("decoded status %d", rec.status)
		}
		var fields []byte
		rest := rec.fields
		for range rec.nf {
			var name, value []byte
			var ok bool
			name, rest, ok = cutField(rest)
			if !ok || !validName(name) {
				t.Fatalf("decoded an invalid field name %q", name)
			}
			value, rest, ok = cutField(rest)
			if !ok || bytes.ContainsAny(value, "\r\n\x00") {
				t.Fatalf("decoded an unsafe field value %q", value)
			}
			fields = appendField(fields, string(name), string(value))
		}
		if len(rest) != 0 {
			t.Fatalf("%d bytes of fields left over", len(rest))
		}
		again, err := decodeRecord(encodeRecord(rec.kind, rec.status, rec.nf, fields, rec.body))
		if err != nil || again.kind != rec.kind || again.status != rec.status || again.nf != rec.nf ||
			!bytes.Equal(again.fields, fields) || !bytes.Equal(again.body, rec.body) {
			t.Fatalf("re-encoding %+v gave %+v, %v", rec, again, err)
		}
	})
}
