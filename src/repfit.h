/* repfit.h - fitting a replicated layer (replica.h) to one linear layer on its
 * calibration Hessian: start from per-row GPTQ codes, then alternate
 *   a-step  per-row factors a_k of all replicas at once (K x K least squares per
 *           row in the Hessian metric),
 *   b-step  per-column factors b_k, one replica at a time given the others
 *           (cols x cols least squares),
 *   o-step  grid offsets o_k (K x K least squares),
 *   c-step  codes, by GPTQ's error feedback on the elementwise decoder
 *           M (q - m) + N that the replicas induce (M = sum a_k b_k^T,
 *           N = sum o_k a_k b_k^T),
 * each step kept only if the layer objective J = ||(W^ - W) X||^2 / N does not
 * rise (J is measured with the f16 parameters the file stores).
 *
 * Rotation ensembles (vary_rot, repfit_rot.c): the K = 1 fit above, then K - 1
 * replicas that read the same codes through their own random Hadamard transform
 * of the input (replica.h), started at a_k = 0 and b_k = b_0 (so at the K = 1
 * tensor) and fitted by alternating the a-step over all K replicas with each
 * rotated replica's b-step, under the same no-rise rule. The codes and replica
 * 0's offset stay the K = 1 fit's. */
#ifndef RQ_REPFIT_H
#define RQ_REPFIT_H

#include <stdbool.h>
#include <stdint.h>

#include "quant.h"
#include "replica.h"

typedef struct {
    int K;             /* replicas, 1..RQ_REP_MAX_K */
    bool vary_out;     /* each replica has its own per-row factors a_k (else one a shared) */
    bool vary_in;      /* per-column factors b_k are fitted (else all 1) */
    bool vary_offset;  /* grid offsets o_k are fitted (else 0) */
    bool vary_rot;     /* replicas k >= 1 read the input through their own rotation (repfit_rot.c) */
    int iters;         /* alternations of the four steps (default 4) */
    float init_spread; /* replica k >= 1 starts with b_k = 1 +- spread (seeded signs), a_k = 0 */
    uint64_t seed;
    int combine; /* RQ_REP_COMBINE_*: LINEAR fits the K replicas here; MLP fits K = 1
                    here, and the driver spreads it into K paths and trains them
                    (mlptrain.h) */
} rq_rep_opts;

rq_rep_opts rq_rep_opts_default(void); /* K 1, vary out and in, no offsets, 4 iterations, spread 0.25 */

/* Refuses options that cannot work, and configurations whose replicas collapse
 * into one decoder (K > 1 without both per-row and per-column factors and without
 * rotations: the sum is then one per-row affine decoder times a column factor),
 * naming the cause. Rotations need K >= 2, per-row factors and "linear". */
int rq_rep_opts_check(const rq_rep_opts *o);

/* The K paths of an MLP replicated after its nonlinearity (combine 1), started
 * from a fitted K = 1 tensor: the codes and offset shared, each path's column
 * factors b times 1 +- spread (seeded signs) so that the paths can move apart in
 * training, the row factors a copied, or divided by K when share_a (the down
 * projection, whose K outputs are added). */
void rq_rep_spread_paths(const rq_rep *one, int K, float spread, uint64_t seed, bool share_a, rq_rep *out);

enum { RQ_REP_TRACE_MAX = 256 };
typedef struct {
    int n;
    double J[RQ_REP_TRACE_MAX];     /* objective after each step (kept or not: see kept) */
    char step[RQ_REP_TRACE_MAX];    /* 'i' initial GPTQ codes, 'a', 'b', 'o', 'c' */
    bool kept[RQ_REP_TRACE_MAX];    /* false: the step raised J and was undone */
    double J_init, J_final, J_zero; /* J_zero: the objective of W^ = 0, for relative errors */
} rq_rep_trace;

/* Append a step to the trace (tr may be NULL; steps past RQ_REP_TRACE_MAX are not
 * recorded). */
void rq_rep_trace_add(rq_rep_trace *tr, char step, double J, bool kept);

/* Fit out (allocated here; free with rq_rep_free) to w[rows, cols] with bits-bit
 * codes, against the inputs accumulated in h. grid: the initial per-row grid
 * (its bits are used; symmetric, per channel); gptq: options for the initial
 * codes and the c-step. trace may be NULL. Deterministic for a given seed and
 * thread count. */
int rq_rep_fit(rq_gptq *h, const float *w, int64_t rows, int64_t cols, const rq_grid *grid, const rq_gptq_opts *gptq,
               const rq_rep_opts *o, rq_rep *out, rq_rep_trace *trace);

/* The rotation ensemble's step after the K = 1 fit: out (allocated) holds one's
 * codes and replica 0, plus K - 1 replicas with RQ_REP_ROT_RH rotations (seeds
 * rq_rep_rot_seed(seed, k)), fitted for iters rounds (b-steps only when vary_in)
 * against the Hessian H [cols, cols] and weights w. The trace (may be NULL) goes on
 * from where it is ('a' and 'b' steps); its J_final is set. */
int rq_rep_extend_rotated(const float *H, const float *w, const rq_rep *one, int K, uint64_t seed, int iters,
                          bool vary_in, rq_rep *out, rq_rep_trace *trace);
/* Replica k's rotation seed from the fit's seed (which the quantizer derives from
 * the recipe's seed and the tensor's name, so every tensor has its own). */
uint64_t rq_rep_rot_seed(uint64_t seed, int k);

/* Row factors of K matrices F_k [rows, cols] at once: for each row r the a[k][r]
 * that minimise ||(sum_k a_k[r] F_k[r, :] - w[r, :]) X||^2, the K x K normal
 * equations in the metric H (with a 1e-9 relative ridge); a row whose system is
 * singular keeps its a. */
void rq_rep_rows_lsq(const float *H, const float *w, int64_t rows, int64_t cols, int K, float *const *F, float **a);

#endif
