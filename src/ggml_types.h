/* ggml_types.h - the tensor element types that GGUF files carry (ids as in ggml's
 * enum ggml_type), their block geometry, and scalar reference dequantizers. */
#ifndef RQ_GGML_TYPES_H
#define RQ_GGML_TYPES_H

#include <stddef.h>
#include <stdint.h>

enum rq_ggml_type {
    RQ_GGML_F32 = 0,
    RQ_GGML_F16 = 1,
    RQ_GGML_Q4_0 = 2,
    RQ_GGML_Q4_1 = 3,
    RQ_GGML_Q5_0 = 6,
    RQ_GGML_Q5_1 = 7,
    RQ_GGML_Q8_0 = 8,
    RQ_GGML_Q8_1 = 9,
    RQ_GGML_Q2_K = 10,
    RQ_GGML_Q3_K = 11,
    RQ_GGML_Q4_K = 12,
    RQ_GGML_Q5_K = 13,
    RQ_GGML_Q6_K = 14,
    RQ_GGML_Q8_K = 15,
    RQ_GGML_IQ2_XXS = 16,
    RQ_GGML_IQ2_XS = 17,
    RQ_GGML_IQ3_XXS = 18,
    RQ_GGML_IQ1_S = 19,
    RQ_GGML_IQ4_NL = 20,
    RQ_GGML_IQ3_S = 21,
    RQ_GGML_IQ2_S = 22,
    RQ_GGML_IQ4_XS = 23,
    RQ_GGML_I8 = 24,
    RQ_GGML_I16 = 25,
    RQ_GGML_I32 = 26,
    RQ_GGML_I64 = 27,
    RQ_GGML_F64 = 28,
    RQ_GGML_IQ1_M = 29,
    RQ_GGML_BF16 = 30,
    RQ_GGML_TQ1_0 = 34,
    RQ_GGML_TQ2_0 = 35,
    RQ_GGML_MXFP4 = 39,
    RQ_GGML_TYPE_LIMIT = 64, /* ids at or above this are refused outright, except: */
    /* repliq's packed tensor (qformat.h): one 1-D blob, ne[0] = bytes. 0x5251 "RQ",
     * far outside ggml's ids so llama.cpp refuses the file instead of misreading it. */
    RQ_GGML_RQ_PACKED = 21073
};

/* Dequantize n values (n a multiple of block_size) from packed blocks. */
typedef void (*rq_to_float_fn)(const void *src, float *dst, int64_t n);

typedef struct {
    const char *name;      /* as ggml names it: "q4_K", "f32", ... */
    int64_t block_size;    /* values per block */
    size_t type_size;      /* bytes per block */
    rq_to_float_fn to_float; /* NULL where repliq cannot dequantize this type yet */
    /* to_float reads the IQ lattice grids, a file generated outside the tree
     * (scripts/gen_iq_tables.py): rq_ggml_to_float loads them first and fails
     * with a message when they are missing, since to_float itself cannot fail. */
    int needs_tables;
} rq_ggml_traits;

/* NULL for an id that is not a known ggml type. */
const rq_ggml_traits *rq_ggml_traits_of(int type);

/* Bytes of a row of n values; 0 (with rq_error set) if n is not a multiple of
 * the block size or the type is unknown. */
size_t rq_ggml_row_size(int type, int64_t n);

/* Dequantize n values of the given type to f32. Fails with a clear message for
 * an unknown type, a type without a dequantizer, or n not a whole number of blocks. */
int rq_ggml_to_float(int type, const void *src, float *dst, int64_t n);

#endif
