/* dequant_k.c - scalar reference dequantizers for the k-quants (q2_K .. q6_K):
 * 256-value super-blocks whose sub-blocks carry small integer scales. */
#include "ggml_blocks.h"
#include "util.h"

/* Every k-quant first forms a float sub-block scale (d * sc, and dmin * mn where
 * there is a min), then computes scale * q (- min) per value: the order of ggml's
 * reference, which the bit-exact comparison depends on. */

/* q2_K and q3_K keep 2 bits of each value in 64 bytes split into two halves of
 * 32; a half holds 8 sub-blocks of 16 as four 2-bit planes, and the two sub-blocks
 * of a plane use bytes 0..15 and 16..31 of the half. Value l (0..15) of sub-block
 * s (0..15) is therefore: */
static inline int two_bits(const uint8_t *qs, int s, int l) {
    const int half = s / 8, plane = (s % 8) / 2;
    return (qs[32 * half + 16 * (s % 2) + l] >> (2 * plane)) & 3;
}

/* q3_K packs sixteen 6-bit scales into 12 bytes: bytes 0..7 give the low 4 bits
 * (sub-blocks 0..7 in the low nibbles, 8..15 in the high nibbles); bytes 8..11 give
 * the top 2 bits, sub-block s at byte 8 + s%4, bit offset 2*(s/4). Stored with a
 * bias of 32. */
static inline int q3_k_scale(const uint8_t *sc, int s) {
    const int low = s < 8 ? sc[s] & 0x0f : sc[s - 8] >> 4;
    const int top = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
    return (low | top << 4) - 32;
}

/* q4_K and q5_K pack eight 6-bit (scale, min) pairs into 12 bytes. Sub-blocks
 * 0..3: scale in the low 6 bits of byte s, min in the low 6 bits of byte 4+s.
 * Sub-blocks 4..7 (t = s-4): low 4 bits of scale and min in the low and high
 * nibbles of byte 8+t, their top 2 bits in the spare top bits of bytes t and 4+t. */
static inline void k4_scale_min(const uint8_t *sc, int s, int *scale, int *min) {
    if (s < 4) {
        *scale = sc[s] & 0x3f;
        *min = sc[4 + s] & 0x3f;
    } else {
        const int t = s - 4;
        *scale = (sc[8 + t] & 0x0f) | (sc[t] >> 6) << 4;
        *min = (sc[8 + t] >> 4) | (sc[4 + t] >> 6) << 4;
    }
}

void rq_dequant_q2_k_ref(const void *src, float *dst, int64_t n) {
    const rq_block_q2_k *b = src;
    for (int64_t i = 0; i < n / RQ_QK_K; i++, b++, dst += RQ_QK_K) {
        const float d = rq_fp16_to_fp32(rq_le16(b->d));
        const float dmin = rq_fp16_to_fp32(rq_le16(b->dmin));
        for (int s = 0; s < 16; s++) {
            const float scale = d * (float)(b->scales[s] & 0x0f);
            const float min = dmin * (float)(b->scales[s] >> 4);
            for (int l = 0; l < 16; l++) dst[16 * s + l] = scale * (float)two_bits(b->qs, s, l) - min;
        }
    }
}

void rq_dequant_q3_k_ref(const void *src, float *dst, int64_t n) {
    const rq_block_q3_k *b = src;
    for (int64_t i = 0; i < n / RQ_QK_K; i++, b++, dst += RQ_QK_K) {
        const float d = rq_fp16_to_fp32(rq_le16(b->d));
        for (int s = 0; s < 16; s++) {
            const float scale = d * (float)q3_k_scale(b->scales, s);
            /* the high bit of value l of sub-block s: byte 16*(s%2) + l, bit s/2;
             * a clear bit means the value is offset by -4 */
            const uint8_t *hm = b->hmask + 16 * (s % 2);
            for (int l = 0; l < 16; l++) {
                const int high = (hm[l] >> (s / 2)) & 1;
                dst[16 * s + l] = scale * (float)(two_bits(b->qs, s, l) - (high ? 0 : 4));
            }
        }
    }
}

void rq_dequant_q4_k_ref(const void *src, float *dst, int64_t n) {
    const rq_block_q4_k *b = src;
    for (int64_t i = 0; i < n / RQ_QK_K; i++, b++, dst += RQ_QK_K) {
        const float d = rq_fp16_to_fp32(rq_le16(b->d));
        const float dmin = rq_fp16_to_fp32(rq_le16(b->dmin));
        for (int s = 0; s < 8; s++) {
            int sc, mn;
            k4_scale_min(b->scales, s, &sc, &mn);
            const float scale = d * (float)sc, min = dmin * (float)mn;
            const uint8_t *q = b->qs + 32 * (s / 2);
            const int shift = 4 * (s % 2); /* even sub-block: low nibbles */
            for (int l = 0; l < 32; l++) dst[32 * s + l] = scale * (float)((q[l] >> shift) & 0x0f) - min;
        }
    }
}

void rq_dequant_q5_k_ref(const void *src, float *dst, int64_t n) {
    const rq_block_q5_k *b = src;
    for (int64_t i = 0; i < n / RQ_QK_K; i++, b++, dst += RQ_QK_K) {
        const float d = rq_fp16_to_fp32(rq_le16(b->d));
        const float dmin = rq_fp16_to_fp32(rq_le16(b->dmin));
        for (int s = 0; s < 8; s++) {
            int sc, mn;
            k4_scale_min(b->scales, s, &sc, &mn);
            const float scale = d * (float)sc, min = dmin * (float)mn;
            const uint8_t *q = b->qs + 32 * (s / 2);
            const int shift = 4 * (s % 2);
            for (int l = 0; l < 32; l++) {
                const int v = ((q[l] >> shift) & 0x0f) | ((b->qh[l] >> s) & 1) << 4;
                dst[32 * s + l] = scale * (float)v - min;
            }
        }
    }
}

/* q6_K: each half of 128 values uses 64 bytes of ql and 32 of qh. Its four
 * quarters of 32 values take their low 4 bits from ql bytes 0..31 (low nibble),
 * 32..63 (low), 0..31 (high), 32..63 (high), and their top 2 bits from qh byte l
 * at bit offset 0, 2, 4, 6. */
void rq_dequant_q6_k_ref(const void *src, float *dst, int64_t n) {
    const rq_block_q6_k *b = src;
    for (int64_t i = 0; i < n / RQ_QK_K; i++, b++, dst += RQ_QK_K) {
        const float d = rq_fp16_to_fp32(rq_le16(b->d));
        for (int s = 0; s < 16; s++) {
            const float scale = d * (float)b->scales[s];
            const int half = s / 8, quarter = (s % 8) / 2;
            const uint8_t *ql = b->ql + 64 * half + 32 * (quarter % 2);
            const uint8_t *qh = b->qh + 32 * half;
            /* l runs over this sub-block's 16 positions within its quarter */
            const int low_shift = 4 * (quarter / 2), high_shift = 2 * quarter;
            for (int l = 16 * (s % 2); l < 16 * (s % 2) + 16; l++) {
                const int v = ((ql[l] >> low_shift) & 0x0f) | ((qh[l] >> high_shift) & 3) << 4;
                dst[128 * half + 32 * quarter + l] = scale * (float)(v - 32);
            }
        }
    }
}
