package webhook_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/memstore"
	"github.com/idemhq/idem/webhook"
)

// A provider's event, delivered twice, is applied once; a forged copy is
// refused before it reaches the store.
func Example() {
	secret := []byte("whsec_example")
	engine, err := idem.New(memstore.New(), &idem.Config{Namespace: "webhooks", Retention: 72 * time.Hour})
	if err != nil {
		panic(err)
	}
	apply := func(ctx context.Context, e webhook.Event) error {
		fmt.Println("applying", e.Source, e.ID)
		return nil
	}
	h, err := webhook.NewHandler(engine, &webhook.Verifier{Secrets: [][]byte{secret}}, apply, &webhook.Config{Source: "provider"})
	if err != nil {
		panic(err)
	}

	body := `{"id":"evt_1","type":"charge.succeeded"}`
	deliver := func(signature string) {
		r := httptest.NewRequest(http.MethodPost, "/webhooks", strings.NewReader(body))
		r.Header.Set("Webhook-Signature", signature)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		out := fmt.Sprint(w.Code)
		if msg := strings.TrimSpace(w.Body.String()); msg != "" {
			out += " " + msg
		}
		if w.Header().Get("Idempotent-Replayed") == "true" {
			out += " (already applied)"
		}
		fmt.Println(out)
	}
	deliver(webhook.Sign([]byte("guess"), time.Now(), []byte(body)))
	deliver(webhook.Sign(secret, time.Now(), []byte(body)))
	deliver(webhook.Sign(secret, time.Now(), []byte(body)))
	// Output:
	// 400 webhook: no valid signature
	// applying provider evt_1
	// 204
	// 204 (already applied)
}

// Sign makes the header a provider, or a test standing in for one, sends.
func ExampleSign() {
	fmt.Println(webhook.Sign([]byte("secret"), time.Unix(1767225600, 0), []byte(`{"id":"evt_1"}`)))
	// Output:
	// t=1767225600,v1=95c23362308fd41e2c4a889a3a7075d4f4556b560c3811f248a2412dfe8416b9
}

// A Verifier on its own, for a handler that does its own de-duplication.
// During a rotation it holds the new secret and the old.
func ExampleVerifier() {
	v := &webhook.Verifier{Secrets: [][]byte{[]byte("whsec_new"), []byte("whsec_old")}}
	body := []byte(`{"id":"evt_1"}`)
	fmt.Println(v.Verify(webhook.Sign([]byte("whsec_old"), time.Now(), body), body))
	fmt.Println(v.Verify(webhook.Sign([]byte("whsec_new"), time.Now().Add(-time.Hour), body), body))
	fmt.Println(v.Verify("", body))
	// Output:
	// <nil>
	// webhook: timestamp too old
	// webhook: no signature
}
