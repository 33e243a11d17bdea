/* replica.h - a replicated linear layer: one stored code tensor C read through K
 * cheap decoders whose outputs are summed, either at the linear layer's output
 * (combine 0) or, for the three matrices of an MLP, after the MLP's down
 * projection (combine 1: replica k of gate, up and down forms path k, and the
 * block adds the K paths' outputs, so the nonlinearity sits inside each path).
 *
 * Replica k decodes code q at (r, c) as a_k[r] * b_k[c] * (q - m + o_k), with
 * m = (2^bits - 1) / 2 the grid's centre, a_k a per-output-row factor, b_k a
 * per-input-column factor and o_k a grid offset in steps. The layer is
 *     W[r, c] = sum_k a_k[r] b_k[c] (q[r, c] - m + o_k),
 * so y = W x = sum_k a_k .* (Cm (b_k .* x)) + sum_k o_k a_k (b_k . x), with Cm the
 * centred codes: K passes over the same codes, K times the multiply-adds of one.
 * The ensemble's scale is the rank-K matrix sum_k a_k b_k^T (BatchEnsemble's form);
 * the equal combination weights are folded into a_k.
 *
 * Rotation ensembles: replica k may also read the layer's input through its own
 * orthogonal matrix U_k (rot_kind[k] = RQ_REP_ROT_RH: a random Hadamard transform
 * of order cols, hadamard.h's RQ_ORTH_RH with rot_seed[k]; RQ_REP_ROT_NONE: U_k =
 * I). Its term of W is then diag(a_k) ((Cm + o_k) .* b_k^T) U_k^T, so y_k reads
 * x U_k (x as a row) in place of x: one transform of the input per rotated replica
 * per token on top of the K passes over the codes (hadamard.h builds order cols as
 * a power of two times a Paley order p: about log2(cols / p) + p multiply-adds
 * per input element).
 *
 * Collapse: when every b_k is proportional to one vector b (or every a_k to one a),
 * and all replicas share one rotation, the sum is again a single decoder (a
 * per-row scale and zero point times a per-column factor), whatever K is:
 * rq_rep_collapses detects it.
 *
 * Packed layout, versions 1 and 2 (little-endian), a blob of type RQ_GGML_RQ_PACKED like the
 * formats of qformat.h, told apart by its magic:
 *   header, 32 bytes:
 *     off  0 u8[4] magic "RQR1"
 *     off  4 u16   version (1..this build's)
 *     off  6 u16   reserved (0)
 *     off  8 i64   rows (> 0)
 *     off 16 i64   cols (> 0)
 *     off 24 u8    bits (1..8)
 *     off 25 u8    K (1..RQ_REP_MAX_K)
 *     off 26 u8    combine (0 = sum of the linear outputs, 1 = sum of the MLP's paths)
 *     off 27 u8    rotated (0; 1 = the rotation arrays below follow, version >= 2)
 *     off 28 u32   reserved (0)
 *   codes: rows, each ceil(cols*bits/8) bytes, LSB first, zero padding (as qformat.h)
 *   a:     f16 [K, rows]
 *   b:     f16 [K, cols]
 *   o:     f32 [K]
 * and only when rotated:
 *   kind:  u8 [K] (RQ_REP_ROT_*), zero bytes up to a multiple of 8
 *   seed:  u64 [K]
 * Nothing follows. A tensor without rotations is written as version 1 (byte for
 * byte what earlier builds wrote); one with rotations as version 2. */
#ifndef RQ_REPLICA_H
#define RQ_REPLICA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RQ_REP_MAX_K 64
#define RQ_REP_HEADER 32
#define RQ_REP_VERSION 2
#define RQ_FMT_REP 32 /* the id rq_qformat_peek reports for a replicated blob */

enum { RQ_REP_COMBINE_LINEAR = 0, RQ_REP_COMBINE_MLP = 1 };
enum { RQ_REP_ROT_NONE = 0, RQ_REP_ROT_RH = 1 };

typedef struct {
    int bits, K;
    int combine; /* RQ_REP_COMBINE_*: where the K replicas are added */
    int64_t rows, cols;
    uint8_t *q;         /* [rows, cols] codes 0..2^bits-1 */
    uint16_t *a;        /* [K, rows] f16 */
    uint16_t *b;        /* [K, cols] f16 */
    float *o;           /* [K] */
    uint8_t *rot_kind;  /* [K] RQ_REP_ROT_* (all NONE after rq_rep_alloc) */
    uint64_t *rot_seed; /* [K] */
} rq_rep;

void rq_rep_alloc(rq_rep *t, int bits, int K, int64_t rows, int64_t cols);
/* True when any replica reads its input through a rotation. */
bool rq_rep_rotated(const rq_rep *t);
void rq_rep_free(rq_rep *t);

/* Reference dequantization to out[rows, cols]. The K terms of each weight are
 * added pairwise (K = 4: (t0 + t1) + (t2 + t3)), so K identical replicas whose
 * a_k is a / K give bit for bit the K = 1 tensor when K is a power of two. */
void rq_rep_dequant(const rq_rep *t, float *out);
/* Replica k alone: out[r, c] = a_k[r] b_k[c] (q - m + o_k), times U_k^T on the
 * right when it is rotated; rq_rep_dequant adds these K matrices
 * pairwise. */
void rq_rep_dequant_replica(const rq_rep *t, int k, float *out);

/* Reference replicated product y[rows] = W x, computed as the K decoders would
 * run it: per replica, u = b_k .* (x U_k), z = Cm u (+ o_k sum(u)), y_k = a_k .* z; the
 * y_k added pairwise as in rq_rep_dequant. Double accumulation inside each z. */
void rq_rep_matvec(const rq_rep *t, const float *x, float *y);

/* Multiply-adds of one product relative to the K = 1 layer: K (a rotated
 * replica's input transform is not counted). */
int rq_rep_compute_multiplier(const rq_rep *t);

/* True when the K decoders sum to a single one: all replicas read the input
 * through one rotation (or none), and all b_k are proportional to one vector, or
 * all a_k are (relative tolerance tol on the residual of the best rank-1 fit of
 * the stacked factors). */
bool rq_rep_collapses(const rq_rep *t, double tol);

/* Packed size in bytes (header included) and exact storage in bits: codes (with
 * row padding), parameters (a, b, o, and the rotation kinds, padding and seeds
 * when rotated) and header, summing to 8 * size. */
size_t rq_rep_size(int bits, int K, int64_t rows, int64_t cols, bool rotated);
/* The same for t as rq_rep_pack writes it (rotated when any replica is). */
size_t rq_rep_packed_size(const rq_rep *t);
typedef struct {
    int64_t n_weights, code_bits, param_bits, header_bits;
} rq_rep_bits;
rq_rep_bits rq_rep_bits_of(int bits, int K, int64_t rows, int64_t cols, bool rotated);

/* Pack into dst (rq_rep_size bytes); refuses codes out of range or non-finite
 * parameters before writing anything. */
int rq_rep_pack(const rq_rep *t, uint8_t *dst);
/* Parse and validate n bytes into out (allocated; free with rq_rep_free). */
int rq_rep_unpack(const uint8_t *src, size_t n, rq_rep *out);
/* Header only: bits, K, combine, rows, cols (arrays NULL); *rotated from byte 27
 * (rotated may be NULL). */
int rq_rep_peek(const uint8_t *src, size_t n, rq_rep *hdr_only, int *version, bool *rotated);
/* True when the blob starts with the replicated magic. */
bool rq_rep_is_blob(const void *src, size_t n);

#endif
