/* Cortex-M build: PCM from a file through semihosting, the counter is SysTick.
 *
 * On a real core SysTick with CLKSOURCE=1 counts CPU cycles. On QEMU's mps2-an386 run with
 * `-icount shift=0` one instruction takes one virtual nanosecond and SysTick ticks at the board's
 * 25 MHz, so one tick is KWS_INSNS_PER_TICK = 40 instructions (measured with a calibrated loop);
 * the figure printed there is instructions, not device time.
 */
#include <stdio.h>

#include "kws_platform.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

#ifdef KWS_QEMU
#define KWS_INSNS_PER_TICK 40u
const char *const KWS_COUNTER_UNIT = "instructions";
const char *const KWS_COUNTER_NOTE = "QEMU -icount instruction count; emulated wall-clock is not device time";
#else
#define KWS_INSNS_PER_TICK 1u
const char *const KWS_COUNTER_UNIT = "cycles";
const char *const KWS_COUNTER_NOTE = "SysTick CPU cycles";
#endif

#ifndef KWS_INPUT_FILE
#define KWS_INPUT_FILE "input.pcm"
#endif

static FILE *input;
static volatile uint32_t wraps;
static uint32_t start_value, start_wraps;

void SysTick_Handler(void) { wraps++; }

int kws_platform_open(void) {
  input = fopen(KWS_INPUT_FILE, "rb");
  SYST_RVR = 0xFFFFFFu;
  SYST_CVR = 0;
  SYST_CSR = 7u; /* processor clock, interrupt on wrap, enabled */
  return input ? 0 : -1;
}
size_t kws_platform_read(void *buf, size_t n) { return input ? fread(buf, 1, n, input) : 0; }
void kws_platform_close(void) { if (input) fclose(input); }
void kws_counter_start(void) {
  do { start_wraps = wraps; start_value = SYST_CVR; } while (start_wraps != wraps);
}
uint64_t kws_counter_stop(void) {
  uint32_t value, w;
  do { w = wraps; value = SYST_CVR; } while (w != wraps);
  const uint64_t ticks = (uint64_t)(w - start_wraps) * 0x1000000ull + start_value - value;
  return ticks * KWS_INSNS_PER_TICK;
}
