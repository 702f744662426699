/* See kws_kernels.h: the reference int8 arithmetic, one plain loop nest per op. */
#include "kws_kernels.h"

#include <limits.h>

static inline int32_t clamp_i32(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

int32_t kws_saturating_rounding_doubling_high_mul(int32_t a, int32_t b) {
  if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
  int64_t ab = (int64_t)a * (int64_t)b;
  int64_t nudge = ab >= 0 ? (1LL << 30) : (1 - (1LL << 30));
  return (int32_t)((ab + nudge) / (1LL << 31)); /* C division truncates toward zero, as required */
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

void kws_conv2d(const kws_conv_params *p, const int8_t *input, int8_t *output) {
  const int32_t in_c = p->in.c, out_c = p->out.c;
  for (int32_t oy = 0; oy < p->out.h; ++oy) {
    for (int32_t ox = 0; ox < p->out.w; ++ox) {
      const int32_t y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
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
        acc = kws_multiply_by_quantized_multiplier(acc, p->multiplier[oc], p->shift[oc]) + p->output_offset;
        output[(oy * p->out.w + ox) * out_c + oc] = (int8_t)clamp_i32(acc, p->act_min, p->act_max);
      }
    }
  }
}

void kws_depthwise_conv2d(const kws_conv_params *p, const int8_t *input, int8_t *output) {
  const int32_t in_c = p->in.c, out_c = p->out.c, m = p->depth_multiplier;
  for (int32_t oy = 0; oy < p->out.h; ++oy) {
    for (int32_t ox = 0; ox < p->out.w; ++ox) {
      const int32_t y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
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
          acc = kws_multiply_by_quantized_multiplier(acc, p->multiplier[oc], p->shift[oc]) + p->output_offset;
          output[(oy * p->out.w + ox) * out_c + oc] = (int8_t)clamp_i32(acc, p->act_min, p->act_max);
        }
      }
    }
  }
}

void kws_fully_connected(const kws_fc_params *p, const int8_t *input, int8_t *output) {
  for (int32_t o = 0; o < p->out_depth; ++o) {
    const int8_t *f = p->filter + o * p->in_depth;
    int32_t acc = 0;
    for (int32_t i = 0; i < p->in_depth; ++i)
      acc += ((int32_t)input[i] + p->input_offset) * ((int32_t)f[i] + p->filter_offset);
    if (p->bias) acc += p->bias[o];
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
