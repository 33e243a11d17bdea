/* mlptrain.c - frozen-code training of a replicated MLP's factors (mlptrain.h):
 * forward and hand-written backward of the SwiGLU MLP (and optionally the output
 * projection and norm before it) with OpenBLAS, Adam on the
 * factors, held-out selection of the kept iterate. */
#include "mlptrain.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "grid.h"
#include "util.h"

rq_mlptrain_opts rq_mlptrain_default(void) {
    rq_mlptrain_opts o = {.steps = 100, .batch = 512, .eval_every = 10, .lr = 0.002f, .holdout = 0.125f, .seed = 0};
    return o;
}

int rq_mlptrain_check(const rq_mlptrain_opts *o) {
    if (o->steps < 0) return rq_fail("mlp_train.steps = %d must be >= 0", o->steps);
    if (o->batch < 1) return rq_fail("mlp_train.batch = %d must be >= 1", o->batch);
    if (o->eval_every < 1) return rq_fail("mlp_train.eval_every = %d must be >= 1", o->eval_every);
    if (!(o->lr > 0.0f) || !(o->lr <= 1.0f)) return rq_fail("mlp_train.lr = %g must be in (0, 1]", (double)o->lr);
    if (!(o->holdout > 0.0f) || !(o->holdout < 1.0f))
        return rq_fail("mlp_train.holdout = %g must be in (0, 1)", (double)o->holdout);
    return 0;
}

/* ---- the model: decoded paths, forward, backward ---- */

enum { MAT_O = 3 }; /* with a tail, the attention's output projection is matrix 3 */

typedef struct {
    rq_rep *m[4];
    int nm;       /* matrices: gate, up, down, and o with a tail */
    int K, paths; /* the MLP's; paths: K with combine 1, else 1 */
    int64_t E, F; /* model width, MLP width */
    int64_t rows[4], cols[4];
    float *qc[4];     /* codes minus the grid centre, [rows, cols] */
    rq_orth **rot[4]; /* [K] per matrix: replica k's input rotation (replica.h), NULL for none */
    const rq_orth *r4;
    const rq_mlp_tail *tail;
    int64_t nb;                       /* largest batch the buffers hold */
    float *W[4];                      /* decoded matrices of every path: W[j] + p * rows * cols */
    float *G, *U, *S;                 /* [paths, nb, F] */
    float *Y, *dY, *dS, *dW, *T, *Rt; /* Rt: a rotated replica's matrix or gradient */
    float *X, *H, *rs, *dX;           /* with a tail: the MLP's input, the residual it is normed from, 1/rms, dL/dX */
} net;

/* The replicas matrix j's path p sums: one replica per path, or all K. */
static void path_replicas(const net *n, int j, int p, int *k0, int *k1) {
    bool one = j != MAT_O && n->paths > 1;
    *k0 = one ? p : 0;
    *k1 = one ? p + 1 : n->m[j]->K;
}

static int mat_paths(const net *n, int j) { return j == MAT_O ? 1 : n->paths; }

typedef struct {
    const float *qc, *a, *b, *o;
    int64_t rows, cols;
    int k0, k1;           /* replicas k0..k1-1 summed */
    rq_orth *const *skip; /* replicas with a rotation are left out (added by decode_all) */
    float *W;
} decode_job;

static void decode_rows(void *ctx, int64_t lo, int64_t hi) {
    const decode_job *j = ctx;
    for (int64_t r = lo; r < hi; r++) {
        float *w = j->W + r * j->cols;
        const float *q = j->qc + r * j->cols;
        for (int64_t c = 0; c < j->cols; c++)
            w[c] = 0.0f;
        for (int k = j->k0; k < j->k1; k++) {
            if (j->skip && j->skip[k]) continue;
            float a = j->a[k * j->rows + r], o = j->o[k];
            const float *b = j->b + k * j->cols;
            for (int64_t c = 0; c < j->cols; c++)
                w[c] += a * b[c] * (q[c] + o);
        }
    }
}

/* Every path's matrices from the f32 factors a[j], b[j]; a rotated replica is
 * decoded alone, times U_k^T on the right, and added. */
static void decode_all(net *n, float *a[], float *b[]) {
    for (int j = 0; j < n->nm; j++)
        for (int p = 0; p < mat_paths(n, j); p++) {
            float *W = n->W[j] + p * n->rows[j] * n->cols[j];
            decode_job dj = {n->qc[j], a[j], b[j], n->m[j]->o, n->rows[j], n->cols[j], 0, 0, n->rot[j], W};
            path_replicas(n, j, p, &dj.k0, &dj.k1);
            rq_parallel_for(n->rows[j], decode_rows, &dj);
            int k0 = dj.k0, k1 = dj.k1;
            for (int k = k0; k < k1; k++) {
                if (!n->rot[j][k]) continue;
                decode_job one = {n->qc[j], a[j], b[j], n->m[j]->o, n->rows[j], n->cols[j], k, k + 1, NULL, n->Rt};
                rq_parallel_for(n->rows[j], decode_rows, &one);
                rq_orth_apply_t(n->rot[j][k], n->Rt, n->rows[j]);
                for (int64_t i = 0; i < n->rows[j] * n->cols[j]; i++)
                    W[i] += n->Rt[i];
            }
        }
}

static float sigmoid(float g) { return 1.0f / (1.0f + expf(-g)); }

/* With a tail: H = h0 + z Wo^T, X = rmsnorm(H) .* norm_w (as the forward pass
 * computes it), keeping 1/rms per token. */
static void tail_input(net *n, const float *z, const float *h0, int64_t nb) {
    const rq_mlp_tail *t = n->tail;
    const int64_t E = n->E;
    memcpy(n->H, h0, (size_t)(nb * E) * sizeof(float));
    rq_sgemm(CblasNoTrans, CblasTrans, (int)nb, (int)E, (int)t->D, 1.0f, z, (int)t->D, n->W[MAT_O], (int)t->D, 1.0f,
             n->H, (int)E);
    for (int64_t i = 0; i < nb; i++) {
        const float *h = n->H + i * E;
        double ss = 0;
        for (int64_t c = 0; c < E; c++)
            ss += (double)h[c] * h[c];
        n->rs[i] = 1.0f / sqrtf((float)(ss / (double)E) + t->eps);
        for (int64_t c = 0; c < E; c++)
            n->X[i * E + c] = h[c] * n->rs[i] * t->norm_w[c];
    }
}

/* Y[nb, E] = the MLP on x[nb, E] with the decoded matrices; keeps G, U, S. */
static void forward(net *n, const float *x, int64_t nb) {
    const int64_t E = n->E, F = n->F;
    for (int p = 0; p < n->paths; p++) {
        float *G = n->G + p * n->nb * F, *U = n->U + p * n->nb * F, *S = n->S + p * n->nb * F;
        const float *wg = n->W[0] + p * F * E, *wu = n->W[1] + p * F * E, *wd = n->W[2] + p * E * F;
        rq_sgemm(CblasNoTrans, CblasTrans, (int)nb, (int)F, (int)E, 1.0f, x, (int)E, wg, (int)E, 0.0f, G, (int)F);
        rq_sgemm(CblasNoTrans, CblasTrans, (int)nb, (int)F, (int)E, 1.0f, x, (int)E, wu, (int)E, 0.0f, U, (int)F);
        for (int64_t i = 0; i < nb * F; i++)
            S[i] = G[i] * sigmoid(G[i]) * U[i];
        if (n->r4) rq_orth_apply(n->r4, S, nb);
        rq_sgemm(CblasNoTrans, CblasTrans, (int)nb, (int)E, (int)F, 1.0f, S, (int)F, wd, (int)F, p ? 1.0f : 0.0f, n->Y,
                 (int)E);
    }
}

typedef struct {
    const float *dW, *qc, *o;
    int64_t cols;
    int k;
    float *T;
} tmul_job;

static void tmul_rows(void *ctx, int64_t lo, int64_t hi) {
    const tmul_job *j = ctx;
    float o = j->o[j->k];
    for (int64_t i = lo * j->cols; i < hi * j->cols; i++)
        j->T[i] = j->dW[i] * (j->qc[i] + o);
}

/* ga_k += (dW_k .* (qc + o_k)) b_k, gb_k += (dW_k .* (qc + o_k))^T a_k for the
 * replicas of path p, with dW_k = dW U_k for a rotated replica (its matrix is
 * M_k U_k^T) and dW otherwise. */
static void factor_grads(net *n, int j, int p, const float *dW, float *a, float *b, float *ga, float *gb) {
    int64_t R = n->rows[j], C = n->cols[j];
    int k0, k1;
    path_replicas(n, j, p, &k0, &k1);
    for (int k = k0; k < k1; k++) {
        const float *dWk = dW;
        if (n->rot[j][k]) {
            memcpy(n->Rt, dW, (size_t)(R * C) * sizeof *n->Rt);
            rq_orth_apply(n->rot[j][k], n->Rt, R);
            dWk = n->Rt;
        }
        tmul_job tj = {dWk, n->qc[j], n->m[j]->o, C, k, n->T};
        rq_parallel_for(R, tmul_rows, &tj);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)R, (int)C, 1.0f, n->T, (int)C, b + k * C, 1, 1.0f, ga + k * R, 1);
        cblas_sgemv(CblasRowMajor, CblasTrans, (int)R, (int)C, 1.0f, n->T, (int)C, a + k * R, 1, 1.0f, gb + k * C, 1);
    }
}

/* One batch: the MLP's inputs x, or with a tail the projection's inputs z and the residual h0. */
typedef struct {
    const float *x, *z, *h0;
} inputs;

static inputs inputs_at(const net *n, inputs in, int64_t t) {
    inputs r = {in.x ? in.x + t * n->E : NULL, in.z ? in.z + t * n->tail->D : NULL, in.h0 ? in.h0 + t * n->E : NULL};
    return r;
}

/* With a tail, dX (the MLP input's gradient) back through the norm and the
 * projection: dH = dY + d(norm)/dH^T dX, into dX; o's factor gradients from dH^T z. */
static void tail_backward(net *n, const float *z, int64_t nb, float *a, float *b, float *ga, float *gb) {
    const rq_mlp_tail *t = n->tail;
    const int64_t E = n->E;
    for (int64_t i = 0; i < nb; i++) {
        const float *h = n->H + i * E, *dy = n->dY + i * E;
        float *dx = n->dX + i * E, r = n->rs[i];
        double s = 0;
        for (int64_t c = 0; c < E; c++)
            s += (double)t->norm_w[c] * dx[c] * h[c];
        float k = (float)(s / (double)E) * r * r * r;
        for (int64_t c = 0; c < E; c++)
            dx[c] = dy[c] + r * t->norm_w[c] * dx[c] - k * h[c];
    }
    rq_sgemm(CblasTrans, CblasNoTrans, (int)E, (int)t->D, (int)nb, 1.0f, n->dX, (int)E, z, (int)t->D, 0.0f, n->dW,
             (int)t->D);
    factor_grads(n, MAT_O, 0, n->dW, a, b, ga, gb);
}

/* Loss sum_t ||Y_t - yref_t||^2 / nb on the batch; with ga, the gradients are
 * added into ga, gb (zeroed by the caller). The matrices must be decoded. */
static double batch_loss(net *n, inputs in, const float *yref, int64_t nb, float *a[], float *b[], float *ga[],
                         float *gb[]) {
    const int64_t E = n->E, F = n->F;
    const float *x = in.x;
    if (n->tail) {
        tail_input(n, in.z, in.h0, nb);
        x = n->X;
    }
    forward(n, x, nb);
    if (n->tail) /* the tail's output also carries the projection: Y += H - h0 */
        for (int64_t i = 0; i < nb * E; i++)
            n->Y[i] += n->H[i] - in.h0[i];
    double loss = 0;
    for (int64_t i = 0; i < nb * E; i++) {
        double d = (double)n->Y[i] - yref[i];
        loss += d * d;
        n->dY[i] = (float)(2.0 * d / (double)nb);
    }
    loss /= (double)nb;
    if (!ga) return loss;
    for (int p = 0; p < n->paths; p++) {
        float *G = n->G + p * n->nb * F, *U = n->U + p * n->nb * F, *S = n->S + p * n->nb * F;
        const float *wg = n->W[0] + p * F * E, *wu = n->W[1] + p * F * E, *wd = n->W[2] + p * E * F;
        /* down: dWd[E, F] = dY^T S, dS = dY Wd */
        rq_sgemm(CblasTrans, CblasNoTrans, (int)E, (int)F, (int)nb, 1.0f, n->dY, (int)E, S, (int)F, 0.0f, n->dW,
                 (int)F);
        factor_grads(n, 2, p, n->dW, a[2], b[2], ga[2], gb[2]);
        rq_sgemm(CblasNoTrans, CblasNoTrans, (int)nb, (int)F, (int)E, 1.0f, n->dY, (int)E, wd, (int)F, 0.0f, n->dS,
                 (int)F);
        if (n->r4) rq_orth_apply_t(n->r4, n->dS, nb);
        /* through silu(G) .* U: dG (into G) and dU (into U) */
        for (int64_t i = 0; i < nb * F; i++) {
            float g = G[i], s = sigmoid(g), ds = n->dS[i];
            float du = ds * g * s;
            G[i] = ds * U[i] * s * (1.0f + g * (1.0f - s));
            U[i] = du;
        }
        rq_sgemm(CblasTrans, CblasNoTrans, (int)F, (int)E, (int)nb, 1.0f, G, (int)F, x, (int)E, 0.0f, n->dW, (int)E);
        factor_grads(n, 0, p, n->dW, a[0], b[0], ga[0], gb[0]);
        rq_sgemm(CblasTrans, CblasNoTrans, (int)F, (int)E, (int)nb, 1.0f, U, (int)F, x, (int)E, 0.0f, n->dW, (int)E);
        factor_grads(n, 1, p, n->dW, a[1], b[1], ga[1], gb[1]);
        if (n->tail) { /* dX += dG Wg + dU Wu */
            rq_sgemm(CblasNoTrans, CblasNoTrans, (int)nb, (int)E, (int)F, 1.0f, G, (int)F, wg, (int)E, p ? 1.0f : 0.0f,
                     n->dX, (int)E);
            rq_sgemm(CblasNoTrans, CblasNoTrans, (int)nb, (int)E, (int)F, 1.0f, U, (int)F, wu, (int)E, 1.0f, n->dX,
                     (int)E);
        }
    }
    if (n->tail) tail_backward(n, in.z, nb, a[MAT_O], b[MAT_O], ga[MAT_O], gb[MAT_O]);
    return loss;
}

static int net_init(net *n, rq_rep *m[3], const rq_mlp_tail *tail, int64_t E, int64_t F, const rq_orth *r4,
                    int64_t nb) {
    memset(n, 0, sizeof *n);
    const int64_t D = tail ? tail->D : 0;
    const int64_t rows[4] = {F, F, E, E}, cols[4] = {E, E, F, D};
    n->nm = tail ? 4 : 3;
    for (int j = 0; j < 3; j++) {
        if (m[j]->rows != rows[j] || m[j]->cols != cols[j] || m[j]->K != m[0]->K || m[j]->combine != m[0]->combine)
            return rq_fail("MLP training: matrix %d is [%lld, %lld] K=%d combine %d; expected [%lld, %lld] with the K "
                           "and combine of the gate (%d, %d)",
                           j, (long long)m[j]->rows, (long long)m[j]->cols, m[j]->K, m[j]->combine, (long long)rows[j],
                           (long long)cols[j], m[0]->K, m[0]->combine);
        n->m[j] = m[j];
    }
    if (tail) {
        const rq_rep *o = tail->o;
        if (o->rows != E || o->cols != D || o->combine != RQ_REP_COMBINE_LINEAR || D < 1)
            return rq_fail("MLP training: the output projection is [%lld, %lld] combine %d; expected [%lld, %lld] with "
                           "its replicas summed (combine 0)",
                           (long long)o->rows, (long long)o->cols, o->combine, (long long)E, (long long)D);
        n->m[MAT_O] = tail->o;
    }
    for (int j = 0; j < n->nm; j++) {
        n->rows[j] = rows[j];
        n->cols[j] = cols[j];
    }
    n->K = m[0]->K;
    n->paths = m[0]->combine == RQ_REP_COMBINE_MLP ? n->K : 1;
    n->E = E;
    n->F = F;
    n->r4 = r4;
    n->tail = tail;
    n->nb = nb;
    int64_t big = E * (F > D ? F : D);
    for (int j = 0; j < n->nm; j++) {
        int64_t sz = rows[j] * cols[j];
        float c = (float)((1 << n->m[j]->bits) - 1) * 0.5f;
        n->qc[j] = rq_malloc((size_t)sz * sizeof(float));
        for (int64_t i = 0; i < sz; i++)
            n->qc[j][i] = (float)n->m[j]->q[i] - c;
        n->W[j] = rq_malloc((size_t)(mat_paths(n, j) * sz) * sizeof(float));
        n->rot[j] = rq_calloc((size_t)n->m[j]->K, sizeof(rq_orth *));
        for (int k = 0; k < n->m[j]->K; k++)
            if (n->m[j]->rot_kind && n->m[j]->rot_kind[k] != RQ_REP_ROT_NONE) {
                n->rot[j][k] = rq_orth_new(cols[j], RQ_ORTH_RH, n->m[j]->rot_seed[k]);
                if (!n->rot[j][k]) return rq_fail_ctx("MLP training: matrix %d's replica %d", j, k);
            }
    }
    size_t pf = (size_t)(n->paths * nb * F) * sizeof(float), ne = (size_t)(nb * E) * sizeof(float);
    n->G = rq_malloc(pf);
    n->U = rq_malloc(pf);
    n->S = rq_malloc(pf);
    n->Y = rq_malloc(ne);
    n->dY = rq_malloc(ne);
    n->dS = rq_malloc((size_t)(nb * F) * sizeof(float));
    n->dW = rq_malloc((size_t)big * sizeof(float));
    n->T = rq_malloc((size_t)big * sizeof(float));
    n->Rt = rq_malloc((size_t)big * sizeof(float));
    if (tail) {
        n->X = rq_malloc(ne);
        n->H = rq_malloc(ne);
        n->dX = rq_malloc(ne);
        n->rs = rq_malloc((size_t)nb * sizeof(float));
    }
    return 0;
}

static void net_free(net *n) {
    for (int j = 0; j < 4; j++) {
        free(n->qc[j]);
        free(n->W[j]);
        for (int k = 0; n->rot[j] && k < n->m[j]->K; k++)
            rq_orth_free(n->rot[j][k]);
        free(n->rot[j]);
    }
    float *v[13] = {n->G, n->U, n->S, n->Y, n->dY, n->dS, n->dW, n->T, n->Rt, n->X, n->H, n->dX, n->rs};
    for (int i = 0; i < 13; i++)
        free(v[i]);
}

static inputs inputs_of(const float *x, const rq_mlp_tail *tail) {
    inputs in = {tail ? NULL : x, tail ? tail->z : NULL, tail ? tail->h0 : NULL};
    return in;
}

double rq_mlp_loss_grad(const float *x, int64_t nt, int64_t E, int64_t F, const float *yref, const rq_orth *r4,
                        rq_rep *m[3], const rq_mlp_tail *tail, float *a[], float *b[], float *ga[], float *gb[]) {
    net n;
    if (net_init(&n, m, tail, E, F, r4, nt)) {
        net_free(&n);
        return NAN;
    }
    decode_all(&n, a, b);
    double l = batch_loss(&n, inputs_of(x, tail), yref, nt, a, b, ga, gb);
    net_free(&n);
    return l;
}

/* ---- training ---- */

void rq_mlp_reference(const float *x, int64_t nt, int64_t E, int64_t F, const float *wg, const float *wu,
                      const float *wd, const rq_orth *r4, float *y) {
    const int64_t chunk = 512;
    float *G = rq_malloc((size_t)(chunk * F) * sizeof(float)), *U = rq_malloc((size_t)(chunk * F) * sizeof(float));
    for (int64_t t0 = 0; t0 < nt; t0 += chunk) {
        int64_t nb = nt - t0 < chunk ? nt - t0 : chunk;
        const float *xb = x + t0 * E;
        rq_sgemm(CblasNoTrans, CblasTrans, (int)nb, (int)F, (int)E, 1.0f, xb, (int)E, wg, (int)E, 0.0f, G, (int)F);
        rq_sgemm(CblasNoTrans, CblasTrans, (int)nb, (int)F, (int)E, 1.0f, xb, (int)E, wu, (int)E, 0.0f, U, (int)F);
        for (int64_t i = 0; i < nb * F; i++)
            G[i] = G[i] * sigmoid(G[i]) * U[i];
        if (r4) rq_orth_apply(r4, G, nb);
        rq_sgemm(CblasNoTrans, CblasTrans, (int)nb, (int)E, (int)F, 1.0f, G, (int)F, wd, (int)F, 0.0f, y + t0 * E,
                 (int)E);
    }
    free(G);
    free(U);
}

/* Mean held-out loss over tokens [t0, t1), the matrices decoded from a, b. */
static double heldout_loss(net *n, inputs in, const float *y, int64_t t0, int64_t t1, float *a[], float *b[]) {
    decode_all(n, a, b);
    double s = 0;
    for (int64_t t = t0; t < t1; t += n->nb) {
        int64_t nb = t1 - t < n->nb ? t1 - t : n->nb;
        s += batch_loss(n, inputs_at(n, in, t), y + t * n->E, nb, a, b, NULL, NULL) * (double)nb;
    }
    return s / (double)(t1 - t0);
}

static void round_f16(const float *src, int64_t n, float *dst) {
    for (int64_t i = 0; i < n; i++)
        dst[i] = rq_fp16_to_fp32(rq_fp32_to_fp16(src[i]));
}

static double rms(const float *v, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)v[i] * v[i];
    return n ? sqrt(s / (double)n) : 0;
}

/* One Adam step on v[n] with gradient g; moments m, s; bias corrections c1, c2. */
static void adam(float *v, const float *g, float *m, float *s, int64_t n, float lr, double c1, double c2) {
    for (int64_t i = 0; i < n; i++) {
        m[i] = 0.9f * m[i] + 0.1f * g[i];
        s[i] = 0.999f * s[i] + 0.001f * g[i] * g[i];
        double mh = m[i] / c1, sh = s[i] / c2;
        v[i] -= (float)(lr * mh / (sqrt(sh) + 1e-30));
    }
}

/* One matrix's factors during training: a [K * rows], b [K * cols] in f32, the
 * kept iterate (f16-rounded), the gradients, Adam's moments and step sizes, and
 * the f16-rounded copies evaluated on the held-out part. */
typedef struct {
    int64_t na, nb;
    float *a, *b, *keep_a, *keep_b, *ga, *gb, *ma, *sa, *mb, *sb, *ra, *rb;
    float lra, lrb;
} factors;

static void factors_init(factors *f, const rq_rep *m, int64_t rows, int64_t cols, float lr) {
    f->na = m->K * rows;
    f->nb = m->K * cols;
    float **va[6] = {&f->a, &f->keep_a, &f->ga, &f->ma, &f->sa, &f->ra};
    float **vb[6] = {&f->b, &f->keep_b, &f->gb, &f->mb, &f->sb, &f->rb};
    for (int i = 0; i < 6; i++) {
        *va[i] = rq_calloc((size_t)f->na, sizeof(float));
        *vb[i] = rq_calloc((size_t)f->nb, sizeof(float));
    }
    rq_fp16_to_fp32_n(m->a, f->na, f->a);
    rq_fp16_to_fp32_n(m->b, f->nb, f->b);
    memcpy(f->keep_a, f->a, (size_t)f->na * sizeof(float));
    memcpy(f->keep_b, f->b, (size_t)f->nb * sizeof(float));
    f->lra = lr * (float)rms(f->a, f->na);
    f->lrb = lr * (float)rms(f->b, f->nb);
}

static void factors_free(factors *f) {
    float *v[12] = {f->a, f->b, f->keep_a, f->keep_b, f->ga, f->gb, f->ma, f->sa, f->mb, f->sb, f->ra, f->rb};
    for (int i = 0; i < 12; i++)
        free(v[i]);
}

int rq_mlp_train(const float *x, int64_t nt, int64_t E, int64_t F, const float *y, const rq_orth *r4, rq_rep *m[3],
                 const rq_mlp_tail *tail, const rq_mlptrain_opts *o, rq_mlptrain_trace *tr) {
    double t_start = rq_time();
    memset(tr, 0, sizeof *tr);
    if (rq_mlptrain_check(o)) return -1;
    int64_t n_val = (int64_t)((double)nt * o->holdout), n_tr = nt - n_val;
    if (n_val < 1 || n_tr < 1)
        return rq_fail("MLP training: %lld tokens leave no %s part at holdout %g", (long long)nt,
                       n_val < 1 ? "held-out" : "training", (double)o->holdout);
    int64_t nb = o->batch < n_tr ? o->batch : n_tr;
    net n;
    if (net_init(&n, m, tail, E, F, r4, nb)) {
        net_free(&n);
        return -1;
    }
    const int nm = n.nm;
    inputs in = inputs_of(x, tail);
    double yy = 0;
    for (int64_t i = n_tr * E; i < nt * E; i++)
        yy += (double)y[i] * y[i];
    yy /= (double)n_val;
    if (!(yy > 0)) yy = 1;

    factors fs[4];
    float *a[4], *b[4], *ga[4], *gb[4], *ra[4], *rb[4];
    for (int j = 0; j < nm; j++) {
        factors_init(&fs[j], n.m[j], n.rows[j], n.cols[j], o->lr);
        a[j] = fs[j].a;
        b[j] = fs[j].b;
        ga[j] = fs[j].ga;
        gb[j] = fs[j].gb;
        ra[j] = fs[j].ra;
        rb[j] = fs[j].rb;
    }
    tr->val_start = tr->val_best = heldout_loss(&n, in, y, n_tr, nt, a, b) / yy;
    tr->best_step = 0;

    /* the batch: the MLP's inputs, or the tail's (z in xb, h0 in hb) */
    const int64_t xw = tail ? tail->D : E;
    float *xb = rq_malloc((size_t)(nb * xw) * sizeof(float)), *yb = rq_malloc((size_t)(nb * E) * sizeof(float));
    float *hb = tail ? rq_malloc((size_t)(nb * E) * sizeof(float)) : NULL;
    const float *xs = tail ? tail->z : x;
    inputs bin = {tail ? NULL : xb, tail ? xb : NULL, hb};
    rq_rng rng;
    rq_rng_seed(&rng, o->seed, 0x6d6c70747261696eull); /* "mlptrain" */
    double c1 = 1, c2 = 1;
    for (int step = 1; step <= o->steps; step++) {
        for (int64_t i = 0; i < nb; i++) {
            int64_t t = (int64_t)(rq_rng_next(&rng) % (uint64_t)n_tr);
            memcpy(xb + i * xw, xs + t * xw, (size_t)xw * sizeof(float));
            memcpy(yb + i * E, y + t * E, (size_t)E * sizeof(float));
            if (hb) memcpy(hb + i * E, tail->h0 + t * E, (size_t)E * sizeof(float));
        }
        for (int j = 0; j < nm; j++) {
            memset(fs[j].ga, 0, (size_t)fs[j].na * sizeof(float));
            memset(fs[j].gb, 0, (size_t)fs[j].nb * sizeof(float));
        }
        decode_all(&n, a, b);
        batch_loss(&n, bin, yb, nb, a, b, ga, gb);
        c1 *= 0.9;
        c2 *= 0.999;
        for (int j = 0; j < nm; j++) {
            factors *f = &fs[j];
            adam(f->a, f->ga, f->ma, f->sa, f->na, f->lra, 1 - c1, 1 - c2);
            adam(f->b, f->gb, f->mb, f->sb, f->nb, f->lrb, 1 - c1, 1 - c2);
        }
        if (step % o->eval_every == 0 || step == o->steps) {
            for (int j = 0; j < nm; j++) {
                round_f16(fs[j].a, fs[j].na, fs[j].ra);
                round_f16(fs[j].b, fs[j].nb, fs[j].rb);
            }
            double v = heldout_loss(&n, in, y, n_tr, nt, ra, rb) / yy;
            if (v < tr->val_best) {
                tr->val_best = v;
                tr->best_step = step;
                for (int j = 0; j < nm; j++) {
                    memcpy(fs[j].keep_a, fs[j].ra, (size_t)fs[j].na * sizeof(float));
                    memcpy(fs[j].keep_b, fs[j].rb, (size_t)fs[j].nb * sizeof(float));
                }
            }
        }
    }
    for (int j = 0; j < nm; j++) {
        for (int64_t i = 0; i < fs[j].na; i++)
            n.m[j]->a[i] = rq_fp32_to_fp16(fs[j].keep_a[i]);
        for (int64_t i = 0; i < fs[j].nb; i++)
            n.m[j]->b[i] = rq_fp32_to_fp16(fs[j].keep_b[i]);
        factors_free(&fs[j]);
    }
    free(xb);
    free(yb);
    free(hb);
    net_free(&n);
    tr->seconds = rq_time() - t_start;
    return 0;
}
