/* grid.h - the uniform b-bit grid (1..8 bits, symmetric or with a minimum, per
 * channel or per group, clipping search, grid offset, nearest or stochastic
 * rounding, noise), and the quantized tensor that RTN and GPTQ both produce. */
#ifndef RQ_GRID_H
#define RQ_GRID_H

#include <stdbool.h>
#include <stdint.h>

typedef enum { RQ_ROUND_NEAREST = 0, RQ_ROUND_STOCHASTIC = 1 } rq_round;

/* How the values of one tensor are mapped to codes. Defaults: rq_grid_default(). */
typedef struct {
    int bits;      /* 1..8 */
    bool sym;      /* true: levels s*(q - (2^b-1)/2 + offset); false: min + s*(q + offset) */
    int64_t group; /* values per group along a row; 0 = one group per row (per channel).
                    * When it does not divide the row, the last group is shorter. */
    bool mse;      /* search the clipping ratio per group minimising the squared error */
    float mse_min; /* smallest clipping ratio searched, in (0, 1] (default 0.5) */
    int mse_steps; /* ratios tried from 1 down to mse_min (default 20) */
    float offset;  /* grid shifted by this fraction of a step, in [-0.5, 0.5] */
    rq_round round;
    float noise; /* uniform noise in [-noise/2, noise/2] steps added before rounding */
    /* 1-bit only: an extra binary residual, sign times a per-row scale, on the
     * salient columns (BiLLM's idea); salient_frac of the columns, at least 1. */
    bool binres;
    float salient_frac;
} rq_grid;

rq_grid rq_grid_default(void); /* 4 bits, asymmetric, group 128, no search, nearest */

/* Deterministic generator (splitmix64): the same seed gives the same stream on
 * every machine and thread count, because each row is seeded on its own. */
typedef struct {
    uint64_t s;
} rq_rng;
void rq_rng_seed(rq_rng *r, uint64_t seed, uint64_t stream);
uint64_t rq_rng_next(rq_rng *r);
float rq_rng_uniform(rq_rng *r); /* [0, 1) with 24 random bits */

/* A quantized [rows, cols] matrix, codes unpacked one per byte. The scale and
 * min arrays hold f16 bit patterns: what the file stores is what is used. */
typedef struct {
    rq_grid grid; /* bits, sym, offset, binres as quantized (the rest informative) */
    int64_t rows, cols;
    int64_t group;    /* resolved: 1..cols */
    int64_t n_groups; /* per row: ceil(cols / group) */
    uint8_t *q;       /* [rows, cols] codes 0..2^bits-1 */
    uint16_t *scale;  /* [rows, n_groups] f16 */
    uint16_t *min;    /* [rows, n_groups] f16; NULL when symmetric */
    /* binres: residual on salient columns (n_sal == 0 otherwise) */
    int64_t n_sal;
    int32_t *sal_cols; /* [n_sal] strictly increasing column indices */
    uint8_t *rq;       /* [rows, n_sal] residual bits: value rscale * (2*bit - 1) */
    uint16_t *rscale;  /* [rows] f16 */
} rq_qtensor;

/* Allocate the arrays for a [rows, cols] tensor on grid g (n_sal residual columns). */
void rq_qtensor_alloc(rq_qtensor *t, const rq_grid *g, int64_t rows, int64_t cols, int64_t n_sal);
void rq_qtensor_free(rq_qtensor *t);

/* The value of code q under group parameters (scale, min as floats). */
float rq_grid_value(const rq_grid *g, float scale, float min, int q);

/* Fit one group's parameters to w[0..n) (importance weights imp, or NULL for
 * plain squared error), rounded to f16 before use. min is 0 when symmetric. */
void rq_grid_fit(const rq_grid *g, const float *w, const float *imp, int64_t n, uint16_t *scale, uint16_t *min);

/* The code for value w under (scale, min): nearest, or stochastic with rng, with
 * noise injected first when g->noise > 0. rng may be NULL only for nearest, no noise. */
int rq_grid_code(const rq_grid *g, float scale, float min, float w, rq_rng *rng);

/* Reference dequantization of the whole tensor to out[rows, cols]. */
void rq_qtensor_dequant(const rq_qtensor *t, float *out);

/* Validate a grid; fails with a message naming the field. */
int rq_grid_check(const rq_grid *g);

#endif
