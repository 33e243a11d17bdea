/* dequant.c - scalar reference dequantizers for the plain float types (f32, f16,
 * bf16), the 32-value block formats (q4_0 .. q8_0, iq4_nl) and iq4_nl's sibling iq4_xs. */
#include <string.h>

#include "ggml_blocks.h"
#include "util.h"

/* Low 4 bits of value j (0..31) of a 32-value block: values 0..15 sit in the low
 * nibbles of qs[0..15], values 16..31 in the high nibbles of the same bytes. */
static inline int nibble32(const uint8_t *qs, int j) {
    return j < RQ_QK / 2 ? qs[j] & 0x0f : qs[j - RQ_QK / 2] >> 4;
}

/* Value j of a 5-bit block: its nibble plus bit j of the 32-bit high-bit word. */
static inline int five_bits(const uint8_t *qs, uint32_t qh, int j) {
    return nibble32(qs, j) | (int)((qh >> j) & 1) << 4;
}

void rq_dequant_f32_ref(const void *src, float *dst, int64_t n) {
    /* GGUF stores little-endian floats, the byte order of every host we build for */
    memcpy(dst, src, (size_t)n * sizeof(float));
}

void rq_dequant_f16_ref(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = rq_le16(p + 2 * i);
        /* ggml's conversion (like the F16C instruction) makes a signalling NaN
         * quiet; setting the quiet bit here keeps f16 tensors bit-exact with it */
        if ((h & 0x7c00) == 0x7c00 && (h & 0x03ff)) h |= 0x0200;
        dst[i] = rq_fp16_to_fp32(h);
    }
}

void rq_dequant_bf16_ref(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) dst[i] = rq_bf16_to_fp32(rq_le16(p + 2 * i));
}

/* In the formats below the integer is converted to float first, then one float
 * multiply by d (and, with a min, one add): the order ggml's reference uses. */

void rq_dequant_q4_0_ref(const void *src, float *dst, int64_t n) {
    const rq_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / RQ_QK; i++, b++, dst += RQ_QK) {
        const float d = rq_fp16_to_fp32(rq_le16(b->d));
        for (int j = 0; j < RQ_QK; j++) dst[j] = (float)(nibble32(b->qs, j) - 8) * d;
    }
}

void rq_dequant_q4_1_ref(const void *src, float *dst, int64_t n) {
    const rq_block_q4_1 *b = src;
    for (int64_t i = 0; i < n / RQ_QK; i++, b++, dst += RQ_QK) {
        const float d = rq_fp16_to_fp32(rq_le16(b->d));
        const float m = rq_fp16_to_fp32(rq_le16(b->m));
        for (int j = 0; j < RQ_QK; j++) dst[j] = (float)nibble32(b->qs, j) * d + m;
    }
}

void rq_dequant_q5_0_ref(const void *src, float *dst, int64_t n) {
    const rq_block_q5_0 *b = src;
    for (int64_t i = 0; i < n / RQ_QK; i++, b++, dst += RQ_QK) {
        const float d = rq_fp16_to_fp32(rq_le16(b->d));
        const uint32_t qh = rq_le32(b->qh);
        for (int j = 0; j < RQ_QK; j++) dst[j] = (float)(five_bits(b->qs, qh, j) - 16) * d;
    }
}

void rq_dequant_q5_1_ref(const void *src, float *dst, int64_t n) {
    const rq_block_q5_1 *b = src;
    for (int64_t i = 0; i < n / RQ_QK; i++, b++, dst += RQ_QK) {
        const float d = rq_fp16_to_fp32(rq_le16(b->d));
        const float m = rq_fp16_to_fp32(rq_le16(b->m));
        const uint32_t qh = rq_le32(b->qh);
        for (int j = 0; j < RQ_QK; j++) dst[j] = (float)five_bits(b->qs, qh, j) * d + m;
    }
}

void rq_dequant_q8_0_ref(const void *src, float *dst, int64_t n) {
    const rq_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / RQ_QK; i++, b++, dst += RQ_QK) {
        const float d = rq_fp16_to_fp32(rq_le16(b->d));
        for (int j = 0; j < RQ_QK; j++) dst[j] = (float)b->qs[j] * d;
    }
}

/* The 16 levels of iq4_nl (ggml-common.h's kvalues_iq4nl): a non-uniform grid
 * denser near zero, where most weights lie. */
static const int8_t iq4nl_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

void rq_dequant_iq4_nl_ref(const void *src, float *dst, int64_t n) {
    const rq_block_iq4_nl *b = src;
    for (int64_t i = 0; i < n / RQ_QK; i++, b++, dst += RQ_QK) {
        const float d = rq_fp16_to_fp32(rq_le16(b->d));
        for (int j = 0; j < RQ_QK; j++) dst[j] = d * (float)iq4nl_levels[nibble32(b->qs, j)];
    }
}

/* iq4_xs: iq4_nl's levels under a 6-bit scale per 32 values (biased by 32), in
 * ggml's order: dl = d * (ls - 32) first, then dl * level. */
void rq_dequant_iq4_xs_ref(const void *src, float *dst, int64_t n) {
    const rq_block_iq4_xs *b = src;
    for (int64_t i = 0; i < n / RQ_QK_K; i++, b++) {
        const float d = rq_fp16_to_fp32(rq_le16(b->d));
        const unsigned sh = rq_le16(b->scales_h);
        for (int s = 0; s < RQ_QK_K / 32; s++, dst += RQ_QK) {
            const int ls = (b->scales_l[s / 2] >> 4 * (s % 2) & 0xf) | (int)(sh >> 2 * s & 3) << 4;
            const float dl = d * (float)(ls - 32);
            for (int j = 0; j < RQ_QK; j++) dst[j] = dl * (float)iq4nl_levels[nibble32(b->qs + 16 * s, j)];
        }
    }
}
