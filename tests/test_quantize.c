/* test_quantize.c - the quantization driver end to end on tiny random models:
 * files load and evaluate, the same seed gives a byte-identical file, kept
 * tensors are copied verbatim, GPTQ beats RTN, bits are accounted exactly. */
#include <math.h>
#include <stdint.h>
#include <unistd.h>

#include "calib.h"
#include "forward.h"
#include "gguf.h"
#include "model.h"
#include "qformat.h"
#include "quantize.h"
#include "recipe.h"
#include "replica.h"
#include "rq_test.h"
#include "tiny_model.h"
#include "util.h"

static char src_path[128], out_path[128], out2_path[128];
static int32_t calib_tok[4 * 48];

static rq_calib tiny_calib(void) { return tiny_calib_windows(calib_tok, 4, 48, 97, 11u); }

static int write_src(const char *arch) {
    /* n_ff 100: rows that no group of 64 or 128 divides */
    tiny_spec sp = {arch, 97, 64, 100, 2, 4, 2, 10000.0f, 5, RQ_GGML_F32, 0};
    return tiny_model_write(&sp, src_path);
}

static int quantize(const rq_recipe *r, const char *out, rq_quant_report *rep) {
    rq_calib c = tiny_calib();
    rq_quant_job job = {.model = src_path, .calib = &c, .out_path = out, .verbose = 0};
    int rc = rq_quantize_model(&job, r, rep);
    if (rc) printf("  quantize: %s\n", rq_error());
    return rc;
}

static int read_all(const char *path, uint8_t **buf, size_t *n) {
    char *b;
    if (rq_read_file(path, &b, n)) return -1;
    *buf = (uint8_t *)b;
    return 0;
}

/* The default recipe on the grid replication starts from: 2 bits, symmetric, one
 * scale per row, clipping search. */
static void w2_per_row_recipe(rq_recipe *r) {
    rq_recipe_default(r);
    r->base.grid.bits = 2;
    r->base.grid.sym = true;
    r->base.grid.group = 0;
    r->base.grid.mse = true;
}

/* One override: the tensors matching pattern kept as they are. */
static void keep_override(rq_recipe *r, const char *pattern) {
    free(r->ov);
    r->ov = rq_calloc(1, sizeof *r->ov);
    r->n_ov = 1;
    snprintf(r->ov[0].pattern, sizeof r->ov[0].pattern, "%s", pattern);
    r->ov[0].set = RQ_OV_METHOD;
    r->ov[0].r.method = RQ_METHOD_KEEP;
}

/* Both files read and byte for byte equal. */
static bool same_bytes(const char *p, const char *q) {
    uint8_t *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    bool ok = read_all(p, &x, &nx) == 0 && read_all(q, &y, &ny) == 0 && nx == ny && !memcmp(x, y, nx);
    free(x);
    free(y);
    return ok;
}

/* max |logit difference| between the source model and a quantized file, over 40 tokens */
static double logit_gap(const char *qpath) {
    rq_model *a = NULL, *b = NULL;
    if (rq_model_load(src_path, &a) || rq_model_load(qpath, &b)) {
        printf("  load: %s\n", rq_error());
        rq_model_free(a);
        return INFINITY;
    }
    enum { T = 40 };
    int32_t tok[T];
    for (int i = 0; i < T; i++)
        tok[i] = (i * 7 + 3) % 97;
    float *la = malloc(sizeof(float) * T * 97), *lb = malloc(sizeof(float) * T * 97);
    rq_fwd *fa = rq_fwd_new(a, T), *fb = rq_fwd_new(b, T);
    rq_fwd_logits(a, rq_fwd_hidden(fa, tok, T), T, la);
    rq_fwd_logits(b, rq_fwd_hidden(fb, tok, T), T, lb);
    double d = 0;
    for (int i = 0; i < T * 97; i++)
        d = fmax(d, fabs((double)la[i] - lb[i]));
    rq_fwd_free(fa);
    rq_fwd_free(fb);
    free(la);
    free(lb);
    rq_model_free(a);
    rq_model_free(b);
    return d;
}

static void test_formats_load_and_evaluate(void) {
    const char *archs[2] = {"llama", "qwen2"};
    for (int a = 0; a < 2; a++) {
        REQUIRE(write_src(archs[a]) == 0);
        double gap[9];
        for (int bits = 1; bits <= 8; bits++) {
            rq_recipe r;
            rq_recipe_default(&r);
            r.base.grid.bits = bits;
            r.base.grid.group = 64;
            rq_quant_report rep;
            REQUIRE(quantize(&r, out_path, &rep) == 0);
            gap[bits] = logit_gap(out_path);
            CHECKF(isfinite(gap[bits]), "%s %d bits: file does not evaluate", archs[a], bits);
            /* bits per weight of the linear layers: codes + f16 scale and min per group of 64 + headers */
            double bpw = (double)rep.linear.bits / (double)rep.linear.weights;
            CHECKF(bpw > bits + 32.0 / 64 && bpw < bits + 32.0 / 64 + 0.2, "%s %d bits: %.4f bpw", archs[a], bits, bpw);
            rq_recipe_free(&r);
        }
        CHECKF(gap[8] < 0.05 * gap[2], "%s: 8-bit gap %.4g not far below 2-bit %.4g", archs[a], gap[8], gap[2]);
        CHECKF(gap[4] < gap[2] && gap[2] < gap[1] * 1.5, "%s: gaps 1/2/4 bits %.4g %.4g %.4g", archs[a], gap[1], gap[2],
               gap[4]);
    }
    unlink(out_path);
    unlink(src_path);
}

static void test_same_seed_same_bytes(void) {
    REQUIRE(write_src("llama") == 0);
    rq_recipe r;
    rq_recipe_default(&r);
    r.base.grid.bits = 2;
    r.base.grid.round = RQ_ROUND_STOCHASTIC;
    r.seed = 42;
    rq_quant_report rep;
    REQUIRE(quantize(&r, out_path, &rep) == 0 && quantize(&r, out2_path, &rep) == 0);
    uint8_t *a, *b;
    size_t na, nb;
    REQUIRE(read_all(out_path, &a, &na) == 0 && read_all(out2_path, &b, &nb) == 0);
    CHECK(na == nb && memcmp(a, b, na) == 0);
    free(b);
    r.seed = 43;
    REQUIRE(quantize(&r, out2_path, &rep) == 0);
    REQUIRE(read_all(out2_path, &b, &nb) == 0);
    CHECKF(na != nb || memcmp(a, b, na) != 0, "a different seed gave the same stochastic rounding");
    free(a);
    free(b);
    /* the recipe travels with the file and parses back to the same text */
    rq_gguf *g;
    REQUIRE(rq_gguf_open(out2_path, &g) == 0);
    rq_str js;
    REQUIRE(rq_gguf_get_str(g, "repliq.recipe", &js) == 0);
    char *text = rq_strndup(js.ptr, js.len), *want = rq_recipe_to_json(&r);
    CHECK(strcmp(text, want) == 0);
    rq_recipe back;
    CHECK(rq_recipe_parse(text, "file", &back) == 0 && back.seed == 43 && back.base.grid.bits == 2);
    rq_recipe_free(&back);
    free(text);
    free(want);
    /* kept tensors are the source's bytes */
    rq_gguf *s;
    REQUIRE(rq_gguf_open(src_path, &s) == 0);
    const char *kept[3] = {"token_embd.weight", "output.weight", "blk.1.ffn_norm.weight"};
    for (int i = 0; i < 3; i++) {
        const rq_gguf_tensor *x = rq_gguf_tensor_find(s, kept[i]), *y = rq_gguf_tensor_find(g, kept[i]);
        CHECKF(x && y && x->type == y->type && x->nbytes == y->nbytes && !memcmp(x->data, y->data, x->nbytes), "%s",
               kept[i]);
    }
    const rq_gguf_tensor *q = rq_gguf_tensor_find(g, "blk.0.ffn_down.weight");
    CHECK(q && q->type == RQ_GGML_RQ_PACKED);
    rq_gguf_close(s);
    rq_gguf_close(g);
    rq_recipe_free(&r);
    unlink(out_path);
    unlink(out2_path);
    unlink(src_path);
}

/* GPTQ's mean relative layer error ||(W'-W)X||^2 / ||WX||^2 is below RTN's on
 * the same grid and calibration inputs, at every setting.
 * Feeding reference inputs also works. */
static void test_gptq_beats_rtn(void) {
    REQUIRE(write_src("llama") == 0);
    struct {
        int bits;
        int64_t group;
        bool act_order, binres, sym;
    } cases[] = {{4, 0, false, false, false}, {3, 64, false, false, false}, {2, 64, true, false, false},
                 {1, 64, false, false, true}, {1, 64, false, false, false}, {1, 64, false, true, true}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double e[2], gap[2];
        for (int m = 0; m < 2; m++) {
            rq_recipe r;
            rq_recipe_default(&r);
            r.base.method = m ? RQ_METHOD_GPTQ : RQ_METHOD_RTN;
            r.base.grid.bits = cases[i].bits;
            r.base.grid.group = cases[i].group;
            r.base.grid.sym = cases[i].sym;
            r.base.grid.binres = cases[i].binres;
            r.base.gptq.act_order = cases[i].act_order;
            rq_calib c = tiny_calib();
            rq_quant_job job = {.model = src_path, .calib = &c, .out_path = out_path, .measure = true};
            rq_quant_report rep;
            REQUIRE(rq_quantize_model(&job, &r, &rep) == 0);
            e[m] = rep.rel_err_mean;
            gap[m] = logit_gap(out_path);
            rq_recipe_free(&r);
        }
        CHECKF(e[1] < e[0], "case %zu (%d bits): GPTQ layer error %.4g not below RTN %.4g", i, cases[i].bits, e[1],
               e[0]);
        /* the logits of a random tiny model are a noisy judge of 192 calibration
         * tokens' worth of fitting: only require that GPTQ's file evaluates */
        CHECKF(isfinite(gap[1]) && isfinite(gap[0]), "case %zu: logit gaps %g %g", i, gap[1], gap[0]);
    }
    rq_recipe r;
    rq_recipe_default(&r);
    r.base.grid.bits = 3;
    r.calib_feed_ref = true;
    rq_quant_report rep;
    CHECK(quantize(&r, out_path, &rep) == 0 && isfinite(logit_gap(out_path)));
    rq_recipe_free(&r);
    unlink(out_path);
    unlink(src_path);
}

/* rq_tensor_rows_f32 gathers the same rows as the whole table decoded (any type,
 * ids repeated, first and last), and refuses ids outside the table and a wrong shape. */
static void check_embedding_rows(const char *path) {
    rq_gguf *g;
    REQUIRE(rq_gguf_open(path, &g) == 0);
    const int E = 64, V = 97;
    float *all = rq_tensor_load_f32(g, "token_embd.weight", E, V);
    REQUIRE(all != NULL);
    const int32_t ids[5] = {0, 96, 13, 13, 50};
    float rows[5 * 64];
    REQUIRE(rq_tensor_rows_f32(g, "token_embd.weight", E, V, ids, 5, rows) == 0);
    int same = 1;
    for (int i = 0; i < 5; i++)
        same &= !memcmp(rows + i * E, all + (size_t)ids[i] * E, E * sizeof(float));
    CHECKF(same, "%s: gathered rows differ from the decoded table", path);
    const int32_t bad[2] = {97, -1};
    for (int i = 0; i < 2; i++) {
        CHECK(rq_tensor_rows_f32(g, "token_embd.weight", E, V, bad + i, 1, rows) == -1);
        CHECK(strstr(rq_error(), "outside its 97 rows") != NULL);
    }
    int rc = rq_tensor_rows_f32(g, "token_embd.weight", E + 1, V, ids, 1, rows);
    CHECK(rc == -1 && strstr(rq_error(), "token_embd.weight") != NULL);
    CHECK(rq_tensor_rows_f32(g, "no_such.weight", E, V, ids, 1, rows) == -1 && strstr(rq_error(), "missing"));
    free(all);
    rq_gguf_close(g);
}

/* Embeddings and output quantized by an override (RTN, 8 bits): the file's
 * configuration still reads the vocabulary from the packed embedding, and it loads. */
static void test_embeddings_override(void) {
    REQUIRE(write_src("llama") == 0);
    rq_recipe r;
    rq_recipe_default(&r);
    r.base.grid.bits = 8;
    r.n_ov = 1;
    r.ov = calloc(1, sizeof *r.ov);
    snprintf(r.ov[0].pattern, sizeof r.ov[0].pattern, "[to]*.weight"); /* token_embd, output */
    r.ov[0].set = RQ_OV_METHOD;
    r.ov[0].r.method = RQ_METHOD_RTN;
    rq_quant_report rep;
    REQUIRE(quantize(&r, out_path, &rep) == 0);
    rq_gguf *g;
    REQUIRE(rq_gguf_open(out_path, &g) == 0);
    CHECK(rq_gguf_tensor_find(g, "token_embd.weight")->type == RQ_GGML_RQ_PACKED);
    CHECK(rq_gguf_tensor_find(g, "output.weight")->type == RQ_GGML_RQ_PACKED);
    rq_gguf_close(g);
    check_embedding_rows(out_path); /* a packed table */
    check_embedding_rows(src_path); /* f32 */
    double gap = logit_gap(out_path);
    CHECKF(gap < 0.5, "8-bit everywhere: logit gap %g", gap); /* 2-bit files are far above 1 */
    rq_recipe_free(&r);
    tiny_spec sp = {"llama", 97, 64, 100, 2, 4, 2, 10000.0f, 5, RQ_GGML_F16, 0};
    REQUIRE(tiny_model_write(&sp, src_path) == 0);
    check_embedding_rows(src_path); /* f16 */
    unlink(out_path);
    unlink(src_path);
}

/* Replicated layers end to end on both architectures: the file stores one rqrep
 * blob per linear layer whose size is its bit accounting, it loads and evaluates,
 * the layer error at K = 4 is below the per-row GPTQ file's, the same seed gives
 * the same bytes, and replication without GPTQ is refused. */
static void test_replicated_file(void) {
    const char *archs[2] = {"llama", "qwen2"};
    for (int a = 0; a < 2; a++) {
        REQUIRE(write_src(archs[a]) == 0);
        double err[2];
        for (int i = 0; i < 2; i++) {
            rq_recipe r;
            w2_per_row_recipe(&r);
            r.base.gptq.act_order = true;
            if (i == 1) {
                r.base.rep = rq_rep_opts_default();
                r.base.rep.K = 4;
            }
            rq_calib c = tiny_calib();
            rq_quant_job job = {.model = src_path, .calib = &c, .out_path = i ? out_path : out2_path, .measure = true};
            rq_quant_report rep;
            REQUIRE(rq_quantize_model(&job, &r, &rep) == 0);
            err[i] = rep.rel_err_mean;
            CHECKF(isfinite(logit_gap(i ? out_path : out2_path)), "%s: file does not evaluate", archs[a]);
            if (i == 1) {
                /* q/k/v/o are [64, 64] or [32, 64], gate/up [100, 64], down [64, 100] */
                rq_gguf *g;
                REQUIRE(rq_gguf_open(out_path, &g) == 0);
                const rq_gguf_tensor *t = rq_gguf_tensor_find(g, "blk.1.ffn_down.weight");
                REQUIRE(t && t->type == RQ_GGML_RQ_PACKED && rq_rep_is_blob(t->data, t->nbytes));
                rq_rep_bits b = rq_rep_bits_of(2, 4, 64, 100, false);
                CHECK((int64_t)t->nbytes * 8 == b.code_bits + b.param_bits + b.header_bits);
                CHECK(b.param_bits == 8 * (2 * 4 * (64 + 100) + 16));
                rq_gguf_close(g);
                rq_quant_report rep2;
                REQUIRE(quantize(&r, out2_path, &rep2) == 0);
                CHECK(same_bytes(out_path, out2_path));
                r.base.method = RQ_METHOD_RTN;
                CHECK(quantize(&r, out2_path, &rep2) != 0 && strstr(rq_error(), "needs method \"gptq\""));
            }
            rq_recipe_free(&r);
        }
        CHECKF(err[1] < err[0], "%s: K=4 layer error %.5f not below per-row GPTQ %.5f", archs[a], err[1], err[0]);
        printf("  %s: mean relative layer error per-row GPTQ %.5f, K=4 replicas %.5f\n", archs[a], err[0], err[1]);
    }
    unlink(out_path);
    unlink(out2_path);
    unlink(src_path);
}

/* mlp_train on replicated MLPs: K = 1 trained (combine linear) and K = 2 paths
 * (combine mlp). The file loads with the paths, the fast forward equals the
 * scalar reference on it, training lowers the held-out MLP error, the same seed
 * gives the same bytes, and recipes that cannot work are refused naming why. */
static void test_mlp_trained_file(void) {
    REQUIRE(write_src("qwen2") == 0);
    for (int mode = 0; mode < 2; mode++) {
        rq_recipe r;
        w2_per_row_recipe(&r);
        r.base.rep = rq_rep_opts_default();
        r.base.rep.K = 1;
        rq_override ov = {.set = RQ_OV_REPLICATE};
        snprintf(ov.pattern, sizeof ov.pattern, "blk.*.ffn_*");
        ov.r = r.base;
        ov.r.rep.K = mode ? 2 : 1;
        ov.r.rep.combine = mode ? RQ_REP_COMBINE_MLP : RQ_REP_COMBINE_LINEAR;
        ov.r.rep.init_spread = 0.05f;
        r.ov = rq_malloc(sizeof ov);
        r.ov[0] = ov;
        r.n_ov = 1;
        rq_quant_report rep;
        /* refused: paths without training */
        CHECK((quantize(&r, out_path, &rep) != 0) == (mode == 1));
        if (mode) CHECKF(strstr(rq_error(), "needs \"mlp_train\""), "%s", rq_error());
        r.mlp_train_on = true;
        r.mlp_train.steps = 20;
        r.mlp_train.batch = 32;
        r.mlp_train.eval_every = 5;
        REQUIRE(quantize(&r, out_path, &rep) == 0);
        CHECK(rep.mlp_trained == 2);
        CHECKF(rep.mlp_val_best_mean < rep.mlp_val_start_mean, "held-out MLP error %.6f -> %.6f",
               rep.mlp_val_start_mean, rep.mlp_val_best_mean);
        printf("  %s: held-out MLP error %.5f -> %.5f\n", mode ? "K=2 paths" : "K=1 linear", rep.mlp_val_start_mean,
               rep.mlp_val_best_mean);
        rq_gguf *g;
        REQUIRE(rq_gguf_open(out_path, &g) == 0);
        const rq_gguf_tensor *t = rq_gguf_tensor_find(g, "blk.1.ffn_up.weight");
        REQUIRE(t && rq_rep_is_blob(t->data, t->nbytes));
        rq_rep h;
        REQUIRE(rq_rep_peek(t->data, t->nbytes, &h, NULL, NULL) == 0);
        CHECK(h.K == (mode ? 2 : 1) && h.combine == (mode ? RQ_REP_COMBINE_MLP : RQ_REP_COMBINE_LINEAR));
        float *tmp = rq_malloc(100 * 64 * sizeof(float));
        if (mode)
            CHECK(rq_qformat_to_float(t->data, t->nbytes, 100, 64, tmp) != 0 && strstr(rq_error(), "nonlinearity"));
        rq_model *m = NULL;
        REQUIRE(rq_model_load(out_path, &m) == 0);
        CHECK(rq_layer_ffn_paths(&m->layers[1]) == (mode ? 2 : 1));
        /* path k's up projection is replica k of the stored blob */
        rq_rep u;
        REQUIRE(rq_rep_unpack(t->data, t->nbytes, &u) == 0);
        for (int k = 0; k < u.K && mode; k++) {
            const rq_linear *pg, *pu, *pd;
            rq_layer_ffn_path(&m->layers[1], k, &pg, &pu, &pd);
            rq_rep_dequant_replica(&u, k, tmp);
            CHECKF(!memcmp(pu->w, tmp, 100 * 64 * sizeof(float)), "path %d's ffn_up is not replica %d", k, k);
        }
        rq_rep_free(&u);
        free(tmp);
        rq_gguf_close(g);
        enum { T = 12 };
        int32_t tok[T];
        for (int i = 0; i < T; i++)
            tok[i] = (i * 5 + 1) % 97;
        float *a = rq_malloc(sizeof(float) * T * 97), *b = rq_malloc(sizeof(float) * T * 97);
        REQUIRE(rq_forward_ref(m, tok, T, a) == 0);
        rq_fwd *f = rq_fwd_new(m, T);
        rq_fwd_logits(m, rq_fwd_hidden(f, tok, T), T, b);
        double d = 0, mx = 0;
        for (int i = 0; i < T * 97; i++) {
            d = fmax(d, fabs((double)a[i] - b[i]));
            mx = fmax(mx, fabs((double)a[i]));
        }
        CHECKF(d <= 1e-4 * mx, "fast forward differs from the reference by %.3g (largest logit %.3g)", d, mx);
        rq_fwd_free(f);
        free(a);
        free(b);
        rq_model_free(m);
        if (mode) {
            rq_quant_report rep2;
            REQUIRE(quantize(&r, out2_path, &rep2) == 0);
            CHECK(same_bytes(out_path, out2_path));
            /* refused: paths on attention, training with an unreplicated MLP */
            r.base.rep.combine = RQ_REP_COMBINE_MLP;
            CHECKF(quantize(&r, out2_path, &rep2) != 0 && strstr(rq_error(), "ffn_gate, ffn_up and ffn_down only"),
                   "%s", rq_error());
            r.base.rep.combine = RQ_REP_COMBINE_LINEAR;
            r.n_ov = 0;
            r.base.rep.K = 0;
            CHECKF(quantize(&r, out2_path, &rep2) != 0 && strstr(rq_error(), "neither all replicated"), "%s",
                   rq_error());
        }
        rq_recipe_free(&r);
    }
    unlink(out_path);
    unlink(out2_path);
    unlink(src_path);
}

/* Tensor name's stored bytes are the same in files p and q. */
static bool same_tensor(const char *p, const char *q, const char *name) {
    rq_gguf *a = NULL, *b = NULL;
    bool ok = false;
    if (rq_gguf_open(p, &a) == 0 && rq_gguf_open(q, &b) == 0) {
        const rq_gguf_tensor *x = rq_gguf_tensor_find(a, name), *y = rq_gguf_tensor_find(b, name);
        ok = x && y && x->nbytes == y->nbytes && !memcmp(x->data, y->data, x->nbytes);
    }
    rq_gguf_close(a);
    rq_gguf_close(b);
    return ok;
}

/* True-sequential, K = 1 replicated linears and a short mlp_train. */
static void train_k1_recipe(rq_recipe *r, int steps) {
    r->calib_true_seq = true;
    r->base.rep = rq_rep_opts_default();
    r->base.rep.K = 1;
    r->mlp_train_on = true;
    r->mlp_train.steps = steps;
    r->mlp_train.batch = 32;
    r->mlp_train.eval_every = 5;
}

/* calib.true_sequential: each group of a block's linears is quantized on inputs
 * collected after the groups before it. In block 0 (whose input is the same in
 * both modes) q/k/v see the same inputs and come out the same; o, gate, up and
 * down do not. With attention kept, gate and up are the same and only down (whose
 * input now passes the quantized gate and up) changes. Training runs on it too. */
static void test_true_sequential(void) {
    REQUIRE(write_src("qwen2") == 0);
    for (int keep_attn = 0; keep_attn < 2; keep_attn++) {
        rq_recipe r;
        w2_per_row_recipe(&r);
        if (keep_attn) {
            keep_override(&r, "blk.*.attn_*");
        }
        rq_quant_report rep;
        REQUIRE(quantize(&r, out_path, &rep) == 0);
        r.calib_true_seq = true;
        REQUIRE(quantize(&r, out2_path, &rep) == 0);
        CHECK(isfinite(logit_gap(out2_path)));
        const char *same[2][3] = {{"attn_q", "attn_k", "attn_v"}, {"attn_output", "ffn_gate", "ffn_up"}};
        const char *diff[2][4] = {{"attn_output", "ffn_gate", "ffn_up", "ffn_down"}, {"ffn_down"}};
        char nm[64];
        for (int i = 0; i < 3; i++) {
            snprintf(nm, sizeof nm, "blk.0.%s.weight", same[keep_attn][i]);
            CHECKF(same_tensor(out_path, out2_path, nm), "keep_attn %d: %s changed", keep_attn, nm);
        }
        for (int i = 0; i < 4 && diff[keep_attn][i]; i++) {
            snprintf(nm, sizeof nm, "blk.0.%s.weight", diff[keep_attn][i]);
            CHECKF(!same_tensor(out_path, out2_path, nm), "keep_attn %d: %s did not change", keep_attn, nm);
        }
        rq_recipe_free(&r);
    }
    /* with mlp_train: trains on the MLP's inputs after quantized attention, deterministically,
     * for each target */
    rq_recipe r;
    w2_per_row_recipe(&r);
    train_k1_recipe(&r, 20);
    double start[3];
    for (int t = 0; t < 3; t++) {
        r.mlp_train.target = (rq_mlp_target)t;
        rq_quant_report rep;
        REQUIRE(quantize(&r, out_path, &rep) == 0);
        CHECKF(rep.mlp_trained == 2 && rep.mlp_val_best_mean < rep.mlp_val_start_mean, "target %d: %.6f -> %.6f", t,
               rep.mlp_val_start_mean, rep.mlp_val_best_mean);
        printf("  target %d: held-out error %.5f -> %.5f\n", t, rep.mlp_val_start_mean, rep.mlp_val_best_mean);
        REQUIRE(quantize(&r, out2_path, &rep) == 0);
        CHECK(same_bytes(out_path, out2_path));
    }
    /* with the attention kept, the block's target is the reference MLP's output (up to
     * rounding); the model's also asks for the drift of the blocks before, so it starts
     * further away */
    keep_override(&r, "blk.*.attn_*");
    r.mlp_train.steps = 0;
    for (int t = 0; t < 3; t++) {
        r.mlp_train.target = (rq_mlp_target)t;
        rq_quant_report rep;
        REQUIRE(quantize(&r, out_path, &rep) == 0);
        start[t] = rep.mlp_val_start_mean;
    }
    CHECKF(fabs(start[1] - start[0]) <= 1e-4 * start[0], "attention kept: block target %.9g, MLP target %.9g", start[1],
           start[0]);
    CHECKF(start[2] > start[1], "attention kept: model target %.6g, block target %.6g", start[2], start[1]);
    /* refused without true_sequential */
    r.calib_true_seq = false;
    rq_quant_report rep;
    CHECKF(quantize(&r, out_path, &rep) != 0 && strstr(rq_error(), "true_sequential"), "%s", rq_error());
    rq_recipe_free(&r);
    unlink(out_path);
    unlink(out2_path);
    unlink(src_path);
}

/* Whether every linear of block l of two files is byte for byte the same. */
static bool blk_same(const char *p, const char *q, int l) {
    const char *sfx[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    char nm[64];
    for (int i = 0; i < 7; i++) {
        snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, sfx[i]);
        if (!same_tensor(p, q, nm)) return false;
    }
    return true;
}

/* The reference model's stream of block inputs (feed "reference", and the model
 * target's input) moves on block by block. With block 0 kept, block 1's quantized
 * and reference inputs are the same, so feeding either, and training block 1's MLP
 * towards the block's or the model's output, give the same block 1; a stream left
 * behind (at the embeddings) would not. With block 0 quantized they differ, so the
 * comparison can fail. */
static void test_reference_stream(void) {
    REQUIRE(write_src("llama") == 0);
    for (int keep0 = 1; keep0 >= 0; keep0--) {
        rq_recipe r;
        w2_per_row_recipe(&r);
        keep_override(&r, "blk.0.*");
        r.n_ov = keep0;
        rq_quant_report rep;
        REQUIRE(quantize(&r, out_path, &rep) == 0);
        r.calib_feed_ref = true;
        REQUIRE(quantize(&r, out2_path, &rep) == 0);
        CHECKF(blk_same(out_path, out2_path, 1) == (keep0 == 1), "block 0 %s: feed reference vs quantized",
               keep0 ? "kept" : "quantized");
        r.calib_feed_ref = false;
        train_k1_recipe(&r, 10);
        r.mlp_train.target = RQ_MLP_TARGET_BLOCK;
        REQUIRE(quantize(&r, out_path, &rep) == 0);
        CHECKF(rep.mlp_trained == 2 - keep0, "%d MLPs trained", rep.mlp_trained);
        r.mlp_train.target = RQ_MLP_TARGET_MODEL;
        REQUIRE(quantize(&r, out2_path, &rep) == 0);
        CHECKF(blk_same(out_path, out2_path, 1) == (keep0 == 1), "block 0 %s: model vs block target",
               keep0 ? "kept" : "quantized");
        rq_recipe_free(&r);
    }
    unlink(out_path);
    unlink(out2_path);
    unlink(src_path);
}

/* The trained blocks' held-out error recomputed from the written file, as
 * mlp_train measures it with o_proj: per block, ||file block(x_q) - source
 * block(x_r)||^2 over ||source block(x_r) - x_q||^2 on the last holdout fraction
 * of the calibration tokens, x_q the file's own stream of block inputs and x_r the
 * source's (model target) or x_q (block target); the mean over blocks. */
static double file_heldout_error(const char *qpath, bool model_target, double holdout) {
    rq_model *a = NULL, *b = NULL;
    if (rq_model_load(src_path, &a) || rq_model_load(qpath, &b)) {
        rq_model_free(a);
        return NAN;
    }
    rq_calib c = tiny_calib();
    const int E = a->cfg.n_embd, len = c.len;
    const int64_t nt = (int64_t)c.n * len, n_tr = nt - (int64_t)((double)nt * holdout);
    size_t sz = (size_t)nt * E * sizeof(float);
    float *xr = rq_malloc(sz), *xq = rq_malloc(sz), *yr = rq_malloc(sz), *yq = rq_malloc(sz);
    for (int64_t t = 0; t < nt; t++) {
        memcpy(xr + t * E, a->tok_embd + (size_t)c.tokens[t] * E, (size_t)E * sizeof(float));
        memcpy(xq + t * E, b->tok_embd + (size_t)c.tokens[t] * E, (size_t)E * sizeof(float));
    }
    rq_fwd *fa = rq_fwd_new(a, len), *fb = rq_fwd_new(b, len);
    double sum = 0;
    for (int l = 0; l < a->cfg.n_layer; l++) {
        memcpy(yr, model_target ? xr : xq, sz);
        memcpy(yq, xq, sz);
        for (int w = 0; w < c.n; w++) {
            rq_fwd_layer(fa, &a->layers[l], l, yr + (size_t)w * len * E, len, NULL, NULL);
            rq_fwd_layer(fb, &b->layers[l], l, yq + (size_t)w * len * E, len, NULL, NULL);
        }
        double num = 0, den = 0;
        for (int64_t i = n_tr * E; i < nt * E; i++) {
            num += ((double)yq[i] - yr[i]) * ((double)yq[i] - yr[i]);
            den += ((double)yr[i] - xq[i]) * ((double)yr[i] - xq[i]);
        }
        sum += num / den;
        if (model_target) {
            float *t = xr;
            xr = yr;
            yr = t;
        }
        float *t = xq;
        xq = yq;
        yq = t;
    }
    rq_fwd_free(fa);
    rq_fwd_free(fb);
    free(xr);
    free(xq);
    free(yr);
    free(yq);
    int nl = a->cfg.n_layer;
    rq_model_free(a);
    rq_model_free(b);
    return sum / nl;
}

/* A rotation ensemble in a file: the blobs are version 2 with their rotations, the
 * file evaluates, loads as the sum of its rotated replicas (the layer error the
 * report gives is below the K = 1 fit's), and the same seed gives the same bytes.
 * Trained towards the model's output (the MLP's and attn_output's factors, each
 * replica in its own basis), the file reproduces the training's held-out error. */
static void test_rotated_file(void) {
    REQUIRE(write_src("llama") == 0);
    double err[2];
    for (int i = 0; i < 2; i++) {
        rq_recipe r;
        w2_per_row_recipe(&r);
        r.base.gptq.act_order = true;
        r.base.rep = rq_rep_opts_default();
        r.base.rep.K = i ? 2 : 1;
        r.base.rep.vary_rot = i == 1;
        rq_quant_report rep;
        REQUIRE(quantize(&r, out_path, &rep) == 0);
        err[i] = rep.rel_err_mean;
        CHECK(isfinite(logit_gap(out_path)));
        if (i == 1) {
            rq_gguf *g;
            REQUIRE(rq_gguf_open(out_path, &g) == 0);
            const rq_gguf_tensor *t = rq_gguf_tensor_find(g, "blk.1.ffn_down.weight");
            REQUIRE(t && rq_rep_is_blob(t->data, t->nbytes));
            const uint8_t *p = t->data;
            CHECK(p[4] == 2 && p[27] == 1 && t->nbytes == rq_rep_size(2, 2, 64, 100, true));
            rq_rep u;
            REQUIRE(rq_rep_unpack(t->data, t->nbytes, &u) == 0);
            CHECK(u.rot_kind[0] == RQ_REP_ROT_NONE && u.rot_kind[1] == RQ_REP_ROT_RH);
            rq_rep_free(&u);
            rq_gguf_close(g);
            REQUIRE(quantize(&r, out2_path, &rep) == 0);
            CHECK(same_bytes(out_path, out2_path));
            train_k1_recipe(&r, 20);
            r.base.rep.K = 2;
            r.base.rep.vary_rot = true;
            r.mlp_train.target = RQ_MLP_TARGET_MODEL;
            r.mlp_train.o_proj = true;
            REQUIRE(quantize(&r, out2_path, &rep) == 0);
            double e = file_heldout_error(out2_path, true, r.mlp_train.holdout);
            printf("  rotated K=2, trained with attn_output: held-out error %.5f -> %.5f, from the file %.5f\n",
                   rep.mlp_val_start_mean, rep.mlp_val_best_mean, e);
            CHECKF(rep.mlp_trained == 2 && rep.mlp_val_best_mean < rep.mlp_val_start_mean, "%.6f -> %.6f",
                   rep.mlp_val_start_mean, rep.mlp_val_best_mean);
            CHECKF(fabs(e - rep.mlp_val_best_mean) <= 1e-4 * rep.mlp_val_best_mean, "file %.9g, training %.9g", e,
                   rep.mlp_val_best_mean);
        }
        rq_recipe_free(&r);
    }
    CHECKF(err[1] < err[0], "rotated K=2 layer error %.5f not below K=1 %.5f", err[1], err[0]);
    printf("  mean relative layer error: K=1 fit %.5f, K=1 + 1 rotated replica %.5f\n", err[0], err[1]);
    unlink(out_path);
    unlink(out2_path);
    unlink(src_path);
}

/* mlp_train.o_proj: attn_output's factors trained with the MLP's towards the
 * block's output. Untrained (0 steps) it stores what the MLP-only training
 * stores; trained, the written blocks reproduce the training's held-out error on
 * their own stream (so the trained projection is what the stream moved on with,
 * and the target was right), attn_output changes and q does not; deterministic;
 * refused with the MLP target or an unreplicated attn_output. */
static void test_o_proj(void) {
    REQUIRE(write_src("qwen2") == 0);
    rq_recipe r;
    w2_per_row_recipe(&r);
    train_k1_recipe(&r, 0);
    r.mlp_train.target = RQ_MLP_TARGET_MODEL;
    rq_quant_report rep;
    REQUIRE(quantize(&r, out_path, &rep) == 0);
    r.mlp_train.o_proj = true;
    REQUIRE(quantize(&r, out2_path, &rep) == 0);
    for (int l = 0; l < 2; l++)
        CHECKF(blk_same(out_path, out2_path, l), "0 steps: a linear of blk.%d differs", l);
    r.mlp_train.steps = 20;
    for (int t = RQ_MLP_TARGET_BLOCK; t <= RQ_MLP_TARGET_MODEL; t++) {
        r.mlp_train.target = (rq_mlp_target)t;
        REQUIRE(quantize(&r, out_path, &rep) == 0);
        double e = file_heldout_error(out_path, t == RQ_MLP_TARGET_MODEL, r.mlp_train.holdout);
        printf("  o_proj, target %d: held-out error %.5f -> %.5f, from the file %.5f\n", t, rep.mlp_val_start_mean,
               rep.mlp_val_best_mean, e);
        CHECKF(rep.mlp_trained == 2 && rep.mlp_val_best_mean < rep.mlp_val_start_mean, "%.6f -> %.6f",
               rep.mlp_val_start_mean, rep.mlp_val_best_mean);
        /* the file's blocks, on its own stream, do what the training measured */
        CHECKF(fabs(e - rep.mlp_val_best_mean) <= 1e-4 * rep.mlp_val_best_mean, "target %d: file %.9g, training %.9g",
               t, e, rep.mlp_val_best_mean);
    }
    CHECK(isfinite(logit_gap(out_path)));
    CHECK(same_tensor(out_path, out2_path, "blk.0.attn_q.weight"));
    CHECK(!same_tensor(out_path, out2_path, "blk.0.attn_output.weight"));
    REQUIRE(quantize(&r, out2_path, &rep) == 0);
    CHECK(same_bytes(out_path, out2_path));
    r.mlp_train.target = RQ_MLP_TARGET_MLP;
    CHECKF(quantize(&r, out2_path, &rep) != 0 && strstr(rq_error(), "o_proj"), "%s", rq_error());
    r.mlp_train.target = RQ_MLP_TARGET_BLOCK;
    keep_override(&r, "blk.*.attn_output.weight");
    CHECKF(quantize(&r, out2_path, &rep) != 0 && strstr(rq_error(), "o_proj"), "%s", rq_error());
    rq_recipe_free(&r);
    unlink(out_path);
    unlink(out2_path);
    unlink(src_path);
}

/* Errors leave nothing behind; a newer packed format in a file is refused on load. */
static void test_refusals(void) {
    REQUIRE(write_src("llama") == 0);
    rq_recipe r;
    rq_recipe_default(&r);
    rq_quant_job job = {.model = src_path, .calib_path = "/nonexistent/c4.jsonl", .out_path = out_path};
    rq_quant_report rep;
    unlink(out_path);
    CHECK(rq_quantize_model(&job, &r, &rep) != 0);
    CHECK(access(out_path, F_OK) != 0);
    REQUIRE(quantize(&r, out_path, &rep) == 0);
    uint8_t *buf;
    size_t n;
    REQUIRE(read_all(out_path, &buf, &n) == 0);
    /* find the first packed blob's header and bump its version */
    uint8_t *p = memmem(buf, n, "RQT1", 4);
    REQUIRE(p != NULL);
    p[6] = 9;
    FILE *f = fopen(out_path, "wb");
    REQUIRE(f);
    fwrite(buf, 1, n, f);
    fclose(f);
    free(buf);
    rq_model *m = NULL;
    CHECK(rq_model_load(out_path, &m) != 0);
    CHECKF(strstr(rq_error(), "newer") != NULL, "message: %s", rq_error());
    rq_recipe_free(&r);
    unlink(out_path);
    unlink(src_path);
}

/* The recipe's activation and KV quantization travel in the file's metadata and
 * are what a loaded model evaluates with; kv.unbias is absent (false) by default. */
static void test_act_metadata(void) {
    REQUIRE(write_src("qwen2") == 0);
    for (int u = 0; u < 2; u++) {
        rq_recipe r;
        rq_recipe_default(&r);
        r.base.method = RQ_METHOD_RTN;
        r.act.a_bits = 8;
        r.act.kv_bits = 4;
        r.act.kv_unbias = u;
        rq_quant_report rep;
        REQUIRE(quantize(&r, out_path, &rep) == 0);
        rq_gguf *g;
        bool b = false;
        REQUIRE(rq_gguf_open(out_path, &g) == 0);
        CHECKF((rq_gguf_get_bool(g, "repliq.kv.unbias", &b) == 0) == u && b == u, "unbias %d", u);
        rq_gguf_close(g);
        rq_model *m;
        REQUIRE(rq_model_load(out_path, &m) == 0);
        CHECK(m->actq.a_bits == 8 && m->actq.kv_bits == 4 && m->actq.kv_unbias == u);
        rq_model_free(m);
        rq_recipe_free(&r);
    }
    unlink(out_path);
    unlink(src_path);
}

int main(void) {
    snprintf(src_path, sizeof src_path, "/tmp/rq_tq_src_%d.gguf", (int)getpid());
    snprintf(out_path, sizeof out_path, "/tmp/rq_tq_out_%d.gguf", (int)getpid());
    snprintf(out2_path, sizeof out2_path, "/tmp/rq_tq_out2_%d.gguf", (int)getpid());
    RUN(test_formats_load_and_evaluate);
    RUN(test_same_seed_same_bytes);
    RUN(test_act_metadata);
    RUN(test_gptq_beats_rtn);
    RUN(test_embeddings_override);
    RUN(test_replicated_file);
    RUN(test_rotated_file);
    RUN(test_mlp_trained_file);
    RUN(test_true_sequential);
    RUN(test_reference_stream);
    RUN(test_o_proj);
    RUN(test_refusals);
    TEST_EXIT();
}
