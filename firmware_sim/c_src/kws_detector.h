/* RecognizeCommands in C: the device runtime's smoother and decision rule (deploy/runtime/recognizer.py).
 *
 * Scores are averaged over the last average_window_s seconds; a label is reported when the averaged
 * top score reaches that label's threshold (thresholds[top]) with at least minimum_count results in the window, the label is
 * not ignored (silence, unknown), and no detection happened in the last suppression_s seconds.
 */
#ifndef KWS_DETECTOR_H
#define KWS_DETECTOR_H
#include <stdint.h>

#ifndef KWS_DETECTOR_MAX_RESULTS
#define KWS_DETECTOR_MAX_RESULTS 16 /* results inside one averaging window; more are dropped oldest first */
#endif
#ifndef KWS_DETECTOR_MAX_CLASSES
#define KWS_DETECTOR_MAX_CLASSES 32 /* the generated Makefile sets the model's class count */
#endif

typedef struct {
  int32_t n_classes, minimum_count;
  double average_window_s, threshold, suppression_s; /* double: the same comparisons as the Python runtime */
  const uint8_t *reportable; /* [n_classes]: 0 for ignored labels */
  const double *thresholds;  /* [n_classes]: each label's threshold (the bundle's per-label ones, else threshold) */
} kws_detector_settings;

typedef struct {
  const kws_detector_settings *settings;
  double times[KWS_DETECTOR_MAX_RESULTS];
  float scores[KWS_DETECTOR_MAX_RESULTS][KWS_DETECTOR_MAX_CLASSES];
  int32_t head, count;
  double last_detection;
} kws_detector;

void kws_detector_init(kws_detector *d, const kws_detector_settings *settings);
/* Returns the detected class index, or -1; *score receives the averaged score of the top class. */
int32_t kws_detector_process(kws_detector *d, const float *probabilities, double time_s, float *score);

#endif
