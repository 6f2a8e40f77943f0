/* bin/pgtandem: dispatches to the proxy or the migration CLI. */
#include "cli.h"
#include "version.h"

#include <stdio.h>
#include <string.h>

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: pgtandem proxy   [--config FILE] [--listen HOST:PORT] [--upstream URI]\n"
            "                        [--admin HOST:PORT] [--admin-token TOKEN] [--tls-cert F --tls-key F]\n"
            "       pgtandem migrate start|status|complete|rollback|plan|lint|verify ...\n"
            "       pgtandem version\n");
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
    if (strcmp(argv[1], "passwd") == 0) return passwd_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("pgtandem " PGTANDEM_VERSION "\n");
        return 0;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        print_usage(stdout);
        return 0;
    }
    fprintf(stderr, "pgtandem: unknown command '%s'\n", argv[1]);
    print_usage(stderr);
    return 2;
}
