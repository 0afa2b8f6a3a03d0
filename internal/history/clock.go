package history

import (
	"strconv"
	"syscall"
	"time"
	"unsafe"
)

// clockMonotonic is CLOCK_MONOTONIC from <linux/time.h>.
const clockMonotonic = 1

// Time is a CLOCK_MONOTONIC reading in nanoseconds. Readings taken by any
// processes on one machine can be compared and subtracted; the zero Time
// means "not set". It is not a wall-clock time and means nothing on another
// machine or after a reboot.
type Time int64

// Now returns the machine's CLOCK_MONOTONIC in nanoseconds, read with the
// clock_gettime system call (not the vDSO, not the wall clock). It is safe
// for concurrent use and costs one system call, a fraction of a
// microsecond.
func Now() Time {
	var ts syscall.Timespec
	// clock_gettime(CLOCK_MONOTONIC) cannot block and, with a valid pointer,
	// cannot fail, so the raw form without scheduler hand-off is right.
	_, _, errno := syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		// Every Linux since 2.6 has CLOCK_MONOTONIC; if it is missing the
		// history would be meaningless, so say so loudly.
		panic("history: clock_gettime(CLOCK_MONOTONIC): " + errno.Error())
	}
	return Time(ts.Nano())
}

// Sub returns the duration t − u.
func (t Time) Sub(u Time) time.Duration { return time.Duration(t - u) }

// Add returns t + d.
func (t Time) Add(d time.Duration) Time { return t + Time(d) }

// String returns t in seconds with nanosecond digits, e.g. "12345.000000042".
func (t Time) String() string {
	sign := ""
	v := int64(t)
	if v < 0 {
		sign, v = "-", -v
	}
	frac := strconv.FormatInt(v%1e9, 10)
	for len(frac) < 9 {
		frac = "0" + frac
	}
	return sign + strconv.FormatInt(v/1e9, 10) + "." + frac
}
