/* bench_sgemm.c - SGEMM throughput on this machine, at a large square shape and at the
 * shapes of SmolLM2's forward pass (512 tokens) and Qwen2.5-1.5B's calibration pass
 * (2048 tokens), so the forward pass's GFLOP/s can be read as a fraction of what GEMM
 * reaches. Two paths: "openblas" (one OpenBLAS call on its own threads) and "repliq"
 * (rq_sgemm: single-threaded OpenBLAS calls on chunks fixed by the shape, spread over
 * repliq's threads; what repliq uses since its results were made thread-count
 * independent). Validates one product against a scalar loop first. Prints one JSON
 * line per shape and path.
 * usage: bench_sgemm [threads] */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/utsname.h>

#include "forward.h"
#include "gemm.h"
#include "util.h"

void openblas_set_num_threads(int num_threads);

static void product(bool rq, int M, int N, int K, const float *a, const float *b, float *c) {
    if (rq)
        rq_sgemm(CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
}

static double bench(bool rq, int M, int N, int K, int reps) {
    float *a = rq_malloc((size_t)M * K * 4), *b = rq_malloc((size_t)N * K * 4), *c = rq_malloc((size_t)M * N * 4);
    for (size_t i = 0; i < (size_t)M * K; i++)
        a[i] = (float)((i * 7) % 13) * 0.1f;
    for (size_t i = 0; i < (size_t)N * K; i++)
        b[i] = (float)((i * 5) % 11) * 0.1f;
    product(rq, M, N, K, a, b, c);
    double t0 = rq_time();
    for (int r = 0; r < reps; r++)
        product(rq, M, N, K, a, b, c);
    double dt = (rq_time() - t0) / reps;
    free(a);
    free(b);
    free(c);
    return 2.0 * M * N * K / dt / 1e9;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    rq_set_threads(threads);
    /* validate: y = x W^T through BLAS equals the scalar reference */
    rq_linear l = {rq_malloc(37 * 29 * 4), NULL, 37, 29};
    float x[5 * 29], y0[5 * 37], y1[5 * 37];
    for (int i = 0; i < 37 * 29; i++)
        l.w[i] = sinf((float)i);
    for (int i = 0; i < 5 * 29; i++)
        x[i] = cosf((float)i);
    rq_linear_ref(&l, x, 5, y0);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 5, 37, 29, 1.0f, x, 29, l.w, 29, 0.0f, y1, 37);
    for (int i = 0; i < 5 * 37; i++)
        if (fabsf(y0[i] - y1[i]) > 1e-4f) {
            fprintf(stderr, "bench_sgemm: BLAS disagrees with the reference at %d\n", i);
            return 1;
        }
    free(l.w);
    struct utsname u;
    uname(&u);
    static const struct {
        const char *what;
        int M, N, K, reps;
    } shapes[] = {{"square 2048", 2048, 2048, 2048, 5},
                  {"smollm2 q/o 512x576x576", 512, 576, 576, 50},
                  {"smollm2 k/v 512x192x576", 512, 192, 576, 100},
                  {"smollm2 gate/up 512x1536x576", 512, 1536, 576, 30},
                  {"smollm2 down 512x576x1536", 512, 576, 1536, 30},
                  {"smollm2 output 64x49152x576", 64, 49152, 576, 5},
                  {"qwen q/o 2048x1536x1536", 2048, 1536, 1536, 5},
                  {"qwen gate/up 2048x8960x1536", 2048, 8960, 1536, 2},
                  {"qwen down 2048x1536x8960", 2048, 1536, 8960, 2}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int rq = 0; rq <= 1; rq++) {
            openblas_set_num_threads(rq ? 1 : threads); /* repliq's path: OpenBLAS on one thread */
            printf("{\"bench\":\"sgemm\",\"path\":\"%s\",\"shape\":\"%s\",\"threads\":%d,\"gflops\":%.1f,"
                   "\"machine\":\"%s %s\"}\n",
                   rq ? "repliq" : "openblas", shapes[i].what, threads,
                   bench(rq, shapes[i].M, shapes[i].N, shapes[i].K, shapes[i].reps), u.machine, u.release);
            fflush(stdout);
        }
    return 0;
}
