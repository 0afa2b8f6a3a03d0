package analyze

import (
	"fmt"
	"hash/fnv"
	"io"
	"sort"
	"strconv"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/fencerlock/fencer/internal/history"
)

// CheckStatus is the outcome of one linearizability check.
type CheckStatus string

// The check statuses.
const (
	// CheckOK: porcupine found a linearization.
	CheckOK CheckStatus = "ok"
	// CheckIllegal: no linearization exists.
	CheckIllegal CheckStatus = "illegal"
	// CheckTimeout: the search did not finish within the time limit; the
	// answer is unknown.
	CheckTimeout CheckStatus = "timeout"
	// CheckSkipped: there was nothing to check (no operations, or no
	// tokens).
	CheckSkipped CheckStatus = "skipped"
)

// LinearCheck is one porcupine check: its model, outcome and evidence.
// Visualize writes porcupine's HTML view of it.
type LinearCheck struct {
	// Name is "store" or "lock".
	Name string `json:"name"`
	// Model describes the sequential specification checked against.
	Model string `json:"model"`
	// Status is the outcome.
	Status CheckStatus `json:"status"`
	// Operations counts the operations checked (the final reads
	// included); Open counts those with an open end (outcome unknown).
	Operations int `json:"operations"`
	Open       int `json:"open"`
	// Partitions lists the partitions (store keys, locks, or "" for the
	// global token counter), in the order of the visualization.
	Partitions []string `json:"partitions"`
	// Findings has a FindingNotLinearizable per illegal partition, or a
	// note on timeout.
	Findings []Finding `json:"findings,omitempty"`

	model porcupine.Model
	info  porcupine.LinearizationInfo
	ran   bool
}

// Linearizable returns true or false, or nil when the check timed out or
// was skipped.
func (c *LinearCheck) Linearizable() *bool {
	switch c.Status {
	case CheckOK:
		return boolPtr(true)
	case CheckIllegal:
		return boolPtr(false)
	}
	return nil
}

// CanVisualize reports whether Visualize has something to draw.
func (c *LinearCheck) CanVisualize() bool { return c.ran }

// Visualize writes porcupine's HTML visualization of the check (one
// self-contained page) to w. It fails when the check did not run.
func (c *LinearCheck) Visualize(w io.Writer) error {
	if !c.ran {
		return fmt.Errorf("analyze: the %s linearizability check was %s: nothing to visualize", c.Name, c.Status)
	}
	if err := porcupine.Visualize(c.model, c.info, w); err != nil {
		return fmt.Errorf("analyze: visualize the %s linearizability check: %w", c.Name, err)
	}
	return nil
}

// LinearizabilityReport holds the two linearizability checks.
type LinearizabilityReport struct {
	// Store checks the client's reads and writes against a fenced register
	// per key (a plain register when the store ran unfenced).
	Store LinearCheck `json:"store"`
	// Lock checks the grants' tokens against a counter that only goes up,
	// per lock or global as Run.TokenScope says.
	Lock LinearCheck `json:"lock"`
}

// Linearizable combines both checks: false if either is illegal, else nil
// if either timed out or both were skipped, else true.
func (r *LinearizabilityReport) Linearizable() *bool {
	checks := []*LinearCheck{&r.Store, &r.Lock}
	for _, c := range checks {
		if c.Status == CheckIllegal {
			return boolPtr(false)
		}
	}
	ran := false
	for _, c := range checks {
		switch c.Status {
		case CheckTimeout:
			return nil
		case CheckOK:
			ran = true
		}
	}
	if !ran {
		return nil
	}
	return boolPtr(true)
}

func boolPtr(b bool) *bool { return &b }

// clients numbers the processes for porcupine, which wants small
// zero-based client ids; the harness's final reads get the last one.
type clients struct {
	ids   map[string]int
	names []string
}

func newClients(ops []Operation) *clients {
	c := &clients{ids: map[string]int{}}
	var names []string
	seen := map[string]bool{}
	for i := range ops {
		if p := ops[i].Process; !seen[p] {
			seen[p] = true
			names = append(names, p)
		}
	}
	sort.Strings(names)
	for i, n := range names {
		c.ids[n] = i
	}
	c.names = names
	return c
}

func (c *clients) id(p string) int { return c.ids[p] }

// harness is the client id of the final reads.
func (c *clients) harness() int { return len(c.names) }

// opMeta is an operation's metadata in the visualization and findings.
type opMeta struct {
	desc   string
	events []history.Event
}

// The store model: a fenced register per key.

type regKind uint8

const (
	regGet regKind = iota
	regPut
	regFinal // the harness's read of the final state: no token, no fencing
)

type regInput struct {
	kind  regKind
	key   string
	token uint64
	value string // put
}

type regOutput struct {
	outcome Outcome // OK, rejected or unknown (final reads are always OK)
	value   string  // what a get or final read returned
}

type regState struct {
	floor uint64
	value string
}

func storeModel(unfenced bool, initial string) porcupine.Model {
	return porcupine.Model{
		Partition: partitionBy(func(in any) string { return in.(regInput).key }),
		Init:      func() any { return regState{value: initial} },
		Step: func(state, input, output any) (bool, any) {
			s, in, out := state.(regState), input.(regInput), output.(regOutput)
			accepted := unfenced || in.token >= s.floor
			switch in.kind {
			case regFinal:
				return out.value == s.value, s
			case regPut:
				next := s
				if accepted {
					next = regState{floor: max(s.floor, in.token), value: in.value}
				}
				switch out.outcome {
				case OutcomeUnknown:
					return true, next
				case OutcomeOK:
					return accepted, next
				default: // rejected
					return !accepted, s
				}
			default: // get
				next := s
				if accepted {
					next.floor = max(s.floor, in.token)
				}
				switch out.outcome {
				case OutcomeUnknown:
					return true, next
				case OutcomeOK:
					return accepted && out.value == s.value, next
				default:
					return !accepted, s
				}
			}
		},
		Hash: func(state any) uint64 {
			s := state.(regState)
			h := fnv.New64a()
			h.Write([]byte(s.value))
			return h.Sum64() ^ s.floor*0x9e3779b97f4a7c15
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(regInput), output.(regOutput)
			var call string
			switch in.kind {
			case regFinal:
				return fmt.Sprintf("final read → %q", out.value)
			case regPut:
				call = fmt.Sprintf("put(token %d, %q)", in.token, in.value)
			default:
				call = fmt.Sprintf("get(token %d)", in.token)
			}
			switch out.outcome {
			case OutcomeOK:
				if in.kind == regGet {
					return fmt.Sprintf("%s → %q", call, out.value)
				}
				return call + " → ok"
			case OutcomeRejected:
				return call + " → 409 stale"
			}
			return call + " → unknown"
		},
		DescribeState: func(state any) string {
			s := state.(regState)
			return fmt.Sprintf("floor %d, value %q", s.floor, s.value)
		},
		DescribeOperationMetadata: func(info any) string {
			if m, ok := info.(opMeta); ok {
				return m.desc
			}
			return ""
		},
	}
}

// partitionBy returns a porcupine partition function that groups
// operations by the key of their input, keys in sorted order.
func partitionBy(key func(any) string) func([]porcupine.Operation) [][]porcupine.Operation {
	return func(h []porcupine.Operation) [][]porcupine.Operation {
		groups := map[string][]porcupine.Operation{}
		for _, o := range h {
			k := key(o.Input)
			groups[k] = append(groups[k], o)
		}
		keys := make([]string, 0, len(groups))
		for k := range groups {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, len(keys))
		for i, k := range keys {
			out[i] = groups[k]
		}
		return out
	}
}

// The lock model: tokens from a counter that only goes up.

type tokInput struct{ lock, scope string }

type tokOutput struct {
	token uint64 // 0: unknown (the grant's outcome, or token, is unknown)
}

func tokenModel(scope TokenScope) porcupine.Model {
	return porcupine.Model{
		Partition: partitionBy(func(in any) string { return in.(tokInput).scope }),
		Init:      func() any { return uint64(0) },
		Step: func(state, input, output any) (bool, any) {
			last, out := state.(uint64), output.(tokOutput)
			if out.token == 0 {
				// An acquire with unknown outcome may or may not have
				// drawn a token; either way no later grant can be
				// constrained by a token nobody saw.
				return true, last
			}
			return out.token > last, out.token
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(tokInput), output.(tokOutput)
			if out.token == 0 {
				return fmt.Sprintf("acquire(%s) → unknown", in.lock)
			}
			return fmt.Sprintf("acquire(%s) → token %d", in.lock, out.token)
		},
		DescribeState: func(state any) string {
			return "last token " + strconv.FormatUint(state.(uint64), 10)
		},
		DescribeOperationMetadata: func(info any) string {
			if m, ok := info.(opMeta); ok {
				return m.desc
			}
			return ""
		},
	}
}

// linearizer builds and runs the checks.
type linearizer struct {
	run     *Run
	ops     []Operation
	tl      timeline
	timeout time.Duration
	clients *clients
	openEnd int64 // "infinity": later than every event and final read
}

func checkLinearizability(run *Run, ops []Operation, tl timeline, timeout time.Duration) (LinearizabilityReport, error) {
	l := &linearizer{run: run, ops: ops, tl: tl, timeout: timeout, clients: newClients(ops), openEnd: int64(tl.end) + 3}
	st, err := l.storeCheck()
	if err != nil {
		return LinearizabilityReport{}, err
	}
	return LinearizabilityReport{Store: st, Lock: l.lockCheck()}, nil
}

func (l *linearizer) meta(o *Operation) opMeta {
	return opMeta{
		desc:   fmt.Sprintf("%s op %d at %s (%s)", o.Process, o.Op, l.tl.ms(o.Start()), o.Outcome),
		events: o.Events(),
	}
}

// interval returns an operation's call and return times; an operation
// whose outcome is unknown stays open until "infinity".
func (l *linearizer) interval(o *Operation) (int64, int64) {
	if o.Outcome == OutcomeUnknown || o.Complete == nil {
		return int64(o.Start()), l.openEnd
	}
	return int64(o.Start()), int64(o.End())
}

func (l *linearizer) storeCheck() (LinearCheck, error) {
	c := LinearCheck{Name: "store", Model: "fenced register per key: put(token, v) is accepted iff token ≥ floor and sets value and floor; get(token) is refused iff token < floor, else returns the value and raises the floor"}
	if l.run.StoreUnfenced {
		c.Model = "register per key (the store ran without fencing): every put is accepted, every get returns the value"
	}
	initial, _ := canonical(l.run.Workload, "")
	var hist []porcupine.Operation
	keys := map[string]bool{}
	for i := range l.ops {
		o := &l.ops[i]
		if (o.Type != OpRead && o.Type != OpWrite) || o.Outcome == OutcomeFail {
			continue
		}
		in := regInput{kind: regGet, key: o.Key, token: o.Token}
		out := regOutput{outcome: o.Outcome}
		var err error
		if o.Type == OpWrite {
			in.kind = regPut
			if in.value, err = canonical(l.run.Workload, o.Value); err != nil {
				return c, opValueError(o, err)
			}
		} else if out.outcome == OutcomeOK {
			if out.value, err = canonical(l.run.Workload, o.Value); err != nil {
				return c, opValueError(o, err)
			}
		}
		call, ret := l.interval(o)
		if call > ret { // a clock reading out of order; keep the interval valid
			ret = call
		}
		hist = append(hist, porcupine.Operation{ClientId: l.clients.id(o.Process), Input: in, Output: out,
			Call: call, Return: ret, Metadata: l.meta(o)})
		keys[o.Key] = true
		if out.outcome == OutcomeUnknown {
			c.Open++
		}
	}
	if len(hist) == 0 {
		c.Status = CheckSkipped
		return c, nil
	}
	// The harness's final read of each key comes after every recorded
	// event, but before "infinity": an uncertain write may still land
	// after it, or may have landed before.
	var finalKeys []string
	for k := range keys {
		finalKeys = append(finalKeys, k)
	}
	sort.Strings(finalKeys)
	for _, k := range finalKeys {
		var v string
		switch l.run.Workload {
		case WorkloadSet:
			elems, ok := l.run.Final.Sets[k]
			if !ok {
				continue
			}
			v = canonicalSet(elems)
		default:
			n, ok := l.run.Final.Counters[k]
			if !ok {
				continue
			}
			v = strconv.FormatInt(n, 10)
		}
		hist = append(hist, porcupine.Operation{ClientId: l.clients.harness(),
			Input: regInput{kind: regFinal, key: k}, Output: regOutput{outcome: OutcomeOK, value: v},
			Call: int64(l.tl.end) + 1, Return: int64(l.tl.end) + 2,
			Metadata: opMeta{desc: "the harness's read of the final state"}})
	}
	c.model = storeModel(l.run.StoreUnfenced, initial)
	l.run1(&c, hist, func(in any) string { return in.(regInput).key })
	return c, nil
}

func (l *linearizer) lockCheck() LinearCheck {
	c := LinearCheck{Name: "lock", Model: "token counter per lock: each granted token is above every token granted before"}
	if l.run.TokenScope == TokensGlobal {
		c.Model = "one token counter for every lock: each granted token is above every token granted before"
	}
	var hist []porcupine.Operation
	tokens := false
	for i := range l.ops {
		o := &l.ops[i]
		if o.Type != OpAcquire {
			continue
		}
		var out tokOutput
		switch {
		case o.Outcome == OutcomeOK && o.Token != 0:
			out.token = o.Token
			tokens = true
		case o.Outcome == OutcomeUnknown:
			c.Open++
		default:
			continue // failed, or a grant without a token
		}
		call, ret := l.interval(o)
		if call > ret {
			ret = call
		}
		hist = append(hist, porcupine.Operation{ClientId: l.clients.id(o.Process),
			Input: tokInput{lock: o.Lock, scope: scopeKey(l.run.TokenScope, o.Lock)}, Output: out,
			Call: call, Return: ret, Metadata: l.meta(o)})
	}
	if !tokens {
		c.Status, c.Open = CheckSkipped, 0
		return c
	}
	c.model = tokenModel(l.run.TokenScope)
	l.run1(&c, hist, func(in any) string { return in.(tokInput).scope })
	return c
}

// run1 runs porcupine on hist and fills in c's status, partitions and
// findings.
func (l *linearizer) run1(c *LinearCheck, hist []porcupine.Operation, key func(any) string) {
	c.Operations = len(hist)
	res, info := porcupine.CheckOperationsVerbose(c.model, hist, l.timeout)
	c.info, c.ran = info, true
	parts := c.model.Partition(hist)
	for _, p := range parts {
		c.Partitions = append(c.Partitions, key(p[0].Input))
	}
	switch res {
	case porcupine.Ok:
		c.Status = CheckOK
		return
	case porcupine.Unknown:
		c.Status = CheckTimeout
		c.Findings = append(c.Findings, Finding{Kind: FindingNote,
			Summary: fmt.Sprintf("the %s linearizability search did not finish within %v over %d operations: the answer is unknown", c.Name, l.timeout, len(hist))})
		return
	}
	c.Status = CheckIllegal
	partials := info.PartialLinearizations()
	for pi, p := range parts {
		if pi >= len(partials) {
			break
		}
		var longest []int
		for _, lin := range partials[pi] {
			if len(lin) > len(longest) {
				longest = lin
			}
		}
		if len(longest) == len(p) {
			continue
		}
		c.Findings = append(c.Findings, l.illegalFinding(c, c.Partitions[pi], p, longest))
	}
	if len(c.Findings) == 0 {
		c.Findings = append(c.Findings, Finding{Kind: FindingNotLinearizable,
			Summary: fmt.Sprintf("the %s history is not linearizable", c.Name)})
	}
}

// illegalFinding describes an illegal partition: how far the longest
// linearization got, and the earliest operation it could not place.
func (l *linearizer) illegalFinding(c *LinearCheck, part string, p []porcupine.Operation, longest []int) Finding {
	in := map[int]bool{}
	state := c.model.Init()
	for _, id := range longest {
		in[id] = true
		_, state = c.model.Step(state, p[id].Input, p[id].Output)
	}
	stuck := -1
	for id := range p {
		if !in[id] && (stuck < 0 || p[id].Call < p[stuck].Call) {
			stuck = id
		}
	}
	name := part
	if name == "" {
		name = "all locks"
	}
	f := Finding{Kind: FindingNotLinearizable, Lock: part}
	f.Summary = fmt.Sprintf("%s %s: not linearizable; the longest linearization places %d of %d operations and reaches %q",
		c.Name, name, len(longest), len(p), c.model.DescribeState(state))
	var evs []history.Event
	if stuck >= 0 {
		op := p[stuck]
		m, _ := op.Metadata.(opMeta)
		f.Summary += fmt.Sprintf("; no order explains %s, %s", c.model.DescribeOperation(op.Input, op.Output), m.desc)
		evs = append(evs, m.events...)
	}
	if n := len(longest); n > 0 {
		m, _ := p[longest[n-1]].Metadata.(opMeta)
		evs = append(evs, m.events...)
	}
	f.Events = sortedEvents(evs...)
	return f
}
