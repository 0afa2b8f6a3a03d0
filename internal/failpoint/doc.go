// Package failpoint injects faults at named points of a running program:
// a place in the code calls [Set.Eval] with the point's name, and whatever
// the Set was configured to do there happens, on that goroutine, at that
// moment. The checker (`fencer check`) arms its client workers with
// failpoints to pause them at exact places: right after an acquire
// returned, between the last look at the lease and the write it guards, or
// inside Redlock while the acquire replies are in flight. SIGSTOP sent from
// outside cannot aim that well.
//
// # Spec
//
// A Set is parsed from a spec, one term per point, separated by ';':
//
//	before-write=1*stop; after-acquire=sleep(300ms)
//
// Each term is NAME=[COUNT*]ACTION. COUNT, when given, is how many times
// the point fires before it turns itself off; without it the point fires
// every time. The actions:
//
//	stop        stop the whole process with SIGSTOP: every goroutine halts,
//	            like a stop-the-world pause; whoever armed it resumes the
//	            process with SIGCONT. The calling goroutine returns only
//	            after the SIGCONT (a signal to oneself takes effect a little
//	            later, and nothing after the point may run before)
//	sleep(D)    block the calling goroutine for D (a Go duration); the
//	            rest of the process runs on
//	kill        kill the process with SIGKILL at that point: a crash
//	off         do nothing (a point listed but disarmed)
//
// # Use
//
// Eval on a nil *Set does nothing and costs a nil check, so code can carry
// its points unconditionally. [Options.OnFire] is called just before an
// action runs, so a caller can record the pause in its history (and flush
// it) before the process stops.
//
// A Set is safe for concurrent use. It holds no resources and needs no
// cleanup; it keeps no package-level state.
package failpoint
