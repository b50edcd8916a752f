package idemhttp

import "errors"

// MaxKeyLen is the longest Idempotency-Key accepted, in characters (Stripe's
// limit). Keys are 1–MaxKeyLen printable ASCII characters.
const MaxKeyLen = 255

var (
	errKeyMalformed = errors.New("Idempotency-Key is not a quoted string or a token of printable ASCII")
	errKeyEmpty     = errors.New("Idempotency-Key is empty")
	errKeyTooLong   = errors.New("Idempotency-Key is longer than 255 characters")
)

// parseKey returns the key in an Idempotency-Key field value. The value is
// either a Structured Field string (RFC 8941 §3.3.3), as the IETF httpapi
// draft specifies:
//
//	Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324"
//
// or, for Stripe-style clients, a bare run of visible ASCII (0x21–0x7E) that
// does not start with a double quote:
//
//	Idempotency-Key: 8e03978e-40d5-43e8-bc93-6894a57f9324
//
// Both name the same key when their contents are equal. Spaces and tabs
// around the value are ignored. Structured Field parameters (";a=1") are
// refused: the draft defines none. The key, once unquoted, must be 1–255
// characters of printable ASCII (0x20–0x7E); anything else is refused
// without echoing the value, which may be sensitive.
func parseKey(v string) (string, error) {
	v = trimOWS(v)
	if v == "" {
		return "", errKeyEmpty
	}
	if v[0] != '"' {
		if len(v) > MaxKeyLen {
			return "", errKeyTooLong
		}
		for i := 0; i < len(v); i++ {
			if c := v[i]; c < 0x21 || c > 0x7e {
				return "", errKeyMalformed
			}
		}
		return v, nil
	}
	// An sf-string: DQUOTE *( unescaped / "\" ( DQUOTE / "\" ) ) DQUOTE,
	// where unescaped is %x20-21 / %x23-5B / %x5D-7E.
	escapes := 0
	end := -1
	for i := 1; i < len(v); i++ {
		c := v[i]
		if c == '\\' {
			i++
			if i == len(v) || v[i] != '"' && v[i] != '\\' {
				return "", errKeyMalformed
			}
			escapes++
			continue
		}
		if c == '"' {
			end = i
			break
		}
		if c < 0x20 || c > 0x7e {
			return "", errKeyMalformed
		}
	}
	if end < 0 || end != len(v)-1 {
		// Unterminated, or something (such as parameters) after the string.
		return "", errKeyMalformed
	}
	n := end - 1 - escapes
	if n == 0 {
		return "", errKeyEmpty
	}
	if n > MaxKeyLen {
		return "", errKeyTooLong
	}
	s := v[1:end]
	if escapes == 0 {
		return s, nil
	}
	b := make([]byte, 0, n)
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
		}
		b = append(b, s[i])
	}
	return string(b), nil
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
