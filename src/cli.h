/* cli.h: subcommands of the duckspread command line that live outside
 * main.c. Each parses its own options and has a --help that exits 0. */
#ifndef DS_CLI_H
#define DS_CLI_H

/* duckspread keys create|list|revoke ... (argv[0] is "keys"). */
int cli_keys(int argc, char **argv);

/* duckspread backup ... and duckspread restore ... (cli_backup.c; argv[0]
 * is the command's name). */
int cli_backup(int argc, char **argv);
int cli_restore(int argc, char **argv);

#endif
