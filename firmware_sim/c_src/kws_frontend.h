/* The training front-end (deploy/runtime/features.py) in C: log-mel, MFCC or FD-MFCC of one window.
 *
 * Float32 on FPU cores; the generator precomputes every table (window, twiddles, mel filters, DCT,
 * normaliser, input quantisation) from the bundle's FeatureConfig, so this file holds only the
 * arithmetic. A window is framed exactly as the device runtime frames it (left-padded by half an
 * FFT, frame t centred on sample t * hop), so a stream gives the runtime's features up to float32
 * rounding.
 */
#ifndef KWS_FRONTEND_H
#define KWS_FRONTEND_H
#include <stdint.h>

enum { KWS_LOG_MEL = 0, KWS_MFCC = 1, KWS_FD_MFCC = 2 };

typedef struct {
  int32_t kind, n_samples, n_fft, hop, n_frames, n_mels, n_mfcc, delta_width, channels, coeffs;
  const float *window;                          /* [n_fft] periodic Hann, centred */
  const float *twiddle_cos, *twiddle_sin;       /* [n_fft / 2] */
  const int16_t *mel_start, *mel_length;        /* [n_mels]: first FFT bin and bin count of each filter */
  const float *mel_weights;                     /* concatenated non-zero filter weights */
  const float *dct;                             /* [n_mfcc][n_mels] orthonormal DCT-II (MFCC kinds) */
  const float *norm_mean, *norm_std;            /* [channels][coeffs] */
  float input_scale;                            /* model input quantisation */
  int32_t input_zero_point;
  const int32_t *input_index;                   /* [channels * coeffs * n_frames]: (c, f, t) -> model input offset */
} kws_frontend_config;

/* Scratch floats kws_frontend_run needs (firmware_sim.c_frontend.frontend_scratch_floats computes the
 * same): one FFT frame (real + imaginary, at least one frame row), the mel energies, and for FD-MFCC,
 * whose deltas need every frame, the coefficient and first-delta planes. */

/* The window is ring[(start + s) % n_samples] for s = 0 .. n_samples - 1, 16-bit PCM; out: the int8 model input. */
void kws_frontend_run(const kws_frontend_config *cfg, const int16_t *ring, int32_t start, float *scratch, int8_t *out);

#endif
