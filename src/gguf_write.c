/* gguf_write.c - GGUF v3 writer: metadata in insertion order, tensors aligned to
 * 32 bytes, written to a temporary name and renamed only once complete. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ggml_types.h"
#include "gguf.h"
#include "util.h"

#define ALIGN 32

typedef struct {
    char *key;
    uint32_t type;
    uint8_t *val; /* encoded value after the type field */
    size_t len;
} wkv;

typedef struct {
    char *name;
    int type, n_dims;
    int64_t ne[4];
    const void *data;
    size_t nbytes;
} wtensor;

struct rq_gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
};

rq_gguf_writer *rq_gguf_writer_new(void) { return rq_calloc(1, sizeof(rq_gguf_writer)); }

void rq_gguf_writer_free(rq_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

static void set_raw(rq_gguf_writer *w, const char *key, uint32_t type, const void *val, size_t len) {
    wkv *e = NULL;
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0) e = &w->kv[i];
    if (!e) {
        if (w->n_kv == w->cap_kv) w->kv = rq_realloc(w->kv, (w->cap_kv = w->cap_kv * 2 + 16) * sizeof *w->kv);
        e = &w->kv[w->n_kv++];
        e->key = rq_strdup(key);
    } else {
        free(e->val);
    }
    e->type = type;
    e->val = rq_malloc(len);
    memcpy(e->val, val, len);
    e->len = len;
}

void rq_gguf_set_u32(rq_gguf_writer *w, const char *key, uint32_t v) { set_raw(w, key, RQ_GGUF_UINT32, &v, 4); }
void rq_gguf_set_i32(rq_gguf_writer *w, const char *key, int32_t v) { set_raw(w, key, RQ_GGUF_INT32, &v, 4); }
void rq_gguf_set_u64(rq_gguf_writer *w, const char *key, uint64_t v) { set_raw(w, key, RQ_GGUF_UINT64, &v, 8); }
void rq_gguf_set_f32(rq_gguf_writer *w, const char *key, float v) { set_raw(w, key, RQ_GGUF_FLOAT32, &v, 4); }

void rq_gguf_set_bool(rq_gguf_writer *w, const char *key, bool v) {
    uint8_t b = v;
    set_raw(w, key, RQ_GGUF_BOOL, &b, 1);
}

void rq_gguf_set_str(rq_gguf_writer *w, const char *key, const char *v) {
    uint64_t n = strlen(v);
    uint8_t *buf = rq_malloc(8 + n);
    memcpy(buf, &n, 8);
    memcpy(buf + 8, v, n);
    set_raw(w, key, RQ_GGUF_STRING, buf, 8 + n);
    free(buf);
}

void rq_gguf_copy_kv(rq_gguf_writer *w, const rq_gguf_kv *kv) {
    if (kv->raw) {
        set_raw(w, kv->key, (uint32_t)kv->type, kv->raw, kv->raw_len);
        return;
    }
    /* a synthesized view (no file bytes): encode from the decoded value */
    switch (kv->type) {
    case RQ_GGUF_STRING: {
        char *s = rq_strndup(kv->v.s.ptr, kv->v.s.len);
        rq_gguf_set_str(w, kv->key, s);
        free(s);
        break;
    }
    case RQ_GGUF_FLOAT32: rq_gguf_set_f32(w, kv->key, (float)kv->v.f); break;
    case RQ_GGUF_BOOL: rq_gguf_set_bool(w, kv->key, kv->v.b); break;
    case RQ_GGUF_UINT32: rq_gguf_set_u32(w, kv->key, (uint32_t)kv->v.u); break;
    case RQ_GGUF_INT32: rq_gguf_set_i32(w, kv->key, (int32_t)kv->v.i); break;
    case RQ_GGUF_UINT64: rq_gguf_set_u64(w, kv->key, kv->v.u); break;
    default: break; /* other synthesized types are not produced by any reader */
    }
}

int rq_gguf_add_tensor(rq_gguf_writer *w, const char *name, int type, int n_dims, const int64_t *ne,
                       const void *data, size_t nbytes) {
    if (n_dims < 1 || n_dims > 4) return rq_fail("tensor '%s': %d dimensions (allowed 1..4)", name, n_dims);
    int64_t nel = 1;
    for (int d = 0; d < n_dims; d++) nel *= ne[d];
    size_t row = rq_ggml_row_size(type, ne[0]);
    if (row == 0 && ne[0] != 0) return rq_fail_ctx("tensor '%s'", name);
    if (ne[0] != 0 && row * (size_t)(nel / ne[0]) != nbytes)
        return rq_fail("tensor '%s': %zu bytes given, the shape needs %zu", name, nbytes, row * (size_t)(nel / ne[0]));
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0) return rq_fail("tensor '%s' added twice", name);
    if (w->n_t == w->cap_t) w->t = rq_realloc(w->t, (w->cap_t = w->cap_t * 2 + 64) * sizeof *w->t);
    wtensor *t = &w->t[w->n_t++];
    t->name = rq_strdup(name);
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < 4; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->data = data;
    t->nbytes = nbytes;
    return 0;
}

static int wr(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n ? 0 : -1; }

static int wr_str(FILE *f, const char *s) {
    uint64_t n = strlen(s);
    return wr(f, &n, 8) || wr(f, s, n);
}

static int wr_pad(FILE *f, uint64_t *pos) {
    static const uint8_t zeros[ALIGN];
    uint64_t pad = (ALIGN - *pos % ALIGN) % ALIGN;
    *pos += pad;
    return wr(f, zeros, pad);
}

int rq_gguf_write(rq_gguf_writer *w, const char *path) {
    size_t plen = strlen(path);
    char *tmp = rq_malloc(plen + 5);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        rq_fail("cannot create '%s': %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    int bad = 0;
    uint32_t version = 3;
    uint64_t nt = w->n_t, nkv = w->n_kv;
    bad |= wr(f, "GGUF", 4) || wr(f, &version, 4) || wr(f, &nt, 8) || wr(f, &nkv, 8);
    for (size_t i = 0; i < w->n_kv && !bad; i++)
        bad |= wr_str(f, w->kv[i].key) || wr(f, &w->kv[i].type, 4) || wr(f, w->kv[i].val, w->kv[i].len);
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t && !bad; i++) {
        wtensor *t = &w->t[i];
        uint32_t nd = (uint32_t)t->n_dims, ty = (uint32_t)t->type;
        bad |= wr_str(f, t->name) || wr(f, &nd, 4);
        for (int d = 0; d < t->n_dims; d++) bad |= wr(f, &t->ne[d], 8);
        bad |= wr(f, &ty, 4) || wr(f, &off, 8);
        off += (t->nbytes + ALIGN - 1) / ALIGN * ALIGN;
    }
    long here = ftell(f);
    uint64_t pos = here < 0 ? 0 : (uint64_t)here;
    bad |= here < 0 || wr_pad(f, &pos);
    for (size_t i = 0; i < w->n_t && !bad; i++) {
        pos += w->t[i].nbytes;
        bad |= wr(f, w->t[i].data, w->t[i].nbytes) || wr_pad(f, &pos);
    }
    bad |= fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        rq_fail("cannot write '%s': %s (nothing was written at that path)", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}
