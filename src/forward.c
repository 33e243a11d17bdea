/* forward.c - f32 transformer forward pass for perplexity: embeddings, RMSNorm,
 * GQA attention with RoPE (interleaved or NeoX per the adapter), SwiGLU MLP. */
#include "forward.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "actq.h"
#include "gemm.h"
#include "hadamard.h"
#include "util.h"

struct rq_fwd {
    const rq_model *m; /* NULL when made from a configuration alone */
    rq_config cfg;
    rq_actq actq;
    rq_orth *r3, *r4; /* online rotations (NULL: none) */
    int n_ctx;
    float *x, *h, *q, *k, *v, *att, *scores, *g, *u;
    float *kb; /* [n_ctx, Dkv] the K bias after RoPE (and R3) per position; made when kv_unbias or the kv hook first
                  needs it */
    uint8_t *massive; /* [n_ctx] tokens kept at 16 bits in this block (actq.keep_massive) */
    bool any_massive;
    float *rope_cos, *rope_sin; /* [n_ctx, head_dim/2] */
    rq_fwd_kv_hook kv_hook;
    void *kv_ctx;
};

void rq_set_threads(int n) {
    rq_blas_single(); /* OpenBLAS on one thread; repliq splits the products (gemm.c) */
    rq_set_par_threads(n);
}

rq_fwd *rq_fwd_new(const rq_model *m, int n_ctx) {
    rq_fwd *f = rq_fwd_new_cfg(&m->cfg, n_ctx);
    f->m = m;
    f->actq = m->actq;
    if (rq_fwd_set_online(f, &m->online)) {
        rq_fwd_free(f);
        return NULL;
    }
    return f;
}

void rq_fwd_set_actq(rq_fwd *f, const rq_actq *a) { f->actq = *a; }

void rq_fwd_set_kv_hook(rq_fwd *f, rq_fwd_kv_hook hook, void *ctx) {
    f->kv_hook = hook;
    f->kv_ctx = ctx;
}

int rq_fwd_set_online(rq_fwd *f, const rq_online_rot *on) {
    rq_orth_free(f->r3);
    rq_orth_free(f->r4);
    f->r3 = f->r4 = NULL;
    if (on->r3 != RQ_ROT_NONE &&
        !(f->r3 = rq_orth_new(f->cfg.head_dim, (rq_orth_kind)on->r3, rq_rot_stage_seed(on->seed, 3))))
        return rq_fail_ctx("the online rotation R3");
    if (on->r4 != RQ_ROT_NONE &&
        !(f->r4 = rq_orth_new(f->cfg.n_ff, (rq_orth_kind)on->r4, rq_rot_stage_seed(on->seed, 4))))
        return rq_fail_ctx("the online rotation R4");
    return 0;
}

rq_fwd *rq_fwd_new_cfg(const rq_config *c, int n_ctx) {
    rq_fwd *f = rq_calloc(1, sizeof *f);
    f->cfg = *c;
    size_t T = (size_t)n_ctx, E = (size_t)c->n_embd, Dq = (size_t)c->n_head * c->head_dim,
           Dkv = (size_t)c->n_head_kv * c->head_dim, F = (size_t)c->n_ff;
    f->n_ctx = n_ctx;
    f->x = rq_malloc(T * E * sizeof(float));
    f->h = rq_malloc(T * E * sizeof(float));
    f->q = rq_malloc(T * Dq * sizeof(float));
    f->k = rq_malloc(T * Dkv * sizeof(float));
    f->v = rq_malloc(T * Dkv * sizeof(float));
    f->att = rq_malloc(T * Dq * sizeof(float));
    f->scores = rq_malloc(T * T * sizeof(float));
    f->g = rq_malloc(T * F * sizeof(float));
    f->u = rq_malloc(T * F * sizeof(float));
    f->massive = rq_calloc(T, 1);
    int half = c->head_dim / 2;
    f->rope_cos = rq_malloc(T * (size_t)half * sizeof(float));
    f->rope_sin = rq_malloc(T * (size_t)half * sizeof(float));
    /* theta_i = pos * base^(-2i/d), the rotation llama.cpp applies */
    for (int p = 0; p < n_ctx; p++)
        for (int i = 0; i < half; i++) {
            double theta = (double)p * pow((double)c->rope_base, -2.0 * i / (double)c->head_dim);
            f->rope_cos[(size_t)p * half + i] = (float)cos(theta);
            f->rope_sin[(size_t)p * half + i] = (float)sin(theta);
        }
    return f;
}

void rq_fwd_free(rq_fwd *f) {
    if (!f) return;
    free(f->x);
    free(f->h);
    free(f->q);
    free(f->k);
    free(f->v);
    free(f->att);
    free(f->scores);
    free(f->g);
    free(f->u);
    free(f->kb);
    free(f->massive);
    free(f->rope_cos);
    free(f->rope_sin);
    rq_orth_free(f->r3);
    rq_orth_free(f->r4);
    free(f);
}

void rq_linear_ref(const rq_linear *l, const float *x, int n, float *y) {
    for (int t = 0; t < n; t++)
        for (int64_t r = 0; r < l->rows; r++) {
            double s = l->b ? l->b[r] : 0.0;
            const float *w = l->w + r * l->cols, *xt = x + (size_t)t * l->cols;
            for (int64_t c = 0; c < l->cols; c++)
                s += (double)w[c] * xt[c];
            y[(size_t)t * l->rows + r] = (float)s;
        }
}

/* y[n, rows] = x[n, cols] W^T (+ b) */
static void linear(const rq_linear *l, const float *x, int n, float *y) {
    rq_sgemm(CblasNoTrans, CblasTrans, n, (int)l->rows, (int)l->cols, 1.0f, x, (int)l->cols, l->w, (int)l->cols, 0.0f,
             y, (int)l->rows);
    if (l->b)
        for (int t = 0; t < n; t++) {
            float *yt = y + (size_t)t * l->rows;
            for (int64_t r = 0; r < l->rows; r++)
                yt[r] += l->b[r];
        }
}

static void rmsnorm(const float *x, const float *w, int n, int dim, float eps, float *y) {
    for (int t = 0; t < n; t++) {
        const float *xt = x + (size_t)t * dim;
        float *yt = y + (size_t)t * dim;
        double ss = 0;
        for (int i = 0; i < dim; i++)
            ss += (double)xt[i] * xt[i];
        float scale = 1.0f / sqrtf((float)(ss / dim) + eps);
        for (int i = 0; i < dim; i++)
            yt[i] = xt[i] * scale * w[i];
    }
}

/* Rotate each head of v[n, n_heads*hd] in place. */
static void rope(const rq_fwd *f, float *v, int n, int n_heads, int hd, bool neox) {
    int half = hd / 2;
    for (int t = 0; t < n; t++) {
        const float *cs = f->rope_cos + (size_t)t * half, *sn = f->rope_sin + (size_t)t * half;
        for (int h = 0; h < n_heads; h++) {
            float *x = v + ((size_t)t * n_heads + h) * hd;
            for (int i = 0; i < half; i++) {
                int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
                float x0 = x[a], x1 = x[b];
                x[a] = x0 * cs[i] - x1 * sn[i];
                x[b] = x0 * sn[i] + x1 * cs[i];
            }
        }
    }
}

typedef struct {
    float *s;
    int ld, r0, keys;
} softmax_job;

/* Causal softmax of score rows [i0, i1) of a block that starts at query r0. */
static void softmax_rows(void *ctx, int64_t i0, int64_t i1) {
    const softmax_job *b = ctx;
    for (int64_t i = i0; i < i1; i++) {
        int last = b->r0 + (int)i;
        float *row = b->s + (size_t)i * b->ld, mx = row[0];
        for (int j = 1; j <= last; j++)
            mx = row[j] > mx ? row[j] : mx;
        double sum = 0;
        for (int j = 0; j <= last; j++)
            sum += (row[j] = expf(row[j] - mx));
        float inv = (float)(1.0 / sum);
        for (int j = 0; j <= last; j++)
            row[j] *= inv;
        for (int j = last + 1; j < b->keys; j++)
            row[j] = 0.0f;
    }
}

typedef struct {
    float *g;
    const float *u;
} swiglu_job;

static void swiglu_range(void *ctx, int64_t i0, int64_t i1) {
    const swiglu_job *b = ctx;
    for (int64_t i = i0; i < i1; i++) {
        float g = b->g[i];
        b->g[i] = g / (1.0f + expf(-g)) * b->u[i];
    }
}

#define ATT_BLOCK 128 /* query rows per block: keys past the block's last row are never computed */

static void attention(rq_fwd *f, int n) {
    const rq_config *c = &f->cfg;
    int hd = c->head_dim, nh = c->n_head, nkv = c->n_head_kv, group = nh / nkv;
    int ldq = nh * hd, ldk = nkv * hd;
    float scale = 1.0f / sqrtf((float)hd);
    for (int h = 0; h < nh; h++) {
        const float *k = f->k + (size_t)(h / group) * hd, *v = f->v + (size_t)(h / group) * hd;
        for (int r0 = 0; r0 < n; r0 += ATT_BLOCK) {
            int rows = n - r0 < ATT_BLOCK ? n - r0 : ATT_BLOCK, keys = r0 + rows, ld = keys;
            const float *q = f->q + (size_t)r0 * ldq + (size_t)h * hd;
            float *s = f->scores;
            /* s[rows, keys] = scale * q k^T; row i (absolute r0 + i) uses keys 0..r0 + i */
            rq_sgemm(CblasNoTrans, CblasTrans, rows, keys, hd, scale, q, ldq, k, ldk, 0.0f, s, ld);
            softmax_job sj = {s, ld, r0, keys};
            rq_parallel_for(rows, softmax_rows, &sj);
            rq_sgemm(CblasNoTrans, CblasNoTrans, rows, hd, keys, 1.0f, s, ld, v, ldk, 0.0f,
                     f->att + (size_t)r0 * ldq + (size_t)h * hd, ldq);
        }
    }
}

/* The simulated activation quantization of a linear layer's input x[n, dim]. */
static void act_in(const rq_fwd *f, float *x, int n, int dim) {
    const rq_actq *a = &f->actq;
    if (!f->any_massive) {
        rq_actq_tokens(x, n, dim, a->a_bits, a->a_clip, a->a_bf16);
        return;
    }
    for (int t = 0; t < n; t++)
        rq_actq_tokens(x + (size_t)t * dim, 1, dim, f->massive[t] ? 16 : a->a_bits, a->a_clip, a->a_bf16);
}

/* Flag the tokens of the block input x[n, E] whose RMS exceeds keep x the median. */
static void flag_massive(rq_fwd *f, const float *x, int n, int E) {
    f->any_massive = false;
    float keep = f->actq.keep_massive;
    if (!(keep > 0.0f) || f->actq.a_bits == 0 || f->actq.a_bits == 16 || n < 1) return;
    float *rms = rq_malloc((size_t)n * sizeof *rms), *srt = rq_malloc((size_t)n * sizeof *srt);
    for (int t = 0; t < n; t++) {
        double s = 0;
        for (int i = 0; i < E; i++)
            s += (double)x[(size_t)t * E + i] * x[(size_t)t * E + i];
        rms[t] = srt[t] = (float)sqrt(s / E);
    }
    qsort(srt, (size_t)n, sizeof *srt, rq_cmp_float);
    float thr = keep * srt[n / 2];
    for (int t = 0; t < n; t++) {
        f->massive[t] = rms[t] > thr;
        f->any_massive |= f->massive[t];
    }
    free(rms);
    free(srt);
}

/* Simulated K/V cache. With actq.kv_unbias the K cache holds each key minus
 * its bias's image at that position (RoPE, then R3), which a kernel adds back
 * exactly: Qwen2.5's K bias reaches |354| on one channel while the rest of the key
 * has an RMS near 1, so a per-token range spent on it leaves the rest no levels. */
static void quantize_kv(rq_fwd *f, const rq_layer *L, int layer, int n) {
    const rq_config *c = &f->cfg;
    int bits = f->actq.kv_bits;
    int64_t D = (int64_t)c->n_head_kv * c->head_dim;
    bool unbias = rq_actq_kv_unbiased(&f->actq) && L->k.b;
    if (L->k.b && (unbias || f->kv_hook)) {
        if (!f->kb) f->kb = rq_malloc((size_t)f->n_ctx * (size_t)D * sizeof(float));
        for (int t = 0; t < n; t++)
            memcpy(f->kb + t * D, L->k.b, (size_t)D * sizeof(float));
        rope(f, f->kb, n, c->n_head_kv, c->head_dim, c->arch->rope_neox);
        if (f->r3) rq_orth_apply(f->r3, f->kb, (int64_t)n * c->n_head_kv);
    }
    if (f->kv_hook) f->kv_hook(f->kv_ctx, layer, f->k, L->k.b ? f->kb : NULL, n);
    rq_kvq_keys(f->k, unbias ? f->kb : NULL, n, c->n_head_kv, c->head_dim, bits);
    rq_kvq_tokens(f->v, n, c->n_head_kv, c->head_dim, bits);
}

/* One block; last < RQ_HOOK_COUNT stops after the hook at that point (x then
 * holds what the block has added so far). */
static void layer_fwd(rq_fwd *f, const rq_layer *L, int layer, float *x, int n, rq_fwd_hook hook, void *ctx, int last) {
    bool down = last == RQ_HOOK_COUNT;
    const rq_config *c = &f->cfg;
    int E = c->n_embd, Dq = c->n_head * c->head_dim;
    flag_massive(f, x, n, E);
    rmsnorm(x, L->attn_norm, n, E, c->norm_eps, f->h);
    act_in(f, f->h, n, E);
    if (hook) hook(ctx, layer, RQ_HOOK_ATTN_IN, f->h, n, E);
    if (last == RQ_HOOK_ATTN_IN) return;
    linear(&L->q, f->h, n, f->q);
    linear(&L->k, f->h, n, f->k);
    linear(&L->v, f->h, n, f->v);
    rope(f, f->q, n, c->n_head, c->head_dim, c->arch->rope_neox);
    rope(f, f->k, n, c->n_head_kv, c->head_dim, c->arch->rope_neox);
    if (f->r3) { /* q k^T is unchanged; the K cache is quantized in the rotated basis */
        rq_orth_apply(f->r3, f->q, (int64_t)n * c->n_head);
        rq_orth_apply(f->r3, f->k, (int64_t)n * c->n_head_kv);
    }
    quantize_kv(f, L, layer, n);
    attention(f, n);
    act_in(f, f->att, n, Dq);
    if (hook) hook(ctx, layer, RQ_HOOK_O_IN, f->att, n, Dq);
    if (last == RQ_HOOK_O_IN) return;
    /* x += att Wo^T */
    rq_sgemm(CblasNoTrans, CblasTrans, n, E, (int)L->o.cols, 1.0f, f->att, (int)L->o.cols, L->o.w, (int)L->o.cols, 1.0f,
             x, E);
    rmsnorm(x, L->ffn_norm, n, E, c->norm_eps, f->h);
    act_in(f, f->h, n, E);
    if (hook) hook(ctx, layer, RQ_HOOK_FFN_IN, f->h, n, E);
    if (last == RQ_HOOK_FFN_IN) return;
    /* one path, or the K paths of an MLP replicated after its nonlinearity, added into x */
    for (int p = 0; p < rq_layer_ffn_paths(L); p++) {
        const rq_linear *gate, *up, *dn;
        rq_layer_ffn_path(L, p, &gate, &up, &dn);
        linear(gate, f->h, n, f->g);
        linear(up, f->h, n, f->u);
        swiglu_job sw = {f->g, f->u};
        rq_parallel_for((int64_t)n * c->n_ff, swiglu_range, &sw);
        if (f->r4) rq_orth_apply(f->r4, f->g, n); /* its inverse is folded into ffn_down */
        act_in(f, f->g, n, c->n_ff);
        if (hook) hook(ctx, layer, RQ_HOOK_DOWN_IN, f->g, n, c->n_ff);
        if (down) rq_sgemm(CblasNoTrans, CblasTrans, n, E, c->n_ff, 1.0f, f->g, c->n_ff, dn->w, c->n_ff, 1.0f, x, E);
    }
}

void rq_fwd_layer(rq_fwd *f, const rq_layer *L, int layer, float *x, int n, rq_fwd_hook hook, void *ctx) {
    layer_fwd(f, L, layer, x, n, hook, ctx, RQ_HOOK_COUNT);
}

void rq_fwd_layer_until(rq_fwd *f, const rq_layer *L, int layer, float *x, int n, rq_hook_point last, rq_fwd_hook hook,
                        void *ctx) {
    layer_fwd(f, L, layer, x, n, hook, ctx, (int)last);
}

const float *rq_fwd_hidden(rq_fwd *f, const int32_t *tokens, int n) {
    const rq_model *m = f->m;
    const rq_config *c = &m->cfg;
    int E = c->n_embd;
    for (int t = 0; t < n; t++)
        memcpy(f->x + (size_t)t * E, m->tok_embd + (size_t)tokens[t] * E, E * sizeof(float));
    for (int l = 0; l < c->n_layer; l++)
        rq_fwd_layer(f, &m->layers[l], l, f->x, n, NULL, NULL);
    flag_massive(f, f->x, n, E);
    rmsnorm(f->x, m->out_norm, n, E, c->norm_eps, f->h);
    act_in(f, f->h, n, E);
    return f->h;
}

void rq_fwd_logits(const rq_model *m, const float *hidden, int n, float *logits) {
    linear(&m->output, hidden, n, logits);
}

const rq_orth *rq_fwd_online_r4(const rq_fwd *f) { return f->r4; }
