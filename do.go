package idem

import (
	"context"
	"errors"
	"fmt"
)

// Do is Run for typed values: fn's value is encoded with Config.Codec (JSON
// by default) when recorded, and every caller, the one that ran fn
// included, gets it decoded from those bytes, so all callers see the same
// value. Result.Replayed reports whether fn ran in another call.
//
// A value that cannot be encoded is a bug in the caller: fn ran, nothing is
// recorded, the claim is released, and the error matches ErrNotRecorded.
func Do[T any](ctx context.Context, e *Engine, key string, fn func(context.Context) (T, error), opts *RunOptions) (Result[T], error) {
	o := releaseOnEncodeError(opts)
	res, err := e.Run(ctx, key, func(ctx context.Context) ([]byte, error) {
		v, err := fn(ctx)
		return e.encode(v, err)
	}, &o)
	return decode[T](e, res, err)
}

// DoTx is RunTx for typed values, as Do is for Run.
func DoTx[T, Tx any](ctx context.Context, e *Engine, key string, fn func(context.Context, Tx) (T, error), opts *RunOptions) (Result[T], error) {
	o := releaseOnEncodeError(opts)
	res, err := RunTx(ctx, e, key, func(ctx context.Context, tx Tx) ([]byte, error) {
		v, err := fn(ctx, tx)
		return e.encode(v, err)
	}, &o)
	return decode[T](e, res, err)
}

// releaseOnEncodeError returns opts with encode errors counted as
// transient, so a value that cannot be recorded releases the claim.
func releaseOnEncodeError(opts *RunOptions) RunOptions {
	var o RunOptions
	if opts != nil {
		o = *opts
	}
	userRetryable := o.Retryable
	o.Retryable = func(err error) bool {
		_, unencodable := errors.AsType[*encodeError](err)
		return unencodable || userRetryable != nil && userRetryable(err)
	}
	return o
}

func (e *Engine) encode(v any, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	b, err := e.cfg.Codec.Marshal(v)
	if err != nil {
		return nil, &encodeError{err}
	}
	return b, nil
}

func decode[T any](e *Engine, res result, err error) (Result[T], error) {
	out := Result[T]{Replayed: res.Replayed}
	if res.Value != nil {
		if derr := e.cfg.Codec.Unmarshal(res.Value, &out.Value); derr != nil {
			return out, errors.Join(err, fmt.Errorf("idem: decode recorded value as %T: %w", out.Value, derr))
		}
	}
	return out, err
}

// encodeError reports a value Do could not encode.
type encodeError struct{ err error }

func (e *encodeError) Error() string {
	return fmt.Sprintf("%v: encode value: %v", ErrNotRecorded, e.err)
}

func (e *encodeError) Unwrap() []error { return []error{ErrNotRecorded, e.err} }
