/* synth_layer.h - the synthetic layer of ../shared/notes/replication-synthetic.md,
 * regenerated with repliq's own generator (so the numbers differ from the NumPy
 * prototype's draws, not in kind): W[m, n] = t5 * exp(0.3 g_row) * exp(0.5 g_col)
 * (heavy tails, per-row and per-column magnitudes), inputs X[T, n] = Z (I + 0.5 G /
 * sqrt(n)) with 4 outlier channels times 20. Shared by test_replica and
 * bench/bench_rep_synth. */
#ifndef RQ_SYNTH_LAYER_H
#define RQ_SYNTH_LAYER_H

#include <cblas.h>
#include <math.h>
#include <stdlib.h>

#include "grid.h"
#include "quant.h"
#include "util.h"

static float synth_gauss(rq_rng *r) {
    double u = (rq_rng_uniform(r) + 0x1p-25), v = rq_rng_uniform(r);
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* Student-t with 5 degrees of freedom */
static float synth_t5(rq_rng *r) {
    double chi = 0;
    for (int i = 0; i < 5; i++) {
        double g = synth_gauss(r);
        chi += g * g;
    }
    return (float)(synth_gauss(r) / sqrt(chi / 5.0));
}

typedef struct {
    int64_t m, n, T;
    float *w; /* [m, n] */
    float *x; /* [T, n] */
    rq_gptq *h;
    rq_gptq *h_test; /* held-out inputs from the same distribution (synth_make_heldout), or NULL */
} synth_layer;

/* T calibration rows, and T_test held-out rows (same mixing and outlier channels,
 * fresh draws) whose Hessian goes to h_test when T_test > 0. */
static void synth_make_heldout(synth_layer *L, int64_t m, int64_t n, int64_t T, int64_t T_test, uint64_t seed) {
    rq_rng rng;
    rq_rng_seed(&rng, seed, 0);
    L->m = m, L->n = n, L->T = T;
    L->w = rq_malloc((size_t)(m * n) * sizeof *L->w);
    float *rowf = rq_malloc((size_t)m * sizeof *rowf), *colf = rq_malloc((size_t)n * sizeof *colf);
    for (int64_t i = 0; i < n; i++)
        colf[i] = expf(0.5f * synth_gauss(&rng));
    for (int64_t i = 0; i < m; i++)
        rowf[i] = expf(0.3f * synth_gauss(&rng));
    for (int64_t r = 0; r < m; r++)
        for (int64_t c = 0; c < n; c++)
            L->w[r * n + c] = synth_t5(&rng) * rowf[r] * colf[c];
    int64_t TT = T + T_test;
    float *mix = rq_malloc((size_t)(n * n) * sizeof *mix), *z = rq_malloc((size_t)(TT * n) * sizeof *z);
    for (int64_t i = 0; i < n * n; i++)
        mix[i] = 0.5f * synth_gauss(&rng) / sqrtf((float)n) + (i % (n + 1) == 0 ? 1.0f : 0.0f);
    for (int64_t i = 0; i < TT * n; i++)
        z[i] = synth_gauss(&rng);
    L->x = rq_malloc((size_t)(TT * n) * sizeof *L->x);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)TT, (int)n, (int)n, 1.0f, z, (int)n, mix, (int)n, 0.0f,
                L->x, (int)n);
    int64_t out[4];
    for (int o = 0; o < 4; o++) { /* 4 distinct outlier channels */
        int64_t c;
        int dup;
        do {
            c = (int64_t)(rq_rng_next(&rng) % (uint64_t)n);
            dup = 0;
            for (int i = 0; i < o; i++)
                dup |= out[i] == c;
        } while (dup);
        out[o] = c;
        for (int64_t t = 0; t < TT; t++)
            L->x[t * n + c] *= 20.0f;
    }
    L->h = rq_gptq_new(n);
    rq_gptq_add_batch(L->h, L->x, T);
    L->h_test = NULL;
    if (T_test > 0) {
        L->h_test = rq_gptq_new(n);
        rq_gptq_add_batch(L->h_test, L->x + T * n, T_test);
    }
    free(rowf);
    free(colf);
    free(mix);
    free(z);
}

static inline void synth_make(synth_layer *L, int64_t m, int64_t n, int64_t T, uint64_t seed) {
    synth_make_heldout(L, m, n, T, 0, seed);
}

static void synth_free(synth_layer *L) {
    free(L->w);
    free(L->x);
    rq_gptq_free(L->h);
    rq_gptq_free(L->h_test);
}

#endif
