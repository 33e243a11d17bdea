/* ggml_blocks.h - byte layouts of ggml's packed block formats (as stored in GGUF
 * files) and the scalar reference dequantizers that define what they mean. */
#ifndef RQ_GGML_BLOCKS_H
#define RQ_GGML_BLOCKS_H

#include <stdint.h>

/* Every field is a byte array, so each struct has alignment 1 and no padding: a
 * block may sit at any address (GGUF only promises general.alignment for a whole
 * tensor). Multi-byte fields are little-endian, as in GGUF, and are read with
 * rq_le16 / rq_le32 rather than through a typed pointer. "f16" marks an IEEE
 * binary16 scale. Offsets are in bytes. */

#define RQ_QK 32     /* values per block of the 32-wide formats */
#define RQ_QK_K 256  /* values per super-block of the k-quants */

static inline uint16_t rq_le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t rq_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* q4_0, 18 bytes, value = d * (q - 8), q in 0..15:
 *   0  d       f16
 *   2  qs[16]  byte j: value j in the low nibble, value j+16 in the high nibble */
typedef struct {
    uint8_t d[2];
    uint8_t qs[RQ_QK / 2];
} rq_block_q4_0;
_Static_assert(sizeof(rq_block_q4_0) == 18, "q4_0 block is 18 bytes");

/* q4_1, 20 bytes, value = d * q + m, q in 0..15:
 *   0  d       f16
 *   2  m       f16
 *   4  qs[16]  nibbles as in q4_0 */
typedef struct {
    uint8_t d[2];
    uint8_t m[2];
    uint8_t qs[RQ_QK / 2];
} rq_block_q4_1;
_Static_assert(sizeof(rq_block_q4_1) == 20, "q4_1 block is 20 bytes");

/* q5_0, 22 bytes, value = d * (q - 16), q in 0..31:
 *   0  d       f16
 *   2  qh[4]   u32 little-endian: bit j is bit 4 of value j
 *   6  qs[16]  low 4 bits, nibbles as in q4_0 */
typedef struct {
    uint8_t d[2];
    uint8_t qh[4];
    uint8_t qs[RQ_QK / 2];
} rq_block_q5_0;
_Static_assert(sizeof(rq_block_q5_0) == 22, "q5_0 block is 22 bytes");

/* q5_1, 24 bytes, value = d * q + m, q in 0..31:
 *   0  d       f16
 *   2  m       f16
 *   4  qh[4]   high bits as in q5_0
 *   8  qs[16]  low 4 bits as in q5_0 */
typedef struct {
    uint8_t d[2];
    uint8_t m[2];
    uint8_t qh[4];
    uint8_t qs[RQ_QK / 2];
} rq_block_q5_1;
_Static_assert(sizeof(rq_block_q5_1) == 24, "q5_1 block is 24 bytes");

/* q8_0, 34 bytes, value = d * q:
 *   0  d       f16
 *   2  qs[32]  int8, value j in byte j */
typedef struct {
    uint8_t d[2];
    int8_t qs[RQ_QK];
} rq_block_q8_0;
_Static_assert(sizeof(rq_block_q8_0) == 34, "q8_0 block is 34 bytes");

/* The k-quants split a 256-value super-block into sub-blocks with their own small
 * integer scale (and min), which in turn are scaled by the f16 d (and dmin). */

/* q2_K, 84 bytes, 16 sub-blocks of 16, value = (d*sc) * q - (dmin*mn), q in 0..3:
 *   0   scales[16]  sub-block s: sc in the low nibble, mn in the high nibble
 *   16  qs[64]      2-bit values, see rq_dequant_q2_k_ref for their order
 *   80  d           f16
 *   82  dmin        f16 */
typedef struct {
    uint8_t scales[RQ_QK_K / 16];
    uint8_t qs[RQ_QK_K / 4];
    uint8_t d[2];
    uint8_t dmin[2];
} rq_block_q2_k;
_Static_assert(sizeof(rq_block_q2_k) == 84, "q2_K block is 84 bytes");

/* q3_K, 110 bytes, 16 sub-blocks of 16, value = (d*(sc-32)) * (q - 4*!h), q in 0..3:
 *   0   hmask[32]   the high bit h of each value
 *   32  qs[64]      low 2 bits, same order as q2_K
 *   96  scales[12]  sixteen 6-bit sc, see q3_k_scale in dequant_k.c
 *   108 d           f16 */
typedef struct {
    uint8_t hmask[RQ_QK_K / 8];
    uint8_t qs[RQ_QK_K / 4];
    uint8_t scales[12];
    uint8_t d[2];
} rq_block_q3_k;
_Static_assert(sizeof(rq_block_q3_k) == 110, "q3_K block is 110 bytes");

/* q4_K, 144 bytes, 8 sub-blocks of 32, value = (d*sc) * q - (dmin*mn), q in 0..15:
 *   0   d           f16
 *   2   dmin        f16
 *   4   scales[12]  eight 6-bit (sc, mn) pairs, see k4_scale_min in dequant_k.c
 *   16  qs[128]     sub-blocks 2p, 2p+1 share bytes 32p..32p+31 (low, high nibble) */
typedef struct {
    uint8_t d[2];
    uint8_t dmin[2];
    uint8_t scales[12];
    uint8_t qs[RQ_QK_K / 2];
} rq_block_q4_k;
_Static_assert(sizeof(rq_block_q4_k) == 144, "q4_K block is 144 bytes");

/* q5_K, 176 bytes, as q4_K with a fifth bit, q in 0..31:
 *   0   d           f16
 *   2   dmin        f16
 *   4   scales[12]  as in q4_K
 *   16  qh[32]      byte l, bit s: bit 4 of value l of sub-block s
 *   48  qs[128]     low 4 bits as in q4_K */
typedef struct {
    uint8_t d[2];
    uint8_t dmin[2];
    uint8_t scales[12];
    uint8_t qh[RQ_QK_K / 8];
    uint8_t qs[RQ_QK_K / 2];
} rq_block_q5_k;
_Static_assert(sizeof(rq_block_q5_k) == 176, "q5_K block is 176 bytes");

/* q6_K, 210 bytes, 16 sub-blocks of 16, value = (d*sc) * (q - 32), q in 0..63:
 *   0   ql[128]     low 4 bits, see rq_dequant_q6_k_ref for their order
 *   128 qh[64]      high 2 bits
 *   192 scales[16]  int8 sc of sub-block s
 *   208 d           f16 */
typedef struct {
    uint8_t ql[RQ_QK_K / 2];
    uint8_t qh[RQ_QK_K / 4];
    int8_t scales[RQ_QK_K / 16];
    uint8_t d[2];
} rq_block_q6_k;
_Static_assert(sizeof(rq_block_q6_k) == 210, "q6_K block is 210 bytes");

/* Scalar references: n values (a whole number of blocks, checked by the caller,
 * rq_ggml_to_float) from src to dst. Each does its float arithmetic in the same
 * order as ggml's C reference, so the results agree bit for bit. */
void rq_dequant_f32_ref(const void *src, float *dst, int64_t n);
void rq_dequant_f16_ref(const void *src, float *dst, int64_t n);
void rq_dequant_bf16_ref(const void *src, float *dst, int64_t n);
void rq_dequant_q4_0_ref(const void *src, float *dst, int64_t n);
void rq_dequant_q4_1_ref(const void *src, float *dst, int64_t n);
void rq_dequant_q5_0_ref(const void *src, float *dst, int64_t n);
void rq_dequant_q5_1_ref(const void *src, float *dst, int64_t n);
void rq_dequant_q8_0_ref(const void *src, float *dst, int64_t n);
void rq_dequant_q2_k_ref(const void *src, float *dst, int64_t n);
void rq_dequant_q3_k_ref(const void *src, float *dst, int64_t n);
void rq_dequant_q4_k_ref(const void *src, float *dst, int64_t n);
void rq_dequant_q5_k_ref(const void *src, float *dst, int64_t n);
void rq_dequant_q6_k_ref(const void *src, float *dst, int64_t n);

#endif
