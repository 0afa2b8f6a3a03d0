// Package clockshim moves the wall clock of a C program, such as
// redis-server, while it runs: the fault behind Kleppmann's Redlock scenario,
// where one Redis node's clock jumps forward and a lock key expires early.
//
// The shim is a small LD_PRELOAD library written in C (csrc/shim.c, embedded in
// this package and compiled by [Build] with gcc). It shifts gettimeofday,
// time and clock_gettime(CLOCK_REALTIME and its variants) by an offset it
// reads from a file; the program's monotonic clock is left alone. A checker
// changes the offset at any time with [Offset.Set]; the program sees the
// new offset within about a millisecond.
//
// # Why this is enough for Redis
//
// Redis 7.0 decides that a key has expired in keyIsExpired (db.c) by
// comparing the key's absolute expiry time with mstime(), or with the time
// cached by call() through ustime(); both read gettimeofday (server.c). The
// expiry time itself is computed from the same clock when SET ... PX runs,
// and the active expiry cycle (expire.c) uses it too. Its event loop timers
// use getMonotonicUs (monotonic.c: CLOCK_MONOTONIC or the TSC), which the
// shim does not touch. So after a jump of +20 s a key set with PX 10000 is
// expired for every command, and the server otherwise runs as before.
//
// # What it cannot do
//
// It works only for dynamically linked programs that read the clock through
// libc. Go programs read the clock through the vDSO without libc and are not
// affected; nor are statically linked programs, the file times the kernel
// writes, or timespec_get and ftime (Redis uses neither). libfaketime does
// more, but hangs Debian's jemalloc-linked redis-server; this shim
// allocates nothing and never calls dlsym from a clock call.
package clockshim
