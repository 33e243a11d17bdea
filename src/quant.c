/* quant.c - round-to-nearest and GPTQ on the uniform grid. Both write the same
 * rq_qtensor through one per-value routine, so they differ only in error feedback. */
#include "quant.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "util.h"

rq_gptq_opts rq_gptq_opts_default(void) {
    rq_gptq_opts o = {.damp = 0.01f, .block = 128, .act_order = false, .static_groups = false};
    return o;
}

/* ---- pieces shared by RTN and GPTQ ---- */

/* One generator per row, so codes do not depend on how rows are split across
 * threads; the stream id keeps tensors that share a seed apart. */
static void row_rng(rq_rng *rng, uint64_t seed, uint64_t stream, int64_t row) {
    rq_rng_seed(rng, seed, stream * 1000003u + (uint64_t)row);
}

static int check_shape(const rq_grid *g, int64_t rows, int64_t cols) {
    if (rq_grid_check(g)) return -1;
    if (rows < 1 || cols < 1 || cols > INT32_MAX)
        return rq_fail("cannot quantize a [%lld, %lld] matrix: rows and cols must be in 1..2^31-1", (long long)rows,
                       (long long)cols);
    return 0;
}

static int64_t n_salient(const rq_grid *g, int64_t cols) {
    if (!g->binres) return 0;
    int64_t n = (int64_t)llround((double)g->salient_frac * (double)cols);
    return n < 1 ? 1 : n > cols ? cols : n;
}

typedef struct {
    double key;
    int64_t idx;
} keyed;

/* Decreasing key, ties by increasing index: a total order, so the result does
 * not depend on the qsort implementation. */
static int by_key_desc(const void *a, const void *b) {
    const keyed *x = a, *y = b;
    if (x->key != y->key) return x->key > y->key ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

static int by_int32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Indices of keys[0..n) by decreasing key. */
static void order_desc(const double *keys, int64_t n, int64_t *idx) {
    keyed *k = rq_malloc((size_t)n * sizeof *k);
    for (int64_t j = 0; j < n; j++)
        k[j] = (keyed){isnan(keys[j]) ? -INFINITY : keys[j], j};
    qsort(k, (size_t)n, sizeof *k, by_key_desc);
    for (int64_t j = 0; j < n; j++)
        idx[j] = k[j].idx;
    free(k);
}

/* binres: the t->n_sal columns of largest saliency into t->sal_cols (increasing),
 * and slot[c] = position of column c in sal_cols, or -1. */
static int64_t *pick_salient(rq_qtensor *t, const double *saliency) {
    int64_t *slot = rq_malloc((size_t)t->cols * sizeof *slot);
    for (int64_t c = 0; c < t->cols; c++)
        slot[c] = -1;
    if (t->n_sal == 0) return slot;
    int64_t *idx = rq_malloc((size_t)t->cols * sizeof *idx);
    order_desc(saliency, t->cols, idx);
    for (int64_t k = 0; k < t->n_sal; k++)
        t->sal_cols[k] = (int32_t)idx[k];
    qsort(t->sal_cols, (size_t)t->n_sal, sizeof *t->sal_cols, by_int32);
    for (int64_t k = 0; k < t->n_sal; k++)
        slot[t->sal_cols[k]] = k;
    free(idx);
    return slot;
}

static void group_params(const rq_qtensor *t, int64_t r, int64_t gi, float *s, float *m) {
    int64_t k = r * t->n_groups + gi;
    *s = rq_fp16_to_fp32(t->scale[k]);
    *m = t->min ? rq_fp16_to_fp32(t->min[k]) : 0.0f;
}

/* Fit group gi of row r from seg, which points at the group's first value. */
static void fit_group(rq_qtensor *t, int64_t r, int64_t gi, const float *seg) {
    int64_t k = r * t->n_groups + gi, c0 = gi * t->group;
    int64_t n = t->cols - c0 < t->group ? t->cols - c0 : t->group;
    uint16_t m = 0;
    rq_grid_fit(&t->grid, seg, NULL, n, &t->scale[k], &m);
    if (t->min) t->min[k] = m;
}

/* binres: row r's residual scale, mean |w - base(w)| over the salient columns of
 * wrow (natural order). The base is the nearest level, so the scale does not hang
 * on random draws and RTN and GPTQ define it the same way. */
static void fit_rscale(rq_qtensor *t, int64_t r, const float *wrow) {
    rq_grid near = t->grid;
    near.round = RQ_ROUND_NEAREST;
    near.noise = 0.0f;
    double acc = 0;
    for (int64_t k = 0; k < t->n_sal; k++) {
        int64_t c = t->sal_cols[k];
        float s, m;
        group_params(t, r, c / t->group, &s, &m);
        float v = rq_grid_value(&near, s, m, rq_grid_code(&near, s, m, wrow[c], NULL));
        acc += fabs((double)wrow[c] - v);
    }
    t->rscale[r] = rq_fp32_to_fp16((float)(acc / (double)t->n_sal));
}

/* Quantize w into (r, c) with its group's stored parameters (and the residual bit
 * when the column is salient, slot >= 0); returns the value rq_qtensor_dequant
 * will give, computed with the same float operations. */
static float quant_one(rq_qtensor *t, int64_t r, int64_t c, int64_t slot, float w, rq_rng *rng) {
    float s, m;
    group_params(t, r, c / t->group, &s, &m);
    int q = rq_grid_code(&t->grid, s, m, w, rng);
    t->q[r * t->cols + c] = (uint8_t)q;
    float v = rq_grid_value(&t->grid, s, m, q);
    if (slot >= 0) {
        float rs = rq_fp16_to_fp32(t->rscale[r]);
        int bit = w - v >= 0.0f;
        t->rq[r * t->n_sal + slot] = (uint8_t)bit;
        v += bit ? rs : -rs;
    }
    return v;
}

/* ---- RTN ---- */

int rq_rtn(const rq_grid *g, const float *w, int64_t rows, int64_t cols, uint64_t seed, uint64_t stream,
           rq_qtensor *out) {
    memset(out, 0, sizeof *out);
    if (check_shape(g, rows, cols)) return rq_fail_ctx("rtn");
    rq_qtensor_alloc(out, g, rows, cols, n_salient(g, cols));
    /* without a Hessian, a column's saliency is its squared norm */
    double *sal = rq_calloc((size_t)cols, sizeof *sal);
    if (out->n_sal)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++)
                sal[c] += (double)w[r * cols + c] * w[r * cols + c];
    int64_t *slot = pick_salient(out, sal);
    for (int64_t r = 0; r < rows; r++) {
        const float *wr = w + r * cols;
        for (int64_t gi = 0; gi < out->n_groups; gi++)
            fit_group(out, r, gi, wr + gi * out->group);
        if (out->n_sal) fit_rscale(out, r, wr);
        rq_rng rng;
        row_rng(&rng, seed, stream, r);
        for (int64_t c = 0; c < cols; c++)
            quant_one(out, r, c, slot[c], wr[c], &rng);
    }
    free(slot);
    free(sal);
    return 0;
}

/* ---- GPTQ: Hessian accumulation ---- */

struct rq_gptq {
    int64_t cols, n;
    float *H;      /* [cols, cols] running 2/n * sum x x^T; the upper triangle is current */
    bool mirrored; /* the lower triangle matches the upper one */
    /* With keep, the last inverse factor and column order computed from H, with the
     * damping and act-order they were made with: the layers that share an input, and
     * the rounds of a replicated fit, quantize against the same factor. Not part of
     * the accumulator's value (a const rq_gptq may fill it); dropped by add_batch. */
    bool keep; /* rq_gptq_keep_factor: off by default (n^2 floats: 321 MB at Qwen-1.5B's n_ff) */
    float *U;
    int64_t *perm;
    float u_damp;
    bool u_act;
};

rq_gptq *rq_gptq_new(int64_t cols) {
    rq_gptq *h = rq_calloc(1, sizeof *h);
    h->cols = cols;
    h->H = rq_calloc((size_t)(cols * cols), sizeof *h->H);
    return h;
}

static void drop_factor(rq_gptq *h) {
    free(h->U);
    free(h->perm);
    h->U = NULL;
    h->perm = NULL;
}

void rq_gptq_keep_factor(rq_gptq *h, bool keep) {
    h->keep = keep;
    if (!keep) drop_factor(h);
}

bool rq_gptq_keeps_factor(const rq_gptq *h) { return h->keep; }

void rq_gptq_free(rq_gptq *h) {
    if (!h) return;
    drop_factor(h);
    free(h->H);
    free(h);
}

/* A running mean, as the original keeps it, so H stays readable between batches
 * and no large sum builds up in float. */
void rq_gptq_add_batch(rq_gptq *h, const float *x, int64_t n) {
    if (n <= 0) return;
    drop_factor(h);
    int64_t c = h->cols, tot = h->n + n;
    float alpha = (float)(2.0 / (double)tot), beta = (float)((double)h->n / (double)tot);
    rq_ssyrk_upper_t((int)c, (int)n, alpha, x, (int)c, beta, h->H, (int)c);
    h->n = tot;
    h->mirrored = false; /* syrk writes the upper triangle; mirrored once, when read */
}

/* Copy the upper triangle of a[n, n] into b's both triangles (a == b allowed),
 * in tiles so that the transposed reads stay in cache. */
static void mirror_upper(const float *a, float *b, int64_t n) {
    enum { T = 64 };
    for (int64_t i0 = 0; i0 < n; i0 += T)
        for (int64_t j0 = i0; j0 < n; j0 += T)
            for (int64_t i = i0; i < i0 + T && i < n; i++)
                for (int64_t j = j0 > i ? j0 : i; j < j0 + T && j < n; j++) {
                    float v = a[i * n + j];
                    b[i * n + j] = v;
                    b[j * n + i] = v;
                }
}

int64_t rq_gptq_count(const rq_gptq *h) { return h->n; }
const float *rq_gptq_hessian(rq_gptq *h) {
    if (!h->mirrored) mirror_upper(h->H, h->H, h->cols);
    h->mirrored = true;
    return h->H;
}

/* ---- GPTQ: quantization ---- */

/* Replace the damped Hessian H[n, n] (both triangles) by the upper Cholesky
 * factor U of its inverse (H^-1 = U^T U), which is what the error feedback needs,
 * with one factorization and one triangular inverse. With J the order reversal,
 * J H J = L L^T gives H^-1 = (J L^-1 J)^T (J L^-1 J), and J L^-1 J is upper.
 * Reversing a row-major square array is J H J. On a row-major array LAPACK's
 * column-major 'L' works on the row-major upper triangle (the transpose); the
 * other triangle is left stale and never read by the caller. */
static void reverse(float *a, int64_t len) {
    for (int64_t i = 0, j = len - 1; i < j; i++, j--) {
        float t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static int inverse_factor(float *H, int64_t n, float damp) {
    lapack_int ln = (lapack_int)n;
    reverse(H, n * n);
    rq_blas_single(); /* LAPACK on one OpenBLAS thread: the same bits at any -t */
    lapack_int info = LAPACKE_spotrf(LAPACK_COL_MAJOR, 'L', ln, H, ln);
    if (info != 0)
        return rq_fail("the damped Hessian is not positive definite (Cholesky stopped at column %lld of %lld); "
                       "raise damp (now %g), e.g. to 0.1, or add more calibration rows",
                       (long long)(n - info + 1), (long long)n, damp);
    /* row-major upper now holds R = L^T; strtri turns it into R^-1 = L^-T */
    info = LAPACKE_strtri(LAPACK_COL_MAJOR, 'L', 'N', ln, H, ln);
    if (info == 0) {
        /* U[i][j] = L^-1[n-1-i][n-1-j] = R^-1[n-1-j][n-1-i]: reverse, then transpose into the upper triangle */
        reverse(H, n * n);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = i + 1; j < n; j++)
                H[i * n + j] = H[j * n + i];
    }
    for (int64_t j = 0; info == 0 && j < n; j++)
        if (!(H[j * n + j] > 0.0f && isfinite(H[j * n + j]))) info = (lapack_int)(j + 1);
    if (info != 0)
        return rq_fail("the inverse of the damped Hessian could not be factored in float (column %d of %lld): "
                       "it is too ill-conditioned; raise damp (now %g), e.g. to 0.1",
                       (int)info, (long long)n, damp);
    return 0;
}

/* The end of the block that starts at i1. When groups are fitted during the loop,
 * a block also ends where a group starts that would run past it, so that the
 * group's columns have all their error feedback applied when it is fitted. */
static int64_t block_end(int64_t i1, int64_t block, int64_t n, int64_t group, bool refit) {
    int64_t i2 = i1 + block < n ? i1 + block : n;
    if (refit && i2 < n) {
        int64_t gs = (i2 - 1) / group * group;
        if (gs > i1 && gs + group > i2) i2 = gs;
    }
    return i2;
}

/* W[rows, n] <- W[:, perm]. */
static void permute_cols(float **W, const int64_t *perm, int64_t rows, int64_t n) {
    float *w2 = rq_malloc((size_t)(rows * n) * sizeof *w2);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++)
            w2[r * n + j] = (*W)[r * n + perm[j]];
    free(*W);
    *W = w2;
}

/* W[rows, n] <- W[:, perm]; H[n, n] <- H[perm][:, perm]. */
static void permute(float **W, float **H, const int64_t *perm, int64_t rows, int64_t n) {
    permute_cols(W, perm, rows, n);
    float *h2 = rq_malloc((size_t)(n * n) * sizeof *h2);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            h2[i * n + j] = (*H)[perm[i] * n + perm[j]];
    free(*H);
    *H = h2;
}

/* The GPTQ column loop on W[rows, n] (columns in loop order, perm[j] = stored
 * column) with U the upper Cholesky factor of the damped inverse Hessian: quantize
 * column j, scale its error by U[j][j], spread it over the rest of the block at
 * once and over later columns lazily, one sgemm per block. refit: fit each group
 * when the loop reaches its first column (natural order), from updated weights. */
typedef struct {
    rq_qtensor *out;
    float *W, *err;
    const float *U;
    const int64_t *perm, *slot;
    rq_rng *rng;
    int64_t i1, i2, B, cols;
    bool refit;
    rq_gptq_decoder dec; /* when set, picks each code instead of out's grid */
    void *dctx;
} gptq_block;

/* Rows are independent within a block: each row's feedback touches only itself,
 * so the rows of one block split across threads with the same result. */
static void gptq_block_rows(void *ctx, int64_t r0, int64_t r1) {
    const gptq_block *b = ctx;
    const int64_t n = b->cols, G = b->out ? b->out->group : 1;
    for (int64_t r = r0; r < r1; r++) {
        float *wr = b->W + r * n, *er = b->err + r * b->B;
        for (int64_t j = b->i1; j < b->i2; j++) {
            float v;
            if (b->dec) {
                v = b->dec(b->dctx, r, b->perm[j], wr[j]);
            } else {
                if (b->refit && j % G == 0) fit_group(b->out, r, j / G, wr + j);
                v = quant_one(b->out, r, b->perm[j], b->slot[b->perm[j]], wr[j], &b->rng[r]);
            }
            float e = (wr[j] - v) / b->U[j * n + j];
            er[j - b->i1] = e;
            const float *u = b->U + j * n;
            for (int64_t k = j + 1; k < b->i2; k++)
                wr[k] -= e * u[k];
        }
    }
}

static void gptq_columns(rq_qtensor *out, int64_t rows, int64_t n, float *W, const float *U, const int64_t *perm,
                         const int64_t *slot, int64_t B, bool refit, uint64_t seed, uint64_t stream,
                         rq_gptq_decoder dec, void *dctx) {
    const int64_t G = out ? out->group : 1;
    float *err = rq_malloc((size_t)(rows * B) * sizeof *err); /* [rows, B] scaled errors of a block */
    rq_rng *rng = rq_malloc((size_t)rows * sizeof *rng);
    for (int64_t r = 0; r < rows; r++)
        row_rng(&rng[r], seed, stream, r);
    for (int64_t i1 = 0, i2; i1 < n; i1 = i2) {
        i2 = block_end(i1, B, n, G, refit);
        gptq_block b = {out, W, err, U, perm, slot, rng, i1, i2, B, n, refit, dec, dctx};
        rq_parallel_for(rows, gptq_block_rows, &b);
        if (i2 < n) /* lazy update of the columns after the block */
            rq_sgemm(CblasNoTrans, CblasNoTrans, (int)rows, (int)(n - i2), (int)(i2 - i1), -1.0f, err, (int)B,
                     U + i1 * n + i2, (int)n, 1.0f, W + i2, (int)n);
    }
    free(rng);
    free(err);
}

/* The checks and copies both GPTQ entry points start with: *Hp = mirrored copy
 * of the Hessian, *Wp = copy of w with the weights of always-zero inputs zeroed
 * (they do not matter to the output; their column is made benign). */
static int gptq_setup(const rq_gptq *h, const rq_gptq_opts *o, const float *w, int64_t rows, int64_t n, float **Wp,
                      float **Hp) {
    if (!h) return rq_fail("gptq: no Hessian accumulator was given");
    if (n != h->cols)
        return rq_fail("gptq: the weight has %lld columns but the Hessian is for %lld inputs", (long long)n,
                       (long long)h->cols);
    if (h->n == 0) return rq_fail("gptq: no calibration rows were added (call rq_gptq_add_batch first)");
    if (!(o->damp >= 0.0f && isfinite(o->damp))) return rq_fail("gptq: damp = %g must be >= 0", o->damp);
    if (o->block < 1) return rq_fail("gptq: block = %d must be at least 1", o->block);
    float *H = rq_malloc((size_t)(n * n) * sizeof *H);
    mirror_upper(h->H, H, n);
    for (int64_t i = 0; i < n * n; i++)
        if (!isfinite(H[i])) {
            free(H);
            return rq_fail("gptq: the Hessian has non-finite entries (NaN or Inf in the calibration inputs); "
                           "no damping can repair that: check the activations fed to rq_gptq_add_batch");
        }
    float *W = rq_malloc((size_t)(rows * n) * sizeof *W);
    memcpy(W, w, (size_t)(rows * n) * sizeof *W);
    for (int64_t j = 0; j < n; j++)
        if (H[j * n + j] == 0.0f) {
            H[j * n + j] = 1.0f;
            for (int64_t r = 0; r < rows; r++)
                W[r * n + j] = 0.0f;
        }
    *Wp = W;
    *Hp = H;
    return 0;
}

/* Act-order (perm[] by decreasing diag H, W and H permuted; identity otherwise),
 * damping, and H replaced by the inverse factor U. keys: n doubles of scratch. */
static int gptq_order_factor(const rq_gptq_opts *o, float **W, float **H, int64_t rows, int64_t n, int64_t *perm,
                             double *keys) {
    for (int64_t j = 0; j < n; j++)
        perm[j] = j;
    if (o->act_order) {
        for (int64_t j = 0; j < n; j++)
            keys[j] = (*H)[j * n + j];
        order_desc(keys, n, perm);
        permute(W, H, perm, rows, n);
    }
    double mean = 0;
    for (int64_t j = 0; j < n; j++)
        mean += (*H)[j * n + j];
    float add = (float)((double)o->damp * mean / (double)n);
    for (int64_t j = 0; j < n; j++)
        (*H)[j * n + j] += add;
    return inverse_factor(*H, n, o->damp);
}

/* gptq_order_factor through h's cache: the same bits as computing it again
 * (LAPACK runs on one thread), without the O(n^3) factorization. */
static int order_factor_cached(const rq_gptq *hc, const rq_gptq_opts *o, float **W, float **H, int64_t rows, int64_t n,
                               int64_t *perm, double *keys) {
    rq_gptq *h = (rq_gptq *)hc; /* only the cache changes; h itself is never a const object */
    if (!h->keep) return gptq_order_factor(o, W, H, rows, n, perm, keys);
    if (h->U && h->u_damp == o->damp && h->u_act == o->act_order) {
        memcpy(perm, h->perm, (size_t)n * sizeof *perm);
        if (o->act_order) permute_cols(W, perm, rows, n);
        memcpy(*H, h->U, (size_t)(n * n) * sizeof **H);
        return 0;
    }
    int rc = gptq_order_factor(o, W, H, rows, n, perm, keys);
    if (rc == 0) {
        drop_factor(h);
        h->U = rq_malloc((size_t)(n * n) * sizeof *h->U);
        h->perm = rq_malloc((size_t)n * sizeof *h->perm);
        memcpy(h->U, *H, (size_t)(n * n) * sizeof *h->U);
        memcpy(h->perm, perm, (size_t)n * sizeof *h->perm);
        h->u_damp = o->damp;
        h->u_act = o->act_order;
    }
    return rc;
}

int rq_gptq_quantize(const rq_gptq *h, const rq_grid *g, const rq_gptq_opts *o, const float *w, int64_t rows,
                     int64_t cols, uint64_t seed, uint64_t stream, rq_qtensor *out) {
    memset(out, 0, sizeof *out);
    if (check_shape(g, rows, cols)) return rq_fail_ctx("gptq");
    const int64_t n = cols;
    float *W, *H;
    if (gptq_setup(h, o, w, rows, n, &W, &H)) return -1;
    rq_qtensor_alloc(out, g, rows, cols, n_salient(g, cols));
    /* Act-order with groups forces static groups, so each group stays contiguous
     * in the stored column order (the original's static_groups + act_order). With
     * a single group per row the two are the same: nothing is updated before it. */
    const bool stat = o->static_groups || o->act_order;
    if (stat || out->n_sal)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t gi = 0; gi < out->n_groups; gi++)
                fit_group(out, r, gi, W + r * n + gi * out->group);
    double *sal = rq_calloc((size_t)n, sizeof *sal);
    if (out->n_sal) {
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < n; c++)
                sal[c] += (double)W[r * n + c] * W[r * n + c];
        for (int64_t c = 0; c < n; c++)
            sal[c] *= H[c * n + c];
    }
    int64_t *slot = pick_salient(out, sal);
    /* residual scales come from the weights before any error feedback */
    for (int64_t r = 0; r < rows && out->n_sal; r++)
        fit_rscale(out, r, W + r * n);
    int64_t *perm = rq_malloc((size_t)n * sizeof *perm);
    int rc = order_factor_cached(h, o, &W, &H, rows, n, perm, sal); /* saliency is no longer needed */
    if (rc == 0) {
        gptq_columns(out, rows, n, W, H, perm, slot, o->block, !stat, seed, stream, NULL, NULL);
    } else {
        rq_fail_ctx("gptq");
        rq_qtensor_free(out);
    }
    free(perm);
    free(slot);
    free(sal);
    free(W);
    free(H);
    return rc;
}

int rq_gptq_quantize_dec(const rq_gptq *h, const rq_gptq_opts *o, const float *w, int64_t rows, int64_t cols,
                         rq_gptq_decoder dec, void *ctx) {
    if (rows < 1 || cols < 1)
        return rq_fail("gptq: cannot quantize a [%lld, %lld] matrix", (long long)rows, (long long)cols);
    float *W, *H;
    if (gptq_setup(h, o, w, rows, cols, &W, &H)) return -1;
    int64_t *perm = rq_malloc((size_t)cols * sizeof *perm);
    double *keys = rq_malloc((size_t)cols * sizeof *keys);
    int rc = order_factor_cached(h, o, &W, &H, rows, cols, perm, keys);
    if (rc == 0)
        gptq_columns(NULL, rows, cols, W, H, perm, NULL, o->block, false, 0, 0, dec, ctx);
    else
        rq_fail_ctx("gptq");
    free(keys);
    free(perm);
    free(W);
    free(H);
    return rc;
}

/* tr(D H D^T) / 2 in double, through dgemm on column panels of H so that neither
 * a double copy of H nor of D is ever whole in memory (H can be 8960^2). */
double rq_layer_error(const float *H, const float *w, const float *what, int64_t rows, int64_t cols) {
    /* E = D H in one float GEMM; the trace sum of D .* E in double */
    size_t n = (size_t)(rows * cols);
    float *d = rq_malloc(n * sizeof *d), *e = rq_malloc(n * sizeof *e);
    for (size_t i = 0; i < n; i++)
        d[i] = what[i] - w[i];
    rq_sgemm(CblasNoTrans, CblasNoTrans, (int)rows, (int)cols, (int)cols, 1.0f, d, (int)cols, H, (int)cols, 0.0f, e,
             (int)cols);
    double acc = 0;
    for (size_t i = 0; i < n; i++)
        acc += (double)d[i] * e[i];
    free(d);
    free(e);
    return acc / 2;
}
