/* test_replica.c - the replicated layer: packed round trip and refusals, K equal
 * replicas reproduce K = 1, the collapse rule, the replicated product equals the
 * sum of the K dequantized products, and the fit never raises its objective; the
 * same for rotation ensembles (replicas reading the input through their own
 * Hadamard transform). */
#include <lapacke.h>
#include <math.h>
#include <stdint.h>

#include "hadamard.h"
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
           !memcmp(x->b, y->b, (size_t)(x->K * x->cols) * 2) && !memcmp(x->o, y->o, (size_t)x->K * 4) &&
           !memcmp(x->rot_kind, y->rot_kind, (size_t)x->K) && !memcmp(x->rot_seed, y->rot_seed, (size_t)x->K * 8);
}

/* replicas 1, 3, 5, ... of t read their input through RH rotations (seeds 100 + k) */
static void rotate_odd(rq_rep *t) {
    for (int k = 1; k < t->K; k += 2) {
        t->rot_kind[k] = RQ_REP_ROT_RH;
        t->rot_seed[k] = 100 + (uint64_t)k;
    }
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
                size_t n = rq_rep_size(bits, Ks[ki], R, C, false);
                rq_rep_bits b = rq_rep_bits_of(bits, Ks[ki], R, C, false);
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
    size_t n = rq_rep_size(2, 3, 4, 9, false);
    uint8_t *b = rq_malloc(n + 1);
    REQUIRE(rq_rep_pack(&t, b) == 0);
    CHECK(rq_rep_unpack(b, n - 1, &u) == -1 && strstr(rq_error(), "truncated"));
    CHECK(rq_rep_unpack(b, n + 1, &u) == -1 && strstr(rq_error(), "trailing"));
    b[4] = 3; /* version 3 */
    CHECK(rq_rep_unpack(b, n, &u) == -1 && strstr(rq_error(), "newer") && strstr(rq_error(), "upgrade"));
    b[4] = 2; /* version 2 without rotations reads as version 1 */
    REQUIRE(rq_rep_unpack(b, n, &u) == 0);
    CHECK(same_rep(&t, &u));
    rq_rep_free(&u);
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
        size_t n = rq_rep_size(bits, 2, 5, 13, false);
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

/* Every kept step of the trace lowers or keeps J; returns the last kept J and
 * counts the kept a- and b-steps from step `from` on. */
static double check_trace(const rq_rep_trace *tr, int from, int *a_kept, int *b_kept) {
    double J = tr->J[0];
    *a_kept = *b_kept = 0;
    for (int s = 1; s < tr->n; s++) {
        if (tr->kept[s]) {
            CHECKF(tr->J[s] <= J, "step %d (%c) raised J %g -> %g", s, tr->step[s], J, tr->J[s]);
            J = tr->J[s];
        }
        *a_kept += s >= from && tr->step[s] == 'a' && tr->kept[s];
        *b_kept += s >= from && tr->step[s] == 'b' && tr->kept[s];
    }
    return J;
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
        int a_kept, b_kept;
        double J = check_trace(&tr, 1, &a_kept, &b_kept);
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

/* Rotated replicas: the blob is version 2 with the rotation arrays (an unrotated
 * one stays version 1 with byte 27 = 0), round-trips exactly at odd shapes and K,
 * and damaged rotation fields are refused with what is wrong. */
static void test_rot_roundtrip(void) {
    const int Ks[] = {2, 3, 9};
    for (int ki = 0; ki < 3; ki++)
        for (int bits = 1; bits <= 3; bits++) {
            const int K = Ks[ki];
            rq_rep t, u;
            random_rep(&t, bits, K, 3, 7, 60 + (uint64_t)(ki * 4 + bits));
            size_t n1 = rq_rep_size(bits, K, 3, 7, false);
            uint8_t *b1 = rq_malloc(n1);
            REQUIRE(rq_rep_pack(&t, b1) == 0);
            CHECK(b1[4] == 1 && b1[5] == 0 && b1[27] == 0);
            rotate_odd(&t);
            CHECK(rq_rep_rotated(&t));
            size_t n = rq_rep_size(bits, K, 3, 7, true);
            CHECK(n == n1 + ((size_t)K + 7) / 8 * 8 + 8 * (size_t)K);
            rq_rep_bits bb = rq_rep_bits_of(bits, K, 3, 7, true);
            CHECK(bb.code_bits + bb.param_bits + bb.header_bits == 8 * (int64_t)n);
            uint8_t *b = rq_malloc(n);
            REQUIRE(rq_rep_pack(&t, b) == 0);
            CHECK(b[4] == 2 && b[27] == 1);
            REQUIRE(rq_rep_unpack(b, n, &u) == 0);
            CHECK(same_rep(&t, &u));
            rq_rep_free(&u);
            CHECK(rq_rep_unpack(b, n - 1, &u) == -1 && strstr(rq_error(), "truncated"));
            b[4] = 1; /* version 1 has no rotations */
            CHECK(rq_rep_unpack(b, n, &u) == -1 && strstr(rq_error(), "reserved"));
            b[4] = 2;
            b[27] = 2;
            CHECK(rq_rep_unpack(b, n, &u) == -1 && strstr(rq_error(), "rotation flag 2"));
            b[27] = 1;
            uint8_t *kinds = b + n - ((size_t)K + 7) / 8 * 8 - 8 * (size_t)K;
            kinds[1] = 7;
            CHECK(rq_rep_unpack(b, n, &u) == -1 && strstr(rq_error(), "replica 1's rotation kind 7"));
            kinds[1] = RQ_REP_ROT_RH;
            if (K % 8) {
                kinds[K] = 1; /* the padding after the kinds */
                CHECK(rq_rep_unpack(b, n, &u) == -1 && strstr(rq_error(), "padding"));
                kinds[K] = 0;
            }
            REQUIRE(rq_rep_unpack(b, n, &u) == 0);
            rq_rep_free(&u);
            rq_rep_free(&t);
            free(b);
            free(b1);
        }
}

/* With rotations: replica k's matrix is the unrotated replica times U_k^T (U_k
 * from hadamard.h, dense), the tensor is their sum, and the replicated product
 * (which rotates x, not W) equals W x. Replicas sharing one rotation collapse as
 * unrotated ones do; different rotations never collapse. */
static void test_rot_matvec(void) {
    const int64_t R = 9, C = 36; /* 36: a Hadamard order without a power-of-two construction */
    rq_rep t;
    random_rep(&t, 2, 4, R, C, 70);
    rotate_odd(&t);
    float *w = rq_malloc((size_t)(R * C) * sizeof *w), *wk = rq_malloc((size_t)(R * C) * sizeof *wk);
    float *plain = rq_malloc((size_t)(R * C) * sizeof *plain), *U = rq_malloc((size_t)(C * C) * sizeof *U);
    double *want = rq_calloc((size_t)(R * C), sizeof *want);
    for (int k = 0; k < t.K; k++) {
        rq_rep_dequant_replica(&t, k, wk);
        uint8_t kind = t.rot_kind[k];
        t.rot_kind[k] = RQ_REP_ROT_NONE;
        rq_rep_dequant_replica(&t, k, plain);
        t.rot_kind[k] = kind;
        if (kind) {
            rq_orth *q = rq_orth_new(C, RQ_ORTH_RH, t.rot_seed[k]);
            rq_orth_dense(q, U);
            rq_orth_free(q);
        }
        double worst = 0;
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < C; c++) {
                double v = plain[r * C + c];
                if (kind) { /* (plain U^T)[r, c] = sum_j plain[r, j] U[c, j] */
                    v = 0;
                    for (int64_t j = 0; j < C; j++)
                        v += (double)plain[r * C + j] * U[c * C + j];
                }
                worst = fmax(worst, fabs(v - wk[r * C + c]));
                want[r * C + c] += v;
            }
        CHECKF(worst <= 1e-6, "replica %d: |W_k - plain U^T| = %g", k, worst);
    }
    rq_rep_dequant(&t, w);
    double worst = 0;
    for (int64_t i = 0; i < R * C; i++)
        worst = fmax(worst, fabs(w[i] - want[i]));
    CHECKF(worst <= 1e-6, "|W - sum_k W_k| = %g", worst);
    float x[36], y[9];
    rq_rng rng;
    rq_rng_seed(&rng, 71, 0);
    for (int64_t c = 0; c < C; c++)
        x[c] = synth_gauss(&rng);
    rq_rep_matvec(&t, x, y);
    double err = 0, scale = 0;
    for (int64_t r = 0; r < R; r++) {
        double s = 0;
        for (int64_t c = 0; c < C; c++)
            s += want[r * C + c] * x[c];
        err = fmax(err, fabs(y[r] - s));
        scale = fmax(scale, fabs(s));
    }
    CHECKF(err <= 1e-5 * scale, "max |y - W x| = %g (scale %g)", err, scale);
    /* proportional column factors: one decoder only when the rotations agree */
    for (int k = 1; k < 4; k++)
        memcpy(t.b + k * C, t.b, (size_t)C * 2);
    CHECK(!rq_rep_collapses(&t, 1e-3));
    for (int k = 0; k < 4; k++)
        t.rot_kind[k] = RQ_REP_ROT_RH, t.rot_seed[k] = 5;
    CHECK(rq_rep_collapses(&t, 1e-3));
    t.rot_seed[2] = 6;
    CHECK(!rq_rep_collapses(&t, 1e-3));
    free(w), free(wk), free(plain), free(U), free(want);
    rq_rep_free(&t);
}

/* The rotation ensemble's fit: with 0 rounds it is the K = 1 fit bit for bit (the
 * rotated replicas start at a = 0); every kept step lowers or keeps J, the
 * reported J is the stored tensor's, it ends below K = 1 on the synthetic layer,
 * and the same seed gives the same tensor. The options it needs are enforced. */
static void test_rot_fit(void) {
    synth_layer L;
    synth_make(&L, 48, 96, 1024, 3);
    rq_grid g = w2();
    rq_gptq_opts go = gopts();
    rq_rep_opts o = rq_rep_opts_default();
    o.iters = 3;
    rq_rep one, t, t2;
    rq_rep_trace tr1, tr;
    REQUIRE(rq_rep_fit(L.h, L.w, L.m, L.n, &g, &go, &o, &one, &tr1) == 0);
    const size_t n = (size_t)(L.m * L.n);
    float *w1 = rq_malloc(n * sizeof *w1), *w = rq_malloc(n * sizeof *w);
    rq_rep_dequant(&one, w1);
    REQUIRE(rq_rep_extend_rotated(rq_gptq_hessian(L.h), L.w, &one, 3, 0, 0, true, &t, NULL) == 0);
    rq_rep_dequant(&t, w);
    CHECK(!memcmp(w, w1, n * sizeof *w) && t.K == 3 && t.rot_kind[0] == RQ_REP_ROT_NONE &&
          t.rot_kind[2] == RQ_REP_ROT_RH);
    CHECK(t.rot_seed[1] == rq_rep_rot_seed(0, 1) && t.rot_seed[1] != t.rot_seed[2]);
    rq_rep_free(&t);
    o.K = 3;
    o.vary_rot = true;
    REQUIRE(rq_rep_opts_check(&o) == 0);
    REQUIRE(rq_rep_fit(L.h, L.w, L.m, L.n, &g, &go, &o, &t, &tr) == 0);
    CHECK(rq_rep_rotated(&t) && !rq_rep_collapses(&t, 1e-3));
    CHECK(!memcmp(t.q, one.q, n)); /* the codes stay the K = 1 fit's */
    int a_kept, b_kept;
    double J = check_trace(&tr, tr1.n, &a_kept, &b_kept);
    CHECKF(tr.n == tr1.n + 3 * (1 + 2) && a_kept >= 1 && b_kept >= 1, "%d steps, %d a and %d b kept", tr.n, a_kept,
           b_kept);
    rq_rep_dequant(&t, w);
    double Jf = rq_layer_error(rq_gptq_hessian(L.h), L.w, w, L.m, L.n);
    CHECKF(Jf == tr.J_final && J == tr.J_final, "reported %g, recomputed %g", tr.J_final, Jf);
    CHECKF(tr.J_final < 0.99 * tr1.J_final, "rotated K=3 %g, K=1 %g", tr.J_final, tr1.J_final);
    printf("  rotated K=3: relative layer error %.5f (K=1 %.5f)\n", tr.J_final / tr.J_zero, tr1.J_final / tr1.J_zero);
    REQUIRE(rq_rep_fit(L.h, L.w, L.m, L.n, &g, &go, &o, &t2, NULL) == 0);
    CHECK(same_rep(&t, &t2));
    rq_rep_free(&t2);
    rq_rep_free(&t);
    /* a rejected step is undone: with one NaN in the target the objective is NaN from
     * the start, so no step is kept (NaN <= NaN is false). The a-steps still change the
     * row factors of every row without the NaN before they are rejected, so the tensor
     * comes back exactly as it started (the K = 1 tensor) only if settle restores them.
     * The b-steps change nothing here (every a_k, k >= 1, is still 0), so the column
     * factors' restore, the same code with other arguments, is not exercised. */
    {
        float *wn = rq_malloc(n * sizeof *wn);
        memcpy(wn, L.w, n * sizeof *wn);
        wn[5 * L.n + 7] = NAN;
        rq_rep_trace trn = {0};
        REQUIRE(rq_rep_extend_rotated(rq_gptq_hessian(L.h), wn, &one, 3, 0, 2, true, &t, &trn) == 0);
        int kept = 0;
        for (int s = 1; s < trn.n; s++)
            kept += trn.kept[s];
        rq_rep_dequant(&t, w);
        CHECKF(trn.n == 1 + 2 * (1 + 2) && kept == 0 && !memcmp(w, w1, n * sizeof *w), "%d steps, %d kept", trn.n,
               kept);
        rq_rep_free(&t);
        free(wn);
    }
    /* refusals: K = 1, no row factors, paths after the nonlinearity */
    o.K = 1;
    CHECK(rq_rep_opts_check(&o) == -1 && strstr(rq_error(), "k >= 2"));
    o.K = 2;
    o.vary_out = false;
    CHECK(rq_rep_opts_check(&o) == -1 && strstr(rq_error(), "\"out\""));
    o.vary_out = true;
    o.combine = RQ_REP_COMBINE_MLP;
    CHECK(rq_rep_opts_check(&o) == -1 && strstr(rq_error(), "\"linear\""));
    o.combine = RQ_REP_COMBINE_LINEAR;
    o.vary_in = false; /* row factors alone are not one decoder across bases */
    CHECK(rq_rep_opts_check(&o) == 0);
    CHECK(rq_rep_extend_rotated(rq_gptq_hessian(L.h), L.w, &one, 1, 0, 1, true, &t, NULL) == -1 &&
          strstr(rq_error(), "K = 1"));
    free(w), free(w1);
    rq_rep_free(&one);
    synth_free(&L);
}

/* The least-squares steps of the rotation ensemble reach their optimum: computed
 * here independently, in double with the dense U_k, the best row factors of both
 * replicas (only the a-step runs) and the best column factors of the rotated one
 * given the row factors (one a-step, one b-step) are no better than what the fit
 * stored, up to the f16 rounding of the factors. */
static void test_rot_steps_optimal(void) {
    const int64_t R = 12, C = 24;
    synth_layer L;
    synth_make(&L, R, C, 512, 9);
    rq_grid g = w2();
    rq_gptq_opts go = gopts();
    rq_rep_opts o = rq_rep_opts_default();
    o.iters = 2;
    rq_rep one;
    REQUIRE(rq_rep_fit(L.h, L.w, R, C, &g, &go, &o, &one, NULL) == 0);
    const float *H = rq_gptq_hessian(L.h);
    float *w0 = rq_malloc((size_t)(R * C) * sizeof *w0), *w1 = rq_malloc((size_t)(R * C) * sizeof *w1);
    float *what = rq_malloc((size_t)(R * C) * sizeof *what), *U = rq_malloc((size_t)(C * C) * sizeof *U);
    double Cc[12 * 24], UHU[24 * 24], HR[24 * 12];
    const double m = 1.5;
    for (int vary_in = 0; vary_in < 2; vary_in++) {
        rq_rep t;
        rq_rep_trace tr = {0};
        REQUIRE(rq_rep_extend_rotated(H, L.w, &one, 2, 0, 1, vary_in, &t, &tr) == 0);
        CHECKF(tr.n == 2 + vary_in && tr.kept[1] && (!vary_in || tr.kept[2]), "%d steps", tr.n);
        rq_orth *q = rq_orth_new(C, RQ_ORTH_RH, t.rot_seed[1]);
        rq_orth_dense(q, U);
        rq_orth_free(q);
        for (int64_t i = 0; i < R * C; i++)
            Cc[i] = (double)t.q[i] - m + t.o[0];
        rq_rep_dequant(&t, what);
        double J = rq_layer_error(H, L.w, what, R, C), Jbest;
        if (!vary_in) { /* per row, the 2 x 2 normal equations over F_0 = Cc .* b_0, F_1 = (Cc .* b_1) U^T */
            float *F[2] = {w0, w1};
            for (int64_t r = 0; r < R; r++)
                for (int64_t c = 0; c < C; c++) {
                    w0[r * C + c] = (float)(Cc[r * C + c] * rq_fp16_to_fp32(t.b[c]));
                    double v = 0;
                    for (int64_t j = 0; j < C; j++)
                        v += Cc[r * C + j] * rq_fp16_to_fp32(t.b[C + j]) * U[c * C + j];
                    w1[r * C + c] = (float)v;
                }
            for (int64_t r = 0; r < R; r++) {
                double G[4] = {0}, h[2] = {0};
                for (int64_t c = 0; c < C; c++)
                    for (int64_t d = 0; d < C; d++) {
                        double hd = H[c * C + d];
                        for (int k = 0; k < 2; k++) {
                            h[k] += F[k][r * C + c] * hd * L.w[r * C + d];
                            for (int l = 0; l < 2; l++)
                                G[k * 2 + l] += F[k][r * C + c] * hd * F[l][r * C + d];
                        }
                    }
                REQUIRE(LAPACKE_dposv(LAPACK_ROW_MAJOR, 'U', 2, 1, G, 2, h, 1) == 0);
                for (int64_t c = 0; c < C; c++)
                    what[r * C + c] = (float)(h[0] * w0[r * C + c] + h[1] * w1[r * C + c]);
            }
        } else { /* b_1 given the row factors: (U^T H U .* (A Cc)^T (A Cc)) b = diag((A Cc)^T (U^T H R^T)) */
            rq_rep_dequant_replica(&t, 0, w0);
            for (int64_t j = 0; j < C; j++)
                for (int64_t l = 0; l < C; l++) {
                    double v = 0;
                    for (int64_t c = 0; c < C; c++)
                        for (int64_t d = 0; d < C; d++)
                            v += U[c * C + j] * H[c * C + d] * U[d * C + l];
                    UHU[j * C + l] = v;
                }
            for (int64_t j = 0; j < C; j++) /* (U^T H R^T)[j, r], R = W - W_0 */
                for (int64_t r = 0; r < R; r++) {
                    double v = 0;
                    for (int64_t c = 0; c < C; c++)
                        for (int64_t d = 0; d < C; d++)
                            v += U[c * C + j] * H[c * C + d] * (L.w[r * C + d] - w0[r * C + d]);
                    HR[j * R + r] = v;
                }
            double G[24 * 24], h[24] = {0};
            for (int64_t j = 0; j < C; j++) {
                for (int64_t l = 0; l < C; l++) {
                    double v = 0;
                    for (int64_t r = 0; r < R; r++) {
                        double a = rq_fp16_to_fp32(t.a[R + r]);
                        v += a * a * Cc[r * C + j] * Cc[r * C + l];
                    }
                    G[j * C + l] = v * UHU[j * C + l];
                }
                for (int64_t r = 0; r < R; r++)
                    h[j] += rq_fp16_to_fp32(t.a[R + r]) * Cc[r * C + j] * HR[j * R + r];
            }
            REQUIRE(LAPACKE_dposv(LAPACK_ROW_MAJOR, 'U', (int)C, 1, G, (int)C, h, 1) == 0);
            for (int64_t r = 0; r < R; r++)
                for (int64_t c = 0; c < C; c++) {
                    double v = 0;
                    for (int64_t j = 0; j < C; j++)
                        v += rq_fp16_to_fp32(t.a[R + r]) * Cc[r * C + j] * h[j] * U[c * C + j];
                    what[r * C + c] = (float)(w0[r * C + c] + v);
                }
        }
        Jbest = rq_layer_error(H, L.w, what, R, C);
        CHECKF(J <= Jbest * (1 + 1e-3) && Jbest <= J * (1 + 1e-3), "%s-step: fit %.9g, optimum %.9g",
               vary_in ? "b" : "a", J, Jbest);
        rq_rep_free(&t);
    }
    free(w0), free(w1), free(what), free(U);
    rq_rep_free(&one);
    synth_free(&L);
}

/* Blobs that say more than they hold are refused: the rotation flag with no
 * rotated replica, a seed on a replica without rotation. A replica that adds
 * nothing (a_k = 0) does not make its basis count: with it the others collapse. */
static void test_rot_canonical(void) {
    rq_rep t, u;
    random_rep(&t, 2, 3, 4, 8, 80);
    rotate_odd(&t);
    size_t n = rq_rep_size(2, 3, 4, 8, true);
    uint8_t *b = rq_malloc(n);
    REQUIRE(rq_rep_pack(&t, b) == 0);
    uint8_t *kinds = b + n - 8 - 3 * 8, *seeds = kinds + 8;
    kinds[1] = RQ_REP_ROT_NONE;
    CHECK(rq_rep_unpack(b, n, &u) == -1 && strstr(rq_error(), "no replica is rotated"));
    seeds[8] = 0; /* replica 1's seed, low byte */
    CHECK(rq_rep_unpack(b, n, &u) == -1 && strstr(rq_error(), "no replica is rotated"));
    kinds[1] = RQ_REP_ROT_RH;
    seeds[0] = 5; /* a seed on replica 0, which has no rotation */
    CHECK(rq_rep_unpack(b, n, &u) == -1 && strstr(rq_error(), "replica 0 has no rotation but a rotation seed"));
    CHECK(rq_rep_pack(&t, b) == 0);
    /* b_k proportional: collapses only once the rotated replica adds nothing */
    for (int k = 1; k < 3; k++)
        memcpy(t.b + k * 8, t.b, 8 * 2);
    CHECK(!rq_rep_collapses(&t, 1e-3));
    for (int64_t r = 0; r < 4; r++)
        t.a[4 + r] = 0;
    CHECK(rq_rep_collapses(&t, 1e-3));
    free(b);
    rq_rep_free(&t);
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
    RUN(test_rot_roundtrip);
    RUN(test_rot_matvec);
    RUN(test_rot_fit);
    RUN(test_rot_steps_optimal);
    RUN(test_rot_canonical);
    TEST_EXIT();
}
