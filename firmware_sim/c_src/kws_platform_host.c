/* Host build: PCM from standard input, the counter is the process's monotonic clock in nanoseconds. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <time.h>

#include "kws_platform.h"

const char *const KWS_COUNTER_UNIT = "host ns";
const char *const KWS_COUNTER_NOTE = "host wall-clock time, not a microcontroller figure";
static struct timespec started;

int kws_platform_open(void) { return 0; }
size_t kws_platform_read(void *buf, size_t n) { return fread(buf, 1, n, stdin); }
void kws_platform_close(void) {}
void kws_counter_start(void) { clock_gettime(CLOCK_MONOTONIC, &started); }
uint64_t kws_counter_stop(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (uint64_t)(now.tv_sec - started.tv_sec) * 1000000000ull + (uint64_t)(now.tv_nsec - started.tv_nsec);
}
