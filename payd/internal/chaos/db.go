package chaos

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idemhq/idem/sqlitestore"
)

// paymentRow is a payment as the oracles read it from payd's database.
type paymentRow struct {
	ID               string
	AccountID        string
	Reference        string
	State            string
	Currency         string
	ProviderKey      string
	ProviderChargeID string
	Amount           int64
	AmountRefunded   int64
	Hold             string // why payd holds it; "" when it does not
}

// refundRow is a refund as the oracles read it from payd's database.
type refundRow struct {
	ID               string
	PaymentID        string
	AccountID        string
	Currency         string
	State            string
	ProviderKey      string
	ProviderRefundID string
	Amount           int64
	Hold             string
}

// mismatchRow is an open reconciliation mismatch.
type mismatchRow struct {
	ID, Kind, ProviderKey, AccountID, PaymentID, RefundID, ProviderID, Detail string
}

// paydDB reads payd's database directly, never through the fault proxy.
// It only reads.
type paydDB struct {
	pg   *pgxpool.Pool
	lite *sql.DB

	refunds    bool // the schema has refunds
	ledger     bool // the schema has the ledger
	holds      bool // payments and refunds have a hold column
	mismatches bool // reconciliation_mismatches has the shape holds open (provider_key, refund_id)
}

func openPaydDB(ctx context.Context, databaseURL string) (*paydDB, error) {
	if isPostgres(databaseURL) {
		cfg, err := pgxpool.ParseConfig(databaseURL)
		if err != nil {
			return nil, err
		}
		cfg.MaxConns = 2
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return nil, err
		}
		return &paydDB{pg: pool}, nil
	}
	db, err := sqlitestore.OpenDB(ctx, databaseURL)
	if err != nil {
		return nil, err
	}
	return &paydDB{lite: db}, nil
}

// inspect finds what payd's schema has: refunds and the ledger came after
// payments, holds and the mismatches they open after them, and chaos
// checks what there is.
func (d *paydDB) inspect(ctx context.Context) error {
	table := `SELECT CAST(COUNT(*) AS text) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = '%s'`
	column := `SELECT CAST(COUNT(*) AS text) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = '%s' AND column_name = '%s'`
	if d.lite != nil {
		table = `SELECT CAST(COUNT(*) AS text) FROM sqlite_master WHERE type = 'table' AND name = '%s'`
		column = `SELECT CAST(COUNT(*) AS text) FROM pragma_table_info('%s') WHERE name = '%s'`
	}
	has := func(q string, args ...any) (bool, error) {
		rows, err := d.query(ctx, fmt.Sprintf(q, args...))
		return err == nil && len(rows) == 1 && rows[0][0] != "0", err
	}
	var err error
	if d.refunds, err = has(table, "refunds"); err != nil {
		return err
	}
	if d.ledger, err = has(table, "ledger_transactions"); err != nil {
		return err
	}
	payments, err := has(column, "payments", "hold")
	if err != nil {
		return err
	}
	refunds, err := has(column, "refunds", "hold")
	if err != nil {
		return err
	}
	d.holds = payments && refunds
	key, err := has(column, "reconciliation_mismatches", "provider_key")
	if err != nil {
		return err
	}
	refundID, err := has(column, "reconciliation_mismatches", "refund_id")
	d.mismatches = key && refundID
	return err
}

// query runs q, whose columns are all text, and returns its rows.
func (d *paydDB) query(ctx context.Context, q string) ([][]string, error) {
	var out [][]string
	if d.pg != nil {
		rows, err := d.pg.Query(ctx, q)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				return nil, err
			}
			row := make([]string, len(vals))
			for i, v := range vals {
				row[i] = fmt.Sprint(v)
			}
			out = append(out, row)
		}
		return out, rows.Err()
	}
	rows, err := d.lite.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		row := make([]string, len(cols))
		ptrs := make([]any, len(cols))
		for i := range row {
			ptrs[i] = &row[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// holdColumn is the text of a table's hold column, "" where the schema
// has none: nothing is held there.
func (d *paydDB) holdColumn() string {
	if d.holds {
		return "COALESCE(hold, '')"
	}
	return "''"
}

func (d *paydDB) payments(ctx context.Context) ([]paymentRow, error) {
	rows, err := d.query(ctx, `SELECT id, account_id, reference, state, currency, provider_key, COALESCE(provider_charge_id, ''),
		CAST(amount AS text), CAST(amount_refunded AS text), `+d.holdColumn()+` FROM payments`)
	if err != nil {
		return nil, fmt.Errorf("read payd's payments: %w", err)
	}
	out := make([]paymentRow, 0, len(rows))
	for _, r := range rows {
		p := paymentRow{ID: r[0], AccountID: r[1], Reference: r[2], State: r[3], Currency: r[4], ProviderKey: r[5], ProviderChargeID: r[6], Hold: r[9]}
		if p.Amount, err = strconv.ParseInt(r[7], 10, 64); err == nil {
			p.AmountRefunded, err = strconv.ParseInt(r[8], 10, 64)
		}
		if err != nil {
			return nil, fmt.Errorf("read payd's payments: %s: %w", p.ID, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func (d *paydDB) refundRows(ctx context.Context) ([]refundRow, error) {
	rows, err := d.query(ctx, `SELECT id, payment_id, account_id, currency, state, provider_key, COALESCE(provider_refund_id, ''),
		CAST(amount AS text), `+d.holdColumn()+` FROM refunds`)
	if err != nil {
		return nil, fmt.Errorf("read payd's refunds: %w", err)
	}
	out := make([]refundRow, 0, len(rows))
	for _, r := range rows {
		f := refundRow{ID: r[0], PaymentID: r[1], AccountID: r[2], Currency: r[3], State: r[4], ProviderKey: r[5], ProviderRefundID: r[6], Hold: r[8]}
		if f.Amount, err = strconv.ParseInt(r[7], 10, 64); err != nil {
			return nil, fmt.Errorf("read payd's refunds: %s: %w", f.ID, err)
		}
		out = append(out, f)
	}
	return out, nil
}

func (d *paydDB) openMismatches(ctx context.Context) ([]mismatchRow, error) {
	rows, err := d.query(ctx, `SELECT id, kind, COALESCE(provider_key, ''), COALESCE(account_id, ''), COALESCE(payment_id, ''),
		COALESCE(refund_id, ''), COALESCE(provider_id, ''), COALESCE(detail, '') FROM reconciliation_mismatches WHERE resolved_at IS NULL`)
	if err != nil {
		return nil, fmt.Errorf("read payd's mismatches: %w", err)
	}
	out := make([]mismatchRow, 0, len(rows))
	for _, r := range rows {
		out = append(out, mismatchRow{ID: r[0], Kind: r[1], ProviderKey: r[2], AccountID: r[3], PaymentID: r[4], RefundID: r[5], ProviderID: r[6], Detail: r[7]})
	}
	return out, nil
}

// readLedger reads what the ledger oracles judge: the journal
// transactions by kind and ref, the merchants' balances, and every sum
// that should be zero and is not.
func (d *paydDB) readLedger(ctx context.Context) (*ledgerEvidence, error) {
	l := &ledgerEvidence{txns: map[txnKey]int{}, available: map[balanceKey]int64{}}
	rows, err := d.query(ctx, `SELECT kind, ref, CAST(COUNT(*) AS text) FROM ledger_transactions GROUP BY kind, ref`)
	if err != nil {
		return nil, fmt.Errorf("read the ledger: %w", err)
	}
	for _, r := range rows {
		n, err := strconv.Atoi(r[2])
		if err != nil {
			return nil, fmt.Errorf("read the ledger: %w", err)
		}
		l.txns[txnKey{r[0], r[1]}] = n
		l.count += n
	}
	rows, err = d.query(ctx, `SELECT account, currency, CAST(SUM(balance) AS text) FROM ledger_balances WHERE account LIKE 'merchant:%' GROUP BY account, currency`)
	if err != nil {
		return nil, fmt.Errorf("read the ledger's balances: %w", err)
	}
	for _, r := range rows {
		sum, err := strconv.ParseInt(r[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("read the ledger's balances: %w", err)
		}
		// A merchant's account is a credit balance: what it is owed is
		// the negated sum.
		l.available[balanceKey{strings.TrimPrefix(r[0], "merchant:"), r[1]}] = -sum
	}
	unbalanced, err := d.query(ctx, `SELECT txn_id, CAST(SUM(amount) AS text) FROM ledger_entries GROUP BY txn_id HAVING SUM(amount) <> 0`)
	if err != nil {
		return nil, fmt.Errorf("read the ledger: %w", err)
	}
	for _, r := range unbalanced {
		l.unbalanced = append(l.unbalanced, fmt.Sprintf("transaction %s sums to %s", r[0], r[1]))
	}
	totals, err := d.query(ctx, `SELECT currency, CAST(SUM(amount) AS text) FROM ledger_entries GROUP BY currency HAVING SUM(amount) <> 0`)
	if err != nil {
		return nil, fmt.Errorf("read the ledger: %w", err)
	}
	for _, r := range totals {
		l.unbalanced = append(l.unbalanced, fmt.Sprintf("the ledger's %s entries sum to %s", r[0], r[1]))
	}
	return l, nil
}

// store reads payd's own tables beyond payments, as far as its schema
// has them.
func (d *paydDB) store(ctx context.Context) (*storeEvidence, error) {
	st := &storeEvidence{hasRefunds: d.refunds}
	var err error
	if d.refunds {
		if st.refunds, err = d.refundRows(ctx); err != nil {
			return nil, err
		}
	}
	if d.ledger {
		if st.ledger, err = d.readLedger(ctx); err != nil {
			return nil, err
		}
	}
	switch {
	case !d.holds:
		st.noHolds = "this payd holds nothing (no hold column on payments and refunds)"
	case !d.mismatches:
		st.noHolds = "this payd's reconciliation_mismatches has no provider_key and refund_id: its mismatches cannot be matched to held payments and refunds"
	default:
		st.holds = true
		if st.mismatches, err = d.openMismatches(ctx); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// notFinal counts payments and refunds that are not terminal and not
// held, and all payments. A held one is not counted: it becomes final
// only once an operator corrects it, so the drain does not wait for it.
func (d *paydDB) notFinal(ctx context.Context) (int, int, error) {
	open := `state NOT IN ('succeeded', 'failed')`
	if d.holds {
		open += ` AND hold IS NULL`
	}
	q := `SELECT (SELECT COUNT(*) FROM payments WHERE ` + open + `), (SELECT COUNT(*) FROM payments)`
	if d.refunds {
		q = `SELECT (SELECT COUNT(*) FROM payments WHERE ` + open + `) +
			(SELECT COUNT(*) FROM refunds WHERE ` + open + `), (SELECT COUNT(*) FROM payments)`
	}
	var n, all int
	var err error
	if d.pg != nil {
		err = d.pg.QueryRow(ctx, q).Scan(&n, &all)
	} else {
		err = d.lite.QueryRowContext(ctx, q).Scan(&n, &all)
	}
	return n, all, err
}

// held returns the ids of the payments and refunds payd holds.
func (d *paydDB) held(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	if !d.holds {
		return out, nil
	}
	rows, err := d.query(ctx, `SELECT id FROM payments WHERE hold IS NOT NULL UNION ALL SELECT id FROM refunds WHERE hold IS NOT NULL`)
	for _, r := range rows {
		out[r[0]] = true
	}
	return out, err
}

func (d *paydDB) close() {
	if d.pg != nil {
		d.pg.Close()
	}
	if d.lite != nil {
		d.lite.Close()
	}
}

// createDatabase makes a new database on the server of admin and returns
// its URL.
func createDatabase(ctx context.Context, admin, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", fmt.Errorf("connect to PostgreSQL at %s: %w", redact(admin), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s (chaos runs in a database of its own; use an account that may create databases, or pass an empty database with --existing-database): %w", name, err)
	}
	u, err := url.Parse(admin)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

// dropDatabase drops a database createDatabase made.
func dropDatabase(ctx context.Context, admin, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}

// hostPort is the server a PostgreSQL URL names.
func hostPort(databaseURL string) (string, error) {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return "", fmt.Errorf("database URL: %w", err)
	}
	return net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)), nil
}

// viaProxy rewrites a PostgreSQL URL to reach the server through addr,
// with a connection pool small enough for three replicas under the
// server's connection limit.
func viaProxy(databaseURL, addr string, poolSize int) (string, error) {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return "", fmt.Errorf("database URL: %w", err)
	}
	u.Host = addr
	q := u.Query()
	if q.Get("pool_max_conns") == "" {
		q.Set("pool_max_conns", fmt.Sprint(poolSize))
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// redact hides a URL's password.
func redact(databaseURL string) string {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return "(a database URL that does not parse)"
	}
	return u.Redacted()
}

// databaseName is the name of a run's own database.
func databaseName(seed uint64) string {
	return strings.ToLower(fmt.Sprintf("payd_chaos_%x_%d", seed&0xffffffff, time.Now().Unix()))
}
