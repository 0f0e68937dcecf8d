/*
 * mmtmem version. Before 1.0 the ABI may change with the minor number, after it only with
 * the major one: the shared library's soname is libmmtmem.so.0.MINOR now, and will be
 * libmmtmem.so.MAJOR from 1.0. A program built against 0.1.y runs with any 0.1.z.
 * mmt_version() (in memory.h) reports the library that is actually loaded, which may
 * differ from the header a program was compiled with.
 */
#ifndef MMT_VERSION_H
#define MMT_VERSION_H

#define MMT_VERSION_MAJOR 0
#define MMT_VERSION_MINOR 3
#define MMT_VERSION_PATCH 0

#define MMT__STR2(x) #x
#define MMT__STR(x) MMT__STR2(x)
#define MMT_VERSION_STRING \
    MMT__STR(MMT_VERSION_MAJOR) "." MMT__STR(MMT_VERSION_MINOR) "." MMT__STR(MMT_VERSION_PATCH)

#endif
