package idemhttp

import (
	"encoding/binary"
	"errors"
	"net/http"
)

// A record is what the store keeps for a completed request: the response's
// status, its replayable header fields, and its body. Layout (version 1):
//
//	0x01 kind uvarint(status) uvarint(fields) { uvarint(len) name uvarint(len) value } body
//
// kind is 'r' for a response kept in full, or 'x' for a response that was
// sent but was too large to keep (MaxResponseBytes): its status and header
// fields are kept, its body is empty.
const (
	recordVersion = 0x01
	kindResponse  = 'r'
	kindTooLarge  = 'x'

	// maxRecordFields bounds the header fields a record may hold, so a
	// corrupt record cannot make replay allocate without bound.
	maxRecordFields = 1024
)

var errBadRecord = errors.New("idemhttp: recorded response is malformed")

// record is a decoded record. fields holds the encoded header fields and
// body the body; both alias the decoded bytes.
type record struct {
	kind   byte
	status int
	nf     int    // number of header fields
	fields []byte // encoded header fields, validated
	body   []byte
}

// appendField appends one header field to an encoded record.
func appendField(b []byte, name, value string) []byte {
	b = binary.AppendUvarint(b, uint64(len(name)))
	b = append(b, name...)
	b = binary.AppendUvarint(b, uint64(len(value)))
	return append(b, value...)
}

// encodeRecord encodes a record. fields is the encoded header fields (see
// appendField), nf their number.
func encodeRecord(kind byte, status, nf int, fields, body []byte) []byte {
	b := make([]byte, 0, 2+2*binary.MaxVarintLen16+len(fields)+len(body))
	b = append(b, recordVersion, kind)
	b = binary.AppendUvarint(b, uint64(status))
	b = binary.AppendUvarint(b, uint64(nf))
	b = append(b, fields...)
	return append(b, body...)
}

// decodeRecord parses b and checks every field, so that writing the record
// out cannot fail half way. The result aliases b.
func decodeRecord(b []byte) (record, error) {
	if len(b) < 2 || b[0] != recordVersion {
		return record{}, errBadRecord
	}
	r := record{kind: b[1]}
	if r.kind != kindResponse && r.kind != kindTooLarge {
		return record{}, errBadRecord
	}
	rest := b[2:]
	status, n := binary.Uvarint(rest)
	if n <= 0 || status < 200 || status > 999 {
		return record{}, errBadRecord
	}
	r.status = int(status)
	rest = rest[n:]
	nf, n := binary.Uvarint(rest)
	if n <= 0 || nf > maxRecordFields {
		return record{}, errBadRecord
	}
	r.nf = int(nf)
	rest = rest[n:]
	start := rest
	for range r.nf {
		var name, value []byte
		var ok bool
		if name, rest, ok = cutField(rest); !ok || !validName(name) {
			return record{}, errBadRecord
		}
		if value, rest, ok = cutField(rest); !ok || !validValue(value) {
			return record{}, errBadRecord
		}
	}
	r.fields = start[:len(start)-len(rest)]
	r.body = rest
	if r.kind == kindTooLarge && len(r.body) > 0 {
		return record{}, errBadRecord
	}
	return r, nil
}

// cutField splits a length-prefixed field off b.
func cutField(b []byte) (field, rest []byte, ok bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return nil, nil, false
	}
	return b[w : w+int(n)], b[w+int(n):], true
}

// validName reports whether b is a header field name: a non-empty token
// (RFC 9110 §5.1).
func validName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !isTokenChar(c) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// validValue reports whether b may be sent as a header field value: no
// control characters other than horizontal tab (RFC 9110 §5.5).
func validValue(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// fieldsOf encodes the replayable fields of h: those named in keep
// (canonical names, in order) and not named by h's Connection field. Fields
// set under a non-canonical name (h["content-type"]) are not kept.
func fieldsOf(h http.Header, keep []string) (fields []byte, nf int) {
	connection := h["Connection"]
	for _, name := range keep {
		values := h[name]
		if len(values) == 0 || namedIn(connection, name) {
			continue
		}
		for _, v := range values {
			if !validValue([]byte(v)) {
				continue
			}
			fields = appendField(fields, name, v)
			nf++
		}
	}
	return fields, nf
}

// namedIn reports whether name is one of the comma-separated tokens of a
// Connection field.
func namedIn(connection []string, name string) bool {
	for _, v := range connection {
		for len(v) > 0 {
			var tok string
			tok, v = cutComma(v)
			if len(tok) == len(name) && http.CanonicalHeaderKey(tok) == name {
				return true
			}
		}
	}
	return false
}

func cutComma(s string) (tok, rest string) {
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			return trimOWS(s[:i]), s[i+1:]
		}
	}
	return trimOWS(s), ""
}
