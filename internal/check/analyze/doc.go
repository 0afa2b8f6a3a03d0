// Package analyze is the checker's judgement: given what one scenario run
// against one backend left behind (a [Run]: the merged history, the store's
// accept log, the final state, the replicas' states), it runs six checks,
// collects their evidence and gives a verdict ([Analyze] returns an
// [Analysis] whose [Result] is what `fencer check --json` prints). It
// starts no processes and does no I/O; the harness records, package report
// renders.
//
// The split follows etcd's robustness tests: the harness is traffic and
// failpoints, this package is model and validation, package report is the
// report.
//
// # What the history must hold
//
// Workers record, through package history, one operation per step, an
// invocation and one completion with the same Process and Op:
//
//	acquire-invoke (Lock) → acquire-ok (Token; Attrs valid_until, safe_token) | acquire-fail | acquire-unknown
//	read-invoke (Lock, Token)  → read-ok (Value) | read-fail (Attrs status; "409" = refused as stale) | read-unknown
//	write-invoke (Lock, Token, Value) → write-ok | write-rejected (409) | write-fail | write-unknown
//	release-invoke (Lock, Token) → release-ok | release-fail | release-unknown
//
// and, standing alone (Op zero): lease-lost (Lock; when the client learned
// its lease ended) and lease-extended (Lock, Attrs valid_until; a renewal
// moved the lease end; [KindLeaseExtended], defined here). The harness
// records fault-start/fault-end (Attrs fault = the kind, target = the
// process or link) and pause/resume (Process = the paused process). Store
// keys are the event's Lock unless Attrs key says otherwise. valid_until is
// a history.Time: decimal nanoseconds of CLOCK_MONOTONIC.
//
// A -fail completion means the operation certainly did not take effect
// (refused before it was sent, or a 4xx other than 409). A timeout, a 5xx, a
// lost connection is -unknown. An invocation without a completion (a worker
// killed mid-operation) is unknown too. Unknown operations stay open-ended
// everywhere: the checkers never count them as done or as not done.
//
// # The checks
//
//  1. Holders ([HolderReport]): each acquire-ok opens a window for its
//     process and lock. Its observed end is the first of the process's
//     release-invoke, lease-lost, next acquire-invoke of the lock, a
//     fault-start of kind "kill" targeting it, or the end of the history;
//     its believed end is the earlier of that and the client's last
//     valid_until. Two windows of different processes on one lock that
//     intersect are an observed overlap; if their believed spans intersect
//     too, a believed overlap: the lock was granted while the previous
//     holder was still entitled to it.
//  2. Lost updates ([UpdateReport]): counter, per key: the larger of
//     (acknowledged writes − final value) and the number of acknowledged
//     writes repeating another's value. Set: the distinct elements of
//     acknowledged writes missing from the final set.
//  3. Tokens ([TokenReport]): a grant whose token is not above that of a
//     grant whose acquire-ok preceded its acquire-invoke is a regression;
//     a token granted to two concurrent acquires is a duplicate. Per lock,
//     or across all locks for backends with one token counter
//     ([TokensGlobal]). Grants without a token (Redlock) are skipped and
//     reported as "no tokens".
//  4. Store ([StoreReport]): in the accept log, per key, an accepted
//     token below one already accepted is a stale request accepted (the
//     accepted tokens went backwards; possible only without fencing, or
//     with a broken store); every refusal is a stale request rejected. The
//     clients' OK and 409 answers must each match a decision in the log
//     (same op, key and token), and every PUT decision a recorded write.
//     Without an accept log the counts come from the clients' view.
//  5. Linearizability ([LinearizabilityReport]) with porcupine: (a) the
//     store as a fenced register per key (put(token, v) accepted iff token
//     ≥ floor, setting value and floor; get(token) refused iff token <
//     floor, else returning the value and raising the floor; a plain
//     register for an unfenced control run) over the clients' reads and
//     writes plus the harness's final read; (b) the grants' tokens as a
//     counter that only goes up, per lock or global. Unknown operations
//     return at "infinity" (after every event and the final read), so they
//     may take effect anywhere after their invocation, or never. Each search
//     is bounded; a timeout is reported as unknown (null).
//  6. Replicas ([ReplicaReport]): every server node has the same applied
//     index and state hash.
//
// # Verdict rules
//
// A run expected "safe" passes iff stale_accepted == 0, lost_updates == 0,
// token_regressions == 0, linearizable is not false (true, or null when the
// search timed out or there was nothing to check), and, when there are
// replicas, replicas_agree. Overlaps do not fail it: a paused holder that
// overlaps its successor is exactly what fencing is for, and the report
// shows it. Believed overlaps, client/store disagreements and refusals of
// tokens that were not stale are reported as notes.
//
// A run expected "violation" passes iff at least one of the violations
// the Run predicts ([Run.Predicts]; all four when empty) showed up: a
// believed overlap, a lost update, a stale request accepted, or a token
// regression. A demonstration that did not reproduce proves nothing, so it
// fails with "did not reproduce".
//
// # Concurrency
//
// Analyze may be called from many goroutines at once; it shares nothing
// between calls. An Analysis is read-only once returned.
package analyze
