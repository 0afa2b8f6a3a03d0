package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/backends"
	"github.com/fencerlock/fencer/client"
	"github.com/fencerlock/fencer/internal/api/fencerv1"
	"github.com/fencerlock/fencer/internal/rpcclient"
)

// serverConn parses a fencer:// backend URL (from the flag, FENCER_BACKEND
// or the default) and connects to the cluster.
func serverConn(env *environment, cmd, url string) (*rpcclient.Conn, int) {
	if url == "" {
		url = env.getenv("FENCER_BACKEND")
	}
	if url == "" {
		url = backends.DefaultURL
	}
	cfg, err := client.ParseURL(url)
	if err != nil {
		fmt.Fprintf(env.stderr, "fencer %s: %v (%s talks to a fencer server)\n", cmd, err, cmd)
		return nil, exitUsage
	}
	return rpcclient.New(rpcclient.Config{Endpoints: cfg.Endpoints}), exitOK
}

// serverQuery is a read-only command against a fencer cluster (status,
// members): the flags they share, their positional arguments, the
// connection, and one query bounded by --timeout.
type serverQuery struct {
	cmd, usage string
	args       func(fs *flag.FlagSet) error // checks the positional arguments
	run        func(ctx context.Context, conn *rpcclient.Conn, asJSON bool) int
}

func (q serverQuery) main(ctx context.Context, env *environment, args []string) int {
	fs := flag.NewFlagSet("fencer "+q.cmd, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprint(env.stderr, q.usage+"\n\nFlags:\n")
		fs.PrintDefaults()
	}
	url := fs.String("backend", "", "fencer:// URL of the cluster; default $FENCER_BACKEND, else "+backends.DefaultURL)
	asJSON := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if err := q.args(fs); err != nil {
		fmt.Fprintf(env.stderr, "fencer %s: %v\n", q.cmd, err)
		return exitUsage
	}
	conn, code := serverConn(env, q.cmd, *url)
	if conn == nil {
		return code
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	return q.run(ctx, conn, *asJSON)
}

func printJSON(env *environment, v any) {
	enc := json.NewEncoder(env.stdout)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// lockStatus is one lock in `fencer status --json`.
type lockStatus struct {
	Name          string   `json:"name"`
	HolderSession string   `json:"holder_session,omitempty"`
	Token         uint64   `json:"token,omitempty"`
	Since         string   `json:"since,omitempty"`
	Delayed       bool     `json:"delayed,omitempty"`
	Waiters       []string `json:"waiters"`
}

func sessionID(id uint64) string { return fmt.Sprintf("%016x", id) }

func statusCommand(ctx context.Context, env *environment, args []string) int {
	var name string
	return serverQuery{
		cmd:   "status",
		usage: "Usage: fencer status [--backend URL] [--json] [NAME]\n\nShows who holds each lock, with its token and waiters (every lock when NAME is absent),\nas a linearizable read through the leader.",
		args: func(fs *flag.FlagSet) error {
			if fs.NArg() > 1 {
				return fmt.Errorf("at most one lock name; got %d arguments", fs.NArg())
			}
			name = fs.Arg(0)
			if name != "" {
				return fencer.ValidateName(name)
			}
			return nil
		},
		run: func(ctx context.Context, conn *rpcclient.Conn, asJSON bool) int {
			return status(ctx, env, conn, name, asJSON)
		},
	}.main(ctx, env, args)
}

func status(ctx context.Context, env *environment, conn *rpcclient.Conn, name string, asJSON bool) int {
	st, err := conn.Status(ctx, &fencerv1.StatusRequest{Name: name})
	if err != nil {
		fmt.Fprintf(env.stderr, "fencer status: %v\n", err)
		return exitFailure
	}
	locks := make([]lockStatus, 0, len(st.Locks))
	for _, l := range st.Locks {
		ls := lockStatus{Name: l.Name, Token: l.Token, Delayed: l.Delayed, Waiters: []string{}}
		if l.HolderSession != 0 {
			ls.HolderSession = sessionID(l.HolderSession)
		}
		if l.SinceUnixMs != 0 {
			ls.Since = time.UnixMilli(l.SinceUnixMs).UTC().Format(time.RFC3339Nano)
		}
		for _, w := range l.Waiters {
			ls.Waiters = append(ls.Waiters, sessionID(w))
		}
		locks = append(locks, ls)
	}
	if asJSON {
		printJSON(env, map[string]any{"locks": locks, "last_token": st.LastToken, "sessions": st.Sessions, "raft_index": st.RaftIndex})
		return exitOK
	}
	if name != "" && len(locks) == 0 {
		fmt.Fprintf(env.stdout, "lock %q is free and nobody waits for it (last token issued: %d)\n", name, st.LastToken)
		return exitOK
	}
	w := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "LOCK\tHOLDER SESSION\tTOKEN\tSINCE\tWAITERS")
	for _, l := range locks {
		holder := l.HolderSession
		if l.Delayed {
			holder = "(lock-delay)"
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%d %s\n", l.Name, holder, l.Token, l.Since, len(l.Waiters), strings.Join(l.Waiters, " "))
	}
	w.Flush()
	fmt.Fprintf(env.stdout, "%d locks; %d sessions; last token issued: %d\n", len(locks), st.Sessions, st.LastToken)
	return exitOK
}

func membersCommand(ctx context.Context, env *environment, args []string) int {
	return serverQuery{
		cmd:   "members",
		usage: "Usage: fencer members [--backend URL] [--json]\n\nLists the cluster's nodes with their roles, as the leader sees them.",
		args: func(fs *flag.FlagSet) error {
			if fs.NArg() > 0 {
				return fmt.Errorf("unexpected argument %q", fs.Arg(0))
			}
			return nil
		},
		run: func(ctx context.Context, conn *rpcclient.Conn, asJSON bool) int {
			return members(ctx, env, conn, asJSON)
		},
	}.main(ctx, env, args)
}

func members(ctx context.Context, env *environment, conn *rpcclient.Conn, asJSON bool) int {
	ms, err := conn.Members(ctx, &fencerv1.MembersRequest{})
	if err != nil {
		fmt.Fprintf(env.stderr, "fencer members: %v\n", err)
		return exitFailure
	}
	type member struct {
		ID            string `json:"id"`
		Role          string `json:"role"`
		ClientAddress string `json:"client_address"`
		RaftAddress   string `json:"raft_address"`
	}
	out := make([]member, 0, len(ms.Members))
	for _, m := range ms.Members {
		out = append(out, member{m.Id, m.Role, m.ClientAddress, m.RaftAddress})
	}
	if asJSON {
		printJSON(env, map[string]any{"members": out, "leader": ms.LeaderId})
		return exitOK
	}
	w := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tROLE\tCLIENT ADDRESS\tRAFT ADDRESS")
	for _, m := range out {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", m.ID, m.Role, m.ClientAddress, m.RaftAddress)
	}
	w.Flush()
	return exitOK
}
