/* Compiler annotations shared by the modules. */
#ifndef PGTANDEM_COMPILER_H
#define PGTANDEM_COMPILER_H

/* On a function whose failure must not go unnoticed (security settings,
 * credentials, anything that would otherwise fail open): the compiler flags
 * a caller that drops the result, and -Werror makes that a build error. */
#define PGT_MUSTCHECK __attribute__((warn_unused_result))

#endif
