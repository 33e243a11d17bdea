/* kl.h - KL divergence and top-token agreement of a model against a saved run of
 * the reference model, from the top-K of the reference's distribution per token. */
#ifndef RQ_KL_H
#define RQ_KL_H

#include <stdint.h>
#include <stdio.h>

#define RQ_KL_TOPK 256

/* Saving: one record per scored token (target, nll, top-K ids and log-probs). */
typedef struct rq_kl_saver rq_kl_saver;
rq_kl_saver *rq_kl_saver_open(const char *path, int n_vocab, int protocol, int n_ctx);
/* for rq_ppl_params.on_scored */
void rq_kl_saver_row(void *saver, int64_t k, const float *logits, int n_vocab, int32_t target);
/* finish: header updated with the count, temp file renamed; -1 on any error */
int rq_kl_saver_close(rq_kl_saver *s);

/* Comparing against a saved base. */
typedef struct rq_kl_cmp rq_kl_cmp;
int rq_kl_cmp_open(const char *path, int n_vocab, int protocol, int n_ctx, rq_kl_cmp **out);
void rq_kl_cmp_row(void *cmp, int64_t k, const float *logits, int n_vocab, int32_t target);

typedef struct {
    int64_t n;            /* tokens compared */
    double kl_mean, kl_stderr;
    double top1_agree;    /* fraction of tokens whose argmax equals the base's */
    double dnll_mean, dnll_stderr; /* paired NLL difference, this model minus base */
    double tail_mass_max; /* largest base probability outside its top-K */
} rq_kl_result;

/* Fails if the token stream did not match the base's or counts differ. */
int rq_kl_cmp_finish(rq_kl_cmp *c, rq_kl_result *r);

#endif
