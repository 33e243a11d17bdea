/* test_acts.c - massive-activation statistics against a direct computation on a
 * tiny model with a planted massive activation, argument checks, the JSON file,
 * and a look at SmolLM2's residual stream on WikiText-2. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>

#include "acts.h"
#include "forward.h"
#include "model.h"
#include "ppl.h"
#include "rq_test.h"
#include "tiny_model.h"
#include "tokenizer.h"
#include "util.h"

enum { N_TOK = 100, CTX = 64, PLANT_POS = 80, PLANT_TOK = 5, PLANT_CH = 7 };
#define PLANT_VAL (-5000.0f)

static rq_model *tiny(unsigned seed) {
    tiny_spec sp = {.arch = "llama",
                    .n_vocab = 97,
                    .n_embd = 32,
                    .n_ff = 48,
                    .n_layer = 3,
                    .n_head = 4,
                    .n_head_kv = 2,
                    .rope_base = 10000.0f,
                    .seed = seed,
                    .weight_type = RQ_GGML_F32};
    char path[128];
    snprintf(path, sizeof path, "/tmp/rq_tiny_acts_%d.gguf", (int)getpid());
    if (tiny_model_write(&sp, path)) return NULL;
    rq_model *m = NULL;
    if (rq_model_load(path, &m)) printf("  load: %s\n", rq_error());
    unlink(path);
    return m;
}

/* A tiny model whose embedding of PLANT_TOK carries PLANT_VAL in channel PLANT_CH,
 * and a token stream holding PLANT_TOK once, at PLANT_POS (second window). */
static rq_model *planted(int32_t *tok) {
    rq_model *m = tiny(5);
    if (!m) return NULL;
    m->tok_embd[(size_t)PLANT_TOK * m->cfg.n_embd + PLANT_CH] = PLANT_VAL;
    for (int i = 0; i < N_TOK; i++) {
        tok[i] = (i * 7 + 3) % m->cfg.n_vocab;
        if (tok[i] == PLANT_TOK) tok[i] = PLANT_TOK + 1;
    }
    tok[PLANT_POS] = PLANT_TOK;
    return m;
}

/* ---- direct computation: every value of every (layer, site), kept whole ---- */

typedef struct {
    float *v[16][RQ_ACTS_N_SITES]; /* [N_TOK, width] */
    int width[RQ_ACTS_N_SITES];
    int64_t base; /* the window's first position */
} direct;

static void direct_hook(void *ctx, int layer, rq_hook_point p, const float *x, int n, int cols) {
    direct *d = ctx;
    d->width[p] = cols;
    memcpy(d->v[layer][p] + d->base * cols, x, (size_t)n * cols * sizeof(float));
}

static void direct_run(const rq_model *m, const int32_t *tok, int n_tok, int ctx, direct *d) {
    int E = m->cfg.n_embd, L = m->cfg.n_layer, F = m->cfg.n_ff;
    for (int l = 0; l < L; l++)
        for (int s = 0; s < RQ_ACTS_N_SITES; s++)
            d->v[l][s] = malloc((size_t)n_tok * (F > E ? F : E) * sizeof(float));
    d->width[RQ_ACTS_RESID] = E;
    rq_fwd *f = rq_fwd_new_cfg(&m->cfg, ctx < n_tok ? ctx : n_tok);
    float *x = malloc((size_t)ctx * E * sizeof(float));
    for (int w0 = 0; w0 < n_tok; w0 += ctx) {
        int n = n_tok - w0 < ctx ? n_tok - w0 : ctx;
        d->base = w0;
        for (int t = 0; t < n; t++)
            memcpy(x + (size_t)t * E, m->tok_embd + (size_t)tok[w0 + t] * E, E * sizeof(float));
        for (int l = 0; l < L; l++) {
            rq_fwd_layer(f, &m->layers[l], l, x, n, direct_hook, d);
            memcpy(d->v[l][RQ_ACTS_RESID] + (size_t)w0 * E, x, (size_t)n * E * sizeof(float));
        }
    }
    free(x);
    rq_fwd_free(f);
}

static void direct_free(direct *d, int L) {
    for (int l = 0; l < L; l++)
        for (int s = 0; s < RQ_ACTS_N_SITES; s++)
            free(d->v[l][s]);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static double sorted_median(float *a, size_t n) {
    qsort(a, n, sizeof *a, cmp_float);
    return n % 2 ? a[n / 2] : ((double)a[n / 2 - 1] + a[n / 2]) / 2;
}

/* Every statistic of every (layer, site) against the direct values; returns the
 * massive entries counted at the linear inputs. */
static int64_t check_against_direct(const rq_model *m, const int32_t *tok, const rq_acts_params *p) {
    rq_acts *a = NULL;
    int64_t inputs_massive = 0;
    if (rq_acts_collect(m, tok, N_TOK, p, &a)) {
        CHECKF(0, "collect: %s", rq_error());
        return 0;
    }
    direct d = {0};
    direct_run(m, tok, N_TOK, p->n_ctx, &d);
    CHECK(a->n_windows == (N_TOK + p->n_ctx - 1) / p->n_ctx && a->n_layer == m->cfg.n_layer);
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int si = 0; si < RQ_ACTS_N_SITES; si++) {
            const rq_acts_stats *s = rq_acts_get(a, l, (rq_acts_site)si);
            const char *sn = rq_acts_site_name((rq_acts_site)si);
            int W = d.width[si];
            size_t N = (size_t)N_TOK * W;
            const float *v = d.v[l][si];
            CHECKF(s->width == W && s->n_values == (int64_t)N && s->n_nonfinite == 0, "layer %d %s", l, sn);
            /* max, channel maxima and the top-K, computed plainly */
            float mx = 0;
            float *absv = malloc(N * sizeof(float));
            for (size_t i = 0; i < N; i++) {
                absv[i] = fabsf(v[i]);
                mx = absv[i] > mx ? absv[i] : mx;
            }
            CHECKF(s->max_abs == mx, "layer %d %s max %g vs %g", l, sn, (double)s->max_abs, (double)mx);
            /* sum x^2 over all tokens and over each window's first token */
            double ss = 0, ssf = 0;
            for (size_t i = 0; i < N; i++) {
                double q = (double)v[i] * v[i];
                ss += q;
                if ((i / (size_t)W) % (size_t)p->n_ctx == 0) ssf += q;
            }
            CHECKF(fabs(s->sumsq - ss) <= 1e-9 * ss && fabs(s->sumsq_first - ssf) <= 1e-9 * ss && ssf > 0 && ssf < ss,
                   "layer %d %s sum x^2 %g / %g vs %g / %g", l, sn, s->sumsq, s->sumsq_first, ss, ssf);
            float chmx = 0;
            int ch_ok = 1;
            for (int c = 0; c < W; c++) {
                float cm = 0;
                for (int t = 0; t < N_TOK; t++)
                    cm = fmaxf(cm, absv[(size_t)t * W + c]);
                ch_ok &= s->ch_max[c] == cm;
                chmx = fmaxf(chmx, s->ch_max[c]);
            }
            CHECKF(ch_ok && chmx == s->max_abs, "layer %d %s channel maxima", l, sn);
            CHECK(s->n_top == RQ_ACTS_TOPK);
            bool *taken = calloc(N, 1);
            for (int k = 0; k < RQ_ACTS_TOPK; k++) {
                size_t best = 0;
                float bv = -1;
                for (size_t i = 0; i < N; i++)
                    if (!taken[i] && absv[i] > bv) bv = absv[i], best = i;
                taken[best] = true;
                const rq_acts_entry *e = &s->top[k];
                int64_t pos = (int64_t)(best / W);
                CHECKF(e->pos == pos && e->channel == (int)(best % W) && e->value == v[best] &&
                           e->win_pos == (int)(pos % p->n_ctx) && e->token == tok[pos],
                       "layer %d %s top %d: pos %lld ch %d %g, want pos %lld ch %d %g", l, sn, k, (long long)e->pos,
                       e->channel, (double)e->value, (long long)pos, (int)(best % W), (double)v[best]);
                if (k) CHECK(fabsf(s->top[k - 1].value) >= fabsf(e->value));
                for (int j = 0; j < k; j++)
                    CHECK(s->top[j].pos != e->pos || s->top[j].channel != e->channel);
            }
            free(taken);
            /* massive: against each window's exact median */
            int64_t massive = 0, *chm = calloc((size_t)W, sizeof *chm);
            for (int w0 = 0; w0 < N_TOK; w0 += p->n_ctx) {
                int n = N_TOK - w0 < p->n_ctx ? N_TOK - w0 : p->n_ctx;
                float *wv = malloc((size_t)n * W * sizeof(float));
                memcpy(wv, absv + (size_t)w0 * W, (size_t)n * W * sizeof(float));
                double med = sorted_median(wv, (size_t)n * W);
                for (size_t i = (size_t)w0 * W; i < (size_t)(w0 + n) * W; i++)
                    if (absv[i] > p->abs_thr && absv[i] > p->ratio_thr * med) massive++, chm[i % W]++;
                free(wv);
            }
            CHECKF(s->n_massive == massive, "layer %d %s massive %lld vs %lld", l, sn, (long long)s->n_massive,
                   (long long)massive);
            CHECK(memcmp(chm, s->ch_massive, (size_t)W * sizeof *chm) == 0);
            if (si != RQ_ACTS_RESID) inputs_massive += massive;
            free(chm);
            /* median: the histogram estimate is within one bin (1/64) of the exact one */
            double med = sorted_median(absv, N);
            CHECKF(fabs(s->median_abs - med) <= med / 64, "layer %d %s median %.6g vs exact %.6g", l, sn, s->median_abs,
                   med);
            CHECK(s->ratio == s->max_abs / s->median_abs && s->ratio >= 1);
            free(absv);
        }
    direct_free(&d, m->cfg.n_layer);
    rq_acts_free(a);
    return inputs_massive;
}

static void test_planted_massive(void) {
    int32_t tok[N_TOK];
    rq_model *m = planted(tok);
    REQUIRE(m != NULL);
    rq_acts_params p = rq_acts_defaults();
    p.n_ctx = CTX;
    rq_acts *a = NULL;
    REQUIRE(rq_acts_collect(m, tok, N_TOK, &p, &a) == 0);
    /* the value a direct run of the second window gives */
    int E = m->cfg.n_embd, n = N_TOK - CTX;
    rq_fwd *f = rq_fwd_new_cfg(&m->cfg, CTX);
    float *x = malloc((size_t)n * E * sizeof(float));
    for (int t = 0; t < n; t++)
        memcpy(x + (size_t)t * E, m->tok_embd + (size_t)tok[CTX + t] * E, E * sizeof(float));
    for (int l = 0; l < m->cfg.n_layer; l++) {
        rq_fwd_layer(f, &m->layers[l], l, x, n, NULL, NULL);
        const rq_acts_stats *s = rq_acts_get(a, l, RQ_ACTS_RESID);
        const rq_acts_entry *e = &s->top[0];
        float want = x[(size_t)(PLANT_POS - CTX) * E + PLANT_CH];
        CHECKF(e->pos == PLANT_POS && e->win_pos == PLANT_POS - CTX && e->token == PLANT_TOK &&
                   e->channel == PLANT_CH && e->value == want && fabsf(want) > 1000 && s->max_abs == fabsf(want),
               "layer %d: top pos %lld (win %d) token %d ch %d value %g, want %d ch %d value %g", l, (long long)e->pos,
               e->win_pos, e->token, e->channel, (double)e->value, PLANT_POS, PLANT_CH, (double)want);
        CHECKF(s->n_massive == 1 && s->ch_massive[PLANT_CH] == 1, "layer %d: %lld massive", l, (long long)s->n_massive);
        CHECK(s->ratio > 1000);
        /* the normed inputs hold nothing massive: |x| <= sqrt(n_embd) * max|norm weight| */
        CHECK(rq_acts_get(a, l, RQ_ACTS_ATTN_IN)->n_massive == 0);
        int w;
        const float *chm = rq_acts_channel_max(a, l, RQ_ACTS_RESID, &w);
        CHECK(w == E && chm == s->ch_max && chm[PLANT_CH] == fabsf(want));
    }
    CHECK(rq_acts_get(a, m->cfg.n_layer, RQ_ACTS_RESID) == NULL && rq_acts_get(a, 0, RQ_ACTS_N_SITES) == NULL);
    CHECK(rq_acts_channel_max(a, -1, RQ_ACTS_RESID, NULL) == NULL);
    free(x);
    rq_fwd_free(f);
    rq_acts_free(a);
    rq_model_free(m);
}

static void test_against_direct(void) {
    int32_t tok[N_TOK];
    rq_model *m = planted(tok);
    REQUIRE(m != NULL);
    rq_acts_params p = rq_acts_defaults();
    p.n_ctx = CTX;
    CHECK(check_against_direct(m, tok, &p) == 0);
    /* low thresholds, so that the linear inputs have massive entries to count */
    p.abs_thr = 0.5f;
    p.ratio_thr = 2.0f;
    int64_t low = check_against_direct(m, tok, &p);
    CHECKF(low > 0, "%lld", (long long)low);
    /* one window holding everything, and windows shorter than the model's context */
    p.n_ctx = 128;
    check_against_direct(m, tok, &p);
    p.n_ctx = 7;
    check_against_direct(m, tok, &p);
    rq_model_free(m);
}

/* BOS goes over each window's first token: the top entries report it. */
static void test_bos_per_window(void) {
    int32_t tok[N_TOK];
    rq_model *m = planted(tok);
    REQUIRE(m != NULL);
    rq_acts_params p = rq_acts_defaults();
    p.n_ctx = CTX;
    p.bos_id = PLANT_TOK; /* the planted token as BOS: massive at positions 0 and CTX */
    rq_acts *a = NULL;
    REQUIRE(rq_acts_collect(m, tok, N_TOK, &p, &a) == 0);
    const rq_acts_stats *s = rq_acts_get(a, 0, RQ_ACTS_RESID);
    CHECKF(s->n_massive == 3, "%lld massive", (long long)s->n_massive);
    int at_start = 0;
    for (int k = 0; k < 3; k++) {
        at_start += s->top[k].win_pos == 0 && s->top[k].token == PLANT_TOK;
        CHECK(s->top[k].channel == PLANT_CH);
    }
    CHECK(at_start == 2);
    rq_acts_free(a);
    rq_model_free(m);
}

static void test_refusals(void) {
    int32_t tok[N_TOK];
    rq_model *m = planted(tok);
    REQUIRE(m != NULL);
    rq_acts_params p = rq_acts_defaults();
    rq_acts *a = (rq_acts *)1;
    CHECK(rq_acts_collect(m, tok, 0, &p, &a) != 0 && a == NULL);
    CHECKF(strstr(rq_error(), "token list is empty") != NULL, "%s", rq_error());
    CHECK(rq_acts_collect(m, NULL, 5, &p, &a) != 0 && strstr(rq_error(), "empty"));
    p.n_ctx = 0;
    CHECK(rq_acts_collect(m, tok, N_TOK, &p, &a) != 0);
    CHECKF(strstr(rq_error(), "n_ctx = 0") != NULL, "%s", rq_error());
    p = rq_acts_defaults();
    p.ratio_thr = -1;
    CHECK(rq_acts_collect(m, tok, N_TOK, &p, &a) != 0 && strstr(rq_error(), "thresholds"));
    p = rq_acts_defaults();
    p.bos_id = 1000;
    CHECK(rq_acts_collect(m, tok, N_TOK, &p, &a) != 0 && strstr(rq_error(), "BOS id 1000"));
    p = rq_acts_defaults();
    tok[9] = -3;
    CHECK(rq_acts_collect(m, tok, N_TOK, &p, &a) != 0);
    CHECKF(strstr(rq_error(), "token id -3 at position 9") != NULL, "%s", rq_error());
    CHECK(rq_acts_collect(m, tok, N_TOK, NULL, &a) != 0 && a == NULL);
    rq_model_free(m);
}

static void test_json(void) {
    int32_t tok[N_TOK];
    rq_model *m = planted(tok);
    REQUIRE(m != NULL);
    rq_acts_params p = rq_acts_defaults();
    p.n_ctx = CTX;
    rq_acts *a = NULL;
    REQUIRE(rq_acts_collect(m, tok, N_TOK, &p, &a) == 0);
    char path[128], tmp[140];
    snprintf(path, sizeof path, "/tmp/rq_acts_%d.json", (int)getpid());
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    REQUIRE(rq_acts_save_json(a, NULL, "planted \"text\"", path) == 0);
    CHECK(access(tmp, F_OK) != 0);
    char *buf;
    size_t len;
    REQUIRE(rq_read_file(path, &buf, &len) == 0);
    cJSON *o = cJSON_Parse(buf);
    free(buf);
    unlink(path);
    REQUIRE(o != NULL);
    CHECK(!strcmp(cJSON_GetObjectItem(o, "text")->valuestring, "planted \"text\""));
    CHECK(cJSON_GetObjectItem(o, "n_tokens")->valuedouble == N_TOK);
    cJSON *layers = cJSON_GetObjectItem(o, "layers");
    REQUIRE(cJSON_GetArraySize(layers) == m->cfg.n_layer);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        cJSON *r = cJSON_GetObjectItem(cJSON_GetArrayItem(layers, l), "resid");
        const rq_acts_stats *s = rq_acts_get(a, l, RQ_ACTS_RESID);
        REQUIRE(r != NULL);
        cJSON *top = cJSON_GetArrayItem(cJSON_GetObjectItem(r, "top"), 0);
        CHECK(cJSON_GetObjectItem(top, "channel")->valueint == PLANT_CH);
        CHECK((float)cJSON_GetObjectItem(top, "value")->valuedouble == s->top[0].value);
        cJSON *chm = cJSON_GetObjectItem(r, "ch_max");
        REQUIRE(cJSON_GetArraySize(chm) == s->width);
        int same = 1;
        for (int c = 0; c < s->width; c++)
            same &= (float)cJSON_GetArrayItem(chm, c)->valuedouble == s->ch_max[c];
        CHECK(same);
        cJSON *down = cJSON_GetObjectItem(cJSON_GetArrayItem(layers, l), "down_in");
        CHECK(down && cJSON_GetObjectItem(down, "width")->valueint == m->cfg.n_ff);
    }
    cJSON_Delete(o);
    /* an unwritable place: refused with the path, nothing left behind */
    CHECK(rq_acts_save_json(a, NULL, NULL, "/nonexistent-dir/acts.json") != 0);
    CHECKF(strstr(rq_error(), "/nonexistent-dir/acts.json.tmp") != NULL, "%s", rq_error());
    rq_acts_free(a);
    rq_model_free(m);
}

/* SmolLM2 on 512 tokens of WikiText-2 test: print the residual stream's profile. */
static void test_smollm2_wikitext(void) {
    char mp[1024], tp[1024];
    const char *data = rq_test_data_dir();
    if (!rq_test_model("smollm2-135m.gguf", mp, sizeof mp)) SKIP("smollm2-135m.gguf is not in the cache");
    if (!data) SKIP("REPLIQ_DATA is not set");
    snprintf(tp, sizeof tp, "%s/wiki.test.raw", data);
    char *text;
    size_t len;
    if (rq_read_file(tp, &text, &len)) SKIP("%s", rq_error());
    rq_model *m = NULL;
    if (rq_model_load(mp, &m)) printf("  load: %s\n", rq_error());
    if (!m) free(text);
    REQUIRE(m != NULL);
    rq_ppl_params pp = {.protocol = RQ_PPL_LLAMACPP};
    int32_t *tok;
    size_t n_tok;
    int rc = rq_ppl_tokens(m, &pp, text, len, &tok, &n_tok);
    free(text);
    REQUIRE(rc == 0 && n_tok >= 512);
    rq_acts_params p = rq_acts_defaults();
    p.n_ctx = 512;
    if (rq_tokenizer_adds_bos(m->tok)) p.bos_id = rq_tokenizer_bos(m->tok);
    rq_acts *a = NULL;
    double t0 = rq_time();
    REQUIRE(rq_acts_collect(m, tok, 512, &p, &a) == 0);
    printf("  SmolLM2-135M, wiki.test.raw, 512 tokens, ctx 512, BOS %d, %.1fs\n", p.bos_id, rq_time() - t0);
    printf("  %5s %10s %10s %9s %6s %5s %-12s %10s %7s\n", "layer", "max|x|", "median", "ratio", "pos", "ch", "token",
           "value", "massive");
    for (int l = 0; l < a->n_layer; l++) {
        const rq_acts_stats *s = rq_acts_get(a, l, RQ_ACTS_RESID);
        const rq_acts_entry *e = &s->top[0];
        char tb[32] = "";
        int n = rq_token_to_bytes(m->tok, e->token, tb, sizeof tb - 1);
        tb[n < 0 ? 0 : n < (int)sizeof tb - 1 ? n : (int)sizeof tb - 1] = 0;
        for (char *c = tb; *c; c++)
            if ((unsigned char)*c < 0x20) *c = '.';
        printf("  %5d %10.4g %10.4g %9.4g %6lld %5d %-12s %10.4g %7lld\n", l, (double)s->max_abs, s->median_abs,
               s->ratio, (long long)e->pos, e->channel, tb, (double)e->value, (long long)s->n_massive);
    }
    for (int l = 0; l < a->n_layer; l++)
        for (int si = 0; si < RQ_ACTS_N_SITES; si++) {
            const rq_acts_stats *s = rq_acts_get(a, l, (rq_acts_site)si);
            CHECK(s->n_values == 512LL * s->width && s->n_nonfinite == 0 && s->n_top == RQ_ACTS_TOPK);
            CHECK(fabsf(s->top[0].value) == s->max_abs && s->ratio >= 1);
            float chmx = 0;
            for (int c = 0; c < s->width; c++)
                chmx = fmaxf(chmx, s->ch_max[c]);
            CHECK(chmx == s->max_abs);
            for (int k = 0; k < s->n_top; k++) {
                CHECK(fabsf(s->top[k].value) <= s->max_abs);
                CHECK(s->ch_max[s->top[k].channel] >= fabsf(s->top[k].value));
            }
        }
    free(tok);
    rq_acts_free(a);
    rq_model_free(m);
}

int main(void) {
    rq_set_threads(2);
    RUN(test_planted_massive);
    RUN(test_against_direct);
    RUN(test_bos_per_window);
    RUN(test_refusals);
    RUN(test_json);
    RUN(test_smollm2_wikitext);
    TEST_EXIT();
}
