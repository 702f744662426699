#include "kws_detector.h"

void kws_detector_init(kws_detector *d, const kws_detector_settings *settings) {
  d->settings = settings;
  d->head = 0;
  d->count = 0;
  d->last_detection = -1e300;
}

int32_t kws_detector_process(kws_detector *d, const float *probabilities, double time_s, float *score) {
  const kws_detector_settings *s = d->settings;
  const int32_t k = s->n_classes;
  if (d->count == KWS_DETECTOR_MAX_RESULTS) { d->head = (d->head + 1) % KWS_DETECTOR_MAX_RESULTS; d->count--; }
  const int32_t slot = (d->head + d->count) % KWS_DETECTOR_MAX_RESULTS;
  d->times[slot] = time_s;
  for (int32_t c = 0; c < k; ++c) d->scores[slot][c] = probabilities[c];
  d->count++;
  /* the newest result always stays; the tolerance keeps results exactly on the edge (float hops) */
  while (d->count > 1 && time_s - d->times[d->head] > s->average_window_s + 1e-9) {
    d->head = (d->head + 1) % KWS_DETECTOR_MAX_RESULTS;
    d->count--;
  }
  double mean[KWS_DETECTOR_MAX_CLASSES];
  for (int32_t c = 0; c < k; ++c) mean[c] = 0.0;
  for (int32_t i = 0; i < d->count; ++i) {
    const int32_t j = (d->head + i) % KWS_DETECTOR_MAX_RESULTS;
    for (int32_t c = 0; c < k; ++c) mean[c] += d->scores[j][c];
  }
  int32_t top = 0;
  for (int32_t c = 0; c < k; ++c) {
    mean[c] /= d->count;
    if (mean[c] > mean[top]) top = c;
  }
  *score = (float)mean[top];
  if (d->count < s->minimum_count) return -1;
  if (!s->reportable[top] || mean[top] < s->thresholds[top]) return -1;
  if (time_s - d->last_detection < s->suppression_s - 1e-9) return -1;
  d->last_detection = time_s;
  return top;
}
