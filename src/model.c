/* model.c - configuration from GGUF metadata, the architecture adapter table, and
 * f32 weights dequantized from whatever types the file holds. */
#include "model.h"

#include "hadamard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ggml_types.h"
#include "hf.h"
#include "qformat.h"
#include "replica.h"
#include "tokenizer.h"
#include "util.h"

/* llama.cpp rotates interleaved pairs for llama and NeoX halves for qwen2; HF's
 * Llama checkpoints need the Q/K row permutation that its converter applies. */
static const rq_arch arch_table[] = {
    {"llama", false, false, true},
    {"qwen2", true, true, false},
};

const rq_arch *rq_arch_find(const char *name) {
    for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0]; i++)
        if (strcmp(arch_table[i].name, name) == 0) return &arch_table[i];
    rq_fail("architecture not supported: %s (supported: llama, qwen2)", name);
    return NULL;
}

static int get_dim(const rq_gguf *g, const char *arch, const char *suffix, int *out, bool required) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v;
    int rc = rq_gguf_get_int(g, key, &v);
    if (rc < 0) return -1;
    if (rc == 1) {
        if (required) return rq_fail("%s: metadata key '%s' is missing", g->path, key);
        return 0;
    }
    if (v <= 0 || v > (1 << 30))
        return rq_fail("%s: metadata key '%s' = %lld is out of range", g->path, key, (long long)v);
    *out = (int)v;
    return 0;
}

static int get_flt(const rq_gguf *g, const char *arch, const char *suffix, float *out, bool required) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    double v;
    int rc = rq_gguf_get_float(g, key, &v);
    if (rc < 0) return -1;
    if (rc == 1) {
        if (required) return rq_fail("%s: metadata key '%s' is missing", g->path, key);
        return 0;
    }
    *out = (float)v;
    return 0;
}

int rq_config_from_gguf(const rq_gguf *g, rq_config *c) {
    memset(c, 0, sizeof *c);
    rq_str a;
    int rc = rq_gguf_get_str(g, "general.architecture", &a);
    if (rc) return rc < 0 ? -1 : rq_fail("%s: metadata key 'general.architecture' is missing", g->path);
    char arch[64];
    snprintf(arch, sizeof arch, "%.*s", (int)(a.len < 63 ? a.len : 63), a.ptr);
    if (!(c->arch = rq_arch_find(arch))) return rq_fail_ctx("%s", g->path);
    c->rope_base = 10000.0f;
    c->n_ctx_train = 2048;
    if (get_dim(g, arch, "block_count", &c->n_layer, true) || get_dim(g, arch, "embedding_length", &c->n_embd, true) ||
        get_dim(g, arch, "feed_forward_length", &c->n_ff, true) ||
        get_dim(g, arch, "attention.head_count", &c->n_head, true) ||
        get_flt(g, arch, "attention.layer_norm_rms_epsilon", &c->norm_eps, true) ||
        get_dim(g, arch, "context_length", &c->n_ctx_train, false) ||
        get_flt(g, arch, "rope.freq_base", &c->rope_base, false))
        return -1;
    c->n_head_kv = c->n_head;
    c->head_dim = c->n_embd / c->n_head;
    if (get_dim(g, arch, "attention.head_count_kv", &c->n_head_kv, false) ||
        get_dim(g, arch, "attention.key_length", &c->head_dim, false) ||
        get_dim(g, arch, "rope.dimension_count", &c->head_dim, false))
        return -1;
    if (c->n_head % c->n_head_kv != 0)
        return rq_fail("%s: %d attention heads are not a multiple of %d KV heads", g->path, c->n_head, c->n_head_kv);
    if (c->head_dim % 2 != 0) return rq_fail("%s: head dimension %d is odd; RoPE needs pairs", g->path, c->head_dim);
    /* scaled RoPE variants would silently change the results: refuse them */
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    rq_str st;
    if (rq_gguf_get_str(g, key, &st) == 0 && !rq_str_eq(st, "none"))
        return rq_fail("%s: RoPE scaling '%.*s' is not supported", g->path, (int)st.len, st.ptr);
    const rq_gguf_tensor *emb = rq_gguf_tensor_find(g, "token_embd.weight");
    if (!emb) return rq_fail("%s: tensor 'token_embd.weight' is missing", g->path);
    c->n_vocab = (int)emb->ne[1];
    if (emb->type == RQ_GGML_RQ_PACKED) { /* a 1-D blob: the rows are in its header */
        rq_qtensor h;
        int id, version;
        if (rq_qformat_peek(emb->data, emb->nbytes, &h, &id, &version))
            return rq_fail_ctx("%s: tensor 'token_embd.weight'", g->path);
        c->n_vocab = (int)h.rows;
    }
    c->tied_output = rq_gguf_tensor_find(g, "output.weight") == NULL;
    return 0;
}

bool rq_is_block_linear(const char *name) {
    static const char *const proj[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    if (strncmp(name, "blk.", 4)) return false;
    const char *p = name + 4;
    if (*p < '0' || *p > '9') return false;
    while (*p >= '0' && *p <= '9')
        p++;
    if (*p++ != '.') return false;
    for (size_t i = 0; i < sizeof proj / sizeof proj[0]; i++) {
        size_t n = strlen(proj[i]);
        if (!strncmp(p, proj[i], n) && !strcmp(p + n, ".weight")) return true;
    }
    return false;
}

static float *load_tensor(const rq_gguf *g, const char *name, int64_t ne0, int64_t ne1, int *err) {
    const rq_gguf_tensor *t = rq_gguf_tensor_find(g, name);
    if (!t) {
        rq_fail("%s: tensor '%s' is missing", g->path, name);
        *err = 1;
        return NULL;
    }
    if (t->type == RQ_GGML_RQ_PACKED) {
        /* the blob's header declares the shape; rq_qformat_to_float checks it */
        float *dst = rq_malloc((size_t)(ne0 * ne1) * sizeof(float));
        if (rq_qformat_to_float(t->data, t->nbytes, ne1, ne0, dst)) {
            rq_fail_ctx("%s: tensor '%s'", g->path, name);
            free(dst);
            *err = 1;
            return NULL;
        }
        rq_gguf_release(g, t);
        return dst;
    }
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1) {
        rq_fail("%s: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]", g->path, name,
                (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3], (long long)ne0,
                (long long)ne1);
        *err = 1;
        return NULL;
    }
    float *dst = rq_malloc((size_t)(ne0 * ne1) * sizeof(float));
    int rc = rq_ggml_to_float(t->type, t->data, dst, ne0 * ne1);
    rq_gguf_release(g, t);
    if (rc) {
        rq_fail_ctx("%s: tensor '%s'", g->path, name);
        free(dst);
        *err = 1;
        return NULL;
    }
    return dst;
}

float *rq_tensor_load_f32(const rq_gguf *g, const char *name, int64_t ne0, int64_t ne1) {
    int err = 0;
    return load_tensor(g, name, ne0, ne1, &err);
}

int rq_tensor_rows_f32(const rq_gguf *g, const char *name, int64_t ne0, int64_t ne1, const int32_t *ids, int64_t n,
                       float *out) {
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= ne1)
            return rq_fail("%s: row %d of tensor '%s' (at %lld) is outside its %lld rows", g->path, ids[i], name,
                           (long long)i, (long long)ne1);
    const rq_gguf_tensor *t = rq_gguf_tensor_find(g, name);
    if (!t) return rq_fail("%s: tensor '%s' is missing", g->path, name);
    if (t->type == RQ_GGML_RQ_PACKED) {
        int err = 0;
        float *all = load_tensor(g, name, ne0, ne1, &err);
        if (!all) return -1;
        for (int64_t i = 0; i < n; i++)
            memcpy(out + i * ne0, all + (size_t)ids[i] * ne0, (size_t)ne0 * sizeof(float));
        free(all);
        return 0;
    }
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1)
        return rq_fail("%s: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]", g->path, name,
                       (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                       (long long)ne0, (long long)ne1);
    size_t rs = rq_ggml_row_size(t->type, ne0);
    if (!rs) return rq_fail_ctx("%s: tensor '%s'", g->path, name);
    for (int64_t i = 0; i < n; i++)
        if (rq_ggml_to_float(t->type, (const uint8_t *)t->data + (size_t)ids[i] * rs, out + i * ne0, ne0))
            return rq_fail_ctx("%s: tensor '%s'", g->path, name);
    return 0;
}

/* The value of a rotation key in both files, as text ("" when absent); 0 when
 * they agree. Strings compare as written, the seed as an integer. */
static int same_rot_key(const rq_gguf *gq, const rq_gguf *gr, const char *key, const char *hint) {
    char v[2][256];
    const rq_gguf *g[2] = {gq, gr};
    for (int i = 0; i < 2; i++) {
        rq_str str;
        int64_t n;
        v[i][0] = 0;
        if (!rq_gguf_find(g[i], key)) continue;
        if (rq_gguf_get_str(g[i], key, &str) == 0)
            snprintf(v[i], sizeof v[i], "%.*s", (int)(str.len < 200 ? str.len : 200), str.ptr);
        else if (rq_gguf_get_int(g[i], key, &n) == 0)
            snprintf(v[i], sizeof v[i], "%lld", (long long)n);
        else
            snprintf(v[i], sizeof v[i], "(unreadable)");
    }
    if (!strcmp(v[0], v[1])) return 0;
    return rq_fail("%s differs: '%s' in %s, '%s' in %s; %s", key, v[0][0] ? v[0] : "(none)", gq->path,
                   v[1][0] ? v[1] : "(none)", gr->path, hint);
}

int rq_same_model(const rq_gguf *gq, const rq_gguf *gr, const char *hint, rq_config *c) {
    rq_config cq, cr;
    if (rq_config_from_gguf(gq, &cq) || rq_config_from_gguf(gr, &cr)) return -1;
    if (strcmp(cq.arch->name, cr.arch->name))
        return rq_fail("architectures differ: %s is %s, %s is %s; %s", gq->path, cq.arch->name, gr->path, cr.arch->name,
                       hint);
    const rq_named_pair dims[] = {{"n_vocab", cq.n_vocab, cr.n_vocab},
                                  {"n_embd", cq.n_embd, cr.n_embd},
                                  {"n_ff", cq.n_ff, cr.n_ff},
                                  {"n_layer", cq.n_layer, cr.n_layer},
                                  {"n_head", cq.n_head, cr.n_head},
                                  {"n_head_kv", cq.n_head_kv, cr.n_head_kv},
                                  {"head_dim", cq.head_dim, cr.head_dim}};
    if (rq_same_values(dims, sizeof dims / sizeof *dims, gq->path, gr->path, hint)) return -1;
    /* the rotations folded into the weights (R1, R2) and those run online (R3, R4) */
    static const char *const rot_keys[] = {"repliq.rot.r1", "repliq.rot.r2",   "repliq.rot.r3",
                                           "repliq.rot.r4", "repliq.rot.seed", "repliq.rot.info"};
    for (size_t i = 0; i < sizeof rot_keys / sizeof *rot_keys; i++)
        if (same_rot_key(gq, gr, rot_keys[i], hint)) return -1;
    *c = cq;
    return 0;
}

static void load_linear(const rq_gguf *g, rq_linear *l, const char *name, int64_t rows, int64_t cols, bool bias,
                        int *err) {
    char key[160];
    l->rows = rows;
    l->cols = cols;
    snprintf(key, sizeof key, "%s.weight", name);
    if (!*err) l->w = load_tensor(g, key, cols, rows, err);
    if (bias && !*err) {
        snprintf(key, sizeof key, "%s.bias", name);
        l->b = load_tensor(g, key, rows, 1, err);
    }
}

static void free_linear(rq_linear *l) {
    free(l->w);
    free(l->b);
}

static const char *const mlp_names[3] = {"ffn_gate", "ffn_up", "ffn_down"};

/* The header of blk's MLP matrix j when it is a replicated blob, else K = 0. */
static int mlp_rep_header(const rq_gguf *g, const char *blk, int j, rq_rep *h) {
    char key[96];
    snprintf(key, sizeof key, "%s.%s.weight", blk, mlp_names[j]);
    const rq_gguf_tensor *t = rq_gguf_tensor_find(g, key);
    memset(h, 0, sizeof *h);
    if (!t || t->type != RQ_GGML_RQ_PACKED || !rq_rep_is_blob(t->data, t->nbytes)) return 0;
    if (rq_rep_peek(t->data, t->nbytes, h, NULL, NULL)) return rq_fail_ctx("%s: tensor '%s'", g->path, key);
    return 0;
}

/* How many paths blk's MLP has when its three matrices are replicas combined
 * after the nonlinearity (all three must agree): K >= 1; 0 when it is not such an MLP. */
static int mlp_paths(const rq_gguf *g, const char *blk, int *err) {
    rq_rep h[3];
    for (int j = 0; j < 3; j++)
        if (mlp_rep_header(g, blk, j, &h[j])) {
            *err = 1;
            return 0;
        }
    bool any = false, all = true;
    for (int j = 0; j < 3; j++) {
        bool m = h[j].K > 0 && h[j].combine == RQ_REP_COMBINE_MLP;
        any |= m;
        all &= m && h[j].K == h[0].K;
    }
    if (!any) return 0;
    if (!all) {
        rq_fail("%s: %s's MLP is partly replicated after its nonlinearity (ffn_gate K=%d combine %d, ffn_up K=%d "
                "combine %d, ffn_down K=%d combine %d); the three must share K and combine 1. Damaged or hand-edited "
                "file?",
                g->path, blk, h[0].K, h[0].combine, h[1].K, h[1].combine, h[2].K, h[2].combine);
        *err = 1;
        return 0;
    }
    return h[0].K;
}

int rq_block_mlp_paths(const rq_gguf *g, int layer) {
    char blk[32];
    snprintf(blk, sizeof blk, "blk.%d", layer);
    int err = 0, k = mlp_paths(g, blk, &err);
    return err ? -1 : k;
}

/* The K paths of an MLP replicated after its nonlinearity, each replica
 * dequantized to its own f32 matrix. */
static void load_mlp_paths(const rq_gguf *g, rq_layer *L, const char *blk, int64_t E, int64_t F, int *err) {
    const int64_t rows[3] = {F, F, E}, cols[3] = {E, E, F};
    for (int j = 0; j < 3 && !*err; j++) {
        char key[96];
        snprintf(key, sizeof key, "%s.%s.weight", blk, mlp_names[j]);
        const rq_gguf_tensor *t = rq_gguf_tensor_find(g, key);
        rq_rep r;
        if (rq_rep_unpack(t->data, t->nbytes, &r)) {
            rq_fail_ctx("%s: tensor '%s'", g->path, key);
            *err = 1;
            return;
        }
        if (r.rows != rows[j] || r.cols != cols[j]) {
            rq_fail("%s: tensor '%s' is [%lld, %lld], expected [%lld, %lld]", g->path, key, (long long)r.rows,
                    (long long)r.cols, (long long)rows[j], (long long)cols[j]);
            rq_rep_free(&r);
            *err = 1;
            return;
        }
        rq_layer_set_mlp_replicas(L, j, &r);
        rq_rep_free(&r);
        rq_gguf_release(g, t);
    }
}

int rq_layer_load(const rq_gguf *g, const rq_config *c, int i, rq_layer *L) {
    int err = 0;
    int64_t E = c->n_embd, F = c->n_ff, Dq = (int64_t)c->n_head * c->head_dim,
            Dkv = (int64_t)c->n_head_kv * c->head_dim;
    bool bias = c->arch->qkv_bias;
    char p[64], key[96];
    memset(L, 0, sizeof *L);
    snprintf(p, sizeof p, "blk.%d", i);
    snprintf(key, sizeof key, "%s.attn_norm.weight", p);
    L->attn_norm = load_tensor(g, key, E, 1, &err);
    snprintf(key, sizeof key, "%s.ffn_norm.weight", p);
    if (!err) L->ffn_norm = load_tensor(g, key, E, 1, &err);
    snprintf(key, sizeof key, "%s.attn_q", p);
    load_linear(g, &L->q, key, Dq, E, bias, &err);
    snprintf(key, sizeof key, "%s.attn_k", p);
    load_linear(g, &L->k, key, Dkv, E, bias, &err);
    snprintf(key, sizeof key, "%s.attn_v", p);
    load_linear(g, &L->v, key, Dkv, E, bias, &err);
    snprintf(key, sizeof key, "%s.attn_output", p);
    load_linear(g, &L->o, key, E, Dq, false, &err);
    int paths = err ? 0 : mlp_paths(g, p, &err);
    if (paths > 0) {
        load_mlp_paths(g, L, p, E, F, &err);
    } else {
        snprintf(key, sizeof key, "%s.ffn_gate", p);
        load_linear(g, &L->gate, key, F, E, false, &err);
        snprintf(key, sizeof key, "%s.ffn_up", p);
        load_linear(g, &L->up, key, F, E, false, &err);
        snprintf(key, sizeof key, "%s.ffn_down", p);
        load_linear(g, &L->down, key, E, F, false, &err);
    }
    if (err) {
        rq_layer_free(L);
        return -1;
    }
    return 0;
}

/* repliq.act.* keys: the activation/KV quantization a recipe asked for. */
int rq_actq_from_gguf(const rq_gguf *g, rq_actq *a) {
    int64_t v;
    double d;
    bool b;
    a->a_bits = 0;
    a->a_clip = 1.0f;
    a->a_bf16 = false;
    a->kv_bits = 0;
    a->kv_unbias = false;
    if (rq_gguf_get_int(g, "repliq.act.bits", &v) == 0) a->a_bits = (int)v;
    if (rq_gguf_get_float(g, "repliq.act.clip", &d) == 0) a->a_clip = (float)d;
    if (rq_gguf_get_bool(g, "repliq.act.bf16", &b) == 0) a->a_bf16 = b;
    if (rq_gguf_get_int(g, "repliq.kv.bits", &v) == 0) a->kv_bits = (int)v;
    if (rq_gguf_get_bool(g, "repliq.kv.unbias", &b) == 0) a->kv_unbias = b;
    a->keep_massive = 0.0f; /* an evaluation ablation: set by ppl --keep-massive only */
    if (rq_actq_check(a)) return rq_fail_ctx("%s: metadata repliq.act / repliq.kv", g->path);
    return 0;
}

uint64_t rq_rot_stage_seed(uint64_t seed, int stage) {
    uint64_t z = seed + 0x9e3779b97f4a7c15ull * (uint64_t)(stage + 1); /* splitmix64 finalizer */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int rot_kind(const rq_gguf *g, const char *key, int *kind) {
    rq_str s;
    *kind = RQ_ROT_NONE;
    int rc = rq_gguf_get_str(g, key, &s);
    if (rc == 1) return 0;
    if (rc < 0) return -1;
    char buf[32];
    snprintf(buf, sizeof buf, "%.*s", (int)(s.len < 31 ? s.len : 31), s.ptr);
    if (!strcmp(buf, "none")) return 0;
    int k = rq_orth_kind_parse(buf);
    if (k < 0)
        return rq_fail("%s: metadata %s = '%s' is not a rotation this version knows (hadamard, rh, ro, none); "
                       "the file needs a newer repliq",
                       g->path, key, buf);
    *kind = k;
    return 0;
}

int rq_online_from_gguf(const rq_gguf *g, rq_online_rot *on) {
    on->r3 = on->r4 = RQ_ROT_NONE;
    on->seed = 0;
    int64_t v;
    if (rot_kind(g, "repliq.rot.r3", &on->r3) || rot_kind(g, "repliq.rot.r4", &on->r4)) return -1;
    int rc = rq_gguf_get_int(g, "repliq.rot.seed", &v);
    if (rc < 0 || (rc == 0 && v < 0))
        return rq_fail_ctx("%s: metadata repliq.rot.seed must be an integer in [0, 2^63)", g->path);
    if (rc == 0) on->seed = (uint64_t)v;
    return 0;
}

int rq_model_from_gguf(const rq_gguf *g, rq_model **out) {
    rq_model *m = rq_calloc(1, sizeof *m);
    if (rq_config_from_gguf(g, &m->cfg)) {
        free(m);
        return -1;
    }
    const rq_config *c = &m->cfg;
    int err = rq_actq_from_gguf(g, &m->actq) != 0 || rq_online_from_gguf(g, &m->online) != 0;
    int64_t E = c->n_embd, F = c->n_ff, Dq = (int64_t)c->n_head * c->head_dim,
            Dkv = (int64_t)c->n_head_kv * c->head_dim;
    bool bias = c->arch->qkv_bias;
    if (!err) m->tok_embd = load_tensor(g, "token_embd.weight", E, c->n_vocab, &err);
    if (!err) m->out_norm = load_tensor(g, "output_norm.weight", E, 1, &err);
    m->layers = rq_calloc((size_t)c->n_layer, sizeof *m->layers);
    double t0 = rq_time();
    for (int i = 0; i < c->n_layer && !err; i++) {
        err = rq_layer_load(g, c, i, &m->layers[i]) != 0;
        rq_progress("loading", i + 1, c->n_layer, t0);
    }
    if (!err) {
        m->output.rows = c->n_vocab;
        m->output.cols = E;
        m->output.w = c->tied_output ? m->tok_embd : load_tensor(g, "output.weight", E, c->n_vocab, &err);
    }
    if (err) {
        rq_model_free(m);
        return -1;
    }
    int64_t per_layer = 2 * E + Dq * E + 2 * Dkv * E + E * Dq + 3 * E * F + (bias ? Dq + 2 * Dkv : 0);
    m->n_params = (int64_t)c->n_vocab * E * (c->tied_output ? 1 : 2) + E + per_layer * c->n_layer;
    rq_str name;
    m->name = rq_gguf_get_str(g, "general.name", &name) == 0 ? rq_strndup(name.ptr, name.len) : rq_strdup(g->path);
    m->path = rq_strdup(g->path);
    if (rq_gguf_find(g, "tokenizer.ggml.model") && rq_tokenizer_from_gguf(g, &m->tok)) {
        rq_model_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

int rq_model_load(const char *path, rq_model **out) {
    struct stat st;
    if (stat(path, &st) != 0)
        return rq_fail("model '%s' not found (give a GGUF file, a Hugging Face folder, or a name from 'repliq list')",
                       path);
    rq_gguf *g = NULL;
    int rc = S_ISDIR(st.st_mode) ? rq_hf_open(path, &g) : rq_gguf_open(path, &g);
    if (rc) return -1;
    rc = rq_model_from_gguf(g, out);
    rq_gguf_close(g);
    return rc;
}

int rq_layer_ffn_paths(const rq_layer *L) { return L->ffn_paths > 1 ? L->ffn_paths : 1; }

void rq_layer_ffn_path(const rq_layer *L, int p, const rq_linear **gate, const rq_linear **up, const rq_linear **down) {
    const rq_linear *x = p > 0 ? L->ffn_extra + 3 * (p - 1) : NULL;
    *gate = x ? x : &L->gate;
    *up = x ? x + 1 : &L->up;
    *down = x ? x + 2 : &L->down;
}

void rq_layer_set_mlp_replicas(rq_layer *L, int j, const rq_rep *r) {
    if (L->ffn_paths != r->K) {
        L->ffn_paths = r->K;
        L->ffn_extra = r->K > 1 ? rq_calloc((size_t)(3 * (r->K - 1)), sizeof *L->ffn_extra) : NULL;
    }
    for (int k = 0; k < r->K; k++) {
        rq_linear *l = k ? &L->ffn_extra[3 * (k - 1) + j] : j == 0 ? &L->gate : j == 1 ? &L->up : &L->down;
        if (!l->w) {
            l->rows = r->rows;
            l->cols = r->cols;
            l->w = rq_malloc((size_t)(r->rows * r->cols) * sizeof(float));
        }
        rq_rep_dequant_replica(r, k, l->w);
    }
}

void rq_layer_free(rq_layer *L) {
    for (int i = 0; L->ffn_extra && i < 3 * (L->ffn_paths - 1); i++)
        free_linear(&L->ffn_extra[i]);
    free(L->ffn_extra);
    free(L->attn_norm);
    free(L->ffn_norm);
    free_linear(&L->q);
    free_linear(&L->k);
    free_linear(&L->v);
    free_linear(&L->o);
    free_linear(&L->gate);
    free_linear(&L->up);
    free_linear(&L->down);
    memset(L, 0, sizeof *L);
}

void rq_model_free(rq_model *m) {
    if (!m) return;
    if (m->layers)
        for (int i = 0; i < m->cfg.n_layer; i++)
            rq_layer_free(&m->layers[i]);
    free(m->layers);
    if (m->output.w != m->tok_embd) free(m->output.w);
    free(m->tok_embd);
    free(m->out_norm);
    if (m->tok) rq_tokenizer_free(m->tok);
    free(m->path);
    free(m->name);
    free(m);
}
