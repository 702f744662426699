/* What differs between the host build and a board: where PCM comes from, and what the counter counts. */
#ifndef KWS_PLATFORM_H
#define KWS_PLATFORM_H
#include <stddef.h>
#include <stdint.h>

int kws_platform_open(void);                 /* 0 on success */
size_t kws_platform_read(void *buf, size_t n); /* bytes read; 0 at the end */
void kws_platform_close(void);
void kws_counter_start(void);
uint64_t kws_counter_stop(void);             /* counts since kws_counter_start, in KWS_COUNTER_UNIT */
extern const char *const KWS_COUNTER_UNIT;
extern const char *const KWS_COUNTER_NOTE;

#endif
