/* gguf.h - a bounds-checked, memory-mapped reader for GGUF v2/v3 files, and a
 * writer that produces complete files atomically (temporary name, then rename). */
#ifndef RQ_GGUF_H
#define RQ_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum rq_gguf_vtype {
    RQ_GGUF_UINT8 = 0,
    RQ_GGUF_INT8 = 1,
    RQ_GGUF_UINT16 = 2,
    RQ_GGUF_INT16 = 3,
    RQ_GGUF_UINT32 = 4,
    RQ_GGUF_INT32 = 5,
    RQ_GGUF_FLOAT32 = 6,
    RQ_GGUF_BOOL = 7,
    RQ_GGUF_STRING = 8,
    RQ_GGUF_ARRAY = 9,
    RQ_GGUF_UINT64 = 10,
    RQ_GGUF_INT64 = 11,
    RQ_GGUF_FLOAT64 = 12,
    RQ_GGUF_VTYPE_COUNT
};

/* A string inside the mapped file: not NUL-terminated. */
typedef struct {
    const char *ptr;
    uint64_t len;
} rq_str;

typedef struct {
    char *key; /* NUL-terminated copy */
    int type;  /* enum rq_gguf_vtype */
    /* scalars, widened; the original width is in type */
    union {
        uint64_t u;
        int64_t i;
        double f;
        bool b;
        rq_str s;
    } v;
    /* arrays: element type, count, and the raw little-endian elements in the
     * file; string arrays are also split into strs (n entries). */
    int arr_type;
    uint64_t arr_n;
    const void *arr_data;
    rq_str *strs;
    /* the value's encoding in the file (after the type), for copying verbatim */
    const uint8_t *raw;
    uint64_t raw_len;
} rq_gguf_kv;

typedef struct {
    char *name;      /* NUL-terminated copy */
    int n_dims;      /* 1..4 */
    int64_t ne[4];   /* ne[0] is the row length (contiguous), unused dims are 1 */
    int type;        /* enum rq_ggml_type */
    uint64_t offset; /* relative to the data section */
    size_t nbytes;
    const void *data; /* into the mapping */
} rq_gguf_tensor;

typedef struct rq_gguf {
    char *path;
    const uint8_t *base; /* mapping (or caller's buffer) */
    size_t size;
    bool mapped;
    uint32_t version;
    uint64_t n_kv;
    rq_gguf_kv *kv;
    uint64_t n_tensors;
    rq_gguf_tensor *tensors;
    uint64_t alignment;
    uint64_t data_offset;
    /* Readers that build a file-like view of another format (Hugging Face
     * safetensors) keep what they own here; rq_gguf_close calls free_aux(aux). */
    void *aux;
    void (*free_aux)(void *aux);
} rq_gguf;

/* Open and validate a file: header, every key/value, the tensor table, each
 * tensor's extent inside the file. Fails with a message naming the problem. */
int rq_gguf_open(const char *path, rq_gguf **out);
/* The same over a caller's buffer (kept, not copied); used by tests and fuzzing. */
int rq_gguf_open_mem(const void *buf, size_t size, const char *name, rq_gguf **out);
void rq_gguf_close(rq_gguf *g);

const rq_gguf_kv *rq_gguf_find(const rq_gguf *g, const char *key);
const rq_gguf_tensor *rq_gguf_tensor_find(const rq_gguf *g, const char *name);

/* Typed getters. Missing key: return 1 and leave *out untouched (so callers can
 * keep a default). Wrong type: -1 with an error naming key and types. Found: 0. */
int rq_gguf_get_int(const rq_gguf *g, const char *key, int64_t *out);   /* any integer type */
int rq_gguf_get_float(const rq_gguf *g, const char *key, double *out);  /* f32/f64 (or int) */
int rq_gguf_get_bool(const rq_gguf *g, const char *key, bool *out);
int rq_gguf_get_str(const rq_gguf *g, const char *key, rq_str *out);
/* Array of the given element type; *n and *data from the file. */
int rq_gguf_get_arr(const rq_gguf *g, const char *key, int elem_type, uint64_t *n, const void **data);
int rq_gguf_get_strs(const rq_gguf *g, const char *key, uint64_t *n, const rq_str **strs);

/* Tell the kernel a tensor's bytes are no longer needed (after dequantizing
 * them), so a mapped file's pages do not add to the resident set. */
void rq_gguf_release(const rq_gguf *g, const rq_gguf_tensor *t);

const char *rq_gguf_vtype_name(int type);
bool rq_str_eq(rq_str s, const char *c);

/* ---- writer ---------------------------------------------------------------- */

typedef struct rq_gguf_writer rq_gguf_writer;

rq_gguf_writer *rq_gguf_writer_new(void);
void rq_gguf_writer_free(rq_gguf_writer *w);
/* Metadata, kept in insertion order; a later value for the same key replaces it. */
void rq_gguf_set_u32(rq_gguf_writer *w, const char *key, uint32_t v);
void rq_gguf_set_i32(rq_gguf_writer *w, const char *key, int32_t v);
void rq_gguf_set_u64(rq_gguf_writer *w, const char *key, uint64_t v);
void rq_gguf_set_f32(rq_gguf_writer *w, const char *key, float v);
void rq_gguf_set_bool(rq_gguf_writer *w, const char *key, bool v);
void rq_gguf_set_str(rq_gguf_writer *w, const char *key, const char *v);
/* Copy one key/value (any type, arrays included) from an open file. */
void rq_gguf_copy_kv(rq_gguf_writer *w, const rq_gguf_kv *kv);
/* Tensor of ne[0..n_dims) elements of a ggml type. data is borrowed: it must
 * stay valid until rq_gguf_write returns. */
int rq_gguf_add_tensor(rq_gguf_writer *w, const char *name, int type, int n_dims, const int64_t *ne,
                       const void *data, size_t nbytes);
/* Write to path + ".tmp", fsync, rename; nothing is left at path on failure. */
int rq_gguf_write(rq_gguf_writer *w, const char *path);

#endif
