/* hf.c - Hugging Face Llama / Qwen2 checkpoints as an rq_gguf view: config.json
 * becomes llama.cpp's metadata keys, safetensors tensors get GGUF names and shapes. */
#include "hf.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ggml_types.h"
#include "model.h"
#include "safetensors.h"
#include "util.h"

/* Hugging Face model_type / architectures[0] -> general.architecture. The rest of
 * what differs per architecture (Q/K/V bias, Q/K permutation) is in model.c's
 * adapter table. */
static const struct {
    const char *model_type, *hf_class, *arch;
} hf_archs[] = {
    {"llama", "LlamaForCausalLM", "llama"},
    {"qwen2", "Qwen2ForCausalLM", "qwen2"},
};

/* What the view owns: the mapped shards and every buffer it made. */
typedef struct {
    rq_st_file **files;
    size_t n_files;
    void **owned;
    size_t n_owned, cap_owned;
} hf_aux;

static void hf_free_aux(void *p) {
    hf_aux *a = p;
    if (!a) return;
    for (size_t i = 0; i < a->n_files; i++)
        rq_st_close(a->files[i]);
    free(a->files);
    for (size_t i = 0; i < a->n_owned; i++)
        free(a->owned[i]);
    free(a->owned);
    free(a);
}

static void *own(hf_aux *a, void *p) {
    if (a->n_owned == a->cap_owned)
        a->owned = rq_realloc(a->owned, (a->cap_owned = a->cap_owned * 2 + 16) * sizeof(void *));
    a->owned[a->n_owned++] = p;
    return p;
}

typedef struct {
    const char *dir;
    char cfg_path[PATH_MAX];
    rq_gguf *g;
    hf_aux *aux;
    uint64_t cap_kv, cap_tensors;
    char index_path[PATH_MAX];
    cJSON *weight_map; /* sharded: tensor name -> file name; NULL for one file */
    bool tied;         /* tie_word_embeddings: lm_head, if present, is not used */
    const char *arch;
    const rq_arch *adapter;
    int64_t n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_vocab;
} hf_ctx;

static int join(char *buf, size_t cap, const char *dir, const char *file) {
    int n = snprintf(buf, cap, "%s/%s", dir, file);
    if (n < 0 || (size_t)n >= cap) return rq_fail("path too long: %s/%s", dir, file);
    return 0;
}

static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int read_json(const char *path, cJSON **out) {
    char *text;
    size_t len;
    if (rq_read_file(path, &text, &len)) return -1;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, false);
    size_t at = end ? (size_t)(end - text) : 0;
    free(text);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return rq_fail("%s: not a JSON object (parse stopped near byte %zu)", path, at);
    }
    *out = j;
    return 0;
}

/* ---- config.json ------------------------------------------------------------- */

/* A positive integer key; absent: 1 (or an error when required). */
static int cfg_int(const hf_ctx *c, const cJSON *cfg, const char *key, bool required, int64_t *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!j || cJSON_IsNull(j)) {
        if (required) return rq_fail("%s: key '%s' is missing (needed for %s)", c->cfg_path, key, c->arch);
        return 1;
    }
    double d = cJSON_IsNumber(j) ? j->valuedouble : 0;
    if (!(d >= 1 && d <= (double)(1 << 30)) || d != (double)(int64_t)d)
        return rq_fail("%s: key '%s' must be a positive integer", c->cfg_path, key);
    *out = (int64_t)d;
    return 0;
}

static int cfg_num(const hf_ctx *c, const cJSON *cfg, const char *key, bool required, double *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!j || cJSON_IsNull(j)) {
        if (required) return rq_fail("%s: key '%s' is missing (needed for %s)", c->cfg_path, key, c->arch);
        return 1;
    }
    if (!cJSON_IsNumber(j) || !(j->valuedouble > 0))
        return rq_fail("%s: key '%s' must be a positive number", c->cfg_path, key);
    *out = j->valuedouble;
    return 0;
}

static bool cfg_true(const cJSON *cfg, const char *key) {
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, key));
}

static rq_gguf_kv *kv_add(hf_ctx *c, const char *suffix, bool arch_prefix, int type) {
    rq_gguf *g = c->g;
    if (g->n_kv == c->cap_kv) g->kv = rq_realloc(g->kv, (c->cap_kv = c->cap_kv * 2 + 16) * sizeof *g->kv);
    rq_gguf_kv *kv = &g->kv[g->n_kv++];
    memset(kv, 0, sizeof *kv);
    char key[160];
    snprintf(key, sizeof key, "%s%s%s", arch_prefix ? c->arch : "", arch_prefix ? "." : "", suffix);
    kv->key = rq_strdup(key);
    kv->type = type;
    return kv;
}

static void kv_u32(hf_ctx *c, const char *suffix, int64_t v) {
    kv_add(c, suffix, true, RQ_GGUF_UINT32)->v.u = (uint64_t)v;
}
static void kv_f32(hf_ctx *c, const char *suffix, double v) {
    kv_add(c, suffix, true, RQ_GGUF_FLOAT32)->v.f = (float)v;
}
static void kv_str(hf_ctx *c, const char *suffix, bool arch_prefix, const char *s) {
    rq_gguf_kv *kv = kv_add(c, suffix, arch_prefix, RQ_GGUF_STRING);
    kv->v.s.ptr = own(c->aux, rq_strdup(s));
    kv->v.s.len = strlen(s);
}

static const char *base_name(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/')
        b--;
    static _Thread_local char buf[256];
    snprintf(buf, sizeof buf, "%.*s", (int)(n - b), path + b);
    return buf;
}

static int read_config(hf_ctx *c) {
    cJSON *cfg;
    if (join(c->cfg_path, sizeof c->cfg_path, c->dir, "config.json")) return -1;
    if (!is_file(c->cfg_path))
        return rq_fail("%s: no config.json; a Hugging Face checkpoint folder holds config.json and *.safetensors",
                       c->dir);
    if (read_json(c->cfg_path, &cfg)) return -1;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(cfg, "model_type");
    const cJSON *ar = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(cfg, "architectures"), 0);
    for (size_t i = 0; i < sizeof hf_archs / sizeof hf_archs[0] && !c->arch; i++)
        if ((cJSON_IsString(mt) && strcmp(mt->valuestring, hf_archs[i].model_type) == 0) ||
            (!cJSON_IsString(mt) && cJSON_IsString(ar) && strcmp(ar->valuestring, hf_archs[i].hf_class) == 0))
            c->arch = hf_archs[i].arch;
    int rc = 0;
    if (!c->arch) {
        rc = rq_fail("%s: model_type '%.64s' is not supported (supported: llama, qwen2)", c->cfg_path,
                     cJSON_IsString(mt)   ? mt->valuestring
                     : cJSON_IsString(ar) ? ar->valuestring
                                          : "(missing)");
        goto done;
    }
    if (!(c->adapter = rq_arch_find(c->arch))) {
        rc = -1;
        goto done;
    }
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(cfg, "quantization_config");
    if (q && !cJSON_IsNull(q)) {
        const cJSON *qm = cJSON_GetObjectItemCaseSensitive(q, "quant_method");
        rc = rq_fail("%s: the checkpoint is quantized (quant_method %.32s); repliq reads F32, F16 and BF16 "
                     "checkpoints: use the unquantized model",
                     c->cfg_path, cJSON_IsString(qm) ? qm->valuestring : "unknown");
        goto done;
    }
    if (cfg_true(cfg, "attention_bias") && !c->adapter->qkv_bias) {
        rc = rq_fail("%s: attention_bias is true, but %s models in repliq have no attention biases", c->cfg_path,
                     c->arch);
        goto done;
    }
    if (cfg_true(cfg, "mlp_bias")) {
        rc = rq_fail("%s: mlp_bias is true; MLP biases are not supported", c->cfg_path);
        goto done;
    }
    double rms_eps, rope_theta;
    int64_t n_ctx = 0;
    if (cfg_int(c, cfg, "num_hidden_layers", true, &c->n_layer) || cfg_int(c, cfg, "hidden_size", true, &c->n_embd) ||
        cfg_int(c, cfg, "intermediate_size", true, &c->n_ff) ||
        cfg_int(c, cfg, "num_attention_heads", true, &c->n_head) || cfg_int(c, cfg, "vocab_size", true, &c->n_vocab) ||
        cfg_num(c, cfg, "rms_norm_eps", true, &rms_eps)) {
        rc = -1;
        goto done;
    }
    c->n_head_kv = c->n_head;
    c->head_dim = c->n_embd / c->n_head;
    int r1 = cfg_int(c, cfg, "num_key_value_heads", false, &c->n_head_kv);
    int r2 = cfg_int(c, cfg, "head_dim", false, &c->head_dim);
    int r3 = cfg_int(c, cfg, "max_position_embeddings", false, &n_ctx);
    int r4 = cfg_num(c, cfg, "rope_theta", false, &rope_theta);
    if (r1 < 0 || r2 < 0 || r3 < 0 || r4 < 0) {
        rc = -1;
        goto done;
    }
    if (r2 == 1 && c->n_embd % c->n_head != 0) {
        rc = rq_fail("%s: hidden_size %lld is not a multiple of num_attention_heads %lld, and head_dim is not given",
                     c->cfg_path, (long long)c->n_embd, (long long)c->n_head);
        goto done;
    }
    if (c->n_head % c->n_head_kv != 0 || c->head_dim % 2 != 0) {
        rc = rq_fail("%s: num_attention_heads %lld must be a multiple of num_key_value_heads %lld, and the head "
                     "dimension %lld even",
                     c->cfg_path, (long long)c->n_head, (long long)c->n_head_kv, (long long)c->head_dim);
        goto done;
    }

    /* the keys, in the order convert_hf_to_gguf.py writes them */
    kv_str(c, "general.architecture", false, c->arch);
    kv_str(c, "general.name", false, base_name(c->dir));
    kv_u32(c, "block_count", c->n_layer);
    if (r3 == 0) kv_u32(c, "context_length", n_ctx);
    kv_u32(c, "embedding_length", c->n_embd);
    kv_u32(c, "feed_forward_length", c->n_ff);
    kv_u32(c, "attention.head_count", c->n_head);
    kv_u32(c, "attention.head_count_kv", c->n_head_kv);
    if (r4 == 0) kv_f32(c, "rope.freq_base", rope_theta);
    kv_f32(c, "attention.layer_norm_rms_epsilon", rms_eps);
    if (r2 == 0) {
        kv_u32(c, "attention.key_length", c->head_dim);
        kv_u32(c, "attention.value_length", c->head_dim);
    }
    kv_u32(c, "vocab_size", c->n_vocab);
    kv_u32(c, "rope.dimension_count", c->head_dim);
    /* scaled RoPE is passed on, not dropped, so the loader can refuse what it does not implement */
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(cfg, "rope_scaling");
    if (cJSON_IsObject(rs)) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
        if (!cJSON_IsString(t)) t = cJSON_GetObjectItemCaseSensitive(rs, "type");
        const char *type = cJSON_IsString(t) ? t->valuestring : "unknown";
        if (strcmp(type, "default") != 0) kv_str(c, "rope.scaling.type", true, type);
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(rs, "factor");
        if (cJSON_IsNumber(f)) kv_f32(c, "rope.scaling.factor", f->valuedouble);
    }
    c->tied = cfg_true(cfg, "tie_word_embeddings");
done:
    cJSON_Delete(cfg);
    return rc;
}

/* ---- weights ----------------------------------------------------------------- */

static bool names_file(const char *path, const char *file) {
    size_t lp = strlen(path), lf = strlen(file);
    return lp > lf && path[lp - lf - 1] == '/' && strcmp(path + lp - lf, file) == 0;
}

static int open_shard(hf_ctx *c, const char *file, rq_st_file **out) {
    for (size_t i = 0; i < c->aux->n_files; i++)
        if (names_file(c->aux->files[i]->path, file)) {
            *out = c->aux->files[i];
            return 0;
        }
    char path[PATH_MAX];
    if (join(path, sizeof path, c->dir, file) || rq_st_open(path, out)) return -1;
    hf_aux *a = c->aux;
    a->files = rq_realloc(a->files, (a->n_files + 1) * sizeof *a->files);
    a->files[a->n_files++] = *out;
    return 0;
}

static int open_weights(hf_ctx *c, cJSON **index) {
    char *path = c->index_path;
    if (join(path, sizeof c->index_path, c->dir, "model.safetensors.index.json")) return -1;
    if (is_file(path)) {
        if (read_json(path, index)) return -1;
        c->weight_map = cJSON_GetObjectItemCaseSensitive(*index, "weight_map");
        if (!cJSON_IsObject(c->weight_map)) return rq_fail("%s: 'weight_map' is missing or not an object", path);
        for (const cJSON *e = c->weight_map->child; e; e = e->next) {
            if (!cJSON_IsString(e) || !e->valuestring[0] || strchr(e->valuestring, '/') ||
                strcmp(e->valuestring, "..") == 0 || strcmp(e->valuestring, ".") == 0)
                return rq_fail("%s: weight_map entry '%s' must name a file in the same folder", path, e->string);
            rq_st_file *f;
            if (open_shard(c, e->valuestring, &f)) return rq_fail_ctx("%s: shard named by '%s'", path, e->string);
        }
        return 0;
    }
    char one[PATH_MAX];
    if (join(one, sizeof one, c->dir, "model.safetensors")) return -1;
    if (!is_file(one))
        return rq_fail("%s: neither model.safetensors nor model.safetensors.index.json is there", c->dir);
    rq_st_file *f;
    return open_shard(c, "model.safetensors", &f);
}

/* Where a tensor is: 0 found, 1 absent, -1 error. */
static int find(hf_ctx *c, const char *name, const rq_st_file **file, const rq_st_tensor **t) {
    if (!c->weight_map) {
        *file = c->aux->files[0];
        *t = rq_st_find(*file, name);
        return *t ? 0 : 1;
    }
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(c->weight_map, name);
    if (!e) return 1;
    rq_st_file *f;
    if (open_shard(c, e->valuestring, &f)) return -1;
    *file = f;
    if (!(*t = rq_st_find(f, name)))
        return rq_fail("%s: model.safetensors.index.json puts tensor '%s' in this file, but it is not there", f->path,
                       name);
    return 0;
}

/* Rows [h*hd + s*hd/2 + j] -> [h*hd + 2*j + s]: the reshape(n_head, 2, hd/2, ...)
 * .swapaxes(1, 2) of LlamaModel.permute in llama.cpp's convert_hf_to_gguf.py. */
static void permute_rows(const uint8_t *src, uint8_t *dst, int64_t rows, size_t row_bytes, int64_t n_head) {
    int64_t hd = rows / n_head, half = hd / 2;
    for (int64_t h = 0; h < n_head; h++)
        for (int64_t j = 0; j < half; j++)
            for (int64_t s = 0; s < 2; s++)
                memcpy(dst + (size_t)(h * hd + 2 * j + s) * row_bytes,
                       src + (size_t)(h * hd + s * half + j) * row_bytes, row_bytes);
}

/* Add hf_name as gguf_name, checking it against the shape [rows, cols] the config
 * implies (cols 0: a vector). permute_heads > 0 reorders its rows per head. */
static int add(hf_ctx *c, const char *hf_name, const char *gguf_name, int64_t rows, int64_t cols, int64_t permute_heads,
               bool required) {
    const rq_st_file *f;
    const rq_st_tensor *t;
    int rc = find(c, hf_name, &f, &t);
    if (rc < 0) return -1;
    if (rc == 1) {
        if (!required) return 1;
        return rq_fail("%s: tensor '%s' is missing from the checkpoint (it becomes %s)",
                       c->weight_map ? c->index_path : c->aux->files[0]->path, hf_name, gguf_name);
    }
    int type = rq_st_ggml_type(t->dtype);
    if (type < 0)
        return rq_fail("%s: tensor '%s' has dtype %s; only F32, F16 and BF16 checkpoints can be read", f->path, hf_name,
                       rq_st_dtype_name(t->dtype));
    int nd = cols ? 2 : 1;
    if (t->n_dims != nd || t->shape[0] != rows || (cols && t->shape[1] != cols)) {
        char got[96] = "[";
        for (int d = 0; d < t->n_dims && strlen(got) < 70; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        strcat(got, "]");
        if (cols)
            return rq_fail("%s: tensor '%s' has shape %s, config.json implies [%lld, %lld]", f->path, hf_name, got,
                           (long long)rows, (long long)cols);
        return rq_fail("%s: tensor '%s' has shape %s, config.json implies [%lld]", f->path, hf_name, got,
                       (long long)rows);
    }
    rq_gguf *g = c->g;
    if (g->n_tensors == c->cap_tensors)
        g->tensors = rq_realloc(g->tensors, (c->cap_tensors = c->cap_tensors * 2 + 64) * sizeof *g->tensors);
    rq_gguf_tensor *o = &g->tensors[g->n_tensors++];
    memset(o, 0, sizeof *o);
    o->name = rq_strdup(gguf_name);
    o->n_dims = nd;
    o->ne[0] = cols ? cols : rows;
    o->ne[1] = cols ? rows : 1;
    o->ne[2] = o->ne[3] = 1;
    o->type = type;
    o->offset = t->offset; /* within its own file's data section */
    o->nbytes = t->nbytes;
    o->data = t->data;
    size_t es = type == RQ_GGML_F32 ? 4 : 2;
    if (permute_heads > 0) {
        if (rows % (2 * permute_heads) != 0)
            return rq_fail("%s: tensor '%s' has %lld rows, not a whole number of head pairs for %lld heads", f->path,
                           hf_name, (long long)rows, (long long)permute_heads);
        uint8_t *buf = own(c->aux, rq_malloc(t->nbytes));
        permute_rows(t->data, buf, rows, t->nbytes / (size_t)rows, permute_heads);
        o->data = buf;
    } else if ((uintptr_t)t->data % es != 0) {
        /* safetensors does not promise alignment; readers may load floats directly */
        o->data = memcpy(own(c->aux, rq_malloc(t->nbytes)), t->data, t->nbytes);
    }
    return 0;
}

static int add_tensors(hf_ctx *c) {
    const int64_t E = c->n_embd, F = c->n_ff, Dq = c->n_head * c->head_dim, Dkv = c->n_head_kv * c->head_dim;
    const bool perm = c->adapter->hf_permute_qk, bias = c->adapter->qkv_bias;
    if (add(c, "model.embed_tokens.weight", "token_embd.weight", c->n_vocab, E, 0, true) ||
        add(c, "model.norm.weight", "output_norm.weight", E, 0, 0, true))
        return -1;
    if (!c->tied) {
        int rc = add(c, "lm_head.weight", "output.weight", c->n_vocab, E, 0, false);
        if (rc < 0) return -1;
        /* absent: llama.cpp uses token_embd as the output, as for tied models */
    }
    static const struct {
        const char *hf, *gguf;
        int rows, cols; /* 0 E, 1 F, 2 Dq, 3 Dkv; cols -1: a vector */
        int permute;    /* 1 by n_head, 2 by n_head_kv */
        bool is_bias;
    } L[] = {
        {"input_layernorm.weight", "attn_norm.weight", 0, -1, 0, false},
        {"self_attn.q_proj.weight", "attn_q.weight", 2, 0, 1, false},
        {"self_attn.k_proj.weight", "attn_k.weight", 3, 0, 2, false},
        {"self_attn.v_proj.weight", "attn_v.weight", 3, 0, 0, false},
        {"self_attn.q_proj.bias", "attn_q.bias", 2, -1, 1, true},
        {"self_attn.k_proj.bias", "attn_k.bias", 3, -1, 2, true},
        {"self_attn.v_proj.bias", "attn_v.bias", 3, -1, 0, true},
        {"self_attn.o_proj.weight", "attn_output.weight", 0, 2, 0, false},
        {"post_attention_layernorm.weight", "ffn_norm.weight", 0, -1, 0, false},
        {"mlp.gate_proj.weight", "ffn_gate.weight", 1, 0, 0, false},
        {"mlp.up_proj.weight", "ffn_up.weight", 1, 0, 0, false},
        {"mlp.down_proj.weight", "ffn_down.weight", 0, 1, 0, false},
    };
    const int64_t dim[4] = {E, F, Dq, Dkv};
    for (int64_t l = 0; l < c->n_layer; l++)
        for (size_t k = 0; k < sizeof L / sizeof L[0]; k++) {
            char hf[128], gg[96];
            snprintf(hf, sizeof hf, "model.layers.%lld.%s", (long long)l, L[k].hf);
            snprintf(gg, sizeof gg, "blk.%lld.%s", (long long)l, L[k].gguf);
            int64_t heads = !perm ? 0 : L[k].permute == 1 ? c->n_head : L[k].permute == 2 ? c->n_head_kv : 0;
            int rc = add(c, hf, gg, dim[L[k].rows], L[k].cols < 0 ? 0 : dim[L[k].cols], heads, !L[k].is_bias || bias);
            if (rc < 0) return -1;
            if (rc == 0 && L[k].is_bias && !bias)
                return rq_fail("%s: tensor '%s' is a bias that %s models do not have", c->dir, hf, c->arch);
        }
    return 0;
}

int rq_hf_open(const char *dir, rq_gguf **out) {
    rq_gguf *g = rq_calloc(1, sizeof *g);
    hf_aux *aux = rq_calloc(1, sizeof *aux);
    g->path = rq_strdup(dir);
    g->aux = aux;
    g->free_aux = hf_free_aux;
    g->version = 3;
    hf_ctx c = {.dir = dir, .g = g, .aux = aux};
    cJSON *index = NULL;
    int rc = read_config(&c);
    g->alignment = 32;
    if (!rc) rc = open_weights(&c, &index);
    if (!rc) rc = add_tensors(&c);
    cJSON_Delete(index);
    if (rc) {
        rq_gguf_close(g);
        return -1;
    }
    *out = g;
    return 0;
}
