package redlock_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/redlock"
)

// A Backend over go-redis clients you configure yourself, one per
// independent Redis master; New does not contact them.
func ExampleNew() {
	var nodes []redis.UniversalClient
	for _, addr := range []string{"10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"} {
		c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
		defer c.Close()
		nodes = append(nodes, c)
	}
	b, err := redlock.New(redlock.Config{Clients: nodes, NodeTimeout: 20 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	info := b.Info()
	fmt.Println(info.Kind, info.Guarantee, "tokens:", info.Tokens, "safe tokens:", info.SafeTokens())

	_, err = redlock.New(redlock.Config{Clients: nodes[:2]})
	fmt.Println(err)
	// Output:
	// redlock efficiency tokens: false safe tokens: false
	// fencer: invalid redlock node count "2": Redlock needs an odd number of nodes, at least 3; accepted: 3, 5, 7, ... independent Redis masters
}

func ExampleParseURL() {
	opts, err := redlock.ParseURL("redlock://10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379")
	if err != nil {
		log.Fatal(err)
	}
	for _, o := range opts {
		fmt.Println(o.Addr)
	}
	_, err = redlock.ParseURL("redlock://10.0.0.1:6379,10.0.0.2:6379")
	fmt.Println(errors.Is(err, fencer.ErrInvalid))
	// Output:
	// 10.0.0.1:6379
	// 10.0.0.2:6379
	// 10.0.0.3:6379
	// true
}

// The usual way: open a Backend from a URL and hand it to a fencer.Client.
// A Redlock lease carries no token; code that needs correctness must ask
// for it, and is then refused this backend. (Not run: it needs three Redis
// servers.)
func ExampleOpen() {
	b, err := redlock.Open("redlock://10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379")
	if err != nil {
		log.Fatal(err)
	}
	c := fencer.New(b, nil) // c owns b now
	defer c.Close()
	ctx := context.Background()

	if _, err := c.Acquire(ctx, "ledger", &fencer.Options{Require: fencer.Correctness}); errors.Is(err, fencer.ErrGuarantee) {
		fmt.Println("refused: redlock gives efficiency only")
	}

	lease, err := c.Acquire(ctx, "nightly-report", nil)
	if err != nil {
		var qe *redlock.QuorumError
		if errors.As(err, &qe) {
			log.Fatalf("only %d of %d nodes granted: %v", qe.Confirmed, qe.Nodes, err)
		}
		log.Fatal(err)
	}
	defer lease.Release(context.Background())
	fmt.Println("token", lease.Token(), "safe:", lease.SafeToken()) // token 0 safe: false
}
