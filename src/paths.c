/* paths.c - model cache and data folder resolution. */
#include "paths.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

void rq_cache_dir(char *buf, size_t cap) {
    const char *c = getenv("REPLIQ_CACHE"), *home = getenv("HOME");
    if (c && *c)
        snprintf(buf, cap, "%s", c);
    else
        snprintf(buf, cap, "%s/.cache/repliq", home && *home ? home : ".");
}

int rq_resolve_model(const char *arg, char *buf, size_t cap) {
    if (exists(arg)) {
        snprintf(buf, cap, "%s", arg);
        return 0;
    }
    if (strchr(arg, '/') || strstr(arg, ".gguf"))
        return rq_fail("model file '%s' not found (give a GGUF file, a Hugging Face folder, or a packaged name from "
                       "'repliq list')",
                       arg);
    char dir[1024];
    rq_cache_dir(dir, sizeof dir);
    snprintf(buf, cap, "%s/%s.gguf", dir, arg);
    if (exists(buf)) return 0;
    return rq_fail("model '%s' is neither a file nor a cached model (looked for %s); run 'repliq pull %s' or "
                   "'repliq list'",
                   arg, buf, arg);
}

int rq_resolve_data(const char *arg, char *buf, size_t cap) {
    if (exists(arg)) {
        snprintf(buf, cap, "%s", arg);
        return 0;
    }
    const char *d = getenv("REPLIQ_DATA");
    if (d && *d) {
        snprintf(buf, cap, "%s/%s", d, arg);
        if (exists(buf)) return 0;
    }
    return rq_fail("text file '%s' not found%s%s%s", arg, d && *d ? " (nor in REPLIQ_DATA=" : "; set REPLIQ_DATA to the data folder",
                   d && *d ? d : "", d && *d ? ")" : "");
}
