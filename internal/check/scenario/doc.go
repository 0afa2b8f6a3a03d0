// Package scenario holds the checker's scenarios: every failure the seed
// articles describe (DESIGN.md's eight) and the lock server's own, each in
// a file of its own that says, in a few declarative lines and one short
// script, what runs (the Setup per backend), what the clients do (the
// workers), what goes wrong (the faults, through package harness) and what
// must come out of it for each backend (the Case's expectation and why).
//
// A Case expected to show a violation passes only if the violation showed
// up (package analyze's rules): a demonstration that did not reproduce
// proves nothing. A Case expected safe passes only if no stale write was
// accepted, no update lost and no token went backwards; MustNot can also
// forbid violations the safe rules allow (a believed overlap where the
// point is that the lock itself held), and Check adds scenario-specific
// checks (that the holder knew how little validity a slow acquire left).
//
// [All] lists the scenarios in the order `fencer check` runs them; the
// short form (Params.Duration zero) of each takes a few seconds.
// [Schedule] is the soak's seeded fault schedule.
package scenario
