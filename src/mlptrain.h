/* mlptrain.h - frozen-code training of a replicated MLP: the per-row and
 * per-column factors (a_k, b_k) of the three replicated matrices of one MLP (gate,
 * up, down; replica.h) are trained by Adam so that the quantized MLP reproduces the
 * reference MLP's output on calibration inputs; the codes and offsets stay as
 * they are. The gradients are written by hand for the SwiGLU MLP:
 *     G = X Wg^T, U = X Wu^T, S = R4(silu(G) .* U), Y = S Wd^T
 * (R4 the optional online rotation of the down projection's input), loss
 * mean ||Y - Y_ref||^2. With combine 1 (replica.h) the MLP has K paths, path k
 * built from replica k of each matrix, and Y is the sum of the paths; with
 * combine 0 each matrix is the sum of its replicas and there is one path.
 *
 * A tail of the tokens (holdout) is never trained on: the factors are evaluated
 * there, rounded to the f16 the file stores, at the start and every eval_every
 * steps, and the best evaluation is what is kept, so the held-out error never
 * ends above the start's. */
#ifndef RQ_MLPTRAIN_H
#define RQ_MLPTRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "hadamard.h"
#include "replica.h"

/* What the quantized MLP is trained to output (the driver builds it, quantize.c):
 * the reference MLP on the same inputs; or what the reference block adds to the
 * residual after this block's quantized attention, on the same block input
 * ("block"), or on the reference model's input to the block ("model"). */
typedef enum { RQ_MLP_TARGET_MLP = 0, RQ_MLP_TARGET_BLOCK, RQ_MLP_TARGET_MODEL } rq_mlp_target;

typedef struct {
    int steps;      /* Adam steps (0: evaluate only) */
    int batch;      /* tokens per step, drawn from the training part with the seed */
    int eval_every; /* held-out evaluations every this many steps (and at the end) */
    float lr;       /* Adam's step, relative to the RMS of each factor vector at the start */
    float holdout;  /* fraction of the tokens, at their end, held out (0 < holdout < 1) */
    uint64_t seed;
    rq_mlp_target target; /* read by the driver, not by rq_mlp_train */
    bool o_proj;          /* the driver also trains attn_output's factors (rq_mlp_tail); block or model target */
} rq_mlptrain_opts;

rq_mlptrain_opts rq_mlptrain_default(void); /* 100 steps, batch 512, eval every 10, lr 0.002, holdout 0.125 */
int rq_mlptrain_check(const rq_mlptrain_opts *o);

typedef struct {
    double val_start; /* held-out error at the start, relative to the reference output's energy */
    double val_best;  /* the kept evaluation's (<= val_start) */
    int best_step;    /* the step it was taken at (0: the start was kept) */
    double seconds;
} rq_mlptrain_trace;

/* The block's tail for mlp_train's "o_proj": the attention output projection's
 * factors are trained with the MLP's. The MLP's input is then computed from the
 * projection, and the output is what the whole tail adds to the block's input:
 *     H = H0 + Z Wo^T, X = rmsnorm(H) .* norm_w, output Z Wo^T + MLP(X). */
typedef struct {
    rq_rep *o;           /* [E, D], replicas summed (combine 0); a and b updated in place */
    const float *z;      /* [n, D]: the projection's inputs (the attention's output) */
    const float *h0;     /* [n, E]: the block's inputs, the residual the attention adds to */
    const float *norm_w; /* [E]: the MLP's RMSNorm weight */
    float eps;
    int64_t D;
} rq_mlp_tail;

/* y[n, E] = the reference MLP (wg, wu [F, E], wd [E, F]) on x[n, E], with the
 * same online R4 (may be NULL): the usual target of rq_mlp_train. */
void rq_mlp_reference(const float *x, int64_t n, int64_t E, int64_t F, const float *wg, const float *wu,
                      const float *wd, const rq_orth *r4, float *y);

/* x[n, E]: the MLP's inputs (after the norm; NULL with a tail, which computes
 * them); y[n, E]: the output to reproduce (rq_mlp_reference's, or anything else
 * the caller wants the MLP, or with a tail the tail, to add); m[0..2]: gate
 * [F, E], up [F, E], down [E, F], replicated with equal K and combine, updated in
 * place (a and b only). r4 and tail may be NULL. Deterministic for a seed and
 * thread count. */
int rq_mlp_train(const float *x, int64_t n, int64_t E, int64_t F, const float *y, const rq_orth *r4, rq_rep *m[3],
                 const rq_mlp_tail *tail, const rq_mlptrain_opts *o, rq_mlptrain_trace *tr);

/* The quantized MLP's (or tail's) loss mean_t ||Y_t - Y_ref_t||^2 on x[n, E]
 * (or the tail's inputs) and its gradient with respect to the f32 factors
 * a[j][K * rows_j], b[j][K * cols_j] of matrix j (gate, up, down, and with a
 * tail o as j = 3): the reference the tests check against finite differences.
 * ga and gb are both given (zeroed; the gradients are added) or both NULL (loss
 * only). */
double rq_mlp_loss_grad(const float *x, int64_t n, int64_t E, int64_t F, const float *yref, const rq_orth *r4,
                        rq_rep *m[3], const rq_mlp_tail *tail, float *a[], float *b[], float *ga[], float *gb[]);

#endif
