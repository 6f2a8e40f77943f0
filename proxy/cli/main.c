/* bin/pgtandem: dispatches to the proxy or the migration CLI. */
#include "cli.h"
#include "version.h"

#include <stdio.h>
#include <string.h>

static void print_usage(FILE *out)
{
    fprintf(out, "usage: pgtandem proxy   [OPTION VALUE]...   the proxy (pgtandem proxy --help: every option)\n"
                 "       pgtandem migrate COMMAND ...         online migrations (pgtandem migrate --help)\n"
                 "       pgtandem passwd  USER ...            what --auth scram needs for USER\n"
                 "       pgtandem version\n"
                 "       pgtandem help [COMMAND]\n");
}

static void version_usage(FILE *out)
{
    fprintf(out, "usage: pgtandem version\nprints the version\n");
}

/* `pgtandem help`: everything; `pgtandem help COMMAND`: that command. */
static int help(const char *command)
{
    if (command && !strcmp(command, "proxy"))
        proxy_usage(stdout);
    else if (command && !strcmp(command, "migrate"))
        migrate_usage(stdout);
    else if (command && !strcmp(command, "passwd"))
        passwd_usage(stdout);
    else if (command && !strcmp(command, "version"))
        version_usage(stdout);
    else {
        print_usage(stdout);
        printf("\n");
        proxy_usage(stdout);
        printf("\n");
        migrate_usage(stdout);
        printf("\n");
        passwd_usage(stdout);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "proxy") == 0)
        return proxy_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "migrate") == 0)
        return migrate_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "passwd") == 0)
        return passwd_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        if (argc > 2 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
            version_usage(stdout);
            return 0;
        }
        printf("pgtandem " PGTANDEM_VERSION "\n");
        return 0;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return help(argc > 2 ? argv[2] : NULL);
    fprintf(stderr, "pgtandem: unknown command '%s'\n", argv[1]);
    print_usage(stderr);
    return 2;
}
