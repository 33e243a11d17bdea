/* safetensors.c - reads .safetensors files: maps the file, parses the JSON header
 * with cJSON and checks every tensor's extent before anything points into it. */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_types.h"
#include "util.h"

static const struct {
    const char *name;
    size_t size;
} dtypes[RQ_ST_DTYPE_COUNT] = {
    [RQ_ST_BOOL] = {"BOOL", 1},       [RQ_ST_U8] = {"U8", 1},           [RQ_ST_I8] = {"I8", 1},
    [RQ_ST_F8_E5M2] = {"F8_E5M2", 1}, [RQ_ST_F8_E4M3] = {"F8_E4M3", 1}, [RQ_ST_I16] = {"I16", 2},
    [RQ_ST_U16] = {"U16", 2},         [RQ_ST_F16] = {"F16", 2},         [RQ_ST_BF16] = {"BF16", 2},
    [RQ_ST_I32] = {"I32", 4},         [RQ_ST_U32] = {"U32", 4},         [RQ_ST_F32] = {"F32", 4},
    [RQ_ST_F64] = {"F64", 8},         [RQ_ST_I64] = {"I64", 8},         [RQ_ST_U64] = {"U64", 8},
};

const char *rq_st_dtype_name(int dtype) { return dtype >= 0 && dtype < RQ_ST_DTYPE_COUNT ? dtypes[dtype].name : "?"; }

int rq_st_ggml_type(int dtype) {
    switch (dtype) {
    case RQ_ST_F32:
        return RQ_GGML_F32;
    case RQ_ST_F16:
        return RQ_GGML_F16;
    case RQ_ST_BF16:
        return RQ_GGML_BF16;
    default:
        return -1;
    }
}

void rq_st_close(rq_st_file *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    if (f->mapped) rq_unmap_file(f->base, f->size);
    free(f->path);
    free(f);
}

const rq_st_tensor *rq_st_find(const rq_st_file *f, const char *name) {
    for (size_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

/* A JSON number that is an integer in [0, 2^53] (exact in a double). */
static bool json_u64(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d) return false;
    *out = (uint64_t)d;
    return true;
}

static int parse_tensor(const rq_st_file *f, const cJSON *j, rq_st_tensor *t, uint64_t data_len) {
    const char *p = f->path, *n = t->name;
    if (!cJSON_IsObject(j)) return rq_fail("%s: tensor '%s': header entry is not a JSON object", p, n);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    if (!cJSON_IsString(dt)) return rq_fail("%s: tensor '%s': 'dtype' is missing or not a string", p, n);
    t->dtype = -1;
    for (int d = 0; d < RQ_ST_DTYPE_COUNT; d++)
        if (strcmp(dt->valuestring, dtypes[d].name) == 0) t->dtype = d;
    if (t->dtype < 0)
        return rq_fail("%s: tensor '%s': unknown dtype '%.32s' (the safetensors format defines BOOL, U8, I8, "
                       "F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64)",
                       p, n, dt->valuestring);
    if (!cJSON_IsArray(shape)) return rq_fail("%s: tensor '%s': 'shape' is missing or not an array", p, n);
    int nd = cJSON_GetArraySize(shape);
    if (nd > RQ_ST_MAX_DIMS)
        return rq_fail("%s: tensor '%s' has %d dimensions (at most %d supported)", p, n, nd, RQ_ST_MAX_DIMS);
    t->n_dims = nd;
    /* element count with an overflow check on every partial product */
    uint64_t nel = 1;
    bool zero = false;
    for (int d = 0; d < nd; d++) {
        uint64_t v;
        if (!json_u64(cJSON_GetArrayItem(shape, d), &v) || v > (uint64_t)INT64_MAX)
            return rq_fail("%s: tensor '%s': shape[%d] is not a non-negative integer", p, n, d);
        t->shape[d] = (int64_t)v;
        if (v == 0)
            zero = true;
        else if (nel > (uint64_t)INT64_MAX / v)
            return rq_fail("%s: tensor '%s': the shape's element count overflows", p, n);
        else
            nel *= v;
    }
    if (zero) nel = 0;
    t->n_elem = (int64_t)nel;
    size_t es = dtypes[t->dtype].size;
    if (nel > SIZE_MAX / es) return rq_fail("%s: tensor '%s': byte size overflows", p, n);
    uint64_t begin, end;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_u64(cJSON_GetArrayItem(offs, 0), &begin) ||
        !json_u64(cJSON_GetArrayItem(offs, 1), &end))
        return rq_fail("%s: tensor '%s': 'data_offsets' must be two non-negative integers [begin, end]", p, n);
    if (begin > end || end > data_len)
        return rq_fail("%s: tensor '%s': data_offsets [%llu, %llu] lie outside the data section of %llu bytes "
                       "(file truncated or header damaged)",
                       p, n, (unsigned long long)begin, (unsigned long long)end, (unsigned long long)data_len);
    if (end - begin != nel * es)
        return rq_fail("%s: tensor '%s': data_offsets span %llu bytes, but shape and dtype %s need %llu", p, n,
                       (unsigned long long)(end - begin), dtypes[t->dtype].name, (unsigned long long)(nel * es));
    t->offset = begin;
    t->nbytes = (size_t)(end - begin);
    return 0;
}

static int cmp_offset(const void *a, const void *b) {
    const rq_st_tensor *x = *(const rq_st_tensor *const *)a, *y = *(const rq_st_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset ? 1 : (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const rq_st_tensor *const *)a)->name, (*(const rq_st_tensor *const *)b)->name);
}

/* No two tensors share a byte, and no name appears twice (JSON allows duplicate keys). */
static int check_disjoint(const rq_st_file *f) {
    if (f->n_tensors < 2) return 0;
    const rq_st_tensor **s = rq_malloc(f->n_tensors * sizeof *s);
    for (size_t i = 0; i < f->n_tensors; i++)
        s[i] = &f->tensors[i];
    int rc = 0;
    qsort(s, f->n_tensors, sizeof *s, cmp_name);
    for (size_t i = 1; i < f->n_tensors && !rc; i++)
        if (strcmp(s[i - 1]->name, s[i]->name) == 0)
            rc = rq_fail("%s: tensor '%s' is listed twice", f->path, s[i]->name);
    qsort(s, f->n_tensors, sizeof *s, cmp_offset);
    uint64_t end = 0;
    const rq_st_tensor *prev = NULL;
    for (size_t i = 0; i < f->n_tensors && !rc; i++) {
        if (s[i]->nbytes == 0) continue;
        if (prev && s[i]->offset < end)
            rc = rq_fail("%s: tensors '%s' and '%s' overlap (bytes %llu..%llu and %llu..%llu of the data section)",
                         f->path, prev->name, s[i]->name, (unsigned long long)prev->offset, (unsigned long long)end,
                         (unsigned long long)s[i]->offset, (unsigned long long)(s[i]->offset + s[i]->nbytes));
        prev = s[i];
        end = s[i]->offset + s[i]->nbytes;
    }
    free(s);
    return rc;
}

static int parse(rq_st_file *f) {
    if (f->size < 8)
        return rq_fail("%s: %zu bytes is too short for a safetensors file (it starts with an 8-byte header "
                       "length)",
                       f->path, f->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | f->base[i];
    if (hlen == 0 || hlen > f->size - 8)
        return rq_fail("%s: header length %llu runs past the end of the file (%zu bytes); the file is truncated or "
                       "not safetensors",
                       f->path, (unsigned long long)hlen, f->size);
    const char *hdr = (const char *)f->base + 8;
    if (hdr[0] != '{') return rq_fail("%s: the header does not start with '{'; not a safetensors file", f->path);
    const char *jend = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &jend, false);
    if (!root || !cJSON_IsObject(root)) {
        size_t at = jend ? (size_t)(jend - hdr) : 0;
        cJSON_Delete(root);
        return rq_fail("%s: the JSON header (%llu bytes) does not parse (near byte %zu)", f->path,
                       (unsigned long long)hlen, at);
    }
    /* after the JSON, the format allows only space padding */
    for (const char *q = jend; q && q < hdr + hlen; q++)
        if (*q != ' ' && *q != '\n' && *q != '\r' && *q != '\t') {
            cJSON_Delete(root);
            return rq_fail("%s: stray bytes after the JSON header", f->path);
        }
    uint64_t data_len = f->size - 8 - hlen;
    const uint8_t *data = f->base + 8 + hlen;
    size_t n = 0;
    for (const cJSON *j = root->child; j; j = j->next)
        n++;
    f->tensors = rq_calloc(n ? n : 1, sizeof *f->tensors);
    int rc = 0;
    for (const cJSON *j = root->child; j && !rc; j = j->next) {
        if (strcmp(j->string, "__metadata__") == 0) continue;
        rq_st_tensor *t = &f->tensors[f->n_tensors++];
        t->name = rq_strdup(j->string);
        rc = parse_tensor(f, j, t, data_len);
        if (!rc) t->data = data + t->offset;
    }
    cJSON_Delete(root);
    return rc ? rc : check_disjoint(f);
}

int rq_st_open_mem(const void *buf, size_t size, const char *name, rq_st_file **out) {
    rq_st_file *f = rq_calloc(1, sizeof *f);
    f->path = rq_strdup(name);
    f->base = buf;
    f->size = size;
    if (parse(f)) {
        rq_st_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

int rq_st_open(const char *path, rq_st_file **out) {
    const void *map;
    size_t size;
    if (rq_map_file(path, &map, &size)) return -1;
    rq_st_file *f = rq_calloc(1, sizeof *f);
    f->path = rq_strdup(path);
    f->base = map;
    f->size = size;
    f->mapped = map != NULL;
    if (parse(f)) {
        rq_st_close(f);
        return -1;
    }
    *out = f;
    return 0;
}
