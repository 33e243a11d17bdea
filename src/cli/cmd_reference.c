/* cmd_reference.c - repliq reference: the main job for now, a table of reference
 * perplexities (both protocols) of one model on one text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "forward.h"
#include "model.h"
#include "paths.h"
#include "ppl.h"
#include "util.h"

int cmd_reference(int argc, char **argv) {
    const char *model = "smollm2-135m", *text = "wiki.test.raw";
    int threads = 2, chunks[2] = {0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m")) model = cli_val("reference", argc, argv, &i);
        else if (!strcmp(a, "-f")) text = cli_val("reference", argc, argv, &i);
        else if (!strcmp(a, "-t")) threads = cli_int("reference", a, cli_val("reference", argc, argv, &i), 1);
        else if (!strcmp(a, "--chunks")) chunks[0] = cli_int("reference", a, cli_val("reference", argc, argv, &i), 1);
        else if (!strcmp(a, "--windows")) chunks[1] = cli_int("reference", a, cli_val("reference", argc, argv, &i), 1);
        else {
            fprintf(stderr, "repliq reference: unknown option '%s'\n", a);
            return 2;
        }
    }
    char mpath[4096], tpath[4096];
    if (rq_resolve_model(model, mpath, sizeof mpath) || rq_resolve_data(text, tpath, sizeof tpath))
        return cli_die("reference", rq_error());
    char *buf;
    size_t len;
    if (rq_read_file(tpath, &buf, &len)) return cli_die("reference", rq_error());
    rq_set_threads(threads);
    rq_model *m;
    if (rq_model_load(mpath, &m)) {
        free(buf);
        return cli_die("reference", rq_error());
    }
    rq_ppl_result r[2];
    static const char *names[2] = {"llamacpp", "gptq"};
    for (int k = 0; k < 2; k++) {
        rq_ppl_params p = {.protocol = k, .max_chunks = chunks[k], .progress = true};
        fprintf(stderr, "repliq reference: %s protocol\n", names[k]);
        if (rq_ppl_run(m, &p, buf, len, &r[k])) {
            free(buf);
            rq_model_free(m);
            return cli_die("reference", rq_error());
        }
    }
    printf("Reference perplexity of %s (%s, weights dequantized from the file to f32)\n", m->name, mpath);
    printf("text %s; %d threads; peak RSS %.0f MiB\n\n", tpath, threads, (double)rq_peak_rss() / (1 << 20));
    printf("| protocol | ctx | windows | tokens scored | PPL | ± | tokens/s |\n|---|---|---|---|---|---|---|\n");
    for (int k = 0; k < 2; k++) {
        printf("| %s | %d | %d | %lld | %.4f | %.4f | %.1f |\n", names[k], r[k].n_ctx, r[k].n_chunks,
               (long long)r[k].n_scored, r[k].ppl, r[k].ppl_stderr, r[k].tokens_per_s);
        free(r[k].nll);
    }
    free(buf);
    rq_model_free(m);
    return 0;
}
