package simulator_test

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/idemhq/idem/payd/internal/provider"
)

// page is a listing's answer, ids only.
type page struct {
	IDs     []string
	HasMore bool
}

func (a *api) page(path string) page {
	a.t.Helper()
	r := a.do("GET", path, "", nil)
	if r.status != 200 {
		a.t.Fatalf("GET %s: %d %s", path, r.status, r.body)
	}
	l := as[struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
		HasMore *bool `json:"has_more"`
	}](a.t, r)
	if l.Data == nil || l.HasMore == nil {
		a.t.Fatalf("GET %s: %s, want data and has_more", path, r.body)
	}
	p := page{IDs: []string{}, HasMore: *l.HasMore}
	for _, d := range l.Data {
		p.IDs = append(p.IDs, d.ID)
	}
	return p
}

func TestListPages(t *testing.T) {
	_, a := start(t, nil)
	for i := range 5 {
		ch := as[provider.Charge](t, a.charge(fmt.Sprint("c", i), 1000))
		a.refund(fmt.Sprint("r", i), ch.ID, 1)
	}
	for _, res := range []struct{ path, prefix string }{{"/charges", "ch_"}, {"/refunds", "re_"}} {
		id := func(n int) string { return fmt.Sprintf("%s%06d", res.prefix, n) }
		tests := []struct {
			query string
			want  page
		}{
			{"?limit=2", page{[]string{id(1), id(2)}, true}},
			{"?limit=2&starting_after=" + id(2), page{[]string{id(3), id(4)}, true}},
			{"?limit=2&starting_after=" + id(4), page{[]string{id(5)}, false}},
			{"?limit=2&starting_after=" + id(5), page{[]string{}, false}},
			{"?starting_after=" + id(1), page{[]string{id(2), id(3), id(4), id(5)}, false}},
			{"", page{[]string{id(1), id(2), id(3), id(4), id(5)}, false}},
			{"?limit=5", page{[]string{id(1), id(2), id(3), id(4), id(5)}, false}},
			{"?limit=4", page{[]string{id(1), id(2), id(3), id(4)}, true}},
			{"?limit=1000", page{[]string{id(1), id(2), id(3), id(4), id(5)}, false}},
		}
		for _, tt := range tests {
			if got := a.page(res.path + tt.query); !slices.Equal(got.IDs, tt.want.IDs) || got.HasMore != tt.want.HasMore {
				t.Errorf("GET %s%s = %+v, want %+v", res.path, tt.query, got, tt.want)
			}
		}

		bad := []struct{ query, param string }{
			{"?limit=0", "limit"}, {"?limit=1001", "limit"}, {"?limit=-1", "limit"}, {"?limit=two", "limit"},
			{"?limit=", "limit"}, {"?limit=1.5", "limit"},
			{"?starting_after=" + id(6), "starting_after"}, {"?starting_after=" + res.prefix + "1", "starting_after"},
			{"?starting_after=nope", "starting_after"}, {"?starting_after=" + res.prefix + "-00001", "starting_after"},
		}
		for _, b := range bad {
			r := a.do("GET", res.path+b.query, "", nil)
			if r.status != 400 || errorCode(r) != "invalid_request" || !strings.Contains(string(r.body), b.param) {
				t.Errorf("GET %s%s: %d %s, want 400 invalid_request naming %s", res.path, b.query, r.status, r.body, b.param)
			}
		}
	}
	// A charge's id is no refund's cursor.
	if r := a.do("GET", "/refunds?starting_after=ch_000001", "", nil); r.status != 400 {
		t.Errorf("a charge id as a refund cursor: %d %s, want 400", r.status, r.body)
	}
	// The key lookups are not listings.
	if r := a.do("GET", "/charges?idempotency_key=c0&limit=0", "", nil); r.status != 200 {
		t.Errorf("a lookup with a limit: %d %s, want 200", r.status, r.body)
	}
}

// TestListPagesByTime pages within created_gte and created_lt: one
// charge and refund each second, on the bubble's clock.
func TestListPagesByTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, a := startMem(t, nil)
		t0 := time.Now()
		for i := range 6 {
			ch := as[provider.Charge](t, a.charge(fmt.Sprint("c", i), 1000))
			a.refund(fmt.Sprint("r", i), ch.ID, 1)
			time.Sleep(time.Second)
		}
		at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
		q := func(s int) string { return url.QueryEscape(at(s).Format(time.RFC3339Nano)) }
		window := "created_gte=" + q(1) + "&created_lt=" + q(5) // the 2nd to 5th
		for _, prefix := range []string{"ch_", "re_"} {
			path := map[string]string{"ch_": "/charges", "re_": "/refunds"}[prefix]
			id := func(n int) string { return fmt.Sprintf("%s%06d", prefix, n) }
			tests := []struct {
				query string
				want  page
			}{
				{window + "&limit=2", page{[]string{id(2), id(3)}, true}},
				{window + "&limit=2&starting_after=" + id(3), page{[]string{id(4), id(5)}, false}},
				{window + "&limit=3&starting_after=" + id(3), page{[]string{id(4), id(5)}, false}},
				{window + "&limit=2&starting_after=" + id(1), page{[]string{id(2), id(3)}, true}}, // a cursor before the range
				{window + "&limit=2&starting_after=" + id(6), page{[]string{}, false}},            // and one after it
				{"created_gte=" + q(4) + "&limit=1", page{[]string{id(5)}, true}},
				{"created_lt=" + q(2) + "&limit=1&starting_after=" + id(1), page{[]string{id(2)}, false}},
			}
			for _, tt := range tests {
				if got := a.page(path + "?" + tt.query); !slices.Equal(got.IDs, tt.want.IDs) || got.HasMore != tt.want.HasMore {
					t.Errorf("GET %s?%s = %+v, want %+v", path, tt.query, got, tt.want)
				}
			}
		}

		// The client in internal/provider reads the pages to the end.
		c, err := provider.NewClient(a.base, &provider.ClientConfig{PageSize: 2, HTTPClient: a.client})
		if err != nil {
			t.Fatal(err)
		}
		charges, err := provider.Collect(c.Charges(t.Context(), at(1), at(5)))
		if err != nil || len(charges) != 4 || charges[0].IdempotencyKey != "c1" || charges[3].IdempotencyKey != "c4" {
			t.Errorf("client: charges %+v (%v), want c1 to c4", charges, err)
		}
		refunds, err := provider.Collect(c.Refunds(t.Context(), time.Time{}, time.Time{}))
		if err != nil || len(refunds) != 6 {
			t.Errorf("client: refunds %+v (%v), want 6", refunds, err)
		}
	})
}

// TestClientPagesThroughListings: the provider client, two at a time,
// over loopback, asks for exactly as many pages as it needs.
func TestClientPagesThroughListings(t *testing.T) {
	sim, a := start(t, nil)
	var want []string
	for i := range 5 {
		want = append(want, as[provider.Charge](t, a.charge(fmt.Sprint("c", i), 1000)).ID)
	}
	c, err := provider.NewClient(a.base, &provider.ClientConfig{PageSize: 2, HTTPClient: a.client})
	if err != nil {
		t.Fatal(err)
	}
	before := sim.Stats().Requests
	charges, err := provider.Collect(c.Charges(t.Context(), time.Time{}, time.Time{}))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ch := range charges {
		got = append(got, ch.ID)
	}
	if !slices.Equal(got, want) {
		t.Errorf("listed %v, want %v", got, want)
	}
	if pages := sim.Stats().Requests - before; pages != 3 {
		t.Errorf("%d pages asked for, want 3", pages)
	}
}
