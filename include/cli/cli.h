/* Entry points of the subcommands of bin/pgtandem. Each returns the process
 * exit status: 0 success, 1 operational failure, 2 bad input. */
#ifndef PGTANDEM_CLI_H
#define PGTANDEM_CLI_H

#include <stdio.h>

int proxy_main(int argc, char **argv);   /* bin/pgtandem proxy ... */
int migrate_main(int argc, char **argv); /* bin/pgtandem migrate ... */
int passwd_main(int argc, char **argv);  /* bin/pgtandem passwd USER: writes a SCRAM verifier */

/* Each command's usage, for `COMMAND --help` and `pgtandem help`. */
void proxy_usage(FILE *out);
void migrate_usage(FILE *out);
void passwd_usage(FILE *out);

#endif
