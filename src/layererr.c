/* layererr.c - the layer objective of a quantized file on any text (layererr.h). */
#include "layererr.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "gemm.h"
#include "gguf.h"
#include "jsonw.h"
#include "model.h"
#include "util.h"

double rq_lerr_rel(const rq_lerr_entry *e) { return e->ref > 0 ? e->err / e->ref : 0; }
double rq_lerr_mean_share(const rq_lerr_entry *e) { return e->err > 0 ? e->err_mean / e->err : 0; }

void rq_lerr_free(rq_lerr *r) {
    if (!r) return;
    free(r->e);
    memset(r, 0, sizeof *r);
}

static const char *const LINEAR_NAMES[7] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                            "ffn_gate", "ffn_up", "ffn_down"};

/* The block's seven matrices in LINEAR_NAMES order. */
static const rq_linear *block_linear(const rq_layer *L, int j) {
    const rq_linear *all[7] = {&L->q, &L->k, &L->v, &L->o, &L->gate, &L->up, &L->down};
    return all[j];
}

/* The linears that read a hook point: [first, first + count). */
static void point_linears(rq_hook_point p, int *first, int *count) {
    static const int F[RQ_HOOK_COUNT] = {0, 3, 4, 6}, C[RQ_HOOK_COUNT] = {3, 1, 2, 1};
    *first = F[p];
    *count = C[p];
}

typedef struct {
    const rq_layer *quant, *ref;
    rq_lerr_entry *e; /* this block's seven */
    float *yq, *yr;   /* [win_len, max rows] */
    double *dsum[7];  /* per output: the sum over tokens of (W' - W) x */
} hook_ctx;

static void hook(void *ctx, int layer, rq_hook_point p, const float *x, int n, int cols) {
    (void)layer;
    hook_ctx *h = ctx;
    int first, count;
    point_linears(p, &first, &count);
    for (int j = first; j < first + count; j++) {
        const rq_linear *a = block_linear(h->quant, j), *b = block_linear(h->ref, j);
        int rows = (int)a->rows;
        rq_sgemm(CblasNoTrans, CblasTrans, n, rows, cols, 1.0f, x, cols, a->w, cols, 0.0f, h->yq, rows);
        rq_sgemm(CblasNoTrans, CblasTrans, n, rows, cols, 1.0f, x, cols, b->w, cols, 0.0f, h->yr, rows);
        double err = 0, ref = 0, *ds = h->dsum[j];
        for (int64_t t = 0; t < n; t++)
            for (int64_t r = 0; r < rows; r++) {
                int64_t i = t * rows + r;
                double d = (double)h->yq[i] - h->yr[i];
                err += d * d;
                ds[r] += d;
                ref += (double)h->yr[i] * h->yr[i];
            }
        h->e[j].err += err;
        h->e[j].ref += ref;
    }
}

/* Everything both files must agree on for their layers to be compared; c and on
 * (the online rotations, the same in both once every rotation key agrees) set. */
static int check_pair(const rq_gguf *gq, const rq_gguf *gr, rq_config *c, rq_online_rot *on) {
    rq_online_rot onr; /* read to refuse a malformed key in either file */
    if (rq_same_model(gq, gr,
                      "compare a quantized file with the model it was made from (a rotated model's file with the "
                      "rotated f32 file)",
                      c) ||
        rq_online_from_gguf(gq, on) || rq_online_from_gguf(gr, &onr))
        return -1;
    return 0;
}

int rq_layer_errors(const char *quant_path, const char *ref_path, const int32_t *tokens, int n_win, int win_len,
                    rq_lerr_feed feed, bool progress, rq_lerr *out) {
    memset(out, 0, sizeof *out);
    if (n_win < 1 || win_len < 1)
        return rq_fail("layer errors: %d windows of %d tokens: need at least one", n_win, win_len);
    rq_gguf *gq = NULL, *gr = NULL;
    rq_fwd *f = NULL;
    float *x = NULL, *yq = NULL, *yr = NULL;
    int rc = -1;
    if (rq_gguf_open(quant_path, &gq) || rq_gguf_open(ref_path, &gr)) goto done;
    rq_config c = {0};
    rq_online_rot on;
    if (check_pair(gq, gr, &c, &on)) goto done;
    const int64_t N = (int64_t)n_win * win_len, E = c.n_embd;
    for (int64_t i = 0; i < N; i++)
        if (tokens[i] < 0 || tokens[i] >= c.n_vocab) {
            rq_fail("token %d at %lld is outside the vocabulary (%d)", tokens[i], (long long)i, c.n_vocab);
            goto done;
        }
    const rq_gguf *gfed = feed == RQ_LERR_FEED_REF ? gr : gq;
    x = rq_malloc((size_t)N * E * sizeof *x);
    if (rq_tensor_rows_f32(gfed, "token_embd.weight", E, c.n_vocab, tokens, N, x)) goto done;
    if (!(f = rq_fwd_new_cfg(&c, win_len)) || rq_fwd_set_online(f, &on)) goto done;
    rq_actq none = {.a_clip = 1.0f}; /* weights alone: no simulated activation or KV quantization */
    rq_fwd_set_actq(f, &none);
    int64_t rmax = c.n_ff > E ? c.n_ff : E, dq = (int64_t)c.n_head * c.head_dim;
    if (dq > rmax) rmax = dq; /* attn_q's rows; attn_k/attn_v have fewer */
    yq = rq_malloc((size_t)win_len * rmax * sizeof *yq);
    yr = rq_malloc((size_t)win_len * rmax * sizeof *yr);
    out->n = 7 * c.n_layer;
    out->e = rq_calloc((size_t)out->n, sizeof *out->e);
    out->n_tokens = N;
    double t0 = rq_time();
    for (int l = 0; l < c.n_layer; l++) {
        rq_layer Lq, Lr;
        if (rq_layer_load(gq, &c, l, &Lq)) goto done;
        if (rq_layer_load(gr, &c, l, &Lr)) {
            rq_layer_free(&Lq);
            goto done;
        }
        if (rq_layer_ffn_paths(&Lq) > 1 || rq_layer_ffn_paths(&Lr) > 1) {
            rq_fail("blk.%d: the MLP runs as %d paths (\"combine\": \"mlp\"), which have no single matrix to compare",
                    l, rq_layer_ffn_paths(&Lq) > 1 ? rq_layer_ffn_paths(&Lq) : rq_layer_ffn_paths(&Lr));
            rq_layer_free(&Lq);
            rq_layer_free(&Lr);
            goto done;
        }
        rq_lerr_entry *e = out->e + 7 * l;
        for (int j = 0; j < 7; j++) {
            snprintf(e[j].name, sizeof e[j].name, "blk.%d.%s.weight", l, LINEAR_NAMES[j]);
            e[j].layer = l;
            e[j].rows = block_linear(&Lq, j)->rows;
            e[j].cols = block_linear(&Lq, j)->cols;
        }
        hook_ctx h = {&Lq, &Lr, e, yq, yr, {0}};
        for (int j = 0; j < 7; j++)
            h.dsum[j] = rq_calloc((size_t)e[j].rows, sizeof(double));
        const rq_layer *fed = feed == RQ_LERR_FEED_REF ? &Lr : &Lq;
        for (int w = 0; w < n_win; w++)
            rq_fwd_layer(f, fed, l, x + (int64_t)w * win_len * E, win_len, hook, &h);
        for (int j = 0; j < 7; j++) {
            double m = 0;
            for (int64_t r = 0; r < e[j].rows; r++)
                m += h.dsum[j][r] * h.dsum[j][r];
            e[j].err_mean = m / (double)N;
            free(h.dsum[j]);
        }
        rq_layer_free(&Lq);
        rq_layer_free(&Lr);
        if (progress) rq_progress("layer errors", l + 1, c.n_layer, t0);
    }
    rc = 0;
done:
    if (rc) {
        rq_lerr_free(out);
        rq_fail_ctx("layer errors of %s against %s", quant_path, ref_path);
    }
    rq_fwd_free(f);
    free(x);
    free(yq);
    free(yr);
    rq_gguf_close(gq);
    rq_gguf_close(gr);
    return rc;
}

int rq_lerr_save_jsonl(const rq_lerr *le, const char *feed, const char *source, const char *path) {
    rq_tmpfile t;
    if (rq_tmpfile_open(&t, path)) return rq_fail_ctx("saving the layer errors");
    for (int i = 0; i < le->n; i++) {
        const rq_lerr_entry *e = &le->e[i];
        fprintf(t.f, "{\"name\":\"%s\",\"layer\":%d,\"rows\":%lld,\"cols\":%lld", e->name, e->layer, (long long)e->rows,
                (long long)e->cols);
        const char *key[5] = {"rel_err", "err", "ref", "mean_share", NULL};
        double val[4] = {rq_lerr_rel(e), e->err, e->ref, rq_lerr_mean_share(e)};
        for (int k = 0; key[k]; k++)
            if (isfinite(val[k]))
                fprintf(t.f, ",\"%s\":%.17g", key[k], val[k]);
            else
                fprintf(t.f, ",\"%s\":null", key[k]); /* NaN and Inf are not JSON */
        fprintf(t.f, ",\"tokens\":%lld,\"feed\":", (long long)le->n_tokens);
        rq_json_str(t.f, feed, strlen(feed));
        fputs(",\"source\":", t.f);
        rq_json_str(t.f, source, strlen(source));
        fputs("}\n", t.f);
    }
    if (rq_tmpfile_close(&t, true)) return rq_fail_ctx("saving the layer errors to %s", path);
    return 0;
}
