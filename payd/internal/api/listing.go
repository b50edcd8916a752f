package api

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/idemhq/idem/payd/internal/payments"
)

// Limits on a listing.
const (
	defaultPageLimit = 10
	maxPageLimit     = 100
)

// listParams are the query parameters of GET /v1/charges, each at most
// once.
var listParams = []string{"limit", "starting_after", "reference", "created[gte]", "created[lt]"}

// list is a page of charges.
type list struct {
	Object  string            `json:"object"`
	Data    []payments.Charge `json:"data"`
	HasMore bool              `json:"has_more"`
}

// listQuery is a parsed GET /v1/charges query.
type listQuery struct {
	filter payments.Filter
	page   payments.Page
}

// parseListQuery reads q, or returns an *invalid naming the parameter at
// fault: one payd does not know, one given twice, or a value out of its
// range (TestListRefusals).
func parseListQuery(rawQuery string) (listQuery, error) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return listQuery{}, &invalid{"", "invalid_query", "the query string is not valid URL encoding; escape reserved characters such as % and ;"}
	}
	for _, name := range slices.Sorted(maps.Keys(q)) {
		values := q[name]
		switch {
		case !isListParam(name):
			return listQuery{}, &invalid{name, "unknown_parameter",
				fmt.Sprintf("%s is not a parameter of this listing; use limit, starting_after, reference, created[gte] or created[lt]", name)}
		case len(values) > 1:
			return listQuery{}, &invalid{name, "duplicate_parameter", fmt.Sprintf("%s appears more than once in the query; send it once", name)}
		}
	}
	lq := listQuery{page: payments.Page{Limit: defaultPageLimit}}
	if l, ok := q["limit"]; ok {
		n, err := strconv.Atoi(l[0])
		if err != nil || n < 1 || n > maxPageLimit {
			return listQuery{}, &invalid{"limit", "invalid_limit", fmt.Sprintf("limit must be a whole number from 1 to %d", maxPageLimit)}
		}
		lq.page.Limit = n
	}
	if after, ok := q["starting_after"]; ok {
		if after[0] == "" {
			return listQuery{}, &invalid{"starting_after", "invalid_cursor", "starting_after must be the id of a charge, the last of the page before"}
		}
		lq.page.After = after[0]
	}
	if ref, ok := q["reference"]; ok {
		if !printable(ref[0], maxReferenceLen) {
			return listQuery{}, &invalid{"reference", "invalid_reference", fmt.Sprintf("reference must be 1 to %d printable characters", maxReferenceLen)}
		}
		lq.filter.Reference = ref[0]
	}
	if lq.filter.CreatedFrom, err = parseTime(q, "created[gte]"); err != nil {
		return listQuery{}, err
	}
	if lq.filter.CreatedBefore, err = parseTime(q, "created[lt]"); err != nil {
		return listQuery{}, err
	}
	from, before := lq.filter.CreatedFrom, lq.filter.CreatedBefore
	if !from.IsZero() && !before.IsZero() && !before.After(from) {
		return listQuery{}, &invalid{"created[lt]", "invalid_range", "created[lt] must be later than created[gte]"}
	}
	return lq, nil
}

func isListParam(name string) bool {
	for _, p := range listParams {
		if name == p {
			return true
		}
	}
	return false
}

// parseTime reads the RFC 3339 time q names, zero if it is absent.
func parseTime(q url.Values, name string) (time.Time, error) {
	v, ok := q[name]
	if !ok {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v[0])
	// Times before 1970 are refused: payd keeps Unix milliseconds, and
	// the zero time would read as no bound (TestListRefusals).
	if err != nil || t.Before(time.Unix(0, 0)) {
		return time.Time{}, &invalid{name, "invalid_time", fmt.Sprintf("%s must be a time in RFC 3339 from 1970 on, such as 2026-01-31T23:59:59Z", name)}
	}
	return t, nil
}

// listCharges answers GET /v1/charges: a page of the account's charges,
// oldest first, those with reference=… only if it is given, created in
// [created[gte], created[lt]) where those are given; has_more says
// whether another page follows, which starting_after=<the last id> gets.
func (s *server) listCharges() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lq, err := parseListQuery(r.URL.RawQuery)
		if bad, ok := errors.AsType[*invalid](err); ok {
			fail(w, http.StatusBadRequest, bad.code, bad.param, bad.detail)
			return
		}
		ps, more, err := s.store.List(r.Context(), accountFrom(r.Context()), lq.filter, lq.page)
		switch {
		case errors.Is(err, payments.ErrNotFound):
			fail(w, http.StatusBadRequest, "invalid_cursor", "starting_after", "starting_after names no charge of yours; pass the id of the last charge of the page before")
			return
		case err != nil:
			s.failed(r, "payd: listing payments failed", err)
			internalError(w)
			return
		}
		out := list{Object: "list", Data: make([]payments.Charge, 0, len(ps)), HasMore: more}
		for _, p := range ps {
			out.Data = append(out.Data, p.Charge())
		}
		encode(w, http.StatusOK, out)
	})
}
