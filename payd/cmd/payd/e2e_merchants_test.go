package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/idemhq/idem/payd/internal/database/dbtest"
	"github.com/idemhq/idem/payd/internal/simulator"
)

// merchant is an account made with payd accounts create, and its keys.
type merchant struct {
	id   string
	keys []string
}

var (
	accountLine = regexp.MustCompile(`account (acct_\S+)`)
	keyLine     = regexp.MustCompile(`API key key_\S+: (sk_\S+)`)
)

// newMerchant makes an account named name with payd accounts create, and a
// second key with payd keys create, as an operator would.
func newMerchant(t *testing.T, databaseURL, name string) merchant {
	t.Helper()
	out, err := payd(t, "accounts", "create", "--name", name, "--database-url", smallPool(databaseURL))
	a, k := accountLine.FindStringSubmatch(out), keyLine.FindStringSubmatch(out)
	if err != nil || a == nil || k == nil {
		t.Fatalf("payd accounts create: %v\n%s", err, out)
	}
	m := merchant{id: a[1], keys: []string{k[1]}}
	out, err = payd(t, "keys", "create", "--account", m.id, "--database-url", smallPool(databaseURL))
	if k = keyLine.FindStringSubmatch(out); err != nil || k == nil {
		t.Fatalf("payd keys create: %v\n%s", err, out)
	}
	m.keys = append(m.keys, k[1])
	// A key is shown once: a listing has its first characters alone.
	out, err = payd(t, "keys", "list", "--account", m.id, "--database-url", smallPool(databaseURL))
	for _, key := range m.keys {
		if err != nil || strings.Contains(out, key) || !strings.Contains(out, key[:7]) {
			t.Fatalf("payd keys list: %v\n%s\nwant each key's first 7 characters and no key", err, out)
		}
	}
	return m
}

// call sends one API request as apiKey and returns its status and body.
func call(t *testing.T, method, url, apiKey, idemKey, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
		req.Header.Set("Prefer", "wait=10")
	}
	resp, err := apiClient(t, 0).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestTwoMerchants: two merchants in one payd, each with two keys made by
// the operator, see only their own charges, refunds, balances and
// mismatches, with either key; a worker replica started without a key
// leaves every key working.
func TestTwoMerchants(t *testing.T) {
	eachDatabase(t, func(t *testing.T, db string) {
		_, simURL := newSim(t, simulator.Faults{})
		p := startPayd(t, paydArgs(db, simURL)...)
		alpha, beta := newMerchant(t, db, "Alpha"), newMerchant(t, db, "Beta")

		charged := map[string]string{} // merchant id → its charge
		for i, m := range []merchant{alpha, beta} {
			body := fmt.Sprintf(`{"amount":%d,"currency":"usd","reference":"order_1"}`, 1000*(i+1))
			status, out := call(t, http.MethodPost, p.url+"/v1/charges", m.keys[0], "order-1", body)
			var c struct{ ID, Status string }
			json.Unmarshal([]byte(out), &c)
			if status != http.StatusOK || c.Status != "succeeded" {
				t.Fatalf("%s's charge = %d %s", m.id, status, out)
			}
			charged[m.id] = c.ID
			if status, out := call(t, http.MethodPost, p.url+"/v1/charges/"+c.ID+"/refunds", m.keys[1], "refund-1", `{"amount":300}`); status != http.StatusCreated {
				t.Fatalf("%s's refund with its second key = %d %s", m.id, status, out)
			}
		}
		// A mismatch about alpha's payment, and one about no account's.
		sql := dbtest.Open(t, db).DB
		for _, row := range []string{
			fmt.Sprintf(`('mm_alpha', 'amount_mismatch', 'payd_alpha', '%s', '%s', '', '', 'seeded', 0, 0)`, alpha.id, charged[alpha.id]),
			`('mm_nobody', 'provider_charge_without_payment', 'elsewhere', '', '', '', 'ch_x', 'seeded', 0, 0)`,
		} {
			if _, err := sql.Exec(t.Context(), `INSERT INTO reconciliation_mismatches (id, kind, provider_key, account_id, payment_id, refund_id, provider_id, detail, subject_at, found_at) VALUES `+row); err != nil {
				t.Fatal(err)
			}
		}

		for _, m := range []merchant{alpha, beta} {
			other := alpha
			if m.id == alpha.id {
				other = beta
			}
			for _, key := range m.keys {
				mine, theirs := charged[m.id], charged[other.id]
				expect(t, p.url+"/v1/charges/"+mine, key, http.StatusOK, `"id":"`+mine+`"`)
				expect(t, p.url+"/v1/charges/"+theirs, key, http.StatusNotFound, "")
				expect(t, p.url+"/v1/charges?reference=order_1", key, http.StatusOK, mine)
				refuse(t, p.url+"/v1/charges?reference=order_1", key, theirs)
				refuse(t, p.url+"/v1/reconciliation", key, "mm_nobody")
				if status, _ := call(t, http.MethodPost, p.url+"/v1/charges/"+theirs+"/refunds", key, "steal", `{"amount":1}`); status != http.StatusNotFound {
					t.Fatalf("%s refunding %s's charge = %d, want 404", m.id, other.id, status)
				}
			}
		}
		expect(t, p.url+"/v1/balance", alpha.keys[0], http.StatusOK, `"available":700`)
		expect(t, p.url+"/v1/balance", beta.keys[1], http.StatusOK, `"available":1700`)
		expect(t, p.url+"/v1/reconciliation", alpha.keys[1], http.StatusOK, "mm_alpha")
		refuse(t, p.url+"/v1/reconciliation", beta.keys[0], "mm_alpha")
		expect(t, p.url+"/v1/balance", testKey, http.StatusOK, `"balances":[]`)
		// The operator sees every account's mismatches, and whose each is.
		if out, err := payd(t, "mismatches", "--database-url", smallPool(db)); err != nil ||
			!regexp.MustCompile(`mm_alpha\s+amount_mismatch\s+`+alpha.id).MatchString(out) || !strings.Contains(out, "mm_nobody") {
			t.Fatalf("payd mismatches: %v\n%s", err, out)
		}

		// A worker replica, started as an operator might, without a key.
		startPaydAs(t, append(paydArgs(db, simURL), "--role", "worker")...)
		time.Sleep(6 * time.Second) // past the API's cache of keys
		for _, key := range append(append([]string{testKey}, alpha.keys...), beta.keys...) {
			expect(t, p.url+"/v1/balance", key, http.StatusOK, "")
		}
	})
}

// expect fails t unless GET url as key answers status with want in its
// body.
func expect(t *testing.T, url, key string, status int, want string) {
	t.Helper()
	if got, body := call(t, http.MethodGet, url, key, "", ""); got != status || !strings.Contains(body, want) {
		t.Fatalf("GET %s = %d %s, want %d with %s", url, got, body, status, want)
	}
}

// refuse fails t if GET url as key shows secret.
func refuse(t *testing.T, url, key, secret string) {
	t.Helper()
	if _, body := call(t, http.MethodGet, url, key, "", ""); strings.Contains(body, secret) {
		t.Fatalf("GET %s shows %s to a merchant who does not own it: %s", url, secret, body)
	}
}

// TestDevKeySurvivesRestarts: embedded payd makes its dev key once, keeps
// it beside the database readable by its owner only, and prints the same
// key at each start; a start with another key adds that one and takes
// none away.
func TestDevKeySurvivesRestarts(t *testing.T) {
	_, simURL := newSim(t, simulator.Faults{})
	db := filepath.Join(t.TempDir(), "payd.db")
	devKey := regexp.MustCompile(`dev API key: (sk_\S+)`)
	first := devKey.FindStringSubmatch(serveOutput(t, nil, paydArgs(db, simURL)...))
	serveOutput(t, nil, paydArgs(db, simURL, "--api-key", "sk_another_0123456789")...)
	second := devKey.FindStringSubmatch(serveOutput(t, nil, paydArgs(db, simURL)...))
	if first == nil || second == nil || first[1] != second[1] {
		t.Fatalf("dev keys printed at two starts: %q and %q, want one key", first, second)
	}
	info, err := os.Stat(db + ".dev-key")
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("the dev key file: %v, mode %v; want 0600", err, info.Mode())
	}
	store := openStore(t, db)
	for _, key := range []string{first[1], "sk_another_0123456789"} {
		if id, err := store.AccountByKey(t.Context(), key); err != nil || id != devAccountID {
			t.Errorf("AccountByKey(%s…) = (%q, %v), want %s", key[:6], id, err, devAccountID)
		}
	}
}
