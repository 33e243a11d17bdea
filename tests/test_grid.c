/* test_grid.c - the uniform grid on its own: validation, level placement, offset,
 * 1-bit levels, the clipping search, the generator and the reference dequantizer. */
#include <math.h>

#include "grid.h"
#include "rq_test.h"
#include "util.h"

/* Gaussian draws from the project's generator, so the tests are reproducible. */
static float gauss(rq_rng *r) {
    double u = (rq_rng_uniform(r) + 0x1p-25), v = rq_rng_uniform(r);
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static void test_check_refuses(void) {
    rq_grid g = rq_grid_default();
    CHECK(rq_grid_check(&g) == 0);
    struct {
        rq_grid g;
        const char *field;
    } bad[6];
    for (int i = 0; i < 6; i++)
        bad[i].g = rq_grid_default();
    bad[0].g.bits = 0, bad[0].field = "bits";
    bad[1].g.bits = 9, bad[1].field = "bits";
    bad[2].g.group = -1, bad[2].field = "group";
    bad[3].g.offset = 0.7f, bad[3].field = "offset";
    bad[4].g.bits = 2, bad[4].g.binres = true, bad[4].field = "binres";
    bad[5].g.mse_min = 0.0f, bad[5].field = "mse_min";
    for (int i = 0; i < 6; i++) {
        CHECKF(rq_grid_check(&bad[i].g) != 0, "case %d accepted", i);
        CHECKF(strstr(rq_error(), bad[i].field) != NULL, "case %d message '%s'", i, rq_error());
    }
    g.bits = 1;
    g.binres = true;
    CHECK(rq_grid_check(&g) == 0);
}

static void test_levels_symmetric_and_offset(void) {
    const float s = 0.37f, m = -1.25f, tol = 1e-6f; /* relative: float rounding of the level */
    for (int bits = 1; bits <= 8; bits++) {
        int maxq = (1 << bits) - 1;
        rq_grid g = rq_grid_default();
        g.bits = bits;
        g.sym = true;
        for (int q = 0; q <= maxq; q++) /* symmetric around 0 */
            CHECKF(fabsf(rq_grid_value(&g, s, 0, q) + rq_grid_value(&g, s, 0, maxq - q)) <= tol, "bits %d q %d", bits,
                   q);
        for (int sym = 0; sym <= 1; sym++) {
            rq_grid a = g, b = g;
            a.sym = b.sym = sym;
            b.offset = 0.25f;
            int bad_shift = 0;
            for (int q = 0; q <= maxq; q++) { /* the offset moves every level by offset * scale */
                float va = rq_grid_value(&a, s, m, q), d = rq_grid_value(&b, s, m, q) - va;
                bad_shift += fabsf(d - 0.25f * s) > tol * (1.0f + fabsf(va));
                /* and a level maps back to its own code */
                CHECKF(rq_grid_code(&b, s, m, rq_grid_value(&b, s, m, q), NULL) == q, "bits %d sym %d q %d", bits, sym,
                       q);
            }
            CHECKF(bad_shift == 0, "bits %d sym %d: %d levels not shifted by offset * scale", bits, sym, bad_shift);
        }
    }
    rq_grid g = rq_grid_default();
    g.bits = 4;
    g.sym = true;
    CHECK(rq_grid_value(&g, 1.0f, 0, 15) == 7.5f && rq_grid_value(&g, 1.0f, 0, 0) == -7.5f);
    /* a zero scale decodes to 0 (symmetric) or the minimum */
    CHECK(rq_grid_value(&g, 0.0f, 0, rq_grid_code(&g, 0.0f, 0, 3.0f, NULL)) == 0.0f);
}

static void test_fit_minmax(void) {
    const float w[6] = {-0.5f, 0.25f, 1.5f, -2.0f, 0.0f, 1.0f};
    rq_grid g = rq_grid_default();
    uint16_t s, m;
    rq_grid_fit(&g, w, NULL, 6, &s, &m);
    CHECK(s == rq_fp32_to_fp16(3.5f / 15.0f) && m == rq_fp32_to_fp16(-2.0f));
    g.sym = true;
    rq_grid_fit(&g, w, NULL, 6, &s, &m);
    CHECK(s == rq_fp32_to_fp16(2.0f / 7.5f) && m == 0);
}

/* 1 bit: symmetric levels are +-mean|w|; with a minimum they are the means of
 * the values either side of the mean. */
static void test_one_bit_levels(void) {
    const float w[8] = {-3.0f, -1.0f, -0.5f, 0.5f, 1.0f, 2.0f, 2.5f, 4.5f};
    const float tol = 2e-3f; /* f16 rounding of the parameters */
    rq_grid g = rq_grid_default();
    g.bits = 1;
    g.sym = true;
    uint16_t s, m;
    rq_grid_fit(&g, w, NULL, 8, &s, &m);
    float fs = rq_fp16_to_fp32(s), mabs = 15.0f / 8.0f;
    CHECKF(fabsf(rq_grid_value(&g, fs, 0, 1) - mabs) < tol && fabsf(rq_grid_value(&g, fs, 0, 0) + mabs) < tol,
           "levels %g %g", rq_grid_value(&g, fs, 0, 0), rq_grid_value(&g, fs, 0, 1));
    CHECK(rq_grid_code(&g, fs, 0, -0.1f, NULL) == 0 && rq_grid_code(&g, fs, 0, 0.1f, NULL) == 1);
    g.sym = false;
    rq_grid_fit(&g, w, NULL, 8, &s, &m);
    float fm = rq_fp16_to_fp32(m);
    fs = rq_fp16_to_fp32(s);
    /* mean 0.75: below {-3,-1,-0.5,0.5} mean -1, above {1,2,2.5,4.5} mean 2.5 */
    CHECKF(fabsf(rq_grid_value(&g, fs, fm, 0) + 1.0f) < tol && fabsf(rq_grid_value(&g, fs, fm, 1) - 2.5f) < tol,
           "levels %g %g", rq_grid_value(&g, fs, fm, 0), rq_grid_value(&g, fs, fm, 1));
}

static double sq_err(const rq_grid *g, const float *w, int n, uint16_t s16, uint16_t m16) {
    float s = rq_fp16_to_fp32(s16), m = rq_fp16_to_fp32(m16);
    double e = 0;
    for (int i = 0; i < n; i++) {
        double d = (double)rq_grid_value(g, s, m, rq_grid_code(g, s, m, w[i], NULL)) - w[i];
        e += d * d;
    }
    return e;
}

/* The clipping search starts from the unclipped range and keeps only strict
 * improvements, so it can never be worse; on heavy tails it should help. */
static void test_mse_search_never_worse(void) {
    rq_rng rng;
    rq_rng_seed(&rng, 7, 0);
    enum { N = 64, GROUPS = 200 };
    float w[N];
    int improved = 0, worse = 0;
    for (int bits = 1; bits <= 4; bits++)
        for (int sym = 0; sym <= 1; sym++)
            for (int k = 0; k < GROUPS / 8; k++) {
                for (int i = 0; i < N; i++)
                    w[i] = gauss(&rng) * (i == k % N ? 6.0f : 1.0f); /* one outlier */
                rq_grid g = rq_grid_default();
                g.bits = bits;
                g.sym = sym;
                uint16_t s0, m0, s1, m1;
                rq_grid_fit(&g, w, NULL, N, &s0, &m0);
                g.mse = true;
                rq_grid_fit(&g, w, NULL, N, &s1, &m1);
                double e0 = sq_err(&g, w, N, s0, m0), e1 = sq_err(&g, w, N, s1, m1);
                worse += e1 > e0;
                improved += e1 < e0;
            }
    CHECKF(worse == 0, "%d groups got worse", worse);
    CHECKF(improved > GROUPS / 2, "only %d of %d groups improved", improved, GROUPS);
}

static void test_rng(void) {
    rq_rng a, b, c;
    rq_rng_seed(&a, 42, 3);
    rq_rng_seed(&b, 42, 3);
    rq_rng_seed(&c, 42, 4);
    int same = 1, differ = 0, in_range = 1;
    double mean = 0;
    enum { N = 10000 };
    for (int i = 0; i < N; i++) {
        float x = rq_rng_uniform(&a), y = rq_rng_uniform(&b), z = rq_rng_uniform(&c);
        same &= x == y;
        differ += x != z;
        in_range &= x >= 0.0f && x < 1.0f;
        mean += x;
    }
    mean /= N;
    CHECK(same && differ > N - 10 && in_range);
    /* mean of N uniforms: standard error 1/sqrt(12 N); allow 5 */
    CHECKF(fabs(mean - 0.5) < 5.0 / sqrt(12.0 * N), "mean %g", mean);
}

/* The reference dequantizer, including the last shorter group and the residual. */
static void test_dequant_layout(void) {
    rq_grid g = rq_grid_default();
    g.bits = 1;
    g.sym = true;
    g.group = 2;
    g.binres = true;
    rq_qtensor t;
    rq_qtensor_alloc(&t, &g, 2, 3, 1);
    CHECK(t.group == 2 && t.n_groups == 2 && t.min == NULL);
    for (int i = 0; i < 4; i++)
        t.scale[i] = rq_fp32_to_fp16((float)(i + 1)); /* levels +-(i+1)/2 */
    const uint8_t q[6] = {1, 0, 1, 0, 1, 0};
    memcpy(t.q, q, 6);
    t.sal_cols[0] = 1;
    t.rq[0] = 1, t.rq[1] = 0;
    t.rscale[0] = rq_fp32_to_fp16(0.25f), t.rscale[1] = rq_fp32_to_fp16(0.125f);
    float out[6];
    rq_qtensor_dequant(&t, out);
    const float want[6] = {0.5f, -0.5f + 0.25f, 1.0f, -1.5f, 1.5f - 0.125f, -2.0f};
    for (int i = 0; i < 6; i++)
        CHECKF(out[i] == want[i], "out[%d] = %g, want %g", i, out[i], want[i]);
    rq_qtensor_free(&t);
}

int main(void) {
    RUN(test_check_refuses);
    RUN(test_levels_symmetric_and_offset);
    RUN(test_fit_minmax);
    RUN(test_one_bit_levels);
    RUN(test_mse_search_never_worse);
    RUN(test_rng);
    RUN(test_dequant_layout);
    TEST_EXIT();
}
