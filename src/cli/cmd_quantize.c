/* cmd_quantize.c - repliq quantize: run a recipe on a model and write a GGUF
 * with packed tensors, the recipe and the calibration record. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "forward.h"
#include "paths.h"
#include "quantize.h"
#include "util.h"

#define DEFAULT_CALIB "c4-en-validation-sample-2000.jsonl.xz"

static double bpw(const rq_bits_sum *s) { return s->weights ? (double)s->bits / (double)s->weights : 0.0; }

static void add_sum(cJSON *o, const char *name, const rq_bits_sum *s) {
    cJSON *x = cJSON_AddObjectToObject(o, name);
    cJSON_AddNumberToObject(x, "weights", (double)s->weights);
    cJSON_AddNumberToObject(x, "bits", (double)s->bits);
    cJSON_AddNumberToObject(x, "bpw", bpw(s));
}

/* One JSON line per quantized tensor (--tensor-log). */
static void log_tensor(void *ctx, const rq_tensor_stat *st) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", st->name);
    cJSON_AddNumberToObject(o, "rows", (double)st->rows);
    cJSON_AddNumberToObject(o, "cols", (double)st->cols);
    cJSON_AddNumberToObject(o, "bits", st->bits);
    cJSON_AddNumberToObject(o, "k", st->K);
    cJSON_AddNumberToObject(o, "stored_bits", (double)st->stored_bits);
    cJSON_AddNumberToObject(o, "rel_err", st->rel_err);
    cJSON_AddNumberToObject(o, "rel_err_start", st->rel_err_start);
    cJSON_AddNumberToObject(o, "seconds", st->seconds);
    char *s = cJSON_PrintUnformatted(o);
    fprintf(ctx, "%s\n", s);
    free(s);
    cJSON_Delete(o);
}

int cmd_quantize(int argc, char **argv) {
    const char *model = NULL, *recipe = NULL, *out = NULL, *calib = NULL, *tlog = NULL;
    int threads = 2, json = 0, quiet = 0, calib_n = 0, calib_len = 0, measure = 0;
    long long seed = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m")) model = cli_val("quantize", argc, argv, &i);
        else if (!strcmp(a, "--recipe")) recipe = cli_val("quantize", argc, argv, &i);
        else if (!strcmp(a, "-o")) out = cli_val("quantize", argc, argv, &i);
        else if (!strcmp(a, "-f")) calib = cli_val("quantize", argc, argv, &i);
        else if (!strcmp(a, "-t")) threads = cli_int("quantize", a, cli_val("quantize", argc, argv, &i), 1);
        else if (!strcmp(a, "-n")) calib_n = cli_int("quantize", a, cli_val("quantize", argc, argv, &i), 1);
        else if (!strcmp(a, "-L")) calib_len = cli_int("quantize", a, cli_val("quantize", argc, argv, &i), 16);
        else if (!strcmp(a, "--seed")) seed = cli_int("quantize", a, cli_val("quantize", argc, argv, &i), 0);
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--tensor-log")) tlog = cli_val("quantize", argc, argv, &i);
        else if (!strcmp(a, "--quiet")) quiet = 1;
        else if (!strcmp(a, "--measure")) measure = 1;
        else {
            fprintf(stderr, "repliq quantize: unknown option '%s'\n", a);
            return 2;
        }
    }
    if (!model || !recipe || !out)
        return cli_die("quantize", "usage: repliq quantize -m MODEL --recipe FILE -o OUT.gguf [-f CALIB.jsonl[.xz]] "
                                   "[-n WINDOWS] [-L TOKENS] [--seed S] [-t N] [--json] [--quiet] [--measure] "
                                   "[--tensor-log FILE.jsonl]");
    char mpath[4096], cpath[4096];
    rq_recipe r;
    if (rq_recipe_load(recipe, &r)) return cli_die("quantize", rq_error());
    if (rq_resolve_model(model, mpath, sizeof mpath)) {
        rq_recipe_free(&r);
        return cli_die("quantize", rq_error());
    }
    /* command-line settings go into the recipe, so the file records what was run */
    if (calib_n) r.calib_n = calib_n;
    if (calib_len) r.calib_len = calib_len;
    if (seed >= 0) r.seed = (uint64_t)seed;
    const char *cal = NULL;
    if (rq_resolve_data(calib ? calib : DEFAULT_CALIB, cpath, sizeof cpath) == 0) cal = cpath;
    else if (calib) {
        rq_recipe_free(&r);
        return cli_die("quantize", rq_error());
    }
    rq_set_threads(threads);
    rq_quant_job job = {.model = mpath, .calib_path = cal, .out_path = out, .verbose = !quiet, .measure = measure};
    rq_tmpfile tf = {0};
    if (tlog) {
        if (rq_tmpfile_open(&tf, tlog)) {
            rq_recipe_free(&r);
            return cli_die("quantize", rq_error());
        }
        job.on_tensor = log_tensor;
        job.on_tensor_ctx = tf.f;
    }
    rq_quant_report rep;
    int rc = rq_quantize_model(&job, &r, &rep);
    if (tlog && rq_tmpfile_close(&tf, rc == 0)) rc = -1;
    if (rc) {
        rq_recipe_free(&r);
        return cli_die("quantize", rq_error());
    }
    printf("wrote %s (%.1f MiB)\n", out, (double)rep.file_bytes / (1 << 20));
    printf("linear layers %.4f bits/weight (%lld weights); embeddings+output %.4f; other %.4f\n", bpw(&rep.linear),
           (long long)rep.linear.weights, bpw(&rep.embd_out), bpw(&rep.other));
    printf("calibration tokens %lld, mean relative layer error %.5f\n", (long long)rep.calib_tokens, rep.rel_err_mean);
    if (rep.mlp_trained)
        printf("MLP training: %d blocks, mean held-out MLP error %.5f -> %.5f\n", rep.mlp_trained,
               rep.mlp_val_start_mean, rep.mlp_val_best_mean);
    printf("time %.1fs (%d threads), peak RSS %.1f MiB\n", rep.seconds, threads, (double)rep.peak_rss / (1 << 20));
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", mpath);
        cJSON_AddStringToObject(o, "recipe", recipe);
        cJSON_AddStringToObject(o, "recipe_name", r.name);
        cJSON_AddStringToObject(o, "out", out);
        cJSON_AddNumberToObject(o, "file_bytes", (double)rep.file_bytes);
        add_sum(o, "linear", &rep.linear);
        add_sum(o, "embd_out", &rep.embd_out);
        add_sum(o, "other", &rep.other);
        cJSON_AddNumberToObject(o, "calib_tokens", (double)rep.calib_tokens);
        cJSON_AddNumberToObject(o, "rel_err_mean", rep.rel_err_mean);
        if (rep.mlp_trained) {
            cJSON_AddNumberToObject(o, "mlp_trained", rep.mlp_trained);
            cJSON_AddNumberToObject(o, "mlp_val_start_mean", rep.mlp_val_start_mean);
            cJSON_AddNumberToObject(o, "mlp_val_best_mean", rep.mlp_val_best_mean);
        }
        cJSON_AddNumberToObject(o, "seconds", rep.seconds);
        cJSON_AddNumberToObject(o, "threads", threads);
        cJSON_AddNumberToObject(o, "peak_rss", (double)rep.peak_rss);
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
    }
    rq_recipe_free(&r);
    return 0;
}
