#include "kws_frontend.h"

#include <math.h>

/* In-place iterative radix-2 complex FFT (n a power of two); twiddles cos/sin(2 pi k / n) are
 * tc[k * stride], ts[k * stride] (stride 2 reads the tables of a transform twice as long). */
static void fft(float *re, float *im, int32_t n, const float *tc, const float *ts, int32_t stride) {
  for (int32_t i = 1, j = 0; i < n; ++i) {
    int32_t bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      float t = re[i]; re[i] = re[j]; re[j] = t;
      t = im[i]; im[i] = im[j]; im[j] = t;
    }
  }
  for (int32_t len = 2; len <= n; len <<= 1) {
    const int32_t half = len >> 1, step = n / len * stride;
    for (int32_t i = 0; i < n; i += len) {
      for (int32_t k = 0; k < half; ++k) {
        const float wr = tc[k * step], wi = -ts[k * step];
        const float xr = re[i + k + half] * wr - im[i + k + half] * wi;
        const float xi = re[i + k + half] * wi + im[i + k + half] * wr;
        re[i + k + half] = re[i + k] - xr; im[i + k + half] = im[i + k] - xi;
        re[i + k] += xr; im[i + k] += xi;
      }
    }
  }
}

/* Power spectrum |X[k]|^2, k = 0..n/2, of the n real samples packed as z[j] = x[2j] + i x[2j+1] in
 * (re, im)[0..n/2): one complex FFT of n/2 points and the split into even/odd halves, half the work
 * of a complex FFT of n points. The power lands in re[0..n/2] (re holds n floats). */
static void real_power_spectrum(float *re, float *im, int32_t n, const float *tc, const float *ts) {
  const int32_t m = n / 2;
  fft(re, im, m, tc, ts, 2);
  const float r0 = re[0], i0 = im[0];
  re[0] = (r0 + i0) * (r0 + i0);
  re[m] = (r0 - i0) * (r0 - i0);
  for (int32_t k = 1; k <= m / 2; ++k) {
    const float ar = re[k], ai = im[k], br = re[m - k], bi = im[m - k];
    const float c = tc[k], s = ts[k];
    const float er = 0.5f * (ar + br), ei = 0.5f * (ai - bi), or_ = 0.5f * (ai + bi), oi = -0.5f * (ar - br);
    const float xr = er + c * or_ + s * oi, xi = ei + c * oi - s * or_;
    /* X[m-k]: the same with a and b swapped and the twiddle (-c, s) */
    const float er2 = er, ei2 = -ei, or2 = or_, oi2 = -oi;
    const float yr = er2 - c * or2 + s * oi2, yi = ei2 - c * oi2 - s * or2;
    re[k] = xr * xr + xi * xi;
    re[m - k] = yr * yr + yi * yi;
  }
}

/* HTK regression delta along time of one coefficient's row, edges replicated. */
static void delta_row(const float *x, float *out, int32_t frames, int32_t width) {
  const int32_t half = width / 2;
  float denom = 0.0f;
  for (int32_t k = 1; k <= half; ++k) denom += (float)(k * k);
  denom *= 2.0f;
  for (int32_t t = 0; t < frames; ++t) {
    float acc = 0.0f;
    for (int32_t k = 1; k <= half; ++k) {
      int32_t a = t + k, b = t - k;
      a = a >= frames ? frames - 1 : a;
      b = b < 0 ? 0 : b;
      acc += (float)k * (x[a] - x[b]);
    }
    out[t] = acc / denom;
  }
}

static int8_t quantize(const kws_frontend_config *cfg, float value, int32_t c, int32_t f) {
  const float x = (value - cfg->norm_mean[c * cfg->coeffs + f]) / cfg->norm_std[c * cfg->coeffs + f];
  long q = lroundf(x / cfg->input_scale) + cfg->input_zero_point;
  return (int8_t)(q < -128 ? -128 : (q > 127 ? 127 : q));
}

void kws_frontend_run(const kws_frontend_config *cfg, const int16_t *ring, int32_t ring_start, float *scratch,
                      int8_t *out) {
  const int32_t n_fft = cfg->n_fft, frames = cfg->n_frames, coeffs = cfg->coeffs, n = cfg->n_samples;
  float *re = scratch, *im = scratch + n_fft, *mel = im + n_fft, *maps = mel + cfg->n_mels;
  for (int32_t t = 0; t < frames; ++t) {
    const int32_t start = t * cfg->hop - n_fft / 2;
    for (int32_t i = 0; i < n_fft; ++i) {
      const int32_t s = start + i;
      const float sample = (s >= 0 && s < n) ? (float)ring[(ring_start + s) % n] * (1.0f / 32768.0f) : 0.0f;
      if (i & 1) im[i >> 1] = sample * cfg->window[i];
      else re[i >> 1] = sample * cfg->window[i];
    }
    real_power_spectrum(re, im, n_fft, cfg->twiddle_cos, cfg->twiddle_sin);
    const float *w = cfg->mel_weights;
    for (int32_t m = 0; m < cfg->n_mels; ++m) {
      float acc = 0.0f;
      for (int32_t j = 0; j < cfg->mel_length[m]; ++j) {
        const int32_t b = cfg->mel_start[m] + j;
        acc += w[j] * re[b];
      }
      w += cfg->mel_length[m];
      mel[m] = 10.0f * log10f(acc > 1e-10f ? acc : 1e-10f);
    }
    if (cfg->kind == KWS_LOG_MEL) { /* straight into the model input: no feature map kept */
      for (int32_t m = 0; m < cfg->n_mels; ++m) out[cfg->input_index[m * frames + t]] = quantize(cfg, mel[m], 0, m);
      continue;
    }
    for (int32_t k = 0; k < cfg->n_mfcc; ++k) {
      float acc = 0.0f;
      for (int32_t m = 0; m < cfg->n_mels; ++m) acc += cfg->dct[k * cfg->n_mels + m] * mel[m];
      if (cfg->kind == KWS_MFCC) out[cfg->input_index[k * frames + t]] = quantize(cfg, acc, 0, k);
      else maps[k * frames + t] = acc;
    }
  }
  if (cfg->kind != KWS_FD_MFCC) return;
  /* FD-MFCC: the coefficients and their first deltas are kept whole; each second-delta row is made
   * and quantised on its own (in the FFT buffer, free by now), so only two planes need RAM. */
  float *d1 = maps + coeffs * frames, *d2 = re;
  for (int32_t f = 0; f < coeffs; ++f) {
    delta_row(maps + f * frames, d1 + f * frames, frames, cfg->delta_width);
    delta_row(d1 + f * frames, d2, frames, cfg->delta_width);
    for (int32_t t = 0; t < frames; ++t) {
      out[cfg->input_index[f * frames + t]] = quantize(cfg, maps[f * frames + t], 0, f);
      out[cfg->input_index[(coeffs + f) * frames + t]] = quantize(cfg, d1[f * frames + t], 1, f);
      out[cfg->input_index[(2 * coeffs + f) * frames + t]] = quantize(cfg, d2[t], 2, f);
    }
  }
}
