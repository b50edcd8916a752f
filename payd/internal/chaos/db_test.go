package chaos

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/idemhq/idem/sqlitestore"
)

// The columns of payd's tables that chaos reads, before holds and after.
// They are written here, not taken from payd's migrations, so that the
// test says what the harness relies on.
const (
	schemaBeforeHolds = `
CREATE TABLE payments (id text PRIMARY KEY, account_id text NOT NULL, amount bigint NOT NULL, currency text NOT NULL,
	reference text NOT NULL, state text NOT NULL, provider_key text NOT NULL, provider_charge_id text, amount_refunded bigint NOT NULL DEFAULT 0);
CREATE TABLE refunds (id text PRIMARY KEY, payment_id text NOT NULL, account_id text NOT NULL, amount bigint NOT NULL, currency text NOT NULL,
	state text NOT NULL, provider_key text NOT NULL, provider_refund_id text);
CREATE TABLE ledger_transactions (id text PRIMARY KEY, kind text NOT NULL, ref text NOT NULL, UNIQUE (kind, ref));
CREATE TABLE ledger_entries (txn_id text NOT NULL, line integer NOT NULL, account text NOT NULL, currency text NOT NULL, amount bigint NOT NULL);
CREATE TABLE ledger_balances (account text NOT NULL, currency text NOT NULL, balance bigint NOT NULL, slot integer NOT NULL DEFAULT 0);
CREATE TABLE reconciliation_mismatches (id text PRIMARY KEY, kind text NOT NULL, payment_id text NOT NULL DEFAULT '',
	provider_charge_id text NOT NULL DEFAULT '', detail text NOT NULL, resolved_at bigint);`
	holdsSchema = `
ALTER TABLE payments ADD COLUMN hold text;
ALTER TABLE refunds ADD COLUMN hold text;
DROP TABLE reconciliation_mismatches;
CREATE TABLE reconciliation_mismatches (id text PRIMARY KEY, kind text NOT NULL, provider_key text NOT NULL, account_id text NOT NULL DEFAULT '',
	payment_id text NOT NULL DEFAULT '', refund_id text NOT NULL DEFAULT '', provider_id text NOT NULL DEFAULT '', detail text NOT NULL,
	subject_at bigint NOT NULL, found_at bigint NOT NULL, resolved_at bigint, UNIQUE (kind, provider_key));`
	someRows = `
INSERT INTO payments (id, account_id, amount, currency, reference, state, provider_key, provider_charge_id, amount_refunded) VALUES ('p1', 'acct_1', 1000, 'usd', 'ref_1', 'succeeded', 'pk_1', 'ch_1', 250);
INSERT INTO payments (id, account_id, amount, currency, reference, state, provider_key, provider_charge_id, amount_refunded) VALUES ('p2', 'acct_1', 3000, 'usd', 'ref_2', 'unknown', 'pk_2', NULL, 0);
INSERT INTO payments (id, account_id, amount, currency, reference, state, provider_key, provider_charge_id, amount_refunded) VALUES ('p3', 'acct_1', 500, 'usd', 'ref_3', 'processing', 'pk_3', NULL, 0);
INSERT INTO refunds (id, payment_id, account_id, amount, currency, state, provider_key, provider_refund_id) VALUES ('r1', 'p1', 'acct_1', 250, 'usd', 'succeeded', 'rk_1', 're_1');
INSERT INTO ledger_transactions VALUES ('t1', 'charge', 'p1'), ('t2', 'refund_reserve', 'r1'), ('t3', 'refund', 'r1');
INSERT INTO ledger_entries VALUES ('t1', 0, 'provider_clearing', 'usd', 1000), ('t1', 1, 'merchant:acct_1', 'usd', -1000),
	('t2', 0, 'merchant:acct_1', 'usd', 250), ('t2', 1, 'refunds_payable:acct_1', 'usd', -250),
	('t3', 0, 'refunds_payable:acct_1', 'usd', 250), ('t3', 1, 'provider_clearing', 'usd', -250);
INSERT INTO ledger_balances VALUES ('merchant:acct_1', 'usd', -1000, 3), ('merchant:acct_1', 'usd', 250, 9),
	('provider_clearing', 'usd', 750, 0), ('refunds_payable:acct_1', 'usd', 0, 0);`
)

func openTestDB(t *testing.T, schema ...string) *paydDB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "payd.db")
	lite, err := sqlitestore.OpenDB(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range schema {
		if _, err := lite.ExecContext(t.Context(), s); err != nil {
			lite.Close()
			t.Fatalf("%v:\n%s", err, s)
		}
	}
	lite.Close()
	d, err := openPaydDB(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.close)
	if err := d.inspect(t.Context()); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestStoreBeforeHolds: a payd schema without holds is read as one in
// which nothing is held, its drain waits for every payment, and the holds
// check says why it cannot judge.
func TestStoreBeforeHolds(t *testing.T) {
	d := openTestDB(t, schemaBeforeHolds, someRows)
	if !d.refunds || !d.ledger || d.holds || d.mismatches {
		t.Fatalf("refunds %t, ledger %t, holds %t, mismatches %t; want true, true, false, false", d.refunds, d.ledger, d.holds, d.mismatches)
	}
	if n, all, err := d.notFinal(t.Context()); err != nil || n != 2 || all != 3 {
		t.Fatalf("notFinal = %d of %d, %v; want 2 of 3", n, all, err)
	}
	st, err := d.store(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.holds || !strings.Contains(st.noHolds, "hold column") {
		t.Errorf("store holds %t (%q); want false, saying there is no hold column", st.holds, st.noHolds)
	}
	ps, err := d.payments(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Hold != "" {
			t.Errorf("payment %s held (%q) by a schema without holds", p.ID, p.Hold)
		}
	}
}

// TestStoreWithHolds: payd's tables as the oracles read them, holds
// included; the drain leaves held payments out, and a merchant's balance is
// the negated sum of its slots.
func TestStoreWithHolds(t *testing.T) {
	d := openTestDB(t, schemaBeforeHolds, holdsSchema, someRows, `
UPDATE payments SET hold = 'amount_mismatch' WHERE id = 'p2';
INSERT INTO refunds (id, payment_id, account_id, amount, currency, state, provider_key, hold) VALUES ('r2', 'p1', 'acct_1', 100, 'usd', 'processing', 'rk_2', 'refund_amount_mismatch');
INSERT INTO reconciliation_mismatches VALUES ('m1', 'amount_mismatch', 'pk_2', 'acct_1', 'p2', '', 'ch_2', 'charged 2999', 1, 2, NULL);
INSERT INTO reconciliation_mismatches VALUES ('m0', 'amount_mismatch', 'pk_9', 'acct_1', 'p9', '', 'ch_9', 'corrected', 1, 2, 3);`)
	if !d.holds || !d.mismatches {
		t.Fatalf("holds %t, mismatches %t; want both", d.holds, d.mismatches)
	}
	if n, all, err := d.notFinal(t.Context()); err != nil || n != 1 || all != 3 {
		t.Fatalf("notFinal = %d of %d, %v; want 1 (p3; p2 and r2 are held) of 3", n, all, err)
	}
	held, err := d.held(t.Context())
	if err != nil || !reflect.DeepEqual(held, map[string]bool{"p2": true, "r2": true}) {
		t.Fatalf("held = %v, %v; want p2 and r2", held, err)
	}
	ps, err := d.payments(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := paymentRow{ID: "p2", AccountID: "acct_1", Reference: "ref_2", State: "unknown", Currency: "usd", ProviderKey: "pk_2", Amount: 3000, Hold: "amount_mismatch"}
	if i := slicesIndex(ps, "p2"); i < 0 || ps[i] != want {
		t.Errorf("payments = %+v; want among them %+v", ps, want)
	}
	st, err := d.store(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !st.holds || !st.hasRefunds || len(st.refunds) != 2 {
		t.Fatalf("store: holds %t, refunds %t with %d rows; want true, true, 2", st.holds, st.hasRefunds, len(st.refunds))
	}
	wantMismatch := []mismatchRow{{ID: "m1", Kind: "amount_mismatch", ProviderKey: "pk_2", AccountID: "acct_1", PaymentID: "p2", ProviderID: "ch_2", Detail: "charged 2999"}}
	if !reflect.DeepEqual(st.mismatches, wantMismatch) {
		t.Errorf("open mismatches = %+v; want %+v", st.mismatches, wantMismatch)
	}
	l := st.ledger
	if got := l.available[balanceKey{"acct_1", "usd"}]; got != 750 || len(l.available) != 1 {
		t.Errorf("available = %v; want acct_1 usd 750 alone", l.available)
	}
	if l.count != 3 || l.txns[txnKey{"refund", "r1"}] != 1 || len(l.unbalanced) != 0 {
		t.Errorf("ledger: %d transactions, refund r1 %d, unbalanced %v; want 3, 1, none", l.count, l.txns[txnKey{"refund", "r1"}], l.unbalanced)
	}
}

func slicesIndex(ps []paymentRow, id string) int {
	for i, p := range ps {
		if p.ID == id {
			return i
		}
	}
	return -1
}
