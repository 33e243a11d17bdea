/* repfit_rot.c - rotation ensembles (repfit.h): a fitted K = 1 tensor extended by
 * replicas that read the same codes through their own random Hadamard transform
 * of the input, fitted by alternating least squares on their row and column
 * factors. The codes stay the K = 1 fit's: GPTQ's error feedback needs a decoder
 * that acts column by column, and a rotated replica mixes every column. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "hadamard.h"
#include "repfit.h"
#include "util.h"

void rq_rep_rows_lsq(const float *H, const float *w, int64_t rows, int64_t cols, int K, float *const *F, float **a) {
    float *P = rq_malloc((size_t)K * (size_t)(rows * cols) * sizeof *P); /* P_k = F_k H */
    for (int k = 0; k < K; k++)
        rq_sgemm(CblasNoTrans, CblasNoTrans, (int)rows, (int)cols, (int)cols, 1.0f, F[k], (int)cols, H, (int)cols, 0.0f,
                 P + (size_t)k * (size_t)(rows * cols), (int)cols);
    for (int64_t r = 0; r < rows; r++) {
        double G[RQ_REP_MAX_K * RQ_REP_MAX_K], h[RQ_REP_MAX_K], tr = 0;
        for (int k = 0; k < K; k++) {
            const float *pk = P + (size_t)k * (size_t)(rows * cols) + r * cols;
            h[k] = 0;
            for (int64_t c = 0; c < cols; c++)
                h[k] += (double)pk[c] * w[r * cols + c];
            for (int l = 0; l < K; l++) {
                double g = 0;
                for (int64_t c = 0; c < cols; c++)
                    g += (double)pk[c] * F[l][r * cols + c];
                G[k * K + l] = g;
            }
            tr += G[k * K + k];
        }
        if (!(tr > 0)) continue;
        for (int k = 0; k < K; k++)
            G[k * K + k] += 1e-9 * tr / K;
        if (LAPACKE_dposv(LAPACK_ROW_MAJOR, 'U', K, 1, G, K, h, 1) != 0) continue;
        for (int k = 0; k < K; k++)
            a[k][r] = (float)h[k];
    }
    free(P);
}

typedef struct {
    const float *H, *w;
    int64_t rows, cols;
    rq_rep *t;
    float *Cc;    /* [rows, cols] centred codes q - m (each replica adds its offset) */
    rq_orth **U;  /* [K], NULL for replica 0 */
    float *a, *b; /* [K, rows], [K, cols]: f32 copies of t's f16 factors */
    float *what;  /* [rows, cols] scratch */
    float *F;     /* [K, rows, cols] unit-row-factor replicas */
} rot_fit;

/* F_k = ((Cc + o_k) .* b_k) U_k^T: replica k with its row factors all 1 */
static void unit_replica(const rot_fit *f, int k, float *F) {
    const int64_t R = f->rows, C = f->cols;
    const float *b = f->b + k * C;
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++)
            F[r * C + c] = (f->Cc[r * C + c] + f->t->o[k]) * b[c];
    if (f->U[k]) rq_orth_apply_t(f->U[k], F, R);
}

/* Store the f32 factors in t as f16 and read them back. */
static void put(rot_fit *f) {
    const int K = f->t->K;
    for (int64_t i = 0; i < K * f->rows; i++) {
        f->t->a[i] = rq_fp32_to_fp16(f->a[i]);
        f->a[i] = rq_fp16_to_fp32(f->t->a[i]);
    }
    for (int64_t i = 0; i < K * f->cols; i++) {
        f->t->b[i] = rq_fp32_to_fp16(f->b[i]);
        f->b[i] = rq_fp16_to_fp32(f->t->b[i]);
    }
}

/* put, then J = ||(W^ - W) X||^2 / N of the stored tensor */
static double store(rot_fit *f) {
    put(f);
    rq_rep_dequant(f->t, f->what);
    return rq_layer_error(f->H, f->w, f->what, f->rows, f->cols);
}

/* Keep the step just taken if J did not rise, else put back the n factors v held
 * before it (saved: already f16 values, so t is as it was). Returns the J kept. */
static double settle(rot_fit *f, float *v, const float *saved, size_t n, double J, char step, rq_rep_trace *tr) {
    double Jn = store(f);
    bool keep = Jn <= J; /* NaN is not kept */
    rq_rep_trace_add(tr, step, Jn, keep);
    if (keep) return Jn;
    memcpy(v, saved, n * sizeof *v);
    put(f);
    return J;
}

static void a_step(rot_fit *f) {
    const int K = f->t->K;
    float *F[RQ_REP_MAX_K], *a[RQ_REP_MAX_K];
    for (int k = 0; k < K; k++) {
        F[k] = f->F + (size_t)k * (size_t)(f->rows * f->cols);
        unit_replica(f, k, F[k]);
        a[k] = f->a + k * f->rows;
    }
    rq_rep_rows_lsq(f->H, f->w, f->rows, f->cols, K, F, a);
}

/* Column factors of replica k >= 1 given the others: in its own basis (inputs
 * x U_k, Hessian H_k = U_k^T H U_k, residual rows R U_k) the least squares
 *   (H_k .* (A Cc)^T (A Cc)) b = colsum((A Cc) .* (R_k H_k)),  A = diag(a_k),
 * with Cc the codes plus the replica's offset. */
static void b_step(rot_fit *f, int k) {
    const int64_t R = f->rows, C = f->cols;
    const int K = f->t->K;
    float *res = rq_malloc((size_t)(R * C) * sizeof *res), *tmp = f->F; /* F is free scratch here */
    memcpy(res, f->w, (size_t)(R * C) * sizeof *res);
    for (int l = 0; l < K; l++) {
        if (l == k) continue;
        unit_replica(f, l, tmp);
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < C; c++)
                res[r * C + c] -= f->a[l * R + r] * tmp[r * C + c];
    }
    float *Hk = rq_malloc((size_t)(C * C) * sizeof *Hk);
    memcpy(Hk, f->H, (size_t)(C * C) * sizeof *Hk);
    if (f->U[k]) {
        rq_orth_apply(f->U[k], Hk, C); /* H U_k; its transpose is U_k^T H */
        for (int64_t i = 0; i < C; i++)
            for (int64_t j = i + 1; j < C; j++) {
                float x = Hk[i * C + j];
                Hk[i * C + j] = Hk[j * C + i];
                Hk[j * C + i] = x;
            }
        rq_orth_apply(f->U[k], Hk, C);
        rq_orth_apply(f->U[k], res, R);
    }
    float *AC = rq_malloc((size_t)(R * C) * sizeof *AC), *M = rq_malloc((size_t)(C * C) * sizeof *M);
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++)
            AC[r * C + c] = f->a[k * R + r] * (f->Cc[r * C + c] + f->t->o[k]);
    rq_sgemm(CblasTrans, CblasNoTrans, (int)C, (int)C, (int)R, 1.0f, AC, (int)C, AC, (int)C, 0.0f, M, (int)C);
    rq_sgemm(CblasNoTrans, CblasNoTrans, (int)R, (int)C, (int)C, 1.0f, res, (int)C, Hk, (int)C, 0.0f, tmp, (int)C);
    double *Md = rq_malloc((size_t)(C * C) * sizeof *Md), *v = rq_calloc((size_t)C, sizeof *v), tr = 0;
    for (int64_t i = 0; i < C * C; i++)
        Md[i] = (double)M[i] * Hk[i];
    for (int64_t i = 0; i < R * C; i++)
        v[i % C] += (double)AC[i] * tmp[i];
    for (int64_t j = 0; j < C; j++)
        tr += Md[j * C + j];
    if (tr > 0) {
        for (int64_t j = 0; j < C; j++)
            Md[j * C + j] += 1e-6 * tr / (double)C;
        if (LAPACKE_dposv(LAPACK_ROW_MAJOR, 'U', (lapack_int)C, 1, Md, (lapack_int)C, v, 1) == 0)
            for (int64_t j = 0; j < C; j++)
                f->b[k * C + j] = (float)v[j];
    }
    free(res), free(Hk), free(AC), free(M), free(Md), free(v);
}

uint64_t rq_rep_rot_seed(uint64_t seed, int k) {
    rq_rng rng;
    rq_rng_seed(&rng, seed, 0x72726f74u + (uint64_t)k); /* "rrot" */
    return rq_rng_next(&rng);
}

int rq_rep_extend_rotated(const float *H, const float *w, const rq_rep *one, int K, uint64_t seed, int iters,
                          bool vary_in, rq_rep *out, rq_rep_trace *trace) {
    memset(out, 0, sizeof *out);
    if (one->K != 1 || rq_rep_rotated(one))
        return rq_fail("rotation ensemble: the start must be one unrotated replica (K = %d given)", one->K);
    if (K < 2 || K > RQ_REP_MAX_K) return rq_fail("rotation ensemble: K = %d must be in 2..%d", K, RQ_REP_MAX_K);
    const int64_t R = one->rows, C = one->cols;
    rq_rep_alloc(out, one->bits, K, R, C);
    rq_rep *t = out;
    memcpy(t->q, one->q, (size_t)(R * C));
    t->o[0] = one->o[0];
    rot_fit f = {H, w, R, C, t, NULL, NULL, NULL, NULL, NULL, NULL};
    f.U = rq_calloc((size_t)K, sizeof *f.U);
    f.a = rq_calloc((size_t)(K * R), sizeof *f.a); /* replicas k >= 1 start at a_k = 0 */
    f.b = rq_malloc((size_t)(K * C) * sizeof *f.b);
    rq_fp16_to_fp32_n(one->a, R, f.a);
    for (int k = 0; k < K; k++)
        rq_fp16_to_fp32_n(one->b, C, f.b + k * C); /* and b_k = b_0 */
    for (int k = 1; k < K; k++) {
        t->rot_kind[k] = RQ_REP_ROT_RH;
        t->rot_seed[k] = rq_rep_rot_seed(seed, k);
        f.U[k] = rq_orth_new(C, RQ_ORTH_RH, t->rot_seed[k]);
        if (!f.U[k]) {
            for (int j = 1; j < k; j++)
                rq_orth_free(f.U[j]);
            free(f.U), free(f.a), free(f.b);
            rq_rep_free(out);
            return rq_fail_ctx("rotation ensemble");
        }
    }
    const float m = (float)((1 << one->bits) - 1) * 0.5f;
    f.Cc = rq_malloc((size_t)(R * C) * sizeof *f.Cc);
    for (int64_t i = 0; i < R * C; i++)
        f.Cc[i] = (float)t->q[i] - m;
    f.what = rq_malloc((size_t)(R * C) * sizeof *f.what);
    f.F = rq_malloc((size_t)K * (size_t)(R * C) * sizeof *f.F);
    float *save_a = rq_malloc((size_t)(K * R) * sizeof *save_a), *save_b = rq_malloc((size_t)C * sizeof *save_b);

    double J = store(&f); /* = the K = 1 tensor's objective: the new replicas add 0 */
    if (trace && trace->n == 0) rq_rep_trace_add(trace, 'i', J, true); /* else it goes on from the K = 1 fit's */
    for (int it = 0; it < iters; it++) {
        memcpy(save_a, f.a, (size_t)(K * R) * sizeof *save_a);
        a_step(&f);
        J = settle(&f, f.a, save_a, (size_t)(K * R), J, 'a', trace);
        for (int k = 1; vary_in && k < K; k++) {
            memcpy(save_b, f.b + k * C, (size_t)C * sizeof *save_b);
            b_step(&f, k);
            J = settle(&f, f.b + k * C, save_b, (size_t)C, J, 'b', trace);
        }
    }
    if (trace) trace->J_final = J;
    for (int k = 1; k < K; k++)
        rq_orth_free(f.U[k]);
    free(f.U), free(f.a), free(f.b), free(f.Cc), free(f.what), free(f.F), free(save_a), free(save_b);
    return 0;
}
