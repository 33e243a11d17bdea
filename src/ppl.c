/* ppl.c - perplexity protocols. llamacpp: chunks of n_ctx tokens from the whole
 * tokenized file, BOS over each chunk's first token when the model adds one, the
 * second half of each chunk scored. gptq: windows of n_ctx over the "\n\n"-joined
 * lines, every token after the first scored. */
#include "ppl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "tokenizer.h"
#include "util.h"

#define LOGIT_ROWS 256 /* logits are computed this many rows at a time */

void rq_lse_stats(const float *x, int n, float *mx, double *log_sum) {
    float m = x[0];
    for (int i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    double s = 0;
    for (int i = 0; i < n; i++) s += expf(x[i] - m);
    *mx = m;
    /* s >= 1: the maximum contributes exp(0) */
    // cppcheck-suppress invalidFunctionArg
    *log_sum = log(s);
}

int rq_ppl_ctx(const rq_ppl_params *p) {
    return p->n_ctx > 0 ? p->n_ctx : (p->protocol == RQ_PPL_LLAMACPP ? 512 : 2048);
}

double rq_nll_of(const float *logits, int n_vocab, int target) {
    float mx;
    double ls;
    rq_lse_stats(logits, n_vocab, &mx, &ls);
    return -((double)(logits[target] - mx) - ls);
}

char *rq_ppl_gptq_text(const char *text, size_t len, size_t *out_len) {
    char *out = rq_malloc(2 * len + 3);
    size_t o = 0, i = 0;
    bool first = true;
    while (i < len) {
        size_t j = i;
        while (j < len && text[j] != '\n') j++;
        size_t end = j < len ? j + 1 : j; /* the line keeps its newline */
        bool blank = true;
        for (size_t k = i; k < j; k++)
            if (text[k] != ' ' && text[k] != '\t' && text[k] != '\r' && text[k] != '\f' && text[k] != '\v')
                blank = false;
        if (!first) {
            out[o++] = '\n';
            out[o++] = '\n';
        }
        first = false;
        if (!blank) {
            memcpy(out + o, text + i, end - i);
            o += end - i;
        }
        i = end;
    }
    out[o] = 0;
    *out_len = o;
    return out;
}

int rq_ppl_tokens(const rq_model *m, const rq_ppl_params *p, const char *text, size_t len, int32_t **tokens,
                  size_t *n) {
    if (!m->tok) return rq_fail("model '%s' carries no tokenizer; use a GGUF with tokenizer metadata", m->name);
    return rq_ppl_tokenize(m->tok, p, text, len, tokens, n);
}

int rq_ppl_tokenize(const struct rq_tokenizer *tok, const rq_ppl_params *p, const char *text, size_t len,
                    int32_t **tokens, size_t *n) {
    if (len == 0) return rq_fail("the text is empty");
    int rc;
    if (p->protocol == RQ_PPL_GPTQ) {
        size_t glen;
        char *g = rq_ppl_gptq_text(text, len, &glen);
        rc = rq_tokenize(tok, g, glen, true, tokens, n);
        free(g);
    } else {
        /* llama.cpp's -f reader drops one trailing newline before tokenizing */
        if (text[len - 1] == '\n') len--;
        rc = rq_tokenize(tok, text, len, true, tokens, n);
    }
    return rc;
}

int rq_ppl_run(const rq_model *m, const rq_ppl_params *p, const char *text, size_t len, rq_ppl_result *r) {
    memset(r, 0, sizeof *r);
    int32_t *tok;
    size_t n_tok;
    if (rq_ppl_tokens(m, p, text, len, &tok, &n_tok)) return -1;
    rq_ppl_params q = *p;
    q.add_bos = rq_tokenizer_adds_bos(m->tok);
    q.bos_id = rq_tokenizer_bos(m->tok);
    int rc = rq_ppl_eval_tokens(m, &q, tok, n_tok, r);
    free(tok);
    return rc;
}

int rq_ppl_eval_tokens(const rq_model *m, const rq_ppl_params *p, const int32_t *tok, size_t n_tok,
                       rq_ppl_result *r) {
    memset(r, 0, sizeof *r);
    bool llamacpp = p->protocol == RQ_PPL_LLAMACPP;
    int n_ctx = rq_ppl_ctx(p);
    if (n_ctx < 4) return rq_fail("context %d is too short (at least 4 tokens)", n_ctx);
    for (size_t i = 0; i < n_tok; i++)
        if (tok[i] < 0 || tok[i] >= m->cfg.n_vocab)
            return rq_fail("token id %d at position %zu is outside the vocabulary (%d)", tok[i], i, m->cfg.n_vocab);
    int64_t n_chunks = (int64_t)n_tok / n_ctx;
    if (n_chunks < 2)
        return rq_fail("the text has %zu tokens, fewer than two windows of %d; give a longer text or a smaller -c",
                       n_tok, n_ctx);
    if (p->max_chunks > 0 && p->max_chunks < n_chunks) n_chunks = p->max_chunks;
    int first = llamacpp ? n_ctx / 2 : 0;
    int per_chunk = n_ctx - 1 - first;
    bool bos = llamacpp && p->add_bos;
    int nv = m->cfg.n_vocab;
    rq_fwd *f = rq_fwd_new(m, n_ctx);
    if (!f) return -1;
    float *logits = rq_malloc((size_t)LOGIT_ROWS * nv * sizeof(float));
    int32_t *in = rq_malloc((size_t)n_ctx * sizeof(int32_t));
    r->nll = rq_malloc((size_t)(n_chunks * per_chunk) * sizeof(float));
    double sum = 0, sum2 = 0, t0 = rq_time();
    int64_t k = 0;
    for (int64_t c = 0; c < n_chunks; c++) {
        const int32_t *chunk = tok + c * n_ctx;
        memcpy(in, chunk, (size_t)n_ctx * sizeof(int32_t));
        if (bos) in[0] = p->bos_id;
        const float *h = rq_fwd_hidden(f, in, n_ctx);
        /* position i predicts chunk[i + 1]; score i in [first, n_ctx - 1) */
        for (int i0 = first; i0 < n_ctx - 1; i0 += LOGIT_ROWS) {
            int rows = n_ctx - 1 - i0 < LOGIT_ROWS ? n_ctx - 1 - i0 : LOGIT_ROWS;
            rq_fwd_logits(m, h + (size_t)i0 * m->cfg.n_embd, rows, logits);
            for (int j = 0; j < rows; j++) {
                const float *row = logits + (size_t)j * nv;
                double nll = rq_nll_of(row, nv, chunk[i0 + j + 1]);
                if (p->on_scored) p->on_scored(p->on_scored_ctx, k, row, nv, chunk[i0 + j + 1]);
                r->nll[k++] = (float)nll;
                sum += nll;
                sum2 += nll * nll;
            }
        }
        if (p->progress) {
            double mean = sum / (double)k;
            rq_progress("perplexity", c + 1, n_chunks, t0);
            if (c + 1 < n_chunks && (c % 16 == 0))
                fprintf(stderr, "  [%lld] running ppl %.4f\n", (long long)(c + 1), exp(mean));
        }
    }
    r->seconds = rq_time() - t0;
    double mean = sum / (double)k, var = sum2 / (double)k - mean * mean;
    r->nll_mean = mean;
    r->ppl = exp(mean);
    r->ppl_stderr = var > 0 && k > 1 ? r->ppl * sqrt(var / (double)(k - 1)) : 0;
    r->n_scored = k;
    r->n_tokens = (int64_t)n_tok;
    r->n_chunks = (int)n_chunks;
    r->n_ctx = n_ctx;
    r->tokens_per_s = (double)(n_chunks * n_ctx) / r->seconds;
    rq_fwd_free(f);
    free(logits);
    free(in);
    return 0;
}
