/* quantize.c - the quantization driver: GPTQ's sequential mode over blocks,
 * memory bounded by one block's weights and Hessians plus the calibration
 * activations, whatever the depth. */
#include "quantize.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "calib.h"
#include "forward.h"
#include "ggml_types.h"
#include "gguf.h"
#include "hf.h"
#include "mlptrain.h"
#include "model.h"
#include "qformat.h"
#include "replica.h"
#include "tokenizer.h"
#include "util.h"

/* One output tensor: a packed blob we own, or the source's bytes. */
typedef struct {
    const rq_gguf_tensor *src;
    uint8_t *blob;
    size_t blob_len;
} out_tensor;

typedef struct {
    rq_gguf *g;
    rq_config cfg;
    const rq_recipe *r;
    out_tensor *out; /* parallel to g->tensors */
    rq_gptq *acc[RQ_HOOK_COUNT];
    double err_sum;
    int err_n;
    double t_err; /* seconds spent measuring layer errors in this block */
    int verbose;
    const rq_quant_job *job;
    /* mlp_train: this block's MLP inputs [ffn_n, n_embd] (NULL with o_proj), its fitted replicas kept
     * for training (gate, up, down), and the training sums */
    float *ffn_x;
    float *ffn_y; /* mlp_train target block/model: the reference block's output, less (after the FFN_IN pass)
                     the residual after the quantized attention, or with o_proj the block's input */
    float *ffn_z; /* o_proj: the output projection's inputs [z_n, n_head * head_dim] */
    int64_t ffn_n, z_n;
    unsigned collect; /* the hook points (bits) being collected in this pass */
    bool keep_mlp;
    rq_rep mlp[4]; /* gate, up, down, and attn_output with o_proj */
    int mlp_trained;
    double val_start_sum, val_best_sum;
} qstate;

static void report_tensor(const qstate *s, const char *name, int64_t rows, int64_t cols, int bits, int K,
                          size_t blob_len, double rel, double rel_start, double secs) {
    if (!s->job->on_tensor) return;
    rq_tensor_stat st = {name, rows, cols, bits, K, 8 * (int64_t)blob_len, rel, rel_start, secs};
    s->job->on_tensor(s->job->on_tensor_ctx, &st);
}

static uint64_t name_stream(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static const char *method_name(rq_method m) {
    return m == RQ_METHOD_GPTQ ? "gptq" : m == RQ_METHOD_RTN ? "rtn" : "keep";
}

#define ERR_ROWS 256

/* The packed blob of a replicated tensor, as the output's. */
static int store_rep(qstate *s, const char *name, const rq_rep *t) {
    out_tensor *ot = &s->out[rq_gguf_tensor_find(s->g, name) - s->g->tensors];
    free(ot->blob);
    ot->blob_len = rq_rep_packed_size(t);
    ot->blob = rq_malloc(ot->blob_len);
    if (rq_rep_pack(t, ot->blob)) return rq_fail_ctx("packing '%s'", name);
    return 0;
}

static const struct {
    const char *suffix;
    rq_hook_point in;
} block_linears[7] = {{"attn_q", RQ_HOOK_ATTN_IN},   {"attn_k", RQ_HOOK_ATTN_IN},  {"attn_v", RQ_HOOK_ATTN_IN},
                      {"attn_output", RQ_HOOK_O_IN}, {"ffn_gate", RQ_HOOK_FFN_IN}, {"ffn_up", RQ_HOOK_FFN_IN},
                      {"ffn_down", RQ_HOOK_DOWN_IN}};

static rq_linear *layer_linear(rq_layer *L, int i) {
    rq_linear *t[7] = {&L->q, &L->k, &L->v, &L->o, &L->gate, &L->up, &L->down};
    return t[i];
}

#define LINEAR_O 3  /* block_linears[3]: attn_output */
#define MLP_FIRST 4 /* block_linears[4..6]: ffn_gate, ffn_up, ffn_down */

/* Index into block_linears of a block linear's name (blk.N.<suffix>.weight), else -1. */
static int linear_index(const char *name) {
    if (!rq_is_block_linear(name)) return -1;
    const char *sfx = strchr(strchr(name, '.') + 1, '.') + 1; /* past "blk.N." */
    for (int i = 0; i < 7; i++) {
        size_t m = strlen(block_linears[i].suffix);
        if (!strncmp(sfx, block_linears[i].suffix, m) && !strcmp(sfx + m, ".weight")) return i;
    }
    return -1;
}

/* Index 0..2 of an MLP matrix name (blk.N.ffn_gate/up/down.weight), else -1. */
static int mlp_index(const char *name) {
    int i = linear_index(name);
    return i >= MLP_FIRST ? i - MLP_FIRST : -1;
}

/* Whether mlp_train trains blk.l's MLP: check_mlp_recipe lets a block's three MLP
 * matrices be either all replicated (trained) or all kept (not trained). */
static bool mlp_trained_in(const qstate *s, int l) {
    char nm[96];
    snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, block_linears[MLP_FIRST].suffix);
    rq_tensor_recipe t;
    rq_recipe_for_tensor(s->r, nm, &t);
    return t.method != RQ_METHOD_KEEP;
}

/* A replicated layer (replica.h): fit K decoders over one code tensor on the
 * layer's Hessian, store them as one blob, leave the dequantized sum in w (for
 * paths, the one-path fit's); an MLP matrix of a block with mlp_train is kept in
 * s->mlp and stored by train_mlp after training. */
static int replicate_tensor(qstate *s, const char *name, const rq_tensor_recipe *tr, float *w, int64_t rows,
                            int64_t cols, rq_gptq *H) {
    rq_rep_opts o = tr->rep;
    o.seed ^= s->r->seed ^ name_stream(name);
    bool paths = o.combine == RQ_REP_COMBINE_MLP; /* fit one decoder, spread it into K paths */
    if (paths) {
        o.K = 1;
        o.combine = RQ_REP_COMBINE_LINEAR;
    }
    rq_rep t;
    rq_rep_trace trace;
    double t0 = rq_time();
    if (rq_rep_fit(H, w, rows, cols, &tr->grid, &tr->gptq, &o, &t, &trace)) return rq_fail_ctx("quantizing '%s'", name);
    if (paths) {
        rq_rep one = t;
        rq_rep_dequant(&one, w); /* the one-path MLP, as the down projection's inputs are collected from */
        rq_rep_spread_paths(&one, tr->rep.K, tr->rep.init_spread, o.seed, mlp_index(name) == 2, &t);
        rq_rep_free(&one);
    }
    double rel = trace.J_zero > 0 ? trace.J_final / trace.J_zero : 0;
    double rel_start = trace.J_zero > 0 ? trace.J_init / trace.J_zero : -1;
    s->err_sum += rel;
    s->err_n++;
    int j = mlp_index(name);
    if (s->keep_mlp && s->r->mlp_train.o_proj && linear_index(name) == LINEAR_O) j = 3;
    bool keep = s->keep_mlp && j >= 0; /* trained with the block's other MLP matrices, stored then */
    if (!keep && store_rep(s, name, &t)) {
        rq_rep_free(&t);
        return -1;
    }
    size_t blob_len = rq_rep_packed_size(&t);
    if (s->verbose) {
        int kept = 0;
        for (int i = 1; i < trace.n; i++)
            kept += trace.kept[i];
        fprintf(stderr,
                "  %-28s rep  %db K=%-2d       %7.4f bpw  rel.err %.5f (GPTQ start %.5f, %d/%d steps kept, %.1fs)%s\n",
                name, t.bits, t.K, 8.0 * (double)blob_len / (double)(rows * cols), rel, rel_start, kept, trace.n - 1,
                rq_time() - t0,
                t.K > 1 && !paths && rq_rep_collapses(&t, 1e-3) ? "  [replicas collapsed into one decoder]" : "");
    }
    report_tensor(s, name, rows, cols, t.bits, t.K, blob_len, rel, rel_start, rq_time() - t0);
    if (!paths) rq_rep_dequant(&t, w); /* kept or not, later inputs see the quantized matrix */
    if (keep) {
        s->mlp[j] = t;
        return 0;
    }
    rq_rep_free(&t);
    return 0;
}

/* Train the block's kept MLP replicas (mlp_train), store them, and put them
 * into L: summed (combine 0) or as K paths (combine 1). ref: the reference gate,
 * up and down. */
static int train_mlp(qstate *s, rq_fwd *f, rq_layer *L, int l, float *ref[3], const float *h0) {
    const rq_config *c = &s->cfg;
    rq_mlptrain_opts o = s->r->mlp_train;
    o.seed ^= s->r->seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(l + 1));
    rq_rep *m[3] = {&s->mlp[0], &s->mlp[1], &s->mlp[2]};
    rq_mlptrain_trace tr;
    float *y = s->ffn_y;
    if (o.target == RQ_MLP_TARGET_MLP) {
        y = rq_malloc((size_t)(s->ffn_n * c->n_embd) * sizeof(float));
        rq_mlp_reference(s->ffn_x, s->ffn_n, c->n_embd, c->n_ff, ref[0], ref[1], ref[2], rq_fwd_online_r4(f), y);
    }
    rq_mlp_tail tail = {&s->mlp[3], s->ffn_z, h0, L->ffn_norm, c->norm_eps, (int64_t)c->n_head * c->head_dim};
    int rc = rq_mlp_train(s->ffn_x, o.o_proj ? s->z_n : s->ffn_n, c->n_embd, c->n_ff, y, rq_fwd_online_r4(f), m,
                          o.o_proj ? &tail : NULL, &o, &tr);
    if (y != s->ffn_y) free(y);
    if (rc) return rq_fail_ctx("blk.%d: training the MLP", l);
    s->mlp_trained++;
    s->val_start_sum += tr.val_start;
    s->val_best_sum += tr.val_best;
    if (s->verbose)
        fprintf(stderr, "  blk.%d MLP%s trained (K=%d, %s): held-out error %.5f -> %.5f (step %d of %d, %.1fs)\n", l,
                o.o_proj ? " and attn_output" : "", m[0]->K, m[0]->combine == RQ_REP_COMBINE_MLP ? "paths" : "linear",
                tr.val_start, tr.val_best, tr.best_step, o.steps, tr.seconds);
    for (int j = 0; j < 3; j++) {
        char name[96];
        snprintf(name, sizeof name, "blk.%d.%s.weight", l, block_linears[MLP_FIRST + j].suffix);
        if (store_rep(s, name, m[j])) return -1;
        if (m[j]->combine == RQ_REP_COMBINE_MLP)
            rq_layer_set_mlp_replicas(L, j, m[j]);
        else
            rq_rep_dequant(m[j], layer_linear(L, MLP_FIRST + j)->w);
    }
    if (o.o_proj) {
        char name[96];
        snprintf(name, sizeof name, "blk.%d.%s.weight", l, block_linears[LINEAR_O].suffix);
        if (store_rep(s, name, &s->mlp[3])) return -1;
        rq_rep_dequant(&s->mlp[3], L->o.w);
    }
    return 0;
}

/* Quantize w[rows, cols] (in place: w becomes the dequantized result) by the
 * tensor's recipe; H is the input accumulator (NULL when there is none). */
static int quantize_tensor(qstate *s, const char *name, float *w, int64_t rows, int64_t cols, rq_gptq *H) {
    rq_tensor_recipe tr;
    rq_recipe_for_tensor(s->r, name, &tr);
    if (tr.method == RQ_METHOD_KEEP) return 0;
    const rq_gguf_tensor *src = rq_gguf_tensor_find(s->g, name);
    if (!src) return rq_fail("%s: tensor '%s' is missing", s->g->path, name);
    if (tr.method == RQ_METHOD_GPTQ && !H)
        return rq_fail("%s: GPTQ needs the layer's inputs; it applies to block linear layers only (use \"rtn\" in "
                       "an override for this tensor)",
                       name);
    if (tr.rep.K > 0) return replicate_tensor(s, name, &tr, w, rows, cols, H);
    rq_qtensor q;
    double t0 = rq_time();
    uint64_t stream = name_stream(name);
    int rc = tr.method == RQ_METHOD_GPTQ
                 ? rq_gptq_quantize(H, &tr.grid, &tr.gptq, w, rows, cols, s->r->seed, stream, &q)
                 : rq_rtn(&tr.grid, w, rows, cols, s->r->seed, stream, &q);
    if (rc) return rq_fail_ctx("quantizing '%s'", name);
    float *what = rq_malloc((size_t)(rows * cols) * sizeof(float));
    rq_qtensor_dequant(&q, what);
    double rel = -1;
    if (H) {
        double te = rq_time();
        const float *h = rq_gptq_hessian(H);
        /* the relative error on ERR_ROWS evenly spaced rows: the ratio, not the sum, is
         * reported, and the exact one costs two GEMMs of rows x cols x cols */
        int64_t m = rows < ERR_ROWS ? rows : ERR_ROWS;
        float *sw = rq_malloc((size_t)(m * cols) * sizeof(float)), *sq = rq_malloc((size_t)(m * cols) * sizeof(float));
        for (int64_t i = 0; i < m; i++) {
            int64_t r = i * rows / m;
            memcpy(sw + i * cols, w + r * cols, (size_t)cols * sizeof(float));
            memcpy(sq + i * cols, what + r * cols, (size_t)cols * sizeof(float));
        }
        double e = rq_layer_error(h, sw, sq, m, cols);
        memset(sq, 0, (size_t)(m * cols) * sizeof(float));
        double base = rq_layer_error(h, sq, sw, m, cols);
        free(sw);
        free(sq);
        rel = base > 0 ? e / base : 0;
        s->err_sum += rel;
        s->err_n++;
        s->t_err += rq_time() - te;
    }
    out_tensor *o = &s->out[src - s->g->tensors];
    o->blob_len = rq_qformat_size(&q);
    o->blob = o->blob_len ? rq_malloc(o->blob_len) : NULL;
    if (!o->blob || rq_qformat_pack(&q, o->blob)) {
        free(what);
        rq_qtensor_free(&q);
        return rq_fail_ctx("packing '%s'", name);
    }
    if (s->verbose) {
        fprintf(stderr, "  %-28s %-4s %db %s g%-5lld %7.4f bpw", name, method_name(tr.method), tr.grid.bits,
                tr.grid.sym ? "sym " : "asym", (long long)q.group, 8.0 * (double)o->blob_len / (double)(rows * cols));
        if (rel >= 0) fprintf(stderr, "  rel.err %.5f", rel);
        fprintf(stderr, "\n");
    }
    report_tensor(s, name, rows, cols, tr.grid.bits, 0, o->blob_len, rel, -1, rq_time() - t0);
    memcpy(w, what, (size_t)(rows * cols) * sizeof(float));
    free(what);
    rq_qtensor_free(&q);
    return 0;
}

/* Collect each linear layer's input into the matching Hessian. */
static void hook_add(void *ctx, int layer, rq_hook_point p, const float *x, int n, int cols) {
    (void)layer;
    qstate *s = ctx;
    if (!(s->collect & 1u << p)) return;
    if (s->acc[p]) rq_gptq_add_batch(s->acc[p], x, n);
    if (p == RQ_HOOK_FFN_IN && s->ffn_x) { /* the MLP's inputs, for mlp_train */
        memcpy(s->ffn_x + s->ffn_n * cols, x, (size_t)n * (size_t)cols * sizeof(float));
        s->ffn_n += n;
    }
    if (p == RQ_HOOK_O_IN && s->ffn_z) { /* the output projection's, for o_proj */
        memcpy(s->ffn_z + s->z_n * cols, x, (size_t)n * (size_t)cols * sizeof(float));
        s->z_n += n;
    }
}

/* Run every calibration window through one block, in place. */
static void run_block(rq_fwd *f, const rq_layer *L, int layer, float *x, int n_win, int len, int E, rq_fwd_hook hook,
                      void *ctx) {
    for (int w = 0; w < n_win; w++)
        rq_fwd_layer(f, L, layer, x + (size_t)w * len * E, len, hook, ctx);
}

/* Collect the block's inputs at the hook points of mask into fresh accumulators
 * (and the MLP's inputs, for mlp_train, with RQ_HOOK_FFN_IN), running each window
 * from src as far as the last of them. */
static void collect_inputs(qstate *s, rq_fwd *f, const rq_layer *L, int l, const float *src, int nw, int len,
                           unsigned mask) {
    const rq_config *c = &s->cfg;
    const int E = c->n_embd;
    int64_t widths[RQ_HOOK_COUNT] = {E, (int64_t)c->n_head * c->head_dim, E, c->n_ff};
    int last = 0;
    for (int p = 0; p < RQ_HOOK_COUNT; p++)
        if (mask & 1u << p) {
            rq_gptq_free(s->acc[p]);
            s->acc[p] = rq_gptq_new(widths[p]);
            /* q/k/v and gate/up share their input, so its factor is made once */
            rq_gptq_keep_factor(s->acc[p], p == RQ_HOOK_ATTN_IN || p == RQ_HOOK_FFN_IN);
            last = p;
        }
    if (mask & 1u << RQ_HOOK_FFN_IN) s->ffn_n = 0;
    if (mask & 1u << RQ_HOOK_O_IN) s->z_n = 0;
    s->collect = mask;
    /* a pass that ends at the MLP's input leaves the residual the MLP adds to (with
     * o_proj the target is taken from the block's input instead, by the caller) */
    float *y = last == RQ_HOOK_FFN_IN && !s->r->mlp_train.o_proj ? s->ffn_y : NULL;
    float *tmp = rq_malloc((size_t)len * E * sizeof(float));
    for (int wi = 0; wi < nw; wi++) {
        memcpy(tmp, src + (size_t)wi * len * E, (size_t)len * E * sizeof(float));
        rq_fwd_layer_until(f, L, l, tmp, len, (rq_hook_point)last, hook_add, s);
        for (int64_t i = 0; y && i < (int64_t)len * E; i++)
            y[(size_t)wi * len * E + i] -= tmp[i];
    }
    free(tmp);
    s->collect = 0;
}

/* MLP-level replication and mlp_train need each block's three MLP matrices
 * replicated alike: refuse anything else before any work, naming the block. */
static int check_mlp_recipe(const qstate *s) {
    const rq_recipe *r = s->r;
    for (uint64_t i = 0; i < s->g->n_tensors; i++) {
        rq_tensor_recipe t;
        const char *nm = s->g->tensors[i].name;
        rq_recipe_for_tensor(r, nm, &t);
        if (t.rep.K > 0 && t.method != RQ_METHOD_KEEP && t.rep.combine == RQ_REP_COMBINE_MLP && mlp_index(nm) < 0)
            return rq_fail("%s: \"combine\": \"mlp\" adds the paths of an MLP after its nonlinearity; it applies to "
                           "ffn_gate, ffn_up and ffn_down only (use \"linear\" for this tensor)",
                           nm);
    }
    for (int l = 0; l < s->cfg.n_layer; l++) {
        rq_tensor_recipe t[3];
        char nm[3][96];
        int n_rep = 0, n_mlp = 0, n_keep = 0;
        for (int j = 0; j < 3; j++) {
            snprintf(nm[j], sizeof nm[j], "blk.%d.%s.weight", l, block_linears[MLP_FIRST + j].suffix);
            rq_recipe_for_tensor(r, nm[j], &t[j]);
            bool rep = t[j].rep.K > 0 && t[j].method != RQ_METHOD_KEEP;
            n_rep += rep;
            n_keep += t[j].method == RQ_METHOD_KEEP;
            n_mlp += rep && t[j].rep.combine == RQ_REP_COMBINE_MLP;
        }
        bool same = n_rep == 3 && t[1].rep.K == t[0].rep.K && t[2].rep.K == t[0].rep.K;
        if (n_mlp > 0 && !(n_mlp == 3 && same))
            return rq_fail("blk.%d: \"combine\": \"mlp\" must be set on all three of ffn_gate, ffn_up and ffn_down "
                           "with the same k (the block has paths, not single matrices)",
                           l);
        if (n_mlp > 0 && !r->mlp_train_on)
            return rq_fail("blk.%d: \"combine\": \"mlp\" needs \"mlp_train\": the paths start as near copies of "
                           "one decoder and only training moves them apart",
                           l);
        if (r->mlp_train_on && r->mlp_train.target != RQ_MLP_TARGET_MLP && !r->calib_true_seq)
            return rq_fail("\"mlp_train\" with a block or model target needs \"calib\": {\"true_sequential\": "
                           "true}");
        if (r->mlp_train_on && r->mlp_train.o_proj && r->mlp_train.target == RQ_MLP_TARGET_MLP)
            return rq_fail("\"mlp_train\": {\"o_proj\": true} trains towards the block's output; set \"target\" "
                           "to \"block\" or \"model\"");
        if (r->mlp_train_on && r->mlp_train.o_proj && n_keep < 3) {
            char on[96];
            snprintf(on, sizeof on, "blk.%d.%s.weight", l, block_linears[LINEAR_O].suffix);
            rq_tensor_recipe ot;
            rq_recipe_for_tensor(r, on, &ot);
            if (ot.method == RQ_METHOD_KEEP || ot.rep.K < 1 || ot.rep.combine != RQ_REP_COMBINE_LINEAR)
                return rq_fail("%s: \"mlp_train\": {\"o_proj\": true} trains this matrix's replica factors with "
                               "the block's MLP, so it must be replicated (\"replicate\": {\"k\": 1} or more, "
                               "\"combine\": \"linear\")",
                               on);
        }
        if (r->mlp_train_on && !same && n_keep < 3)
            return rq_fail("\"mlp_train\" trains each block's replicated MLP, but blk.%d's ffn_gate, ffn_up and "
                           "ffn_down are neither all replicated with one k nor all kept; set \"replicate\" on the "
                           "three, or \"method\": \"keep\" on the three (or remove \"mlp_train\")",
                           l);
    }
    return 0;
}

static bool any_gptq(const qstate *s) {
    char name[96];
    for (int l = 0; l < s->cfg.n_layer; l++)
        for (int i = 0; i < 7; i++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, block_linears[i].suffix);
            rq_tensor_recipe tr;
            rq_recipe_for_tensor(s->r, name, &tr);
            if (tr.method == RQ_METHOD_GPTQ) return true;
        }
    return false;
}

/* x[n, E] = embedding rows of tokens, from the f32 table or the file's rows. */
static int embed(const rq_gguf *g, const float *table, const int32_t *tok, int64_t n, int E, int V, float *x) {
    if (!table) return rq_tensor_rows_f32(g, "token_embd.weight", E, V, tok, n, x);
    for (int64_t i = 0; i < n; i++)
        memcpy(x + i * E, table + (size_t)tok[i] * E, (size_t)E * sizeof(float));
    return 0;
}

static void add_sum(rq_bits_sum *s, int64_t weights, int64_t bits) {
    s->weights += weights;
    s->bits += bits;
}

static void set_metadata(rq_gguf_writer *w, const rq_gguf *g, const rq_recipe *r, const rq_calib *cal) {
    /* a rotated model's repliq.rot.* stays true of the quantized one */
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (strncmp(g->kv[i].key, "repliq.", 7) || !strncmp(g->kv[i].key, "repliq.rot.", 11))
            rq_gguf_copy_kv(w, &g->kv[i]);
    char *json = rq_recipe_to_json(r);
    rq_gguf_set_u32(w, "repliq.format_version", 1);
    rq_gguf_set_str(w, "repliq.recipe", json);
    free(json);
    rq_gguf_set_u32(w, "repliq.act.bits", (uint32_t)r->act.a_bits);
    rq_gguf_set_f32(w, "repliq.act.clip", r->act.a_clip);
    rq_gguf_set_bool(w, "repliq.act.bf16", r->act.a_bf16);
    rq_gguf_set_u32(w, "repliq.kv.bits", (uint32_t)r->act.kv_bits);
    if (r->act.kv_unbias) rq_gguf_set_bool(w, "repliq.kv.unbias", true); /* absent = false, as files before it */
    if (cal) {
        const char *base = cal->path ? strrchr(cal->path, '/') : NULL;
        rq_gguf_set_str(w, "repliq.calib.file", base ? base + 1 : cal->path ? cal->path : "(given as tokens)");
        rq_gguf_set_str(w, "repliq.calib.sha256", cal->sha256);
        rq_gguf_set_u64(w, "repliq.calib.seed", cal->seed);
        rq_gguf_set_u32(w, "repliq.calib.n", (uint32_t)cal->n);
        rq_gguf_set_u32(w, "repliq.calib.len", (uint32_t)cal->len);
        rq_gguf_set_u32(w, "repliq.calib.docs_used", (uint32_t)cal->docs_used);
    }
}

int rq_quantize_model(const rq_quant_job *job, const rq_recipe *r, rq_quant_report *rep) {
    double t0 = rq_time();
    memset(rep, 0, sizeof *rep);
    qstate s = {0};
    s.r = r;
    s.verbose = job->verbose;
    s.job = job;
    struct stat st;
    if (stat(job->model, &st) != 0) return rq_fail("model '%s' not found", job->model);
    if ((S_ISDIR(st.st_mode) ? rq_hf_open(job->model, &s.g) : rq_gguf_open(job->model, &s.g))) return -1;
    int rc = -1;
    rq_tokenizer *tok = NULL;
    rq_calib cal = {0};
    bool have_cal = false, own_cal = false;
    rq_fwd *f = NULL;
    float *x = NULL, *xref = NULL, *embd = NULL;
    rq_gguf_writer *w = NULL;
    if (rq_config_from_gguf(s.g, &s.cfg)) goto done;
    const rq_config *c = &s.cfg;
    const int E = c->n_embd;
    s.out = rq_calloc(s.g->n_tensors, sizeof *s.out);
    for (uint64_t i = 0; i < s.g->n_tensors; i++)
        s.out[i].src = &s.g->tensors[i];

    /* replication needs each layer's inputs: refuse it elsewhere before any work */
    for (uint64_t i = 0; i < s.g->n_tensors; i++) {
        rq_tensor_recipe t;
        const char *nm = s.g->tensors[i].name;
        rq_recipe_for_tensor(r, nm, &t);
        if (t.rep.K > 0 && t.method != RQ_METHOD_KEEP && (t.method != RQ_METHOD_GPTQ || !rq_is_block_linear(nm))) {
            rq_fail("%s: \"replicate\" needs method \"gptq\" on a block linear layer (its fit uses the layer's "
                    "inputs); set \"method\": \"gptq\" or \"replicate\": null for this tensor",
                    nm);
            goto done;
        }
    }

    if (check_mlp_recipe(&s)) goto done;

    /* token embeddings (and an untied output) first: RTN only, no inputs to fit */
    rq_tensor_recipe tr;
    rq_recipe_for_tensor(r, "token_embd.weight", &tr);
    if (tr.method != RQ_METHOD_KEEP) {
        if (!(embd = rq_tensor_load_f32(s.g, "token_embd.weight", E, c->n_vocab))) goto done;
        if (quantize_tensor(&s, "token_embd.weight", embd, c->n_vocab, E, NULL)) goto done;
    }
    if (!c->tied_output) {
        rq_recipe_for_tensor(r, "output.weight", &tr);
        if (tr.method != RQ_METHOD_KEEP) {
            float *o = rq_tensor_load_f32(s.g, "output.weight", E, c->n_vocab);
            if (!o) goto done;
            int e = quantize_tensor(&s, "output.weight", o, c->n_vocab, E, NULL);
            free(o);
            if (e) goto done;
        }
    }

    bool calibrate = any_gptq(&s) || job->measure;
    /* the reference model's stream of block inputs: fed to the blocks, or the model target's input */
    bool need_ref = r->calib_feed_ref || (r->mlp_train_on && r->mlp_train.target == RQ_MLP_TARGET_MODEL);
    int nw = 0, len = 0;
    if (calibrate) {
        if (job->calib) {
            cal = *job->calib;
        } else {
            if (!job->calib_path) {
                rq_fail("GPTQ needs calibration text: give -f FILE (the C4 sample) or set REPLIQ_DATA");
                goto done;
            }
            if (rq_tokenizer_from_gguf(s.g, &tok)) goto done;
            if (rq_calib_load(job->calib_path, tok, r->calib_n, r->calib_len, r->seed, &cal)) goto done;
            own_cal = true;
        }
        have_cal = true;
        for (int64_t i = 0; i < (int64_t)cal.n * cal.len; i++)
            if (cal.tokens[i] < 0 || cal.tokens[i] >= c->n_vocab) {
                rq_fail("calibration token %d at %lld is outside the vocabulary (%d)", cal.tokens[i], (long long)i,
                        c->n_vocab);
                goto done;
            }
        nw = cal.n;
        len = cal.len;
        rep->calib_tokens = (int64_t)nw * len;
        x = rq_malloc((size_t)nw * len * E * sizeof(float));
        if (embed(s.g, embd, cal.tokens, (int64_t)nw * len, E, c->n_vocab, x)) goto done;
        if (need_ref) {
            xref = rq_malloc((size_t)nw * len * E * sizeof(float));
            memcpy(xref, x, (size_t)nw * len * E * sizeof(float));
        }
        f = rq_fwd_new_cfg(c, len);
        /* the MLP's inputs, or with o_proj (which recomputes them) the projection's */
        if (r->mlp_train_on && !r->mlp_train.o_proj) s.ffn_x = rq_malloc((size_t)nw * len * E * sizeof(float));
        if (r->mlp_train_on && r->mlp_train.o_proj)
            s.ffn_z = rq_malloc((size_t)nw * len * c->n_head * c->head_dim * sizeof(float));
        if (r->mlp_train_on && r->mlp_train.target != RQ_MLP_TARGET_MLP)
            s.ffn_y = rq_malloc((size_t)nw * len * E * sizeof(float));
        rq_fwd_set_actq(f, &r->act);
        rq_online_rot on;
        if (rq_online_from_gguf(s.g, &on) || rq_fwd_set_online(f, &on)) goto done;
        if (job->verbose)
            fprintf(stderr, "quantize: %d calibration windows of %d tokens (%s, seed %llu, %d documents)\n", nw, len,
                    cal.path ? cal.path : "tokens", (unsigned long long)cal.seed, cal.docs_used);
    }

    double tl = rq_time();
    for (int l = 0; l < c->n_layer; l++) {
        rq_layer L, Lref;
        if (rq_layer_load(s.g, c, l, &L)) goto done;
        if (rq_layer_ffn_paths(&L) > 1) {
            rq_fail("blk.%d: the source's MLP runs as %d paths (a repliq file replicated with \"combine\": \"mlp\"); "
                    "quantize the original model instead",
                    l, rq_layer_ffn_paths(&L));
            rq_layer_free(&L);
            goto done;
        }
        double tb = rq_time(), t_in = 0, t_q = 0;
        s.t_err = 0;
        bool have_ref = false;
        /* statistics of the inputs this block sees: quantized (default) or reference;
         * all from the unquantized block, or (true_sequential) each group of linears'
         * after the groups before it are quantized */
        float *src = r->calib_feed_ref ? xref : x;
        if (calibrate) {
            s.keep_mlp = r->mlp_train_on && mlp_trained_in(&s, l);
            collect_inputs(&s, f, &L, l, src, nw, len, r->calib_true_seq ? 1u << RQ_HOOK_ATTN_IN : 0xfu);
            if (s.ffn_y) { /* the reference block's output, before anything in it is quantized */
                const float *in = r->mlp_train.target == RQ_MLP_TARGET_MODEL ? xref : src;
                memcpy(s.ffn_y, in, (size_t)nw * len * E * sizeof(float));
                run_block(f, &L, l, s.ffn_y, nw, len, E, NULL, NULL);
                /* a reference stream kept for the model target alone moves on to this output
                 * now (fed to the blocks, it is still their input and moves on at the end) */
                if (in == xref && !r->calib_feed_ref) memcpy(xref, s.ffn_y, (size_t)nw * len * E * sizeof(float));
                /* with o_proj the target is what the block adds to its (quantized stream's) input */
                for (int64_t i = 0; r->mlp_train.o_proj && i < (int64_t)nw * len * E; i++)
                    s.ffn_y[i] -= src[i];
            }
            if (r->calib_feed_ref) {
                if (rq_layer_load(s.g, c, l, &Lref)) {
                    rq_layer_free(&L);
                    goto done;
                }
                have_ref = true;
            }
        }
        t_in = rq_time() - tb;
        int err = 0;
        float *ref[3] = {NULL, NULL, NULL}; /* the reference MLP, for mlp_train */
        for (int j = 0; s.keep_mlp && r->mlp_train.target == RQ_MLP_TARGET_MLP && j < 3; j++) {
            const rq_linear *lin = layer_linear(&L, MLP_FIRST + j);
            ref[j] = rq_malloc((size_t)(lin->rows * lin->cols) * sizeof(float));
            memcpy(ref[j], lin->w, (size_t)(lin->rows * lin->cols) * sizeof(float));
        }
        for (int i = 0; i < 7 && !err; i++) {
            char name[96];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, block_linears[i].suffix);
            rq_linear *lin = layer_linear(&L, i);
            rq_hook_point in = block_linears[i].in;
            if (calibrate && r->calib_true_seq && i > 0 && in != block_linears[i - 1].in) {
                double tc = rq_time();
                collect_inputs(&s, f, &L, l, src, nw, len, 1u << in);
                t_in += rq_time() - tc;
            }
            err =
                quantize_tensor(&s, name, lin->w, lin->rows, lin->cols, calibrate ? s.acc[block_linears[i].in] : NULL);
        }
        if (!err && s.keep_mlp) err = train_mlp(&s, f, &L, l, ref, src);
        for (int j = 0; j < 4; j++) {
            if (j < 3) free(ref[j]);
            rq_rep_free(&s.mlp[j]);
        }
        s.keep_mlp = false;
        for (int p = 0; p < RQ_HOOK_COUNT; p++) {
            rq_gptq_free(s.acc[p]);
            s.acc[p] = NULL;
        }
        t_q = rq_time() - tb - t_in;
        if (!err && calibrate) {
            run_block(f, &L, l, x, nw, len, E, NULL, NULL);
            if (have_ref) run_block(f, &Lref, l, xref, nw, len, E, NULL, NULL);
        }
        if (job->verbose && calibrate)
            fprintf(stderr,
                    "  blk.%d: inputs and Hessians %.1fs, quantize %.1fs (of which error %.1fs), forward %.1fs\n", l,
                    t_in, t_q, s.t_err, rq_time() - tb - t_in - t_q);
        rq_layer_free(&L);
        if (have_ref) rq_layer_free(&Lref);
        if (err) goto done;
        rq_progress("quantizing blocks", l + 1, c->n_layer, tl);
    }

    /* the file: metadata, then every tensor in the source's order */
    w = rq_gguf_writer_new();
    set_metadata(w, s.g, r, have_cal ? &cal : NULL);
    for (uint64_t i = 0; i < s.g->n_tensors; i++) {
        const rq_gguf_tensor *t = &s.g->tensors[i];
        const out_tensor *o = &s.out[i];
        int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        int64_t nb = (int64_t)(o->blob ? o->blob_len : t->nbytes);
        if (o->blob) {
            int64_t ne = (int64_t)o->blob_len;
            if (rq_gguf_add_tensor(w, t->name, RQ_GGML_RQ_PACKED, 1, &ne, o->blob, o->blob_len)) goto done;
        } else if (rq_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes))
            goto done;
        bool eo = !strcmp(t->name, "token_embd.weight") || !strcmp(t->name, "output.weight");
        add_sum(rq_is_block_linear(t->name) ? &rep->linear : eo ? &rep->embd_out : &rep->other, n, nb * 8);
    }
    if (rq_gguf_write(w, job->out_path)) goto done;
    if (stat(job->out_path, &st) == 0) rep->file_bytes = (size_t)st.st_size;
    rep->rel_err_mean = s.err_n ? s.err_sum / s.err_n : 0;
    rep->mlp_trained = s.mlp_trained;
    rep->mlp_val_start_mean = s.mlp_trained ? s.val_start_sum / s.mlp_trained : 0;
    rep->mlp_val_best_mean = s.mlp_trained ? s.val_best_sum / s.mlp_trained : 0;
    rc = 0;
done:
    if (w) rq_gguf_writer_free(w);
    for (int p = 0; p < RQ_HOOK_COUNT; p++)
        rq_gptq_free(s.acc[p]);
    if (s.out)
        for (uint64_t i = 0; i < s.g->n_tensors; i++)
            free(s.out[i].blob);
    free(s.out);
    free(x);
    free(xref);
    free(embd);
    free(s.ffn_x);
    free(s.ffn_y);
    free(s.ffn_z);
    for (int j = 0; j < 4; j++)
        rq_rep_free(&s.mlp[j]);
    rq_fwd_free(f);
    if (own_cal) rq_calib_free(&cal);
    if (tok) rq_tokenizer_free(tok);
    rq_gguf_close(s.g);
    rep->seconds = rq_time() - t0;
    rep->peak_rss = rq_peak_rss();
    return rc;
}
