/* ppl.h - perplexity over a text file under the two protocols in use:
 * llama.cpp's llama-perplexity and the GPTQ/QuaRot papers' WikiText-2 loop. */
#ifndef RQ_PPL_H
#define RQ_PPL_H

#include <stdbool.h>
#include <stdint.h>

#include "model.h"

enum rq_ppl_protocol { RQ_PPL_LLAMACPP = 0, RQ_PPL_GPTQ = 1 };

typedef struct {
    int protocol;   /* enum rq_ppl_protocol */
    int n_ctx;      /* 0: the protocol's default (512 / 2048) */
    int max_chunks; /* 0: all */
    bool progress;  /* on stderr */
    /* llamacpp protocol: write bos_id over each chunk's first token; rq_ppl_run
     * sets both from the tokenizer (tokenizer.ggml.add_bos_token). */
    bool add_bos;
    int bos_id;
    /* optional: called for every scored token with its row of logits (n_vocab),
     * in order; k counts scored tokens from 0. Used by the KL-divergence code. */
    void (*on_scored)(void *ctx, int64_t k, const float *logits, int n_vocab, int32_t target);
    void *on_scored_ctx;
} rq_ppl_params;

typedef struct {
    double ppl, ppl_stderr;
    double nll_mean;
    int64_t n_scored;   /* tokens scored */
    int64_t n_tokens;   /* tokens in the whole text */
    int n_chunks, n_ctx;
    double seconds;     /* forward passes and scoring, not loading */
    double tokens_per_s; /* evaluated (not scored) tokens per second */
    float *nll;         /* per scored token, in order (n_scored); owned, free() it */
} rq_ppl_result;

/* The context a run uses: p->n_ctx, or the protocol's default (512 / 2048). */
int rq_ppl_ctx(const rq_ppl_params *p);

/* Build the token stream a protocol evaluates from raw file bytes. Fails on empty
 * or non-UTF-8 text. rq_ppl_tokenize does it with a tokenizer alone (tools that
 * read a file's tokenizer without loading its weights). */
int rq_ppl_tokenize(const struct rq_tokenizer *tok, const rq_ppl_params *p, const char *text, size_t len,
                    int32_t **tokens, size_t *n);
int rq_ppl_tokens(const rq_model *m, const rq_ppl_params *p, const char *text, size_t len, int32_t **tokens,
                  size_t *n);

/* Evaluate; text shorter than two windows is refused. */
int rq_ppl_run(const rq_model *m, const rq_ppl_params *p, const char *text, size_t len, rq_ppl_result *out);

/* Evaluate a token stream (what rq_ppl_run does after tokenizing). */
int rq_ppl_eval_tokens(const rq_model *m, const rq_ppl_params *p, const int32_t *tok, size_t n_tok,
                       rq_ppl_result *out);

/* The GPTQ protocol's text: lines (each keeping its newline), whitespace-only
 * lines made empty, joined by "\n\n" (what Hugging Face's WikiText loader and GPTQ's
 * get_wikitext2 produce). Returns a new NUL-terminated buffer. */
char *rq_ppl_gptq_text(const char *text, size_t len, size_t *out_len);

/* -log p(target) from one row of logits, as llama.cpp computes it (max-shifted,
 * sum of exponentials in double). */
double rq_nll_of(const float *logits, int n_vocab, int target);

/* The pieces of a log-softmax: the maximum and log(sum exp(x - max)), the sum in
 * double; log p(i) = x[i] - max - log_sum. */
void rq_lse_stats(const float *x, int n, float *mx, double *log_sum);

#endif
