/* bench_rep_rot.c - rotation ensembles on a real model's layers: replicas that
 * share one code tensor and differ by an input rotation (their own random
 * Hadamard sign pattern), against one rotation with per-row or rank-K factors.
 *
 * The model is a rotated GGUF (repliq rotate: its weights already carry R1/R2,
 * its file the online R3/R4), so "one rotation" is that basis. For each chosen
 * block it collects the calibration inputs of attn_q, ffn_up and ffn_down from the
 * unquantized model (C4, seed-0 windows 0..3 to fit, windows 4..5 held out) and
 * reports ||(W^ - W) X||^2 / ||W X||^2 for 2-bit symmetric codes:
 *   per-row GPTQ; the replicated fit at K = 1 and K = 2 (repfit.h);
 *   rotation replicas, residual form (repfit.h, "vary": [..., "rotation"]): the
 *     K = 1 fit's codes, replica k >= 1 reads them through its own random Hadamard
 *     transform with its own row and column factors, started at a_k = 0 and fitted
 *     by alternating least squares, a step kept only if the calibration error does
 *     not rise;
 *   rotation replicas, basis form: codes by GPTQ in the basis B = I + r U_2
 *     (W^ = S B^T), then each replica's row factors refitted.
 * Factors at f16 as files store them, except the basis form's (f32); bits per
 * weight count codes and every factor at 16 bits (not the seeds).
 * usage: bench_rep_rot MODEL.gguf C4.jsonl[.xz] [blocks=2,15,28] [threads=2] */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "forward.h"
#include "hadamard.h"
#include "model.h"
#include "quant.h"
#include "repfit.h"
#include "replica.h"
#include "util.h"

enum { N_WIN = 6, N_FIT = 4, WIN_LEN = 2048, MAX_BLOCKS = 8, MAX_REP = 4 };

typedef struct {
    int n_blocks, blocks[MAX_BLOCKS];
    float *x[MAX_BLOCKS][RQ_HOOK_COUNT]; /* [N_WIN * WIN_LEN, cols] inputs per block and point */
    int64_t at[MAX_BLOCKS][RQ_HOOK_COUNT];
} collect;

static void hook(void *ctx, int layer, rq_hook_point p, const float *x, int n, int cols) {
    collect *c = ctx;
    for (int i = 0; i < c->n_blocks; i++)
        if (c->blocks[i] == layer && c->x[i][p]) {
            memcpy(c->x[i][p] + c->at[i][p] * cols, x, (size_t)n * cols * sizeof *x);
            c->at[i][p] += n;
        }
}

/* One layer's problem: weights, calibration and held-out Hessians. */
typedef struct {
    const float *w;
    int64_t rows, cols;
    const float *H, *Ht;
    double zero, zero_t;
} layer_pb;

static double rel(const layer_pb *pb, const float *what, double *held_out) {
    if (held_out) *held_out = rq_layer_error(pb->Ht, pb->w, what, pb->rows, pb->cols) / pb->zero_t;
    return rq_layer_error(pb->H, pb->w, what, pb->rows, pb->cols) / pb->zero;
}

/* Residual form (repfit.h's rotation ensemble): the K = 1 fit plus K - 1 rotated
 * replicas, `iters` rounds; what gets the tensor. */
static double rot_residual(const layer_pb *pb, const rq_rep *one, int K, int iters, float *what, double *held) {
    rq_rep t;
    if (rq_rep_extend_rotated(pb->H, pb->w, one, K, 0, iters, true, &t, NULL)) {
        fprintf(stderr, "bench_rep_rot: %s\n", rq_error());
        exit(1);
    }
    rq_rep_dequant(&t, what);
    rq_rep_free(&t);
    return rel(pb, what, held);
}

/* Basis form: S by per-row GPTQ of T = W B^-T on inputs B^T x (B = I + r U), so
 * W^ = S + r S U^T; then the two replicas' row factors refitted jointly. */
static double rot_basis(const layer_pb *pb, const float *X, int64_t n_fit, float r, const rq_grid *g,
                        const rq_gptq_opts *go, float *what, double *held) {
    const int64_t R = pb->rows, C = pb->cols;
    rq_orth *U = rq_orth_new(C, RQ_ORTH_RH, 1001);
    float *B = rq_malloc((size_t)(C * C) * sizeof *B);
    rq_orth_dense(U, B);
    for (int64_t i = 0; i < C * C; i++)
        B[i] *= r;
    for (int64_t i = 0; i < C; i++)
        B[i * C + i] += 1.0f;
    /* T^T = B^-1 W^T */
    float *Bf = rq_malloc((size_t)(C * C) * sizeof *Bf), *Tt = rq_malloc((size_t)(R * C) * sizeof *Tt);
    memcpy(Bf, B, (size_t)(C * C) * sizeof *Bf);
    for (int64_t i = 0; i < R; i++)
        for (int64_t c = 0; c < C; c++)
            Tt[c * R + i] = pb->w[i * C + c];
    lapack_int *ipiv = rq_malloc((size_t)C * sizeof *ipiv);
    LAPACKE_sgesv(LAPACK_ROW_MAJOR, (lapack_int)C, (lapack_int)R, Bf, (lapack_int)C, ipiv, Tt, (lapack_int)R);
    float *T = rq_malloc((size_t)(R * C) * sizeof *T);
    for (int64_t i = 0; i < R; i++)
        for (int64_t c = 0; c < C; c++)
            T[i * C + c] = Tt[c * R + i];
    float *XB = rq_malloc((size_t)(n_fit * C) * sizeof *XB);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n_fit, (int)C, (int)C, 1.0f, X, (int)C, B, (int)C, 0.0f,
                XB, (int)C);
    rq_gptq *HB = rq_gptq_new(C);
    rq_gptq_add_batch(HB, XB, n_fit);
    rq_qtensor q;
    float *F[2];
    F[0] = rq_malloc((size_t)(R * C) * sizeof(float));
    F[1] = rq_malloc((size_t)(R * C) * sizeof(float));
    double J = NAN;
    if (rq_gptq_quantize(HB, g, go, T, R, C, 0, 0, &q) == 0) {
        rq_qtensor_dequant(&q, F[0]);
        rq_qtensor_free(&q);
        memcpy(F[1], F[0], (size_t)(R * C) * sizeof(float));
        rq_orth_apply_t(U, F[1], R);
        float *a[2] = {rq_malloc((size_t)R * sizeof(float)), rq_malloc((size_t)R * sizeof(float))};
        for (int64_t i = 0; i < R; i++)
            a[0][i] = 1.0f, a[1][i] = r;
        rq_rep_rows_lsq(pb->H, pb->w, R, C, 2, F, a);
        for (int64_t i = 0; i < R * C; i++)
            what[i] = a[0][i / C] * F[0][i] + a[1][i / C] * F[1][i];
        J = rel(pb, what, held);
        free(a[0]), free(a[1]);
    }
    free(F[0]), free(F[1]), free(B), free(Bf), free(Tt), free(T), free(XB), free(ipiv);
    rq_gptq_free(HB);
    rq_orth_free(U);
    return J;
}

/* per method, over every tensor: sum of log(error / the K = 1 fit's error) */
enum { N_METHODS = 7 };
static const char *method_[N_METHODS];
static double log_ratio_[N_METHODS][2];
static int n_tensors_;

static void print_row(const char *block, int k, const char *method, double bpw, double J, double Jt, const double *J1) {
    printf("| %s | %-52s | %.4f | %.4f | %.4f |\n", block, method, bpw, J, Jt);
    fflush(stdout);
    method_[k] = method_[k] ? method_[k] : strdup(method);
    log_ratio_[k][0] += log(J / J1[0]);
    log_ratio_[k][1] += log(Jt / J1[1]);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_rep_rot MODEL.gguf C4.jsonl[.xz] [blocks=2,15,28] [threads=2]\n");
        return 2;
    }
    collect col = {0};
    const char *bl = argc > 3 ? argv[3] : "2,15,28";
    for (const char *p = bl; *p && col.n_blocks < MAX_BLOCKS; p = strchr(p, ',') ? strchr(p, ',') + 1 : "")
        col.blocks[col.n_blocks++] = atoi(p);
    rq_set_threads(argc > 4 ? atoi(argv[4]) : 2);
    rq_model *m;
    if (rq_model_load(argv[1], &m)) {
        fprintf(stderr, "bench_rep_rot: %s\n", rq_error());
        return 1;
    }
    const rq_config *c = &m->cfg;
    for (int i = 0; i < col.n_blocks; i++)
        if (col.blocks[i] < 0 || col.blocks[i] >= c->n_layer) {
            fprintf(stderr, "bench_rep_rot: block %d is outside 0..%d\n", col.blocks[i], c->n_layer - 1);
            return 2;
        }
    rq_calib cal;
    if (!m->tok || rq_calib_load(argv[2], m->tok, N_WIN, WIN_LEN, 0, &cal)) {
        fprintf(stderr, "bench_rep_rot: %s\n", m->tok ? rq_error() : "the model file has no tokenizer");
        return 1;
    }
    const rq_hook_point pts[3] = {RQ_HOOK_ATTN_IN, RQ_HOOK_FFN_IN, RQ_HOOK_DOWN_IN};
    const int64_t E = c->n_embd, T = (int64_t)N_WIN * WIN_LEN, n_fit = (int64_t)N_FIT * WIN_LEN;
    for (int i = 0; i < col.n_blocks; i++)
        for (int p = 0; p < 3; p++)
            col.x[i][pts[p]] = rq_malloc((size_t)(T * (pts[p] == RQ_HOOK_DOWN_IN ? c->n_ff : E)) * sizeof(float));
    rq_fwd *f = rq_fwd_new(m, WIN_LEN);
    if (!f) {
        fprintf(stderr, "bench_rep_rot: %s\n", rq_error());
        return 1;
    }
    int last = 0;
    for (int i = 0; i < col.n_blocks; i++)
        last = col.blocks[i] > last ? col.blocks[i] : last;
    float *x = rq_malloc((size_t)(WIN_LEN * E) * sizeof *x);
    for (int w = 0; w < N_WIN; w++) {
        for (int64_t t = 0; t < WIN_LEN; t++)
            memcpy(x + t * E, m->tok_embd + (int64_t)cal.tokens[w * WIN_LEN + t] * E, (size_t)E * sizeof *x);
        for (int l = 0; l <= last; l++)
            rq_fwd_layer(f, &m->layers[l], l, x, WIN_LEN, hook, &col);
        fprintf(stderr, "bench_rep_rot: window %d/%d collected\n", w + 1, N_WIN);
    }
    printf("model %s, C4 seed 0: %lld calibration tokens (windows 0-3), %lld held out (windows 4-5); 2-bit "
           "symmetric codes\n\n",
           argv[1], (long long)n_fit, (long long)(T - n_fit));
    printf(
        "| block | method | bits/weight | rel. error (calibration) | rel. error (held out) |\n|---|---|---|---|---|\n");
    rq_grid g = rq_grid_default();
    g.bits = 2, g.sym = true, g.group = 0, g.mse = true;
    rq_gptq_opts go = rq_gptq_opts_default();
    go.act_order = true;
    const char *names[3] = {"attn_q", "ffn_up", "ffn_down"};
    for (int i = 0; i < col.n_blocks; i++)
        for (int p = 0; p < 3; p++) {
            const rq_layer *L = &m->layers[col.blocks[i]];
            const rq_linear *lin = p == 0 ? &L->q : p == 1 ? &L->up : &L->down;
            const int64_t R = lin->rows, C = lin->cols;
            const float *X = col.x[i][pts[p]];
            rq_gptq *h = rq_gptq_new(C), *ht = rq_gptq_new(C);
            rq_gptq_add_batch(h, X, n_fit);
            rq_gptq_add_batch(ht, X + n_fit * C, T - n_fit);
            float *what = rq_calloc((size_t)(R * C), sizeof *what);
            layer_pb pb = {.w = lin->w, .rows = R, .cols = C, .H = rq_gptq_hessian(h), .Ht = rq_gptq_hessian(ht)};
            pb.zero = rq_layer_error(pb.H, pb.w, what, R, C);
            pb.zero_t = rq_layer_error(pb.Ht, pb.w, what, R, C);
            char blk[32];
            snprintf(blk, sizeof blk, "%d %s", col.blocks[i], names[p]);
            double J, Jt;
            const double fr = 16.0 / (double)C, fc = 16.0 / (double)R; /* a row factor, a column factor */
            rq_qtensor q;
            if (rq_gptq_quantize(h, &g, &go, lin->w, R, C, 0, 0, &q)) {
                fprintf(stderr, "bench_rep_rot: %s\n", rq_error());
                return 1;
            }
            rq_qtensor_dequant(&q, what);
            rq_qtensor_free(&q);
            double Jg, Jgt, J1[2];
            Jg = rel(&pb, what, &Jgt);
            rq_rep one = {0};
            for (int K = 1; K <= 2; K++) {
                rq_rep_opts o = rq_rep_opts_default();
                o.K = K;
                rq_rep t;
                if (rq_rep_fit(h, lin->w, R, C, &g, &go, &o, &t, NULL)) {
                    fprintf(stderr, "bench_rep_rot: %s\n", rq_error());
                    return 1;
                }
                rq_rep_dequant(&t, what);
                J = rel(&pb, what, &Jt);
                char name[64];
                snprintf(name, sizeof name, "replicated fit, rank-%d factors (K=%d)", K, K);
                if (K == 1) {
                    J1[0] = J, J1[1] = Jt;
                    print_row(blk, 0, "per-row GPTQ", 2 + fr, Jg, Jgt, J1);
                }
                print_row(blk, K, name, 2 + K * (fr + fc), J, Jt, J1);
                if (K == 1)
                    one = t;
                else
                    rq_rep_free(&t);
            }
            for (int K = 2; K <= MAX_REP; K *= 2) {
                J = rot_residual(&pb, &one, K, 4, what, &Jt);
                char name[64];
                snprintf(name, sizeof name, "K=1 fit + %d rotated replica%s (residual form)", K - 1, K > 2 ? "s" : "");
                print_row(blk, K == 2 ? 3 : 4, name, 2 + K * (fr + fc), J, Jt, J1);
            }
            const float rs[2] = {0.25f, 0.5f};
            for (int k = 0; k < 2; k++) {
                J = rot_basis(&pb, X, n_fit, rs[k], &g, &go, what, &Jt);
                char name[64];
                snprintf(name, sizeof name, "2 rotation replicas, basis I + %.2f U (basis form)", rs[k]);
                print_row(blk, 5 + k, name, 2 + 2 * fr, J, Jt, J1);
            }
            rq_rep_free(&one);
            n_tensors_++;
            free(what);
            rq_gptq_free(h);
            rq_gptq_free(ht);
        }
    printf("\nGeometric mean over the %d tensors of the error relative to the K = 1 fit's:\n\n"
           "| method | calibration | held out |\n|---|---|---|\n",
           n_tensors_);
    for (int k = 0; k < N_METHODS; k++)
        if (method_[k])
            printf("| %s | %.4f | %.4f |\n", method_[k], exp(log_ratio_[k][0] / n_tensors_),
                   exp(log_ratio_[k][1] / n_tensors_));
    for (int k = 0; k < N_METHODS; k++)
        free((void *)method_[k]);
    rq_fwd_free(f);
    free(x);
    for (int i = 0; i < col.n_blocks; i++)
        for (int p = 0; p < 3; p++)
            free(col.x[i][pts[p]]);
    rq_calib_free(&cal);
    rq_model_free(m);
    return 0;
}
