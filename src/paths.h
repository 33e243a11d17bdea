/* paths.h - where repliq finds things: the model cache, packaged model names,
 * and data files named relative to REPLIQ_DATA. */
#ifndef RQ_PATHS_H
#define RQ_PATHS_H

#include <stddef.h>

/* The cache folder: REPLIQ_CACHE, else ~/.cache/repliq. */
void rq_cache_dir(char *buf, size_t cap);

/* A model argument: an existing path is used as is; otherwise a packaged name
 * resolves to <cache>/<name>.gguf. Fails with a hint to 'repliq pull'. */
int rq_resolve_model(const char *arg, char *buf, size_t cap);

/* A data file: an existing path as is; otherwise $REPLIQ_DATA/<arg>. */
int rq_resolve_data(const char *arg, char *buf, size_t cap);

#endif
