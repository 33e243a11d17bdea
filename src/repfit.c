/* repfit.c - alternating least squares and GPTQ for a replicated layer
 * (the steps are described in repfit.h). */
#include "repfit.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "util.h"

rq_rep_opts rq_rep_opts_default(void) {
    rq_rep_opts o = {
        .K = 1, .vary_out = true, .vary_in = true, .vary_offset = false, .iters = 4, .init_spread = 0.25f, .seed = 0};
    return o;
}

void rq_rep_spread_paths(const rq_rep *one, int K, float spread, uint64_t seed, bool share_a, rq_rep *out) {
    rq_rep_alloc(out, one->bits, K, one->rows, one->cols);
    out->combine = RQ_REP_COMBINE_MLP;
    memcpy(out->q, one->q, (size_t)(one->rows * one->cols));
    rq_rng rng;
    rq_rng_seed(&rng, seed, 0x70617468u); /* "path" */
    for (int k = 0; k < K; k++) {
        out->o[k] = one->o[0];
        for (int64_t r = 0; r < one->rows; r++)
            out->a[k * one->rows + r] = share_a ? rq_fp32_to_fp16(rq_fp16_to_fp32(one->a[r]) / (float)K) : one->a[r];
        for (int64_t c = 0; c < one->cols; c++) {
            float e = K == 1 ? 0.0f : (rq_rng_next(&rng) >> 63 ? 1.0f : -1.0f) * spread;
            out->b[k * one->cols + c] = rq_fp32_to_fp16(rq_fp16_to_fp32(one->b[c]) * (1.0f + e));
        }
    }
}

int rq_rep_opts_check(const rq_rep_opts *o) {
    if (o->K < 1 || o->K > RQ_REP_MAX_K) return rq_fail("replicate.k = %d must be in 1..%d", o->K, RQ_REP_MAX_K);
    if (o->iters < 0 || 1 + 4 * o->iters > RQ_REP_TRACE_MAX)
        return rq_fail("replicate.iters = %d must be in 0..%d", o->iters, (RQ_REP_TRACE_MAX - 1) / 4);
    if (!(o->init_spread >= 0.0f && o->init_spread <= 1.0f))
        return rq_fail("replicate.spread = %g must be in [0, 1]", o->init_spread);
    if (o->combine != RQ_REP_COMBINE_LINEAR && o->combine != RQ_REP_COMBINE_MLP)
        return rq_fail("replicate.combine = %d is unknown", o->combine);
    if (o->combine == RQ_REP_COMBINE_MLP && o->K < 2)
        return rq_fail("replicate: \"combine\": \"mlp\" with k = %d: one path is one decoder; use \"linear\" (with "
                       "\"mlp_train\" to train it) or k >= 2",
                       o->K);
    if (o->combine == RQ_REP_COMBINE_MLP && o->init_spread == 0.0f)
        return rq_fail("replicate: \"combine\": \"mlp\" with spread 0: the %d paths start identical and training "
                       "keeps them identical (k times the compute of one decoder); set spread > 0",
                       o->K);
    if (o->vary_rot && o->K >= 2 && o->iters == 0)
        return rq_fail("replicate: \"rotation\" with iters 0: the rotated replicas start at row factors 0 and "
                       "only the rounds fit them, so the layer would be k = 1 at %d times the compute; set iters >= 1",
                       o->K);
    if (o->vary_rot && 1 + (4 + o->K) * o->iters > RQ_REP_TRACE_MAX)
        return rq_fail("replicate.iters = %d with \"rotation\" and k = %d must be at most %d (the fit's trace holds "
                       "%d steps)",
                       o->iters, o->K, (RQ_REP_TRACE_MAX - 1) / (4 + o->K), RQ_REP_TRACE_MAX);
    if (o->vary_rot && (o->K < 2 || o->combine != RQ_REP_COMBINE_LINEAR || !o->vary_out))
        return rq_fail("replicate: \"rotation\" needs k >= 2 (replica 0 keeps the layer's basis; k = %d), \"out\" in "
                       "\"vary\" (the rotated replicas start at row factors 0) and \"combine\": \"linear\"",
                       o->K);
    /* after the MLP's nonlinearity the paths do not sum to one decoder, nor do
     * replicas in different bases */
    if (o->K > 1 && o->combine == RQ_REP_COMBINE_LINEAR && !o->vary_rot && !(o->vary_out && o->vary_in))
        return rq_fail("replicate: with k = %d the replicas differ only in their %s%s, so their sum is one decoder "
                       "(equivalent to k = 1 at %d times the compute); vary both \"out\" and \"in\" (a rank-k scale "
                       "matrix), or set k = 1",
                       o->K,
                       o->vary_out  ? "per-row factors"
                       : o->vary_in ? "per-column factors"
                                    : "nothing",
                       o->vary_offset ? " and offsets" : "", o->K);
    return 0;
}

typedef struct {
    const float *H, *W;
    int64_t rows, cols;
    float m; /* grid centre */
    rq_rep *t;
    float *what, *S1, *S2; /* [rows, cols] scratch */
} fit;

static double objective(fit *f) {
    rq_rep_dequant(f->t, f->what);
    return rq_layer_error(f->H, f->W, f->what, f->rows, f->cols);
}

/* Solve the symmetric positive semi-definite system G x = g (n x n, double, G and
 * g overwritten) with a small ridge; -1 when it fails. */
static int solve_spd(double *G, double *g, int n) {
    double tr = 0;
    for (int i = 0; i < n; i++)
        tr += G[i * n + i];
    if (!(tr > 0) || !isfinite(tr)) return -1;
    for (int i = 0; i < n; i++)
        G[i * n + i] += 1e-9 * tr / n;
    rq_blas_single(); /* LAPACK on one OpenBLAS thread: the same bits at any -t */
    return LAPACKE_dposv(LAPACK_ROW_MAJOR, 'U', n, 1, G, n, g, 1) == 0 ? 0 : -1;
}

/* ---- a-step: every row's K factors at once ---- */

typedef struct {
    fit *f;
    const float *Bf; /* [K, cols] */
    double *G, *g;   /* [rows, K, K], [rows, K] */
    int k;           /* the replica whose P = U_k H is in f->S2 */
} astate;

/* U_k[r, c] = b_k[c] (q - m + o_k) */
static void build_u(const fit *f, const float *Bf, int k, float *U) {
    const rq_rep *t = f->t;
    for (int64_t r = 0; r < f->rows; r++)
        for (int64_t c = 0; c < f->cols; c++)
            U[r * f->cols + c] = Bf[k * f->cols + c] * ((float)t->q[r * f->cols + c] - f->m + t->o[k]);
}

static void a_rows(void *ctx, int64_t r0, int64_t r1) {
    astate *s = ctx;
    const fit *f = s->f;
    const int K = f->t->K, k = s->k;
    for (int64_t r = r0; r < r1; r++) {
        const float *p = f->S2 + r * f->cols, *w = f->W + r * f->cols;
        const uint8_t *q = f->t->q + r * f->cols;
        double gk = 0;
        for (int64_t c = 0; c < f->cols; c++)
            gk += (double)p[c] * w[c];
        s->g[r * K + k] = gk;
        for (int l = 0; l < K; l++) {
            const float *b = s->Bf + l * f->cols;
            double acc = 0;
            for (int64_t c = 0; c < f->cols; c++)
                acc += (double)p[c] * (b[c] * ((float)q[c] - f->m + f->t->o[l]));
            s->G[(r * K + k) * K + l] = acc;
        }
    }
}

static void a_step(fit *f, bool vary) {
    rq_rep *t = f->t;
    const int K = t->K;
    float *Bf = rq_malloc((size_t)(K * f->cols) * sizeof *Bf);
    rq_fp16_to_fp32_n(t->b, K * f->cols, Bf);
    astate s = {f, Bf, rq_malloc((size_t)(f->rows * K * K) * sizeof(double)),
                rq_malloc((size_t)(f->rows * K) * sizeof(double)), 0};
    for (int k = 0; k < K; k++) {
        build_u(f, Bf, k, f->S1);
        rq_sgemm(CblasNoTrans, CblasNoTrans, (int)f->rows, (int)f->cols, (int)f->cols, 1.0f, f->S1, (int)f->cols, f->H,
                 (int)f->cols, 0.0f, f->S2, (int)f->cols);
        s.k = k;
        rq_parallel_for(f->rows, a_rows, &s);
    }
    for (int64_t r = 0; r < f->rows; r++) {
        double *G = s.G + r * K * K, *g = s.g + r * K;
        for (int i = 0; i < K; i++) /* symmetrize what float rounding left uneven */
            for (int j = 0; j < i; j++)
                G[i * K + j] = G[j * K + i] = 0.5 * (G[i * K + j] + G[j * K + i]);
        if (vary) {
            if (solve_spd(G, g, K)) continue;
            for (int k = 0; k < K; k++)
                t->a[k * f->rows + r] = rq_fp32_to_fp16((float)g[k]);
        } else { /* one factor shared by every replica: the sum of the system */
            double GG = 0, gg = 0;
            for (int i = 0; i < K; i++) {
                gg += g[i];
                for (int j = 0; j < K; j++)
                    GG += G[i * K + j];
            }
            if (solve_spd(&GG, &gg, 1)) continue;
            for (int k = 0; k < K; k++)
                t->a[k * f->rows + r] = rq_fp32_to_fp16((float)gg);
        }
    }
    free(s.G);
    free(s.g);
    free(Bf);
}

/* ---- b-step: one replica's column factors given the rest ---- */

static void b_one(fit *f, int k) {
    rq_rep *t = f->t;
    const int64_t R = f->rows, C = f->cols;
    float *Af = rq_malloc((size_t)R * sizeof *Af), *A = rq_malloc((size_t)(C * C) * sizeof *A);
    float *rhs = rq_calloc((size_t)C, sizeof *rhs);
    rq_fp16_to_fp32_n(t->a + k * R, R, Af);
    rq_rep_dequant(t, f->what);
    /* S1 = Z = diag(a_k) (q - m + o_k); S2 = R = W - W^ + W^_k */
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++) {
            int64_t i = r * C + c;
            float z = Af[r] * ((float)t->q[i] - f->m + t->o[k]);
            f->S1[i] = z;
            f->S2[i] = f->W[i] - f->what[i] + z * rq_fp16_to_fp32(t->b[k * C + c]);
        }
    /* normal matrix (Z^T Z) .* H (upper), right side diag(Z^T R H) */
    rq_ssyrk_upper_t((int)C, (int)R, 1.0f, f->S1, (int)C, 0.0f, A, (int)C);
    double dmean = 0;
    for (int64_t i = 0; i < C; i++) {
        for (int64_t j = i; j < C; j++)
            A[i * C + j] *= f->H[i * C + j];
        dmean += A[i * C + i];
    }
    rq_sgemm(CblasNoTrans, CblasNoTrans, (int)R, (int)C, (int)C, 1.0f, f->S2, (int)C, f->H, (int)C, 0.0f, f->what,
             (int)C);
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++)
            rhs[c] += f->S1[r * C + c] * f->what[r * C + c];
    dmean /= (double)C;
    if (dmean > 0 && isfinite(dmean)) {
        for (int64_t i = 0; i < C; i++)
            A[i * C + i] += (float)(1e-6 * dmean) + (A[i * C + i] == 0.0f ? (float)dmean : 0.0f);
        if (LAPACKE_spotrf(LAPACK_ROW_MAJOR, 'U', (lapack_int)C, A, (lapack_int)C) == 0 &&
            LAPACKE_spotrs(LAPACK_ROW_MAJOR, 'U', (lapack_int)C, 1, A, (lapack_int)C, rhs, 1) == 0) {
            /* keep b_k at unit RMS and move its size into a_k, so both stay in f16's range */
            double ss = 0;
            for (int64_t c = 0; c < C; c++)
                ss += (double)rhs[c] * rhs[c];
            float s = (float)sqrt(ss / (double)C);
            if (s > 0 && isfinite(s)) {
                for (int64_t c = 0; c < C; c++)
                    t->b[k * C + c] = rq_fp32_to_fp16(rhs[c] / s);
                for (int64_t r = 0; r < R; r++)
                    t->a[k * R + r] = rq_fp32_to_fp16(Af[r] * s);
            }
        }
    }
    free(Af);
    free(A);
    free(rhs);
}

/* ---- o-step: the K offsets ---- */

static void o_step(fit *f) {
    rq_rep *t = f->t;
    const int K = t->K;
    const int64_t R = f->rows, C = f->cols;
    float o_save[RQ_REP_MAX_K];
    memcpy(o_save, t->o, (size_t)K * sizeof *o_save);
    memset(t->o, 0, (size_t)K * sizeof *t->o);
    rq_rep_dequant(t, f->what); /* the codes' part alone */
    memcpy(t->o, o_save, (size_t)K * sizeof *o_save);
    for (int64_t i = 0; i < R * C; i++)
        f->S1[i] = f->W[i] - f->what[i];
    rq_sgemm(CblasNoTrans, CblasNoTrans, (int)R, (int)C, (int)C, 1.0f, f->S1, (int)C, f->H, (int)C, 0.0f, f->S2,
             (int)C); /* S2 = (W - codes part) H */
    float *Af = rq_malloc((size_t)(K * R) * sizeof *Af), *Bf = rq_malloc((size_t)(K * C) * sizeof *Bf);
    float *HB = rq_malloc((size_t)(K * C) * sizeof *HB), *v = rq_malloc((size_t)R * sizeof *v);
    rq_fp16_to_fp32_n(t->a, K * R, Af);
    rq_fp16_to_fp32_n(t->b, K * C, Bf);
    double G[RQ_REP_MAX_K * RQ_REP_MAX_K], g[RQ_REP_MAX_K];
    for (int k = 0; k < K; k++) {
        cblas_ssymv(CblasRowMajor, CblasUpper, (int)C, 1.0f, f->H, (int)C, Bf + k * C, 1, 0.0f, HB + k * C, 1);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)R, (int)C, 1.0f, f->S2, (int)C, Bf + k * C, 1, 0.0f, v, 1);
        double acc = 0;
        for (int64_t r = 0; r < R; r++)
            acc += (double)Af[k * R + r] * v[r];
        g[k] = acc;
    }
    for (int k = 0; k < K; k++)
        for (int l = 0; l < K; l++) {
            double aa = 0, bb = 0;
            for (int64_t r = 0; r < R; r++)
                aa += (double)Af[k * R + r] * Af[l * R + r];
            for (int64_t c = 0; c < C; c++)
                bb += (double)Bf[k * C + c] * HB[l * C + c];
            G[k * K + l] = aa * bb;
        }
    for (int i = 0; i < K; i++)
        for (int j = 0; j < i; j++)
            G[i * K + j] = G[j * K + i] = 0.5 * (G[i * K + j] + G[j * K + i]);
    if (solve_spd(G, g, K) == 0)
        for (int k = 0; k < K; k++)
            t->o[k] = (float)g[k];
    free(Af);
    free(Bf);
    free(HB);
    free(v);
}

/* ---- c-step: codes by GPTQ on the induced elementwise decoder ---- */

typedef struct {
    const float *M, *N;
    const uint8_t *old;
    uint8_t *q;
    int64_t cols;
    float m, maxq;
} cstate;

static float c_decode(void *ctx, int64_t r, int64_t c, float w) {
    const cstate *s = ctx;
    size_t i = (size_t)(r * s->cols + c);
    float M = s->M[i], N = s->N[i];
    int q = s->old[i];
    if (M != 0.0f) {
        float x = (w - N) / M + s->m;
        if (x == x) q = (int)lrintf(fminf(fmaxf(x, 0.0f), s->maxq));
    }
    s->q[i] = (uint8_t)q;
    return M * ((float)q - s->m) + N;
}

static int c_step(fit *f, rq_gptq *h, const rq_gptq_opts *go, uint8_t *newq) {
    rq_rep *t = f->t;
    const int K = t->K;
    const int64_t R = f->rows, C = f->cols;
    float *Af = rq_malloc((size_t)(K * R) * sizeof *Af), *AOf = rq_malloc((size_t)(K * R) * sizeof *AOf);
    float *Bf = rq_malloc((size_t)(K * C) * sizeof *Bf);
    rq_fp16_to_fp32_n(t->a, K * R, Af);
    rq_fp16_to_fp32_n(t->b, K * C, Bf);
    for (int k = 0; k < K; k++)
        for (int64_t r = 0; r < R; r++)
            AOf[k * R + r] = Af[k * R + r] * t->o[k];
    rq_sgemm(CblasTrans, CblasNoTrans, (int)R, (int)C, K, 1.0f, Af, (int)R, Bf, (int)C, 0.0f, f->S1, (int)C);
    rq_sgemm(CblasTrans, CblasNoTrans, (int)R, (int)C, K, 1.0f, AOf, (int)R, Bf, (int)C, 0.0f, f->S2, (int)C);
    cstate s = {f->S1, f->S2, t->q, newq, C, f->m, (float)((1 << t->bits) - 1)};
    int rc = rq_gptq_quantize_dec(h, go, f->W, R, C, c_decode, &s);
    free(Af);
    free(AOf);
    free(Bf);
    return rc;
}

/* ---- driver ---- */

void rq_rep_trace_add(rq_rep_trace *tr, char step, double J, bool kept) {
    if (!tr || tr->n >= RQ_REP_TRACE_MAX) return;
    tr->step[tr->n] = step;
    tr->J[tr->n] = J;
    tr->kept[tr->n] = kept;
    tr->n++;
}

/* Keep the step just taken if J did not rise, else restore the saved state. */
typedef struct {
    uint8_t *q;
    uint16_t *a, *b;
    float o[RQ_REP_MAX_K];
} snapshot;

static void snap_save(const rq_rep *t, snapshot *s) {
    memcpy(s->q, t->q, (size_t)(t->rows * t->cols));
    memcpy(s->a, t->a, (size_t)(t->K * t->rows) * sizeof *t->a);
    memcpy(s->b, t->b, (size_t)(t->K * t->cols) * sizeof *t->b);
    memcpy(s->o, t->o, (size_t)t->K * sizeof *t->o);
}
static void snap_load(rq_rep *t, const snapshot *s) {
    memcpy(t->q, s->q, (size_t)(t->rows * t->cols));
    memcpy(t->a, s->a, (size_t)(t->K * t->rows) * sizeof *t->a);
    memcpy(t->b, s->b, (size_t)(t->K * t->cols) * sizeof *t->b);
    memcpy(t->o, s->o, (size_t)t->K * sizeof *t->o);
}

static double settle(fit *f, const snapshot *s, double J, char step, rq_rep_trace *tr) {
    double Jn = objective(f);
    bool keep = Jn <= J; /* NaN is not kept */
    rq_rep_trace_add(tr, step, Jn, keep);
    if (keep) return Jn;
    snap_load(f->t, s);
    return J;
}

int rq_rep_fit(rq_gptq *h, const float *w, int64_t rows, int64_t cols, const rq_grid *grid, const rq_gptq_opts *gptq,
               const rq_rep_opts *o, rq_rep *out, rq_rep_trace *trace) {
    memset(out, 0, sizeof *out);
    if (trace) memset(trace, 0, sizeof *trace);
    if (rq_rep_opts_check(o)) return rq_fail_ctx("replicated fit");
    if (o->vary_rot) { /* the K = 1 fit, then the rotated replicas */
        rq_rep_opts o1 = *o;
        o1.K = 1;
        o1.vary_rot = false;
        rq_rep one;
        if (rq_rep_fit(h, w, rows, cols, grid, gptq, &o1, &one, trace)) return -1;
        int rc = rq_rep_extend_rotated(rq_gptq_hessian(h), w, &one, o->K, o->seed, o->iters, o->vary_in, out, trace);
        rq_rep_free(&one);
        return rc ? rq_fail_ctx("replicated fit") : 0;
    }
    rq_grid g = *grid;
    g.sym = true;
    g.group = 0;
    g.binres = false;
    /* the start and every c-step quantize against the same factor: keep it for the fit */
    bool kept = rq_gptq_keeps_factor(h);
    rq_gptq_keep_factor(h, true);
    rq_qtensor q0;
    if (rq_gptq_quantize(h, &g, gptq, w, rows, cols, o->seed, 0, &q0)) {
        rq_gptq_keep_factor(h, kept);
        return rq_fail_ctx("replicated fit");
    }
    rq_rep_alloc(out, g.bits, o->K, rows, cols);
    rq_rep *t = out;
    memcpy(t->q, q0.q, (size_t)(rows * cols));
    for (int64_t r = 0; r < rows; r++)
        t->a[r] = q0.scale[r];
    const uint16_t one = rq_fp32_to_fp16(1.0f);
    rq_rng rng;
    rq_rng_seed(&rng, o->seed, 0x7265706cu); /* "repl" */
    for (int k = 0; k < o->K; k++) {
        t->o[k] = k == 0 ? g.offset : 0.0f;
        for (int64_t c = 0; c < cols; c++) {
            float e = k == 0 ? 0.0f : (rq_rng_next(&rng) >> 63 ? 1.0f : -1.0f) * o->init_spread;
            t->b[k * cols + c] = k == 0 ? one : rq_fp32_to_fp16(1.0f + e);
        }
    }
    rq_qtensor_free(&q0);

    fit f = {rq_gptq_hessian(h), w, rows, cols, (float)((1 << g.bits) - 1) * 0.5f, t, NULL, NULL, NULL};
    size_t n = (size_t)(rows * cols);
    f.what = rq_malloc(n * sizeof(float));
    f.S1 = rq_malloc(n * sizeof(float));
    f.S2 = rq_malloc(n * sizeof(float));
    snapshot s = {rq_malloc(n), rq_malloc((size_t)(o->K * rows) * 2), rq_malloc((size_t)(o->K * cols) * 2), {0}};
    uint8_t *newq = rq_malloc(n);
    memset(f.what, 0, n * sizeof(float));
    double J0 = rq_layer_error(f.H, w, f.what, rows, cols);
    double J = objective(&f);
    rq_rep_trace_add(trace, 'i', J, true);
    int rc = 0;
    for (int it = 0; it < o->iters && rc == 0; it++) {
        snap_save(t, &s);
        a_step(&f, o->vary_out);
        J = settle(&f, &s, J, 'a', trace);
        if (o->vary_in) {
            snap_save(t, &s);
            for (int k = 0; k < o->K; k++)
                b_one(&f, k);
            J = settle(&f, &s, J, 'b', trace);
        }
        if (o->vary_offset) {
            snap_save(t, &s);
            o_step(&f);
            J = settle(&f, &s, J, 'o', trace);
        }
        snap_save(t, &s);
        rc = c_step(&f, h, gptq, newq);
        if (rc == 0) {
            memcpy(t->q, newq, n);
            J = settle(&f, &s, J, 'c', trace);
        }
    }
    if (trace) {
        trace->J_init = trace->n ? trace->J[0] : J;
        trace->J_final = J;
        trace->J_zero = J0;
    }
    free(f.what);
    free(f.S1);
    free(f.S2);
    free(s.q);
    free(s.a);
    free(s.b);
    free(newq);
    rq_gptq_keep_factor(h, kept);
    if (rc) {
        rq_rep_free(out);
        return rq_fail_ctx("replicated fit");
    }
    return 0;
}
