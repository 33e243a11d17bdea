/* cmd_bpw.c - repliq bpw: bits per weight of a GGUF as stored, per tensor and
 * summed over linear layers, embeddings+output and the rest, from the bytes the file holds. */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ggml_types.h"
#include "gguf.h"
#include "model.h"
#include "paths.h"
#include "qformat.h"
#include "replica.h"
#include "util.h"

enum { CLASS_LINEAR, CLASS_EMBED, CLASS_OTHER, N_CLASS };
static const char *const class_key[N_CLASS] = {"linear", "embed_output", "other"};
static const char *const class_label[N_CLASS] = {"linear layers", "embeddings+output", "other"};

/* One tensor as the report sees it: elements it stands for, bytes it holds. */
typedef struct {
    const char *name;
    char type[32]; /* ggml type name, or the packed format's name ("rq2") */
    int n_dims;
    int64_t ne[4]; /* ne[0] contiguous; for a packed blob, the [rows, cols] it declares */
    int64_t weights;
    int64_t bytes;
    int cls;
} tensor_row;

typedef struct {
    int64_t tensors, weights, bytes;
} totals;

/* Fill r from t; packed blobs are read through their header, which declares the shape. */
static int describe(const rq_gguf_tensor *t, tensor_row *r) {
    memset(r, 0, sizeof *r);
    r->name = t->name;
    r->bytes = (int64_t)t->nbytes;
    if (t->type == RQ_GGML_RQ_PACKED) {
        rq_qtensor hdr;
        int id, version;
        if (rq_qformat_peek(t->data, t->nbytes, &hdr, &id, &version))
            return rq_fail_ctx("tensor '%s' (repliq packed)", t->name);
        const rq_qformat_traits *f = rq_qformat_traits_of(id);
        snprintf(r->type, sizeof r->type, "%s", f ? f->name : id == RQ_FMT_REP ? "rqrep" : "rq?");
        r->n_dims = 2;
        r->ne[0] = hdr.cols;
        r->ne[1] = hdr.rows;
        r->ne[2] = r->ne[3] = 1;
        r->weights = hdr.rows * hdr.cols;
        r->cls = rq_is_block_linear(t->name) ? CLASS_LINEAR : CLASS_OTHER;
    } else {
        const rq_ggml_traits *tr = rq_ggml_traits_of(t->type);
        snprintf(r->type, sizeof r->type, "%s", tr ? tr->name : "?");
        r->n_dims = t->n_dims;
        memcpy(r->ne, t->ne, sizeof r->ne);
        r->weights = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        r->cls = t->n_dims == 2 && rq_is_block_linear(t->name) ? CLASS_LINEAR : CLASS_OTHER;
    }
    if (!strcmp(t->name, "token_embd.weight") || !strcmp(t->name, "output.weight")) r->cls = CLASS_EMBED;
    return 0;
}

static double bpw(int64_t bytes, int64_t weights) { return weights ? 8.0 * (double)bytes / (double)weights : 0.0; }

/* Shape as [rows, cols] (slowest dimension first), e.g. "[1536, 576]". */
static void shape_str(const tensor_row *r, char *buf, size_t cap) {
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int d = r->n_dims - 1; d >= 0 && len < cap; d--)
        len += (size_t)snprintf(buf + len, cap - len, "%lld%s", (long long)r->ne[d], d ? ", " : "]");
}

/* Distinct type names of the linear tensors, with counts, in order of first appearance. */
typedef struct {
    char name[32];
    int64_t count;
} type_count;

static int count_types(const tensor_row *rows, uint64_t n, type_count *out, int cap) {
    int k = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (rows[i].cls != CLASS_LINEAR) continue;
        int j = 0;
        while (j < k && strcmp(out[j].name, rows[i].type))
            j++;
        if (j == k) {
            if (k == cap) continue;
            snprintf(out[k].name, sizeof out[k].name, "%s", rows[i].type);
            out[k++].count = 0;
        }
        out[j].count++;
    }
    return k;
}

static cJSON *totals_json(const totals *t) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "tensors", (double)t->tensors);
    cJSON_AddNumberToObject(o, "weights", (double)t->weights);
    cJSON_AddNumberToObject(o, "bytes", (double)t->bytes);
    cJSON_AddNumberToObject(o, "bpw", bpw(t->bytes, t->weights));
    return o;
}

static void print_json(const char *path, const tensor_row *rows, uint64_t n, const totals *cls, const totals *all,
                       const type_count *tc, int n_tc, bool tied, bool tensors) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", path);
    for (int c = 0; c < N_CLASS; c++) {
        cJSON *s = totals_json(&cls[c]);
        if (c == CLASS_LINEAR) {
            cJSON *types = cJSON_AddObjectToObject(s, "types");
            for (int i = 0; i < n_tc; i++)
                cJSON_AddNumberToObject(types, tc[i].name, (double)tc[i].count);
        }
        if (c == CLASS_EMBED) {
            cJSON_AddBoolToObject(s, "tied", tied);
            for (uint64_t i = 0; i < n; i++)
                if (rows[i].cls == CLASS_EMBED)
                    cJSON_AddStringToObject(
                        s, !strcmp(rows[i].name, "output.weight") ? "output_type" : "token_embd_type", rows[i].type);
        }
        cJSON_AddItemToObject(o, class_key[c], s);
    }
    cJSON_AddItemToObject(o, "total", totals_json(all));
    if (tensors) {
        cJSON *arr = cJSON_AddArrayToObject(o, "tensors");
        for (uint64_t i = 0; i < n; i++) {
            cJSON *t = cJSON_CreateObject();
            cJSON_AddStringToObject(t, "name", rows[i].name);
            cJSON_AddStringToObject(t, "type", rows[i].type);
            cJSON *shape = cJSON_AddArrayToObject(t, "shape"); /* [rows, cols] */
            for (int d = rows[i].n_dims - 1; d >= 0; d--)
                cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)rows[i].ne[d]));
            cJSON_AddNumberToObject(t, "weights", (double)rows[i].weights);
            cJSON_AddNumberToObject(t, "bytes", (double)rows[i].bytes);
            cJSON_AddNumberToObject(t, "bpw", bpw(rows[i].bytes, rows[i].weights));
            cJSON_AddStringToObject(t, "class", class_key[rows[i].cls]);
            cJSON_AddItemToArray(arr, t);
        }
    }
    char *s = cJSON_PrintUnformatted(o);
    printf("%s\n", s);
    free(s);
    cJSON_Delete(o);
}

static void print_text(const char *path, const tensor_row *rows, uint64_t n, const totals *cls, const totals *all,
                       const type_count *tc, int n_tc, bool tied, bool tensors) {
    printf("file %s\n", path);
    if (tensors) {
        printf("%-32s %-8s %-16s %12s %9s\n", "tensor", "type", "[rows, cols]", "bytes", "bits/w");
        for (uint64_t i = 0; i < n; i++) {
            char shape[96];
            shape_str(&rows[i], shape, sizeof shape);
            printf("%-32s %-8s %-16s %12lld %9.4f\n", rows[i].name, rows[i].type, shape, (long long)rows[i].bytes,
                   bpw(rows[i].bytes, rows[i].weights));
        }
    }
    for (int c = 0; c < N_CLASS; c++) {
        printf("%-18s %4lld tensors %11lld weights %11lld bytes %8.4f bits/weight", class_label[c],
               (long long)cls[c].tensors, (long long)cls[c].weights, (long long)cls[c].bytes,
               bpw(cls[c].bytes, cls[c].weights));
        if (c == CLASS_LINEAR) {
            printf(" (");
            for (int i = 0; i < n_tc; i++)
                printf("%s%s: %lld", i ? ", " : "", tc[i].name, (long long)tc[i].count);
            printf(")");
        }
        if (c == CLASS_EMBED) {
            printf(" (");
            for (uint64_t i = 0, k = 0; i < n; i++)
                if (rows[i].cls == CLASS_EMBED) printf("%s%s %s", k++ ? ", " : "", rows[i].name, rows[i].type);
            if (tied) printf(", output tied");
            printf(")");
        }
        printf("\n");
    }
    printf("%-18s %4lld tensors %11lld weights %11lld bytes %8.4f bits/weight\n", "total", (long long)all->tensors,
           (long long)all->weights, (long long)all->bytes, bpw(all->bytes, all->weights));
}

int cmd_bpw(int argc, char **argv) {
    const char *model = NULL;
    bool json = false, tensors = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m"))
            model = cli_val("bpw", argc, argv, &i);
        else if (!strcmp(argv[i], "--json"))
            json = true;
        else if (!strcmp(argv[i], "--tensors"))
            tensors = true;
        else {
            fprintf(stderr, "repliq bpw: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!model) return cli_die("bpw", "usage: repliq bpw -m FILE.gguf [--json] [--tensors]");
    char path[4096];
    rq_gguf *g;
    if (rq_resolve_model(model, path, sizeof path) || rq_gguf_open(path, &g)) return cli_die("bpw", rq_error());
    tensor_row *rows = rq_calloc(g->n_tensors ? g->n_tensors : 1, sizeof *rows);
    totals cls[N_CLASS] = {{0}}, all = {0};
    int rc = 0;
    bool has_output = false;
    for (uint64_t i = 0; i < g->n_tensors && !rc; i++) {
        tensor_row *r = &rows[i];
        if (describe(&g->tensors[i], r)) {
            rc = cli_die("bpw", rq_error());
            break;
        }
        if (!strcmp(r->name, "output.weight")) has_output = true;
        totals *t[2] = {&cls[r->cls], &all};
        for (int k = 0; k < 2; k++) {
            t[k]->tensors++;
            t[k]->weights += r->weights;
            t[k]->bytes += r->bytes;
        }
    }
    if (!rc) {
        type_count tc[64];
        int n_tc = count_types(rows, g->n_tensors, tc, 64);
        (json ? print_json : print_text)(g->path, rows, g->n_tensors, cls, &all, tc, n_tc, !has_output, tensors);
    }
    free(rows);
    rq_gguf_close(g);
    return rc;
}
