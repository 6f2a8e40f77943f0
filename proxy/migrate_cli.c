/* bin/pgtandem migrate: placeholder entry until the engine lands. */
#include "cli.h"

#include <stdio.h>

int migrate_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "usage: pgtandem migrate start|status|complete|rollback|plan|lint|verify ...\n");
    return 2;
}
