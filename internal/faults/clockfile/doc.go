// Package clockfile is a clock for Go programs whose offset and rate a
// fault injector changes at run time through a file: the fencer server's
// counterpart of package clockshim, whose LD_PRELOAD trick does not reach
// Go (Go reads the clock through the vDSO, not libc).
//
// `fencer server --clock-file PATH` (a hidden flag, for the checker) uses
// a [Clock] as its server.Clock, the leader's only time source for session
// deadlines and lock-delay. The checker writes the file with a [File]:
//
//	f, _ := clockfile.Create(path)
//	f.Set("n2", 20*time.Second, 1)  // n2's clock jumps 20 s ahead
//	f.Set("n3", 0, 2)               // n3's clock runs twice as fast
//	f.Set("*", 0, 1)                // every other node: the real clock
//
// # The file
//
// One line per node: its ID (or "*" for every node without a line of its
// own), an offset (a Go duration, may be negative) and a rate (how many
// seconds pass on the clock per real second, from 0.01 to 100):
//
//	n2 20s 1
//	* 0s 1
//
// Blank lines and lines starting with '#' are ignored. A Clock re-reads the
// file at most once a millisecond, when its Now is called, so a change is
// seen within about a millisecond of the next reading. If the file cannot
// be read or parsed, the Clock keeps its last values.
//
// # The clock
//
// Now returns the real time shifted by the offset, with the time since the
// last rate change scaled by the rate: a change of rate does not make the
// clock jump, a change of offset does (forwards or backwards). The value
// keeps a monotonic reading, shifted the same way, so durations between
// two readings (t.Sub(u)) are durations on this clock, as the server's
// timers expect.
package clockfile
