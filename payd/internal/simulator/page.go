package simulator

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/idemhq/idem/payd/internal/provider"
)

// Page sizes of the listings.
const (
	defaultPageLimit = 100
	maxPageLimit     = 1000
)

// pageQuery is a listing's query: the objects created in [from, to) (a
// zero time leaves that end open), after the one with id after (if not
// empty), at most limit of them.
type pageQuery struct {
	from, to time.Time
	after    string
	limit    int
}

// list is a listing's answer.
type list[T any] struct {
	Data    []T  `json:"data"`
	HasMore bool `json:"has_more"`
}

// readPageQuery reads created_gte, created_lt, limit and starting_after.
func readPageQuery(q url.Values) (pageQuery, *apiError) {
	from, to, aerr := timeRange(q)
	if aerr != nil {
		return pageQuery{}, aerr
	}
	pq := pageQuery{from: from, to: to, after: q.Get("starting_after"), limit: defaultPageLimit}
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > maxPageLimit {
			return pageQuery{}, invalid(fmt.Sprintf("limit %q is not a whole number from 1 to %d", q.Get("limit"), maxPageLimit))
		}
		pq.limit = n
	}
	return pq, nil
}

// chargePage returns the page of charges q asks for.
func (s *Sim) chargePage(q pageQuery) (list[provider.Charge], *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return pageOf(s.charges, "ch_", q,
		func(c *provider.Charge) (string, time.Time) { return c.ID, c.Created }, cloneCharge)
}

// refundPage returns the page of refunds q asks for.
func (s *Sim) refundPage(q pageQuery) (list[provider.Refund], *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return pageOf(s.refunds, "re_", q,
		func(r *provider.Refund) (string, time.Time) { return r.ID, r.Created }, cloneRefund)
}

// pageOf returns the page of objs that q asks for, each copied by clone.
// objs are in the order they were made, which is their Created order (see
// stamp), and the nth has the id prefix followed by n: so the page is
// found in O(log n) and copied in O(page), and s.mu, which the caller
// holds, is held no longer.
func pageOf[T any](objs []*T, prefix string, q pageQuery, idAndTime func(*T) (string, time.Time), clone func(*T) T) (list[T], *apiError) {
	created := func(i int) time.Time { _, t := idAndTime(objs[i]); return t }
	start := 0
	if !q.from.IsZero() {
		start = sort.Search(len(objs), func(i int) bool { return !created(i).Before(q.from) })
	}
	if q.after != "" {
		i := indexOf(objs, prefix, q.after, idAndTime)
		if i < 0 {
			return list[T]{}, invalid(fmt.Sprintf("starting_after %q is not the id of a %s", q.after, strings.TrimSuffix(prefix, "_")))
		}
		start = max(start, i+1)
	}
	inRange := func(i int) bool { return i < len(objs) && (q.to.IsZero() || created(i).Before(q.to)) }
	out := list[T]{Data: []T{}}
	i := start
	for ; inRange(i) && len(out.Data) < q.limit; i++ {
		out.Data = append(out.Data, clone(objs[i]))
	}
	out.HasMore = inRange(i)
	return out, nil
}

// indexOf returns the index in objs of the one with id, -1 if none.
func indexOf[T any](objs []*T, prefix, id string, idAndTime func(*T) (string, time.Time)) int {
	digits, ok := strings.CutPrefix(id, prefix)
	if !ok {
		return -1
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n < 1 || n > len(objs) {
		return -1
	}
	if got, _ := idAndTime(objs[n-1]); got != id { // "ch_1" is not ch_000001
		return -1
	}
	return n - 1
}
