/* Frozen-code MLP training (mlptrain.h): the hand-written gradients against
 * finite differences for both combinations with and without the online R4, the
 * spread of one decoder into K paths, training that recovers known factors (also
 * with the block's tail: attn_output and the norm before the MLP)
 * while never keeping a held-out error above the start's. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grid.h"
#include "hadamard.h"
#include "mlptrain.h"
#include "repfit.h"
#include "replica.h"
#include "rq_test.h"
#include "util.h"

enum { E = 8, F = 16, D = 12 };

static float randn(rq_rng *g) {
    float u = rq_rng_uniform(g) + 1e-7f, v = rq_rng_uniform(g);
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

/* Random codes and factors for the three MLP matrices (gate, up, down). */
static void random_mlp(rq_rep m[3], int K, int combine, uint64_t seed) {
    const int64_t rows[3] = {F, F, E}, cols[3] = {E, E, F};
    rq_rng g;
    rq_rng_seed(&g, seed, 1);
    for (int j = 0; j < 3; j++) {
        rq_rep_alloc(&m[j], 2, K, rows[j], cols[j]);
        m[j].combine = combine;
        for (int64_t i = 0; i < rows[j] * cols[j]; i++)
            m[j].q[i] = (uint8_t)(rq_rng_next(&g) & 3);
        for (int64_t i = 0; i < K * rows[j]; i++)
            m[j].a[i] = rq_fp32_to_fp16(0.3f + 0.2f * rq_rng_uniform(&g));
        for (int64_t i = 0; i < K * cols[j]; i++)
            m[j].b[i] = rq_fp32_to_fp16(0.7f + 0.6f * rq_rng_uniform(&g));
        for (int k = 0; k < K; k++)
            m[j].o[k] = 0.1f * (float)k;
    }
}

static float *randv(int64_t n, float s, rq_rng *g) {
    float *v = rq_malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        v[i] = s * randn(g);
    return v;
}

/* A block's tail around the MLP (mlptrain.h): the output projection [E, D]
 * with K replicas, its inputs, the residual and the norm's weight. */
typedef struct {
    rq_rep o;
    float *z, *h0, *w;
    rq_mlp_tail t;
} tail_data;

static void random_tail(tail_data *d, int K, int64_t n, rq_rng *g) {
    rq_rep_alloc(&d->o, 2, K, E, D);
    for (int64_t i = 0; i < E * D; i++)
        d->o.q[i] = (uint8_t)(rq_rng_next(g) & 3);
    for (int64_t i = 0; i < K * E; i++)
        d->o.a[i] = rq_fp32_to_fp16(0.2f + 0.2f * rq_rng_uniform(g));
    for (int64_t i = 0; i < K * D; i++)
        d->o.b[i] = rq_fp32_to_fp16(0.7f + 0.6f * rq_rng_uniform(g));
    for (int k = 0; k < K; k++)
        d->o.o[k] = 0.15f * (float)k;
    d->z = randv(n * D, 1.0f, g);
    d->h0 = randv(n * E, 1.0f, g);
    d->w = randv(E, 1.0f, g);
    d->t = (rq_mlp_tail){&d->o, d->z, d->h0, d->w, 1e-5f, D};
}

static void tail_free(tail_data *d) {
    rq_rep_free(&d->o);
    free(d->z);
    free(d->h0);
    free(d->w);
}

/* Analytic gradients against central differences in every factor, for the MLP
 * alone and with the tail (o's factors as matrix 3); with the online R4, summed
 * replicas (combine 0) also read their input through their own rotation
 * (replica.h's rotation ensembles): replica 1 of every matrix, and o's replica 2. */
static void test_gradients(void) {
    double worst = 0;
    for (int cfg = 0; cfg < 8; cfg++) {
        int tail = cfg >> 2, combine = cfg >> 1 & 1, rot = cfg & 1;
        rq_rep m[3];
        random_mlp(m, 2, combine, 11 + combine + 2 * rot);
        rq_rep *mp[3] = {&m[0], &m[1], &m[2]};
        rq_orth *r4 = rot ? rq_orth_new(F, RQ_ORTH_RH, 5) : NULL;
        rq_rng g;
        rq_rng_seed(&g, 3, 0);
        int64_t n = 24;
        float *x = randv(n * E, 1.0f, &g), *y = randv(n * E, 0.5f, &g);
        tail_data td;
        random_tail(&td, rot ? 3 : 1, n, &g); /* o's K other than the MLP's 2 */
        if (rot && !combine) {
            for (int j = 0; j < 3; j++)
                m[j].rot_kind[1] = RQ_REP_ROT_RH, m[j].rot_seed[1] = 30 + (uint64_t)j;
            td.o.rot_kind[2] = RQ_REP_ROT_RH, td.o.rot_seed[2] = 33;
        }
        const rq_mlp_tail *tp = tail ? &td.t : NULL;
        int nm = tail ? 4 : 3;
        rq_rep *all[4] = {&m[0], &m[1], &m[2], &td.o};
        float *a[4], *b[4], *ga[4], *gb[4];
        for (int j = 0; j < nm; j++) {
            const rq_rep *mj = all[j];
            a[j] = rq_malloc((size_t)(mj->K * mj->rows) * sizeof(float));
            b[j] = rq_malloc((size_t)(mj->K * mj->cols) * sizeof(float));
            rq_fp16_to_fp32_n(mj->a, mj->K * mj->rows, a[j]);
            rq_fp16_to_fp32_n(mj->b, mj->K * mj->cols, b[j]);
            ga[j] = rq_calloc((size_t)(mj->K * mj->rows), sizeof(float));
            gb[j] = rq_calloc((size_t)(mj->K * mj->cols), sizeof(float));
        }
        double l0 = rq_mlp_loss_grad(x, n, E, F, y, r4, mp, tp, a, b, ga, gb);
        REQUIRE(isfinite(l0) && l0 > 0);
        for (int j = 0; j < nm; j++)
            for (int which = 0; which < 2; which++) {
                float *v = which ? b[j] : a[j], *gv = which ? gb[j] : ga[j];
                int64_t nv = all[j]->K * (which ? all[j]->cols : all[j]->rows);
                for (int64_t i = 0; i < nv; i++) {
                    float keep = v[i], h = 1e-2f * fabsf(keep);
                    v[i] = keep + h;
                    double lp = rq_mlp_loss_grad(x, n, E, F, y, r4, mp, tp, a, b, NULL, NULL);
                    v[i] = keep - h;
                    double lm = rq_mlp_loss_grad(x, n, E, F, y, r4, mp, tp, a, b, NULL, NULL);
                    v[i] = keep;
                    double fd = (lp - lm) / (2.0 * h), e = fabs(fd - gv[i]) / (fabs(fd) + 1e-3 * l0);
                    worst = fmax(worst, e);
                    CHECKF(e < 2e-2, "tail %d combine %d r4 %d matrix %d %c[%lld]: analytic %.6g, differences %.6g",
                           tail, combine, rot, j, which ? 'b' : 'a', (long long)i, (double)gv[i], fd);
                }
            }
        for (int j = 0; j < nm; j++) {
            free(a[j]);
            free(b[j]);
            free(ga[j]);
            free(gb[j]);
        }
        for (int j = 0; j < 3; j++)
            rq_rep_free(&m[j]);
        tail_free(&td);
        free(x);
        free(y);
        rq_orth_free(r4);
    }
    printf("  worst relative gradient error %.2e\n", worst);
}

/* K paths spread with spread 0 give the K = 1 MLP (the down rows divided by a
 * power-of-two K are exact in f16); with spread > 0 the paths differ. */
static void test_spread_paths(void) {
    rq_rep one[3], k4[3];
    random_mlp(one, 1, 0, 21);
    rq_rng g;
    rq_rng_seed(&g, 4, 0);
    int64_t n = 16;
    float *x = randv(n * E, 1.0f, &g), *y = randv(n * E, 0.5f, &g);
    rq_rep *p1[3] = {&one[0], &one[1], &one[2]}, *p4[3] = {&k4[0], &k4[1], &k4[2]};
    float *a[3], *b[3], *a4[3], *b4[3];
    for (int spread = 0; spread < 2; spread++) {
        for (int j = 0; j < 3; j++)
            rq_rep_spread_paths(&one[j], 4, spread ? 0.1f : 0.0f, 7, j == 2, &k4[j]);
        for (int j = 0; j < 3; j++) {
            CHECK(k4[j].K == 4 && k4[j].combine == RQ_REP_COMBINE_MLP && !memcmp(k4[j].q, one[j].q, (size_t)(E * F)));
            a[j] = rq_malloc((size_t)one[j].rows * sizeof(float));
            b[j] = rq_malloc((size_t)one[j].cols * sizeof(float));
            rq_fp16_to_fp32_n(one[j].a, one[j].rows, a[j]);
            rq_fp16_to_fp32_n(one[j].b, one[j].cols, b[j]);
            a4[j] = rq_malloc((size_t)(4 * one[j].rows) * sizeof(float));
            b4[j] = rq_malloc((size_t)(4 * one[j].cols) * sizeof(float));
            rq_fp16_to_fp32_n(k4[j].a, 4 * one[j].rows, a4[j]);
            rq_fp16_to_fp32_n(k4[j].b, 4 * one[j].cols, b4[j]);
        }
        double l1 = rq_mlp_loss_grad(x, n, E, F, y, NULL, p1, NULL, a, b, NULL, NULL);
        double l4 = rq_mlp_loss_grad(x, n, E, F, y, NULL, p4, NULL, a4, b4, NULL, NULL);
        if (spread == 0)
            CHECKF(fabs(l4 - l1) <= 1e-5 * l1, "spread 0: K=4 paths loss %.9g, K=1 %.9g", l4, l1);
        else
            CHECKF(fabs(l4 - l1) > 1e-4 * l1, "spread 0.1: K=4 paths loss %.9g equals K=1's %.9g", l4, l1);
        for (int j = 0; j < 3; j++) {
            free(a[j]);
            free(b[j]);
            free(a4[j]);
            free(b4[j]);
            rq_rep_free(&k4[j]);
        }
    }
    for (int j = 0; j < 3; j++)
        rq_rep_free(&one[j]);
    free(x);
    free(y);
}

/* The reference MLP is a K = 1 quantized one with its rows scaled by 1 +- 20%;
 * the model trained is that K = 1 tensor (combine 0) or its spread into two paths
 * (combine 1). Training must win most of the error back on held-out tokens; the
 * kept error is never above the start's, even with a step size that diverges;
 * the same seed gives the same factors. */
static void start_model(rq_rep m[3], const rq_rep one[3], int combine) {
    for (int j = 0; j < 3; j++) {
        if (combine) {
            rq_rep_spread_paths(&one[j], 2, 0.1f, 3, j == 2, &m[j]);
        } else {
            rq_rep_alloc(&m[j], one[j].bits, 1, one[j].rows, one[j].cols);
            memcpy(m[j].q, one[j].q, (size_t)(E * F));
            memcpy(m[j].a, one[j].a, (size_t)one[j].rows * 2);
            memcpy(m[j].b, one[j].b, (size_t)one[j].cols * 2);
            m[j].o[0] = one[j].o[0];
        }
    }
}

static void test_training(void) {
    rq_rep one[3];
    random_mlp(one, 1, 0, 31);
    const int64_t rows[3] = {F, F, E}, cols[3] = {E, E, F};
    float *w[3];
    rq_rng g;
    rq_rng_seed(&g, 9, 0);
    for (int j = 0; j < 3; j++) {
        w[j] = rq_malloc((size_t)(rows[j] * cols[j]) * sizeof(float));
        rq_rep_dequant_replica(&one[j], 0, w[j]);
        for (int64_t r = 0; r < rows[j]; r++) {
            float s = 1.0f + 0.2f * (2.0f * rq_rng_uniform(&g) - 1.0f);
            for (int64_t c = 0; c < cols[j]; c++)
                w[j][r * cols[j] + c] *= s;
        }
    }
    int64_t n = 2048;
    float *x = randv(n * E, 1.0f, &g), *y = rq_malloc((size_t)(n * E) * sizeof(float));
    rq_mlp_reference(x, n, E, F, w[0], w[1], w[2], NULL, y);
    for (int combine = 0; combine < 2; combine++) {
        rq_rep m[3];
        start_model(m, one, combine);
        rq_rep *mp[3] = {&m[0], &m[1], &m[2]};
        rq_mlptrain_opts o = rq_mlptrain_default();
        o.steps = 300;
        o.batch = 128;
        o.lr = 0.01f;
        rq_mlptrain_trace tr;
        REQUIRE(rq_mlp_train(x, n, E, F, y, NULL, mp, NULL, &o, &tr) == 0);
        printf("  combine %d: held-out error %.5f -> %.5f (step %d)\n", combine, tr.val_start, tr.val_best,
               tr.best_step);
        CHECKF(tr.val_best < 0.3 * tr.val_start, "combine %d: held-out %.5f -> %.5f", combine, tr.val_start,
               tr.val_best);
        /* evaluated again from the stored factors: the start is what was kept */
        rq_mlptrain_trace t2;
        o.steps = 0;
        REQUIRE(rq_mlp_train(x, n, E, F, y, NULL, mp, NULL, &o, &t2) == 0);
        CHECKF(fabs(t2.val_start - tr.val_best) <= 1e-6 * tr.val_best, "kept %.9g, re-evaluated %.9g", tr.val_best,
               t2.val_start);
        /* a step size that diverges keeps the start: the stored factors evaluate to it */
        o.steps = 20;
        o.lr = 1.0f;
        REQUIRE(rq_mlp_train(x, n, E, F, y, NULL, mp, NULL, &o, &t2) == 0);
        CHECKF(t2.best_step == 0, "lr 1: step %d kept (%.9g -> %.9g)", t2.best_step, t2.val_start, t2.val_best);
        rq_mlptrain_trace t3;
        o.steps = 0;
        REQUIRE(rq_mlp_train(x, n, E, F, y, NULL, mp, NULL, &o, &t3) == 0);
        CHECKF(t3.val_start == t2.val_start, "after lr 1: %.9g, before %.9g", t3.val_start, t2.val_start);
        /* the same seed gives the same factors */
        rq_rep c[3], d[3], e[3];
        start_model(c, one, combine);
        start_model(d, one, combine);
        start_model(e, one, combine);
        rq_rep *cp[3] = {&c[0], &c[1], &c[2]}, *dp[3] = {&d[0], &d[1], &d[2]};
        o.steps = 30;
        o.lr = 0.01f;
        REQUIRE(rq_mlp_train(x, n, E, F, y, NULL, cp, NULL, &o, &t2) == 0);
        REQUIRE(rq_mlp_train(x, n, E, F, y, NULL, dp, NULL, &o, &t2) == 0);
        for (int j = 0; j < 3; j++) {
            size_t na = (size_t)(c[j].K * rows[j]) * 2, nb = (size_t)(c[j].K * cols[j]) * 2;
            CHECK(!memcmp(c[j].a, d[j].a, na) && !memcmp(c[j].b, d[j].b, nb));
            CHECK(memcmp(c[j].a, e[j].a, na) || memcmp(c[j].b, e[j].b, nb)); /* training moved them */
            rq_rep_free(&c[j]);
            rq_rep_free(&e[j]);
            rq_rep_free(&d[j]);
            rq_rep_free(&m[j]);
        }
    }
    for (int j = 0; j < 3; j++) {
        rq_rep_free(&one[j]);
        free(w[j]);
    }
    free(x);
    free(y);
}

/* With the tail: the target comes from the output projection's rows scaled by
 * known factors (the MLP exact); training the four matrices' factors recovers
 * most of it, moves o's factors, and the stored factors evaluate to the kept
 * error. */
static void test_tail_training(void) {
    rq_rep one[3];
    random_mlp(one, 1, 0, 41);
    rq_rng g;
    rq_rng_seed(&g, 10, 0);
    int64_t n = 2048;
    tail_data td;
    random_tail(&td, 1, n, &g);
    for (int64_t i = 0; i < E; i++)
        td.w[i] = 1.0f + 0.1f * (float)i / E;
    float *wo = rq_malloc((size_t)(E * D) * sizeof(float)), *w[3];
    rq_rep_dequant_replica(&td.o, 0, wo);
    for (int64_t r = 0; r < E; r++) {
        float s = 1.0f + 0.3f * (2.0f * rq_rng_uniform(&g) - 1.0f);
        for (int64_t c = 0; c < D; c++)
            wo[r * D + c] *= s;
    }
    const int64_t rows[3] = {F, F, E}, cols[3] = {E, E, F};
    for (int j = 0; j < 3; j++) {
        w[j] = rq_malloc((size_t)(rows[j] * cols[j]) * sizeof(float));
        rq_rep_dequant_replica(&one[j], 0, w[j]);
    }
    /* y = z Wo^T + MLP(rmsnorm(h0 + z Wo^T) .* w) */
    float *p = rq_malloc((size_t)(n * E) * sizeof(float)), *x = rq_malloc((size_t)(n * E) * sizeof(float));
    float *y = rq_malloc((size_t)(n * E) * sizeof(float));
    for (int64_t t = 0; t < n; t++) {
        double ss = 0;
        for (int64_t e = 0; e < E; e++) {
            double v = 0;
            for (int64_t c = 0; c < D; c++)
                v += (double)td.z[t * D + c] * wo[e * D + c];
            p[t * E + e] = (float)v;
            ss += (v + td.h0[t * E + e]) * (v + td.h0[t * E + e]);
        }
        float r = 1.0f / sqrtf((float)(ss / E) + td.t.eps);
        for (int64_t e = 0; e < E; e++)
            x[t * E + e] = (p[t * E + e] + td.h0[t * E + e]) * r * td.w[e];
    }
    rq_mlp_reference(x, n, E, F, w[0], w[1], w[2], NULL, y);
    for (int64_t i = 0; i < n * E; i++)
        y[i] += p[i];
    rq_rep m[3];
    start_model(m, one, 0);
    rq_rep *mp[3] = {&m[0], &m[1], &m[2]};
    uint16_t a0[E];
    memcpy(a0, td.o.a, sizeof a0);
    rq_mlptrain_opts o = rq_mlptrain_default();
    o.steps = 300;
    o.batch = 128;
    o.lr = 0.01f;
    rq_mlptrain_trace tr, t2;
    REQUIRE(rq_mlp_train(NULL, n, E, F, y, NULL, mp, &td.t, &o, &tr) == 0);
    printf("  tail: held-out error %.5f -> %.5f (step %d)\n", tr.val_start, tr.val_best, tr.best_step);
    CHECKF(tr.val_best < 0.3 * tr.val_start, "tail: held-out %.5f -> %.5f", tr.val_start, tr.val_best);
    CHECK(memcmp(a0, td.o.a, sizeof a0) != 0);
    o.steps = 0;
    REQUIRE(rq_mlp_train(NULL, n, E, F, y, NULL, mp, &td.t, &o, &t2) == 0);
    CHECKF(fabs(t2.val_start - tr.val_best) <= 1e-6 * tr.val_best, "kept %.9g, re-evaluated %.9g", tr.val_best,
           t2.val_start);
    for (int j = 0; j < 3; j++) {
        rq_rep_free(&m[j]);
        rq_rep_free(&one[j]);
        free(w[j]);
    }
    tail_free(&td);
    free(wo);
    free(p);
    free(x);
    free(y);
}

static void test_refusals(void) {
    rq_mlptrain_opts o = rq_mlptrain_default();
    o.holdout = 1.0f;
    CHECK(rq_mlptrain_check(&o) != 0 && strstr(rq_error(), "holdout"));
    o = rq_mlptrain_default();
    o.batch = 0;
    CHECK(rq_mlptrain_check(&o) != 0 && strstr(rq_error(), "batch"));
    rq_rep m[3];
    random_mlp(m, 2, 1, 5);
    m[2].combine = 0;
    rq_rep *mp[3] = {&m[0], &m[1], &m[2]};
    float *w = rq_calloc(E * F, sizeof(float)), *x = rq_calloc(64 * E, sizeof(float));
    rq_mlptrain_trace tr;
    o = rq_mlptrain_default();
    CHECK(rq_mlp_train(x, 64, E, F, x, NULL, mp, NULL, &o, &tr) != 0 && strstr(rq_error(), "combine"));
    for (int j = 0; j < 3; j++)
        rq_rep_free(&m[j]);
    free(w);
    free(x);
}

int main(void) {
    RUN(test_gradients);
    RUN(test_spread_paths);
    RUN(test_training);
    RUN(test_tail_training);
    RUN(test_refusals);
    TEST_EXIT();
}
