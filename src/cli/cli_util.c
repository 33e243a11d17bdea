/* cli_util.c - argument helpers shared by the subcommands, and pull/list, which
 * hand over to scripts/pull.py (pip download, hashes, cache). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cli_die(const char *cmd, const char *msg) {
    fprintf(stderr, "repliq %s: %s\n", cmd, msg);
    return 1;
}

int cli_int(const char *cmd, const char *opt, const char *val, int min) {
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || *end || end == val || v < min || v > INT_MAX) {
        fprintf(stderr, "repliq %s: %s needs an integer >= %d, got '%s'\n", cmd, opt, min, val);
        exit(2);
    }
    return (int)v;
}

const char *cli_val(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "repliq %s: option %s needs a value\n", cmd, argv[*i]);
        exit(2);
    }
    return argv[++*i];
}

static int run_pull_script(int argc, char **argv, const char *first) {
    /* argv[0] is the subcommand; pass the rest through */
    char script[PATH_MAX];
    snprintf(script, sizeof script, "%s/scripts/pull.py", RQ_SOURCE_DIR);
    char **av = calloc((size_t)argc + 4, sizeof *av);
    int k = 0;
    av[k++] = "python3";
    av[k++] = script;
    if (first) av[k++] = (char *)first;
    for (int i = 1; i < argc; i++) av[k++] = argv[i];
    av[k] = NULL;
    execvp("python3", av);
    fprintf(stderr, "repliq: cannot run python3 %s: %s\n", script, strerror(errno));
    free(av);
    return 1;
}

int cmd_pull(int argc, char **argv) {
    if (argc < 2) return cli_die("pull", "usage: repliq pull NAME [--cache DIR] (names: repliq list)");
    return run_pull_script(argc, argv, NULL);
}

int cmd_list(int argc, char **argv) { return run_pull_script(argc, argv, "--list"); }
