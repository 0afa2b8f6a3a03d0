package traffic

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fencerlock/fencer"
	"github.com/fencerlock/fencer/internal/check/analyze"
	"github.com/fencerlock/fencer/internal/failpoint"
)

// The failpoints a worker evaluates, in the order of an iteration.
const (
	PointAfterAcquire        = "after-acquire"
	PointAfterRead           = "after-read"
	PointBeforeWrite         = "before-write"
	PointBeforeRelease       = "before-release"
	PointRedlockAfterReplies = "redlock-after-replies"
)

// Points lists every failpoint a worker evaluates.
func Points() []string {
	return []string{PointAfterAcquire, PointAfterRead, PointBeforeWrite, PointBeforeRelease, PointRedlockAfterReplies}
}

// NaiveScheme is the backend URL scheme of the naive Redis lock: SET NX PX
// with a fixed value given in the URL, compare-and-delete release (with
// that same value):
//
//	naive-redis://host:port?value=V
const NaiveScheme = "naive-redis"

// UnfencedToken is the token an unfenced worker sends with every request.
const UnfencedToken = 1

// Defaults of the zero Config fields.
const (
	DefaultLock           = "L"
	DefaultTTL            = 3 * time.Second
	DefaultAcquireTimeout = 30 * time.Second
	DefaultStoreTimeout   = 5 * time.Second
)

// Config configures one worker. A zero field means its default, where one
// is named.
type Config struct {
	// Name is the worker's process name in the history, e.g. "c1".
	// Required.
	Name string
	// Incarnation numbers the starts of this worker (1, 2, ... after
	// restarts); it makes the worker's set elements unique across them.
	// Default 1.
	Incarnation int
	// History is the path of the history file to create; it must not
	// exist. Required.
	History string
	// Backend is the lock backend's URL (fencer://, postgres://, redis://,
	// redlock:// or naive-redis://). Required.
	Backend string
	// Lock is the lock's name. Default DefaultLock.
	Lock string
	// Key is the store key the lock protects. Default: the lock's name.
	Key string
	// Store is the fenced store's base URL, http://host:port. Required.
	Store string
	// Workload is counter (default) or set.
	Workload analyze.Workload
	// Iterations is how many iterations to run; 0 runs until ctx ends.
	Iterations int
	// TTL is the lease's time to live. Default DefaultTTL.
	TTL time.Duration
	// AcquireTimeout bounds one acquire, waiting included. Default 30s.
	AcquireTimeout time.Duration
	// StoreTimeout bounds one store request. Default 5s.
	StoreTimeout time.Duration
	// Hold is the work time between the read and the write. Default 0.
	Hold time.Duration
	// Think is the pause between iterations. Default 0.
	Think time.Duration
	// Unfenced sends UnfencedToken instead of the lease's token; see the
	// package documentation. Required for backends without tokens.
	Unfenced bool
	// NoLeaseCheck skips the look at the lease before the write: the
	// client trusts the validity it was given at acquire, as most Redlock
	// users do.
	NoLeaseCheck bool
	// Failpoints arms failpoints (package failpoint's spec, names from
	// Points). Default none.
	Failpoints string
	// RedlockNodeTimeout is redlock.Config.NodeTimeout for a redlock://
	// backend. Default 0: the backend's own (TTL/20, 2 to 50 ms).
	RedlockNodeTimeout time.Duration
	// Via routes a fencer:// backend's connections: a node's client
	// address (as in the URL, and as followers name the leader) to the
	// address the worker dials instead, its own proxy of that link. Then
	// a redirect to the leader goes through the worker's proxy too.
	// Default none: dial the addresses as they are.
	Via map[string]string
}

// ViaArg formats a Via map as the --via flag takes it: addr=proxy pairs,
// comma-separated, in address order.
func ViaArg(via map[string]string) string {
	pairs := make([]string, 0, len(via))
	for _, a := range slices.Sorted(maps.Keys(via)) {
		pairs = append(pairs, a+"="+via[a])
	}
	return strings.Join(pairs, ",")
}

// parseVia parses the --via flag's value.
func parseVia(v string) (map[string]string, error) {
	if v == "" {
		return nil, nil
	}
	via := map[string]string{}
	for _, pair := range strings.Split(v, ",") {
		from, to, ok := strings.Cut(pair, "=")
		if !ok {
			return nil, fmt.Errorf("via %q: %q has no '='; accepted: host:port=host:port pairs, comma-separated", v, pair)
		}
		for _, a := range []string{from, to} {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return nil, fmt.Errorf("via %q: %q is not host:port; accepted: host:port=host:port pairs, comma-separated", v, a)
			}
		}
		via[from] = to
	}
	return via, nil
}

// withDefaults fills the zero fields and validates c.
func (c Config) withDefaults() (Config, error) {
	if c.Incarnation == 0 {
		c.Incarnation = 1
	}
	if c.Lock == "" {
		c.Lock = DefaultLock
	}
	if c.Key == "" {
		c.Key = c.Lock
	}
	if c.Workload == "" {
		c.Workload = analyze.WorkloadCounter
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.AcquireTimeout == 0 {
		c.AcquireTimeout = DefaultAcquireTimeout
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = DefaultStoreTimeout
	}
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("check-worker: "+format, a...)) }
	if c.Name == "" || strings.ContainsAny(c.Name, " \t\n/") {
		bad("name %q: give the worker's process name, e.g. c1, without blanks or '/'", c.Name)
	}
	if c.Incarnation < 1 {
		bad("incarnation %d: accepted 1 or more", c.Incarnation)
	}
	if c.History == "" {
		bad("no history file: give the path of a new file")
	}
	if c.Backend == "" {
		bad("no backend URL: give fencer://, postgres://, redis://, redlock:// or %s:// with its address", NaiveScheme)
	}
	if err := fencer.ValidateName(c.Lock); err != nil {
		bad("lock: %v", err)
	}
	if u, err := url.Parse(c.Store); err != nil || u.Scheme != "http" || u.Host == "" {
		bad("store %q: give the fenced store's base URL, http://host:port", c.Store)
	}
	if c.Workload != analyze.WorkloadCounter && c.Workload != analyze.WorkloadSet {
		bad("workload %q: accepted %q or %q", c.Workload, analyze.WorkloadCounter, analyze.WorkloadSet)
	}
	if c.Iterations < 0 {
		bad("iterations %d: accepted 0 (until stopped) or more", c.Iterations)
	}
	if err := fencer.ValidateTTL(c.TTL); err != nil {
		bad("ttl: %v", err)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"acquire timeout", c.AcquireTimeout}, {"store timeout", c.StoreTimeout}, {"hold", c.Hold}, {"think", c.Think}, {"redlock node timeout", c.RedlockNodeTimeout}} {
		if d.v < 0 || d.v > time.Hour {
			bad("%s %v: accepted 0 to 1h", d.name, d.v)
		}
	}
	if _, err := failpoint.Parse(c.Failpoints, &failpoint.Options{Names: Points()}); err != nil {
		bad("%v", err)
	}
	if len(c.Via) > 0 && !strings.HasPrefix(c.Backend, "fencer://") {
		bad("via: only a fencer:// backend is routed through proxies; this backend is %q", c.Backend)
	}
	return c, errors.Join(errs...)
}

// Args returns the `fencer check-worker` command line (without the command
// name) that runs c. Zero fields are left out.
func (c Config) Args() []string {
	var a []string
	add := func(name, v string) { a = append(a, "--"+name, v) }
	dur := func(name string, d time.Duration) {
		if d != 0 {
			add(name, d.String())
		}
	}
	add("name", c.Name)
	if c.Incarnation != 0 {
		add("incarnation", strconv.Itoa(c.Incarnation))
	}
	add("history", c.History)
	add("backend", c.Backend)
	if c.Lock != "" {
		add("lock", c.Lock)
	}
	if c.Key != "" {
		add("key", c.Key)
	}
	add("store", c.Store)
	if c.Workload != "" {
		add("workload", string(c.Workload))
	}
	if c.Iterations != 0 {
		add("iterations", strconv.Itoa(c.Iterations))
	}
	dur("ttl", c.TTL)
	dur("acquire-timeout", c.AcquireTimeout)
	dur("store-timeout", c.StoreTimeout)
	dur("hold", c.Hold)
	dur("think", c.Think)
	if c.Unfenced {
		a = append(a, "--unfenced")
	}
	if c.NoLeaseCheck {
		a = append(a, "--no-lease-check")
	}
	if c.Failpoints != "" {
		add("failpoints", c.Failpoints)
	}
	dur("redlock-node-timeout", c.RedlockNodeTimeout)
	if len(c.Via) > 0 {
		add("via", ViaArg(c.Via))
	}
	return a
}

// ParseArgs parses a `fencer check-worker` command line (without the
// command name) into a validated Config with its defaults filled in. Flag
// errors and usage go to output. It returns flag.ErrHelp for -h.
func ParseArgs(args []string, output io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("fencer check-worker", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.Usage = func() {
		fmt.Fprintln(output, "Usage: fencer check-worker --name NAME --history FILE --backend URL --store URL [FLAGS]")
		fmt.Fprintln(output, "\nA client worker of `fencer check` (started by its harness, not by hand).\n\nFlags:")
		fs.PrintDefaults()
	}
	workload := string(analyze.WorkloadCounter)
	fs.StringVar(&c.Name, "name", "", "process name in the history, e.g. c1")
	fs.IntVar(&c.Incarnation, "incarnation", 1, "start number of this worker (1 for the first)")
	fs.StringVar(&c.History, "history", "", "history file to create")
	fs.StringVar(&c.Backend, "backend", "", "lock backend URL")
	fs.StringVar(&c.Lock, "lock", DefaultLock, "lock name")
	fs.StringVar(&c.Key, "key", "", "store key (default: the lock name)")
	fs.StringVar(&c.Store, "store", "", "fenced store base URL, http://host:port")
	fs.StringVar(&workload, "workload", workload, "counter or set")
	fs.IntVar(&c.Iterations, "iterations", 0, "iterations to run; 0 until stopped")
	fs.DurationVar(&c.TTL, "ttl", DefaultTTL, "lease TTL")
	fs.DurationVar(&c.AcquireTimeout, "acquire-timeout", DefaultAcquireTimeout, "bound of one acquire")
	fs.DurationVar(&c.StoreTimeout, "store-timeout", DefaultStoreTimeout, "bound of one store request")
	fs.DurationVar(&c.Hold, "hold", 0, "work time between read and write")
	fs.DurationVar(&c.Think, "think", 0, "pause between iterations")
	fs.BoolVar(&c.Unfenced, "unfenced", false, "send token 1 with every request (a store without fencing)")
	fs.BoolVar(&c.NoLeaseCheck, "no-lease-check", false, "do not look at the lease before the write")
	fs.StringVar(&c.Failpoints, "failpoints", "", "failpoint spec, e.g. before-write=1*stop (points: "+strings.Join(Points(), ", ")+")")
	fs.DurationVar(&c.RedlockNodeTimeout, "redlock-node-timeout", 0, "Redlock per-node timeout (0: the backend's default)")
	via := fs.String("via", "", "fencer:// only: dial these node addresses through these proxies, addr=proxy,... (default none)")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	var err error
	if c.Via, err = parseVia(*via); err != nil {
		return Config{}, fmt.Errorf("check-worker: %w", err)
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("check-worker: unexpected argument %q; it takes flags only", fs.Arg(0))
	}
	c.Workload = analyze.Workload(workload)
	return c.withDefaults()
}
