/* The web app's files, embedded at build time (scripts/embed-web.cmake
 * generates the table from web/; without web/ files the table is empty). */
#include <string.h>

#include "server/server_internal.h"

#ifdef BYOAI_HAVE_WEB
extern const srv_asset srv_web_assets[];
extern const size_t srv_web_assets_count;
#else
static const srv_asset srv_web_assets[1];
static const size_t srv_web_assets_count = 0;
#endif

const srv_asset *srv_web_find(const char *path) {
    if (!strcmp(path, "/")) path = "/index.html";
    for (size_t i = 0; i < srv_web_assets_count; i++)
        if (!strcmp(srv_web_assets[i].path, path)) return &srv_web_assets[i];
    return NULL;
}

size_t srv_web_count(void) { return srv_web_assets_count; }
