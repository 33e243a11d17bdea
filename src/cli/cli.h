/* cli.h - subcommands of the repliq program and their shared argument helpers. */
#ifndef RQ_CLI_H
#define RQ_CLI_H

int cmd_pull(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_ppl(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_reference(int argc, char **argv);
int cmd_calib(int argc, char **argv);
int cmd_bpw(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_rotate(int argc, char **argv);
int cmd_dfrot(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_mix(int argc, char **argv);

/* Print "repliq CMD: <message>" and return the exit status 1. */
int cli_die(const char *cmd, const char *msg);
/* Parse a positive integer option value; exits with a message on bad input. */
int cli_int(const char *cmd, const char *opt, const char *val, int min);
/* Next argument as the value of option opt, or exit with a message. */
const char *cli_val(const char *cmd, int argc, char **argv, int *i);

#endif
