/* acts.c - massive-activation statistics: the text runs window by window, block by
 * block, and each (layer, site) keeps its max, top-K, channel maxima, a log
 * histogram for the median and a count of Sun et al.'s massive entries. */
#include "acts.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jsonw.h"
#include "tokenizer.h"
#include "util.h"

/* |x| histogram: bin 0 holds |x| < 2^-64 (zero included), then 64 bins per octave
 * up to 2^64 (the top 6 mantissa bits), then one bin for |x| >= 2^64. */
#define H_EMIN 63 /* biased exponent of 2^-64 */
#define H_OCT 128
#define H_SUB 64
#define H_BINS (H_OCT * H_SUB + 2)

static const char *const SITE_NAMES[RQ_ACTS_N_SITES] = {"attn_in", "o_in", "ffn_in", "down_in", "resid"};

const char *rq_acts_site_name(rq_acts_site s) { return s >= 0 && s < RQ_ACTS_N_SITES ? SITE_NAMES[s] : "?"; }

rq_acts_params rq_acts_defaults(void) {
    return (rq_acts_params){.n_ctx = 2048, .abs_thr = 100.0f, .ratio_thr = 1000.0f, .bos_id = -1};
}

/* u: the bits of a finite |x| */
static int hist_bin(uint32_t u) {
    int e = (int)(u >> 23);
    if (e < H_EMIN) return 0;
    if (e >= H_EMIN + H_OCT) return H_BINS - 1;
    return 1 + ((e - H_EMIN) << 6) + (int)((u >> 17) & (H_SUB - 1));
}

/* The value at (real) rank r of the histogram's N values, linear inside its bin. */
static double hist_median(const uint64_t *h, int64_t n) {
    if (n <= 0) return 0;
    double r = (double)(n - 1) / 2;
    uint64_t below = 0;
    for (int b = 0; b < H_BINS; b++) {
        if (!h[b] || (double)(below + h[b]) <= floor(r)) {
            below += h[b];
            continue;
        }
        if (b == H_BINS - 1) return ldexp(1.0, 64);
        double lo = 0, hi = ldexp(1.0, -64);
        if (b > 0) {
            uint32_t j = (uint32_t)(b - 1), lb = ((uint32_t)(H_EMIN + (j >> 6)) << 23) | ((j & (H_SUB - 1)) << 17);
            lo = rq_f32_from_bits(lb);
            hi = rq_f32_from_bits(lb + (1u << 17));
        }
        return lo + (hi - lo) * (r - (double)below + 0.5) / (double)h[b];
    }
    return 0; /* not reached: the counts sum to n */
}

/* k-th smallest of a[0..n) (Hoare partition, median-of-three pivot); on return
 * a[k+1..n) >= a[k]. */
static float select_kth(float *a, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (hi > lo) {
        int64_t mid = lo + (hi - lo) / 2;
        float x = a[lo], y = a[mid], z = a[hi];
        float piv = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < piv)
                i++;
            while (a[j] > piv)
                j--;
            if (i <= j) {
                float t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return a[k];
    }
    return a[k];
}

/* Exact median of a[0..n) (reorders a). */
static double exact_median(float *a, int64_t n) {
    int64_t k = (n - 1) / 2;
    double m = select_kth(a, n, k);
    if (n % 2) return m;
    float up = a[k + 1];
    for (int64_t i = k + 2; i < n; i++)
        up = a[i] < up ? a[i] : up;
    return (m + up) / 2;
}

typedef struct {
    rq_acts *a;
    uint64_t *hist;      /* [n_layer][RQ_ACTS_N_SITES][H_BINS] */
    float *sel;          /* [window, widest site] scratch for the window median */
    const int32_t *wtok; /* the window's tokens as the model saw them */
    int64_t wstart;      /* the window's first position in the token array */
} collector;

static void site_add(collector *col, int layer, rq_acts_site site, const float *x, int n, int cols) {
    rq_acts *a = col->a;
    rq_acts_stats *s = &a->stats[(size_t)layer * RQ_ACTS_N_SITES + site];
    uint64_t *h = col->hist + ((size_t)layer * RQ_ACTS_N_SITES + site) * H_BINS;
    float wmax = 0, kmin = s->n_top == RQ_ACTS_TOPK ? fabsf(s->top[RQ_ACTS_TOPK - 1].value) : -1.0f;
    int64_t nfin = 0;
    for (int t = 0; t < n; t++) {
        const float *xt = x + (size_t)t * cols;
        double ss = 0;
        for (int c = 0; c < cols; c++) {
            uint32_t u = rq_f32_bits(xt[c]) & 0x7fffffffu;
            if (u >= 0x7f800000u) {
                s->n_nonfinite++;
                continue;
            }
            float v = rq_f32_from_bits(u);
            ss += (double)v * v;
            h[hist_bin(u)]++;
            col->sel[nfin++] = v;
            if (v > s->ch_max[c]) s->ch_max[c] = v;
            if (v > wmax) wmax = v;
            if (v <= kmin) continue;
            /* into the sorted top-K; ties keep the earlier entry */
            int j = s->n_top < RQ_ACTS_TOPK ? s->n_top++ : RQ_ACTS_TOPK - 1;
            while (j > 0 && fabsf(s->top[j - 1].value) < v) {
                s->top[j] = s->top[j - 1];
                j--;
            }
            s->top[j] = (rq_acts_entry){col->wstart + t, t, col->wtok[t], c, xt[c]};
            if (s->n_top == RQ_ACTS_TOPK) kmin = fabsf(s->top[RQ_ACTS_TOPK - 1].value);
        }
        s->sumsq += ss;
        if (t == 0) s->sumsq_first += ss;
    }
    s->n_values += nfin;
    if (wmax > s->max_abs) s->max_abs = wmax;
    /* massive needs |x| > abs_thr, so the window median is needed only past it */
    if (nfin == 0 || !(wmax > a->p.abs_thr)) return;
    double thr = fmax(a->p.abs_thr, a->p.ratio_thr * exact_median(col->sel, nfin));
    for (int t = 0; t < n; t++)
        for (int c = 0; c < cols; c++) {
            float v = fabsf(x[(size_t)t * cols + c]);
            if (isfinite(v) && v > thr) {
                s->n_massive++;
                s->ch_massive[c]++;
            }
        }
}

static void hook(void *ctx, int layer, rq_hook_point p, const float *x, int n, int cols) {
    site_add(ctx, layer, (rq_acts_site)p, x, n, cols);
}

void rq_acts_free(rq_acts *a) {
    if (!a) return;
    if (a->stats)
        for (int i = 0; i < a->n_layer * RQ_ACTS_N_SITES; i++) {
            free(a->stats[i].ch_max);
            free(a->stats[i].ch_massive);
        }
    free(a->stats);
    free(a->model);
    free(a);
}

static int check_args(const rq_model *m, const int32_t *tokens, int64_t n_tokens, const rq_acts_params *p) {
    if (!p) return rq_fail("activation statistics: no parameters given; start from rq_acts_defaults()");
    if (!tokens || n_tokens < 1)
        return rq_fail("activation statistics: the token list is empty; give a text that tokenizes to at least "
                       "one token");
    if (p->n_ctx < 1)
        return rq_fail("activation statistics: window length n_ctx = %d; it must be at least 1 token", p->n_ctx);
    if (!(p->abs_thr >= 0) || !isfinite(p->abs_thr) || !(p->ratio_thr >= 0) || !isfinite(p->ratio_thr))
        return rq_fail("activation statistics: massive thresholds must be finite and >= 0 (got absolute %g, ratio "
                       "%g)",
                       (double)p->abs_thr, (double)p->ratio_thr);
    int nv = m->cfg.n_vocab;
    if (p->bos_id >= nv)
        return rq_fail("activation statistics: BOS id %d is outside the vocabulary (%d)", p->bos_id, nv);
    for (int64_t i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= nv)
            return rq_fail("activation statistics: token id %d at position %lld is outside the vocabulary (%d); "
                           "tokenize the text with this model's tokenizer",
                           tokens[i], (long long)i, nv);
    return 0;
}

int rq_acts_collect(const rq_model *m, const int32_t *tokens, int64_t n_tokens, const rq_acts_params *p,
                    rq_acts **out) {
    *out = NULL;
    if (check_args(m, tokens, n_tokens, p)) return -1;
    const rq_config *cfg = &m->cfg;
    int E = cfg->n_embd, L = cfg->n_layer;
    int widths[RQ_ACTS_N_SITES] = {E, cfg->n_head * cfg->head_dim, E, cfg->n_ff, E}, wmax = 0;
    int win = n_tokens < p->n_ctx ? (int)n_tokens : p->n_ctx;
    /* the model's own scratch: its activation quantization and online rotations apply */
    rq_fwd *f = rq_fwd_new(m, win);
    if (!f) return rq_fail_ctx("activation statistics");
    rq_acts *a = rq_calloc(1, sizeof *a);
    a->p = *p;
    a->n_layer = L;
    a->n_tokens = n_tokens;
    a->n_windows = (n_tokens + p->n_ctx - 1) / p->n_ctx;
    a->model = rq_strdup(m->name ? m->name : "");
    a->stats = rq_calloc((size_t)L * RQ_ACTS_N_SITES, sizeof *a->stats);
    for (int l = 0; l < L; l++)
        for (int s = 0; s < RQ_ACTS_N_SITES; s++) {
            rq_acts_stats *st = &a->stats[(size_t)l * RQ_ACTS_N_SITES + s];
            st->width = widths[s];
            st->ch_max = rq_calloc((size_t)widths[s], sizeof(float));
            st->ch_massive = rq_calloc((size_t)widths[s], sizeof(int64_t));
            if (widths[s] > wmax) wmax = widths[s];
        }
    float *x = rq_malloc((size_t)win * E * sizeof(float));
    int32_t *wtok = rq_malloc((size_t)win * sizeof(int32_t));
    collector col = {a, rq_calloc((size_t)L * RQ_ACTS_N_SITES * H_BINS, sizeof(uint64_t)),
                     rq_malloc((size_t)win * wmax * sizeof(float)), wtok, 0};
    double t0 = rq_time();
    for (int64_t w = 0; w < a->n_windows; w++) {
        col.wstart = w * p->n_ctx;
        int n = n_tokens - col.wstart < p->n_ctx ? (int)(n_tokens - col.wstart) : p->n_ctx;
        memcpy(wtok, tokens + col.wstart, (size_t)n * sizeof(int32_t));
        if (p->bos_id >= 0) wtok[0] = p->bos_id;
        for (int t = 0; t < n; t++)
            memcpy(x + (size_t)t * E, m->tok_embd + (size_t)wtok[t] * E, (size_t)E * sizeof(float));
        for (int l = 0; l < L; l++) {
            rq_fwd_layer(f, &m->layers[l], l, x, n, hook, &col);
            site_add(&col, l, RQ_ACTS_RESID, x, n, E);
            if (p->progress) rq_progress("activations", w * L + l + 1, a->n_windows * L, t0);
        }
    }
    for (size_t i = 0; i < (size_t)L * RQ_ACTS_N_SITES; i++) {
        rq_acts_stats *s = &a->stats[i];
        s->median_abs = hist_median(col.hist + i * H_BINS, s->n_values);
        s->ratio = s->median_abs > 0 ? s->max_abs / s->median_abs : s->max_abs > 0 ? INFINITY : 0;
    }
    free(col.hist);
    free(col.sel);
    free(wtok);
    free(x);
    rq_fwd_free(f);
    *out = a;
    return 0;
}

const rq_acts_stats *rq_acts_get(const rq_acts *a, int layer, rq_acts_site s) {
    if (!a || layer < 0 || layer >= a->n_layer || s < 0 || s >= RQ_ACTS_N_SITES) return NULL;
    return &a->stats[(size_t)layer * RQ_ACTS_N_SITES + s];
}

double rq_acts_first_token_share(const rq_acts_stats *s) { return s->sumsq > 0 ? s->sumsq_first / s->sumsq : 0.0; }

const float *rq_acts_channel_max(const rq_acts *a, int layer, rq_acts_site s, int *width) {
    const rq_acts_stats *st = rq_acts_get(a, layer, s);
    if (width) *width = st ? st->width : 0;
    return st ? st->ch_max : NULL;
}

/* ---- JSON ---------------------------------------------------------------- */

static void json_num(FILE *f, double v) {
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
}

/* A token's bytes as a JSON string (a token can hold part of a UTF-8 character:
 * rq_json_str writes such bytes as the text \xNN); null when the id has none. */
static void json_token(FILE *f, const struct rq_tokenizer *tok, int32_t id) {
    char buf[256];
    int n = rq_token_to_bytes(tok, id, buf, sizeof buf);
    if (n < 0) {
        fputs("null", f);
        return;
    }
    if ((size_t)n <= sizeof buf) {
        rq_json_str(f, buf, (size_t)n);
        return;
    }
    char *big = rq_malloc((size_t)n);
    rq_token_to_bytes(tok, id, big, (size_t)n);
    rq_json_str(f, big, (size_t)n);
    free(big);
}

static void json_site(FILE *f, const rq_acts_stats *s, const struct rq_tokenizer *tok) {
    fprintf(f, "{\"width\": %d, \"n_values\": %lld, \"n_nonfinite\": %lld, \"max_abs\": ", s->width,
            (long long)s->n_values, (long long)s->n_nonfinite);
    json_num(f, s->max_abs);
    fputs(", \"median_abs\": ", f);
    json_num(f, s->median_abs);
    fputs(", \"ratio\": ", f);
    json_num(f, s->ratio);
    fprintf(f, ", \"n_massive\": %lld, \"first_token_share\": ", (long long)s->n_massive);
    json_num(f, rq_acts_first_token_share(s));
    fprintf(f, ", \"top\": [");
    for (int k = 0; k < s->n_top; k++) {
        const rq_acts_entry *e = &s->top[k];
        fprintf(f, "%s{\"pos\": %lld, \"win_pos\": %d, \"token\": %d, ", k ? ", " : "", (long long)e->pos, e->win_pos,
                e->token);
        if (tok) {
            fputs("\"text\": ", f);
            json_token(f, tok, e->token);
            fputs(", ", f);
        }
        fprintf(f, "\"channel\": %d, \"value\": ", e->channel);
        json_num(f, e->value);
        fputc('}', f);
    }
    fputs("],\n      \"ch_max\": [", f);
    for (int c = 0; c < s->width; c++) {
        if (c) fputc(',', f);
        json_num(f, s->ch_max[c]);
    }
    fputs("],\n      \"ch_massive\": [", f);
    for (int c = 0; c < s->width; c++)
        fprintf(f, "%s%lld", c ? "," : "", (long long)s->ch_massive[c]);
    fputs("]}", f);
}

int rq_acts_write_json(const rq_acts *a, const struct rq_tokenizer *tok, const char *text, FILE *f) {
    fputs("{\"kind\": \"repliq.acts\", \"version\": 1, \"model\": ", f);
    rq_json_str(f, a->model, strlen(a->model));
    if (text) {
        fputs(", \"text\": ", f);
        rq_json_str(f, text, strlen(text));
    }
    fprintf(f, ", \"n_tokens\": %lld, \"n_ctx\": %d, \"n_windows\": %lld, \"bos_id\": %d, \"abs_thr\": ",
            (long long)a->n_tokens, a->p.n_ctx, (long long)a->n_windows, a->p.bos_id);
    json_num(f, a->p.abs_thr);
    fputs(", \"ratio_thr\": ", f);
    json_num(f, a->p.ratio_thr);
    fprintf(f,
            ",\n \"median\": \"histogram estimate, %d bins per octave, within 1/%d relative\", \"massive\": "
            "\"|x| > abs_thr and |x| > ratio_thr x the exact median |x| of the site in the window\", "
            "\"topk\": %d, \"n_layer\": %d,\n \"layers\": [",
            H_SUB, H_SUB, RQ_ACTS_TOPK, a->n_layer);
    for (int l = 0; l < a->n_layer; l++) {
        fprintf(f, "%s\n  {\"layer\": %d", l ? "," : "", l);
        for (int s = 0; s < RQ_ACTS_N_SITES; s++) {
            fprintf(f, ",\n    \"%s\": ", SITE_NAMES[s]);
            json_site(f, rq_acts_get(a, l, (rq_acts_site)s), tok);
        }
        fputc('}', f);
    }
    fputs("]}\n", f);
    if (ferror(f)) return rq_fail("activation statistics: writing the JSON failed: %s", strerror(errno));
    return 0;
}

int rq_acts_save_json(const rq_acts *a, const struct rq_tokenizer *tok, const char *text, const char *path) {
    rq_tmpfile t;
    if (rq_tmpfile_open(&t, path)) return rq_fail_ctx("saving the activation statistics");
    int rc = rq_acts_write_json(a, tok, text, t.f);
    if (rq_tmpfile_close(&t, rc == 0)) return rq_fail_ctx("saving the activation statistics to %s", path);
    return 0;
}
