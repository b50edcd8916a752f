// Package idemhttp makes net/http handlers idempotent with the
// Idempotency-Key request header, as the IETF httpapi draft
// (draft-ietf-httpapi-idempotency-key-header) and Stripe describe it.
//
//	engine, _ := idem.New(store, &idem.Config{Namespace: "api"})
//	protect, _ := idemhttp.Middleware(engine, userID, nil)
//	mux.Handle("POST /charges", protect(createCharge))
//
// The first request with a key runs the handler; its response is recorded
// through the engine and sent. A later request with the same key, from the
// same principal, to the same method and route, gets the recorded response
// back, with Idempotent-Replayed: true, and the handler does not run. The
// engine makes this hold across every process that shares its store.
//
// # Keys
//
// The key is the Idempotency-Key header field: a Structured Field string
// ("…", RFC 8941) as the draft specifies, or a bare token as Stripe's
// clients send. Published policy: 1–255 printable ASCII characters; UUIDs
// are recommended. The key is checked before any store access and is never
// logged. The record a request looks up is the SHA-256 of the principal,
// method, route and key, length-prefixed, so two principals never share a
// record and one principal's response is never replayed to another.
//
// Each request also has a fingerprint: the SHA-256 of its method, route,
// escaped path, query (parameters sorted) and raw body bytes, plus any
// Config.FingerprintHeaders. A key reused with a different fingerprint gets
// 422. A retry must send the same body bytes; a client that re-serialises
// JSON differently gets 422.
//
// # Statuses
//
// The middleware answers with these, each an application/problem+json body
// (RFC 9457) with a "code" member:
//
//   - 400: no Idempotency-Key where one is required, more than one, or a
//     malformed or over-long key (idempotency_key_missing,
//     idempotency_key_repeated, idempotency_key_malformed); or a body that
//     could not be read.
//   - 401: the principal function returned an error. Nothing is stored.
//   - 409 with Retry-After: a request with the same key is still in flight
//     (request_in_flight). With Config.MaxWait, the request first waits
//     that long for the other one's response.
//   - 413: the request body is over Config.MaxRequestBytes, checked before
//     the body is hashed. Nothing is stored.
//   - 422: the key was used with a different request (idempotency_key_reused).
//   - 503 with Retry-After: the store could not be reached before the
//     handler ran, which did not run (store_unavailable; fail closed); or
//     the engine lost its lease while the handler ran, and the outcome is
//     for whoever holds the key next (outcome_unsettled); or, under
//     MiddlewareTx, the transaction holding the handler's writes and its
//     response failed to commit or was not confirmed (outcome_unsettled).
//   - 500: anything else, with a generic body; the error goes to
//     Config.Logger with the request's lookup key, never the raw key.
//
// # What is recorded
//
// A response is recorded once the handler has run, whatever its status,
// 4xx and 500 included (as Stripe v1 does), with these exceptions:
//
//   - Statuses that invite a retry (Config.RetryStatuses, 429 and 503 by
//     default) go to the client, and the key is released: a retry runs the
//     handler again.
//   - A 5xx written after the client went away (the request's context is
//     done) releases the key: it is most likely the cancellation's doing,
//     not the request's outcome. Other statuses are recorded, so a client
//     that gave up still gets the outcome when it retries.
//   - A handler that panics releases the key; the panic goes on to
//     net/http, which drops the connection.
//   - Requests turned away before the handler runs (no or bad key, failed
//     authentication, body too large) store nothing. So do requests turned
//     away by middleware in front of this one, such as validation or rate
//     limiting: mount it last, just before the handler. A handler that
//     validates its own input can add 400 and 422 to RetryStatuses, so a
//     client may fix its request and send it again with the same key.
//   - If the response cannot be recorded after the handler ran (the store
//     failed), the client gets the handler's response, the failure is
//     logged at ERROR, and a retry may run the handler again. Under
//     MiddlewareTx the handler's writes share that fate, so the client gets
//     503 outcome_unsettled instead, never a response about writes that may
//     not exist; its retry with the same key replays the response if the
//     commit went through, and runs the handler again if it did not
//     (TestMiddlewareTxCommitFails).
//
// A replay has the recorded status and body, and only the replayable
// header fields: Content-Type, Location and Config.ReplayHeaders, plus a
// Content-Length and Idempotent-Replayed: true. Set-Cookie, Authorization
// and its kin, Proxy-* and hop-by-hop fields, and fields named in the
// response's Connection field, are never stored or replayed; the first
// response, sent live, has all its fields.
//
// # Large responses
//
// A response body over Config.MaxResponseBytes (256 KiB by default) is
// never stored truncated. The first client gets the whole response, passed
// through as the handler writes it; the record keeps its status and
// replayable fields and notes that the body was too large. Replays get 500
// (code response_not_stored, with original_status and the original
// Location): the request did run, and the client should look its result up
// rather than send a new request. A 5xx keeps generic clients from
// treating the request as failed and trying again with a new key.
//
// # Streaming and http.Flusher
//
// The response is held back until the handler returns, then recorded, then
// sent: a replay is byte for byte the first response. The ResponseWriter
// the handler gets implements http.Flusher, but Flush does nothing while the
// response is held, so a streamed response (server-sent events, progress
// output) reaches the client in one piece when the handler returns, or
// passes through live once it outgrows MaxResponseBytes, and is then not
// replayable. It does not implement http.Hijacker. Read and write
// deadlines and full duplex (http.ResponseController) go to the real
// connection. Informational (1xx) responses and trailers are dropped.
// Protect the request that creates something, not a stream.
//
// # Routers
//
// The middleware has the net/http shape, func(http.Handler) http.Handler,
// so it mounts on a ServeMux handler, as chi middleware, and in gin and echo
// through their net/http adapters (gin.WrapH, echo.WrapMiddleware); the
// examples show each. Mount it on the routes to protect, after
// authentication and validation.
package idemhttp
