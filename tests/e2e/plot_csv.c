/*
 * mmt-run's picture code on a CSV file of the test's making, for test_mmtrun: the reader
 * must take any column order and RFC 4180 quoting, and say what is wrong with a file that
 * is not a trace.
 *
 *   e2e_plot CSV SVG TITLE
 *
 * Exit status 0 with the picture written, or 1 with plot's reason on stderr.
 */
#include <stdio.h>

#include "plot.h"

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: e2e_plot CSV SVG TITLE\n");
        return 2;
    }
    char err[1024];
    if (mmt__plot(argv[1], argv[2], argv[3], err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    return 0;
}
