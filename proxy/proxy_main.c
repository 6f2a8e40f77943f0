/* bin/pgtandem proxy: placeholder entry until the relay lands. */
#include "cli.h"

#include <stdio.h>

int proxy_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "usage: pgtandem proxy ...\n");
    return 2;
}
