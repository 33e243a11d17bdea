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

/* iq4_nl, 18 bytes, value = d * K[nibble] with K the 16 non-uniform levels of
 * ggml's kvalues_iq4nl; nibbles as in q4_0 (low nibbles first half):
 *   [0..1] d (f16)   [2..17] qs */
typedef struct {
    uint8_t d[2];
    uint8_t qs[RQ_QK / 2];
} rq_block_iq4_nl;
_Static_assert(sizeof(rq_block_iq4_nl) == 18, "iq4_nl block is 18 bytes");

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

/* The i-quants (llama.cpp's IQ formats) code groups of 4 or 8 values as an index
 * into a lattice grid, with the signs and a sub-block scale beside it. The grids
 * are not in this tree: scripts/gen_iq_tables.py writes them from the gguf package
 * and dequant_iq.c loads them once (rq_iq_tables_ready). ksigns(k), used below, is
 * the 7-bit k with an eighth bit that makes the number of set bits even; a set bit
 * j means value j of the group of 8 is negated. Sub-block scales in 0.5-steps are
 * written ls + 0.5. */

/* iq2_xxs, 66 bytes, 8 sub-blocks of 32, each as two u32 (a, b):
 *   0  d       f16
 *   2  qs[64]  sub-block s at 8s: a = four grid indices (bytes, iq2xxs grid of
 *              256 x 8); b = four 7-bit ksigns indices (bits 0, 7, 14, 21) and the
 *              4-bit scale ls (bits 28..31): value = d*(ls+0.5)/4 * grid * sign */
typedef struct {
    uint8_t d[2];
    uint8_t qs[RQ_QK_K / 4];
} rq_block_iq2_xxs;
_Static_assert(sizeof(rq_block_iq2_xxs) == 66, "iq2_xxs block is 66 bytes");

/* iq2_xs, 74 bytes, 8 sub-blocks of 32 = four groups of 8:
 *   0   d          f16
 *   2   qs[64]     32 u16: bits 0..8 an iq2xs grid index (512 x 8), bits 9..15
 *                  a ksigns index
 *   66  scales[8]  sub-block s: groups 0,1 use the low nibble, 2,3 the high one;
 *                  value = d*(ls+0.5)/4 * grid * sign */
typedef struct {
    uint8_t d[2];
    uint8_t qs[RQ_QK_K / 4];
    uint8_t scales[RQ_QK_K / 32];
} rq_block_iq2_xs;
_Static_assert(sizeof(rq_block_iq2_xs) == 74, "iq2_xs block is 74 bytes");

/* iq2_s, 82 bytes, 8 sub-blocks of 32 = four groups of 8:
 *   0   d          f16
 *   2   qs[32]     low 8 bits of the iq2s grid index (1024 x 8) of group g
 *   34  signs[32]  sign bits of group g, one byte each (not ksigns-coded)
 *   66  qh[8]      sub-block s: bits 2l..2l+1 are bits 8..9 of group l's index
 *   74  scales[8]  as in iq2_xs */
typedef struct {
    uint8_t d[2];
    uint8_t qs[RQ_QK_K / 8];
    uint8_t signs[RQ_QK_K / 8];
    uint8_t qh[RQ_QK_K / 32];
    uint8_t scales[RQ_QK_K / 32];
} rq_block_iq2_s;
_Static_assert(sizeof(rq_block_iq2_s) == 82, "iq2_s block is 82 bytes");

/* iq3_xxs, 98 bytes, 8 sub-blocks of 32 = eight groups of 4:
 *   0   d          f16
 *   2   qs[64]     one iq3xxs grid index (256 x 4) per group of 4
 *   66  ss[32]     sub-block s: a u32 with four ksigns indices (bits 0, 7, 14, 21,
 *                  each for 8 values) and ls (bits 28..31):
 *                  value = d*(ls+0.5)/2 * grid * sign */
typedef struct {
    uint8_t d[2];
    uint8_t qs[RQ_QK_K / 4];
    uint8_t ss[RQ_QK_K / 8];
} rq_block_iq3_xxs;
_Static_assert(sizeof(rq_block_iq3_xxs) == 98, "iq3_xxs block is 98 bytes");

/* iq3_s, 110 bytes, 8 sub-blocks of 32 = eight groups of 4:
 *   0   d          f16
 *   2   qs[64]     low 8 bits of the iq3s grid index (512 x 4) of group g
 *   66  qh[8]      bit g%8 of byte g/8 is bit 8 of group g's index
 *   74  signs[32]  one sign bit per value, value v at bit v%8 of byte v/8
 *   106 scales[4]  sub-block s in nibble s%2 of byte s/2: value = d*(1+2*ls) * grid * sign */
typedef struct {
    uint8_t d[2];
    uint8_t qs[RQ_QK_K / 4];
    uint8_t qh[RQ_QK_K / 32];
    uint8_t signs[RQ_QK_K / 8];
    uint8_t scales[RQ_QK_K / 64];
} rq_block_iq3_s;
_Static_assert(sizeof(rq_block_iq3_s) == 110, "iq3_s block is 110 bytes");

/* iq1_s, 50 bytes, 8 sub-blocks of 32 = four groups of 8, grid values -1, 0, 1:
 *   0   d          f16
 *   2   qs[32]     low 8 bits of the iq1s grid index (2048 x 8) of group g
 *   34  qh[16]     8 u16, sub-block s: bits 3l..3l+2 are bits 8..10 of group l's
 *                  index, bits 12..14 the scale ls, bit 15 the sign of delta:
 *                  value = d*(2*ls+1) * (grid +- 1/8) */
typedef struct {
    uint8_t d[2];
    uint8_t qs[RQ_QK_K / 8];
    uint8_t qh[RQ_QK_K / 16];
} rq_block_iq1_s;
_Static_assert(sizeof(rq_block_iq1_s) == 50, "iq1_s block is 50 bytes");

/* iq1_m, 56 bytes, 16 groups of 16 = 32 groups of 8 on the iq1s grid:
 *   0   qs[32]      low 8 bits of group g's index
 *   32  qh[16]      byte h: low nibble for group 2h, high nibble for 2h+1; bits
 *                   0..2 of a nibble are bits 8..10 of the index, bit 3 the sign
 *                   of its delta
 *   48  scales[8]   4 u16: bits 0..11 of u16 k hold four 3-bit scales (groups of
 *                   16 4k..4k+3), bits 12..15 are bits 4k..4k+3 of the f16 d:
 *                   value = d*(2*ls+1) * (grid +- 1/8) */
typedef struct {
    uint8_t qs[RQ_QK_K / 8];
    uint8_t qh[RQ_QK_K / 16];
    uint8_t scales[RQ_QK_K / 32];
} rq_block_iq1_m;
_Static_assert(sizeof(rq_block_iq1_m) == 56, "iq1_m block is 56 bytes");

/* iq4_xs, 136 bytes, 8 sub-blocks of 32 on the 16 iq4_nl levels (no grid file):
 *   0   d           f16
 *   2   scales_h    u16: bits 2s..2s+1 are the top bits of sub-block s's scale
 *   4   scales_l[4] low 4 bits of sub-block s's scale in nibble s%2 of byte s/2
 *   8   qs[128]     sub-block s at 16s, nibbles as in iq4_nl:
 *                   value = d*(ls-32) * K[nibble] */
typedef struct {
    uint8_t d[2];
    uint8_t scales_h[2];
    uint8_t scales_l[RQ_QK_K / 64];
    uint8_t qs[RQ_QK_K / 2];
} rq_block_iq4_xs;
_Static_assert(sizeof(rq_block_iq4_xs) == 136, "iq4_xs block is 136 bytes");

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
void rq_dequant_iq4_nl_ref(const void *src, float *dst, int64_t n);
void rq_dequant_q2_k_ref(const void *src, float *dst, int64_t n);
void rq_dequant_q3_k_ref(const void *src, float *dst, int64_t n);
void rq_dequant_q4_k_ref(const void *src, float *dst, int64_t n);
void rq_dequant_q5_k_ref(const void *src, float *dst, int64_t n);
void rq_dequant_q6_k_ref(const void *src, float *dst, int64_t n);
/* The grid-based i-quants read the lattice tables: call only after
 * rq_iq_tables_ready() returned 0 (rq_ggml_to_float does). */
void rq_dequant_iq2_xxs_ref(const void *src, float *dst, int64_t n);
void rq_dequant_iq2_xs_ref(const void *src, float *dst, int64_t n);
void rq_dequant_iq2_s_ref(const void *src, float *dst, int64_t n);
void rq_dequant_iq3_xxs_ref(const void *src, float *dst, int64_t n);
void rq_dequant_iq3_s_ref(const void *src, float *dst, int64_t n);
void rq_dequant_iq1_s_ref(const void *src, float *dst, int64_t n);
void rq_dequant_iq1_m_ref(const void *src, float *dst, int64_t n);
void rq_dequant_iq4_xs_ref(const void *src, float *dst, int64_t n); /* in dequant.c: no grid */

/* Load the IQ lattice grids once (thread-safe) from $REPLIQ_IQ_TABLES, else
 * <cache>/iq-grids-v1.bin. 0 when they are loaded; -1 with an error that names
 * type_name and says how to make the file. */
int rq_iq_tables_ready(const char *type_name);

#endif
