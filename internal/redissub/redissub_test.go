package redissub

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/fencerlock/fencer/internal/testutil/redistest"
)

// TestSubscriberBarrier: a watcher is woken once its subscription is in
// effect (the PONG of the barrier after the SUBSCRIBE), before anything is
// published, and then by each publication; its channel is unsubscribed when
// it leaves.
func TestSubscriberBarrier(t *testing.T) {
	srv := redistest.Start(t, nil)
	rc := srv.Client()
	s := New(srv.Client(), slog.New(slog.DiscardHandler))
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wake := func(w *Waiter, what string) {
		t.Helper()
		select {
		case <-w.Wake:
		case <-ctx.Done():
			t.Fatalf("no wake-up for %s", what)
		}
	}

	w := NewWaiter(1)
	if err := s.Watch("chan-a", w); err != nil {
		t.Fatal(err)
	}
	wake(w, "the subscription taking effect")
	if n := rc.PubSubNumSub(ctx, "chan-a").Val()["chan-a"]; n != 1 {
		t.Fatalf("woken as subscribed, but Redis counts %d subscribers", n)
	}
	rc.Publish(ctx, "chan-a", "")
	wake(w, "a publication")

	// A second watcher of a channel already in effect is told at once.
	w2 := NewWaiter(1)
	if err := s.Watch("chan-a", w2); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w2.Wake:
	default:
		t.Fatal("a watcher of a subscribed channel was not told at once")
	}

	// A waiter that needs two subscriptions (redlock's majority) is woken
	// after both.
	w3 := NewWaiter(2)
	s.Watch("chan-b", w3)
	s.Watch("chan-c", w3)
	wake(w3, "two subscriptions")
	if n := rc.PubSubNumSub(ctx, "chan-b", "chan-c").Val(); n["chan-b"] != 1 || n["chan-c"] != 1 {
		t.Fatalf("woken after two subscriptions, but Redis counts %v", n)
	}

	s.Unwatch("chan-a", w)
	s.Unwatch("chan-a", w2)
	s.Unwatch("chan-b", w3)
	s.Unwatch("chan-c", w3)
	deadline := time.Now().Add(10 * time.Second)
	for len(rc.PubSubChannels(ctx, "*").Val()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("channels still subscribed after every watcher left: %v", rc.PubSubChannels(ctx, "*").Val())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.Watch("chan-a", w); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.Watch("chan-d", w); err == nil {
		t.Fatal("watch after close succeeded")
	}
}
