/* cmd_mix.c - repliq mix: a file of A's tensors with some taken from B. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mix.h"
#include "util.h"

#define MIX_USAGE "usage: repliq mix -a A.gguf -b B.gguf --from-b PATTERN[,PATTERN...] -o OUT.gguf"

int cmd_mix(int argc, char **argv) {
    const char *a = NULL, *b = NULL, *out = NULL, *list = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-a"))
            a = cli_val("mix", argc, argv, &i);
        else if (!strcmp(argv[i], "-b"))
            b = cli_val("mix", argc, argv, &i);
        else if (!strcmp(argv[i], "-o"))
            out = cli_val("mix", argc, argv, &i);
        else if (!strcmp(argv[i], "--from-b"))
            list = cli_val("mix", argc, argv, &i);
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("%s\n  every tensor from A, except those whose GGUF names match a pattern (fnmatch globs, "
                   "e.g. 'blk.*.ffn_down.weight'), taken from B; both quantized from the same model\n",
                   MIX_USAGE);
            return 0;
        } else {
            fprintf(stderr, "repliq mix: unknown option '%s'\n%s\n", argv[i], MIX_USAGE);
            return 2;
        }
    }
    if (!a || !b || !out || !list) {
        fprintf(stderr, "repliq mix: -a, -b, --from-b and -o are required\n%s\n", MIX_USAGE);
        return 2;
    }
    char *copy = rq_malloc(strlen(list) + 1);
    strcpy(copy, list);
    const char **pats = rq_calloc(strlen(list) / 2 + 2, sizeof *pats);
    int n = 0;
    for (char *save = NULL, *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save))
        pats[n++] = p;
    rq_mix_report rep;
    int rc = rq_mix(a, b, pats, n, out, &rep);
    if (!rc) printf("wrote %s: %d tensors, %d of them from %s\n", out, rep.n_tensors, rep.n_from_b, b);
    free(pats);
    free(copy);
    return rc ? cli_die("mix", rq_error()) : 0;
}
