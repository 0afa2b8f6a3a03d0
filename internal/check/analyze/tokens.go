package analyze

import (
	"fmt"
	"sort"

	"github.com/fencerlock/fencer/internal/history"
)

// Grant is one acquire that returned OK.
type Grant struct {
	// Lock is the lock granted.
	Lock string `json:"lock"`
	// Process is the client it was granted to.
	Process string `json:"process"`
	// Token is the grant's fencing token.
	Token uint64 `json:"token"`
	// Invoke is the acquire-invoke's time.
	Invoke history.Time `json:"invoke"`
	// OK is the acquire-ok's time.
	OK history.Time `json:"ok"`
	// Events are the acquire-invoke and acquire-ok.
	Events []history.Event `json:"events"`
}

// TokenReport is the result of the token check.
type TokenReport struct {
	// Scope is the scope the tokens were checked in.
	Scope TokenScope `json:"scope"`
	// NoTokens is set when grants carried no token at all (Redlock): the
	// token checks were skipped.
	NoTokens bool `json:"no_tokens"`
	// Grants counts the grants with a token that were checked.
	Grants int `json:"grants"`
	// Regressions counts grants whose token is not above the token of a
	// grant (in scope) whose acquire-ok came before their acquire-invoke.
	Regressions int `json:"regressions"`
	// Duplicates counts the other grants whose token an earlier grant (in
	// scope) already had: concurrent acquires that got the same token.
	// A grant is counted in Regressions or Duplicates, not both.
	Duplicates int `json:"duplicates"`
	// Findings has a FindingTokenRegression or FindingTokenDuplicate per
	// counted grant, with the earlier grant as evidence.
	Findings []Finding `json:"findings,omitempty"`
}

// Violations is Regressions + Duplicates: the grants that broke token
// order. It is what Result.TokenRegressions reports.
func (r *TokenReport) Violations() int { return r.Regressions + r.Duplicates }

func grants(ops []Operation) (withToken []Grant, without int) {
	for i := range ops {
		o := &ops[i]
		if o.Type != OpAcquire || o.Outcome != OutcomeOK {
			continue
		}
		if o.Token == 0 {
			without++
			continue
		}
		withToken = append(withToken, Grant{Lock: o.Lock, Process: o.Process, Token: o.Token,
			Invoke: o.Start(), OK: o.End(), Events: o.Events()})
	}
	return withToken, without
}

// scopeKey is the group a grant's token must be unique and increasing in.
func scopeKey(scope TokenScope, lock string) string {
	if scope == TokensGlobal {
		return ""
	}
	return lock
}

// checkTokens looks for tokens granted twice and for tokens that went back
// in real time.
func checkTokens(scope TokenScope, ops []Operation, tl timeline) TokenReport {
	rep := TokenReport{Scope: scope}
	gs, without := grants(ops)
	if len(gs) == 0 {
		rep.NoTokens = without > 0
		if rep.NoTokens {
			rep.Findings = append(rep.Findings, Finding{Kind: FindingNote,
				Summary: fmt.Sprintf("no tokens: none of the %d grants carried a fencing token, so token order was not checked", without)})
		}
		return rep
	}
	if without > 0 {
		rep.Findings = append(rep.Findings, Finding{Kind: FindingNote,
			Summary: fmt.Sprintf("%d of %d grants carried no token and were not checked", without, without+len(gs))})
	}
	rep.Grants = len(gs)
	groups := map[string][]Grant{}
	var names []string
	for _, g := range gs {
		k := scopeKey(scope, g.Lock)
		if _, ok := groups[k]; !ok {
			names = append(names, k)
		}
		groups[k] = append(groups[k], g)
	}
	sort.Strings(names)
	for _, n := range names {
		checkTokenGroup(&rep, groups[n], tl)
	}
	return rep
}

func checkTokenGroup(rep *TokenReport, gs []Grant, tl timeline) {
	byOK := append([]Grant(nil), gs...)
	sort.SliceStable(byOK, func(i, j int) bool { return byOK[i].OK < byOK[j].OK })
	byInvoke := append([]Grant(nil), gs...)
	sort.SliceStable(byInvoke, func(i, j int) bool { return byInvoke[i].Invoke < byInvoke[j].Invoke })

	// Regressions: sweep the grants in invocation order, keeping the
	// highest token among the grants completed strictly before.
	regressed := map[*Grant]bool{}
	var best *Grant
	next := 0
	for i := range byInvoke {
		y := &byInvoke[i]
		for next < len(byOK) && byOK[next].OK < y.Invoke {
			if best == nil || byOK[next].Token > best.Token {
				best = &byOK[next]
			}
			next++
		}
		if best == nil || best.Token < y.Token {
			continue
		}
		rep.Regressions++
		regressed[y] = true
		rep.Findings = append(rep.Findings, Finding{Kind: FindingTokenRegression, Lock: y.Lock,
			Summary: fmt.Sprintf("%s was granted %s token %d at %s, after %s had been granted %s token %d at %s (before %s asked at %s)",
				y.Process, y.Lock, y.Token, tl.ms(y.OK), best.Process, best.Lock, best.Token, tl.ms(best.OK), y.Process, tl.ms(y.Invoke)),
			Events: sortedEvents(append(append([]history.Event{}, best.Events...), y.Events...)...)})
	}

	// Duplicates among the rest: the same token granted again.
	first := map[uint64]*Grant{}
	for i := range byInvoke {
		g := &byInvoke[i]
		f := first[g.Token]
		if f == nil || g.OK < f.OK {
			first[g.Token] = g
		}
	}
	for i := range byInvoke {
		g := &byInvoke[i]
		f := first[g.Token]
		if f == g || regressed[g] {
			continue
		}
		rep.Duplicates++
		rep.Findings = append(rep.Findings, Finding{Kind: FindingTokenDuplicate, Lock: g.Lock,
			Summary: fmt.Sprintf("token %d was granted twice: to %s on %s at %s and to %s on %s at %s",
				g.Token, f.Process, f.Lock, tl.ms(f.OK), g.Process, g.Lock, tl.ms(g.OK)),
			Events: sortedEvents(append(append([]history.Event{}, f.Events...), g.Events...)...)})
	}
}
