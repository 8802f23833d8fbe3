/*
 * The server database (SQLite): API keys and the web app's conversations.
 * One connection, serialised by a mutex; WAL mode so that `byoai apikey`
 * can write while a server reads. The schema is versioned with
 * PRAGMA user_version and upgraded in place.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"

static const char *const SCHEMA_V1 =
    "CREATE TABLE IF NOT EXISTS api_keys ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT NOT NULL,"
    "  prefix TEXT NOT NULL,"
    "  hash TEXT NOT NULL UNIQUE,"         /* sha256 hex of the whole key */
    "  created_at INTEGER NOT NULL,"
    "  last_used_at INTEGER NOT NULL DEFAULT 0,"
    "  revoked INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS conversations ("
    "  id TEXT PRIMARY KEY,"
    "  title TEXT NOT NULL,"
    "  model TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS messages ("
    "  conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,"
    "  idx INTEGER NOT NULL,"
    "  role TEXT NOT NULL,"
    "  content TEXT NOT NULL,"
    "  PRIMARY KEY (conversation_id, idx));"
    "PRAGMA user_version = 1;";

int srv_db_open(const char *path, srv_db **out, byoai_error *err) {
    *out = NULL;
    char dir[1100];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        int rc = byoai_fs_mkdirs(dir, 0700, err);
        if (rc) return rc;
    }
    srv_db *d = calloc(1, sizeof *d);
    if (!d) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    if (sqlite3_open_v2(path, &d->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) !=
        SQLITE_OK) {
        int rc = byoai_error_set(err, BYOAI_EIO, "cannot open the server database %s: %s", path,
                                 d->db ? sqlite3_errmsg(d->db) : "out of memory");
        sqlite3_close(d->db);
        free(d);
        return rc;
    }
    sqlite3_busy_timeout(d->db, 5000);
    char *msg = NULL;
    int version = 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) version = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    if (sqlite3_exec(d->db, "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
                     NULL, NULL, &msg) != SQLITE_OK ||
        (version < 1 && sqlite3_exec(d->db, SCHEMA_V1, NULL, NULL, &msg) != SQLITE_OK)) {
        int rc = byoai_error_set(err, BYOAI_EIO, "cannot set up the server database %s: %s", path,
                                 msg ? msg : "unknown error");
        sqlite3_free(msg);
        sqlite3_close(d->db);
        free(d);
        return rc;
    }
    if (version > 1) {
        sqlite3_close(d->db);
        free(d);
        return byoai_error_set(err, BYOAI_EUNSUPPORTED, "the server database %s was written by a newer byoai "
                               "(schema %d); upgrade byoai", path, version);
    }
    pthread_mutex_init(&d->mu, NULL);
    *out = d;
    return 0;
}

void srv_db_close(srv_db *d) {
    if (!d) return;
    sqlite3_close(d->db);
    pthread_mutex_destroy(&d->mu);
    free(d);
}
