/* hadamard.h - orthogonal transforms for rotations: Hadamard matrices of every
 * order the supported models use (Sylvester 2^k, Paley I and II, Kronecker
 * products), built at run time, a fast transform (FWHT on the power-of-two
 * factor times a small dense factor), random sign flips (RH), random orthogonal
 * matrices from QR (RO), and a randomized block-orthogonal fallback where no
 * Hadamard matrix of the order is constructed.
 *
 * Convention: a transform Q is an n x n orthogonal matrix acting on row vectors
 * from the right, x <- x Q (row-major X[rows, n] <- X Q), which is what rotating
 * a residual stream or a weight matrix's rows needs. */
#ifndef RQ_HADAMARD_H
#define RQ_HADAMARD_H

#include <stdbool.h>
#include <stdint.h>

/* ---- Hadamard matrices (entries +-1, H H^T = n I) ---- */

/* How an order is built: n = pow2 * m, H_n = H_m (x) H_pow2 (Kronecker), with
 * H_pow2 by Sylvester and H_m dense (m == 1: pure Sylvester). */
typedef struct {
    int64_t n, pow2, m;
    int8_t *base; /* [m, m] +-1 entries of H_m, row-major; NULL when m == 1 */
    char desc[160]; /* e.g. "576 = 16 x 36, 36: Paley II (q = 17)" */
} rq_hadamard;

/* Build the Hadamard matrix of order n. Returns 0, or -1 with rq_error() saying
 * that no construction is known here for n (the caller may take the fallback). */
int rq_hadamard_new(int64_t n, rq_hadamard *h);
void rq_hadamard_free(rq_hadamard *h);
/* The whole matrix, out[n, n] with +-1 entries (for tests and small orders). */
void rq_hadamard_dense(const rq_hadamard *h, float *out);
/* x[r] <- x[r] H / sqrt(n) for each of rows rows of n values: FWHT on the
 * power-of-two factor and a dense m x m product, O(n (log n + m)). */
void rq_hadamard_apply(const rq_hadamard *h, float *x, int64_t rows);
/* The same with H^T (H_m need not be symmetric: Paley I is not). */
void rq_hadamard_apply_t(const rq_hadamard *h, float *x, int64_t rows);

/* ---- orthogonal transforms ---- */

typedef enum {
    RQ_ORTH_HADAMARD = 0, /* H / sqrt(n), deterministic */
    RQ_ORTH_RH,           /* diag(s) H / sqrt(n), s random signs from the seed */
    RQ_ORTH_RO,           /* random orthogonal: QR of a Gaussian matrix from the seed (dense) */
} rq_orth_kind;

typedef struct rq_orth rq_orth;

/* A transform of order n. Hadamard kinds whose order has no construction take
 * the fallback: diag(s) (O_m (x) H_pow2) with O_m random orthogonal (QR) on the
 * largest power-of-two factor's complement; rq_orth_fallback() then says so and
 * rq_orth_describe() names it. NULL with rq_error() on bad arguments. */
rq_orth *rq_orth_new(int64_t n, rq_orth_kind kind, uint64_t seed);
void rq_orth_free(rq_orth *q);
int64_t rq_orth_n(const rq_orth *q);
bool rq_orth_fallback(const rq_orth *q);
const char *rq_orth_describe(const rq_orth *q);
/* x[r] <- x[r] Q, rows rows of n (fast for Hadamard kinds, a GEMM for RO). */
void rq_orth_apply(const rq_orth *q, float *x, int64_t rows);
/* x[r] <- x[r] Q^T */
void rq_orth_apply_t(const rq_orth *q, float *x, int64_t rows);
/* Q itself, out[n, n] row-major (for fusion into weights by GEMM, and tests). */
void rq_orth_dense(const rq_orth *q, float *out);

/* Names for recipes and metadata: "hadamard", "rh", "ro"; -1 when unknown. */
const char *rq_orth_kind_name(rq_orth_kind k);
int rq_orth_kind_parse(const char *s);

#endif
