/* Integer-only int8 kernels with TensorFlow Lite Micro's reference arithmetic (NHWC, batch 1).
 *
 * Written for this kit from the arithmetic that firmware_sim (Python) implements: int32
 * accumulators with the input offset, per-channel requantisation by a Q31 multiplier and a
 * power-of-two shift (saturating rounding doubling high multiply, then rounding divide by a
 * power of two), output offset and activation clamps. No TFLM or CMSIS source is included; a
 * build with -DUSE_CMSIS_NN is reserved for a CMSIS-NN back-end that is not implemented here.
 */
#ifndef KWS_KERNELS_H
#define KWS_KERNELS_H
#include <stdint.h>

#ifdef USE_CMSIS_NN
#error "USE_CMSIS_NN: the CMSIS-NN back-end is not implemented in this generated project; build without it"
#endif

/* bytes of the border-patch buffer (kh*kw*in_c of one output position); larger layers keep the reference loop */
#ifndef KWS_PATCH_BYTES
#define KWS_PATCH_BYTES 1024
#endif

typedef struct {
  int32_t h, w, c;
} kws_shape;

typedef struct {
  kws_shape in, out;
  int32_t kh, kw, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left;
  int32_t depth_multiplier;          /* depthwise only */
  int32_t input_offset, output_offset;
  int32_t act_min, act_max;
  const int8_t *filter;              /* conv: [out_c][kh][kw][in_c]; depthwise: [kh][kw][out_c] */
  const int32_t *bias;               /* [out_c] or NULL */
  const int32_t *multiplier, *shift; /* [out_c] */
  const int32_t *offset_bias;        /* [out_c]: bias + input_offset * sum of the channel's taps, or NULL */
} kws_conv_params;

typedef struct {
  int32_t in_depth, out_depth;
  int32_t input_offset, filter_offset, output_offset;
  int32_t act_min, act_max;
  const int8_t *filter;              /* [out_depth][in_depth] */
  const int32_t *bias;               /* [out_depth] or NULL */
  const int32_t *multiplier, *shift; /* [out_depth] (per-tensor models repeat one value) */
  const int32_t *offset_bias;        /* [out_depth]: bias + input_offset * sum(filter row), or NULL */
} kws_fc_params;

typedef struct {
  kws_shape in, out;
  int32_t kh, kw, stride_h, stride_w, pad_top, pad_left;
  int32_t act_min, act_max;
} kws_pool_params;

typedef struct {
  int32_t size;
  int32_t input1_offset, input2_offset, output_offset;
  int32_t left_shift;
  int32_t input1_multiplier, input1_shift, input2_multiplier, input2_shift;
  int32_t output_multiplier, output_shift;
  int32_t act_min, act_max;
} kws_add_params;

int32_t kws_saturating_rounding_doubling_high_mul(int32_t a, int32_t b);
int32_t kws_rounding_divide_by_pot(int32_t x, int32_t exponent);
int32_t kws_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift);

void kws_conv2d(const kws_conv_params *p, const int8_t *input, int8_t *output);
void kws_depthwise_conv2d(const kws_conv_params *p, const int8_t *input, int8_t *output);
void kws_fully_connected(const kws_fc_params *p, const int8_t *input, int8_t *output);
void kws_average_pool(const kws_pool_params *p, const int8_t *input, int8_t *output);
void kws_max_pool(const kws_pool_params *p, const int8_t *input, int8_t *output);
void kws_add(const kws_add_params *p, const int8_t *a, const int8_t *b, int8_t *output);

#endif
