package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// DefaultTolerance is how far a signature's timestamp may be from the
// receiver's clock, in either direction, when Verifier.Tolerance is zero.
const DefaultTolerance = 5 * time.Minute

// Limits on a signature header, which bound the work an attacker can cause.
const (
	// MaxHeaderLen is the longest signature header Verify parses.
	MaxHeaderLen = 4096
	// MaxSignatures is the most v1 signatures one header may carry.
	MaxSignatures = 8
)

var (
	// ErrNoSignature: the signature header is missing or empty.
	ErrNoSignature = errors.New("webhook: no signature")
	// ErrMalformedHeader: the signature header is not t=<unix>,v1=<hex>...
	ErrMalformedHeader = errors.New("webhook: malformed signature header")
	// ErrBadSignature: no v1 signature matches the body under any secret.
	ErrBadSignature = errors.New("webhook: no valid signature")
	// ErrTooOld: the signature is valid but its timestamp is further in
	// the past than the tolerance: a replay of an old delivery.
	ErrTooOld = errors.New("webhook: timestamp too old")
	// ErrTooNew: the signature is valid but its timestamp is further in
	// the future than the tolerance.
	ErrTooNew = errors.New("webhook: timestamp too far in the future")
	// ErrNoSecrets: the Verifier has no secrets, so nothing can verify.
	ErrNoSecrets = errors.New("webhook: Verifier has no secrets")
)

// Sign returns the signature header for body sent at t under secret:
//
//	t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<unix seconds>." + body)>
//
// The MAC covers the timestamp and the raw body bytes, so neither can be
// changed, and the body must be verified exactly as sent, never
// re-serialised. A sender rotating secrets sends one v1 per secret, joined
// by commas.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := signature(secret, ts, body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac)
}

func signature(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verifier checks signature headers made by Sign. Its zero Tolerance means
// DefaultTolerance. It is safe for concurrent use once set up.
type Verifier struct {
	// Secrets are the secrets a signature may be made with. During a
	// rotation, list the new and the old; a header verifies if any of its
	// v1 signatures matches under any of them. Remove the old secret once
	// the sender has stopped using it.
	Secrets [][]byte

	// Tolerance is how far the signed timestamp may be from this machine's
	// clock, in the past (ErrTooOld) or the future (ErrTooNew). It bounds
	// how long a captured delivery can be replayed; receivers need a clock
	// kept by NTP. Default DefaultTolerance.
	Tolerance time.Duration
}

// Verify checks that header signs body under one of v's secrets, at a time
// within the tolerance of now. It returns nil, or one of ErrNoSignature,
// ErrMalformedHeader, ErrBadSignature, ErrTooOld, ErrTooNew and
// ErrNoSecrets. The signature is checked before the timestamp, so a forged
// header always gets ErrBadSignature, and MACs are compared in constant
// time (hmac.Equal).
func (v *Verifier) Verify(header string, body []byte) error {
	if len(v.Secrets) == 0 {
		return ErrNoSecrets
	}
	h, err := parseHeader(header)
	if err != nil {
		return err
	}
	if !v.matches(h, body) {
		return ErrBadSignature
	}
	tol := v.Tolerance
	if tol <= 0 {
		tol = DefaultTolerance
	}
	signed := time.Unix(h.t, 0)
	now := time.Now()
	switch {
	case now.Sub(signed) > tol:
		return ErrTooOld
	case signed.Sub(now) > tol:
		return ErrTooNew
	}
	return nil
}

func (v *Verifier) matches(h header, body []byte) bool {
	ok := false
	for _, secret := range v.Secrets {
		want := signature(secret, h.ts, body)
		for _, got := range h.v1[:h.n] {
			// Every comparison runs, so timing says nothing about which
			// secret or signature matched.
			if hmac.Equal(got[:], want) {
				ok = true
			}
		}
	}
	return ok
}

// header is a parsed signature header.
type header struct {
	t  int64
	ts string // t as sent, which is what was signed
	v1 [MaxSignatures][sha256.Size]byte
	n  int
}

// parseHeader parses "t=<unix>,v1=<hex>[,v1=<hex>...]". Elements are
// key=value pairs separated by commas, with optional spaces around them.
// t must appear once, as decimal digits; at least one v1 must appear, each
// 64 hex digits; elements with other keys (other schemes, such as v0) are
// ignored, so a sender can add schemes without breaking receivers.
func parseHeader(s string) (header, error) {
	var h header
	if strings.TrimSpace(s) == "" {
		return h, ErrNoSignature
	}
	if len(s) > MaxHeaderLen {
		return h, ErrMalformedHeader
	}
	seenT := false
	for len(s) > 0 {
		var elem string
		elem, s, _ = strings.Cut(s, ",")
		key, value, ok := strings.Cut(strings.TrimSpace(elem), "=")
		if !ok {
			return h, ErrMalformedHeader
		}
		switch key {
		case "t":
			if seenT || value == "" || len(value) > 18 {
				return h, ErrMalformedHeader
			}
			for i := 0; i < len(value); i++ {
				if value[i] < '0' || value[i] > '9' {
					return h, ErrMalformedHeader
				}
			}
			t, err := strconv.ParseInt(value, 10, 64)
			if err != nil {
				return h, ErrMalformedHeader
			}
			h.t, h.ts, seenT = t, value, true
		case "v1":
			if h.n == MaxSignatures || len(value) != 2*sha256.Size {
				return h, ErrMalformedHeader
			}
			if _, err := hex.Decode(h.v1[h.n][:], []byte(value)); err != nil {
				return h, ErrMalformedHeader
			}
			h.n++
		case "":
			return h, ErrMalformedHeader
		}
	}
	if !seenT || h.n == 0 {
		return h, ErrMalformedHeader
	}
	return h, nil
}
