// Package redisstore is a store.Store on Redis, for services that run on
// many nodes and want a claim or a replay in one round trip.
//
// Every store step is one atomic step in one round trip. A claim is a plain
// SET … NX GET, which writes a new in-progress record or returns the one
// there (a replay); only a record in progress or free takes a second round
// trip, to the claim script. Renewing, completing, releasing and waiting
// are Lua scripts, called by SHA (and re-sent in full if the server answers
// NOSCRIPT). A record is one string whose key carries the engine's store
// key as its hash tag, so the store works on Redis Cluster. Its TTL is set
// with every change: the retention, plus the lease while in progress.
// Lease expiry is judged by the server's clock, never the client's: a
// lease's time left is the key's PTTL less the retention, so a record is
// never dropped when its lease runs out, only a retention later. Waiters
// are woken through one pub/sub subscription per Store, shared by all of
// them, with a bounded poll to cover lost messages.
//
// It needs Redis 7.0 or later (SET with both NX and GET); New checks.
//
// # Durability
//
// Redis acknowledges writes before they reach a replica, and a failover can
// lose them: a lost in-progress record lets a second holder run, a lost
// completed record lets a retry run fn again, a lost fence increment can
// hand out a fence twice. Config.Replicas narrows the window (a
// completion not acknowledged by enough replicas is reported as not
// durable) but, as Redis's own documentation says of WAIT, does not make
// Redis strongly consistent. Use Redis where a rare second execution is
// tolerable or fenced downstream; money must not rest on it alone.
//
// New refuses a server whose maxmemory-policy can evict keys: an evicted
// record is a second execution.
package redisstore

import (
	"context"
	"crypto/sha1"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/internal/waitlist"
	"github.com/idemhq/idem/store"
)

// Defaults for Config.
const (
	DefaultPrefix         = "idem:"
	DefaultOpTimeout      = time.Second
	DefaultPollInterval   = time.Second
	DefaultReplicaTimeout = 100 * time.Millisecond
)

// ErrNotDurable is returned (wrapped) by Complete when fewer replicas than
// Config.Replicas acknowledged the record in time. The record is on the
// primary; a failover may still lose it.
var ErrNotDurable = errors.New("redisstore: completion not acknowledged by enough replicas")

// Config tunes a Store. A nil *Config, and every zero field, means the
// documented default.
type Config struct {
	// Prefix starts every Redis key and the notification channel, so stores
	// sharing a server stay apart. It must not contain '{' or '}'.
	// Default "idem:".
	Prefix string

	// OpTimeout bounds each store operation, so an unreachable or stalled
	// server becomes an error instead of a hang. Default 1s.
	OpTimeout time.Duration

	// PollInterval is how often a waiter re-reads the record in case a
	// notification was lost. Default 1s.
	PollInterval time.Duration

	// Replicas, if positive, makes Complete wait (Redis WAIT) until that
	// many replicas acknowledge the record, or ReplicaTimeout passes; a record
	// they do not acknowledge is reported with ErrNotDurable. Default 0:
	// don't wait.
	Replicas int
	// ReplicaTimeout bounds WAIT. Default 100ms.
	ReplicaTimeout time.Duration

	// AllowEvictingServer skips the maxmemory-policy check in New. Set it
	// only for a server that cannot evict for another reason, or where
	// CONFIG GET is not allowed and the operator has checked by hand.
	AllowEvictingServer bool

	// Logger receives notification-channel trouble. Default: discard.
	Logger *slog.Logger
}

func (c *Config) resolve() (Config, error) {
	var r Config
	if c != nil {
		r = *c
	}
	if r.Prefix == "" {
		r.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(r.Prefix, "{}") {
		return r, fmt.Errorf("redisstore: Prefix %q must not contain '{' or '}': they delimit hash tags", r.Prefix)
	}
	if r.OpTimeout == 0 {
		r.OpTimeout = DefaultOpTimeout
	}
	if r.PollInterval == 0 {
		r.PollInterval = DefaultPollInterval
	}
	if r.ReplicaTimeout == 0 {
		r.ReplicaTimeout = DefaultReplicaTimeout
	}
	if r.OpTimeout < 0 || r.PollInterval < 0 || r.ReplicaTimeout < 0 || r.Replicas < 0 {
		return r, errors.New("redisstore: OpTimeout, PollInterval, ReplicaTimeout and Replicas must not be negative")
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	return r, nil
}

var (
	//go:embed lua/lib.lua
	libLua string
	//go:embed lua/claim.lua
	claimLua string
	//go:embed lua/renew.lua
	renewLua string
	//go:embed lua/complete.lua
	completeLua string
	//go:embed lua/release.lua
	releaseLua string
	//go:embed lua/wait.lua
	waitLua string
)

// Store is a store.Store on Redis. It is safe for concurrent use. Close it
// to end its notification subscription; the client stays the caller's.
type Store struct {
	client  rueidis.Client
	cfg     Config
	channel string

	claim, renew, complete, release, wait *rueidis.Lua
	completeSource, completeSHA           string // for the WAIT path, which sends EVALSHA itself

	waiters   waitlist.List[struct{}]
	deadlines deadlines
	stop      context.CancelFunc
	stopped   chan struct{}
}

var _ store.Store = (*Store)(nil)

// New returns a Store on client, which may be a standalone, Sentinel or
// Cluster client. It checks the server's version and eviction policy and
// subscribes to the notification channel before returning.
func New(ctx context.Context, client rueidis.Client, cfg *Config) (*Store, error) {
	c, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	if err := checkVersion(ctx, client, c.OpTimeout); err != nil {
		return nil, err
	}
	if !c.AllowEvictingServer {
		if err := checkEviction(ctx, client, c.OpTimeout); err != nil {
			return nil, err
		}
	}
	script := func(body string) *rueidis.Lua { return rueidis.NewLuaScript(libLua + "\n" + body) }
	completeSource := libLua + "\n" + completeLua
	s := &Store{
		completeSource: completeSource,
		completeSHA:    fmt.Sprintf("%x", sha1.Sum([]byte(completeSource))),
		client:         client,
		cfg:            c,
		channel:        c.Prefix + "done",
		claim:          script(claimLua),
		renew:          script(renewLua),
		complete:       script(completeLua),
		release:        script(releaseLua),
		wait:           script(waitLua),
		deadlines:      deadlines{timeout: c.OpTimeout},
		stopped:        make(chan struct{}),
	}
	if err := s.subscribe(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Close ends the notification subscription and wakes any waiters. It does
// not close the client.
func (s *Store) Close() error {
	s.stop()
	<-s.stopped
	s.waiters.WakeAll(struct{}{})
	return nil
}

// eachNode runs check on the server, or on every cluster node, within
// timeout in all, and returns the first error.
func eachNode(ctx context.Context, client rueidis.Client, timeout time.Duration, check func(ctx context.Context, addr string, node rueidis.Client) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for addr, node := range client.Nodes() {
		if err := check(ctx, addr, node); err != nil {
			return err
		}
	}
	return nil
}

// checkVersion refuses a server, or any cluster node, older than Redis 7.0,
// which cannot run a claim's SET with both NX and GET.
func checkVersion(ctx context.Context, client rueidis.Client, timeout time.Duration) error {
	return eachNode(ctx, client, timeout, func(ctx context.Context, addr string, node rueidis.Client) error {
		info, err := node.Do(ctx, node.B().Info().Section("server").Build()).ToString()
		if err != nil {
			return fmt.Errorf("redisstore: read the server version of %s: %w", addr, err)
		}
		if version, ok := supported(info); !ok {
			return fmt.Errorf("redisstore: %s runs Redis %q; the store needs 7.0 or later", addr, version)
		}
		return nil
	})
}

// supported reads redis_version from INFO server and reports whether it is
// 7.0 or later.
func supported(info string) (version string, ok bool) {
	_, version, _ = strings.Cut(info, "redis_version:")
	version, _, _ = strings.Cut(version, "\r\n")
	major, _, _ := strings.Cut(version, ".")
	n, err := strconv.Atoi(major)
	return version, err == nil && n >= 7
}

// checkEviction refuses a server, or any cluster node, whose
// maxmemory-policy lets it evict keys.
func checkEviction(ctx context.Context, client rueidis.Client, timeout time.Duration) error {
	return eachNode(ctx, client, timeout, func(ctx context.Context, addr string, node rueidis.Client) error {
		conf, err := node.Do(ctx, node.B().ConfigGet().Parameter("maxmemory-policy").Build()).AsStrMap()
		if err != nil {
			return fmt.Errorf("redisstore: read maxmemory-policy on %s (set Config.AllowEvictingServer to skip this check once you have confirmed the policy): %w", addr, err)
		}
		if policy := conf["maxmemory-policy"]; policy != "noeviction" {
			return fmt.Errorf("redisstore: %s has maxmemory-policy %q, which can evict idempotency records and so run fn twice; "+
				"set it to noeviction, or Config.AllowEvictingServer if the server cannot evict for another reason", addr, policy)
		}
		return nil
	})
}

// recordKey is the Redis key of a store key: the store key is the hash tag,
// so everything of one record lives in one cluster slot.
func (s *Store) recordKey(key string) string {
	return s.cfg.Prefix + "{" + key + "}"
}

// op bounds one store operation by OpTimeout; an error if ctx is done
// already.
func (s *Store) op(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	opCtx, cancel := s.deadlines.bound(ctx)
	return opCtx, cancel, nil
}

// Claim implements store.Store. Its first step is a plain SET … NX GET: it
// writes a new in-progress record with fence 1 if the key has none, and
// returns the record if it has one, so a first claim and a replay each
// cost one command that Redis runs about as fast as a GET. Only a record
// in progress or free needs the claim script, a second round trip: a
// takeover, a wait, a retry after a release.
func (s *Store) Claim(ctx context.Context, p store.ClaimParams) (store.ClaimResult, error) {
	ctx, cancel, err := s.op(ctx)
	if err != nil {
		return store.ClaimResult{}, s.failed(ctx, "claim", err)
	}
	defer cancel()
	key := s.recordKey(p.Key)
	found, err := s.client.Do(ctx, s.client.B().Set().Key(key).Value(newRecord(p)).
		Nx().Get().PxMilliseconds((p.LeaseTTL + p.Retention).Milliseconds()).Build()).ToString()
	switch {
	case rueidis.IsRedisNil(err):
		return store.ClaimResult{Status: store.ClaimAcquired, Lease: store.Lease{Key: p.Key, Owner: p.Owner, Fence: 1}}, nil
	case err != nil:
		return store.ClaimResult{}, s.failed(ctx, "claim", err)
	case strings.HasPrefix(found, "c"):
		return completedRecord(p, found)
	}
	reply, err := s.claim.Exec(ctx, s.client, []string{key}, []string{
		p.Owner, p.Fingerprint, millis(p.LeaseTTL), millis(p.Retention), s.channel,
	}).ToArray()
	if err != nil {
		return store.ClaimResult{}, s.failed(ctx, "claim", err)
	}
	return parseClaim(p, reply)
}

// newRecord is the in-progress record a first claim writes, in the format
// lua/lib.lua describes: fence 1, not waited on.
func newRecord(p store.ClaimParams) string {
	var b strings.Builder
	b.Grow(48 + len(p.Owner) + len(p.Fingerprint))
	b.WriteString("p1:")
	b.WriteString(strconv.FormatInt(p.LeaseTTL.Milliseconds(), 10))
	b.WriteByte(':')
	b.WriteString(strconv.FormatInt(p.Retention.Milliseconds(), 10))
	b.WriteString(":0:")
	b.WriteString(strconv.Itoa(len(p.Owner)))
	b.WriteByte(':')
	b.WriteString(p.Owner)
	b.WriteString(p.Fingerprint)
	return b.String()
}

// completedRecord reads a completed record, c<fence>:<len(fp)>:<fp><outcome>:
// a replay for the same fingerprint, a mismatch for another.
func completedRecord(p store.ClaimParams, v string) (store.ClaimResult, error) {
	_, rest, ok1 := strings.Cut(v[1:], ":")
	n, rest, ok2 := strings.Cut(rest, ":")
	fpLen, err := strconv.Atoi(n)
	if !ok1 || !ok2 || err != nil || fpLen < 0 || fpLen > len(rest) {
		return store.ClaimResult{}, errors.New("redisstore: claim: malformed completed record")
	}
	if rest[:fpLen] != p.Fingerprint {
		return store.ClaimResult{Status: store.ClaimMismatch}, nil
	}
	return store.ClaimResult{Status: store.ClaimCompleted, Outcome: []byte(rest[fpLen:])}, nil
}

func parseClaim(p store.ClaimParams, reply []rueidis.RedisMessage) (store.ClaimResult, error) {
	bad := func(err error) (store.ClaimResult, error) {
		return store.ClaimResult{}, fmt.Errorf("redisstore: claim: unexpected reply: %w", err)
	}
	if len(reply) == 0 {
		return bad(errors.New("empty"))
	}
	status, err := reply[0].AsInt64()
	if err != nil {
		return bad(err)
	}
	switch {
	case status == 1 && len(reply) == 3:
		fence, err1 := reply[1].AsInt64()
		tookOver, err2 := reply[2].AsInt64()
		if err := errors.Join(err1, err2); err != nil {
			return bad(err)
		}
		return store.ClaimResult{
			Status:   store.ClaimAcquired,
			Lease:    store.Lease{Key: p.Key, Owner: p.Owner, Fence: fence},
			TookOver: tookOver == 1,
		}, nil
	case status == 2 && len(reply) == 2:
		outcome, err := reply[1].AsBytes()
		if err != nil {
			return bad(err)
		}
		return store.ClaimResult{Status: store.ClaimCompleted, Outcome: outcome}, nil
	case status == 3 && len(reply) == 3:
		fence, err1 := reply[1].AsInt64()
		left, err2 := reply[2].AsInt64()
		if err := errors.Join(err1, err2); err != nil {
			return bad(err)
		}
		return store.ClaimResult{
			Status:     store.ClaimInFlight,
			Lease:      store.Lease{Key: p.Key, Fence: fence},
			RetryAfter: time.Duration(left) * time.Millisecond,
		}, nil
	case status == 4:
		return store.ClaimResult{Status: store.ClaimMismatch}, nil
	}
	return bad(fmt.Errorf("status %d with %d fields", status, len(reply)))
}

// Renew implements store.Store.
func (s *Store) Renew(ctx context.Context, l store.Lease) error {
	ctx, cancel, err := s.op(ctx)
	if err != nil {
		return s.failed(ctx, "renew", err)
	}
	defer cancel()
	return s.fenced(ctx, "renew", s.renew, l)
}

// Complete implements store.Store. With Config.Replicas it also waits for
// replicas, on the same connection, and reports ErrNotDurable if too few
// acknowledge.
func (s *Store) Complete(ctx context.Context, l store.Lease, outcome []byte) error {
	ctx, cancel, err := s.op(ctx)
	if err != nil {
		return s.failed(ctx, "complete", err)
	}
	defer cancel()
	if s.cfg.Replicas > 0 {
		return s.completeDurably(ctx, l, outcome)
	}
	return s.fenced(ctx, "complete", s.complete, l, rueidis.BinaryString(outcome), s.channel)
}

// Release implements store.Store.
func (s *Store) Release(ctx context.Context, l store.Lease) error {
	ctx, cancel, err := s.op(ctx)
	if err != nil {
		return s.failed(ctx, "release", err)
	}
	defer cancel()
	return s.fenced(ctx, "release", s.release, l, s.channel)
}

// fenced runs a compare-and-set script on l's record: its reply is 1, or 0
// when l's fence is no longer current.
func (s *Store) fenced(ctx context.Context, op string, script *rueidis.Lua, l store.Lease, extra ...string) error {
	args := append([]string{l.Owner, strconv.FormatInt(l.Fence, 10)}, extra...)
	n, err := script.Exec(ctx, s.client, []string{s.recordKey(l.Key)}, args).AsInt64()
	if err != nil {
		return s.failed(ctx, op, err)
	}
	if n != 1 {
		return idem.ErrLeaseLost
	}
	return nil
}

// completeDurably sends the completion and WAIT on one dedicated connection:
// WAIT counts the replicas that have the writes of its own connection.
func (s *Store) completeDurably(ctx context.Context, l store.Lease, outcome []byte) error {
	key := s.recordKey(l.Key)
	args := []string{l.Owner, strconv.FormatInt(l.Fence, 10), rueidis.BinaryString(outcome), s.channel}
	var done, acked int64
	err := s.client.Dedicated(func(c rueidis.DedicatedClient) error {
		// Commands are recycled once sent: build each one afresh.
		wait := func() rueidis.Completed {
			return c.B().Wait().Numreplicas(int64(s.cfg.Replicas)).Timeout(s.cfg.ReplicaTimeout.Milliseconds()).Build()
		}
		replies := c.DoMulti(ctx, c.B().Evalsha().Sha1(s.completeSHA).Numkeys(1).Key(key).Arg(args...).Build(), wait())
		if rerr, ok := rueidis.IsRedisErr(replies[0].Error()); ok && rerr.IsNoScript() {
			// The server has lost its script cache: send the script itself.
			replies = c.DoMulti(ctx, c.B().Eval().Script(s.completeSource).Numkeys(1).Key(key).Arg(args...).Build(), wait())
		}
		var err1, err2 error
		done, err1 = replies[0].AsInt64()
		acked, err2 = replies[1].AsInt64()
		return errors.Join(err1, err2)
	})
	if err != nil {
		return s.failed(ctx, "complete", err)
	}
	if done != 1 {
		return idem.ErrLeaseLost
	}
	if acked < int64(s.cfg.Replicas) {
		return fmt.Errorf("%w: %d of %d within %s", ErrNotDurable, acked, s.cfg.Replicas, s.cfg.ReplicaTimeout)
	}
	return nil
}

// failed translates a client error, the one place that does. ctx is the
// operation's, or nil if it never started.
func (s *Store) failed(ctx context.Context, op string, err error) error {
	if rerr, ok := rueidis.IsRedisErr(err); ok && strings.HasPrefix(rerr.Error(), "WRONGTYPE") {
		return fmt.Errorf("redisstore: %s: the key holds something other than a record of this store, such as a record an earlier redisstore kept as a hash; nothing runs under this key until it is deleted or expires: %w", op, err)
	}
	if errors.Is(err, context.DeadlineExceeded) && ctx != nil && ctx.Err() != nil {
		return fmt.Errorf("redisstore: %s: no reply within %s: %w", op, s.cfg.OpTimeout, err)
	}
	return fmt.Errorf("redisstore: %s: %w", op, err)
}

func millis(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
