package idem

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// An outcome is what a store records for a completed key: the value fn
// returned, or its error as a code and message. Layout (version 1):
//
//	value: 0x01 'v' value...
//	error: 0x01 'e' uvarint(len(code)) code message...
const (
	outcomeVersion = 0x01
	kindValue      = 'v'
	kindError      = 'e'
	maxCodeLen     = 255
)

var errBadOutcome = errors.New("idem: recorded outcome is malformed")

type outcome struct {
	isErr   bool
	value   []byte
	code    string
	message string
}

func (o outcome) encode() []byte {
	if !o.isErr {
		b := make([]byte, 0, 2+len(o.value))
		return append(append(b, outcomeVersion, kindValue), o.value...)
	}
	b := make([]byte, 0, 2+binary.MaxVarintLen16+len(o.code)+len(o.message))
	b = append(b, outcomeVersion, kindError)
	b = binary.AppendUvarint(b, uint64(len(o.code)))
	b = append(b, o.code...)
	return append(b, o.message...)
}

// decodeOutcome parses b. The value aliases b.
func decodeOutcome(b []byte) (outcome, error) {
	if len(b) < 2 || b[0] != outcomeVersion {
		return outcome{}, fmt.Errorf("%w: unknown version", errBadOutcome)
	}
	switch b[1] {
	case kindValue:
		return outcome{value: b[2:]}, nil
	case kindError:
		n, w := binary.Uvarint(b[2:])
		if w <= 0 || n > maxCodeLen || uint64(len(b)-2-w) < n {
			return outcome{}, fmt.Errorf("%w: bad error code length", errBadOutcome)
		}
		rest := b[2+w:]
		return outcome{isErr: true, code: string(rest[:n]), message: string(rest[n:])}, nil
	}
	return outcome{}, fmt.Errorf("%w: unknown kind %q", errBadOutcome, b[1])
}

// ErrorCoder is an error that carries its own stable code. Recorded, the
// code replays as ReplayedError.Code, so a caller can tell errors apart
// after replay without registering them in Config.Errors. Codes longer
// than 255 bytes are not recorded.
type ErrorCoder interface {
	error
	ErrorCode() string
}

// errorOutcome records err: its registered code, or its own ErrorCode(), and
// its message.
func (e *Engine) errorOutcome(err error) outcome {
	o := outcome{isErr: true, message: err.Error()}
	for _, code := range e.codes {
		if errors.Is(err, e.cfg.Errors[code]) {
			o.code = code
			return o
		}
	}
	if c, ok := errors.AsType[ErrorCoder](err); ok && len(c.ErrorCode()) <= maxCodeLen {
		o.code = c.ErrorCode()
	}
	return o
}

// replayedError rebuilds the error of a recorded outcome.
func (e *Engine) replayedError(o outcome) error {
	return &ReplayedError{Code: o.code, Message: o.message, registered: e.cfg.Errors[o.code]}
}

// sortedCodes returns the codes of errs in a fixed order, so that an error
// matching several registered values always records the same code.
func sortedCodes(errs map[string]error) []string {
	codes := make([]string, 0, len(errs))
	for c := range errs {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	return codes
}
