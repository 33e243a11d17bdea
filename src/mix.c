/* mix.c - one file from two quantized files of one model (see mix.h). */
#include "mix.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "calib.h"
#include "gguf.h"
#include "model.h"
#include "util.h"

/* The activation and KV settings the file is evaluated with (absent keys: none)
 * agree, so the mix is evaluated as both files are. */
static int same_eval(const rq_gguf *a, const rq_gguf *b) {
    rq_actq x, y;
    if (rq_actq_from_gguf(a, &x) || rq_actq_from_gguf(b, &y)) return -1;
    const rq_named_pair v[] = {{"repliq.act.bits", x.a_bits, y.a_bits},
                               {"repliq.act.clip", x.a_clip, y.a_clip},
                               {"repliq.act.bf16", x.a_bf16, y.a_bf16},
                               {"repliq.kv.bits", x.kv_bits, y.kv_bits},
                               {"repliq.kv.unbias", x.kv_unbias, y.kv_unbias}};
    return rq_same_values(v, sizeof v / sizeof *v, a->path, b->path,
                          "absent means none, and a mixed file is evaluated with one activation and KV setting: "
                          "mix files quantized with the same one");
}

/* A block's MLP that runs as paths in either file is taken whole: its gate, up and
 * down come from the same file. */
static int mlp_whole(const rq_gguf *ga, const rq_gguf *gb, const bool *from_b, int n_layer) {
    static const char *const m[3] = {"ffn_gate", "ffn_up", "ffn_down"};
    for (int l = 0; l < n_layer; l++) {
        int pa = rq_block_mlp_paths(ga, l), pb = rq_block_mlp_paths(gb, l);
        if (pa < 0 || pb < 0) return -1;
        if (!pa && !pb) continue;
        bool b[3];
        for (int j = 0; j < 3; j++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, m[j]);
            const rq_gguf_tensor *t = rq_gguf_tensor_find(ga, name);
            b[j] = t && from_b[t - ga->tensors];
        }
        if (b[0] != b[1] || b[1] != b[2])
            return rq_fail("blk.%d: the MLP runs as %d paths in %s (\"combine\": \"mlp\"), whose gate, up and down "
                           "share their codes: take all three from one file (e.g. --from-b 'blk.%d.ffn_*')",
                           l, pa ? pa : pb, pa ? ga->path : gb->path, l);
    }
    return 0;
}

static bool matches(const char *name, const char *const *pats, int n_pat) {
    for (int i = 0; i < n_pat; i++)
        if (fnmatch(pats[i], name, 0) == 0) return true;
    return false;
}

/* Every block of the written file loads: the tensors taken from the two files fit together. */
static int check_loads(const char *path) {
    rq_gguf *g = NULL;
    rq_config c;
    int rc = rq_gguf_open(path, &g) || rq_config_from_gguf(g, &c) ? -1 : 0;
    for (int l = 0; !rc && l < c.n_layer; l++) {
        rq_layer L;
        rc = rq_layer_load(g, &c, l, &L);
        if (!rc) rq_layer_free(&L);
    }
    rq_gguf_close(g);
    return rc;
}

static void set_mix_keys(rq_gguf_writer *w, const rq_gguf *ga, const rq_gguf *gb, const char *const *pats, int n_pat,
                         int n_from_b, const char sha[2][65]) {
    rq_gguf_set_str(w, "repliq.mix.a", ga->path);
    rq_gguf_set_str(w, "repliq.mix.b", gb->path);
    rq_gguf_set_str(w, "repliq.mix.a_sha256", sha[0]);
    rq_gguf_set_str(w, "repliq.mix.b_sha256", sha[1]);
    size_t len = 1;
    for (int i = 0; i < n_pat; i++)
        len += strlen(pats[i]) + 1;
    char *joined = rq_calloc(len, 1);
    for (int i = 0; i < n_pat; i++) {
        if (i) strcat(joined, ",");
        strcat(joined, pats[i]);
    }
    rq_gguf_set_str(w, "repliq.mix.from_b", joined);
    free(joined);
    rq_gguf_set_u32(w, "repliq.mix.n_from_b", (uint32_t)n_from_b);
    rq_str s;
    if (rq_gguf_find(gb, "repliq.recipe") && rq_gguf_get_str(gb, "repliq.recipe", &s) == 0) {
        char *r = rq_malloc(s.len + 1);
        memcpy(r, s.ptr, s.len);
        r[s.len] = 0;
        rq_gguf_set_str(w, "repliq.mix.b_recipe", r);
        free(r);
    }
}

int rq_mix(const char *a, const char *b, const char *const *pats, int n_pat, const char *out, rq_mix_report *rep) {
    memset(rep, 0, sizeof *rep);
    if (n_pat < 1) return rq_fail("mix: give at least one pattern of tensors to take from %s", b);
    rq_gguf *ga = NULL, *gb = NULL;
    rq_gguf_writer *w = NULL;
    bool *from_b = NULL;
    char *tmp = NULL;
    int rc = -1;
    rq_config c;
    if (rq_gguf_open(a, &ga) || rq_gguf_open(b, &gb)) goto done;
    if (rq_same_model(ga, gb, "mix files of one model (quantized from it, or the model itself), rotated alike", &c) ||
        same_eval(ga, gb))
        goto done;
    if (ga->n_tensors != gb->n_tensors) {
        rq_fail("%s has %llu tensors, %s has %llu: mix files with the same tensors", a,
                (unsigned long long)ga->n_tensors, b, (unsigned long long)gb->n_tensors);
        goto done;
    }
    from_b = rq_calloc(ga->n_tensors, sizeof *from_b);
    for (uint64_t i = 0; i < ga->n_tensors; i++) {
        if (!rq_gguf_tensor_find(gb, ga->tensors[i].name)) {
            rq_fail("tensor '%s' of %s is not in %s: mix files with the same tensors", ga->tensors[i].name, a, b);
            goto done;
        }
        from_b[i] = matches(ga->tensors[i].name, pats, n_pat);
        rep->n_from_b += from_b[i];
    }
    for (int p = 0; p < n_pat; p++) {
        bool any = false;
        for (uint64_t i = 0; i < ga->n_tensors && !any; i++)
            any = fnmatch(pats[p], ga->tensors[i].name, 0) == 0;
        if (!any) {
            rq_fail("pattern '%s' matches no tensor of %s (globs over GGUF names, e.g. \"blk.*.ffn_down.weight\")",
                    pats[p], a);
            goto done;
        }
    }
    if (mlp_whole(ga, gb, from_b, c.n_layer)) goto done;
    char sha[2][65];
    if (rq_sha256_file(a, sha[0]) || rq_sha256_file(b, sha[1])) goto done;
    w = rq_gguf_writer_new();
    for (uint64_t i = 0; i < ga->n_kv; i++)
        if (strncmp(ga->kv[i].key, "repliq.mix.", 11)) rq_gguf_copy_kv(w, &ga->kv[i]);
    set_mix_keys(w, ga, gb, pats, n_pat, rep->n_from_b, sha);
    for (uint64_t i = 0; i < ga->n_tensors; i++) {
        const rq_gguf_tensor *t = from_b[i] ? rq_gguf_tensor_find(gb, ga->tensors[i].name) : &ga->tensors[i];
        if (rq_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes)) goto done;
    }
    rep->n_tensors = (int)ga->n_tensors;
    size_t n = strlen(out) + 40;
    tmp = rq_malloc(n);
    snprintf(tmp, n, "%s.mix-%d.partial", out, (int)getpid());
    if (rq_gguf_write(w, tmp)) goto done;
    if (check_loads(tmp)) {
        rq_fail_ctx("the mixed file does not load");
        unlink(tmp);
        goto done;
    }
    if (rename(tmp, out)) {
        rq_fail("cannot rename '%s' to '%s': %s", tmp, out, strerror(errno));
        unlink(tmp);
        goto done;
    }
    rc = 0;
done:
    free(tmp);
    free(from_b);
    rq_gguf_writer_free(w);
    rq_gguf_close(ga);
    rq_gguf_close(gb);
    return rc;
}
