/*
 * mmtmem version. The same MMT_VERSION_MAJOR means the same ABI: a program built against
 * 0.x.y links against any 0.x.z. mmt_version() (in memory.h) reports the library that is
 * actually loaded, which may differ from the header a program was compiled with.
 */
#ifndef MMT_VERSION_H
#define MMT_VERSION_H

#define MMT_VERSION_MAJOR 0
#define MMT_VERSION_MINOR 1
#define MMT_VERSION_PATCH 0

#define MMT__STR2(x) #x
#define MMT__STR(x) MMT__STR2(x)
#define MMT_VERSION_STRING \
    MMT__STR(MMT_VERSION_MAJOR) "." MMT__STR(MMT_VERSION_MINOR) "." MMT__STR(MMT_VERSION_PATCH)

#endif
