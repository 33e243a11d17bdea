/* gemm.h - row-major SGEMM and SYRK whose results do not depend on the thread count. */
#ifndef RQ_GEMM_H
#define RQ_GEMM_H

#include <cblas.h>

/* C[M, N] = alpha * op(A) * op(B) + beta * C, row-major, as cblas_sgemm with CblasRowMajor.
 * OpenBLAS runs single-threaded; the larger of M and N is cut into chunks fixed by the
 * shape alone, each one OpenBLAS call, spread over rq_parallel_for's threads. So every
 * element is computed by the same call whatever the thread count, and -t 1 and -t 2 give
 * bit-identical products (OpenBLAS's own threading did not: quantized files differed). */
void rq_sgemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);

/* The upper triangle of C[n, n] = alpha * X^T X + beta * C for X[k, n] row-major (as
 * cblas_ssyrk with CblasRowMajor, CblasUpper, CblasTrans), thread-count independent like
 * rq_sgemm. Also writes the lower halves of the diagonal 128 x 128 tiles; the rest of the
 * lower triangle is untouched. */
void rq_ssyrk_upper_t(int n, int k, float alpha, const float *X, int ldx, float beta, float *C, int ldc);

/* Put OpenBLAS on one thread (idempotent; rq_sgemm does it on first use). Call before
 * LAPACK if no product ran yet, so that LAPACK's own products are single-threaded too. */
void rq_blas_single(void);

#endif
