/* The version every part of pgtandem reports (CLI, fleet rows). */
#ifndef PGTANDEM_VERSION_H
#define PGTANDEM_VERSION_H

#define PGTANDEM_VERSION "0.1.0"

#endif
