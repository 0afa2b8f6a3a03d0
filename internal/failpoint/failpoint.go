package failpoint

import (
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Kind is what a failpoint does when it fires.
type Kind string

// The kinds of action.
const (
	// Off does nothing.
	Off Kind = "off"
	// Sleep blocks the calling goroutine for Action.Duration.
	Sleep Kind = "sleep"
	// Stop stops the whole process with SIGSTOP until it gets SIGCONT.
	Stop Kind = "stop"
	// Kill kills the process with SIGKILL.
	Kill Kind = "kill"
)

// Action is one failpoint's configuration.
type Action struct {
	// Kind is what it does.
	Kind Kind
	// Duration is how long Sleep blocks.
	Duration time.Duration
	// Count is how many more times it fires; -1 means every time.
	Count int
}

// String returns the action in spec form, e.g. "1*stop" or "sleep(300ms)".
func (a Action) String() string {
	s := string(a.Kind)
	if a.Kind == Sleep {
		s = "sleep(" + a.Duration.String() + ")"
	}
	if a.Count >= 0 {
		s = strconv.Itoa(a.Count) + "*" + s
	}
	return s
}

// Options configure Parse. The zero value (or nil) accepts any point name
// and calls nothing when a point fires.
type Options struct {
	// Names, when not empty, are the only point names accepted: a spec
	// naming another point is an error that lists them, so a typo does not
	// silently disarm a demonstration.
	Names []string
	// OnFire is called just before a point's action runs (not for Off),
	// on the goroutine that called Eval.
	OnFire func(name string, a Action)
	// OnReturn is called when a Sleep or Stop action has returned (the
	// sleep is over, or the process got SIGCONT), on the same goroutine.
	OnReturn func(name string, a Action)
}

// Set is a parsed spec: the armed points and what they do.
type Set struct {
	onFire, onReturn func(string, Action)

	mu     sync.Mutex
	points map[string]*Action
	fired  map[string]int
}

// maxSleep bounds sleep(D), so a typo cannot hang a worker for days.
const maxSleep = time.Hour

// Parse parses spec (see the package documentation). An empty spec gives
// an empty Set. Errors name the term that is wrong and say what is
// accepted.
func Parse(spec string, opts *Options) (*Set, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	s := &Set{onFire: o.OnFire, onReturn: o.OnReturn, points: map[string]*Action{}, fired: map[string]int{}}
	for _, term := range strings.Split(spec, ";") {
		term = strings.TrimSpace(term)
		if term == "" {
			continue
		}
		name, act, ok := strings.Cut(term, "=")
		name, act = strings.TrimSpace(name), strings.TrimSpace(act)
		if !ok || name == "" || act == "" {
			return nil, fmt.Errorf("failpoint: term %q is not NAME=[COUNT*]ACTION, e.g. before-write=1*stop", term)
		}
		if len(o.Names) > 0 && !slices.Contains(o.Names, name) {
			return nil, fmt.Errorf("failpoint: unknown point %q in %q; the points are %s", name, term, strings.Join(o.Names, ", "))
		}
		if _, dup := s.points[name]; dup {
			return nil, fmt.Errorf("failpoint: point %q is given twice; give each point one action", name)
		}
		a, err := parseAction(act)
		if err != nil {
			return nil, fmt.Errorf("failpoint: %s: %w", term, err)
		}
		s.points[name] = &a
	}
	return s, nil
}

func parseAction(s string) (Action, error) {
	a := Action{Count: -1}
	if c, rest, ok := strings.Cut(s, "*"); ok {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			return a, fmt.Errorf("count %q is not a positive integer", c)
		}
		a.Count, s = n, strings.TrimSpace(rest)
	}
	switch {
	case s == string(Off), s == string(Stop), s == string(Kill):
		a.Kind = Kind(s)
	case strings.HasPrefix(s, "sleep(") && strings.HasSuffix(s, ")"):
		d, err := time.ParseDuration(strings.TrimSuffix(strings.TrimPrefix(s, "sleep("), ")"))
		if err != nil || d <= 0 || d > maxSleep {
			return a, fmt.Errorf("sleep needs a duration from 1ns to %v, e.g. sleep(300ms)", maxSleep)
		}
		a.Kind, a.Duration = Sleep, d
	default:
		return a, fmt.Errorf("unknown action %q; accepted: stop, sleep(D), kill, off", s)
	}
	return a, nil
}

// Eval fires the point name if it is armed: it calls Options.OnFire, runs
// the action, then calls Options.OnReturn. It returns at once for a point that is not armed,
// and on a nil Set.
func (s *Set) Eval(name string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	p, ok := s.points[name]
	if !ok || p.Kind == Off || p.Count == 0 {
		s.mu.Unlock()
		return
	}
	if p.Count > 0 {
		p.Count--
	}
	a := *p
	s.fired[name]++
	s.mu.Unlock()
	if s.onFire != nil {
		s.onFire(name, a)
	}
	switch a.Kind {
	case Sleep:
		time.Sleep(a.Duration)
	case Stop:
		stop()
	case Kill:
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		return
	}
	if s.onReturn != nil {
		s.onReturn(name, a)
	}
}

// Fired returns how many times the point name has fired.
func (s *Set) Fired(name string) int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fired[name]
}

// Points returns the armed points and their actions, as they are now
// (counts go down as points fire).
func (s *Set) Points() map[string]Action {
	out := map[string]Action{}
	if s == nil {
		return out
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for n, a := range s.points {
		out[n] = *a
	}
	return out
}

// String returns the Set's spec as it is now, points sorted by name.
func (s *Set) String() string {
	ps := s.Points()
	names := make([]string, 0, len(ps))
	for n := range ps {
		names = append(names, n)
	}
	slices.Sort(names)
	terms := make([]string, len(names))
	for i, n := range names {
		terms[i] = n + "=" + ps[n].String()
	}
	return strings.Join(terms, ";")
}

// stop stops the process with SIGSTOP and returns when it gets SIGCONT.
// A signal sent to one's own process is not acted on at once: the other
// threads, and even the calling one, may run on for a while before the
// group stop takes hold. So the caller waits for the SIGCONT itself, and
// nothing after the failpoint runs before the process was resumed.
func stop() {
	cont := make(chan os.Signal, 1)
	signal.Notify(cont, syscall.SIGCONT)
	defer signal.Stop(cont)
	_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
	<-cont
}
