/* gemm.c - thread-count independent SGEMM/SYRK on single-threaded OpenBLAS calls. */
#include "gemm.h"

#include <pthread.h>

#include "util.h"

void openblas_set_num_threads(int num_threads);

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static void blas_one(void) { openblas_set_num_threads(1); }
void rq_blas_single(void) { pthread_once(&blas_once, blas_one); }

/* chunks of at least CHUNK_MIN rows or columns, at most CHUNKS_MAX of them; products under
 * SMALL multiply-adds run on the calling thread (starting a thread costs tens of microseconds) */
enum { CHUNK_MIN = 256, CHUNKS_MAX = 16, SYRK_TILE = 128, SMALL = 1 << 21 };

/* chunks of [0, d): as many as d / CHUNK_MIN allows, at most CHUNKS_MAX */
static int n_chunks(int d) {
    int p = d / CHUNK_MIN;
    return p < 1 ? 1 : p > CHUNKS_MAX ? CHUNKS_MAX : p;
}

typedef struct {
    CBLAS_TRANSPOSE ta, tb;
    int M, N, K, lda, ldb, ldc, parts;
    bool split_m;
    float alpha, beta;
    const float *A, *B;
    float *C;
} gemm_job;

static void gemm_parts(void *ctx, int64_t lo, int64_t hi) {
    const gemm_job *g = ctx;
    int d = g->split_m ? g->M : g->N;
    for (int64_t p = lo; p < hi; p++) {
        int a = (int)((int64_t)d * p / g->parts), b = (int)((int64_t)d * (p + 1) / g->parts);
        if (b <= a) continue;
        if (g->split_m) {
            const float *A = g->ta == CblasNoTrans ? g->A + (size_t)a * g->lda : g->A + a;
            cblas_sgemm(CblasRowMajor, g->ta, g->tb, b - a, g->N, g->K, g->alpha, A, g->lda, g->B, g->ldb, g->beta,
                        g->C + (size_t)a * g->ldc, g->ldc);
        } else {
            const float *B = g->tb == CblasNoTrans ? g->B + a : g->B + (size_t)a * g->ldb;
            cblas_sgemm(CblasRowMajor, g->ta, g->tb, g->M, b - a, g->K, g->alpha, g->A, g->lda, B, g->ldb, g->beta,
                        g->C + a, g->ldc);
        }
    }
}

void rq_sgemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    rq_blas_single();
    if (M <= 0 || N <= 0) return;
    bool split_m = M >= N;
    if ((double)M * N * K < SMALL) { /* not worth a thread: one call here (a rule on the shape alone) */
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    gemm_job g = {ta, tb, M, N, K, lda, ldb, ldc, n_chunks(split_m ? M : N), split_m, alpha, beta, A, B, C};
    rq_parallel_for(g.parts, gemm_parts, &g);
}

typedef struct {
    int n, k, ldx, ldc, tiles;
    float alpha, beta;
    const float *X;
    float *C;
} syrk_job;

/* tile column t: C[0:j1, j0:j1] = alpha X[:, 0:j1]^T X[:, j0:j1] + beta C[...] */
static void syrk_tile(const syrk_job *s, int t) {
    int j0 = t * SYRK_TILE, j1 = j0 + SYRK_TILE < s->n ? j0 + SYRK_TILE : s->n;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, j1, j1 - j0, s->k, s->alpha, s->X, s->ldx, s->X + j0, s->ldx,
                s->beta, s->C + j0, s->ldc);
}

/* job p pairs the tile columns p and tiles-1-p, so that the jobs hold about equal work */
static void syrk_pairs(void *ctx, int64_t lo, int64_t hi) {
    const syrk_job *s = ctx;
    for (int64_t p = lo; p < hi; p++) {
        syrk_tile(s, (int)p);
        if (s->tiles - 1 - p != p) syrk_tile(s, (int)(s->tiles - 1 - p));
    }
}

void rq_ssyrk_upper_t(int n, int k, float alpha, const float *X, int ldx, float beta, float *C, int ldc) {
    rq_blas_single();
    if (n <= 0) return;
    syrk_job s = {n, k, ldx, ldc, (n + SYRK_TILE - 1) / SYRK_TILE, alpha, beta, X, C};
    rq_parallel_for((s.tiles + 1) / 2, syrk_pairs, &s);
}
