package simulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/idemhq/idem/payd/internal/provider"
)

const (
	maxBodyBytes = 64 << 10
	maxKeyLen    = 255
)

func handleCreateCharge(s *Sim) http.Handler {
	type request struct {
		Amount   int64             `json:"amount"`
		Currency string            `json:"currency"`
		Metadata map[string]string `json:"metadata"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, aerr := idempotencyKey(r)
		if aerr != nil {
			writeError(w, aerr)
			return
		}
		req, err := decode[request](w, r)
		if err != nil {
			writeError(w, invalid(err.Error()))
			return
		}
		currency := strings.ToLower(req.Currency)
		switch {
		case req.Amount <= 0:
			writeError(w, invalid("amount must be a positive number of minor units"))
			return
		case !isCurrency(currency):
			writeError(w, invalid("currency must be a three-letter ISO 4217 code"))
			return
		}
		ch, out, aerr := s.charge(chargeArgs{key: key, amount: req.Amount, currency: currency, metadata: req.Metadata}, callFrom(r.Context()))
		switch {
		case aerr != nil:
			writeError(w, aerr)
			return
		case out == deferred:
			return // the response is lost
		case out == replayed:
			w.Header().Set("Idempotent-Replayed", "true")
		}
		status := http.StatusOK
		if ch.Status == provider.StatusFailed {
			status = http.StatusPaymentRequired
		}
		encode(w, status, ch)
	})
}

func handleListCharges(s *Sim) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Has("idempotency_key") {
			ch, ok := s.chargeWithKey(q.Get("idempotency_key"))
			if !ok {
				writeError(w, notFound("no charge with idempotency key %q", q.Get("idempotency_key")))
				return
			}
			encode(w, http.StatusOK, ch)
			return
		}
		pq, aerr := readPageQuery(q)
		if aerr != nil {
			writeError(w, aerr)
			return
		}
		l, aerr := s.chargePage(pq)
		if aerr != nil {
			writeError(w, aerr)
			return
		}
		encode(w, http.StatusOK, l)
	})
}

func handleGetCharge(s *Sim) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ch, ok := s.chargeWithID(r.PathValue("id"))
		if !ok {
			writeError(w, notFound("no charge %q", r.PathValue("id")))
			return
		}
		encode(w, http.StatusOK, ch)
	})
}

func handleCreateRefund(s *Sim) http.Handler {
	type request struct {
		Charge   string            `json:"charge"`
		Amount   int64             `json:"amount"`
		Metadata map[string]string `json:"metadata"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, aerr := idempotencyKey(r)
		if aerr != nil {
			writeError(w, aerr)
			return
		}
		req, err := decode[request](w, r)
		if err != nil {
			writeError(w, invalid(err.Error()))
			return
		}
		switch {
		case req.Charge == "":
			writeError(w, invalid("charge is required"))
			return
		case req.Amount <= 0:
			writeError(w, invalid("amount must be a positive number of minor units"))
			return
		}
		ref, out, aerr := s.refund(refundArgs{key: key, chargeID: req.Charge, amount: req.Amount, metadata: req.Metadata}, callFrom(r.Context()))
		switch {
		case aerr != nil:
			writeError(w, aerr)
			return
		case out == deferred:
			return // the response is lost
		case out == replayed:
			w.Header().Set("Idempotent-Replayed", "true")
		}
		encode(w, http.StatusOK, ref)
	})
}

func handleListRefunds(s *Sim) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Has("idempotency_key") {
			ref, ok := s.refundWithKey(q.Get("idempotency_key"))
			if !ok {
				writeError(w, notFound("no refund with idempotency key %q", q.Get("idempotency_key")))
				return
			}
			encode(w, http.StatusOK, ref)
			return
		}
		pq, aerr := readPageQuery(q)
		if aerr != nil {
			writeError(w, aerr)
			return
		}
		l, aerr := s.refundPage(pq)
		if aerr != nil {
			writeError(w, aerr)
			return
		}
		encode(w, http.StatusOK, l)
	})
}

func handleGetFaults(s *Sim) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		encode(w, http.StatusOK, toWire(s.Faults()))
	})
}

func handleSetFaults(s *Sim) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fw, err := decode[faultsWire](w, r)
		if err != nil {
			writeError(w, invalid(err.Error()))
			return
		}
		if err := s.SetFaults(fw.faults()); err != nil {
			writeError(w, invalid(err.Error()))
			return
		}
		encode(w, http.StatusOK, toWire(s.Faults()))
	})
}

func handleStats(s *Sim) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		encode(w, http.StatusOK, s.Stats())
	})
}

func handleNoRoute() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{http.StatusNotFound, "no_route", fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path)})
	})
}

// faultsWire is Faults as JSON, durations in Go's syntax ("250ms").
type faultsWire struct {
	LatencyMin           duration `json:"latency_min"`
	LatencyMax           duration `json:"latency_max"`
	ErrorRate            float64  `json:"error_rate"`
	RateLimitRate        float64  `json:"rate_limit_rate"`
	DeclineRate          float64  `json:"decline_rate"`
	DropAfterChargeRate  float64  `json:"drop_after_charge_rate"`
	HangRate             float64  `json:"hang_rate"`
	HangFor              duration `json:"hang_for"`
	LateRate             float64  `json:"late_rate"`
	LateMin              duration `json:"late_min"`
	LateMax              duration `json:"late_max"`
	InFlightRate         float64  `json:"in_flight_rate"`
	OtherAmountRate      float64  `json:"other_amount_rate"`
	WebhookDuplicateRate float64  `json:"webhook_duplicate_rate"`
	WebhookReorder       duration `json:"webhook_reorder"`
	WebhookDelayMax      duration `json:"webhook_delay_max"`
}

func toWire(f Faults) faultsWire {
	return faultsWire{
		LatencyMin:           duration(f.LatencyMin),
		LatencyMax:           duration(f.LatencyMax),
		ErrorRate:            f.ErrorRate,
		RateLimitRate:        f.RateLimitRate,
		DeclineRate:          f.DeclineRate,
		DropAfterChargeRate:  f.DropAfterChargeRate,
		HangRate:             f.HangRate,
		HangFor:              duration(f.HangFor),
		LateRate:             f.LateRate,
		LateMin:              duration(f.LateMin),
		LateMax:              duration(f.LateMax),
		InFlightRate:         f.InFlightRate,
		OtherAmountRate:      f.OtherAmountRate,
		WebhookDuplicateRate: f.WebhookDuplicateRate,
		WebhookReorder:       duration(f.WebhookReorder),
		WebhookDelayMax:      duration(f.WebhookDelayMax),
	}
}

func (fw faultsWire) faults() Faults {
	return Faults{
		LatencyMin:           time.Duration(fw.LatencyMin),
		LatencyMax:           time.Duration(fw.LatencyMax),
		ErrorRate:            fw.ErrorRate,
		RateLimitRate:        fw.RateLimitRate,
		DeclineRate:          fw.DeclineRate,
		DropAfterChargeRate:  fw.DropAfterChargeRate,
		HangRate:             fw.HangRate,
		HangFor:              time.Duration(fw.HangFor),
		LateRate:             fw.LateRate,
		LateMin:              time.Duration(fw.LateMin),
		LateMax:              time.Duration(fw.LateMax),
		InFlightRate:         fw.InFlightRate,
		OtherAmountRate:      fw.OtherAmountRate,
		WebhookDuplicateRate: fw.WebhookDuplicateRate,
		WebhookReorder:       time.Duration(fw.WebhookReorder),
		WebhookDelayMax:      time.Duration(fw.WebhookDelayMax),
	}
}

type duration time.Duration

func (d duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = duration(v)
	return err
}

// idempotencyKey returns the request's Idempotency-Key, which every POST
// of the provider API needs.
func idempotencyKey(r *http.Request) (string, *apiError) {
	key := r.Header.Get("Idempotency-Key")
	switch {
	case key == "":
		return "", &apiError{http.StatusBadRequest, "idempotency_key_required", "the Idempotency-Key header is required"}
	case len(key) > maxKeyLen:
		return "", invalid(fmt.Sprintf("the Idempotency-Key is longer than %d bytes", maxKeyLen))
	}
	return key, nil
}

// timeRange reads created_gte and created_lt, RFC 3339 times, either
// optional.
func timeRange(q url.Values) (from, to time.Time, aerr *apiError) {
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"created_gte", &from}, {"created_lt", &to}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return from, to, invalid(fmt.Sprintf("%s is not an RFC 3339 time: %v", p.name, err))
			}
			*p.t = t
		}
	}
	return from, to, nil
}

func isCurrency(c string) bool {
	if len(c) != 3 {
		return false
	}
	for i := range len(c) {
		if c[i] < 'a' || c[i] > 'z' {
			return false
		}
	}
	return true
}

func invalid(msg string) *apiError {
	return &apiError{http.StatusBadRequest, "invalid_request", msg}
}

func notFound(format string, args ...any) *apiError {
	return &apiError{http.StatusNotFound, "not_found", fmt.Sprintf(format, args...)}
}

// encode answers status with v as JSON. A failed write means the client is
// gone, so it is not reported.
func encode[T any](w http.ResponseWriter, status int, v T) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decode reads one JSON value of at most maxBodyBytes, refusing unknown
// fields and trailing data: a request we do not understand is a bug in
// the caller, better refused than half applied.
func decode[T any](w http.ResponseWriter, r *http.Request) (T, error) {
	var v T
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, fmt.Errorf("decoding the request: %w", err)
	}
	if dec.More() {
		return v, errors.New("decoding the request: more than one JSON value")
	}
	return v, nil
}

func writeError(w http.ResponseWriter, e *apiError) {
	type body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	var b body
	b.Error.Code, b.Error.Message = e.code, e.message
	encode(w, e.status, b)
}
