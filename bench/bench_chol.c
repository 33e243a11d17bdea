/* bench_chol.c - the factorization GPTQ does once per layer (Cholesky of the damped Hessian,
 * then the triangular inverse: LAPACK spotrf + strtri, about 2/3 n^3 flops) at Qwen2.5-1.5B's
 * Hessian sizes, with OpenBLAS on one thread (what repliq uses, so that results do not depend
 * on the thread count) and on N. Prints one JSON line per size and thread count.
 * usage: bench_chol [threads] */
#include <cblas.h>
#include <lapacke.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/utsname.h>

#include "util.h"

void openblas_set_num_threads(int num_threads);

/* seconds for spotrf and strtri of a well-conditioned n x n matrix */
static int time_chol(int n, int threads, double *t_potrf, double *t_trtri) {
    openblas_set_num_threads(threads);
    enum { K = 256 };
    float *x = rq_malloc((size_t)n * K * sizeof *x), *h = rq_malloc((size_t)n * n * sizeof *h);
    unsigned s = 7;
    for (size_t i = 0; i < (size_t)n * K; i++) {
        s = s * 1103515245u + 12345u;
        x[i] = (float)((s >> 9) & 0xffff) / 65536.0f - 0.5f;
    }
    cblas_ssyrk(CblasColMajor, CblasLower, CblasNoTrans, n, K, 1.0f, x, n, 0.0f, h, n);
    for (int i = 0; i < n; i++)
        h[(size_t)i * n + i] += 1.0f;
    double t0 = rq_time();
    lapack_int info = LAPACKE_spotrf(LAPACK_COL_MAJOR, 'L', n, h, n);
    double t1 = rq_time();
    if (info == 0) info = LAPACKE_strtri(LAPACK_COL_MAJOR, 'L', 'N', n, h, n);
    *t_potrf = t1 - t0;
    *t_trtri = rq_time() - t1;
    free(x);
    free(h);
    return (int)info;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    struct utsname u;
    uname(&u);
    const int sizes[] = {1536, 8960};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int t = 1; t <= threads; t += threads > 1 ? threads - 1 : 1) {
            double tp, ti;
            if (time_chol(sizes[i], t, &tp, &ti)) {
                fprintf(stderr, "bench_chol: the factorization failed at n %d\n", sizes[i]);
                return 1;
            }
            printf("{\"bench\":\"chol\",\"n\":%d,\"openblas_threads\":%d,\"potrf_s\":%.3f,\"trtri_s\":%.3f,"
                   "\"machine\":\"%s %s\"}\n",
                   sizes[i], t, tp, ti, u.machine, u.release);
            fflush(stdout);
        }
    return 0;
}
