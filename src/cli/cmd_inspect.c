/* cmd_inspect.c - repliq inspect: looks inside a model on a text. "acts" prints
 * the massive-activation statistics of acts.h per layer; "kv" what the keys hold
 * and what a simulated low-bit K cache loses, with and without the K bias;
 * "layers" a quantized file's layer objective on any text (layererr.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actq.h"
#include "acts.h"
#include "calib.h"
#include "cli.h"
#include "forward.h"
#include "gguf.h"
#include "layererr.h"
#include "model.h"
#include "paths.h"
#include "ppl.h"
#include "tokenizer.h"
#include "util.h"

static int inspect_acts(int argc, char **argv);
static int inspect_kv(int argc, char **argv);
static int inspect_layers(int argc, char **argv);

int cmd_inspect(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "acts")) return inspect_acts(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "kv")) return inspect_kv(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "layers")) return inspect_layers(argc - 1, argv + 1);
    if (argc >= 2) fprintf(stderr, "repliq inspect: unknown tool '%s'\n", argv[1]);
    fprintf(stderr,
            "usage: repliq inspect acts -m MODEL [-f TEXT] [-c CTX] [--chunks N] [--json OUT.json] [-t N]\n"
            "                           [--massive-abs A] [--massive-ratio R]\n"
            "  acts   massive activations: per layer, max |x| of the residual stream and the linear\n"
            "         inputs, its ratio to the median, where it is, and the channels that carry it\n"
            "       repliq inspect kv -m MODEL [-f TEXT] [-c CTX] [--chunks N] [--bits B] [-t N]\n"
            "  kv     per layer: the K bias, the keys' largest values with and without it, and the\n"
            "         RMS error of B-bit keys (per head per token) with and without it\n"
            "       repliq inspect layers -m QUANT.gguf --ref REF.gguf [-f TEXT | --calib] [-c CTX] [--chunks N]\n"
            "                             [-n N] [--feed quant|ref] [--json OUT.jsonl] [-t N]\n"
            "  layers per linear layer, ||(W'-W)X||^2 / ||WX||^2 on a text's inputs X (or on the\n"
            "         calibration windows the file was fitted on, --calib)\n");
    return 2;
}

/* A token's text for the table: quoted, control bytes escaped, at most ~14 bytes. */
static void token_label(const rq_tokenizer *tok, int32_t id, char *out, size_t cap) {
    char b[64];
    int n = tok ? rq_token_to_bytes(tok, id, b, sizeof b) : -1;
    if (n < 0) {
        snprintf(out, cap, "#%d", id);
        return;
    }
    size_t len = (size_t)n < sizeof b ? (size_t)n : sizeof b, o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < len && o + 6 < cap && o < 16; i++) {
        unsigned char c = (unsigned char)b[i];
        if (c == '\n')
            o += (size_t)snprintf(out + o, cap - o, "\\n");
        else if (c < 0x20 || c == 0x7f)
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    out[o++] = '"';
    out[o] = 0;
}

static void print_table(const rq_acts *a, const rq_tokenizer *tok) {
    printf("\nresidual stream (output of each block)\n");
    printf("%5s %11s %11s %9s  %8s %5s  %-18s %5s %11s %7s\n", "layer", "max|x|", "median", "ratio", "top:pos", "win",
           "token", "ch", "value", "massive");
    for (int l = 0; l < a->n_layer; l++) {
        const rq_acts_stats *s = rq_acts_get(a, l, RQ_ACTS_RESID);
        char lab[64] = "-";
        const rq_acts_entry *e = s->n_top ? &s->top[0] : NULL;
        if (e) token_label(tok, e->token, lab, sizeof lab);
        printf("%5d %11.4g %11.4g %9.4g  %8lld %5d  %-18s %5d %11.4g %7lld\n", l, (double)s->max_abs, s->median_abs,
               s->ratio, e ? (long long)e->pos : -1LL, e ? e->win_pos : -1, lab, e ? e->channel : -1,
               e ? (double)e->value : 0.0, (long long)s->n_massive);
    }
    printf("\nlinear-layer inputs: max|x| / ratio to the median / channel of the max / massive entries\n%5s", "layer");
    for (int s = 0; s < RQ_ACTS_RESID; s++)
        printf("  %-28s", rq_acts_site_name((rq_acts_site)s));
    printf("\n");
    for (int l = 0; l < a->n_layer; l++) {
        printf("%5d", l);
        for (int s = 0; s < RQ_ACTS_RESID; s++) {
            const rq_acts_stats *st = rq_acts_get(a, l, (rq_acts_site)s);
            char cell[64];
            snprintf(cell, sizeof cell, "%.4g / %.3g / %d / %lld", (double)st->max_abs, st->ratio,
                     st->n_top ? st->top[0].channel : -1, (long long)st->n_massive);
            printf("  %-28s", cell);
        }
        printf("\n");
    }
}

/* Per layer and linear input, the share of sum x^2 (tr(X X^T), the trace of the
 * Hessian GPTQ builds) that the windows' first tokens carry. */
static void print_first_token_share(const rq_acts *a) {
    printf("\nshare of sum x^2 (a GPTQ Hessian's trace) carried by the windows' first tokens (%lld of %lld tokens)\n",
           (long long)a->n_windows, (long long)a->n_tokens);
    printf("layer  attn_in   o_in      ffn_in    down_in\n");
    for (int l = 0; l < a->n_layer; l++) {
        printf("%5d", l);
        for (int st = 0; st < RQ_ACTS_RESID; st++) {
            printf("  %8.4f", rq_acts_first_token_share(rq_acts_get(a, l, (rq_acts_site)st)));
        }
        printf("\n");
    }
}

/* The residual channels that carry massive entries: in how many layers, first and
 * last of them, and their largest |x|, most layers first. */
static void print_massive_channels(const rq_acts *a) {
    int E = rq_acts_get(a, 0, RQ_ACTS_RESID)->width, n_ch = 0;
    int *layers = rq_calloc((size_t)E, sizeof *layers), *first = rq_calloc((size_t)E, sizeof *first);
    int *last = rq_calloc((size_t)E, sizeof *last), *order = rq_calloc((size_t)E, sizeof *order);
    float *mx = rq_calloc((size_t)E, sizeof *mx);
    for (int l = 0; l < a->n_layer; l++) {
        const rq_acts_stats *s = rq_acts_get(a, l, RQ_ACTS_RESID);
        for (int c = 0; c < E; c++) {
            if (!s->ch_massive[c]) continue;
            if (!layers[c]++) first[c] = l;
            last[c] = l;
            if (s->ch_max[c] > mx[c]) mx[c] = s->ch_max[c];
        }
    }
    for (int c = 0; c < E; c++)
        if (layers[c]) {
            int j = n_ch++;
            while (j > 0 && layers[order[j - 1]] < layers[c]) {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = c;
        }
    printf("\nmassive channels of the residual stream (|x| > %g and > %g x the window median):", (double)a->p.abs_thr,
           (double)a->p.ratio_thr);
    if (!n_ch) printf(" none");
    for (int i = 0; i < n_ch && i < 16; i++) {
        int c = order[i];
        printf("%s ch %d (%d of %d layers, %d-%d, max %.4g)", i ? "," : "", c, layers[c], a->n_layer, first[c], last[c],
               (double)mx[c]);
    }
    if (n_ch > 16) printf(", and %d more", n_ch - 16);
    printf("\n");
    free(layers);
    free(first);
    free(last);
    free(order);
    free(mx);
}

static float cli_float(const char *opt, const char *v) {
    char *end;
    float x = strtof(v, &end);
    if (*end || end == v || !(x >= 0)) {
        fprintf(stderr, "repliq inspect acts: %s needs a number >= 0, got '%s'\n", opt, v);
        exit(2);
    }
    return x;
}

/* Load the model and tokenize the text as llama-perplexity reads it; on failure
 * nothing is left allocated and rq_error() says why. */
static int load_model_text(const char *cmd, const char *mpath, const char *tpath, int threads, rq_model **m,
                           int32_t **tok, size_t *n_tok) {
    char *buf;
    size_t len;
    if (rq_read_file(tpath, &buf, &len)) return -1;
    rq_set_threads(threads);
    double t0 = rq_time();
    if (rq_model_load(mpath, m)) {
        free(buf);
        return -1;
    }
    fprintf(stderr, "repliq %s: loaded %s (%s, %lld params) in %.1fs\n", cmd, mpath, (*m)->cfg.arch->name,
            (long long)(*m)->n_params, rq_time() - t0);
    rq_ppl_params pp = {.protocol = RQ_PPL_LLAMACPP};
    int rc = rq_ppl_tokens(*m, &pp, buf, len, tok, n_tok);
    free(buf);
    if (rc) {
        rq_fail_ctx("%s", tpath);
        rq_model_free(*m);
        return -1;
    }
    return 0;
}

/* Whether path.tmp (what the JSON is written through) can be created: found out
 * before a run, not after it; says why on stderr when not. */
static bool writable(const char *cmd, const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "repliq %s: cannot create %s: %s; check that the folder exists and is writable\n", cmd, tmp,
                strerror(errno));
        return false;
    }
    fclose(f);
    unlink(tmp);
    return true;
}

/* The options every inspect tool takes. */
typedef struct {
    const char *model, *text;
    int n_ctx, chunks, threads;
} inspect_opts;

/* Reads argv[*i] (and its value) when it is -m, -f, -c (at least ctx_min), --chunks
 * or -t, and returns 1; 0 when it is none of them. */
static int common_opt(const char *cmd, int argc, char **argv, int *i, int ctx_min, inspect_opts *o) {
    const char *a = argv[*i];
    if (!strcmp(a, "-m"))
        o->model = cli_val(cmd, argc, argv, i);
    else if (!strcmp(a, "-f"))
        o->text = cli_val(cmd, argc, argv, i);
    else if (!strcmp(a, "-c"))
        o->n_ctx = cli_int(cmd, a, cli_val(cmd, argc, argv, i), ctx_min);
    else if (!strcmp(a, "--chunks"))
        o->chunks = cli_int(cmd, a, cli_val(cmd, argc, argv, i), 1);
    else if (!strcmp(a, "-t"))
        o->threads = cli_int(cmd, a, cli_val(cmd, argc, argv, i), 1);
    else
        return 0;
    return 1;
}

static int inspect_acts(int argc, char **argv) {
    const char *cmd = "inspect acts", *json = NULL;
    rq_acts_params p = rq_acts_defaults();
    inspect_opts op = {.text = "wiki.test.raw", .n_ctx = p.n_ctx, .chunks = 2, .threads = 2};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (common_opt(cmd, argc, argv, &i, 1, &op)) continue;
        if (!strcmp(o, "--json"))
            json = cli_val(cmd, argc, argv, &i);
        else if (!strcmp(o, "--massive-abs"))
            p.abs_thr = cli_float(o, cli_val(cmd, argc, argv, &i));
        else if (!strcmp(o, "--massive-ratio"))
            p.ratio_thr = cli_float(o, cli_val(cmd, argc, argv, &i));
        else {
            fprintf(stderr, "repliq %s: unknown option '%s'\n", cmd, o);
            return 2;
        }
    }
    const char *model = op.model, *text = op.text;
    int chunks = op.chunks, threads = op.threads;
    p.n_ctx = op.n_ctx;
    if (!model)
        return cli_die(cmd, "usage: repliq inspect acts -m MODEL [-f TEXT] [-c CTX] [--chunks N] [--json OUT.json] "
                            "[-t N] [--massive-abs A] [--massive-ratio R]");
    char mpath[4096], tpath[4096];
    if (rq_resolve_model(model, mpath, sizeof mpath) || rq_resolve_data(text, tpath, sizeof tpath))
        return cli_die(cmd, rq_error());
    if (json && !writable(cmd, json)) return 1;
    rq_model *m;
    int32_t *tok;
    size_t n_tok;
    if (load_model_text(cmd, mpath, tpath, threads, &m, &tok, &n_tok)) return cli_die(cmd, rq_error());
    double t0;
    int rc;
    if (rq_tokenizer_adds_bos(m->tok)) p.bos_id = rq_tokenizer_bos(m->tok);
    int64_t n = (int64_t)n_tok, want = (int64_t)chunks * p.n_ctx;
    if (n > want) n = want;
    p.progress = true;
    rq_acts *a;
    t0 = rq_time();
    rc = rq_acts_collect(m, tok, n, &p, &a);
    free(tok);
    if (rc || (json && rq_acts_save_json(a, m->tok, tpath, json))) {
        rq_acts_free(a);
        rq_model_free(m);
        return cli_die(cmd, rq_error());
    }
    printf("model %s (%s, %d layers)\ntext %s: %lld of %zu tokens, %lld window%s of up to %d%s, %.1fs\n", mpath,
           m->cfg.arch->name, m->cfg.n_layer, tpath, (long long)n, n_tok, (long long)a->n_windows,
           a->n_windows == 1 ? "" : "s", p.n_ctx, p.bos_id >= 0 ? ", BOS over each window's first token" : "",
           rq_time() - t0);
    if (n < want) printf("note: the text has fewer tokens than %d chunks of %d; all of it was used\n", chunks, p.n_ctx);
    printf("median |x|: histogram estimate (within 1.6%%); massive: |x| > %g and > %g x the exact median of the "
           "same site in the same window\n",
           (double)p.abs_thr, (double)p.ratio_thr);
    print_table(a, m->tok);
    print_massive_channels(a);
    print_first_token_share(a);
    if (json) printf("wrote %s\n", json);
    rq_acts_free(a);
    rq_model_free(m);
    return 0;
}

/* Per layer, over every key of every window (after RoPE and R3, before the
 * simulated cache): what the K bias contributes and what B-bit keys lose. */
typedef struct {
    int bits, D, hd, nh;
    float *buf;                                    /* [n_ctx, D] scratch */
    double *sum_k2, *sum_r2, *err_plain, *err_unb; /* per layer */
    float *max_k, *max_r;
    int *ch_k;
    int64_t n;
} kv_stats;

static void kv_hook(void *ctx, int layer, const float *k, const float *kb, int n) {
    kv_stats *st = ctx;
    int64_t nD = (int64_t)n * st->D;
    double k2 = 0, r2 = 0, ep = 0, eu = 0;
    for (int64_t i = 0; i < nD; i++) {
        float r = k[i] - (kb ? kb[i] : 0.0f);
        k2 += (double)k[i] * k[i];
        r2 += (double)r * r;
        if (fabsf(k[i]) > st->max_k[layer]) st->max_k[layer] = fabsf(k[i]), st->ch_k[layer] = (int)(i % st->D);
        st->max_r[layer] = fmaxf(st->max_r[layer], fabsf(r));
    }
    memcpy(st->buf, k, (size_t)nD * sizeof(float));
    rq_kvq_tokens(st->buf, n, st->nh, st->hd, st->bits);
    for (int64_t i = 0; i < nD; i++)
        ep += ((double)st->buf[i] - k[i]) * ((double)st->buf[i] - k[i]);
    memcpy(st->buf, k, (size_t)nD * sizeof(float));
    rq_kvq_keys(st->buf, kb, n, st->nh, st->hd, st->bits);
    for (int64_t i = 0; i < nD; i++)
        eu += ((double)st->buf[i] - k[i]) * ((double)st->buf[i] - k[i]);
    st->sum_k2[layer] += k2;
    st->sum_r2[layer] += r2;
    st->err_plain[layer] += ep;
    st->err_unb[layer] += eu;
    if (layer == 0) st->n += n;
}

static int inspect_kv(int argc, char **argv) {
    const char *cmd = "inspect kv";
    inspect_opts op = {.text = "wiki.test.raw", .n_ctx = 512, .chunks = 1, .threads = 2};
    int bits = 4;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (common_opt(cmd, argc, argv, &i, 2, &op)) continue;
        if (!strcmp(o, "--bits"))
            bits = cli_int(cmd, o, cli_val(cmd, argc, argv, &i), 2);
        else {
            fprintf(stderr, "repliq %s: unknown option '%s'\n", cmd, o);
            return 2;
        }
    }
    const char *model = op.model, *text = op.text;
    int chunks = op.chunks, threads = op.threads, n_ctx = op.n_ctx;
    if (!model)
        return cli_die(cmd, "usage: repliq inspect kv -m MODEL [-f TEXT] [-c CTX] [--chunks N] [--bits B] [-t N]");
    if (bits > 8) return cli_die(cmd, "--bits must be 2..8 (integer keys)");
    char mpath[4096], tpath[4096];
    if (rq_resolve_model(model, mpath, sizeof mpath) || rq_resolve_data(text, tpath, sizeof tpath))
        return cli_die(cmd, rq_error());
    rq_model *m;
    int32_t *tok;
    size_t n_tok;
    if (load_model_text(cmd, mpath, tpath, threads, &m, &tok, &n_tok)) return cli_die(cmd, rq_error());
    int64_t nw = (int64_t)(n_tok / (size_t)n_ctx);
    if (nw > chunks) nw = chunks;
    if (nw < 1) { /* before the scratch of n_ctx^2 scores is allocated */
        free(tok);
        rq_model_free(m);
        fprintf(stderr, "repliq %s: %s holds %zu tokens, fewer than one window of %d; give a smaller -c\n", cmd, tpath,
                n_tok, n_ctx);
        return 1;
    }
    int rc = 0;
    const rq_config *c = &m->cfg;
    int L = c->n_layer;
    kv_stats st = {.bits = bits, .hd = c->head_dim, .nh = c->n_head_kv, .D = c->n_head_kv * c->head_dim};
    st.buf = rq_malloc((size_t)n_ctx * st.D * sizeof(float));
    st.sum_k2 = rq_calloc((size_t)L, sizeof(double));
    st.sum_r2 = rq_calloc((size_t)L, sizeof(double));
    st.err_plain = rq_calloc((size_t)L, sizeof(double));
    st.err_unb = rq_calloc((size_t)L, sizeof(double));
    st.max_k = rq_calloc((size_t)L, sizeof(float));
    st.max_r = rq_calloc((size_t)L, sizeof(float));
    st.ch_k = rq_calloc((size_t)L, sizeof(int));
    rq_fwd *f = rq_fwd_new(m, n_ctx);
    if (!f) {
        rc = cli_die(cmd, rq_error());
        goto out;
    }
    rq_actq none = {.a_clip = 1.0f}; /* the keys as the model makes them, in f32 */
    rq_fwd_set_actq(f, &none);
    rq_fwd_set_kv_hook(f, kv_hook, &st);
    int32_t *w = rq_malloc((size_t)n_ctx * sizeof(int32_t));
    for (int64_t i = 0; i < nw; i++) {
        memcpy(w, tok + i * n_ctx, (size_t)n_ctx * sizeof(int32_t));
        if (rq_tokenizer_adds_bos(m->tok)) w[0] = rq_tokenizer_bos(m->tok);
        rq_fwd_hidden(f, w, n_ctx);
        fprintf(stderr, "repliq %s: window %lld/%lld\n", cmd, (long long)i + 1, (long long)nw);
    }
    free(w);
    printf("model %s (%s, %d layers, %d KV heads of %d)\ntext %s: %lld window%s of %d tokens%s; keys after "
           "RoPE%s, no activation quantization; %d-bit keys asymmetric per head per token\n",
           mpath, c->arch->name, L, c->n_head_kv, c->head_dim, tpath, (long long)nw, nw == 1 ? "" : "s", n_ctx,
           rq_tokenizer_adds_bos(m->tok) ? " (BOS over each window's first token)" : "",
           m->online.r3 != RQ_ROT_NONE ? " and R3" : "", bits);
    printf("| layer | max abs K bias (ch, before RoPE/R3) | max abs key (ch) | max abs key - bias | key RMS | key - "
           "bias RMS | "
           "%d-bit error RMS | same, bias left out |\n|---|---|---|---|---|---|---|---|\n",
           bits);
    double N = (double)st.n * st.D;
    for (int l = 0; l < L; l++) {
        const float *b = m->layers[l].k.b;
        float mb = 0;
        int cb = -1;
        for (int i = 0; b && i < st.D; i++)
            if (fabsf(b[i]) > mb) mb = fabsf(b[i]), cb = i;
        char bias[48];
        if (b)
            snprintf(bias, sizeof bias, "%.2f (%d)", mb, cb);
        else
            snprintf(bias, sizeof bias, "none");
        printf("| %d | %s | %.2f (%d) | %.2f | %.3f | %.3f | %.4f | %.4f |\n", l, bias, st.max_k[l], st.ch_k[l],
               st.max_r[l], sqrt(st.sum_k2[l] / N), sqrt(st.sum_r2[l] / N), sqrt(st.err_plain[l] / N),
               sqrt(st.err_unb[l] / N));
    }
out:
    rq_fwd_free(f);
    free(tok);
    free(st.buf);
    free(st.sum_k2);
    free(st.sum_r2);
    free(st.err_plain);
    free(st.err_unb);
    free(st.max_k);
    free(st.max_r);
    free(st.ch_k);
    rq_model_free(m);
    return rc;
}

/* The calibration windows recorded in a quantized file's metadata (repliq.calib.*),
 * read again from the same file (checked by its sha256); n > 0 takes the first n. */
static int recorded_calib(const rq_gguf *g, const rq_tokenizer *tok, int n, rq_calib *cal) {
    rq_str file, sha;
    int64_t seed, cn, len;
    if (rq_gguf_get_str(g, "repliq.calib.file", &file) || rq_gguf_get_str(g, "repliq.calib.sha256", &sha) ||
        rq_gguf_get_int(g, "repliq.calib.seed", &seed) || rq_gguf_get_int(g, "repliq.calib.n", &cn) ||
        rq_gguf_get_int(g, "repliq.calib.len", &len))
        return rq_fail("%s records no calibration windows (made without calibration, or not by repliq quantize); "
                       "give a text with -f instead of --calib",
                       g->path);
    if (n > cn) return rq_fail("-n %d: the file was fitted on %lld calibration windows", n, (long long)cn);
    char name[512], path[4096], want[65], got[65];
    snprintf(name, sizeof name, "%.*s", (int)(file.len < 500 ? file.len : 500), file.ptr);
    snprintf(want, sizeof want, "%.*s", (int)(sha.len < 64 ? sha.len : 64), sha.ptr);
    if (!strcmp(name, "(given as tokens)"))
        return rq_fail("%s was fitted on calibration tokens handed to the library, not on a file; give a text with "
                       "-f instead of --calib",
                       g->path);
    if (rq_resolve_data(name, path, sizeof path)) return rq_fail_ctx("the calibration file the fit read");
    if (rq_calib_load(path, tok, n > 0 ? n : (int)cn, (int)len, (uint64_t)seed, cal)) return -1;
    if (strcmp(cal->sha256, want)) {
        snprintf(got, sizeof got, "%s", cal->sha256);
        rq_calib_free(cal);
        return rq_fail("%s has sha256 %s, but the fit read a file with %s: not the same calibration text", path, got,
                       want);
    }
    return 0;
}

/* Up to chunks windows of n_ctx tokens of a text, tokenized as ppl reads it, with
 * the BOS over each window's first token when the tokenizer adds one. */
static int text_windows(const char *tpath, const rq_tokenizer *tok, int n_ctx, int chunks, int32_t **out, int *nw) {
    char *buf;
    size_t len, n_tok = 0;
    int32_t *all = NULL;
    if (rq_read_file(tpath, &buf, &len)) return -1;
    rq_ppl_params pp = {.protocol = RQ_PPL_LLAMACPP};
    int rc = rq_ppl_tokenize(tok, &pp, buf, len, &all, &n_tok);
    free(buf);
    if (rc) return rq_fail_ctx("%s", tpath);
    int64_t w = (int64_t)(n_tok / (size_t)n_ctx);
    if (w > chunks) w = chunks;
    if (w < 1) {
        free(all);
        return rq_fail("%s holds %zu tokens, fewer than one window of %d; give a smaller -c", tpath, n_tok, n_ctx);
    }
    for (int64_t i = 0; rq_tokenizer_adds_bos(tok) && i < w; i++)
        all[i * n_ctx] = rq_tokenizer_bos(tok);
    *out = all;
    *nw = (int)w;
    return 0;
}

static int inspect_layers(int argc, char **argv) {
    const char *cmd = "inspect layers", *ref = NULL, *json = NULL, *feed_s = "quant";
    inspect_opts op = {.text = "wiki.valid.raw", .n_ctx = 2048, .chunks = 8, .threads = 2};
    bool calib = false, text_given = false;
    int n = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-f")) text_given = true;
        if (common_opt(cmd, argc, argv, &i, 1, &op)) continue;
        if (!strcmp(o, "--ref"))
            ref = cli_val(cmd, argc, argv, &i);
        else if (!strcmp(o, "--calib"))
            calib = true;
        else if (!strcmp(o, "-n"))
            n = cli_int(cmd, o, cli_val(cmd, argc, argv, &i), 1);
        else if (!strcmp(o, "--feed"))
            feed_s = cli_val(cmd, argc, argv, &i);
        else if (!strcmp(o, "--json"))
            json = cli_val(cmd, argc, argv, &i);
        else {
            fprintf(stderr, "repliq %s: unknown option '%s'\n", cmd, o);
            return 2;
        }
    }
    if (!op.model || !ref)
        return cli_die(cmd, "usage: repliq inspect layers -m QUANT.gguf --ref REF.gguf [-f TEXT | --calib] [-c CTX] "
                            "[--chunks N] [-n N] [--feed quant|ref] [--json OUT.jsonl] [-t N]");
    if (calib && text_given) return cli_die(cmd, "-f and --calib both given: choose one source of inputs");
    if (n && !calib) return cli_die(cmd, "-n counts calibration windows; with a text, use --chunks");
    rq_lerr_feed feed;
    if (!strcmp(feed_s, "quant"))
        feed = RQ_LERR_FEED_QUANT;
    else if (!strcmp(feed_s, "ref"))
        feed = RQ_LERR_FEED_REF;
    else
        return cli_die(cmd, "--feed must be 'quant' (the quantized model's activations) or 'ref' (the reference's)");
    char qpath[4096], rpath[4096], tpath[4096] = "";
    if (rq_resolve_model(op.model, qpath, sizeof qpath) || rq_resolve_model(ref, rpath, sizeof rpath) ||
        (!calib && rq_resolve_data(op.text, tpath, sizeof tpath)))
        return cli_die(cmd, rq_error());
    rq_gguf *g;
    rq_tokenizer *tok = NULL;
    if (rq_gguf_open(qpath, &g)) return cli_die(cmd, rq_error());
    if (rq_tokenizer_from_gguf(g, &tok)) {
        rq_gguf_close(g);
        return cli_die(cmd, rq_error());
    }
    int32_t *tokens = NULL;
    int nw = 0, len = op.n_ctx, rc;
    rq_calib cal = {0};
    char src[4200];
    if (calib) {
        rc = recorded_calib(g, tok, n, &cal);
        if (!rc) {
            tokens = cal.tokens;
            nw = cal.n;
            len = cal.len;
            snprintf(src, sizeof src, "calibration windows of %s (seed %llu)", cal.path, (unsigned long long)cal.seed);
        }
    } else {
        rc = text_windows(tpath, tok, op.n_ctx, op.chunks, &tokens, &nw);
        snprintf(src, sizeof src, "%s", tpath);
    }
    /* the layers are compared on weights alone; say so when the file asks for more */
    rq_actq aq;
    if (rq_actq_from_gguf(g, &aq)) aq = (rq_actq){.a_clip = 1.0f}; /* unreadable settings: nothing to note */
    rq_tokenizer_free(tok);
    rq_gguf_close(g);
    if (rc) return cli_die(cmd, rq_error());
    if (aq.a_bits || aq.kv_bits)
        fprintf(stderr,
                "repliq %s: note: %s asks for %d-bit activations and a %d-bit KV cache (0: none) in its forward "
                "pass; this compares the weights alone, without them, so --calib does not reproduce what quantize "
                "logged for it\n",
                cmd, qpath, aq.a_bits, aq.kv_bits);
    if (json && !writable(cmd, json)) {
        if (calib)
            rq_calib_free(&cal);
        else
            free(tokens);
        return 1;
    }
    rq_set_threads(op.threads);
    double t0 = rq_time();
    rq_lerr le;
    rc = rq_layer_errors(qpath, rpath, tokens, nw, len, feed, true, &le);
    if (calib)
        rq_calib_free(&cal);
    else
        free(tokens);
    if (rc || (json && rq_lerr_save_jsonl(&le, feed_s, src, json))) {
        rq_lerr_free(&le);
        return cli_die(cmd, rq_error());
    }
    printf("quantized %s\nreference %s\ninputs: %s, %d window%s of %d tokens (%lld), fed by the %s model; no "
           "activation quantization; %.1fs\n",
           qpath, rpath, src, nw, nw == 1 ? "" : "s", len, (long long)le.n_tokens,
           feed == RQ_LERR_FEED_REF ? "reference" : "quantized", rq_time() - t0);
    printf("relative layer error ||(W'-W)X||^2 / ||WX||^2\n| layer | attn_q | attn_k | attn_v | attn_output | "
           "ffn_gate | ffn_up | ffn_down |\n|---|---|---|---|---|---|---|---|\n");
    double mean[7] = {0};
    int L = le.n / 7;
    for (int l = 0; l < L; l++) {
        printf("| %d |", l);
        for (int j = 0; j < 7; j++) {
            double r = rq_lerr_rel(&le.e[7 * l + j]);
            mean[j] += r / L;
            printf(" %.5f |", r);
        }
        printf("\n");
    }
    printf("| mean |");
    for (int j = 0; j < 7; j++)
        printf(" %.5f |", mean[j]);
    printf("\n| mean share of the error that is a constant offset |");
    for (int j = 0; j < 7; j++) {
        double m = 0;
        for (int l = 0; l < L; l++)
            m += rq_lerr_mean_share(&le.e[7 * l + j]) / L;
        printf(" %.4f |", m);
    }
    printf("\n");
    if (json) printf("wrote %s\n", json);
    rq_lerr_free(&le);
    return 0;
}
