// Package history records what the processes of a checker run did and when,
// and merges the records of many processes into one history.
//
// # Time
//
// Every event carries a [Time]: the CLOCK_MONOTONIC reading of the machine, in
// nanoseconds, taken by [Now] through the clock_gettime system call. That
// clock is one per machine (per time namespace): it starts near boot, never
// jumps when the wall clock is set, and every process reads the same value at
// the same instant. So the events of a lock server, its clients and the
// fault injector, each in its own process, can be put in one order.
//
// Go's own monotonic reading cannot do this: the reading inside a time.Time
// counts from the start of the process that took it, so readings from two
// processes share no origin and cannot be compared; and the wall clock, which
// they do share, is exactly what a checker jumps. A fault shim that shifts
// the wall clock (clockshim) leaves CLOCK_MONOTONIC alone, so it does not
// disturb the history.
//
// # Recording
//
// Each process writes its own file with a [Recorder], one JSON object per
// line (the [Event] shape is documented on the type). A Recorder buffers
// lines in memory and writes them out at most [DefaultFlushInterval] after
// the first unwritten event, when its buffer fills, on [Recorder.Flush] and on
// [Recorder.Close]. Each write hands whole lines to the kernel, which keeps
// them when the process dies; nothing is fsynced, because the faults are
// process deaths, not machine crashes.
//
// The trade-off: a process killed with SIGKILL loses the events of its last
// flush interval (a few milliseconds), and the write that was under way when
// it died can leave a torn last line. A checker must therefore read a
// missing completion ("acquire-ok" without its pair) as an operation whose
// outcome is unknown: it may have taken effect, or not, at any time after
// its invocation. That is what it must assume for a killed client anyway.
//
// # Reading
//
// [ReadFile] reads one file; [Merge] reads many and orders all their events
// by time, keeping the file and line order of events with equal times. A
// torn last line is skipped and counted, never an error; a broken line
// anywhere else is an error, because it means the file is not a history.
package history
