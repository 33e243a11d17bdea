/* bench_hadamard.c - the fast Hadamard transform (FWHT x dense factor) against a
 * dense GEMM by the same matrix, at the orders the models use: validates the two
 * agree, then times rows/s for each. One JSON line per order.
 * usage: bench_hadamard [threads] */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "forward.h"
#include "hadamard.h"
#include "util.h"

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    rq_set_threads(threads);
    static const int64_t orders[] = {128, 576, 1536, 896, 4864, 8960};
    struct utsname u;
    uname(&u);
    for (size_t k = 0; k < sizeof orders / sizeof orders[0]; k++) {
        int64_t n = orders[k], rows = 256;
        rq_orth *q = rq_orth_new(n, RQ_ORTH_RH, 1);
        if (!q) {
            fprintf(stderr, "%s\n", rq_error());
            return 1;
        }
        float *Q = rq_malloc((size_t)(n * n) * sizeof *Q);
        rq_orth_dense(q, Q);
        float *x = rq_malloc((size_t)(rows * n) * sizeof *x), *a = rq_malloc((size_t)(rows * n) * sizeof *a),
              *b = rq_malloc((size_t)(rows * n) * sizeof *b);
        for (int64_t i = 0; i < rows * n; i++)
            x[i] = (float)sin((double)i * 0.37);
        memcpy(a, x, (size_t)(rows * n) * sizeof *a);
        rq_orth_apply(q, a, rows);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)n, (int)n, 1.0f, x, (int)n, Q, (int)n,
                    0.0f, b, (int)n);
        double err = 0;
        for (int64_t i = 0; i < rows * n; i++)
            err = fmax(err, fabs((double)a[i] - b[i]));
        if (err > 1e-3) {
            fprintf(stderr, "bench_hadamard: n %lld: fast and dense differ by %g\n", (long long)n, err);
            return 1;
        }
        int reps = (int)(2e8 / ((double)rows * n * n) + 1);
        double t0 = rq_time();
        for (int r = 0; r < reps; r++) {
            memcpy(a, x, (size_t)(rows * n) * sizeof *a);
            rq_orth_apply(q, a, rows);
        }
        double fast = (rq_time() - t0) / reps;
        t0 = rq_time();
        for (int r = 0; r < reps; r++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)n, (int)n, 1.0f, x, (int)n, Q,
                        (int)n, 0.0f, b, (int)n);
        double dense = (rq_time() - t0) / reps;
        printf("{\"bench\":\"hadamard\",\"n\":%lld,\"construction\":\"%s\",\"rows\":%lld,\"max_diff\":%.3g,"
               "\"fast_rows_per_s\":%.0f,\"gemm_rows_per_s\":%.0f,\"threads\":%d,\"machine\":\"%s %s\"}\n",
               (long long)n, rq_orth_describe(q), (long long)rows, err, rows / fast, rows / dense, threads, u.machine,
               u.release);
        free(Q);
        free(x);
        free(a);
        free(b);
        rq_orth_free(q);
    }
    return 0;
}
