// Package testenv finds the servers that tests run against, and makes
// private ones where a test needs them (a database, a Redis). Tests talk to
// real Redis and PostgreSQL, found through environment variables with local
// defaults. A missing server skips the test, unless IDEM_REQUIRE_SERVICES=1
// (as CI sets): then it fails, so a skipped suite never passes as green.
// SyncBuffer collects the logs and output tests assert on.
package testenv

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"testing"
	"time"
)

// Environment variables and their defaults.
const (
	RedisURLVar         = "IDEM_TEST_REDIS_URL"
	DatabaseURLVar      = "IDEM_TEST_DATABASE_URL"
	RequireServicesVar  = "IDEM_REQUIRE_SERVICES"
	DefaultRedisURL     = "redis://127.0.0.1:6379/0"
	DefaultDatabaseURL  = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	reachabilityTimeout = 2 * time.Second
)

// RedisURL returns the URL of the test Redis, after checking that it
// answers on TCP.
func RedisURL(t testing.TB) string {
	t.Helper()
	return serverURL(t, "Redis", RedisURLVar, DefaultRedisURL)
}

// DatabaseURL returns the URL of the test PostgreSQL, after checking that it
// answers on TCP.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	return serverURL(t, "PostgreSQL", DatabaseURLVar, DefaultDatabaseURL)
}

func serverURL(t testing.TB, name, envVar, fallback string) string {
	t.Helper()
	raw := os.Getenv(envVar)
	if raw == "" {
		raw = fallback
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		t.Fatalf("%s=%q is not a URL with a host: %v", envVar, raw, err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, reachabilityTimeout)
	if err != nil {
		Missing(t, fmt.Sprintf("%s at %s (set %s)", name, u.Host, envVar), err)
	}
	conn.Close()
	return raw
}

// Missing reports a server or tool the test needs and cannot reach: it
// skips the test, or fails it when IDEM_REQUIRE_SERVICES=1.
func Missing(t testing.TB, what string, err error) {
	t.Helper()
	if os.Getenv(RequireServicesVar) == "1" {
		t.Fatalf("%s is required (%s=1) but unavailable: %v", what, RequireServicesVar, err)
	}
	t.Skipf("%s unavailable, skipping: %v", what, err)
}
