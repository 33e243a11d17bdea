/* kl.c - KL(base || model) per scored token. The base file keeps, per token, the
 * target, its NLL and the base's top-K log-probabilities; the rest of the base
 * distribution is one "tail" bucket, so the KL computed here is exact up to the
 * tail's inner distribution (a lower bound on the full-vocabulary KL, by the
 * log-sum inequality). The largest tail mass seen is reported with the result. */
#include "kl.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ppl.h"
#include "util.h"

static const char KL_MAGIC[8] = {'R', 'Q', 'K', 'L', 'B', 'A', 'S', 'E'};
#define KL_VERSION 1

typedef struct {
    char magic[8];
    uint32_t version, topk;
    int32_t n_vocab, protocol, n_ctx, pad;
    int64_t n;
} kl_header;

typedef struct {
    int32_t target;
    float nll;
    int32_t ids[RQ_KL_TOPK];
    float logp[RQ_KL_TOPK];
} kl_record;

/* ids of the K largest entries, largest first (insertion into a sorted list;
 * most entries fail the first comparison, so this stays O(n) in practice) */
static void topk(const float *x, int n, int32_t *ids) {
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (k == RQ_KL_TOPK && x[i] <= x[ids[k - 1]]) continue;
        int j = k < RQ_KL_TOPK ? k++ : k - 1;
        while (j > 0 && x[ids[j - 1]] < x[i]) {
            ids[j] = ids[j - 1];
            j--;
        }
        ids[j] = i;
    }
}

struct rq_kl_saver {
    FILE *f;
    char *path, *tmp;
    kl_header h;
    int err;
};

rq_kl_saver *rq_kl_saver_open(const char *path, int n_vocab, int protocol, int n_ctx) {
    if (n_vocab < RQ_KL_TOPK) {
        rq_fail("vocabulary of %d is smaller than the KL top-K (%d)", n_vocab, RQ_KL_TOPK);
        return NULL;
    }
    rq_kl_saver *s = rq_calloc(1, sizeof *s);
    s->path = rq_strdup(path);
    s->tmp = rq_malloc(strlen(path) + 5);
    sprintf(s->tmp, "%s.tmp", path);
    s->f = fopen(s->tmp, "wb");
    if (!s->f) {
        rq_fail("cannot create '%s': %s", s->tmp, strerror(errno));
        free(s->path);
        free(s->tmp);
        free(s);
        return NULL;
    }
    memcpy(s->h.magic, KL_MAGIC, 8);
    s->h.version = KL_VERSION;
    s->h.topk = RQ_KL_TOPK;
    s->h.n_vocab = n_vocab;
    s->h.protocol = protocol;
    s->h.n_ctx = n_ctx;
    s->err = fwrite(&s->h, sizeof s->h, 1, s->f) != 1;
    return s;
}

void rq_kl_saver_row(void *saver, int64_t k, const float *logits, int n_vocab, int32_t target) {
    rq_kl_saver *s = saver;
    (void)k;
    kl_record r;
    float mx;
    double ls;
    rq_lse_stats(logits, n_vocab, &mx, &ls);
    r.target = target;
    r.nll = (float)-((double)(logits[target] - mx) - ls);
    topk(logits, n_vocab, r.ids);
    for (int i = 0; i < RQ_KL_TOPK; i++) r.logp[i] = (float)((double)(logits[r.ids[i]] - mx) - ls);
    s->err |= fwrite(&r, sizeof r, 1, s->f) != 1;
    s->h.n++;
}

int rq_kl_saver_close(rq_kl_saver *s) {
    int err = s->err;
    err |= fseek(s->f, 0, SEEK_SET) != 0 || fwrite(&s->h, sizeof s->h, 1, s->f) != 1;
    err |= fclose(s->f) != 0;
    if (!err) err = rename(s->tmp, s->path) != 0;
    if (err) {
        unlink(s->tmp);
        rq_fail("cannot write the KL base file '%s'", s->path);
    }
    free(s->path);
    free(s->tmp);
    free(s);
    return err ? -1 : 0;
}

struct rq_kl_cmp {
    char *path;
    kl_header h;
    kl_record *rec;
    int64_t seen;
    int mismatch; /* first mismatching target, +1 */
    double kl, kl2, dn, dn2, tail_max;
    int64_t agree;
};

int rq_kl_cmp_open(const char *path, int n_vocab, int protocol, int n_ctx, rq_kl_cmp **out) {
    FILE *f = fopen(path, "rb");
    if (!f) return rq_fail("cannot open KL base '%s': %s", path, strerror(errno));
    kl_header h;
    int rc = 0;
    if (fread(&h, sizeof h, 1, f) != 1 || memcmp(h.magic, KL_MAGIC, 8) != 0)
        rc = rq_fail("'%s' is not a repliq KL base file (bad magic); write one with 'repliq ppl --kl-save'", path);
    else if (h.version != KL_VERSION || h.topk != RQ_KL_TOPK)
        rc = rq_fail("KL base '%s' has version %u / top-K %u; this repliq reads version %d / top-K %d", path,
                     h.version, h.topk, KL_VERSION, RQ_KL_TOPK);
    else if (h.n_vocab != n_vocab || h.protocol != protocol || h.n_ctx != n_ctx || h.n <= 0)
        rc = rq_fail("KL base '%s' was made with vocab %d, protocol %d, ctx %d; this run has %d, %d, %d", path,
                     h.n_vocab, h.protocol, h.n_ctx, n_vocab, protocol, n_ctx);
    if (rc) {
        fclose(f);
        return rc;
    }
    kl_record *rec = rq_malloc((size_t)h.n * sizeof *rec);
    if (fread(rec, sizeof *rec, (size_t)h.n, f) != (size_t)h.n) {
        fclose(f);
        free(rec);
        return rq_fail("KL base '%s' is truncated", path);
    }
    fclose(f);
    rq_kl_cmp *c = rq_calloc(1, sizeof *c);
    c->h = h;
    c->rec = rec;
    c->path = rq_strdup(path);
    *out = c;
    return 0;
}

void rq_kl_cmp_row(void *cmp, int64_t k, const float *logits, int n_vocab, int32_t target) {
    rq_kl_cmp *c = cmp;
    if (k >= c->h.n) {
        c->seen = k + 1;
        return;
    }
    const kl_record *r = &c->rec[k];
    c->seen = k + 1;
    if (r->target != target) {
        if (!c->mismatch) c->mismatch = (int)(k + 1);
        return;
    }
    float mx;
    double ls;
    rq_lse_stats(logits, n_vocab, &mx, &ls);
    double kl = 0, pin = 0, qin = 0;
    for (int i = 0; i < RQ_KL_TOPK; i++) {
        double lp = r->logp[i], lq = (double)(logits[r->ids[i]] - mx) - ls, p = exp(lp);
        kl += p * (lp - lq);
        pin += p;
        qin += exp(lq);
    }
    double pt = 1.0 - pin, qt = 1.0 - qin;
    if (pt > 1e-12 && qt > 1e-12) kl += pt * (log(pt) - log(qt));
    if (pt > c->tail_max) c->tail_max = pt;
    c->kl += kl;
    c->kl2 += kl * kl;
    int am = 0;
    for (int i = 1; i < n_vocab; i++)
        if (logits[i] > logits[am]) am = i;
    c->agree += am == r->ids[0];
    double nll = -((double)(logits[target] - mx) - ls), d = nll - r->nll;
    c->dn += d;
    c->dn2 += d * d;
}

static void mean_se(double s, double s2, int64_t n, double *mean, double *se) {
    *mean = s / (double)n;
    double var = s2 / (double)n - *mean * *mean;
    *se = n > 1 && var > 0 ? sqrt(var / (double)(n - 1)) : 0;
}

int rq_kl_cmp_finish(rq_kl_cmp *c, rq_kl_result *r) {
    int rc = 0;
    if (c->mismatch)
        rc = rq_fail("KL base '%s': the token streams differ (first at scored token %d): same text and tokenizer?",
                     c->path, c->mismatch - 1);
    else if (c->seen != c->h.n)
        rc = rq_fail("KL base '%s' has %lld scored tokens, this run scored %lld: use the same --chunks", c->path,
                     (long long)c->h.n, (long long)c->seen);
    else {
        r->n = c->seen;
        mean_se(c->kl, c->kl2, c->seen, &r->kl_mean, &r->kl_stderr);
        mean_se(c->dn, c->dn2, c->seen, &r->dnll_mean, &r->dnll_stderr);
        r->top1_agree = (double)c->agree / (double)c->seen;
        r->tail_mass_max = c->tail_max;
    }
    free(c->rec);
    free(c->path);
    free(c);
    return rc;
}
