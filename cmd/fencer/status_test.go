package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/client"
	"github.com/fencerlock/fencer/internal/cluster"
	"github.com/fencerlock/fencer/internal/testutil"
)

// TestStatusAndMembers runs `fencer status` and `fencer members` against a
// 3-node cluster of real server processes, asked through a follower.
func TestStatusAndMembers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Config{Binary: testutil.FencerBinary(t), Dir: t.TempDir(), Nodes: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	leader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var follower string
	for _, n := range c.Nodes() {
		if n.ID != leader {
			follower = n.Addr
		}
	}

	be, err := client.New(client.Config{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	fc := fencer.New(be, nil)
	defer fc.Close()
	lease, err := fc.Acquire(ctx, "job", nil)
	if err != nil {
		t.Fatal(err)
	}

	code, out := runFencer(t, "status", "--json", "--backend", "fencer://"+follower, "job")
	if code != exitOK {
		t.Fatalf("status: exit %d:\n%s", code, out)
	}
	var st struct {
		Locks     []lockStatus `json:"locks"`
		LastToken uint64       `json:"last_token"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if len(st.Locks) != 1 || st.Locks[0].Name != "job" || st.Locks[0].Token != uint64(lease.Token()) || st.Locks[0].HolderSession == "" {
		t.Fatalf("status --json shows %+v; want lock job held with token %d", st.Locks, lease.Token())
	}
	if st.LastToken != uint64(lease.Token()) {
		t.Errorf("last_token %d, want %d", st.LastToken, lease.Token())
	}

	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	code, out = runFencer(t, "status", "--backend", "fencer://"+follower, "job")
	if code != exitOK || !strings.Contains(out, `lock "job" is free`) {
		t.Fatalf("status after the release: exit %d:\n%s", code, out)
	}

	code, out = runFencer(t, "members", "--json", "--backend", "fencer://"+follower)
	if code != exitOK {
		t.Fatalf("members: exit %d:\n%s", code, out)
	}
	var ms struct {
		Members []struct {
			ID   string `json:"id"`
			Role string `json:"role"`
		} `json:"members"`
		Leader string `json:"leader"`
	}
	if err := json.Unmarshal([]byte(out), &ms); err != nil {
		t.Fatalf("members --json: %v\n%s", err, out)
	}
	if len(ms.Members) != 3 || ms.Leader != leader {
		t.Fatalf("members --json = %+v; want 3 members led by %s", ms, leader)
	}
}

func TestStatusAndMembersUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"two names", []string{"status", "a", "b"}, "at most one lock name; got 2 arguments"},
		{"bad name", []string{"status", "a\tb"}, "control character"},
		{"status bad url", []string{"status", "--backend", "redis://127.0.0.1:1"}, "talks to a fencer server"},
		{"status unknown flag", []string{"status", "--jsn"}, "flag provided but not defined"},
		{"members argument", []string{"members", "x"}, `unexpected argument "x"`},
		{"members bad url", []string{"members", "--backend", "fencer://"}, "talks to a fencer server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runFencer(t, tc.args...)
			if code != exitUsage || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, output:\n%s\nwant exit %d and %q", code, out, exitUsage, tc.want)
			}
		})
	}
}
