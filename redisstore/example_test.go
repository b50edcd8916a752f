package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/redis/rueidis"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/redisstore"
)

// These examples need a Redis server, so they are compiled but not run.

// An engine on Redis. The client may be a standalone, Sentinel or Cluster
// client; New checks the server's version and eviction policy.
func Example() {
	ctx := context.Background()
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{"127.0.0.1:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	store, err := redisstore.New(ctx, client, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	engine, err := idem.New(store, &idem.Config{Namespace: "emails"})
	if err != nil {
		log.Fatal(err)
	}

	res, err := engine.Run(ctx, "welcome-user-42", func(ctx context.Context) ([]byte, error) {
		return []byte("sent"), sendWelcome(ctx, 42)
	}, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s replayed=%t\n", res.Value, res.Replayed)
}

// With Config.Replicas, Complete waits (Redis WAIT) until that many
// replicas have the record. A record they do not acknowledge in time is
// reported as not recorded: fn ran, and a failover may still lose the
// record, so a retry may run fn again. It narrows the window of a
// failover; it does not close it.
func ExampleConfig() {
	ctx := context.Background()
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{"127.0.0.1:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	store, err := redisstore.New(ctx, client, &redisstore.Config{Replicas: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	engine, err := idem.New(store, nil)
	if err != nil {
		log.Fatal(err)
	}

	_, err = engine.Run(ctx, "welcome-user-42", func(ctx context.Context) ([]byte, error) {
		return nil, sendWelcome(ctx, 42)
	}, nil)
	switch {
	case errors.Is(err, redisstore.ErrNotDurable):
		// Also matches idem.ErrNotRecorded: the email went out, and its
		// record is on the primary only.
		log.Print("sent, but not yet on a replica: ", err)
	case err != nil:
		log.Fatal(err)
	}
}

// sendWelcome stands in for a side effect that a rare second run may
// repeat: Redis can lose a record on failover.
func sendWelcome(ctx context.Context, user int) error { return nil }
