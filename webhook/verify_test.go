package webhook_test

import (
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/idemhq/idem/webhook"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	secret    = []byte("whsec_current")
	oldSecret = []byte("whsec_previous")
	body      = []byte(`{"id":"evt_1","type":"charge.succeeded","data":{"amount":1999}}`)
)

// TestVerify covers rows S16–S18 and S20, on a fake clock: "now" is the
// bubble's start.
func TestVerify(t *testing.T) {
	tests := []struct {
		name     string
		verifier webhook.Verifier
		header   func(now time.Time) string
		body     []byte // default body
		want     error
	}{
		{name: "valid", header: func(now time.Time) string { return webhook.Sign(secret, now, body) }},
		{name: "S16 no header", header: func(time.Time) string { return "" }, want: webhook.ErrNoSignature},
		{name: "S16 blank header", header: func(time.Time) string { return "  " }, want: webhook.ErrNoSignature},
		{name: "no timestamp", header: func(now time.Time) string { return strings.Split(webhook.Sign(secret, now, body), ",")[1] }, want: webhook.ErrMalformedHeader},
		{name: "no v1", header: func(now time.Time) string { return strings.Split(webhook.Sign(secret, now, body), ",")[0] }, want: webhook.ErrMalformedHeader},
		{name: "two timestamps", header: func(now time.Time) string { return "t=1," + webhook.Sign(secret, now, body) }, want: webhook.ErrMalformedHeader},
		{name: "signed timestamp", header: func(time.Time) string { return "t=-1,v1=" + strings.Repeat("0", 64) }, want: webhook.ErrMalformedHeader},
		{name: "short v1", header: func(time.Time) string { return "t=1,v1=abcd" }, want: webhook.ErrMalformedHeader},
		{name: "non-hex v1", header: func(time.Time) string { return "t=1,v1=" + strings.Repeat("g", 64) }, want: webhook.ErrMalformedHeader},
		{name: "element without =", header: func(now time.Time) string { return webhook.Sign(secret, now, body) + ",junk" }, want: webhook.ErrMalformedHeader},
		{name: "too many v1", header: func(now time.Time) string {
			return webhook.Sign(secret, now, body) + strings.Repeat(",v1="+strings.Repeat("0", 64), webhook.MaxSignatures)
		}, want: webhook.ErrMalformedHeader},
		{name: "over-long header", header: func(now time.Time) string {
			return webhook.Sign(secret, now, body) + ",v0=" + strings.Repeat("0", webhook.MaxHeaderLen)
		}, want: webhook.ErrMalformedHeader},
		{name: "other schemes are ignored", header: func(now time.Time) string { return " v0=abc , " + webhook.Sign(secret, now, body) + " " }},
		{name: "S17 wrong secret", header: func(now time.Time) string { return webhook.Sign([]byte("guess"), now, body) }, want: webhook.ErrBadSignature},
		{name: "S17 tampered body", header: func(now time.Time) string { return webhook.Sign(secret, now, body) },
			body: []byte(strings.Replace(string(body), "1999", "1990", 1)), want: webhook.ErrBadSignature},
		{name: "S17 re-serialised JSON", header: func(now time.Time) string { return webhook.Sign(secret, now, body) },
			body: []byte(`{"id": "evt_1", "type": "charge.succeeded", "data": {"amount": 1999}}`), want: webhook.ErrBadSignature},
		{name: "S17 timestamp changed", header: func(now time.Time) string {
			return strings.Replace(webhook.Sign(secret, now, body), "t=", "t=1", 1)
		}, want: webhook.ErrBadSignature},
		{name: "S18 at the tolerance, past", header: func(now time.Time) string { return webhook.Sign(secret, now.Add(-webhook.DefaultTolerance), body) }},
		{name: "S18 at the tolerance, future", header: func(now time.Time) string { return webhook.Sign(secret, now.Add(webhook.DefaultTolerance), body) }},
		{name: "S18 too old", header: func(now time.Time) string {
			return webhook.Sign(secret, now.Add(-webhook.DefaultTolerance-time.Second), body)
		}, want: webhook.ErrTooOld},
		{name: "S18 too new", header: func(now time.Time) string {
			return webhook.Sign(secret, now.Add(webhook.DefaultTolerance+time.Second), body)
		}, want: webhook.ErrTooNew},
		{name: "S18 a forged stale header is a bad signature", header: func(now time.Time) string {
			return webhook.Sign([]byte("guess"), now.Add(-time.Hour), body)
		}, want: webhook.ErrBadSignature},
		{name: "custom tolerance", verifier: webhook.Verifier{Secrets: [][]byte{secret}, Tolerance: time.Minute},
			header: func(now time.Time) string { return webhook.Sign(secret, now.Add(-61*time.Second), body) }, want: webhook.ErrTooOld},
		{name: "S20 old secret during rotation", verifier: webhook.Verifier{Secrets: [][]byte{secret, oldSecret}},
			header: func(now time.Time) string { return webhook.Sign(oldSecret, now, body) }},
		{name: "S20 two v1 values, one current", header: func(now time.Time) string {
			return webhook.Sign(oldSecret, now, body) + ",v1=" + strings.Split(webhook.Sign(secret, now, body), "v1=")[1]
		}},
		{name: "S20 old secret after rotation", header: func(now time.Time) string { return webhook.Sign(oldSecret, now, body) }, want: webhook.ErrBadSignature},
		{name: "no secrets", verifier: webhook.Verifier{}, header: func(now time.Time) string { return webhook.Sign(nil, now, body) }, want: webhook.ErrNoSecrets},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				v := tt.verifier
				if v.Secrets == nil && tt.name != "no secrets" {
					v.Secrets = [][]byte{secret}
				}
				b := tt.body
				if b == nil {
					b = body
				}
				if err := v.Verify(tt.header(time.Now()), b); !errors.Is(err, tt.want) {
					t.Errorf("Verify = %v, want %v", err, tt.want)
				}
			})
		})
	}
}

// TestToleranceMovesWithTheClock signs once and lets time pass: the same
// header verifies until the tolerance has passed, then is too old.
func TestToleranceMovesWithTheClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v := webhook.Verifier{Secrets: [][]byte{secret}}
		h := webhook.Sign(secret, time.Now(), body)
		time.Sleep(webhook.DefaultTolerance)
		if err := v.Verify(h, body); err != nil {
			t.Fatalf("at the tolerance: %v, want nil", err)
		}
		time.Sleep(time.Second)
		if err := v.Verify(h, body); !errors.Is(err, webhook.ErrTooOld) {
			t.Fatalf("past the tolerance: %v, want ErrTooOld", err)
		}
	})
}

// TestSignFormat pins Sign's output to a MAC computed independently.
func TestSignFormat(t *testing.T) {
	got := webhook.Sign([]byte("secret"), time.Unix(1767225600, 0), []byte(`{"id":"evt_1"}`))
	const want = "t=1767225600,v1=95c23362308fd41e2c4a889a3a7075d4f4556b560c3811f248a2412dfe8416b9"
	if got != want {
		t.Fatalf("Sign = %q, want %q", got, want)
	}
}
