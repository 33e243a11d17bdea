/* quant.h - round-to-nearest and GPTQ on any rq_grid, sharing the grid code.
 * GPTQ follows the original: accumulate H = 2 X^T X with rq_gptq_add_batch,
 * then quantize column by column with error feedback through the inverse
 * Hessian's Cholesky factor, in lazy blocks, optionally in act-order. */
#ifndef RQ_QUANT_H
#define RQ_QUANT_H

#include <stdbool.h>
#include <stdint.h>

#include "grid.h"

typedef struct {
    float damp;         /* fraction of mean(diag H) added to the diagonal (default 0.01) */
    int block;          /* lazy-update block width (default 128) */
    bool act_order;     /* quantize columns by decreasing diag(H) */
    bool static_groups; /* fit all group parameters from the unquantized W up front;
                         * forced on when act_order is used with groups, so that groups
                         * stay contiguous in the stored column order */
} rq_gptq_opts;

rq_gptq_opts rq_gptq_opts_default(void);

/* RTN: each group fitted and rounded independently. seed and the tensor's
 * stream id make stochastic rounding and noise reproducible: row r draws from
 * its own generator rq_rng_seed(seed, stream * 1000003 + r), so results do not
 * depend on threading. binres picks the salient columns by sum_r w[r,j]^2.
 * out is allocated here (free with rq_qtensor_free); zeroed on failure. */
int rq_rtn(const rq_grid *g, const float *w, int64_t rows, int64_t cols, uint64_t seed, uint64_t stream,
           rq_qtensor *out);

/* Hessian accumulator for one layer input of width cols, kept as a running
 * mean (as the original does) so it is valid after every batch. */
typedef struct rq_gptq rq_gptq;
rq_gptq *rq_gptq_new(int64_t cols);
void rq_gptq_free(rq_gptq *h);
/* Add n input rows x[n, cols]. */
void rq_gptq_add_batch(rq_gptq *h, const float *x, int64_t n);
int64_t rq_gptq_count(const rq_gptq *h);  /* rows added so far */
const float *rq_gptq_hessian(rq_gptq *h); /* [cols, cols], 2/N * sum x x^T (both triangles) */
/* Keep the damped Hessian's inverse factor between quantize calls (off by default):
 * for several layers that read one input, or the rounds of a replicated fit. It
 * costs cols^2 floats until turned off, the accumulator is freed or a batch is
 * added; results are bit-identical either way. While keeping, the quantize calls
 * below write the cache inside a const accumulator: do not quantize against one
 * accumulator from two threads at once. */
void rq_gptq_keep_factor(rq_gptq *h, bool keep);
bool rq_gptq_keeps_factor(const rq_gptq *h);

/* Quantize w[rows, cols] against the accumulated Hessian (left unchanged, so
 * several weights sharing an input reuse it). Fails with a message if the
 * damped Hessian is not positive definite or holds NaN/Inf.
 * Groups: without static_groups a group is fitted when the loop reaches its first
 * column, on the error-updated weights; at 1-2 bits with small groups this can
 * widen later groups' ranges enough to lose to RTN, where static groups do not.
 * binres: salient columns by sum_r w[r,j]^2 * H[j,j]; each row's residual scale
 * is mean |w - base(w)| over them, from W before any feedback (nearest base);
 * the error fed back from a salient column includes the residual.
 * Random draws use the same per-row streams as rq_rtn, in loop order.
 * out is allocated here (free with rq_qtensor_free); zeroed on failure. */
int rq_gptq_quantize(const rq_gptq *h, const rq_grid *g, const rq_gptq_opts *o, const float *w, int64_t rows,
                     int64_t cols, uint64_t seed, uint64_t stream, rq_qtensor *out);

/* GPTQ's error feedback with the codes picked by the caller: dec(ctx, row, col,
 * w) receives the error-updated weight at (row, col) (col in stored order),
 * chooses and records a code, and returns the value it decodes to. This is how
 * decoders other than one rq_grid per group (e.g. replica.h's rank-K scales)
 * share the loop. Uses o->damp, o->block and o->act_order; rows are split across
 * threads, so dec must only write state of its own row. */
typedef float (*rq_gptq_decoder)(void *ctx, int64_t row, int64_t col, float w);
int rq_gptq_quantize_dec(const rq_gptq *h, const rq_gptq_opts *o, const float *w, int64_t rows, int64_t cols,
                         rq_gptq_decoder dec, void *ctx);

/* The layer objective ||(What - W) X||^2 / N = tr(D H D^T) / 2 for D = What - W,
 * with H from rq_gptq_hessian; used by tests and reports. */
double rq_layer_error(const float *H, const float *w, const float *what, int64_t rows, int64_t cols);

#endif
