package chaos

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idemhq/idem/sqlitestore"
)

// paymentRow is a payment as the oracles read it from payd's database.
type paymentRow struct {
	ID               string
	Reference        string
	State            string
	ProviderChargeID string
	Amount           int64
	AmountRefunded   int64
}

// paydDB reads payd's database directly, never through the fault proxy.
// It only reads.
type paydDB struct {
	pg   *pgxpool.Pool
	lite *sql.DB

	refunds bool // the schema has refunds
	ledger  bool // the schema has the ledger
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
	db, err := sqlitestore.Open(ctx, databaseURL)
	if err != nil {
		return nil, err
	}
	return &paydDB{lite: db}, nil
}

// inspect finds which of payd's tables the schema has: refunds and the
// ledger came after payments, and chaos checks what there is.
func (d *paydDB) inspect(ctx context.Context) error {
	q := `SELECT CAST(COUNT(*) AS text) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = '%s'`
	if d.lite != nil {
		q = `SELECT CAST(COUNT(*) AS text) FROM sqlite_master WHERE type = 'table' AND name = '%s'`
	}
	for _, t := range []struct {
		name string
		has  *bool
	}{{"refunds", &d.refunds}, {"ledger_transactions", &d.ledger}} {
		rows, err := d.query(ctx, fmt.Sprintf(q, t.name))
		if err != nil {
			return err
		}
		*t.has = len(rows) == 1 && rows[0][0] != "0"
	}
	return nil
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

const selectPayments = `SELECT id, reference, state, COALESCE(provider_charge_id, ''), amount, amount_refunded FROM payments`

func (d *paydDB) payments(ctx context.Context) ([]paymentRow, error) {
	var out []paymentRow
	scan := func(s interface{ Scan(...any) error }) error {
		var p paymentRow
		if err := s.Scan(&p.ID, &p.Reference, &p.State, &p.ProviderChargeID, &p.Amount, &p.AmountRefunded); err != nil {
			return err
		}
		out = append(out, p)
		return nil
	}
	if d.pg != nil {
		rows, err := d.pg.Query(ctx, selectPayments)
		if err != nil {
			return nil, fmt.Errorf("read payd's payments: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			if err := scan(rows); err != nil {
				return nil, err
			}
		}
		return out, rows.Err()
	}
	rows, err := d.lite.QueryContext(ctx, selectPayments)
	if err != nil {
		return nil, fmt.Errorf("read payd's payments: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return nil, err
		}
	}
	return out, rows.Err()
}

// notFinal counts payments and refunds that are not terminal, and all
// payments.
func (d *paydDB) notFinal(ctx context.Context) (int, int, error) {
	q := `SELECT (SELECT COUNT(*) FROM payments WHERE state NOT IN ('succeeded', 'failed')), (SELECT COUNT(*) FROM payments)`
	if d.refunds {
		q = `SELECT (SELECT COUNT(*) FROM payments WHERE state NOT IN ('succeeded', 'failed')) +
			(SELECT COUNT(*) FROM refunds WHERE state NOT IN ('succeeded', 'failed')), (SELECT COUNT(*) FROM payments)`
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
