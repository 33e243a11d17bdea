/* dfrot.c - DFRot's refinement of R1: alternating quantization and orthogonal
 * Procrustes (SVD through LAPACK), with massive-activation tokens weighted. */
#include "dfrot.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actq.h"
#include "calib.h"
#include "forward.h"
#include "gemm.h"
#include "hadamard.h"
#include "model.h"
#include "rotate.h"
#include "util.h"

rq_dfrot_opts rq_dfrot_defaults(void) {
    return (rq_dfrot_opts){.iters = 100,
                           .gamma = 100.0f,
                           .a_bits = 4,
                           .a_clip = 1.0f,
                           .massive_abs = 100.0f,
                           .massive_ratio = 1000.0f,
                           .calib_len = 2048,
                           .seed = 0};
}

/* Y = X R in row panels, so a large X needs no second full-size buffer. */
#define PANEL 4096

/* sum_i w_i |Q(y_i) - y_i|^2 over one panel of Y (quantized in b). */
static double panel_loss(const float *y, float *b, const float *w, int64_t rows, int64_t n, int bits, float clip) {
    memcpy(b, y, (size_t)(rows * n) * sizeof *b);
    rq_actq_tokens(b, (int)rows, (int)n, bits, clip, false);
    double s = 0;
    for (int64_t i = 0; i < rows; i++) {
        double r = 0;
        for (int64_t j = 0; j < n; j++) {
            double d = (double)b[i * n + j] - y[i * n + j];
            r += d * d;
        }
        s += (w ? w[i] : 1.0) * r;
    }
    return s;
}

double rq_dfrot_loss(const float *X, const float *w, int64_t rows, int64_t n, const float *R, int a_bits,
                     float a_clip) {
    float *y = rq_malloc((size_t)(PANEL * n) * sizeof *y), *b = rq_malloc((size_t)(PANEL * n) * sizeof *b);
    double s = 0;
    for (int64_t r0 = 0; r0 < rows; r0 += PANEL) {
        int64_t m = rows - r0 < PANEL ? rows - r0 : PANEL;
        rq_sgemm(CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)n, 1.0f, X + r0 * n, (int)n, R, (int)n, 0.0f, y,
                 (int)n);
        s += panel_loss(y, b, w ? w + r0 : NULL, m, n, a_bits, a_clip);
    }
    free(y);
    free(b);
    return s;
}

/* sum_i w_i |x_i R - b_i|^2 = sum w |x_i|^2 + sum w |b_i|^2 - 2 tr(R^T M), M = X^T W B */
static double procrustes_obj(double xx, double bb, const float *M, const float *R, int64_t n) {
    double t = 0;
    for (int64_t i = 0; i < n * n; i++)
        t += (double)M[i] * R[i];
    return xx + bb - 2.0 * t;
}

int rq_dfrot_step(const float *X, const float *w, int64_t rows, int64_t n, const float *R, int a_bits, float a_clip,
                  float *R_new, double *obj_before, double *obj_after, double *loss) {
    float *y = rq_malloc((size_t)(PANEL * n) * sizeof *y), *b = rq_malloc((size_t)(PANEL * n) * sizeof *b);
    float *M = rq_calloc((size_t)(n * n), sizeof *M);
    double xx = 0, bb = 0, ls = 0;
    for (int64_t r0 = 0; r0 < rows; r0 += PANEL) {
        int64_t m = rows - r0 < PANEL ? rows - r0 : PANEL;
        const float *xp = X + r0 * n;
        rq_sgemm(CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)n, 1.0f, xp, (int)n, R, (int)n, 0.0f, y, (int)n);
        ls += panel_loss(y, b, w ? w + r0 : NULL, m, n, a_bits, a_clip); /* leaves B = Q(X R) in b */
        for (int64_t i = 0; i < m; i++) {
            double wi = w ? w[r0 + i] : 1.0, sx = 0, sb = 0;
            for (int64_t j = 0; j < n; j++) {
                sx += (double)xp[i * n + j] * xp[i * n + j];
                sb += (double)b[i * n + j] * b[i * n + j];
                b[i * n + j] *= (float)wi; /* W B */
            }
            xx += wi * sx;
            bb += wi * sb;
        }
        rq_sgemm(CblasTrans, CblasNoTrans, (int)n, (int)n, (int)m, 1.0f, xp, (int)n, b, (int)n, 1.0f, M, (int)n);
    }
    free(y);
    free(b);
    if (loss) *loss = ls; /* the same sums, in the same order, as rq_dfrot_loss at R */
    *obj_before = procrustes_obj(xx, bb, M, R, n);
    /* M = U S V^T (row-major LAPACK layout) */
    float *U = rq_malloc((size_t)(n * n) * sizeof *U), *VT = rq_malloc((size_t)(n * n) * sizeof *VT);
    float *S = rq_malloc((size_t)n * sizeof *S), *sup = rq_malloc((size_t)n * sizeof *sup);
    float *A = rq_malloc((size_t)(n * n) * sizeof *A);
    memcpy(A, M, (size_t)(n * n) * sizeof *A);
    rq_blas_single(); /* LAPACK on one OpenBLAS thread: the same bits at any -t */
    lapack_int info = LAPACKE_sgesvd(LAPACK_ROW_MAJOR, 'A', 'A', (lapack_int)n, (lapack_int)n, A, (lapack_int)n, S, U,
                                     (lapack_int)n, VT, (lapack_int)n, sup);
    int rc = 0;
    if (info != 0) {
        rc = rq_fail("dfrot: the SVD of the %lld x %lld Procrustes matrix did not converge (info %d)", (long long)n,
                     (long long)n, (int)info);
    } else {
        rq_sgemm(CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0f, U, (int)n, VT, (int)n, 0.0f, R_new, (int)n);
        *obj_after = procrustes_obj(xx, bb, M, R_new, n);
    }
    free(U);
    free(VT);
    free(S);
    free(sup);
    free(A);
    free(M);
    return rc;
}

int rq_dfrot_fit(const float *X, const float *w, int64_t rows, int64_t n, const rq_dfrot_opts *o, float *R_out,
                 rq_dfrot_report *rep) {
    if (o->iters < 0 || !(o->gamma >= 0) || o->a_bits < 2 || o->a_bits > 16 || !(o->a_clip > 0 && o->a_clip <= 1))
        return rq_fail("dfrot: iters %d, gamma %g, a_bits %d, a_clip %g: need iters >= 0, gamma >= 0, "
                       "2 <= a_bits <= 16, 0 < a_clip <= 1",
                       o->iters, o->gamma, o->a_bits, o->a_clip);
    double t0 = rq_time();
    float *R = rq_calloc((size_t)(n * n), sizeof *R), *Rn = rq_malloc((size_t)(n * n) * sizeof *Rn);
    for (int64_t i = 0; i < n; i++)
        R[i * n + i] = 1.0f;
    /* iterate it's loss comes out of the step that starts from it, so X R is
     * computed once per iteration; only the last iterate needs its own pass */
    double best = 0;
    for (int it = 0;; it++) {
        bool last = it == o->iters;
        double loss, before = 0, after = 0;
        if (last)
            loss = rq_dfrot_loss(X, w, rows, n, R, o->a_bits, o->a_clip);
        else if (rq_dfrot_step(X, w, rows, n, R, o->a_bits, o->a_clip, Rn, &before, &after, &loss)) {
            free(R);
            free(Rn);
            return -1;
        }
        if (it == 0 || loss < best) {
            best = loss;
            rep->best_iter = it;
            memcpy(R_out, R, (size_t)(n * n) * sizeof *R);
        }
        if (it == 0) rep->loss_start = loss;
        if (o->verbose && it > 0)
            fprintf(stderr, "dfrot: iter %3d  loss %.6g (start %.6g, best %.6g at %d)\n", it, loss, rep->loss_start,
                    best, rep->best_iter);
        if (o->verbose && !last) fprintf(stderr, "dfrot: procrustes step %d: %.6g -> %.6g\n", it + 1, before, after);
        if (last) break;
        float *t = R;
        R = Rn;
        Rn = t;
    }
    rep->loss_best = best;
    rep->rows = rows;
    rep->seconds = rq_time() - t0;
    free(R);
    free(Rn);
    return 0;
}

/* ---- on a model ---- */

typedef struct {
    float *X; /* [cap, n] collected rows */
    float *w;
    int64_t rows, cap, n;
    const uint8_t *massive; /* per token of the running window, for the running layer */
    float w_massive;
} collect;

static void hook_collect(void *ctx, int layer, rq_hook_point p, const float *x, int n, int cols) {
    (void)layer;
    collect *c = ctx;
    if ((p != RQ_HOOK_ATTN_IN && p != RQ_HOOK_FFN_IN) || cols != c->n) return;
    for (int t = 0; t < n && c->rows < c->cap; t++) {
        memcpy(c->X + c->rows * c->n, x + (size_t)t * cols, (size_t)cols * sizeof(float));
        c->w[c->rows++] = c->massive[t] ? c->w_massive : 1.0f;
    }
}

/* Flag the tokens of x[n, E] whose largest |x| passes both thresholds, the
 * median taken over a strided sample of the window's |x|. Returns the count. */
static int flag_massive(const float *x, int n, int E, float abs_thr, float ratio, uint8_t *flag) {
    int64_t total = (int64_t)n * E, step = total / 65536 + 1, m = 0;
    float *s = rq_malloc((size_t)(total / step + 1) * sizeof *s);
    for (int64_t i = 0; i < total; i += step)
        s[m++] = fabsf(x[i]);
    qsort(s, (size_t)m, sizeof *s, rq_cmp_float);
    float med = s[m / 2];
    free(s);
    int cnt = 0;
    for (int t = 0; t < n; t++) {
        float mx = 0;
        for (int j = 0; j < E; j++)
            mx = fmaxf(mx, fabsf(x[(size_t)t * E + j]));
        flag[t] = mx > abs_thr && mx > ratio * med;
        cnt += flag[t];
    }
    return cnt;
}

int rq_dfrot_model(const char *model, const char *calib_path, const char *out, int r2, int r3, int r4,
                   const rq_dfrot_opts *o, rq_dfrot_report *rep) {
    memset(rep, 0, sizeof *rep);
    double t0 = rq_time();
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.hadamard.tmp", out);
    rq_rot_opts h = {RQ_ORTH_HADAMARD, RQ_ROT_NONE, RQ_ROT_NONE, RQ_ROT_NONE, o->seed, NULL, NULL, NULL};
    if (o->verbose) fprintf(stderr, "dfrot: folding norms and a Hadamard R1 into %s\n", tmp);
    if (rq_rotate_file(model, tmp, &h, false)) return -1;
    rq_model *m = NULL;
    int rc = -1;
    rq_calib cal = {0};
    bool have_cal = false;
    collect c = {0};
    float *x = NULL, *R = NULL, *H = NULL, *R1 = NULL;
    uint8_t *flag = NULL;
    rq_fwd *f = NULL;
    if (rq_model_load(tmp, &m)) goto done;
    unlink(tmp);
    const int E = m->cfg.n_embd, L = o->calib_len;
    if (!m->tok) {
        rq_fail("dfrot: %s carries no tokenizer to read the calibration text with", model);
        goto done;
    }
    if (rq_calib_load(calib_path, m->tok, 1, L, o->seed, &cal)) goto done;
    have_cal = true;
    c.n = E;
    c.cap = (int64_t)m->cfg.n_layer * 2 * L;
    c.X = rq_malloc((size_t)(c.cap * E) * sizeof(float));
    c.w = rq_malloc((size_t)c.cap * sizeof(float));
    c.w_massive = o->gamma * o->gamma;
    flag = rq_calloc((size_t)L, 1);
    c.massive = flag;
    x = rq_malloc((size_t)L * E * sizeof(float));
    for (int t = 0; t < L; t++)
        memcpy(x + (size_t)t * E, m->tok_embd + (size_t)cal.tokens[t] * E, (size_t)E * sizeof(float));
    f = rq_fwd_new(m, L);
    if (!f) goto done;
    /* massive activations live in channels of the original basis: undo the Hadamard to find them */
    rq_orth *hq0 = rq_orth_new(E, RQ_ORTH_HADAMARD, rq_rot_stage_seed(o->seed, 1));
    if (!hq0) goto done;
    float *xo = rq_malloc((size_t)L * E * sizeof *xo);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        memcpy(xo, x, (size_t)L * E * sizeof *xo);
        rq_orth_apply_t(hq0, xo, L);
        rep->massive_rows += 2 * flag_massive(xo, L, E, o->massive_abs, o->massive_ratio, flag);
        rq_fwd_layer(f, &m->layers[l], l, x, L, hook_collect, &c);
    }
    free(xo);
    rq_orth_free(hq0);
    if (o->verbose)
        fprintf(stderr, "dfrot: %lld rows of %d (%d layers x 2 inputs x %d tokens), %lld from massive tokens\n",
                (long long)c.rows, E, m->cfg.n_layer, L, (long long)rep->massive_rows);
    R = rq_malloc((size_t)E * E * sizeof *R);
    if (rq_dfrot_fit(c.X, c.w, c.rows, E, o, R, rep)) goto done;
    rep->rows = c.rows;
    /* R1 = H R: the rows were collected in the Hadamard basis */
    rq_orth *hq = rq_orth_new(E, RQ_ORTH_HADAMARD, rq_rot_stage_seed(o->seed, 1));
    if (!hq) goto done;
    H = rq_malloc((size_t)E * E * sizeof *H);
    rq_orth_dense(hq, H);
    rq_orth_free(hq);
    R1 = rq_malloc((size_t)E * E * sizeof *R1);
    rq_sgemm(CblasNoTrans, CblasNoTrans, E, E, E, 1.0f, H, E, R, E, 0.0f, R1, E);
    char info[512];
    snprintf(info, sizeof info,
             "{\"method\":\"dfrot\",\"start\":\"hadamard\",\"iters\":%d,\"gamma\":%g,\"a_bits\":%d,\"a_clip\":%g,"
             "\"massive_abs\":%g,\"massive_ratio\":%g,\"calib_tokens\":%d,\"seed\":%llu,\"rows\":%lld,"
             "\"massive_rows\":%lld,\"loss_start\":%.9g,\"loss_best\":%.9g,\"best_iter\":%d}",
             o->iters, o->gamma, o->a_bits, o->a_clip, o->massive_abs, o->massive_ratio, L, (unsigned long long)o->seed,
             (long long)rep->rows, (long long)rep->massive_rows, rep->loss_start, rep->loss_best, rep->best_iter);
    rq_rot_opts fin = {RQ_ROT_NONE, r2, r3, r4, o->seed, R1, "dfrot", info};
    if (o->verbose) fprintf(stderr, "dfrot: writing %s\n", out);
    if (rq_rotate_file(model, out, &fin, false)) goto done;
    rc = 0;
done:
    unlink(tmp);
    rep->seconds = rq_time() - t0;
    rq_fwd_free(f);
    if (m) rq_model_free(m);
    if (have_cal) rq_calib_free(&cal);
    free(c.X);
    free(c.w);
    free(flag);
    free(x);
    free(R);
    free(H);
    free(R1);
    return rc;
}
