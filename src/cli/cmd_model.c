/* cmd_model.c - repliq info, tokenize and convert: look at a model, tokenize a
 * text with it, and write it back as an F32 GGUF with repliq's writer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ggml_types.h"
#include "gguf.h"
#include "model.h"
#include "paths.h"
#include "tokenizer.h"
#include "util.h"

static int open_view(const char *cmd, const char *arg, rq_gguf **g);

int cmd_info(int argc, char **argv) {
    const char *model = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m")) model = cli_val("info", argc, argv, &i);
        else model = argv[i];
    }
    if (!model) return cli_die("info", "usage: repliq info -m MODEL");
    rq_gguf *g;
    if (open_view("info", model, &g)) return 1;
    rq_config c;
    if (rq_config_from_gguf(g, &c)) {
        rq_gguf_close(g);
        return cli_die("info", rq_error());
    }
    printf("file %s (GGUF v%u, %llu tensors, %llu metadata keys)\n", g->path, g->version,
           (unsigned long long)g->n_tensors, (unsigned long long)g->n_kv);
    printf("architecture %s: %d layers, embd %d, ff %d, heads %d (kv %d), head dim %d, vocab %d, rope base %g, "
           "eps %g, %s output\n",
           c.arch->name, c.n_layer, c.n_embd, c.n_ff, c.n_head, c.n_head_kv, c.head_dim, c.n_vocab, c.rope_base,
           c.norm_eps, c.tied_output ? "tied" : "separate");
    int64_t count[RQ_GGML_TYPE_LIMIT] = {0}, packed = 0, params = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const rq_gguf_tensor *t = &g->tensors[i];
        if (t->type == RQ_GGML_RQ_PACKED) {
            packed++; /* a blob: its shape is in its header (repliq bpw shows it) */
            continue;
        }
        count[t->type]++;
        params += t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    }
    printf("parameters %lld%s; tensor types:", (long long)params, packed ? " outside packed tensors" : "");
    if (packed) printf(" rq_packed x%lld", (long long)packed);
    for (int t = 0; t < RQ_GGML_TYPE_LIMIT; t++)
        if (count[t]) printf(" %s x%lld", rq_ggml_traits_of(t)->name, (long long)count[t]);
    printf("\n");
    rq_gguf_close(g);
    return 0;
}

static int open_view(const char *cmd, const char *arg, rq_gguf **g) {
    char path[4096];
    if (rq_resolve_model(arg, path, sizeof path) || rq_gguf_open(path, g)) return cli_die(cmd, rq_error());
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *str = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m")) model = cli_val("tokenize", argc, argv, &i);
        else if (!strcmp(argv[i], "-f")) text = cli_val("tokenize", argc, argv, &i);
        else if (!strcmp(argv[i], "-p")) str = cli_val("tokenize", argc, argv, &i);
        else return cli_die("tokenize", "unknown option");
    }
    if (!model || (!text && !str)) return cli_die("tokenize", "usage: repliq tokenize -m MODEL (-f TEXT | -p STRING)");
    rq_gguf *g;
    if (open_view("tokenize", model, &g)) return 1;
    rq_tokenizer *tok;
    if (rq_tokenizer_from_gguf(g, &tok)) {
        rq_gguf_close(g);
        return cli_die("tokenize", rq_error());
    }
    char *buf = NULL, tpath[4096];
    size_t len;
    int rc = 0;
    if (str) {
        buf = rq_strdup(str);
        len = strlen(str);
    } else if (rq_resolve_data(text, tpath, sizeof tpath) || rq_read_file(tpath, &buf, &len)) {
        rc = cli_die("tokenize", rq_error());
    }
    int32_t *ids;
    size_t n;
    if (!rc && rq_tokenize(tok, buf, len, true, &ids, &n)) rc = cli_die("tokenize", rq_error());
    if (!rc) {
        for (size_t i = 0; i < n; i++) printf("%d\n", ids[i]);
        fprintf(stderr, "%zu tokens\n", n);
        free(ids);
    }
    free(buf);
    rq_tokenizer_free(tok);
    rq_gguf_close(g);
    return rc;
}

int cmd_convert(int argc, char **argv) {
    const char *model = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m")) model = cli_val("convert", argc, argv, &i);
        else if (!strcmp(argv[i], "-o")) out = cli_val("convert", argc, argv, &i);
        else return cli_die("convert", "unknown option");
    }
    if (!model || !out) return cli_die("convert", "usage: repliq convert -m MODEL -o OUT.gguf");
    char path[4096];
    if (rq_resolve_model(model, path, sizeof path)) return cli_die("convert", rq_error());
    rq_gguf *g;
    if (rq_gguf_open(path, &g)) return cli_die("convert", rq_error());
    rq_gguf_writer *w = rq_gguf_writer_new();
    for (uint64_t i = 0; i < g->n_kv; i++) {
        if (!strcmp(g->kv[i].key, "general.file_type") || !strcmp(g->kv[i].key, "general.alignment")) continue;
        rq_gguf_copy_kv(w, &g->kv[i]);
    }
    rq_gguf_set_u32(w, "general.file_type", 0); /* ALL_F32 */
    float **bufs = rq_calloc(g->n_tensors, sizeof *bufs);
    int rc = 0;
    for (uint64_t i = 0; i < g->n_tensors && !rc; i++) {
        const rq_gguf_tensor *t = &g->tensors[i];
        int64_t nel = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        bufs[i] = rq_malloc((size_t)nel * sizeof(float));
        if (rq_ggml_to_float(t->type, t->data, bufs[i], nel) ||
            rq_gguf_add_tensor(w, t->name, RQ_GGML_F32, t->n_dims, t->ne, bufs[i], (size_t)nel * sizeof(float)))
            rc = cli_die("convert", rq_error());
    }
    if (!rc && rq_gguf_write(w, out)) rc = cli_die("convert", rq_error());
    if (!rc) printf("wrote %s (%llu tensors as f32)\n", out, (unsigned long long)g->n_tensors);
    for (uint64_t i = 0; i < g->n_tensors; i++) free(bufs[i]);
    free(bufs);
    rq_gguf_writer_free(w);
    rq_gguf_close(g);
    return rc;
}
