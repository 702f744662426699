/* Keyword spotting firmware: 16-bit PCM in, one line per detection out (`t=1.20s yes 0.91`).
 *
 * The loop is the device runtime's StreamRecognizer: a ring of the last window of samples,
 * classified at every hop boundary once a full window has been heard. Class scores come, as in
 * the runtime, from the bundle's linear head on the model's embedding (so a head fine-tuned on
 * the device is what the firmware uses). An input that starts with the 4 bytes "KWSF" holds int8
 * model inputs instead (uint32 count, then count inputs); each one's int8 logits and embedding are
 * printed, for bit-exactness checks against firmware_sim.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kws_detector.h"
#include "kws_frontend.h"
#include "kws_model.h"
#include "kws_platform.h"

static int16_t ring[KWS_WINDOW_SAMPLES];
static kws_detector detector;

/* softmax(W e + b) of the dequantised int8 embedding e: the bundle's head, in float. */
static void head_probabilities(const int8_t *embedding, float *p) {
  float e[KWS_EMBEDDING_SIZE], top = -1e30f, sum = 0.0f;
  for (int j = 0; j < KWS_EMBEDDING_SIZE; ++j)
    e[j] = KWS_EMBEDDING_SCALE * (float)((int32_t)embedding[j] - KWS_EMBEDDING_ZERO_POINT);
  for (int i = 0; i < KWS_N_CLASSES; ++i) {
    float acc = kws_head_bias[i];
    for (int j = 0; j < KWS_EMBEDDING_SIZE; ++j) acc += kws_head_weight[i * KWS_EMBEDDING_SIZE + j] * e[j];
    p[i] = acc;
    top = acc > top ? acc : top;
  }
  for (int i = 0; i < KWS_N_CLASSES; ++i) { p[i] = expf(p[i] - top); sum += p[i]; }
  for (int i = 0; i < KWS_N_CLASSES; ++i) p[i] /= sum;
}

static int run_features(void) {
  uint32_t count = 0;
  if (kws_platform_read(&count, 4) != 4) return 1;
  uint64_t total = 0;
  for (uint32_t n = 0; n < count; ++n) {
    if (kws_platform_read(kws_model_input(), KWS_INPUT_SIZE) != KWS_INPUT_SIZE) {
      printf("error: input ended after %lu of %lu feature maps\n", (unsigned long)n, (unsigned long)count);
      return 1;
    }
    kws_counter_start();
    kws_model_invoke();
    total += kws_counter_stop();
    const int8_t *logits = kws_model_logits(), *embedding = kws_model_embedding();
    printf("logits");
    for (int i = 0; i < KWS_N_CLASSES; ++i) printf(" %d", logits[i]);
    printf("\nembedding");
    for (int i = 0; i < KWS_EMBEDDING_SIZE; ++i) printf(" %d", embedding[i]);
    printf("\n");
  }
  if (count) printf("per inference: %llu %s (%s)\n", (unsigned long long)(total / count), KWS_COUNTER_UNIT, KWS_COUNTER_NOTE);
  return 0;
}

static int run_stream(const int16_t *first, size_t first_count) {
  int16_t chunk[KWS_HOP_SAMPLES];
  size_t have = first_count, pos = 0;
  uint64_t total = 0, model_total = 0, frontend_total = 0, inferences = 0;
  memcpy(chunk, first, first_count * sizeof(int16_t));
  kws_detector_init(&detector, &kws_detector_config);
  for (;;) {
    if (have < KWS_HOP_SAMPLES) {
      const size_t got = kws_platform_read((char *)chunk + have * 2, (KWS_HOP_SAMPLES - have) * 2);
      have += got / 2;
      if (got == 0 || have < KWS_HOP_SAMPLES) {
        if (got == 0) break;
        continue;
      }
    }
    for (size_t i = 0; i < KWS_HOP_SAMPLES; ++i) {
      ring[pos] = chunk[i];
      pos = (pos + 1) % KWS_WINDOW_SAMPLES;
    }
    total += KWS_HOP_SAMPLES;
    have = 0;
    if (total < KWS_WINDOW_SAMPLES) continue;
    kws_counter_start();
    kws_frontend_run(&kws_frontend_config_data, ring, (int32_t)pos, kws_model_scratch(), kws_model_input());
    frontend_total += kws_counter_stop();
    kws_counter_start();
    kws_model_invoke();
    model_total += kws_counter_stop();
    inferences++;
    float p[KWS_N_CLASSES], score = 0.0f;
    head_probabilities(kws_model_embedding(), p);
    const double t = (double)total / KWS_SAMPLE_RATE;
    const int32_t label = kws_detector_process(&detector, p, t, &score);
    if (label >= 0) printf("t=%.2fs %s %.2f\n", t, kws_labels[label], (double)score);
  }
  if (inferences) {
    printf("per inference: %llu %s model, %llu front-end, over %llu windows (%s)\n",
           (unsigned long long)(model_total / inferences), KWS_COUNTER_UNIT,
           (unsigned long long)(frontend_total / inferences), (unsigned long long)inferences, KWS_COUNTER_NOTE);
  } else {
    printf("per inference: no window (the input is shorter than %d samples)\n", KWS_WINDOW_SAMPLES);
  }
  return 0;
}

int main(void) {
  if (kws_platform_open() != 0) {
    printf("error: cannot open the input\n");
    return 1;
  }
  char head[4];
  const size_t got = kws_platform_read(head, 4);
  int rc;
  if (got == 4 && memcmp(head, "KWSF", 4) == 0) {
    rc = run_features();
  } else {
    int16_t first[2] = {0, 0};
    memcpy(first, head, got);
    rc = run_stream(first, got / 2);
  }
  kws_platform_close();
  return rc;
}
