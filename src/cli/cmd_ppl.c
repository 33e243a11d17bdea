/* cmd_ppl.c - repliq ppl: perplexity of a model on a text file. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "forward.h"
#include "kl.h"
#include "model.h"
#include "paths.h"
#include "ppl.h"
#include "util.h"

/* --nll-save: each scored token's NLL, one per line in scoring order, so that any
 * two runs on the same tokens can be compared pairwise later
 * (scripts/paired_nll.py). Written to a temporary name, then renamed. */
static int save_nll(const char *path, const rq_ppl_result *r) {
    rq_tmpfile t;
    if (rq_tmpfile_open(&t, path)) return rq_fail_ctx("--nll-save");
    for (int64_t i = 0; i < r->n_scored; i++)
        fprintf(t.f, "%.9g\n", (double)r->nll[i]);
    return rq_tmpfile_close(&t, true) ? rq_fail_ctx("--nll-save") : 0;
}

int cmd_ppl(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *json = NULL, *kl_save = NULL, *kl_base = NULL, *nll_save = NULL;
    rq_ppl_params p = {.protocol = RQ_PPL_LLAMACPP, .progress = true};
    int threads = 2;
    rq_actq aq = {.a_bits = -1, .a_clip = -1, .kv_bits = -1, .keep_massive = -1};
    int abf16 = -1, kv_unbias = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m"))
            model = cli_val("ppl", argc, argv, &i);
        else if (!strcmp(a, "-f"))
            text = cli_val("ppl", argc, argv, &i);
        else if (!strcmp(a, "-c"))
            p.n_ctx = cli_int("ppl", a, cli_val("ppl", argc, argv, &i), 4);
        else if (!strcmp(a, "--chunks"))
            p.max_chunks = cli_int("ppl", a, cli_val("ppl", argc, argv, &i), 1);
        else if (!strcmp(a, "-t"))
            threads = cli_int("ppl", a, cli_val("ppl", argc, argv, &i), 1);
        else if (!strcmp(a, "--json"))
            json = "-";
        else if (!strcmp(a, "--json-out"))
            json = cli_val("ppl", argc, argv, &i);
        else if (!strcmp(a, "--quiet"))
            p.progress = false;
        else if (!strcmp(a, "--kl-save"))
            kl_save = cli_val("ppl", argc, argv, &i);
        else if (!strcmp(a, "--kl-base"))
            kl_base = cli_val("ppl", argc, argv, &i);
        else if (!strcmp(a, "--nll-save"))
            nll_save = cli_val("ppl", argc, argv, &i);
        else if (!strcmp(a, "--abits"))
            aq.a_bits = cli_int("ppl", a, cli_val("ppl", argc, argv, &i), 0);
        else if (!strcmp(a, "--kvbits"))
            aq.kv_bits = cli_int("ppl", a, cli_val("ppl", argc, argv, &i), 0);
        else if (!strcmp(a, "--abf16"))
            abf16 = 1;
        else if (!strcmp(a, "--kv-unbias"))
            kv_unbias = 1;
        else if (!strcmp(a, "--no-kv-unbias"))
            kv_unbias = 0;
        else if (!strcmp(a, "--keep-massive")) {
            const char *v = cli_val("ppl", argc, argv, &i);
            char *end;
            aq.keep_massive = strtof(v, &end);
            if (*end || end == v || !(aq.keep_massive >= 0))
                return cli_die("ppl", "--keep-massive needs a ratio >= 0 (0 = off)");
        } else if (!strcmp(a, "--aclip")) {
            const char *v = cli_val("ppl", argc, argv, &i);
            char *end;
            aq.a_clip = strtof(v, &end);
            if (*end || end == v) return cli_die("ppl", "--aclip needs a number in (0, 1]");
        } else if (!strcmp(a, "--protocol")) {
            const char *v = cli_val("ppl", argc, argv, &i);
            if (!strcmp(v, "llamacpp"))
                p.protocol = RQ_PPL_LLAMACPP;
            else if (!strcmp(v, "gptq"))
                p.protocol = RQ_PPL_GPTQ;
            else {
                fprintf(stderr, "repliq ppl: unknown protocol '%s' (llamacpp or gptq)\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "repliq ppl: unknown option '%s'\n", a);
            return 2;
        }
    }
    if (!model || !text)
        return cli_die("ppl", "usage: repliq ppl -m MODEL -f TEXT [-c CTX] [--protocol llamacpp|gptq] "
                              "[--chunks N] [--json] [-t N] [--kl-save FILE | --kl-base FILE] "
                              "[--abits 0|2..8|16] [--aclip R] [--abf16] [--kvbits 0|2..8|16] "
                              "[--kv-unbias | --no-kv-unbias] [--keep-massive RATIO] [--nll-save FILE]");
    if (kl_save && kl_base) return cli_die("ppl", "give either --kl-save or --kl-base, not both");
    rq_actq given = {.a_bits = aq.a_bits >= 0 ? aq.a_bits : 0,
                     .a_clip = aq.a_clip >= 0 ? aq.a_clip : 1.0f,
                     .kv_bits = aq.kv_bits >= 0 ? aq.kv_bits : 0,
                     .keep_massive = aq.keep_massive >= 0 ? aq.keep_massive : 0.0f};
    if (rq_actq_check(&given)) return cli_die("ppl", rq_error());
    char mpath[4096], tpath[4096];
    if (rq_resolve_model(model, mpath, sizeof mpath) || rq_resolve_data(text, tpath, sizeof tpath))
        return cli_die("ppl", rq_error());
    char *buf;
    size_t len;
    if (rq_read_file(tpath, &buf, &len)) return cli_die("ppl", rq_error());
    rq_set_threads(threads);
    rq_model *m;
    double t0 = rq_time();
    if (rq_model_load(mpath, &m)) {
        free(buf);
        return cli_die("ppl", rq_error());
    }
    /* activation/KV quantization: the file's (repliq.act.*), then the command line's */
    if (aq.a_bits >= 0) m->actq.a_bits = aq.a_bits;
    if (aq.a_clip >= 0) m->actq.a_clip = aq.a_clip;
    if (aq.kv_bits >= 0) m->actq.kv_bits = aq.kv_bits;
    if (abf16 >= 0) m->actq.a_bf16 = true;
    if (kv_unbias >= 0) m->actq.kv_unbias = kv_unbias == 1;
    if (aq.keep_massive >= 0) m->actq.keep_massive = aq.keep_massive;
    if (rq_actq_check(&m->actq)) {
        free(buf);
        rq_model_free(m);
        return cli_die("ppl", rq_error());
    }
    fprintf(stderr, "repliq ppl: loaded %s (%s, %lld params) in %.1fs\n", mpath, m->cfg.arch->name,
            (long long)m->n_params, rq_time() - t0);
    int n_ctx = rq_ppl_ctx(&p);
    rq_kl_saver *saver = NULL;
    rq_kl_cmp *cmp = NULL;
    int rc = 0;
    if (kl_save) {
        if (!(saver = rq_kl_saver_open(kl_save, m->cfg.n_vocab, p.protocol, n_ctx))) rc = -1;
        p.on_scored = rq_kl_saver_row;
        p.on_scored_ctx = saver;
    } else if (kl_base) {
        rc = rq_kl_cmp_open(kl_base, m->cfg.n_vocab, p.protocol, n_ctx, &cmp);
        p.on_scored = rq_kl_cmp_row;
        p.on_scored_ctx = cmp;
    }
    rq_ppl_result r = {0};
    if (!rc) rc = rq_ppl_run(m, &p, buf, len, &r);
    free(buf);
    rq_kl_result kr = {0};
    if (saver && (rc ? (rq_kl_saver_close(saver), -1) : rq_kl_saver_close(saver))) rc = -1;
    if (cmp && (rc ? (rq_kl_cmp_finish(cmp, &kr), -1) : rq_kl_cmp_finish(cmp, &kr))) rc = -1;
    if (rc) {
        free(r.nll);
        rq_model_free(m);
        return cli_die("ppl", rq_error());
    }
    const char *proto = p.protocol == RQ_PPL_GPTQ ? "gptq" : "llamacpp";
    printf("model %s\ntext %s\nprotocol %s ctx %d chunks %d tokens %lld scored %lld\n", mpath, tpath, proto, r.n_ctx,
           r.n_chunks, (long long)r.n_tokens, (long long)r.n_scored);
    printf("PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_stderr);
    printf("speed %.1f tokens/s (%d threads), %.1fs, peak RSS %.1f MiB\n", r.tokens_per_s, threads, r.seconds,
           (double)rq_peak_rss() / (1 << 20));
    if (kl_base)
        printf("KL divergence vs base %.6f +/- %.6f, top-1 agreement %.4f, NLL difference %+.6f +/- %.6f "
               "(%lld tokens; largest base mass outside its top-%d: %.2g)\n",
               kr.kl_mean, kr.kl_stderr, kr.top1_agree, kr.dnll_mean, kr.dnll_stderr, (long long)kr.n, RQ_KL_TOPK,
               kr.tail_mass_max);
    /* a difference counts only beyond two standard errors of the paired NLL difference */
    const char *verdict = kr.dnll_mean < -2 * kr.dnll_stderr  ? "better than the base (beyond 2 standard errors)"
                          : kr.dnll_mean > 2 * kr.dnll_stderr ? "worse than the base (beyond 2 standard errors)"
                                                              : "no significant difference (within 2 standard errors)";
    if (kl_base) printf("verdict: %s\n", verdict);
    if (m->actq.a_bits || m->actq.kv_bits)
        printf("activations %d bits (clip %.3f%s), KV cache %d bits%s\n", m->actq.a_bits, m->actq.a_clip,
               m->actq.a_bf16 ? ", bf16" : "", m->actq.kv_bits,
               rq_actq_kv_unbiased(&m->actq) && m->cfg.arch->qkv_bias ? " (keys without their bias)" : "");
    if (kl_save) printf("saved KL base %s\n", kl_save);
    if (nll_save && save_nll(nll_save, &r)) rc = cli_die("ppl", rq_error());
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "ppl", r.ppl);
        cJSON_AddNumberToObject(o, "ppl_stderr", r.ppl_stderr);
        cJSON_AddNumberToObject(o, "nll_mean", r.nll_mean);
        cJSON_AddNumberToObject(o, "tokens", (double)r.n_scored);
        cJSON_AddNumberToObject(o, "tokens_total", (double)r.n_tokens);
        cJSON_AddNumberToObject(o, "chunks", r.n_chunks);
        cJSON_AddNumberToObject(o, "ctx", r.n_ctx);
        cJSON_AddStringToObject(o, "protocol", proto);
        cJSON_AddStringToObject(o, "model", mpath);
        cJSON_AddStringToObject(o, "text", tpath);
        cJSON_AddNumberToObject(o, "threads", threads);
        cJSON_AddNumberToObject(o, "act_bits", m->actq.a_bits);
        cJSON_AddNumberToObject(o, "act_clip", m->actq.a_clip);
        cJSON_AddNumberToObject(o, "kv_bits", m->actq.kv_bits);
        cJSON_AddBoolToObject(o, "kv_unbias", m->actq.kv_unbias);
        cJSON_AddNumberToObject(o, "act_keep_massive", m->actq.keep_massive);
        cJSON_AddNumberToObject(o, "seconds", r.seconds);
        cJSON_AddNumberToObject(o, "tokens_per_second", r.tokens_per_s);
        cJSON_AddNumberToObject(o, "peak_rss", (double)rq_peak_rss());
        if (kl_base) {
            cJSON_AddNumberToObject(o, "kl", kr.kl_mean);
            cJSON_AddNumberToObject(o, "kl_stderr", kr.kl_stderr);
            cJSON_AddNumberToObject(o, "top1_agree", kr.top1_agree);
            cJSON_AddNumberToObject(o, "dnll", kr.dnll_mean);
            cJSON_AddNumberToObject(o, "dnll_stderr", kr.dnll_stderr);
            cJSON_AddStringToObject(o, "verdict", verdict);
        }
        char *s = cJSON_PrintUnformatted(o);
        FILE *f = strcmp(json, "-") ? fopen(json, "w") : stdout;
        if (!f)
            rc = cli_die("ppl", "cannot write the --json-out file");
        else {
            fprintf(f, "%s\n", s);
            if (f != stdout) fclose(f);
        }
        free(s);
        cJSON_Delete(o);
    }
    free(r.nll);
    rq_model_free(m);
    return rc;
}
