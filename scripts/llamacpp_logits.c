// rq-llamacpp-logits: runs one llama.cpp forward pass over a short token sequence and writes a
// small golden file (RQLOGITS v1) that checks the whole pass: per-position stats over all logits.
//
// Built by scripts/build-llamacpp.sh against llama.h of llama.cpp as vendored in
// llama-cpp-python 0.3.16; run by scripts/make_golden.sh. Not part of librepliq.
//
// File layout, little-endian, fields packed in this order without padding:
//   char     magic[8]        "RQLOGITS"
//   uint32   version         1
//   uint32   n_vocab
//   uint32   n_tokens        tokens decoded in one batch, positions 0 .. n_tokens-1, one sequence,
//                            no BOS unless the input carries it; K/V cache f32 by default (--kv)
//   uint32   n_pos           positions stored: the last n_pos, i.e. first_pos = n_tokens - n_pos
//   uint32   slice_n         logits stored per position at ids j*slice_stride, j < slice_n
//   uint32   slice_stride
//   uint32   top_k           top-k (id, logit) pairs stored per position, logit descending,
//                            ties by lower id
//   uint32   prov_len        bytes of provenance text that follow
//   char     prov[prov_len]  "key=value\n" lines, UTF-8, not NUL-terminated
//   int32    tokens[n_tokens]
//   n_pos records, for positions first_pos .. n_tokens-1:
//     float64  logsumexp     log(sum_v exp(logit[v])) over all n_vocab
//     float64  sum           sum_v logit[v]
//     float64  sumsq         sum_v logit[v]^2
//     float64  nll_next      logsumexp - logit[tokens[pos+1]] (what llama-perplexity sums);
//                            NaN at the last position
//     int32    top_id[top_k]
//     float32  top_logit[top_k]
//     float32  slice[slice_n]
#include "llama.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef RQ_LLAMA_CPP_COMMIT
#define RQ_LLAMA_CPP_COMMIT "unknown"
#endif
#ifndef RQ_LLAMA_CPP_PYTHON_VERSION
#define RQ_LLAMA_CPP_PYTHON_VERSION "unknown"
#endif

#define RQ_LOGITS_MAGIC "RQLOGITS"
#define RQ_LOGITS_VERSION 1u
#define MAX_PROV 16

typedef struct {
    const char *model;       // GGUF path
    const char *out;         // golden file path
    const char *text_file;   // tokenized like llama-perplexity -f (one trailing '\n' dropped)
    const char *ids;         // or comma-separated token ids
    int n_tokens;            // keep this many tokens of the tokenized text (ids: all)
    int n_pos;               // store the last n_pos positions (0 = all)
    int slice_n;             // logits stored per position, strided over the vocab
    int top_k;
    int n_threads;
    enum ggml_type kv_type;  // K and V cache type; f32 keeps the whole pass in f32
    const char *prov[MAX_PROV];  // extra "key=value" provenance from the caller
    int n_prov;
} logits_config;

typedef struct {
    char *buf;
    size_t len, cap;
} strbuf;

static int sb_addf(strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int sb_addf(strbuf *sb, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    if (sb->len + (size_t)n + 1 > sb->cap) {
        size_t cap = (sb->cap ? sb->cap * 2 : 1024) + (size_t)n;
        char *p = realloc(sb->buf, cap);
        if (!p) return -1;
        sb->buf = p;
        sb->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
    return 0;
}

static void log_quiet(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN) fputs(text, stderr);
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "rq-llamacpp-logits: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *p = realloc(buf, cap *= 2);
            if (!p) { free(buf); buf = NULL; }
            else buf = p;
        }
    }
    int err = ferror(f);
    fclose(f);
    if (!buf || err) {
        fprintf(stderr, "rq-llamacpp-logits: cannot read %s\n", path);
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

// Tokens as llama-perplexity sees them: add_special=true, parse_special=false, and the text
// read like common's -f, which drops one trailing '\n'.
static llama_token *tokenize_file(const struct llama_vocab *vocab, const char *path, int *n_out) {
    size_t len;
    char *text = read_file(path, &len);
    if (!text) return NULL;
    if (len > 0 && text[len - 1] == '\n') len--;
    if (len > INT32_MAX / 2) {
        fprintf(stderr, "rq-llamacpp-logits: %s is too large to tokenize\n", path);
        free(text);
        return NULL;
    }
    int cap = (int)len + 2;
    llama_token *toks = malloc((size_t)cap * sizeof *toks);
    int n = toks ? llama_tokenize(vocab, text, (int32_t)len, toks, cap, true, false) : -1;
    free(text);
    if (n < 0) {
        fprintf(stderr, "rq-llamacpp-logits: tokenizing %s failed (%d)\n", path, n);
        free(toks);
        return NULL;
    }
    *n_out = n;
    return toks;
}

static llama_token *parse_ids(const char *s, int n_vocab, int *n_out) {
    int cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    llama_token *toks = malloc((size_t)cap * sizeof *toks);
    int n = 0;
    const char *p = s;
    while (toks && *p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v >= n_vocab || (*end && *end != ',')) {
            fprintf(stderr, "rq-llamacpp-logits: bad token id at '%s' (n_vocab %d)\n", p, n_vocab);
            free(toks);
            return NULL;
        }
        toks[n++] = (llama_token)v;
        p = *end ? end + 1 : end;
    }
    *n_out = n;
    return toks;
}

// Top-k by insertion into a sorted list: logit descending, ties by lower id.
static void top_k_insert(int32_t *ids, float *vals, int k, int *filled, int32_t id, float v) {
    int i = *filled < k ? (*filled)++ : k;
    if (i == k) {
        if (!(v > vals[k - 1])) return;  // equal logits: the earlier (lower) id wins
        i = k - 1;
    }
    while (i > 0 && v > vals[i - 1]) {
        ids[i] = ids[i - 1];
        vals[i] = vals[i - 1];
        i--;
    }
    ids[i] = id;
    vals[i] = v;
}

static int write_all(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n ? 0 : -1; }

static int write_u32(FILE *f, uint32_t v) { return write_all(f, &v, sizeof v); }

// One position's record; logits is [n_vocab], scratch holds top_k + top_k + slice_n values.
static int write_position(FILE *f, const float *logits, int n_vocab, int next_tok,
                          const logits_config *cfg, int slice_stride, void *scratch) {
    double mx = -INFINITY, sum = 0.0, sumsq = 0.0;
    for (int v = 0; v < n_vocab; v++) {
        mx = logits[v] > mx ? logits[v] : mx;
        sum += logits[v];
        sumsq += (double)logits[v] * logits[v];
    }
    double se = 0.0;
    for (int v = 0; v < n_vocab; v++) se += exp((double)logits[v] - mx);
    double lse = mx + log(se);
    double nll = next_tok >= 0 ? lse - (double)logits[next_tok] : NAN;

    const size_t k = (size_t)cfg->top_k, ns = (size_t)cfg->slice_n;
    int32_t *top_id = scratch;
    float *top_val = (float *)(top_id + k);
    float *slice = top_val + k;
    int filled = 0;
    for (int v = 0; v < n_vocab; v++) top_k_insert(top_id, top_val, cfg->top_k, &filled, v, logits[v]);
    for (size_t j = 0; j < ns; j++) slice[j] = logits[j * (size_t)slice_stride];

    double stats[4] = {lse, sum, sumsq, nll};
    if (write_all(f, stats, sizeof stats) || write_all(f, top_id, k * sizeof *top_id) ||
        write_all(f, top_val, k * sizeof *top_val) || write_all(f, slice, ns * sizeof *slice))
        return -1;
    return 0;
}

static int run(const logits_config *cfg) {
    int rc = 1;
    struct llama_model *model = NULL;
    struct llama_context *ctx = NULL;
    llama_token *toks = NULL;
    struct llama_batch batch = {0};
    int batch_ok = 0;
    FILE *f = NULL;
    void *scratch = NULL;
    strbuf prov = {0};
    char tmp[4096];

    struct llama_model_params mp = llama_model_default_params();
    model = llama_model_load_from_file(cfg->model, mp);
    if (!model) {
        fprintf(stderr, "rq-llamacpp-logits: cannot load model %s\n", cfg->model);
        goto done;
    }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    int n_tok = 0;
    toks = cfg->ids ? parse_ids(cfg->ids, n_vocab, &n_tok) : tokenize_file(vocab, cfg->text_file, &n_tok);
    if (!toks) goto done;
    if (!cfg->ids && cfg->n_tokens < n_tok) n_tok = cfg->n_tokens;
    if (n_tok < 1) {
        fprintf(stderr, "rq-llamacpp-logits: no tokens to decode\n");
        goto done;
    }
    const int n_pos = cfg->n_pos > 0 && cfg->n_pos < n_tok ? cfg->n_pos : n_tok;
    const int first = n_tok - n_pos;
    if (cfg->slice_n < 1 || cfg->slice_n > n_vocab || cfg->top_k < 1 || cfg->top_k > n_vocab) {
        fprintf(stderr, "rq-llamacpp-logits: need 1 <= slice (%d), top-k (%d) <= n_vocab (%d)\n",
                cfg->slice_n, cfg->top_k, n_vocab);
        goto done;
    }
    const int slice_stride = n_vocab / cfg->slice_n;

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)n_tok;
    cp.n_batch = cp.n_ubatch = (uint32_t)n_tok;
    cp.n_seq_max = 1;
    cp.n_threads = cp.n_threads_batch = cfg->n_threads;
    cp.no_perf = true;
    cp.type_k = cp.type_v = cfg->kv_type;
    ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "rq-llamacpp-logits: cannot create a context of %d tokens\n", n_tok);
        goto done;
    }

    batch = llama_batch_init(n_tok, 0, 1);
    batch_ok = 1;
    for (int i = 0; i < n_tok; i++) {
        batch.token[i] = toks[i];
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = i >= first;
    }
    batch.n_tokens = n_tok;
    int dr = llama_decode(ctx, batch);
    if (dr != 0) {
        fprintf(stderr, "rq-llamacpp-logits: llama_decode failed (%d)\n", dr);
        goto done;
    }

    if (llama_model_desc(model, tmp, sizeof tmp) < 0) tmp[0] = 0;
    const char *base = strrchr(cfg->model, '/');
    sb_addf(&prov, "generator=rq-llamacpp-logits (scripts/llamacpp_logits.c)\n");
    sb_addf(&prov, "llama_cpp=llama.cpp %s as vendored in llama-cpp-python %s\n", RQ_LLAMA_CPP_COMMIT,
            RQ_LLAMA_CPP_PYTHON_VERSION);
    sb_addf(&prov, "model_file=%s\nmodel_desc=%s\n", base ? base + 1 : cfg->model, tmp);
    const char *text_base = cfg->text_file ? strrchr(cfg->text_file, '/') : NULL;
    if (cfg->ids)
        sb_addf(&prov, "input=token ids given on the command line\n");
    else
        sb_addf(&prov, "input=first %d tokens of llama_tokenize(%s minus one trailing newline, "
                       "add_special=1, parse_special=0)\n",
                n_tok, text_base ? text_base + 1 : cfg->text_file);
    sb_addf(&prov, "decode=one llama_decode of all %d tokens at positions 0..%d, seq 0, n_ctx=%u, "
                   "n_threads=%d, flash_attn=%d, kv_cache=%s\n",
            n_tok, n_tok - 1, llama_n_ctx(ctx), cfg->n_threads, cp.flash_attn, ggml_type_name(cfg->kv_type));
    sb_addf(&prov, "system_info=%s\n", llama_print_system_info());
    for (int i = 0; i < cfg->n_prov; i++) sb_addf(&prov, "%s\n", cfg->prov[i]);
    scratch = malloc((size_t)(2 * cfg->top_k + cfg->slice_n) * sizeof(float));
    if (!prov.buf || !scratch) {
        fprintf(stderr, "rq-llamacpp-logits: out of memory\n");
        goto done;
    }

    snprintf(tmp, sizeof tmp, "%s.tmp", cfg->out);
    f = fopen(tmp, "wb");
    if (!f) {
        fprintf(stderr, "rq-llamacpp-logits: cannot create %s: %s\n", tmp, strerror(errno));
        goto done;
    }
    int werr = write_all(f, RQ_LOGITS_MAGIC, 8) || write_u32(f, RQ_LOGITS_VERSION) ||
               write_u32(f, (uint32_t)n_vocab) || write_u32(f, (uint32_t)n_tok) ||
               write_u32(f, (uint32_t)n_pos) || write_u32(f, (uint32_t)cfg->slice_n) ||
               write_u32(f, (uint32_t)slice_stride) || write_u32(f, (uint32_t)cfg->top_k) ||
               write_u32(f, (uint32_t)prov.len) || write_all(f, prov.buf, prov.len);
    for (int i = 0; !werr && i < n_tok; i++) werr = write_all(f, &toks[i], sizeof(int32_t));
    for (int p = first; !werr && p < n_tok; p++) {
        const float *lg = llama_get_logits_ith(ctx, p);
        if (!lg) {
            fprintf(stderr, "rq-llamacpp-logits: no logits for position %d\n", p);
            werr = 1;
            break;
        }
        werr = write_position(f, lg, n_vocab, p + 1 < n_tok ? toks[p + 1] : -1, cfg, slice_stride,
                              scratch);
    }
    if (fclose(f) != 0) werr = 1;
    f = NULL;
    if (werr || rename(tmp, cfg->out) != 0) {
        fprintf(stderr, "rq-llamacpp-logits: writing %s failed\n", cfg->out);
        remove(tmp);
        goto done;
    }
    fprintf(stderr, "rq-llamacpp-logits: wrote %s: n_vocab %d, %d tokens, last %d positions, "
                    "slice %d (stride %d), top-%d\n",
            cfg->out, n_vocab, n_tok, n_pos, cfg->slice_n, slice_stride, cfg->top_k);
    rc = 0;
done:
    if (f) fclose(f);
    free(scratch);
    free(prov.buf);
    if (batch_ok) llama_batch_free(batch);
    free(toks);
    if (ctx) llama_free(ctx);
    if (model) llama_model_free(model);
    return rc;
}

static void usage(void) {
    fprintf(stderr,
            "usage: rq-llamacpp-logits -m MODEL.gguf -o OUT.bin (-f TEXT | --ids 1,2,3) [options]\n"
            "  -f TEXT        tokenize TEXT like llama-perplexity -f (add_special=1, parse_special=0)\n"
            "  --ids LIST     decode these comma-separated token ids instead\n"
            "  -n N           keep the first N tokens of TEXT (default 16)\n"
            "  --last N       store the last N positions (default 0 = all)\n"
            "  --slice N      logits stored per position, ids j*(n_vocab/N) (default 256)\n"
            "  --top-k K      top-k (id, logit) pairs per position (default 16)\n"
            "  -t N           threads (default 1, for a reproducible summation order)\n"
            "  --kv TYPE      K/V cache type, f32 or f16 (default f32; llama-perplexity uses f16)\n"
            "  --prov K=V     extra provenance line (repeatable, up to %d)\n",
            MAX_PROV);
}

static int parse_int(const char *s, int lo, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > INT32_MAX) return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv) {
    logits_config cfg = {.n_tokens = 16, .slice_n = 256, .top_k = 16, .n_threads = 1, .kv_type = GGML_TYPE_F32};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 0;
        } else if (!v) {
            bad = 1;
        } else if (!strcmp(a, "-m")) {
            cfg.model = v;
        } else if (!strcmp(a, "-o")) {
            cfg.out = v;
        } else if (!strcmp(a, "-f")) {
            cfg.text_file = v;
        } else if (!strcmp(a, "--ids")) {
            cfg.ids = v;
        } else if (!strcmp(a, "-n")) {
            bad = parse_int(v, 1, &cfg.n_tokens);
        } else if (!strcmp(a, "--last")) {
            bad = parse_int(v, 0, &cfg.n_pos);
        } else if (!strcmp(a, "--slice")) {
            bad = parse_int(v, 1, &cfg.slice_n);
        } else if (!strcmp(a, "--top-k")) {
            bad = parse_int(v, 1, &cfg.top_k);
        } else if (!strcmp(a, "-t")) {
            bad = parse_int(v, 1, &cfg.n_threads);
        } else if (!strcmp(a, "--kv")) {
            if (!strcmp(v, "f32"))
                cfg.kv_type = GGML_TYPE_F32;
            else if (!strcmp(v, "f16"))
                cfg.kv_type = GGML_TYPE_F16;
            else
                bad = 1;
        } else if (!strcmp(a, "--prov")) {
            if (cfg.n_prov == MAX_PROV || !strchr(v, '=') || strchr(v, '\n'))
                bad = 1;
            else
                cfg.prov[cfg.n_prov++] = v;
        } else {
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "rq-llamacpp-logits: bad or incomplete option '%s'\n", a);
            usage();
            return 2;
        }
        i++;
    }
    if (!cfg.model || !cfg.out || !cfg.text_file == !cfg.ids) {
        fprintf(stderr, "rq-llamacpp-logits: need -m, -o and exactly one of -f / --ids\n");
        usage();
        return 2;
    }
    llama_log_set(log_quiet, NULL);
    llama_backend_init();
    int rc = run(&cfg);
    llama_backend_free();
    return rc;
}
