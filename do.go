package idem

import (
	"context"
	"errors"
	"fmt"
)

// Do is Run for typed values: fn's value is encoded with Config.Codec (JSON
// by default) when recorded, and every caller, the one that ran fn
// included, gets it decoded from those bytes, so all callers see the same
// value. replayed reports whether fn ran in another call.
//
// A value that cannot be encoded is a bug in the caller: fn ran, nothing is
// recorded, the claim is released, and the error matches ErrNotRecorded.
func Do[T any](ctx context.Context, e *Engine, key string, fn func(context.Context) (T, error), opts *RunOptions) (v T, replayed bool, err error) {
	var o RunOptions
	if opts != nil {
		o = *opts
	}
	userRetryable := o.Retryable
	o.Retryable = func(err error) bool {
		var ee *encodeError
		return errors.As(err, &ee) || userRetryable != nil && userRetryable(err)
	}
	res, err := e.Run(ctx, key, func(ctx context.Context) ([]byte, error) {
		v, err := fn(ctx)
		if err != nil {
			return nil, err
		}
		b, err := e.cfg.Codec.Marshal(v)
		if err != nil {
			return nil, &encodeError{err}
		}
		return b, nil
	}, &o)
	if res.Value != nil {
		if derr := e.cfg.Codec.Unmarshal(res.Value, &v); derr != nil {
			return v, res.Replayed, errors.Join(err, fmt.Errorf("idem: decode recorded value as %T: %w", v, derr))
		}
	}
	return v, res.Replayed, err
}

// encodeError reports a value Do could not encode.
type encodeError struct{ err error }

func (e *encodeError) Error() string {
	return fmt.Sprintf("%v: encode value: %v", ErrNotRecorded, e.err)
}

func (e *encodeError) Unwrap() []error { return []error{ErrNotRecorded, e.err} }
