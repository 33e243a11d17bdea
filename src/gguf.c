/* gguf.c - GGUF v2/v3 reader: every read is bounds-checked against the file size
 * and every count is checked for overflow before it is used, so a malformed file
 * is refused with a message and never read out of bounds. */
#include "gguf.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ggml_types.h"
#include "util.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

typedef struct {
    const uint8_t *p;
    size_t size, pos;
    const char *name;
} cursor;

static const char *vtype_names[RQ_GGUF_VTYPE_COUNT] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool",  "string", "array", "uint64", "int64", "float64"};

const char *rq_gguf_vtype_name(int type) {
    return type >= 0 && type < RQ_GGUF_VTYPE_COUNT ? vtype_names[type] : "invalid";
}

bool rq_str_eq(rq_str s, const char *c) { return strlen(c) == s.len && memcmp(s.ptr, c, s.len) == 0; }

static size_t scalar_size(int type) {
    switch (type) {
    case RQ_GGUF_UINT8: case RQ_GGUF_INT8: case RQ_GGUF_BOOL: return 1;
    case RQ_GGUF_UINT16: case RQ_GGUF_INT16: return 2;
    case RQ_GGUF_UINT32: case RQ_GGUF_INT32: case RQ_GGUF_FLOAT32: return 4;
    case RQ_GGUF_UINT64: case RQ_GGUF_INT64: case RQ_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

static int need(cursor *c, uint64_t n, const char *what) {
    if (n > c->size - c->pos)
        return rq_fail("%s: truncated file: %s needs %llu bytes at offset %zu but the file has %zu",
                       c->name, what, (unsigned long long)n, c->pos, c->size);
    return 0;
}

static int rd(cursor *c, void *dst, size_t n, const char *what) {
    if (need(c, n, what)) return -1;
    memcpy(dst, c->p + c->pos, n);
    c->pos += n;
    return 0;
}

static int rd_u32(cursor *c, uint32_t *v, const char *what) { return rd(c, v, 4, what); }
static int rd_u64(cursor *c, uint64_t *v, const char *what) { return rd(c, v, 8, what); }

static int rd_str(cursor *c, rq_str *s, const char *what) {
    uint64_t len;
    if (rd_u64(c, &len, what) || need(c, len, what)) return -1;
    s->ptr = (const char *)c->p + c->pos;
    s->len = len;
    c->pos += len;
    return 0;
}

/* Scalar at the cursor into kv->v, widened. */
static void decode_scalar(int type, const uint8_t *p, rq_gguf_kv *kv) {
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; float f32;
            uint64_t u64; int64_t i64; double f64; } x;
    memcpy(&x, p, scalar_size(type));
    switch (type) {
    case RQ_GGUF_UINT8: kv->v.u = x.u8; break;
    case RQ_GGUF_INT8: kv->v.i = x.i8; break;
    case RQ_GGUF_UINT16: kv->v.u = x.u16; break;
    case RQ_GGUF_INT16: kv->v.i = x.i16; break;
    case RQ_GGUF_UINT32: kv->v.u = x.u32; break;
    case RQ_GGUF_INT32: kv->v.i = x.i32; break;
    case RQ_GGUF_FLOAT32: kv->v.f = x.f32; break;
    case RQ_GGUF_BOOL: kv->v.b = x.u8 != 0; break;
    case RQ_GGUF_UINT64: kv->v.u = x.u64; break;
    case RQ_GGUF_INT64: kv->v.i = x.i64; break;
    case RQ_GGUF_FLOAT64: kv->v.f = x.f64; break;
    default: break;
    }
}

static int read_kv(cursor *c, rq_gguf_kv *kv, uint64_t idx) {
    rq_str key;
    uint32_t type;
    if (rd_str(c, &key, "key/value name")) return rq_fail_ctx("key/value %llu", (unsigned long long)idx);
    kv->key = rq_strndup(key.ptr, key.len);
    if (strlen(kv->key) != key.len || key.len == 0)
        return rq_fail("%s: key/value %llu has an empty name or one with a NUL byte", c->name,
                       (unsigned long long)idx);
    if (rd_u32(c, &type, "value type")) return rq_fail_ctx("key '%s'", kv->key);
    if (type >= RQ_GGUF_VTYPE_COUNT)
        return rq_fail("%s: key '%s' has unknown value type %u (known: 0..12)", c->name, kv->key, type);
    kv->type = (int)type;
    kv->raw = c->p + c->pos;
    size_t start = c->pos;
    if (type == RQ_GGUF_STRING) {
        if (rd_str(c, &kv->v.s, "string value")) return rq_fail_ctx("key '%s'", kv->key);
    } else if (type == RQ_GGUF_ARRAY) {
        uint32_t et;
        uint64_t n;
        if (rd_u32(c, &et, "array element type") || rd_u64(c, &n, "array length"))
            return rq_fail_ctx("key '%s'", kv->key);
        if (et >= RQ_GGUF_VTYPE_COUNT || et == RQ_GGUF_ARRAY)
            return rq_fail("%s: key '%s' is an array of %s elements (type %u), which GGUF readers do not accept",
                           c->name, kv->key, et == RQ_GGUF_ARRAY ? "array" : "unknown", et);
        kv->arr_type = (int)et;
        kv->arr_n = n;
        kv->arr_data = c->p + c->pos;
        if (et == RQ_GGUF_STRING) {
            /* each string needs at least its 8-byte length: bound n before allocating */
            if (n > (c->size - c->pos) / 8)
                return rq_fail("%s: key '%s': array of %llu strings cannot fit in the file", c->name, kv->key,
                               (unsigned long long)n);
            kv->strs = rq_malloc(n * sizeof(rq_str));
            for (uint64_t i = 0; i < n; i++)
                if (rd_str(c, &kv->strs[i], "string array element"))
                    return rq_fail_ctx("key '%s' element %llu", kv->key, (unsigned long long)i);
        } else {
            size_t es = scalar_size((int)et);
            if (n > (c->size - c->pos) / es)
                return rq_fail("%s: truncated file: key '%s' declares %llu elements of %s past the end", c->name,
                               kv->key, (unsigned long long)n, vtype_names[et]);
            c->pos += n * es;
        }
    } else {
        size_t es = scalar_size((int)type);
        if (need(c, es, "scalar value")) return rq_fail_ctx("key '%s'", kv->key);
        decode_scalar((int)type, c->p + c->pos, kv);
        c->pos += es;
    }
    kv->raw_len = c->pos - start;
    return 0;
}

static int read_tensor_info(cursor *c, rq_gguf_tensor *t, uint64_t idx) {
    rq_str name;
    uint32_t n_dims, type;
    if (rd_str(c, &name, "tensor name")) return rq_fail_ctx("tensor %llu", (unsigned long long)idx);
    t->name = rq_strndup(name.ptr, name.len);
    if (strlen(t->name) != name.len || name.len == 0)
        return rq_fail("%s: tensor %llu has an empty name or one with a NUL byte", c->name, (unsigned long long)idx);
    if (rd_u32(c, &n_dims, "tensor dimension count")) return rq_fail_ctx("tensor '%s'", t->name);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return rq_fail("%s: tensor '%s' has %u dimensions (allowed 1..%d)", c->name, t->name, n_dims, GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    for (int d = 0; d < 4; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        uint64_t ne;
        if (rd_u64(c, &ne, "tensor dimension")) return rq_fail_ctx("tensor '%s'", t->name);
        if (ne > (uint64_t)INT64_MAX / 2)
            return rq_fail("%s: tensor '%s' dimension %u is %llu, too large", c->name, t->name, d,
                           (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
    }
    if (rd_u32(c, &type, "tensor type") || rd_u64(c, &t->offset, "tensor offset"))
        return rq_fail_ctx("tensor '%s'", t->name);
    const rq_ggml_traits *tr = rq_ggml_traits_of((int)type);
    if (!tr)
        return rq_fail("%s: tensor '%s' has unknown ggml type id %u; this file needs a newer repliq or is damaged",
                       c->name, t->name, type);
    t->type = (int)type;
    if (t->type == RQ_GGML_RQ_PACKED && t->n_dims != 1)
        return rq_fail("%s: tensor '%s' is rq_packed with %d dimensions; a packed blob is 1-D (ne[0] = bytes)",
                       c->name, t->name, t->n_dims);
    if (t->ne[0] % tr->block_size != 0)
        return rq_fail("%s: tensor '%s' row length %lld is not a multiple of %s's block size %lld", c->name,
                       t->name, (long long)t->ne[0], tr->name, (long long)tr->block_size);
    /* element count and byte size with overflow checks */
    /* every partial product of the dimensions (zeros skipped) must fit in int64 */
    uint64_t nel = 1, nz = 1;
    for (int d = 0; d < 4; d++) {
        uint64_t ne = (uint64_t)t->ne[d];
        if (ne != 0 && nz > (uint64_t)INT64_MAX / ne)
            return rq_fail("%s: tensor '%s' element count overflows", c->name, t->name);
        if (ne != 0) nz *= ne;
        nel *= ne;
    }
    uint64_t blocks = nel / (uint64_t)tr->block_size;
    if (blocks > SIZE_MAX / tr->type_size) return rq_fail("%s: tensor '%s' byte size overflows", c->name, t->name);
    t->nbytes = (size_t)(blocks * tr->type_size);
    return 0;
}

void rq_gguf_close(rq_gguf *g) {
    if (!g) return;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].strs);
    }
    free(g->kv);
    for (uint64_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->tensors);
    if (g->mapped) rq_unmap_file(g->base, g->size);
    if (g->free_aux) g->free_aux(g->aux);
    free(g->path);
    free(g);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Refuse duplicate names among n strings (sorted copy of pointers). */
static int check_unique(const char *file, const char *what, char **names, uint64_t n) {
    if (n < 2) return 0;
    char **s = rq_malloc(n * sizeof *s);
    memcpy(s, names, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_str);
    int rc = 0;
    for (uint64_t i = 1; i < n && !rc; i++)
        if (strcmp(s[i - 1], s[i]) == 0) rc = rq_fail("%s: duplicate %s '%s'", file, what, s[i]);
    free(s);
    return rc;
}

static int parse(rq_gguf *g) {
    cursor c = {g->base, g->size, 0, g->path};
    char magic[4];
    if (rd(&c, magic, 4, "magic")) return -1;
    if (memcmp(magic, "GGUF", 4) != 0)
        return rq_fail("%s: not a GGUF file (bad magic; expected 'GGUF' in the first 4 bytes)", g->path);
    if (rd_u32(&c, &g->version, "version")) return -1;
    if (g->version != 2 && g->version != 3)
        return rq_fail("%s: GGUF version %u is not supported (supported: 2, 3)", g->path, g->version);
    uint64_t n_tensors, n_kv;
    if (rd_u64(&c, &n_tensors, "tensor count") || rd_u64(&c, &n_kv, "key/value count")) return -1;
    /* every kv takes at least 8+1+4+1 bytes and every tensor info 8+1+4+8+4+8: bound the counts by the
     * file size before allocating anything */
    if (n_kv > g->size / 14)
        return rq_fail("%s: key/value count %llu is impossible for a file of %zu bytes", g->path,
                       (unsigned long long)n_kv, g->size);
    if (n_tensors > g->size / 33)
        return rq_fail("%s: tensor count %llu is impossible for a file of %zu bytes", g->path,
                       (unsigned long long)n_tensors, g->size);
    g->kv = rq_calloc(n_kv ? n_kv : 1, sizeof *g->kv);
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = i + 1;
        if (read_kv(&c, &g->kv[i], i)) return -1;
    }
    char **names = rq_malloc((n_kv > n_tensors ? n_kv : n_tensors) * sizeof(char *) + 1);
    for (uint64_t i = 0; i < n_kv; i++) names[i] = g->kv[i].key;
    int rc = check_unique(g->path, "key", names, n_kv);
    if (rc) {
        free(names);
        return rc;
    }
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const rq_gguf_kv *al = rq_gguf_find(g, "general.alignment");
    if (al) {
        if (al->type != RQ_GGUF_UINT32 || al->v.u == 0 || (al->v.u & (al->v.u - 1)) != 0) {
            free(names);
            return rq_fail("%s: general.alignment must be a uint32 power of two", g->path);
        }
        g->alignment = al->v.u;
    }
    g->tensors = rq_calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    for (uint64_t i = 0; i < n_tensors; i++) {
        g->n_tensors = i + 1;
        if (read_tensor_info(&c, &g->tensors[i], i)) {
            free(names);
            return -1;
        }
    }
    for (uint64_t i = 0; i < n_tensors; i++) names[i] = g->tensors[i].name;
    rc = check_unique(g->path, "tensor name", names, n_tensors);
    free(names);
    if (rc) return rc;
    uint64_t data = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
    if (n_tensors > 0 && data > g->size)
        return rq_fail("%s: truncated file: the tensor data section would start at %llu, past the end (%zu)", g->path,
                       (unsigned long long)data, g->size);
    g->data_offset = data;
    for (uint64_t i = 0; i < n_tensors; i++) {
        rq_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment != 0)
            return rq_fail("%s: tensor '%s' offset %llu is not a multiple of the alignment %llu", g->path, t->name,
                           (unsigned long long)t->offset, (unsigned long long)g->alignment);
        uint64_t avail = g->size - data;
        if (t->offset > avail || t->nbytes > avail - t->offset)
            return rq_fail("%s: truncated file: tensor '%s' (%zu bytes at data offset %llu) extends past the end "
                           "of the file (%zu bytes); re-download or re-create it",
                           g->path, t->name, t->nbytes, (unsigned long long)t->offset, g->size);
        t->data = g->base + data + t->offset;
    }
    return 0;
}

int rq_gguf_open_mem(const void *buf, size_t size, const char *name, rq_gguf **out) {
    rq_gguf *g = rq_calloc(1, sizeof *g);
    g->path = rq_strdup(name ? name : "<memory>");
    g->base = buf;
    g->size = size;
    if (parse(g)) {
        rq_gguf_close(g);
        return -1;
    }
    *out = g;
    return 0;
}

int rq_gguf_open(const char *path, rq_gguf **out) {
    const void *map;
    size_t size;
    if (rq_map_file(path, &map, &size)) return -1;
    rq_gguf *g = rq_calloc(1, sizeof *g);
    g->path = rq_strdup(path);
    g->base = map;
    g->size = size;
    g->mapped = map != NULL;
    if (parse(g)) {
        rq_gguf_close(g);
        return -1;
    }
    *out = g;
    return 0;
}

void rq_gguf_release(const rq_gguf *g, const rq_gguf_tensor *t) {
    if (!g->mapped || t->nbytes == 0) return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)t->data + page - 1) / page * page, hi = ((uintptr_t)t->data + t->nbytes) / page * page;
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED); /* a hint: failure changes nothing */
}

const rq_gguf_kv *rq_gguf_find(const rq_gguf *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

const rq_gguf_tensor *rq_gguf_tensor_find(const rq_gguf *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

static int wrong_type(const rq_gguf *g, const rq_gguf_kv *kv, const char *want) {
    return rq_fail("%s: key '%s' is %s, expected %s", g->path, kv->key, rq_gguf_vtype_name(kv->type), want);
}

int rq_gguf_get_int(const rq_gguf *g, const char *key, int64_t *out) {
    const rq_gguf_kv *kv = rq_gguf_find(g, key);
    if (!kv) return 1;
    switch (kv->type) {
    case RQ_GGUF_UINT8: case RQ_GGUF_UINT16: case RQ_GGUF_UINT32: case RQ_GGUF_UINT64:
        if (kv->v.u > (uint64_t)INT64_MAX) return rq_fail("%s: key '%s' value is too large", g->path, key);
        *out = (int64_t)kv->v.u;
        return 0;
    case RQ_GGUF_INT8: case RQ_GGUF_INT16: case RQ_GGUF_INT32: case RQ_GGUF_INT64:
        *out = kv->v.i;
        return 0;
    default: return wrong_type(g, kv, "an integer");
    }
}

int rq_gguf_get_float(const rq_gguf *g, const char *key, double *out) {
    const rq_gguf_kv *kv = rq_gguf_find(g, key);
    if (!kv) return 1;
    if (kv->type == RQ_GGUF_FLOAT32 || kv->type == RQ_GGUF_FLOAT64) {
        *out = kv->v.f;
        return 0;
    }
    int64_t i;
    int rc = rq_gguf_get_int(g, key, &i);
    if (rc) return wrong_type(g, kv, "a number");
    *out = (double)i;
    return 0;
}

int rq_gguf_get_bool(const rq_gguf *g, const char *key, bool *out) {
    const rq_gguf_kv *kv = rq_gguf_find(g, key);
    if (!kv) return 1;
    if (kv->type != RQ_GGUF_BOOL) return wrong_type(g, kv, "bool");
    *out = kv->v.b;
    return 0;
}

int rq_gguf_get_str(const rq_gguf *g, const char *key, rq_str *out) {
    const rq_gguf_kv *kv = rq_gguf_find(g, key);
    if (!kv) return 1;
    if (kv->type != RQ_GGUF_STRING) return wrong_type(g, kv, "string");
    *out = kv->v.s;
    return 0;
}

int rq_gguf_get_arr(const rq_gguf *g, const char *key, int elem_type, uint64_t *n, const void **data) {
    const rq_gguf_kv *kv = rq_gguf_find(g, key);
    if (!kv) return 1;
    if (kv->type != RQ_GGUF_ARRAY || kv->arr_type != elem_type)
        return rq_fail("%s: key '%s' is %s%s%s, expected array of %s", g->path, key, rq_gguf_vtype_name(kv->type),
                       kv->type == RQ_GGUF_ARRAY ? " of " : "",
                       kv->type == RQ_GGUF_ARRAY ? rq_gguf_vtype_name(kv->arr_type) : "",
                       rq_gguf_vtype_name(elem_type));
    *n = kv->arr_n;
    *data = kv->arr_data;
    return 0;
}

int rq_gguf_get_strs(const rq_gguf *g, const char *key, uint64_t *n, const rq_str **strs) {
    const void *data;
    int rc = rq_gguf_get_arr(g, key, RQ_GGUF_STRING, n, &data);
    if (rc) return rc;
    *strs = rq_gguf_find(g, key)->strs;
    return 0;
}
