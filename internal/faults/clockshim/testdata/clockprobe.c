/* clockprobe: for every line on stdin, print one line of clock readings:
 * gettimeofday (us), CLOCK_REALTIME (ns), CLOCK_REALTIME_COARSE (ns),
 * time() (s), CLOCK_MONOTONIC (ns). The clockshim tests run it under the
 * shim. */
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

static long long ns(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(void) {
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        long long real = ns(CLOCK_REALTIME), coarse = ns(CLOCK_REALTIME_COARSE);
        long long t = (long long)time(NULL), mono = ns(CLOCK_MONOTONIC);
        printf("%lld %lld %lld %lld %lld\n", (long long)tv.tv_sec * 1000000LL + tv.tv_usec, real, coarse, t, mono);
        fflush(stdout);
    }
    return 0;
}
