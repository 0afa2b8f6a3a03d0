/*
 * clockshim: shift a process's wall clock by an offset that can change while
 * it runs. Load it with LD_PRELOAD and name the offset file in
 * FENCER_CLOCK_OFFSET_FILE; the file holds the offset as a decimal number of
 * milliseconds, e.g. "20000\n" (20 s ahead) or "-1500\n".
 *
 * Shifted:  gettimeofday, time, and clock_gettime for CLOCK_REALTIME,
 *           CLOCK_REALTIME_COARSE, CLOCK_REALTIME_ALARM and CLOCK_TAI.
 * Untouched: CLOCK_MONOTONIC and every other clock, so timers, timeouts and
 *           cross-process histories keep working.
 *
 * Redis 7.0 expires keys by mstime()/ustime(), which call gettimeofday; its
 * event loop runs on the monotonic clock. So shifting gettimeofday is what
 * makes a key expire early, and nothing else in Redis notices the jump.
 *
 * Rules this file keeps, because it runs inside any process, at any time,
 * even before that process's malloc is ready (Debian's redis-server uses
 * jemalloc, which reads the clock while it initialises):
 *   - no malloc, no stdio, no locks: only stack buffers and atomics;
 *   - dlsym is called once, from the constructor, never from a clock call;
 *     a clock call that comes before the constructor (or if dlsym fails)
 *     uses the raw system call instead;
 *   - the file is re-read with open/read/close at most once a millisecond,
 *     so a checker jumps the clock by rewriting it (atomically, by rename);
 *     if the file is missing or unreadable the last offset stays;
 *   - errno is left as the caller had it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_SEC 1000000000LL
#define REREAD_NS 1000000LL /* re-read the offset file at most once a ms */

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);
typedef int (*gettimeofday_fn)(struct timeval *, void *);

static clock_gettime_fn real_clock_gettime; /* set once, by the constructor */
static gettimeofday_fn real_gettimeofday;
static char offset_path[4096];              /* empty: no file, offset 0 */

static int64_t offset_ns; /* the current offset; atomic */
static int64_t read_at;   /* CLOCK_MONOTONIC of the last read; atomic */

static int raw_clock_gettime(clockid_t id, struct timespec *ts) {
    clock_gettime_fn f = __atomic_load_n(&real_clock_gettime, __ATOMIC_ACQUIRE);
    if (f) return f(id, ts);
    return (int)syscall(SYS_clock_gettime, id, ts);
}

static int raw_gettimeofday(struct timeval *tv, void *tz) {
    gettimeofday_fn f = __atomic_load_n(&real_gettimeofday, __ATOMIC_ACQUIRE);
    if (f) return f(tv, tz);
    return (int)syscall(SYS_gettimeofday, tv, tz);
}

/* Parse "[space][+-]digits" into *out; anything else leaves it alone. */
static void parse_ms(const char *s, int64_t *out) {
    int neg = 0, digits = 0;
    int64_t v = 0;
    while (*s == ' ' || *s == '\t' || *s == '\n') s++;
    if (*s == '-' || *s == '+') neg = *s++ == '-';
    for (; *s >= '0' && *s <= '9' && digits < 15; s++, digits++) v = v * 10 + (*s - '0');
    if (digits > 0) *out = (neg ? -v : v) * 1000000LL;
}

/* Return the offset, re-reading the file if the last read was more than
 * REREAD_NS ago on the monotonic clock. */
static int64_t current_offset(void) {
    struct timespec mono;
    if (offset_path[0] != 0 && raw_clock_gettime(CLOCK_MONOTONIC, &mono) == 0) {
        int64_t now = (int64_t)mono.tv_sec * NS_PER_SEC + mono.tv_nsec;
        int64_t last = __atomic_load_n(&read_at, __ATOMIC_RELAXED);
        if (last == 0 || now - last >= REREAD_NS) {
            __atomic_store_n(&read_at, now, __ATOMIC_RELAXED);
            int saved = errno;
            int fd = open(offset_path, O_RDONLY | O_CLOEXEC);
            if (fd >= 0) {
                char buf[32];
                ssize_t n = read(fd, buf, sizeof buf - 1);
                close(fd);
                if (n > 0) {
                    int64_t off = __atomic_load_n(&offset_ns, __ATOMIC_RELAXED);
                    buf[n] = 0;
                    parse_ms(buf, &off);
                    __atomic_store_n(&offset_ns, off, __ATOMIC_RELAXED);
                }
            }
            errno = saved;
        }
    }
    return __atomic_load_n(&offset_ns, __ATOMIC_RELAXED);
}

/* glibc declares the clock functions' pointer arguments nonnull, but the
 * kernel accepts NULL; hiding the pointer from the optimiser keeps the check. */
static inline int is_null(const void *p) {
    __asm__("" : "+r"(p));
    return p == NULL;
}

static void shift(time_t *sec, int64_t *nsec, int64_t off) {
    int64_t ns = *nsec + off % NS_PER_SEC;
    *sec += off / NS_PER_SEC;
    if (ns < 0) { ns += NS_PER_SEC; (*sec)--; }
    if (ns >= NS_PER_SEC) { ns -= NS_PER_SEC; (*sec)++; }
    *nsec = ns;
}

__attribute__((constructor)) static void clockshim_init(void) {
    const char *p = getenv("FENCER_CLOCK_OFFSET_FILE");
    if (p && strlen(p) < sizeof offset_path) memcpy(offset_path, p, strlen(p) + 1);
    /* dlsym may allocate, and the allocator may read the clock: that call
     * finds the pointers still NULL and takes the system call. */
    __atomic_store_n(&real_clock_gettime, (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime"), __ATOMIC_RELEASE);
    __atomic_store_n(&real_gettimeofday, (gettimeofday_fn)dlsym(RTLD_NEXT, "gettimeofday"), __ATOMIC_RELEASE);
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    int rc = raw_clock_gettime(id, ts);
    if (rc != 0 || is_null(ts)) return rc;
    switch (id) {
    case CLOCK_REALTIME:
    case CLOCK_REALTIME_COARSE:
    case CLOCK_REALTIME_ALARM:
    case CLOCK_TAI: {
        int64_t nsec = ts->tv_nsec;
        shift(&ts->tv_sec, &nsec, current_offset());
        ts->tv_nsec = (long)nsec;
        break;
    }
    default:
        break;
    }
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
    int rc = raw_gettimeofday(tv, tz);
    if (rc != 0 || is_null(tv)) return rc;
    int64_t nsec = (int64_t)tv->tv_usec * 1000;
    shift(&tv->tv_sec, &nsec, current_offset());
    tv->tv_usec = (suseconds_t)(nsec / 1000);
    return rc;
}

time_t time(time_t *t) {
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return (time_t)-1;
    if (t) *t = ts.tv_sec;
    return ts.tv_sec;
}
