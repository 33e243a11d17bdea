/* test_actq.c - simulated activation and KV quantization: error bounds of the
 * integer grids, exact f16/bf16 rounding, groups of min(128, head_dim). */
#include <math.h>
#include <stdint.h>

#include "actq.h"
#include "rq_test.h"
#include "util.h"

static void fill(float *x, int n, unsigned s) {
    for (int i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        x[i] = ((float)((s >> 8) & 0xffff) / 65535.0f - 0.5f) * 4.0f;
    }
}

/* Per token: error at most half a step, where step = clip*max|x| / (2^(b-1)-1),
 * except for clipped values; at most 2^b - 1 distinct levels. */
static void test_tokens_int(void) {
    enum { N = 5, D = 77 };
    float x[N * D], y[N * D];
    fill(x, N * D, 3);
    x[10] = 9.0f; /* an outlier in token 0 */
    for (int bits = 2; bits <= 8; bits++)
        for (int ci = 0; ci < 2; ci++) {
            float clip = ci ? 0.8f : 1.0f;
            memcpy(y, x, sizeof x);
            rq_actq_tokens(y, N, D, bits, clip, false);
            float qmax = (float)((1 << (bits - 1)) - 1);
            for (int t = 0; t < N; t++) {
                float a = 0;
                for (int i = 0; i < D; i++)
                    a = fmaxf(a, fabsf(x[t * D + i]));
                float step = clip * a / qmax, lim = clip * a;
                for (int i = 0; i < D; i++) {
                    float xi = x[t * D + i], want = fminf(fmaxf(xi, -lim), lim);
                    CHECKF(fabsf(y[t * D + i] - want) <= 0.5f * step * 1.0001f, "bits %d clip %g token %d: %g -> %g",
                           bits, clip, t, xi, y[t * D + i]);
                    float k = y[t * D + i] / step;
                    CHECKF(fabsf(k - roundf(k)) < 1e-3f && fabsf(k) <= qmax + 1e-3f, "not on the grid: %g", k);
                }
            }
        }
}

static void test_tokens_16(void) {
    enum { N = 3, D = 50 };
    float x[N * D], y[N * D];
    fill(x, N * D, 9);
    for (int bf = 0; bf < 2; bf++) {
        memcpy(y, x, sizeof x);
        rq_actq_tokens(y, N, D, 16, 1.0f, bf);
        int changed = 0;
        for (int i = 0; i < N * D; i++) {
            float want = bf ? rq_bf16_to_fp32(rq_fp32_to_bf16(x[i])) : rq_fp16_to_fp32(rq_fp32_to_fp16(x[i]));
            CHECK(y[i] == want);
            changed += y[i] != x[i];
        }
        CHECKF(changed > N * D / 2, "16-bit rounding left %d of %d values unchanged", N * D - changed, N * D);
    }
    memcpy(y, x, sizeof x);
    rq_actq_tokens(y, N, D, 0, 1.0f, false);
    CHECK(memcmp(x, y, sizeof x) == 0);
}

/* KV: each group of min(128, hd) values of a head spans exactly its own min..max. */
static void test_kv(void) {
    const int hds[2] = {64, 192}; /* one group, and 128 + 64 */
    for (int k = 0; k < 2; k++) {
        int hd = hds[k], nh = 2, n = 3, D = nh * hd;
        float *x = malloc(sizeof(float) * n * D), *y = malloc(sizeof(float) * n * D);
        fill(x, n * D, 5 + k);
        for (int bits = 2; bits <= 8; bits += 2) {
            memcpy(y, x, sizeof(float) * n * D);
            rq_kvq_tokens(y, n, nh, hd, bits);
            int gs = hd < 128 ? hd : 128;
            for (int r = 0; r < n * nh; r++)
                for (int g0 = 0; g0 < hd; g0 += gs) {
                    int len = hd - g0 < gs ? hd - g0 : gs;
                    float lo = INFINITY, hi = -INFINITY;
                    for (int i = 0; i < len; i++) {
                        lo = fminf(lo, x[r * hd + g0 + i]);
                        hi = fmaxf(hi, x[r * hd + g0 + i]);
                    }
                    float step = (hi - lo) / (float)((1 << bits) - 1);
                    for (int i = 0; i < len; i++) {
                        float d = fabsf(y[r * hd + g0 + i] - x[r * hd + g0 + i]);
                        CHECKF(d <= 0.5f * step * 1.0001f + 1e-6f, "hd %d bits %d: error %g > half step %g", hd, bits,
                               d, step / 2);
                    }
                }
        }
        free(x);
        free(y);
    }
}

static void test_check(void) {
    rq_actq a = {.a_bits = 8, .a_clip = 1.0f, .kv_bits = 4};
    CHECK(rq_actq_check(&a) == 0);
    a.keep_massive = -1.0f;
    CHECK(rq_actq_check(&a) != 0 && strstr(rq_error(), "keep_massive"));
    a.keep_massive = 20.0f;
    CHECK(rq_actq_check(&a) == 0);
    a.a_bits = 1;
    CHECK(rq_actq_check(&a) != 0 && strstr(rq_error(), "act bits"));
    a.a_bits = 8;
    a.a_clip = 0.0f;
    CHECK(rq_actq_check(&a) != 0 && strstr(rq_error(), "clip"));
    a.a_clip = 1.0f;
    a.kv_bits = 12;
    CHECK(rq_actq_check(&a) != 0 && strstr(rq_error(), "kv bits"));
}

int main(void) {
    RUN(test_tokens_int);
    RUN(test_tokens_16);
    RUN(test_kv);
    RUN(test_check);
    TEST_EXIT();
}
