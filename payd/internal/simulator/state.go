package simulator

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/idemhq/idem/payd/internal/provider"
)

// ErrStateFileInUse is returned, wrapped, by Open when another simulator,
// in this process or another, has the StateFile open: two would give out
// the same ids (TestStateFileIsLocked).
var ErrStateFileInUse = errors.New("in use by another simulator (each state file serves one simulator at a time)")

// record is one change to the simulator's state, a line of its StateFile:
// a charge or a refund as it was made, what the request that made it
// asked for (which later requests under its key are compared with), and
// the number of the event it sent, 0 for none.
type record struct {
	Charge   *provider.Charge `json:"charge,omitempty"`
	Refund   *provider.Refund `json:"refund,omitempty"`
	Amount   int64            `json:"asked_amount"`
	Currency string           `json:"asked_currency,omitempty"`
	Event    int              `json:"event,omitempty"`
}

// load opens the state file at path, makes every change it records, in
// order, and keeps it open for the changes to come. s must be new.
func (s *Sim) load(path string) error {
	j, recs, torn, err := openJournal(path)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, rec := range recs {
		if err := s.check(rec); err != nil {
			j.close()
			return fmt.Errorf("simulator: state file %s: record %d is not a change this simulator could have made: %w", path, i+1, err)
		}
		s.apply(rec)
		s.lastCreated = created(rec)
	}
	if torn > 0 {
		s.log.Warn("simulator: dropped a record torn by a crash at the end of the state file; it was never answered, nor its event sent",
			slog.String("file", path), slog.Int("bytes", torn))
	}
	s.state = j
	return nil
}

// check reports why rec cannot follow the changes made so far: each
// record holds one charge or one refund, ids run in sequence, records
// were made in their Created order, and a refund fits what is left of its
// charge. s.mu must be held.
func (s *Sim) check(rec record) error {
	if (rec.Charge == nil) == (rec.Refund == nil) {
		return errors.New("it holds no charge or refund, or both")
	}
	if created(rec).Before(s.lastCreated) {
		return errors.New("it was made before the record ahead of it")
	}
	if c := rec.Charge; c != nil {
		if want := chargeID(len(s.charges) + 1); c.ID != want || c.AmountRefunded != 0 {
			return fmt.Errorf("charge %s, %d refunded, where charge %s, nothing refunded yet, was due", c.ID, c.AmountRefunded, want)
		}
		return nil
	}
	r := rec.Refund
	if want := refundID(len(s.refunds) + 1); r.ID != want {
		return fmt.Errorf("refund %s where refund %s was due", r.ID, want)
	}
	ch := s.chargeByID[r.ChargeID]
	if ch == nil || r.Amount <= 0 || r.Amount > ch.Amount-ch.AmountRefunded {
		return fmt.Errorf("refund %s of %d does not fit what is left of charge %q", r.ID, r.Amount, r.ChargeID)
	}
	return nil
}

// apply makes the change rec records. s.mu must be held.
func (s *Sim) apply(rec record) {
	if rec.Charge != nil {
		s.addCharge(rec.Charge, rec.Amount, rec.Currency)
	} else {
		s.addRefund(rec.Refund, rec.Amount)
	}
	s.events = max(s.events, rec.Event)
}

func created(rec record) time.Time {
	if rec.Charge != nil {
		return rec.Charge.Created
	}
	return rec.Refund.Created
}

// persist writes rec to the StateFile, if there is one, and syncs it,
// before the change is made or seen by anyone. A change it could not
// write is refused: 503 if the file is as it was, so nothing was done;
// 500 if the record may be in it yet, to be loaded at the next start, as
// a provider's 500 may come after it acted. s.mu must be held.
func (s *Sim) persist(rec record) *apiError {
	switch {
	case s.state == nil:
		return nil
	case s.closed():
		return &apiError{http.StatusServiceUnavailable, "unavailable", "the simulator is closed"}
	}
	kept, err := s.state.append(rec)
	if err == nil {
		return nil
	}
	s.log.Error("simulator: a charge or refund could not be recorded in the state file, so it was refused",
		slog.Bool("may_be_kept", kept), slog.Any("error", err))
	if kept {
		return &apiError{http.StatusInternalServerError, "server_error",
			"the simulator could not record this change in its state file, which may keep it: it may take effect at the next start"}
	}
	return &apiError{http.StatusServiceUnavailable, "state_unavailable",
		"the simulator could not record this change in its state file: nothing was done"}
}
