/* dfrot.h - DFRot (Xiang & Zhang, 2025): refine the residual-stream rotation R1
 * for activation quantization by alternating between the quantized activations
 * and the rotation, the rotation step being an orthogonal Procrustes problem
 * solved by SVD, with the tokens that carry massive activations weighted by
 * gamma^2 (L = L_normal + gamma^2 L_massive).
 *
 * The activations are the residual stream's normalized rows X (the inputs of
 * Q/K/V and gate/up, norm scales folded) already rotated by a start rotation;
 * the fit finds R (init I) so that X R quantizes well; the model's R1 is then
 * start * R. */
#ifndef RQ_DFROT_H
#define RQ_DFROT_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    int iters;                        /* alternations (100) */
    float gamma;                      /* weight of massive tokens' rows is gamma^2 (100) */
    int a_bits;                       /* per-token symmetric activation quantization (4) */
    float a_clip;                     /* its clipping ratio (1.0) */
    float massive_abs, massive_ratio; /* a token is massive where its residual |x| > both abs and
                                         ratio x the layer's median |x| (100, 1000: Sun et al.) */
    int calib_len;                    /* calibration tokens, one window (2048) */
    uint64_t seed;
    bool verbose;
} rq_dfrot_opts;

rq_dfrot_opts rq_dfrot_defaults(void);

typedef struct {
    double loss_start, loss_best; /* weighted quantization error sum_i w_i |Q(x_i R) - x_i R|^2 */
    int best_iter;                /* 0: the start rotation was best */
    int64_t rows, massive_rows;
    double seconds;
} rq_dfrot_report;

/* The weighted loss of R[n, n] on X[rows, n] with row weights w. */
double rq_dfrot_loss(const float *X, const float *w, int64_t rows, int64_t n, const float *R, int a_bits, float a_clip);

/* One alternation from R: B = Q(X R), then R_new = argmin over orthogonal R' of
 * sum_i w_i |x_i R' - b_i|^2 = U V^T from the SVD of X^T diag(w) B. Returns the
 * Procrustes objective before (at R) and after (at R_new), both with this B:
 * after <= before up to rounding. *loss (may be NULL) gets rq_dfrot_loss at R, a
 * by-product of the same pass. */
int rq_dfrot_step(const float *X, const float *w, int64_t rows, int64_t n, const float *R, int a_bits, float a_clip,
                  float *R_new, double *obj_before, double *obj_after, double *loss);

/* Alternate o->iters times from R = I; keep the R of lowest loss in R_out[n, n]. */
int rq_dfrot_fit(const float *X, const float *w, int64_t rows, int64_t n, const rq_dfrot_opts *o, float *R_out,
                 rq_dfrot_report *rep);

/* The whole method on a model file: fold norms and a Hadamard R1 into a temporary
 * f32 copy, collect one calibration window's normalized residual rows at every
 * layer (and which tokens are massive), fit, and write the model rotated by
 * R1 = H R (plus R2 / online R3 / R4 of the given kinds, RQ_ROT_NONE for none)
 * to out. calib_path: the C4 sample. */
int rq_dfrot_model(const char *model, const char *calib_path, const char *out, int r2, int r3, int r4,
                   const rq_dfrot_opts *o, rq_dfrot_report *rep);

#endif
