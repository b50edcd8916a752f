package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/idemhq/idem"
)

// Defaults for Config.
const (
	DefaultHeader       = "Webhook-Signature"
	DefaultMaxBodyBytes = 1 << 20
)

// Event is a verified delivery, as apply receives it.
type Event struct {
	// Source names the sender, and with ID identifies the event.
	Source string
	ID     string
	// Body is the raw, verified request body.
	Body []byte
}

// Config tunes a Handler. A nil *Config, and every zero field, means the
// documented default.
type Config struct {
	// Header is the request header field carrying the signature. Default
	// "Webhook-Signature".
	Header string

	// Source names the sender in the de-duplication key, for the default
	// Parse. Default "".
	Source string

	// Parse returns the source and id of a verified body. Deliveries are
	// de-duplicated by the pair, so the id must be the sender's event id,
	// stable across redeliveries. An error means 400. Default: the JSON
	// body's string "id" member, with Config.Source.
	Parse func(body []byte) (source, id string, err error)

	// MaxBodyBytes caps the request body; a larger one gets 413 before it
	// is verified. Default 1 MiB.
	MaxBodyBytes int64

	// MaxWait is how long a delivery waits for a concurrent delivery of
	// the same event, on this or another instance, before it answers 409
	// so the sender retries. Default: the engine's MaxWait.
	MaxWait time.Duration

	// Logger receives apply failures and store errors, with the event's
	// source and id. Default: discard.
	Logger *slog.Logger
}

// Handler receives signed events over HTTP: it verifies each delivery's
// signature over the raw body, then applies the event exactly once per
// (source, id) across every instance that shares the engine's store, and
// answers redeliveries without applying them again.
//
// Statuses:
//
//   - 204: the event was applied now, or before (then with
//     Idempotent-Replayed: true).
//   - 400: no signature, a malformed or wrong one, a timestamp outside the
//     tolerance, or a body Parse refuses. Nothing is written to the store:
//     a forged delivery can never claim a real event's id.
//   - 405: not a POST. 413: the body is over MaxBodyBytes.
//   - 409 with Retry-After: another delivery of the event is being applied
//     and did not finish within MaxWait.
//   - 422: the event id was applied before with a different body.
//   - 500: apply failed; nothing is recorded and the sender's retry applies
//     the event again. 503: the store failed before apply ran.
type Handler struct {
	engine   *idem.Engine
	verifier *Verifier
	apply    func(context.Context, Event) error
	header   string
	source   string
	parse    func([]byte) (string, string, error)
	maxBody  int64
	maxWait  time.Duration
	log      *slog.Logger
}

// NewHandler returns a Handler that verifies deliveries with v and applies
// them with apply through engine. apply runs at most once at a time per
// event and, once it returns nil, never again for that event within the
// engine's retention; idem.LeaseFrom(ctx) inside it gives a fence for its
// writes. An error from apply is never recorded: the delivery gets 500 and
// the sender's retry runs apply again. To drop an event for good, return
// nil.
func NewHandler(engine *idem.Engine, v *Verifier, apply func(ctx context.Context, e Event) error, cfg *Config) (*Handler, error) {
	if engine == nil || v == nil || apply == nil {
		return nil, errors.New("webhook: NewHandler needs an engine, a Verifier and an apply function")
	}
	if len(v.Secrets) == 0 {
		return nil, ErrNoSecrets
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	h := &Handler{
		engine:   engine,
		verifier: v,
		apply:    apply,
		header:   c.Header,
		source:   c.Source,
		parse:    c.Parse,
		maxBody:  c.MaxBodyBytes,
		maxWait:  c.MaxWait,
		log:      c.Logger,
	}
	if h.header == "" {
		h.header = DefaultHeader
	}
	if h.parse == nil {
		h.parse = h.parseJSON
	}
	if h.maxBody == 0 {
		h.maxBody = DefaultMaxBodyBytes
	}
	if h.maxBody < 0 || h.maxWait < 0 {
		return nil, errors.New("webhook: MaxBodyBytes and MaxWait must not be negative")
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	return h, nil
}

// parseJSON is the default Parse: the body's "id" member.
func (h *Handler) parseJSON(body []byte) (string, string, error) {
	var e struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		return "", "", err
	}
	if e.ID == "" {
		return "", "", errors.New(`no "id" member`)
	}
	return h.source, e.ID, nil
}

// applyFailed wraps an error from apply, which is never recorded.
type applyFailed struct{ err error }

func (e *applyFailed) Error() string { return "webhook: apply: " + e.err.Error() }
func (e *applyFailed) Unwrap() error { return e.err }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		reply(w, http.StatusMethodNotAllowed, "only POST is accepted")
		return
	}
	if r.ContentLength > h.maxBody {
		reply(w, http.StatusRequestEntityTooLarge, "body too large")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, h.maxBody+1))
	if err != nil {
		reply(w, http.StatusBadRequest, "body unreadable")
		return
	}
	if int64(len(body)) > h.maxBody {
		reply(w, http.StatusRequestEntityTooLarge, "body too large")
		return
	}
	// Verify before anything else: nothing reaches the store unsigned.
	if err := h.verifier.Verify(r.Header.Get(h.header), body); err != nil {
		reply(w, http.StatusBadRequest, err.Error())
		return
	}
	source, id, err := h.parse(body)
	if err != nil {
		reply(w, http.StatusBadRequest, "webhook: event not understood: "+err.Error())
		return
	}
	ev := Event{Source: source, ID: id, Body: body}
	digest := sha256.Sum256(body)
	res, err := h.engine.Run(r.Context(), eventKey(source, id), func(ctx context.Context) ([]byte, error) {
		if err := h.apply(ctx, ev); err != nil {
			return nil, &applyFailed{err}
		}
		return nil, nil
	}, &idem.RunOptions{
		Fingerprint: hex.EncodeToString(digest[:]),
		Retryable:   func(err error) bool { _, ok := errors.AsType[*applyFailed](err); return ok },
		MaxWait:     h.maxWait,
	})
	var se *idem.StoreError
	switch {
	case err == nil:
		if res.Replayed {
			w.Header().Set("Idempotent-Replayed", "true")
		}
		w.WriteHeader(http.StatusNoContent)
	case errors.As(err, new(*applyFailed)):
		h.logErr(r, slog.LevelWarn, "webhook: apply failed; the sender will retry", ev, err)
		reply(w, http.StatusInternalServerError, "event not applied; retry")
	case errors.Is(err, idem.ErrMismatch):
		h.logErr(r, slog.LevelError, "webhook: event id seen before with a different body", ev, err)
		reply(w, http.StatusUnprocessableEntity, "event id seen before with a different body")
	case errors.Is(err, idem.ErrInFlight):
		w.Header().Set("Retry-After", "1")
		reply(w, http.StatusConflict, "event being applied by another delivery; retry")
	case errors.As(err, &se) && !se.Executed:
		h.logErr(r, slog.LevelWarn, "webhook: store unavailable; event not applied", ev, err)
		w.Header().Set("Retry-After", "1")
		reply(w, http.StatusServiceUnavailable, "event not applied; retry")
	default:
		// Lease lost or the outcome not recorded: apply may have run.
		// The sender's retry settles it, and apply must tolerate that.
		h.logErr(r, slog.LevelError, "webhook: event outcome not recorded", ev, err)
		reply(w, http.StatusInternalServerError, "event outcome unsettled; retry")
	}
}

func (h *Handler) logErr(r *http.Request, level slog.Level, msg string, ev Event, err error) {
	h.log.LogAttrs(r.Context(), level, msg,
		slog.String("source", ev.Source), slog.String("id", ev.ID), slog.Any("error", err))
}

// eventKey is the engine key of an event: source and id, length-prefixed
// and hashed, so that no two pairs share a key and any id is a valid key.
func eventKey(source, id string) string {
	b := make([]byte, 0, 16+len(source)+len(id))
	b = binary.BigEndian.AppendUint64(b, uint64(len(source)))
	b = append(b, source...)
	b = binary.BigEndian.AppendUint64(b, uint64(len(id)))
	b = append(b, id...)
	sum := sha256.Sum256(b)
	return "event:" + hex.EncodeToString(sum[:])
}

// reply writes a short plain-text answer; senders log it, nobody parses it.
func reply(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(msg)+1))
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}
