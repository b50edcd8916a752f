package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idemhq/idem/payd/internal/payments"
)

// page is a GET /v1/charges answer.
type page struct {
	Object  string            `json:"object"`
	Data    []payments.Charge `json:"data"`
	HasMore bool              `json:"has_more"`
}

// list gets one page of charges with query, as apiKey's account.
func (f *fixture) list(t *testing.T, apiKey string, query url.Values) page {
	t.Helper()
	r := f.do(t, http.MethodGet, "/v1/charges?"+query.Encode(), apiKey, "", "")
	var p page
	if err := json.Unmarshal([]byte(r.body), &p); err != nil || r.status != http.StatusOK || p.Object != "list" {
		t.Fatalf("GET /v1/charges?%s = %d %s, want 200 and a list", query.Encode(), r.status, r.body)
	}
	return p
}

// listAll pages through the charges query selects, limit at a time.
func (f *fixture) listAll(t *testing.T, query url.Values, limit int) []string {
	t.Helper()
	query.Set("limit", fmt.Sprint(limit))
	var ids []string
	for {
		p := f.list(t, key, query)
		if len(p.Data) > limit || p.HasMore && len(p.Data) != limit {
			t.Fatalf("a page of %d with has_more %v, for a limit of %d", len(p.Data), p.HasMore, limit)
		}
		for _, c := range p.Data {
			ids = append(ids, c.ID)
		}
		if !p.HasMore {
			return ids
		}
		query.Set("starting_after", p.Data[len(p.Data)-1].ID)
	}
}

// TestListCharges: every charge of the account, oldest first, a page at a
// time, none twice or left out; by reference; within a created range,
// bounds rounded to the millisecond payd keeps; never another account's.
// On the code before, charges could be listed only by reference.
func TestListCharges(t *testing.T) {
	eachDatabase(t, func(t *testing.T, databaseURL string) {
		f := newFixtureWith(t, fixtureOptions{databaseURL: databaseURL}) // no workers: nothing changes under the listing
		var all []payments.Charge
		for i := range 7 {
			r := f.do(t, http.MethodPost, "/v1/charges", key, fmt.Sprint("list-", i),
				fmt.Sprintf(`{"amount":%d,"currency":"usd","reference":"order_%d"}`, 100+i, i%2))
			var c payments.Charge
			if err := json.Unmarshal([]byte(r.body), &c); err != nil || r.status != http.StatusAccepted {
				t.Fatalf("create = %d %s", r.status, r.body)
			}
			all = append(all, c)
		}
		f.do(t, http.MethodPost, "/v1/charges", "sk_test_other_0123456789", "list-0", `{"amount":1,"currency":"usd","reference":"order_0"}`)
		slices.SortFunc(all, func(a, b payments.Charge) int {
			if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
				return c
			}
			return strings.Compare(a.ID, b.ID)
		})
		ids := func(keep func(payments.Charge) bool) []string {
			var out []string
			for _, c := range all {
				if keep(c) {
					out = append(out, c.ID)
				}
			}
			return out
		}
		every := ids(func(payments.Charge) bool { return true })
		for _, limit := range []int{1, 2, 3, 7, 100} {
			if got := f.listAll(t, url.Values{}, limit); !slices.Equal(got, every) {
				t.Errorf("paging by %d: %v, want %v", limit, got, every)
			}
		}
		if p := f.list(t, key, nil); len(p.Data) != len(all) || p.HasMore {
			t.Errorf("the default page holds %d, has_more %v; want all %d", len(p.Data), p.HasMore, len(all))
		}
		byRef := ids(func(c payments.Charge) bool { return c.Reference == "order_1" })
		if got := f.listAll(t, url.Values{"reference": {"order_1"}}, 2); !slices.Equal(got, byRef) {
			t.Errorf("reference order_1: %v, want %v", got, byRef)
		}
		from, to := all[2].CreatedAt, all[5].CreatedAt
		inRange := func(from, to time.Time) func(payments.Charge) bool {
			return func(c payments.Charge) bool { return !c.CreatedAt.Before(from) && c.CreatedAt.Before(to) }
		}
		for _, r := range []struct{ from, to time.Time }{
			{from, to},
			{from.Add(500 * time.Microsecond), to.Add(500 * time.Microsecond)}, // between milliseconds
		} {
			q := url.Values{"created[gte]": {r.from.Format(time.RFC3339Nano)}, "created[lt]": {r.to.Format(time.RFC3339Nano)}}
			if got, want := f.listAll(t, q, 2), ids(inRange(r.from, r.to)); !slices.Equal(got, want) {
				t.Errorf("created in [%s, %s): %v, want %v", r.from.Format(time.RFC3339Nano), r.to.Format(time.RFC3339Nano), got, want)
			}
		}
		q := url.Values{"created[gte]": {from.Format(time.RFC3339Nano)}, "reference": {"order_1"}}
		if got, want := f.listAll(t, q, 1), ids(func(c payments.Charge) bool { return c.Reference == "order_1" && !c.CreatedAt.Before(from) }); !slices.Equal(got, want) {
			t.Errorf("order_1 from %s: %v, want %v", from, got, want)
		}
		other := f.list(t, "sk_test_other_0123456789", nil)
		if len(other.Data) != 1 || other.Data[0].Amount != 1 {
			t.Errorf("the other account lists %+v, want its one charge", other.Data)
		}
	})
}

// TestListRefusals: every parameter GET /v1/charges refuses gets 400
// problem+json naming it, with its code.
func TestListRefusals(t *testing.T) {
	f := newFixture(t)
	other := f.do(t, http.MethodPost, "/v1/charges", "sk_test_other_0123456789", "mine", `{"amount":1,"currency":"usd","reference":"r"}`)
	var c payments.Charge
	json.Unmarshal([]byte(other.body), &c)
	for _, tc := range []struct{ query, code, param string }{
		{"limit=0", "invalid_limit", "limit"},
		{"limit=101", "invalid_limit", "limit"},
		{"limit=ten", "invalid_limit", "limit"},
		{"limit=1&limit=2", "duplicate_parameter", "limit"},
		{"starting_after=", "invalid_cursor", "starting_after"},
		{"starting_after=ch_nope", "invalid_cursor", "starting_after"},
		{"starting_after=" + c.ID, "invalid_cursor", "starting_after"}, // another account's
		{"reference=", "invalid_reference", "reference"},
		{"reference=" + strings.Repeat("r", 256), "invalid_reference", "reference"},
		{"created[gte]=yesterday", "invalid_time", "created[gte]"},
		{"created[lt]=2026-01-01", "invalid_time", "created[lt]"},
		{"created[lt]=0001-01-01T00:00:00Z", "invalid_time", "created[lt]"},
		{"created[gte]=1969-12-31T23:59:59Z", "invalid_time", "created[gte]"},
		{"created[gte]=2026-01-02T00:00:00Z&created[lt]=2026-01-01T00:00:00Z", "invalid_range", "created[lt]"},
		{"created[gte]=2026-01-01T00:00:00Z&created[lt]=2026-01-01T00:00:00Z", "invalid_range", "created[lt]"},
		{"created[gt]=2026-01-01T00:00:00Z", "unknown_parameter", "created[gt]"},
		{"Limit=1", "unknown_parameter", "Limit"},
		{"limit=%zz", "invalid_query", ""},
	} {
		r := f.do(t, http.MethodGet, "/v1/charges?"+tc.query, key, "", "")
		var p problem
		if err := json.Unmarshal([]byte(r.body), &p); err != nil || r.status != http.StatusBadRequest || p.Code != tc.code || p.Param != tc.param {
			t.Errorf("?%s = %d %s, want 400 %s naming %q", tc.query, r.status, r.body, tc.code, tc.param)
		}
	}
}
