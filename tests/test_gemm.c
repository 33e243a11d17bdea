/* test_gemm.c - rq_sgemm and rq_ssyrk_upper_t: the product of a double reference within
 * float rounding, every transposition, padded leading dimensions, alpha and beta; and
 * the same bits with 1, 2 and 3 threads. */
#include <stdint.h>

#include "forward.h"
#include "gemm.h"
#include "rq_test.h"
#include "util.h"

static float urand(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static float *rand_mat(size_t n, uint32_t seed) {
    float *a = rq_malloc(n * sizeof *a);
    for (size_t i = 0; i < n; i++)
        a[i] = urand(&seed);
    return a;
}

/* op(X)[i][j] of a row-major X with leading dimension ld */
static double at(const float *x, int ld, bool t, int i, int j) {
    return t ? x[(size_t)j * ld + i] : x[(size_t)i * ld + j];
}

/* Run op on a copy of C0 (n floats) with 1, 2 and 3 threads. C gets the one-thread result;
 * returns how many other thread counts gave other bits. */
static int across_threads(void (*op)(const void *ctx, float *C), const void *ctx, const float *C0, float *C, size_t n) {
    int bad = 0;
    float *Ct = rq_malloc(n * sizeof *Ct);
    for (int threads = 1; threads <= 3; threads++) {
        rq_set_threads(threads); /* as the CLI's -t does */
        memcpy(Ct, C0, n * sizeof *Ct);
        op(ctx, Ct);
        if (threads == 1)
            memcpy(C, Ct, n * sizeof *C);
        else
            bad += memcmp(Ct, C, n * sizeof *Ct) != 0;
    }
    free(Ct);
    rq_set_threads(2);
    return bad;
}

typedef struct {
    bool ta, tb;
    int M, N, K, lda, ldb, ldc;
    float alpha, beta;
    const float *A, *B;
} gemm_case;

static void gemm_op(const void *ctx, float *C) {
    const gemm_case *g = ctx;
    rq_sgemm(g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans, g->M, g->N, g->K, g->alpha, g->A,
             g->lda, g->B, g->ldb, g->beta, C, g->ldc);
}

typedef struct {
    int n, k, ldx, ldc;
    float alpha, beta;
    const float *X;
} syrk_case;

static void syrk_op(const void *ctx, float *C) {
    const syrk_case *s = ctx;
    rq_ssyrk_upper_t(s->n, s->k, s->alpha, s->X, s->ldx, s->beta, C, s->ldc);
}

/* Shapes with one chunk and with many, an M or an N that no chunk count divides, K odd; and
 * 576 x 1536 x 1000, where threaded OpenBLAS gives other bits with another thread count. */
static const int shapes[][3] = {{1, 1, 1},     {7, 300, 33},     {700, 65, 129},
                                {130, 131, 5}, {1100, 1030, 17}, {576, 1536, 1000}};

static void test_sgemm_matches_reference(void) {
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int tr = 0; tr < 4; tr++) {
            int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            bool ta = tr & 1, tb = tr & 2;
            int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 5;
            float *A = rand_mat((size_t)(ta ? K : M) * lda, 1 + tr), *B = rand_mat((size_t)(tb ? N : K) * ldb, 7 + tr);
            float *C0 = rand_mat((size_t)M * ldc, 13), *C = rq_malloc((size_t)M * ldc * sizeof *C);
            const float alpha = 0.75f, beta = -0.5f;
            gemm_case g = {ta, tb, M, N, K, lda, ldb, ldc, alpha, beta, A, B};
            int bad = across_threads(gemm_op, &g, C0, C, (size_t)M * ldc), pad_changed = 0;
            double worst = 0;
            int step = (double)M * N * K > 1e8 ? 7 : 1; /* the reference on every 7th row of a large product */
            for (int i = 0; i < M; i += step) {
                for (int j = 0; j < N; j++) {
                    double ref = 0, mag = 0;
                    for (int k = 0; k < K; k++) {
                        double p = at(A, lda, ta, i, k) * at(B, ldb, tb, k, j);
                        ref += p;
                        mag += fabs(p);
                    }
                    ref = alpha * ref + beta * C0[(size_t)i * ldc + j];
                    double err = fabs(C[(size_t)i * ldc + j] - ref) / (mag + 1.0);
                    if (err > worst) worst = err;
                }
                for (int j = N; j < ldc; j++) /* the padding between rows is not written */
                    pad_changed += C[(size_t)i * ldc + j] != C0[(size_t)i * ldc + j];
            }
            CHECKF(bad == 0, "M %d N %d K %d trans %d: %d thread counts gave other bits than one thread", M, N, K, tr,
                   bad);
            CHECKF(worst < 1e-5, "M %d N %d K %d trans %d: relative error %.3g", M, N, K, tr, worst);
            CHECKF(pad_changed == 0, "M %d N %d K %d trans %d: %d padding values written", M, N, K, tr, pad_changed);
            free(A), free(B), free(C0), free(C);
        }
}

static void test_syrk_upper(void) {
    const int sizes[][2] = {{1, 3}, {100, 7}, {300, 37}, {1030, 11}}; /* n: one tile, three, nine */
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int n = sizes[s][0], k = sizes[s][1], ldx = n + 1, ldc = n + 2;
        float *X = rand_mat((size_t)k * ldx, 5), *C0 = rand_mat((size_t)n * ldc, 9);
        float *C = rq_malloc((size_t)n * ldc * sizeof *C);
        const float alpha = 2.0f / 3.0f, beta = 0.25f;
        syrk_case sc = {n, k, ldx, ldc, alpha, beta, X};
        int bad = across_threads(syrk_op, &sc, C0, C, (size_t)n * ldc), lower_changed = 0;
        double worst = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                size_t ij = (size_t)i * ldc + j;
                if (j < i) { /* lower triangle: untouched outside the diagonal 128 x 128 tiles */
                    lower_changed += i / 128 != j / 128 && C[ij] != C0[ij];
                    continue;
                }
                double ref = 0, mag = 0;
                for (int r = 0; r < k; r++) {
                    double p = (double)X[(size_t)r * ldx + i] * X[(size_t)r * ldx + j];
                    ref += p;
                    mag += fabs(p);
                }
                ref = alpha * ref + beta * C0[ij];
                double err = fabs(C[ij] - ref) / (mag + 1.0);
                if (err > worst) worst = err;
            }
        CHECKF(bad == 0, "n %d k %d: %d thread counts gave other bits than one thread", n, k, bad);
        CHECKF(worst < 1e-5, "n %d k %d: relative error %.3g", n, k, worst);
        CHECKF(lower_changed == 0, "n %d k %d: %d values below the diagonal tiles written", n, k, lower_changed);
        free(X), free(C0), free(C);
    }
}

int main(void) {
    RUN(test_sgemm_matches_reference);
    RUN(test_syrk_upper);
    TEST_EXIT();
}
