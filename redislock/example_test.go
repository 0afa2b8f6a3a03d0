package redislock_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/redislock"
)

// A Backend over a go-redis client you configure yourself; New does not
// contact Redis.
func ExampleNew() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6380", ContextTimeoutEnabled: true})
	defer rdb.Close()
	b, err := redislock.New(redislock.Config{Client: rdb, KeyPrefix: "myapp:"})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	info := b.Info()
	fmt.Println(info.Kind, info.Guarantee, "tokens:", info.Tokens)
	fmt.Println(b.Key("nightly-report"))
	// Output:
	// redis efficiency tokens: true
	// myapp:{nightly-report}
}

func ExampleParseURL() {
	opts, err := redislock.ParseURL("redis://app:secret@127.0.0.1:6380/2")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(opts.Addr, opts.Username, opts.DB)

	_, err = redislock.ParseURL("redis://127.0.0.1") // no port
	fmt.Println(errors.Is(err, fencer.ErrInvalid))
	// Output:
	// 127.0.0.1:6380 app 2
	// true
}

// The usual way: open a Backend from a URL and hand it to a fencer.Client,
// which renews the lease and tells you when it is lost. (Not run: it needs
// a Redis server.)
func ExampleOpen() {
	b, err := redislock.Open("redis://127.0.0.1:6380")
	if err != nil {
		log.Fatal(err)
	}
	c := fencer.New(b, nil) // c owns b now
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lease, err := c.Acquire(ctx, "nightly-report", &fencer.Options{TTL: 30 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer lease.Release(context.Background())

	// The token increases with every grant while Redis keeps its data; it
	// is not safe for fencing (SafeToken is false), but a storage that
	// records it can still turn away most stale writers.
	fmt.Println("token", lease.Token(), "safe:", lease.SafeToken())
	select {
	case <-lease.Done():
		log.Print("lost the lock: stop the work")
	case <-time.After(time.Second): // the work
	}
}
