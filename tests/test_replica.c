/* test_replica.c - the replicated layer: packed round trip and refusals, K equal
 * replicas reproduce K = 1, the collapse rule, the replicated product equals the
 * sum of the K dequantized products, and the fit never raises its objective. */
#include <math.h>
#include <stdint.h>

#include "qformat.h"
#include "quant.h"
#include "repfit.h"
#include "replica.h"
#include "rq_test.h"
#include "synth_layer.h"
#include "util.h"

/* A random replicated tensor; factors drawn as f16 of values around 1 (b) and
 * 0.01..0.1 (a), offsets in [-0.5, 0.5]. */
static void random_rep(rq_rep *t, int bits, int K, int64_t rows, int64_t cols, uint64_t seed) {
    rq_rng rng;
    rq_rng_seed(&rng, seed, 1);
    rq_rep_alloc(t, bits, K, rows, cols);
    for (int64_t i = 0; i < rows * cols; i++)
        t->q[i] = (uint8_t)(rq_rng_next(&rng) % (1u << bits));
    for (int64_t i = 0; i < K * rows; i++)
        t->a[i] = rq_fp32_to_fp16(0.01f + 0.09f * rq_rng_uniform(&rng));
    for (int64_t i = 0; i < K * cols; i++)
        t->b[i] = rq_fp32_to_fp16(0.5f + rq_rng_uniform(&rng));
    for (int k = 0; k < K; k++)
        t->o[k] = rq_rng_uniform(&rng) - 0.5f;
}

static int same_rep(const rq_rep *x, const rq_rep *y) {
    return x->bits == y->bits && x->K == y->K && x->combine == y->combine && x->rows == y->rows && x->cols == y->cols &&
           !memcmp(x->q, y->q, (size_t)(x->rows * x->cols)) && !memcmp(x->a, y->a, (size_t)(x->K * x->rows) * 2) &&
           !memcmp(x->b, y->b, (size_t)(x->K * x->cols) * 2) && !memcmp(x->o, y->o, (size_t)x->K * 4);
}

/* every bit width, several K, odd shapes: pack/unpack is exact, the size is what
 * the bit accounting says, and the packed blob dequantizes through qformat */
static void test_roundtrip(void) {
    const int64_t shapes[][2] = {{1, 1}, {3, 7}, {5, 13}, {2, 576 + 3}};
    const int Ks[] = {1, 2, 3, 8};
    for (int bits = 1; bits <= 8; bits++)
        for (int si = 0; si < 4; si++)
            for (int ki = 0; ki < 4; ki++) {
                int64_t R = shapes[si][0], C = shapes[si][1];
                rq_rep t, u;
                random_rep(&t, bits, Ks[ki], R, C, (uint64_t)(bits * 100 + si * 10 + ki));
                size_t n = rq_rep_size(bits, Ks[ki], R, C);
                rq_rep_bits b = rq_rep_bits_of(bits, Ks[ki], R, C);
                CHECK(b.code_bits + b.param_bits + b.header_bits == (int64_t)(8 * n));
                CHECK(b.code_bits == 8 * R * ((C * bits + 7) / 8));
                CHECK(b.param_bits == 8 * (2 * Ks[ki] * (R + C) + 4 * Ks[ki]));
                uint8_t *blob = rq_malloc(n);
                REQUIRE(rq_rep_pack(&t, blob) == 0);
                REQUIRE(rq_rep_unpack(blob, n, &u) == 0);
                CHECKF(same_rep(&t, &u), "bits %d K %d [%lld, %lld]", bits, Ks[ki], (long long)R, (long long)C);
                float *w1 = rq_malloc((size_t)(R * C) * sizeof *w1), *w2 = rq_malloc((size_t)(R * C) * sizeof *w2);
                rq_rep_dequant(&t, w1);
                CHECK(rq_qformat_to_float(blob, n, R, C, w2) == 0 && !memcmp(w1, w2, (size_t)(R * C) * 4));
                rq_qtensor h;
                int id = 0;
                CHECK(rq_qformat_peek(blob, n, &h, &id, NULL) == 0 && id == RQ_FMT_REP && h.rows == R && h.cols == C &&
                      h.grid.bits == bits);
                free(w1);
                free(w2);
                free(blob);
                rq_rep_free(&t);
                rq_rep_free(&u);
            }
}

static void test_refusals(void) {
    rq_rep t, u;
    random_rep(&t, 2, 3, 4, 9, 7);
    size_t n = rq_rep_size(2, 3, 4, 9);
    uint8_t *b = rq_malloc(n + 1);
    REQUIRE(rq_rep_pack(&t, b) == 0);
    CHECK(rq_rep_unpack(b, n - 1, &u) == -1 && strstr(rq_error(), "truncated"));
    CHECK(rq_rep_unpack(b, n + 1, &u) == -1 && strstr(rq_error(), "trailing"));
    b[4] = 2; /* version 2 */
    CHECK(rq_rep_unpack(b, n, &u) == -1 && strstr(rq_error(), "newer") && strstr(rq_error(), "upgrade"));
    b[4] = 1;
    b[26] = 2; /* combination rule 2 */
    CHECK(rq_rep_unpack(b, n, &u) == -1 && strstr(rq_error(), "combination rule 2"));
    b[26] = 0;
    b[25] = 0; /* K = 0 */
    CHECK(rq_rep_unpack(b, n, &u) == -1 && strstr(rq_error(), "K = 0"));
    b[25] = 3;
    CHECK(rq_rep_unpack(b, n, &u) == 0);
    rq_rep_free(&u);
    float *w = rq_malloc(36 * sizeof *w);
    CHECK(rq_qformat_to_float(b, n, 9, 4, w) == -1 && strstr(rq_error(), "rqrep is [4, 9]"));
    t.a[5] = 0x7c00; /* +Inf */
    CHECK(rq_rep_pack(&t, b) == -1 && strstr(rq_error(), "not finite"));
    t.a[5] = 0;
    t.q[3] = 4; /* out of range for 2 bits */
    CHECK(rq_rep_pack(&t, b) == -1 && strstr(rq_error(), "out of range"));
    free(w);
    free(b);
    rq_rep_free(&t);
}

/* K = 1 with b = 1 is the per-row symmetric grid bit for bit; K equal replicas
 * with a / K are the K = 1 tensor bit for bit at K = 2, 4, 8 (pairwise sums of
 * equal power-of-two fractions are exact) and within f16's rounding of a / K at
 * K = 3, 5 (relative 2^-10). */
static void test_identical_replicas(void) {
    const int64_t R = 6, C = 37;
    rq_grid g = rq_grid_default();
    g.bits = 3;
    g.sym = true;
    g.group = 0;
    g.offset = 0.25f;
    float w[6 * 37];
    rq_rng rng;
    rq_rng_seed(&rng, 3, 0);
    for (int i = 0; i < R * C; i++)
        w[i] = synth_gauss(&rng);
    rq_qtensor q;
    REQUIRE(rq_rtn(&g, w, R, C, 0, 0, &q) == 0);
    float ref[6 * 37], got[6 * 37];
    rq_qtensor_dequant(&q, ref);
    const int Ks[] = {1, 2, 3, 4, 5, 8};
    for (int ki = 0; ki < 6; ki++) {
        int K = Ks[ki];
        rq_rep t;
        rq_rep_alloc(&t, 3, K, R, C);
        memcpy(t.q, q.q, (size_t)(R * C));
        for (int k = 0; k < K; k++) {
            t.o[k] = g.offset;
            for (int64_t r = 0; r < R; r++)
                t.a[k * R + r] = rq_fp32_to_fp16(rq_fp16_to_fp32(q.scale[r]) / (float)K);
            for (int64_t c = 0; c < C; c++)
                t.b[k * C + c] = rq_fp32_to_fp16(1.0f);
        }
        rq_rep_dequant(&t, got);
        if ((K & (K - 1)) == 0) {
            CHECKF(!memcmp(ref, got, sizeof ref), "K = %d differs from K = 1", K);
        } else {
            double worst = 0;
            for (int i = 0; i < R * C; i++)
                if (ref[i] != 0) worst = fmax(worst, fabs(got[i] - ref[i]) / fabs(ref[i]));
            CHECKF(worst <= 0x1p-10, "K = %d: relative difference %g", K, worst);
        }
        CHECK(rq_rep_collapses(&t, 1e-6));
        rq_rep_free(&t);
    }
    rq_qtensor_free(&q);
}

/* replicas differing only in per-row factors (or only in column factors) are one
 * decoder: the options are refused, and a tensor built that way is detected */
static void test_collapse(void) {
    rq_rep_opts o = rq_rep_opts_default();
    o.K = 4;
    CHECK(rq_rep_opts_check(&o) == 0);
    o.vary_in = false;
    CHECK(rq_rep_opts_check(&o) == -1 && strstr(rq_error(), "one decoder") && strstr(rq_error(), "per-row factors"));
    o.vary_in = true;
    o.vary_out = false;
    o.vary_offset = true;
    CHECK(rq_rep_opts_check(&o) == -1 && strstr(rq_error(), "per-column factors and offsets"));
    o.K = 1;
    CHECK(rq_rep_opts_check(&o) == 0);
    rq_rep t;
    random_rep(&t, 2, 4, 9, 11, 5);
    CHECK(!rq_rep_collapses(&t, 1e-3));
    for (int k = 1; k < 4; k++) /* b_k = 2^k b_0: proportional column factors */
        for (int64_t c = 0; c < 11; c++)
            t.b[k * 11 + c] = rq_fp32_to_fp16(rq_fp16_to_fp32(t.b[c]) * (float)(1 << k));
    CHECK(rq_rep_collapses(&t, 1e-3));
    rq_rep_free(&t);
}

/* the replicated product, run as K passes over the codes, equals the sum of the
 * K single-replica dequantized products */
static void test_matvec(void) {
    rq_rep t;
    const int64_t R = 23, C = 301;
    random_rep(&t, 2, 5, R, C, 11);
    float x[301], y[23];
    rq_rng rng;
    rq_rng_seed(&rng, 9, 0);
    for (int64_t c = 0; c < C; c++)
        x[c] = synth_gauss(&rng);
    rq_rep_matvec(&t, x, y);
    double want[23] = {0};
    float *wk = rq_malloc((size_t)(R * C) * sizeof *wk);
    for (int k = 0; k < t.K; k++) {
        rq_rep one;
        rq_rep_alloc(&one, t.bits, 1, R, C);
        memcpy(one.q, t.q, (size_t)(R * C));
        memcpy(one.a, t.a + k * R, (size_t)R * 2);
        memcpy(one.b, t.b + k * C, (size_t)C * 2);
        one.o[0] = t.o[k];
        rq_rep_dequant(&one, wk);
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < C; c++)
                want[r] += (double)wk[r * C + c] * x[c];
        rq_rep_free(&one);
    }
    double worst = 0, scale = 0;
    for (int64_t r = 0; r < R; r++) {
        worst = fmax(worst, fabs(y[r] - want[r]));
        scale = fmax(scale, fabs(want[r]));
    }
    CHECKF(worst <= 1e-5 * scale, "max |y - sum_k W_k x| = %g (scale %g)", worst, scale);
    /* and the same through the summed matrix */
    rq_rep_dequant(&t, wk);
    for (int64_t r = 0; r < R; r++) {
        double s = 0;
        for (int64_t c = 0; c < C; c++)
            s += (double)wk[r * C + c] * x[c];
        CHECK(fabs(s - want[r]) <= 1e-5 * scale);
    }
    CHECK(rq_rep_compute_multiplier(&t) == 5);
    free(wk);
    rq_rep_free(&t);
}

static rq_gptq_opts gopts(void) {
    rq_gptq_opts go = rq_gptq_opts_default();
    go.act_order = true;
    return go;
}

static rq_grid w2(void) {
    rq_grid g = rq_grid_default();
    g.bits = 2;
    g.sym = true;
    g.group = 0;
    g.mse = true;
    return g;
}

/* An MLP's paths (combine 1): the file keeps the rule, each replica dequantizes
 * alone, two of them add to the K = 2 sum bit for bit, and such a blob is not
 * summed into one matrix by the generic reader. */
static void test_mlp_paths(void) {
    for (int bits = 1; bits <= 4; bits++) {
        rq_rep t, u;
        random_rep(&t, bits, 2, 5, 13, 40 + (uint64_t)bits);
        t.combine = RQ_REP_COMBINE_MLP;
        size_t n = rq_rep_size(bits, 2, 5, 13);
        uint8_t *b = rq_malloc(n);
        REQUIRE(rq_rep_pack(&t, b) == 0);
        REQUIRE(rq_rep_unpack(b, n, &u) == 0);
        CHECK(same_rep(&t, &u) && u.combine == RQ_REP_COMBINE_MLP);
        float w[65], w0[65], w1[65];
        rq_rep_dequant(&t, w);
        rq_rep_dequant_replica(&t, 0, w0);
        rq_rep_dequant_replica(&t, 1, w1);
        for (int i = 0; i < 65; i++)
            CHECKF(w0[i] + w1[i] == w[i], "bits %d [%d]: %g + %g != %g", bits, i, w0[i], w1[i], w[i]);
        CHECK(rq_qformat_to_float(b, n, 5, 13, w) != 0 && strstr(rq_error(), "nonlinearity"));
        rq_rep_free(&t);
        rq_rep_free(&u);
        free(b);
    }
}

/* every kept step lowers or keeps J; the least-squares steps are kept (they are
 * exact minimizations); the fit ends no worse than its per-row GPTQ start, and
 * rank-4 factors end below K = 1 on the synthetic layer */
static void test_fit_monotone(void) {
    synth_layer L;
    synth_make(&L, 64, 128, 1024, 1);
    rq_grid g = w2();
    rq_gptq_opts go = gopts();
    double final[2];
    for (int i = 0; i < 2; i++) {
        rq_rep_opts o = rq_rep_opts_default();
        o.K = i == 0 ? 1 : 4;
        o.vary_offset = i == 1;
        o.iters = 4;
        rq_rep t;
        rq_rep_trace tr;
        REQUIRE(rq_rep_fit(L.h, L.w, L.m, L.n, &g, &go, &o, &t, &tr) == 0);
        double J = tr.J[0];
        int a_kept = 0, b_kept = 0;
        for (int s = 1; s < tr.n; s++) {
            if (tr.kept[s]) {
                CHECKF(tr.J[s] <= J, "step %d (%c) raised J %g -> %g", s, tr.step[s], J, tr.J[s]);
                J = tr.J[s];
            }
            a_kept += tr.step[s] == 'a' && tr.kept[s];
            b_kept += tr.step[s] == 'b' && tr.kept[s];
        }
        CHECK(a_kept >= 1 && b_kept >= 1);
        CHECK(tr.J_final == J && tr.J_final <= tr.J_init);
        float *what = rq_malloc((size_t)(L.m * L.n) * sizeof *what);
        rq_rep_dequant(&t, what);
        double Jf = rq_layer_error(rq_gptq_hessian(L.h), L.w, what, L.m, L.n);
        CHECKF(Jf == tr.J_final, "reported %g, recomputed %g", tr.J_final, Jf);
        final[i] = tr.J_final / tr.J_zero;
        printf("  K=%d: relative layer error %.5f -> %.5f in %d steps\n", o.K, tr.J_init / tr.J_zero, final[i], tr.n);
        if (i == 1) CHECK(!rq_rep_collapses(&t, 1e-3));
        free(what);
        rq_rep_free(&t);
    }
    CHECKF(final[1] < final[0], "K=4 %.5f, K=1 %.5f", final[1], final[0]);
    synth_free(&L);
}

/* same seed and thread count: the same tensor */
static void test_fit_deterministic(void) {
    synth_layer L;
    synth_make(&L, 16, 64, 256, 2);
    rq_grid g = w2();
    rq_gptq_opts go = gopts();
    rq_rep_opts o = rq_rep_opts_default();
    o.K = 2;
    o.iters = 2;
    rq_rep t1, t2;
    REQUIRE(rq_rep_fit(L.h, L.w, L.m, L.n, &g, &go, &o, &t1, NULL) == 0);
    REQUIRE(rq_rep_fit(L.h, L.w, L.m, L.n, &g, &go, &o, &t2, NULL) == 0);
    CHECK(same_rep(&t1, &t2));
    rq_rep_free(&t1);
    rq_rep_free(&t2);
    o.K = 0;
    CHECK(rq_rep_fit(L.h, L.w, L.m, L.n, &g, &go, &o, &t1, NULL) == -1 && strstr(rq_error(), "replicate.k = 0"));
    synth_free(&L);
}

int main(void) {
    RUN(test_roundtrip);
    RUN(test_refusals);
    RUN(test_identical_replicas);
    RUN(test_collapse);
    RUN(test_matvec);
    RUN(test_mlp_paths);
    RUN(test_fit_monotone);
    RUN(test_fit_deterministic);
    TEST_EXIT();
}
