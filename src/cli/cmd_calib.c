/* cmd_calib.c - repliq calib: the calibration windows a recipe would use (documents,
 * tokens, file hash), and optionally the shuffled text for tools that read plain text. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "cli.h"
#include "gguf.h"
#include "paths.h"
#include "tokenizer.h"
#include "util.h"

#define CALIB_DEFAULT_FILE "c4-en-validation-sample-2000.jsonl.xz"

static int write_text(const char *path, const char *text, size_t len) {
    rq_tmpfile t;
    if (rq_tmpfile_open(&t, path)) return -1;
    fwrite(text, 1, len, t.f); /* a short write sets the stream's error, which close checks */
    return rq_tmpfile_close(&t, true);
}

int cmd_calib(int argc, char **argv) {
    const char *model = NULL, *file = CALIB_DEFAULT_FILE, *text_out = NULL;
    int n = 12, len = 2048;
    unsigned long long seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m")) model = cli_val("calib", argc, argv, &i);
        else if (!strcmp(a, "-f")) file = cli_val("calib", argc, argv, &i);
        else if (!strcmp(a, "-n")) n = cli_int("calib", a, cli_val("calib", argc, argv, &i), 1);
        else if (!strcmp(a, "-L")) len = cli_int("calib", a, cli_val("calib", argc, argv, &i), 1);
        else if (!strcmp(a, "--text-out")) text_out = cli_val("calib", argc, argv, &i);
        else if (!strcmp(a, "--seed")) {
            const char *v = cli_val("calib", argc, argv, &i);
            char *end;
            errno = 0;
            seed = strtoull(v, &end, 10);
            if (errno || *end || end == v || *v == '-') {
                fprintf(stderr, "repliq calib: --seed needs an integer >= 0, got '%s'\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "repliq calib: unknown option '%s'\n", a);
            return 2;
        }
    }
    if (!model)
        return cli_die("calib", "usage: repliq calib -m MODEL [-f FILE] [-n N] [-L LEN] [--seed S] [--text-out OUT.txt]");
    char mpath[4096], fpath[4096];
    if (rq_resolve_model(model, mpath, sizeof mpath)) return cli_die("calib", rq_error());
    if (rq_resolve_data(file, fpath, sizeof fpath)) {
        fprintf(stderr, "repliq calib: %s; give the calibration file with -f\n", rq_error());
        return 1;
    }
    rq_gguf *g;
    if (rq_gguf_open(mpath, &g)) return cli_die("calib", rq_error());
    rq_tokenizer *tok;
    int rc = rq_tokenizer_from_gguf(g, &tok);
    rq_gguf_close(g);
    if (rc) return cli_die("calib", rq_error());
    rq_calib c;
    double t0 = rq_time();
    if (rq_calib_load(fpath, tok, n, len, (uint64_t)seed, &c)) {
        rq_tokenizer_free(tok);
        return cli_die("calib", rq_error());
    }
    printf("file %s\nsha256 %s\n", c.path, c.sha256);
    printf("documents %d, used %d (shuffled with seed %llu)\n", c.n_docs, c.docs_used, (unsigned long long)c.seed);
    printf("windows n %d x L %d = %lld tokens (model %s, %.1fs)\n", c.n, c.len, (long long)c.n * c.len, mpath,
           rq_time() - t0);
    rq_calib_free(&c);
    rq_tokenizer_free(tok);
    if (text_out) {
        char *text;
        size_t tlen;
        if (rq_calib_text(fpath, (uint64_t)seed, &text, &tlen)) return cli_die("calib", rq_error());
        rc = write_text(text_out, text, tlen);
        free(text);
        if (rc) return cli_die("calib", rq_error());
        printf("wrote %s (%zu bytes, all documents in the shuffled order)\n", text_out, tlen);
    }
    return 0;
}
