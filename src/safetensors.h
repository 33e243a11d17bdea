/* safetensors.h - a bounds-checked, memory-mapped reader for Hugging Face
 * .safetensors files: an 8-byte header length, a JSON header, then raw tensors. */
#ifndef RQ_SAFETENSORS_H
#define RQ_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RQ_ST_MAX_DIMS 8

/* The dtypes of the safetensors format. Only F32, F16 and BF16 map to ggml types
 * (rq_st_ggml_type); the others are parsed so that their extents can be checked. */
enum rq_st_dtype {
    RQ_ST_BOOL,
    RQ_ST_U8,
    RQ_ST_I8,
    RQ_ST_F8_E5M2,
    RQ_ST_F8_E4M3,
    RQ_ST_I16,
    RQ_ST_U16,
    RQ_ST_F16,
    RQ_ST_BF16,
    RQ_ST_I32,
    RQ_ST_U32,
    RQ_ST_F32,
    RQ_ST_F64,
    RQ_ST_I64,
    RQ_ST_U64,
    RQ_ST_DTYPE_COUNT
};

typedef struct {
    char *name;
    int dtype;                     /* enum rq_st_dtype */
    int n_dims;                    /* 0 (a scalar) .. RQ_ST_MAX_DIMS */
    int64_t shape[RQ_ST_MAX_DIMS]; /* as in the file: [rows, cols], the last one contiguous */
    int64_t n_elem;
    uint64_t offset; /* from the start of the data section */
    size_t nbytes;
    const void *data; /* into the mapping; not necessarily aligned */
} rq_st_tensor;

typedef struct {
    char *path;
    const uint8_t *base; /* mapping, or the caller's buffer */
    size_t size;
    bool mapped;
    size_t n_tensors;
    rq_st_tensor *tensors; /* in header order */
} rq_st_file;

/* Open and validate a file: header length, JSON, every tensor's dtype, shape and
 * extent (inside the data section, size matching the shape, no two overlapping).
 * Fails with a message naming the file and the tensor. */
int rq_st_open(const char *path, rq_st_file **out);
/* The same over a caller's buffer (kept, not copied); used by tests and fuzzing. */
int rq_st_open_mem(const void *buf, size_t size, const char *name, rq_st_file **out);
void rq_st_close(rq_st_file *f);

const rq_st_tensor *rq_st_find(const rq_st_file *f, const char *name);
const char *rq_st_dtype_name(int dtype);
/* The ggml type id holding this dtype unchanged (F32 0, F16 1, BF16 30), or -1. */
int rq_st_ggml_type(int dtype);

#endif
