/* acts.h - "massive activations" statistics (Sun et al., 2024): per layer, the
 * magnitudes of the residual stream and of the four linear-layer inputs over a text. */
#ifndef RQ_ACTS_H
#define RQ_ACTS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "forward.h"
#include "model.h"

struct rq_tokenizer;

/* Where activations are watched in block l. The first four are the linear-layer
 * inputs the forward hook sees (same values as rq_hook_point): what the layer is
 * fed, so after the model's simulated activation quantization and online
 * rotations if its file asks for them. RESID is the block's output. */
typedef enum {
    RQ_ACTS_ATTN_IN = RQ_HOOK_ATTN_IN, /* [n_embd] normed input of q, k, v */
    RQ_ACTS_O_IN = RQ_HOOK_O_IN,       /* [n_head * head_dim] attention output */
    RQ_ACTS_FFN_IN = RQ_HOOK_FFN_IN,   /* [n_embd] normed input of gate, up */
    RQ_ACTS_DOWN_IN = RQ_HOOK_DOWN_IN, /* [n_ff] SwiGLU output */
    RQ_ACTS_RESID = RQ_HOOK_COUNT,     /* [n_embd] residual stream after the block */
    RQ_ACTS_N_SITES
} rq_acts_site;

const char *rq_acts_site_name(rq_acts_site s); /* "attn_in", ..., "resid" */

#define RQ_ACTS_TOPK 8

/* One activation: the entry of the whole run's token array at pos, channel. */
typedef struct {
    int64_t pos;   /* index in the tokens given to rq_acts_collect */
    int win_pos;   /* position inside its window (0: the window's first token) */
    int32_t token; /* id the model saw there (the BOS written over a window start, if any) */
    int channel;
    float value; /* signed */
} rq_acts_entry;

typedef struct {
    int width;           /* channels */
    int64_t n_values;    /* finite values seen: tokens * width, less n_nonfinite */
    int64_t n_nonfinite; /* NaN / Inf, left out of everything else */
    float max_abs;
    /* Median |x| over all tokens, estimated from a histogram with 64 bins per
     * octave (linear inside the octave), interpolated inside the bin: off by at
     * most one bin, i.e. 1/64 = 1.6% relative. */
    double median_abs;
    double ratio; /* max_abs / median_abs; INFINITY when the median is 0 and the max is not, 0 when both are */
    /* |x| > abs_thr and |x| > ratio_thr * (exact median |x| of this site in the
     * same window): Sun et al.'s criterion, their median taken over one sequence. */
    int64_t n_massive;
    int n_top;                       /* min(RQ_ACTS_TOPK, n_values) */
    rq_acts_entry top[RQ_ACTS_TOPK]; /* largest |value| first; distinct (pos, channel); ties keep the earlier */
    float *ch_max;                   /* [width] max |x| per channel over all tokens */
    int64_t *ch_massive;             /* [width] massive entries per channel */
    double sumsq, sumsq_first;       /* sum of x^2 over all tokens, and over each window's first token: the
                                        share of tr(X X^T), a GPTQ Hessian's trace, that the windows'
                                        first tokens (where attention sinks sit) carry */
} rq_acts_stats;

typedef struct {
    int n_ctx;       /* window length; the tokens are cut into windows of up to n_ctx */
    float abs_thr;   /* massive: |x| > abs_thr (default 100) ... */
    float ratio_thr; /* ... and > ratio_thr x the window's median |x| (default 1000) */
    int32_t bos_id;  /* >= 0: written over each window's first token, as llama-perplexity does; -1: as given */
    bool progress;   /* on stderr */
} rq_acts_params;

rq_acts_params rq_acts_defaults(void); /* n_ctx 2048, 100, 1000, no BOS, no progress */

typedef struct {
    rq_acts_params p;
    int n_layer;
    int64_t n_tokens;
    int64_t n_windows;
    char *model;          /* the model's name */
    rq_acts_stats *stats; /* [n_layer][RQ_ACTS_N_SITES]; use rq_acts_get */
} rq_acts;

/* Run tokens[0..n_tokens) through m in windows of up to p->n_ctx tokens (the last
 * may be shorter) and summarize each (layer, site). Memory: one window's
 * activations plus the per-layer summaries, whatever n_tokens is. Refuses an
 * empty token list, n_ctx < 1, ids outside the vocabulary and bad thresholds. */
int rq_acts_collect(const rq_model *m, const int32_t *tokens, int64_t n_tokens, const rq_acts_params *p, rq_acts **out);
void rq_acts_free(rq_acts *a);

/* The summary of one (layer, site); NULL when either is out of range. */
const rq_acts_stats *rq_acts_get(const rq_acts *a, int layer, rq_acts_site s);
/* sumsq_first / sumsq: the share of the site's sum x^2 on the windows' first tokens (0 when all are 0). */
double rq_acts_first_token_share(const rq_acts_stats *s);
/* Per-channel max |x| of one (layer, site) ([*width] floats, owned by a); NULL when out of range. */
const float *rq_acts_channel_max(const rq_acts *a, int layer, rq_acts_site s, int *width);

/* Everything, per-channel arrays included, as one JSON object. tok (may be NULL)
 * adds each top entry's text; text (may be NULL) names the source. Non-finite
 * numbers are written as null. */
int rq_acts_write_json(const rq_acts *a, const struct rq_tokenizer *tok, const char *text, FILE *f);
/* The same into path, through path.tmp renamed once complete. */
int rq_acts_save_json(const rq_acts *a, const struct rq_tokenizer *tok, const char *text, const char *path);

#endif
