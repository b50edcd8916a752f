package idem

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// validateKey enforces the key policy: 1–MaxKeyLen bytes of UTF-8 without
// control characters. It never echoes the key, which may be sensitive.
func validateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: %d bytes, at most %d allowed", ErrInvalidKey, len(key), MaxKeyLen)
	}
	for i := 0; i < len(key); {
		c := key[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return fmt.Errorf("%w: control character at byte %d", ErrInvalidKey, i)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(key[i:])
		if r == utf8.RuneError && size == 1 {
			return fmt.Errorf("%w: invalid UTF-8 at byte %d", ErrInvalidKey, i)
		}
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: control character at byte %d", ErrInvalidKey, i)
		}
		i += size
	}
	return nil
}

// storeKey derives the key a store sees: the namespace, "/", and the
// SHA-256 of the caller's key in hex. Raw keys never reach a store, a log or
// a metric. 64 bits of the digest come back too: a cheap map key for
// coalescing.
func storeKey(namespace, key string) (slot uint64, skey string) {
	digest := sha256.Sum256([]byte(key))
	var b [maxNamespaceLen + 1 + 2*sha256.Size]byte
	n := copy(b[:], namespace)
	b[n] = '/'
	hex.Encode(b[n+1:], digest[:])
	return binary.LittleEndian.Uint64(digest[:8]), string(b[:n+1+2*sha256.Size])
}
