package analyze

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/fencerlock/fencer/internal/history"
)

// UpdateReport is the result of the lost-updates check.
type UpdateReport struct {
	// Workload is the workload checked.
	Workload Workload `json:"workload"`
	// Acknowledged counts acknowledged writes (write-ok) on the keys that
	// were checked.
	Acknowledged int `json:"acknowledged"`
	// Lost counts lost updates. Counter: per key, the larger of
	// acknowledged − final value and the number of acknowledged writes
	// that repeat another's value (two clients that both wrote 5 lost an
	// increment, whatever else happened). Set: distinct elements of
	// acknowledged writes missing from the final set.
	Lost int `json:"lost"`
	// LostValues are the lost counter values or set elements, per key.
	LostValues map[string][]string `json:"lost_values,omitempty"`
	// Unchecked lists keys that were written but whose final state was not
	// read, so could not be checked.
	Unchecked []string `json:"unchecked,omitempty"`
	// Findings has a FindingLostUpdate per lost update (or group of
	// them), and notes.
	Findings []Finding `json:"findings,omitempty"`
}

// checkUpdates compares the acknowledged writes with the final state.
func checkUpdates(run *Run, ops []Operation, tl timeline) (UpdateReport, error) {
	rep := UpdateReport{Workload: run.Workload}
	byKey := map[string][]*Operation{}
	unknown := map[string]int{}
	var keys []string
	for i := range ops {
		o := &ops[i]
		if o.Type != OpWrite {
			continue
		}
		if _, seen := byKey[o.Key]; !seen {
			keys = append(keys, o.Key)
			byKey[o.Key] = nil
		}
		switch o.Outcome {
		case OutcomeOK:
			byKey[o.Key] = append(byKey[o.Key], o)
		case OutcomeUnknown:
			unknown[o.Key]++
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		acked := byKey[k]
		var err error
		switch run.Workload {
		case WorkloadSet:
			final, ok := run.Final.Sets[k]
			if !ok {
				rep.Unchecked = append(rep.Unchecked, k)
				continue
			}
			err = checkSetKey(&rep, k, acked, final, tl)
		default:
			final, ok := run.Final.Counters[k]
			if !ok {
				rep.Unchecked = append(rep.Unchecked, k)
				continue
			}
			err = checkCounterKey(&rep, k, acked, final, unknown[k], tl)
		}
		if err != nil {
			return UpdateReport{}, err
		}
		rep.Acknowledged += len(acked)
	}
	if len(rep.Unchecked) > 0 {
		rep.Findings = append(rep.Findings, Finding{Kind: FindingNote,
			Summary: fmt.Sprintf("lost updates not checked on %s: the final state of these keys was not read", strings.Join(rep.Unchecked, ", "))})
	}
	return rep, nil
}

func checkCounterKey(rep *UpdateReport, k string, acked []*Operation, final int64, unknown int, tl timeline) error {
	byValue := map[int64][]*Operation{}
	var values []int64
	for _, o := range acked {
		v, err := parseCounter(o.Value)
		if err != nil {
			return opValueError(o, err)
		}
		if _, seen := byValue[v]; !seen {
			values = append(values, v)
		}
		byValue[v] = append(byValue[v], o)
	}
	sort.Slice(values, func(i, j int) bool { return values[i] < values[j] })
	dups := 0
	var lostValues []string
	for _, v := range values {
		ws := byValue[v]
		if len(ws) < 2 {
			continue
		}
		dups += len(ws) - 1
		lostValues = append(lostValues, strconv.FormatInt(v, 10))
		rep.Findings = append(rep.Findings, Finding{Kind: FindingLostUpdate, Lock: k,
			Summary: fmt.Sprintf("counter %s: %d acknowledged writes all set it to %d (%s): %d increment(s) lost",
				k, len(ws), v, describeWrites(ws, tl), len(ws)-1),
			Events: opEvents(ws)})
	}
	lost := dups
	if short := int64(len(acked)) - final; short > int64(dups) {
		lost = int(short)
		var over []*Operation
		for _, o := range acked {
			if v, _ := parseCounter(o.Value); v > final {
				over = append(over, o)
				if len(byValue[v]) == 1 {
					lostValues = append(lostValues, strconv.FormatInt(v, 10))
				}
			}
		}
		f := Finding{Kind: FindingLostUpdate, Lock: k,
			Summary: fmt.Sprintf("counter %s: %d increments acknowledged but the final value is %d: %d lost", k, len(acked), final, short)}
		if len(over) > 0 {
			f.Summary += fmt.Sprintf("; acknowledged writes above the final value: %s", describeWrites(over, tl))
			f.Events = opEvents(over)
		}
		rep.Findings = append(rep.Findings, f)
	}
	if final > int64(len(acked)) && unknown == 0 {
		rep.Findings = append(rep.Findings, Finding{Kind: FindingNote, Lock: k,
			Summary: fmt.Sprintf("counter %s ends at %d but only %d increments were acknowledged and none was uncertain: a write recorded as failed took effect", k, final, len(acked))})
	}
	rep.Lost += lost
	if len(lostValues) > 0 || lost > 0 {
		if rep.LostValues == nil {
			rep.LostValues = map[string][]string{}
		}
		rep.LostValues[k] = lostValues
	}
	return nil
}

func checkSetKey(rep *UpdateReport, k string, acked []*Operation, final []string, tl timeline) error {
	have := map[string]bool{}
	for _, e := range final {
		have[e] = true
	}
	firstWith := map[string]*Operation{}
	var missing []string
	for _, o := range acked {
		elems, err := parseSet(o.Value)
		if err != nil {
			return opValueError(o, err)
		}
		for _, e := range elems {
			if have[e] {
				continue
			}
			if _, seen := firstWith[e]; !seen {
				firstWith[e] = o
				missing = append(missing, e)
			}
		}
	}
	sort.Strings(missing)
	for _, e := range missing {
		o := firstWith[e]
		rep.Findings = append(rep.Findings, Finding{Kind: FindingLostUpdate, Lock: k,
			Summary: fmt.Sprintf("set %s: element %q was in an acknowledged write (%s) but is missing from the final set", k, e, describeWrites([]*Operation{o}, tl)),
			Events:  o.Events()})
	}
	rep.Lost += len(missing)
	if len(missing) > 0 {
		if rep.LostValues == nil {
			rep.LostValues = map[string][]string{}
		}
		rep.LostValues[k] = missing
	}
	return nil
}

func describeWrites(ws []*Operation, tl timeline) string {
	parts := make([]string, len(ws))
	for i, o := range ws {
		parts[i] = fmt.Sprintf("%s token %d at %s", o.Process, o.Token, tl.ms(o.Start()))
	}
	return strings.Join(parts, ", ")
}

func opEvents(ws []*Operation) []history.Event {
	var evs []history.Event
	for _, o := range ws {
		evs = append(evs, o.Events()...)
	}
	return sortedEvents(evs...)
}

func opValueError(o *Operation, err error) error {
	return fmt.Errorf("analyze: %s op %d %s of %s at %v: %w", o.Process, o.Op, o.Type, o.Key, o.Start(), err)
}

// parseCounter parses a counter value; empty is 0.
func parseCounter(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("value %q is not a counter: the counter workload writes decimal integers", s)
	}
	return v, nil
}

// parseSet parses a set value: a JSON array of strings or comma-separated
// elements; empty is the empty set. The result is sorted and without
// duplicates.
func parseSet(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	var elems []string
	switch {
	case s == "":
		return nil, nil
	case strings.HasPrefix(s, "["):
		if err := json.Unmarshal([]byte(s), &elems); err != nil {
			return nil, fmt.Errorf("value %q is not a set: a JSON array of strings was expected: %v", s, err)
		}
	default:
		for _, e := range strings.Split(s, ",") {
			if e = strings.TrimSpace(e); e != "" {
				elems = append(elems, e)
			}
		}
	}
	sort.Strings(elems)
	out := elems[:0]
	for i, e := range elems {
		if i == 0 || e != elems[i-1] {
			out = append(out, e)
		}
	}
	return out, nil
}

// canonical returns the normal form of a value of the workload, so that
// equal states compare equal in the register model.
func canonical(w Workload, s string) (string, error) {
	if w == WorkloadSet {
		elems, err := parseSet(s)
		if err != nil {
			return "", err
		}
		return canonicalSet(elems), nil
	}
	v, err := parseCounter(s)
	if err != nil {
		return "", err
	}
	return strconv.FormatInt(v, 10), nil
}

// canonicalSet is the normal form of a set: its distinct elements, sorted,
// as a JSON array (which, unlike a comma list, is unambiguous).
func canonicalSet(elems []string) string {
	s := append([]string{}, elems...)
	sort.Strings(s)
	out := s[:0]
	for i, e := range s {
		if i == 0 || e != s[i-1] {
			out = append(out, e)
		}
	}
	b, _ := json.Marshal(out) // a []string always encodes
	return string(b)
}
