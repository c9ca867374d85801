/* clockloop: N calls of clock_gettime(CLOCK_MONOTONIC), as a program reading the time in a
 * loop does (scripts/bench's kvm-clock rows, the `clock` check of tests/guest/linux/init).
 * With kvm-clock or the TSC as clocksource glibc answers from the vDSO: no system call and,
 * under Bulkhead, no VM exit. Prints the calls, the loop's nanoseconds by the same clock, and
 * how often the clock went backwards (must be 0; the exit status says so too). Built static
 * by scripts/build-guest (gcc, glibc's libc.a). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000000;
  struct timespec start, prev, t, end;
  long backwards = 0;
  clock_gettime(CLOCK_MONOTONIC, &start);
  prev = start;
  for (long i = 0; i < n; i++) {
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (t.tv_sec < prev.tv_sec || (t.tv_sec == prev.tv_sec && t.tv_nsec < prev.tv_nsec))
      backwards++;
    prev = t;
  }
  clock_gettime(CLOCK_MONOTONIC, &end);
  long long ns = (long long)(end.tv_sec - start.tv_sec) * 1000000000LL +
                 (end.tv_nsec - start.tv_nsec);
  printf("guest: clock calls=%ld ns=%lld backwards=%ld\n", n, ns, backwards);
  return backwards != 0;
}
