/* See kws_kernels.h: the reference int8 arithmetic; interior positions take a fast path.
 *
 * Why the fast paths give the same integers: sum((x + io) * f) == sum(x * f) + io * sum(f), and the
 * generator folds io * sum(f) (over all taps) into `offset_bias` per output channel. That holds only
 * where every tap lies inside the input (TFLM pads with the zero point, so a padded tap adds 0 after
 * the offset, not io * f); border positions therefore keep the reference loop with bounds checks.
 * The int8 dot products use the Cortex-M DSP extension (SXTB16 + SMLAD, two MACs per instruction)
 * when __ARM_FEATURE_DSP is defined; elsewhere a plain loop.
 */
#include "kws_kernels.h"

#include <limits.h>
#include <string.h>
#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

static inline int32_t clamp_i32(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

int32_t kws_saturating_rounding_doubling_high_mul(int32_t a, int32_t b) {
  if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
  int64_t ab = (int64_t)a * (int64_t)b;
  const int64_t sum = ab + (ab >= 0 ? (1LL << 30) : (1 - (1LL << 30)));
  /* division by 2^31 truncating toward zero, without the library's 64-bit division on a 32-bit core */
  return sum >= 0 ? (int32_t)(sum >> 31) : -(int32_t)((-sum) >> 31);
}

int32_t kws_rounding_divide_by_pot(int32_t x, int32_t exponent) {
  if (exponent == 0) return x;
  const int32_t mask = (int32_t)((1LL << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

int32_t kws_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0;
  const int32_t right = shift > 0 ? 0 : -shift;
  return kws_rounding_divide_by_pot(kws_saturating_rounding_doubling_high_mul(x * (1 << left), multiplier), right);
}

#if defined(__ARM_FEATURE_DSP)
static inline uint32_t load_u32(const int8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4); /* one unaligned LDR on ARMv7E-M */
  return v;
}
static inline uint32_t ror8(uint32_t v) { return (v >> 8) | (v << 24); }
#endif

/* acc + sum(a[i] * b[i]) for n int8 pairs */
static inline int32_t dot_s8(const int8_t *a, const int8_t *b, int32_t n, int32_t acc) {
#if defined(__ARM_FEATURE_DSP)
  for (; n >= 4; n -= 4, a += 4, b += 4) {
    const uint32_t va = load_u32(a), vb = load_u32(b);
    acc = __smlad((int32_t)__sxtb16((int32_t)va), (int32_t)__sxtb16((int32_t)vb), acc);
    acc = __smlad((int32_t)__sxtb16((int32_t)ror8(va)), (int32_t)__sxtb16((int32_t)ror8(vb)), acc);
  }
#endif
  for (; n > 0; --n) acc += (int32_t)*a++ * (int32_t)*b++;
  return acc;
}

/* two dot products sharing the input a: acc0 += a.b0, acc1 += a.b1 (the input is loaded once) */
static inline void dot2_s8(const int8_t *a, const int8_t *b0, const int8_t *b1, int32_t n, int32_t *acc0,
                           int32_t *acc1) {
  int32_t s0 = *acc0, s1 = *acc1;
#if defined(__ARM_FEATURE_DSP)
  for (; n >= 4; n -= 4, a += 4, b0 += 4, b1 += 4) {
    const uint32_t va = load_u32(a), v0 = load_u32(b0), v1 = load_u32(b1);
    const int32_t a_even = (int32_t)__sxtb16((int32_t)va), a_odd = (int32_t)__sxtb16((int32_t)ror8(va));
    s0 = __smlad(a_even, (int32_t)__sxtb16((int32_t)v0), s0);
    s0 = __smlad(a_odd, (int32_t)__sxtb16((int32_t)ror8(v0)), s0);
    s1 = __smlad(a_even, (int32_t)__sxtb16((int32_t)v1), s1);
    s1 = __smlad(a_odd, (int32_t)__sxtb16((int32_t)ror8(v1)), s1);
  }
#endif
  for (; n > 0; --n) {
    const int32_t x = *a++;
    s0 += x * (int32_t)*b0++;
    s1 += x * (int32_t)*b1++;
  }
  *acc0 = s0;
  *acc1 = s1;
}

static inline int8_t requantize(const kws_conv_params *p, int32_t acc, int32_t oc) {
  acc = kws_multiply_by_quantized_multiplier(acc, p->multiplier[oc], p->shift[oc]) + p->output_offset;
  return (int8_t)clamp_i32(acc, p->act_min, p->act_max);
}

/* every tap of output (y0, x0) inside the input: the offset folds into offset_bias */
static inline int conv_interior(const kws_conv_params *p, int32_t y0, int32_t x0) {
  return p->offset_bias && p->dil_w == 1 && y0 >= 0 && x0 >= 0 && y0 + (p->kh - 1) * p->dil_h < p->in.h
         && x0 + p->kw - 1 < p->in.w;
}

/* one output position from kh rows of kw*in_c contiguous int8 values, `in_row` bytes apart */
static void conv_position(const kws_conv_params *p, const int8_t *in, int32_t in_row, int8_t *dst) {
  const int32_t out_c = p->out.c, row = p->kw * p->in.c, taps = p->kh * row;
  int32_t oc = 0;
  for (; oc + 1 < out_c; oc += 2) {
    int32_t acc0 = p->offset_bias[oc], acc1 = p->offset_bias[oc + 1];
    const int8_t *f0 = p->filter + oc * taps, *f1 = f0 + taps;
    for (int32_t ky = 0; ky < p->kh; ++ky) dot2_s8(in + ky * in_row, f0 + ky * row, f1 + ky * row, row, &acc0, &acc1);
    dst[oc] = requantize(p, acc0, oc);
    dst[oc + 1] = requantize(p, acc1, oc + 1);
  }
  for (; oc < out_c; ++oc) {
    int32_t acc = p->offset_bias[oc];
    const int8_t *f = p->filter + oc * taps;
    for (int32_t ky = 0; ky < p->kh; ++ky) acc = dot_s8(in + ky * in_row, f + ky * row, row, acc);
    dst[oc] = requantize(p, acc, oc);
  }
}

/* Border positions: the taps gathered into `patch` [kh][kw][in_c] with padded taps set to the input
 * zero point (-input_offset), the value whose offset term is 0, as TFLM's padding; the folded
 * offset_bias is then exact. Returns 0 when the patch does not fit (the caller keeps the reference loop). */
static int8_t patch[KWS_PATCH_BYTES];
static int gather_patch(const kws_conv_params *p, const int8_t *input, int32_t y0, int32_t x0) {
  const int32_t in_c = p->in.c;
  if (p->kh * p->kw * in_c > KWS_PATCH_BYTES) return 0;
  int8_t *dst = patch;
  for (int32_t ky = 0; ky < p->kh; ++ky) {
    const int32_t iy = y0 + ky * p->dil_h;
    for (int32_t kx = 0; kx < p->kw; ++kx, dst += in_c) {
      const int32_t ix = x0 + kx * p->dil_w;
      if (iy < 0 || iy >= p->in.h || ix < 0 || ix >= p->in.w) memset(dst, (int8_t)(-p->input_offset), (size_t)in_c);
      else memcpy(dst, input + (iy * p->in.w + ix) * in_c, (size_t)in_c);
    }
  }
  return 1;
}

void kws_conv2d(const kws_conv_params *p, const int8_t *input, int8_t *output) {
  const int32_t in_c = p->in.c, out_c = p->out.c;
  for (int32_t oy = 0; oy < p->out.h; ++oy) {
    for (int32_t ox = 0; ox < p->out.w; ++ox) {
      const int32_t y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
      int8_t *dst = output + (oy * p->out.w + ox) * out_c;
      if (conv_interior(p, y0, x0)) {
        conv_position(p, input + (y0 * p->in.w + x0) * in_c, p->dil_h * p->in.w * in_c, dst);
        continue;
      }
      if (p->offset_bias && gather_patch(p, input, y0, x0)) {
        conv_position(p, patch, p->kw * in_c, dst);
        continue;
      }
      for (int32_t oc = 0; oc < out_c; ++oc) {
        int32_t acc = 0;
        for (int32_t ky = 0; ky < p->kh; ++ky) {
          const int32_t iy = y0 + ky * p->dil_h;
          if (iy < 0 || iy >= p->in.h) continue;
          for (int32_t kx = 0; kx < p->kw; ++kx) {
            const int32_t ix = x0 + kx * p->dil_w;
            if (ix < 0 || ix >= p->in.w) continue;
            const int8_t *in = input + (iy * p->in.w + ix) * in_c;
            const int8_t *f = p->filter + ((oc * p->kh + ky) * p->kw + kx) * in_c;
            for (int32_t ic = 0; ic < in_c; ++ic) acc += ((int32_t)in[ic] + p->input_offset) * (int32_t)f[ic];
          }
        }
        if (p->bias) acc += p->bias[oc];
        dst[oc] = requantize(p, acc, oc);
      }
    }
  }
}

/* depthwise, multiplier 1: per channel kh*kw MACs at a stride of in_c, from rows `in_row` bytes apart */
static void dw_position(const kws_conv_params *p, const int8_t *in, int32_t in_row, int8_t *dst) {
  const int32_t in_c = p->in.c, kw = p->kw;
  for (int32_t c = 0; c < in_c; ++c) {
    int32_t acc = p->offset_bias[c];
    const int8_t *f = p->filter + c, *x = in + c;
    for (int32_t ky = 0; ky < p->kh; ++ky, x += in_row) {
      for (int32_t kx = 0; kx < kw; ++kx, f += in_c) acc += (int32_t)x[kx * in_c] * (int32_t)*f;
    }
    dst[c] = requantize(p, acc, c);
  }
}

void kws_depthwise_conv2d(const kws_conv_params *p, const int8_t *input, int8_t *output) {
  const int32_t in_c = p->in.c, out_c = p->out.c, m = p->depth_multiplier;
  for (int32_t oy = 0; oy < p->out.h; ++oy) {
    for (int32_t ox = 0; ox < p->out.w; ++ox) {
      const int32_t y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
      int8_t *dst = output + (oy * p->out.w + ox) * out_c;
      if (m == 1 && conv_interior(p, y0, x0)) {
        dw_position(p, input + (y0 * p->in.w + x0) * in_c, p->dil_h * p->in.w * in_c, dst);
        continue;
      }
      if (m == 1 && p->offset_bias && gather_patch(p, input, y0, x0)) {
        dw_position(p, patch, p->kw * in_c, dst);
        continue;
      }
      for (int32_t ic = 0; ic < in_c; ++ic) {
        for (int32_t j = 0; j < m; ++j) {
          const int32_t oc = ic * m + j;
          int32_t acc = 0;
          for (int32_t ky = 0; ky < p->kh; ++ky) {
            const int32_t iy = y0 + ky * p->dil_h;
            if (iy < 0 || iy >= p->in.h) continue;
            for (int32_t kx = 0; kx < p->kw; ++kx) {
              const int32_t ix = x0 + kx * p->dil_w;
              if (ix < 0 || ix >= p->in.w) continue;
              const int32_t v = (int32_t)input[(iy * p->in.w + ix) * in_c + ic] + p->input_offset;
              acc += v * (int32_t)p->filter[(ky * p->kw + kx) * out_c + oc];
            }
          }
          if (p->bias) acc += p->bias[oc];
          dst[oc] = requantize(p, acc, oc);
        }
      }
    }
  }
}

void kws_fully_connected(const kws_fc_params *p, const int8_t *input, int8_t *output) {
  for (int32_t o = 0; o < p->out_depth; ++o) {
    const int8_t *f = p->filter + o * p->in_depth;
    int32_t acc = 0;
    if (p->offset_bias && p->filter_offset == 0) {
      acc = dot_s8(input, f, p->in_depth, p->offset_bias[o]);  /* bias + input_offset * sum(f) folded */
    } else {
      for (int32_t i = 0; i < p->in_depth; ++i)
        acc += ((int32_t)input[i] + p->input_offset) * ((int32_t)f[i] + p->filter_offset);
      if (p->bias) acc += p->bias[o];
    }
    acc = kws_multiply_by_quantized_multiplier(acc, p->multiplier[o], p->shift[o]) + p->output_offset;
    output[o] = (int8_t)clamp_i32(acc, p->act_min, p->act_max);
  }
}

static void pool(const kws_pool_params *p, const int8_t *input, int8_t *output, int is_max) {
  const int32_t c = p->in.c;
  for (int32_t oy = 0; oy < p->out.h; ++oy) {
    for (int32_t ox = 0; ox < p->out.w; ++ox) {
      const int32_t y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
      const int32_t ky0 = y0 < 0 ? -y0 : 0, kx0 = x0 < 0 ? -x0 : 0;
      const int32_t ky1 = (p->in.h - y0) < p->kh ? (p->in.h - y0) : p->kh;
      const int32_t kx1 = (p->in.w - x0) < p->kw ? (p->in.w - x0) : p->kw;
      for (int32_t ch = 0; ch < c; ++ch) {
        int32_t acc = is_max ? -128 : 0, count = 0;
        for (int32_t ky = ky0; ky < ky1; ++ky) {
          for (int32_t kx = kx0; kx < kx1; ++kx) {
            const int32_t v = input[((y0 + ky) * p->in.w + (x0 + kx)) * c + ch];
            if (is_max) acc = v > acc ? v : acc; else acc += v;
            ++count;
          }
        }
        if (!is_max) {
          if (count == 0) { acc = 0; }
          else acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
        }
        output[(oy * p->out.w + ox) * c + ch] = (int8_t)clamp_i32(acc, p->act_min, p->act_max);
      }
    }
  }
}

void kws_average_pool(const kws_pool_params *p, const int8_t *input, int8_t *output) { pool(p, input, output, 0); }
void kws_max_pool(const kws_pool_params *p, const int8_t *input, int8_t *output) { pool(p, input, output, 1); }

void kws_add(const kws_add_params *p, const int8_t *a, const int8_t *b, int8_t *output) {
  for (int32_t i = 0; i < p->size; ++i) {
    const int32_t sa = ((int32_t)a[i] + p->input1_offset) * (1 << p->left_shift);
    const int32_t sb = ((int32_t)b[i] + p->input2_offset) * (1 << p->left_shift);
    const int32_t ra = kws_multiply_by_quantized_multiplier(sa, p->input1_multiplier, p->input1_shift);
    const int32_t rb = kws_multiply_by_quantized_multiplier(sb, p->input2_multiplier, p->input2_shift);
    const int32_t out = kws_multiply_by_quantized_multiplier(ra + rb, p->output_multiplier, p->output_shift)
                        + p->output_offset;
    output[i] = (int8_t)clamp_i32(out, p->act_min, p->act_max);
  }
}
