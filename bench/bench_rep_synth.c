/* bench_rep_synth.c - the replication prototype's table (../shared/notes/
 * replication-synthetic.md) rebuilt in C on repliq's own quantizers, extended
 * with the replicated layer's fit (repfit.h). One synthetic 256 x 512 layer
 * (tests/synth_layer.h), 2-bit symmetric codes; the error is
 * ||(W^ - W) X||^2 / ||W X||^2 on the calibration inputs and on 16,384 held-out
 * rows from the same distribution; bits per weight count
 * the codes and every parameter at 16 bits (offsets at 32).
 * usage: bench_rep_synth [T=8192] [seed=1] [threads=2] */
#include <cblas.h>
#include <lapacke.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/synth_layer.h"
#include "forward.h"
#include "hadamard.h"
#include "quant.h"
#include "repfit.h"
#include "replica.h"

static int64_t M_, N_;
static const float *H_, *Ht_; /* original-space Hessians: calibration and held-out inputs */
static const float *W_;
static double base_, base_t_;
static double last_test_; /* held-out error of the last rel_err call */

static double rel_err(const float *what) {
    last_test_ = rq_layer_error(Ht_, W_, what, M_, N_) / base_t_;
    return rq_layer_error(H_, W_, what, M_, N_) / base_;
}

/* x <- x Q^T for the m rows of x (back from the rotated basis) */
static void unrotate(const rq_orth *q, float *x) { rq_orth_apply_t(q, x, M_); }

static rq_grid grid2(int64_t group, bool mse) {
    rq_grid g = rq_grid_default();
    g.bits = 2;
    g.sym = true;
    g.group = group;
    g.mse = mse;
    return g;
}

static void row(const char *method, double bpw, double e) {
    printf("| %-58s | %5.3f | %.4f | %.4f |\n", method, bpw, e, last_test_);
}

static double bits_group(int64_t group) { return 2.0 + 16.0 / (double)(group ? group : N_); }

int main(int argc, char **argv) {
    int64_t T = argc > 1 ? atoll(argv[1]) : 8192;
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
    rq_set_threads(argc > 3 ? atoi(argv[3]) : 2);
    synth_layer L;
    M_ = 256, N_ = 512;
    synth_make_heldout(&L, M_, N_, T, 16384, seed);
    H_ = rq_gptq_hessian(L.h);
    Ht_ = rq_gptq_hessian(L.h_test);
    W_ = L.w;
    float *zero = rq_calloc((size_t)(M_ * N_), sizeof(float));
    base_ = rq_layer_error(H_, W_, zero, M_, N_);
    base_t_ = rq_layer_error(Ht_, W_, zero, M_, N_);
    const size_t mn = (size_t)(M_ * N_);
    float *what = rq_malloc(mn * sizeof *what);

    /* the rotated basis: W' = W Q, inputs X Q */
    rq_orth *Q = rq_orth_new(N_, RQ_ORTH_RH, seed + 100);
    float *Wr = rq_malloc(mn * sizeof *Wr), *Xr = rq_malloc((size_t)(T * N_) * sizeof *Xr);
    memcpy(Wr, L.w, mn * sizeof *Wr);
    rq_orth_apply(Q, Wr, M_);
    memcpy(Xr, L.x, (size_t)(T * N_) * sizeof *Xr);
    rq_orth_apply(Q, Xr, T);
    rq_gptq *Hr = rq_gptq_new(N_);
    rq_gptq_add_batch(Hr, Xr, T);
    /* plain squared error: H = 2 I (rows of sqrt(N) e_i) */
    rq_gptq *Hi = rq_gptq_new(N_);
    float *E = rq_calloc((size_t)(N_ * N_), sizeof *E);
    for (int64_t i = 0; i < N_; i++)
        E[i * N_ + i] = sqrtf((float)N_);
    rq_gptq_add_batch(Hi, E, N_);

    printf("synthetic layer %lld x %lld, T = %lld calibration rows, seed %llu; 2-bit symmetric codes\n\n",
           (long long)M_, (long long)N_, (long long)T, (unsigned long long)seed);
    printf(
        "| method | bits/weight | rel. error (calibration) | rel. error (16,384 held-out rows) |\n|---|---|---|---|\n");
    rq_gptq_opts go = rq_gptq_opts_default();
    rq_qtensor q;
    const int64_t groups[] = {64, 128, 0};
    for (int i = 0; i < 3; i++) {
        char name[96];
        rq_grid g = grid2(groups[i], true);
        rq_rtn(&g, L.w, M_, N_, 0, 0, &q);
        rq_qtensor_dequant(&q, what);
        rq_qtensor_free(&q);
        snprintf(name, sizeof name, "RTN, %s", groups[i] ? (groups[i] == 64 ? "group 64" : "group 128") : "per row");
        row(name, bits_group(groups[i]), rel_err(what));
        rq_rtn(&g, Wr, M_, N_, 0, 0, &q);
        rq_qtensor_dequant(&q, what);
        rq_qtensor_free(&q);
        unrotate(Q, what);
        snprintf(name, sizeof name, "Hadamard + RTN, %s",
                 groups[i] ? (groups[i] == 64 ? "group 64" : "group 128") : "per row");
        row(name, bits_group(groups[i]), rel_err(what));
    }
    for (int ao = 0; ao < 2; ao++) {
        go.act_order = ao;
        for (int i = 0; i < 3; i += 2) {
            char name[96];
            rq_grid g = grid2(groups[i], true);
            rq_gptq_quantize(L.h, &g, &go, L.w, M_, N_, 0, 0, &q);
            rq_qtensor_dequant(&q, what);
            rq_qtensor_free(&q);
            snprintf(name, sizeof name, "GPTQ%s, %s", ao ? " act-order" : "", groups[i] ? "group 64" : "per row");
            row(name, bits_group(groups[i]), rel_err(what));
            rq_gptq_quantize(Hr, &g, &go, Wr, M_, N_, 0, 0, &q);
            rq_qtensor_dequant(&q, what);
            rq_qtensor_free(&q);
            unrotate(Q, what);
            snprintf(name, sizeof name, "Hadamard + GPTQ%s, %s", ao ? " act-order" : "",
                     groups[i] ? "group 64" : "per row");
            row(name, bits_group(groups[i]), rel_err(what));
        }
    }
    go.act_order = true;

    /* replicated layers: codes shared, K decoders a_k b_k^T (+ offsets) */
    rq_grid g = grid2(0, true);
    /* metric 0: plain squared error after the rotation (RTN-like); 1: GPTQ fit after
     * the rotation; 2: GPTQ fit without rotation (the column factors may stand in for it) */
    for (int metric = 0; metric < 3; metric++)
        for (int K = 1; K <= 8; K *= 2)
            for (int off = 0; off < 2; off++) {
                if (metric != 1 && off) continue;
                rq_rep_opts o = rq_rep_opts_default();
                o.K = K;
                o.vary_offset = off;
                o.iters = 6;
                rq_rep t;
                rq_rep_trace tr;
                rq_gptq *acc = metric == 0 ? Hi : metric == 1 ? Hr : L.h;
                if (rq_rep_fit(acc, metric == 2 ? L.w : Wr, M_, N_, &g, &go, &o, &t, &tr)) {
                    fprintf(stderr, "%s\n", rq_error());
                    return 1;
                }
                rq_rep_dequant(&t, what);
                if (metric != 2) unrotate(Q, what);
                rq_rep_bits b = rq_rep_bits_of(2, K, M_, N_, false);
                char name[128];
                snprintf(name, sizeof name, "%s, rank-%d factors%s (K=%d)",
                         metric == 0   ? "Hadamard + RTN fit (MSE)"
                         : metric == 1 ? "Hadamard + GPTQ fit"
                                       : "GPTQ fit, no rotation",
                         K, off ? " + offsets" : "", K);
                row(name, (double)(b.code_bits + b.param_bits) / (double)mn, rel_err(what));
                rq_rep_free(&t);
            }
    {
        /* K=1 with only the row scale refit (no column factor): the per-row baseline of the fit */
        rq_rep_opts o = rq_rep_opts_default();
        o.vary_in = false;
        o.iters = 6;
        rq_rep t;
        rq_rep_fit(Hr, Wr, M_, N_, &g, &go, &o, &t, NULL);
        rq_rep_dequant(&t, what);
        unrotate(Q, what);
        row("Hadamard + GPTQ fit, per-row scale refit (K=1, no column factor)", 2.0 + 16.0 / (double)N_, rel_err(what));
        rq_rep_free(&t);
    }

    for (int K = 2; K <= 4; K *= 2) {
        /* a rotation ensemble (repfit.h): the K = 1 fit plus K - 1 replicas reading the
         * input through their own Hadamard transform, factors by least squares */
        rq_rep_opts o = rq_rep_opts_default();
        o.K = K;
        o.vary_rot = true;
        o.iters = 6;
        rq_rep t;
        if (rq_rep_fit(Hr, Wr, M_, N_, &g, &go, &o, &t, NULL)) {
            fprintf(stderr, "%s\n", rq_error());
            return 1;
        }
        rq_rep_dequant(&t, what);
        unrotate(Q, what);
        rq_rep_bits b = rq_rep_bits_of(2, K, M_, N_, true);
        char name[96];
        snprintf(name, sizeof name, "Hadamard + GPTQ fit, K=1 + %d rotated replica%s", K - 1, K > 2 ? "s" : "");
        row(name, (double)(b.code_bits + b.param_bits) / (double)mn, rel_err(what));
        rq_rep_free(&t);
    }

    /* rotation replicas sharing codes: W^ = (s .* C) (Q1 + r Q2)^T, codes by GPTQ in
     * that basis (target W B^-T with B = Q1 + r Q2, inputs X B), row scales refit */
    rq_orth *Q2 = rq_orth_new(N_, RQ_ORTH_RH, seed + 200);
    float *Q1d = rq_malloc((size_t)(N_ * N_) * sizeof *Q1d), *Q2d = rq_malloc((size_t)(N_ * N_) * sizeof *Q2d);
    rq_orth_dense(Q, Q1d);
    rq_orth_dense(Q2, Q2d);
    const float rs[] = {0.25f, 0.5f, 0.75f, 1.5f};
    for (int i = 0; i < 4; i++) {
        float *B = rq_malloc((size_t)(N_ * N_) * sizeof *B), *Bt = rq_malloc((size_t)(N_ * N_) * sizeof *Bt);
        for (int64_t j = 0; j < N_ * N_; j++)
            B[j] = Q1d[j] + rs[i] * Q2d[j];
        /* target Tt = W B^-T, i.e. Tt^T = B^-1 W^T: solve B X = W^T */
        memcpy(Bt, B, (size_t)(N_ * N_) * sizeof *Bt);
        float *rhs = rq_malloc(mn * sizeof *rhs); /* [N, M] column block: W^T */
        for (int64_t r = 0; r < M_; r++)
            for (int64_t c = 0; c < N_; c++)
                rhs[c * M_ + r] = L.w[r * N_ + c];
        lapack_int *ipiv = rq_malloc((size_t)N_ * sizeof *ipiv);
        float *Bt2 = rq_malloc((size_t)(N_ * N_) * sizeof *Bt2);
        memcpy(Bt2, Bt, (size_t)(N_ * N_) * sizeof *Bt2);
        LAPACKE_sgesv(LAPACK_ROW_MAJOR, (lapack_int)N_, (lapack_int)M_, Bt2, (lapack_int)N_, ipiv, rhs, (lapack_int)M_);
        float *Tt = rq_malloc(mn * sizeof *Tt);
        for (int64_t r = 0; r < M_; r++)
            for (int64_t c = 0; c < N_; c++)
                Tt[r * N_ + c] = rhs[c * M_ + r];
        float *XB = rq_malloc((size_t)(T * N_) * sizeof *XB);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)N_, (int)N_, 1.0f, L.x, (int)N_, B, (int)N_,
                    0.0f, XB, (int)N_);
        rq_gptq *HB = rq_gptq_new(N_);
        rq_gptq_add_batch(HB, XB, T);
        rq_rep_opts o = rq_rep_opts_default();
        o.vary_in = false;
        o.iters = 6;
        rq_rep t;
        rq_rep_fit(HB, Tt, M_, N_, &g, &go, &o, &t, NULL);
        float *sc = rq_malloc(mn * sizeof *sc);
        rq_rep_dequant(&t, sc);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M_, (int)N_, (int)N_, 1.0f, sc, (int)N_, B, (int)N_,
                    0.0f, what, (int)N_);
        char name[96];
        snprintf(name, sizeof name, "K=2 rotation replicas, codes x (Q1 + %.2f Q2)^T, GPTQ fit", rs[i]);
        row(name, 2.0 + 16.0 / (double)N_, rel_err(what));
        rq_rep_free(&t);
        rq_gptq_free(HB);
        free(B), free(Bt), free(Bt2), free(rhs), free(ipiv), free(Tt), free(XB), free(sc);
    }
    free(Q1d), free(Q2d), free(E), free(Wr), free(Xr), free(what), free(zero);
    rq_orth_free(Q);
    rq_orth_free(Q2);
    rq_gptq_free(Hr);
    rq_gptq_free(Hi);
    synth_free(&L);
    return 0;
}
