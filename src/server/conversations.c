/*
 * The web app's conversations, kept in the server database, and their
 * small REST API:
 *
 *   GET    /api/conversations        list (newest first), without messages
 *   POST   /api/conversations        create {title?, model?, messages?} -> 201
 *   GET    /api/conversations/ID     one, with its messages
 *   PUT    /api/conversations/ID     replace the fields given (title, model, messages)
 *   DELETE /api/conversations/ID     delete -> 204
 *
 * A conversation's messages are replaced as a whole on PUT (in one
 * transaction): the web app owns the message list and saves it after each
 * exchange.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"

#define MAX_TITLE 200
#define MAX_MODEL 256
#define MAX_MESSAGES 10000

static bool valid_id(const char *id) {
    size_t n = strlen(id);
    if (n < 8 || n > 64) return false;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z') || id[i] == '-')) return false;
    return true;
}

static json_t *conv_row(sqlite3_stmt *st) {
    return json_pack("{s:s,s:s,s:s,s:I,s:I}", "id", (const char *)sqlite3_column_text(st, 0), "title",
                     (const char *)sqlite3_column_text(st, 1), "model", (const char *)sqlite3_column_text(st, 2),
                     "created_at", (json_int_t)sqlite3_column_int64(st, 3), "updated_at",
                     (json_int_t)sqlite3_column_int64(st, 4));
}

static void db_fail(byoai_http_req *r, srv_db *d) {
    srv_error e;
    srv_err(&e, 500, "server_error", NULL, NULL, "database error: %s", sqlite3_errmsg(d->db));
    srv_send_error(r, &e);
}

static void list(srv_db *d, byoai_http_req *r) {
    json_t *data = json_array();
    pthread_mutex_lock(&d->mu);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->db,
                           "SELECT c.id, c.title, c.model, c.created_at, c.updated_at, "
                           "(SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) "
                           "FROM conversations c ORDER BY c.updated_at DESC, c.rowid DESC LIMIT 1000",
                           -1, &st, NULL) != SQLITE_OK) {
        db_fail(r, d);
        pthread_mutex_unlock(&d->mu);
        json_decref(data);
        return;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        json_t *o = conv_row(st);
        json_object_set_new(o, "message_count", json_integer(sqlite3_column_int64(st, 5)));
        json_array_append_new(data, o);
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&d->mu);
    srv_send_json(r, 200, json_pack("{s:s,s:o}", "object", "list", "data", data));
}

/* the one conversation with its messages, or NULL (under the lock) */
static json_t *load(srv_db *d, const char *id) {
    sqlite3_stmt *st;
    json_t *o = NULL;
    if (sqlite3_prepare_v2(d->db, "SELECT id, title, model, created_at, updated_at FROM conversations WHERE id = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) o = conv_row(st);
    sqlite3_finalize(st);
    if (!o) return NULL;
    json_t *msgs = json_array();
    if (sqlite3_prepare_v2(d->db, "SELECT role, content FROM messages WHERE conversation_id = ? ORDER BY idx", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        while (sqlite3_step(st) == SQLITE_ROW)
            json_array_append_new(msgs, json_pack("{s:s,s:s%}", "role", (const char *)sqlite3_column_text(st, 0),
                                                  "content", (const char *)sqlite3_column_text(st, 1),
                                                  (size_t)sqlite3_column_bytes(st, 1)));
        sqlite3_finalize(st);
    }
    json_object_set_new(o, "messages", msgs);
    return o;
}

/* Validate the fields of a create/replace body. */
int srv_conversation_check(json_t *b, srv_error *e) {
    json_t *t = json_object_get(b, "title"), *m = json_object_get(b, "model"), *msgs = json_object_get(b, "messages");
    if (t && (!json_is_string(t) || json_string_length(t) > MAX_TITLE))
        return srv_err(e, 400, "invalid_request_error", NULL, "title", "'title' must be a string of at most %d bytes",
                       MAX_TITLE);
    if (m && (!json_is_string(m) || json_string_length(m) > MAX_MODEL))
        return srv_err(e, 400, "invalid_request_error", NULL, "model", "'model' must be a string of at most %d bytes",
                       MAX_MODEL);
    if (!msgs) return 0;
    if (!json_is_array(msgs))
        return srv_err(e, 400, "invalid_request_error", NULL, "messages", "'messages' must be an array");
    if (json_array_size(msgs) > MAX_MESSAGES)
        return srv_err(e, 400, "invalid_request_error", NULL, "messages",
                       "a conversation holds at most %d messages", MAX_MESSAGES);
    size_t i;
    json_t *v;
    json_array_foreach(msgs, i, v) {
        json_t *role = json_object_get(v, "role"), *content = json_object_get(v, "content");
        byoai_chat_role rr;
        if (!json_is_object(v) || !json_is_string(role) || !byoai_chat_role_parse(json_string_value(role), &rr) ||
            !json_is_string(content))
            return srv_err(e, 400, "invalid_request_error", NULL, "messages",
                           "messages[%zu] must be {\"role\": \"system\"|\"user\"|\"assistant\", \"content\": string}", i);
    }
    return 0;
}

static int store_messages(srv_db *d, const char *id, json_t *msgs) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->db, "DELETE FROM messages WHERE conversation_id = ?", -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    sqlite3_finalize(st);
    if (rc) return rc;
    if (sqlite3_prepare_v2(d->db, "INSERT INTO messages (conversation_id, idx, role, content) VALUES (?, ?, ?, ?)", -1,
                           &st, NULL) != SQLITE_OK)
        return -1;
    size_t i;
    json_t *v;
    json_array_foreach(msgs, i, v) {
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)i);
        sqlite3_bind_text(st, 3, json_string_value(json_object_get(v, "role")), -1, SQLITE_STATIC);
        json_t *c = json_object_get(v, "content");
        sqlite3_bind_text(st, 4, json_string_value(c), (int)json_string_length(c), SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) {
            rc = -1;
            break;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

static void create_or_replace(srv_db *d, byoai_http_req *r, const char *id_in) {
    size_t len;
    const char *body = byoai_http_body(r, &len);
    srv_error e = {0};
    json_t *b = srv_parse_object(body, len, &e);
    if (!b || srv_conversation_check(b, &e)) {
        json_decref(b);
        srv_send_error(r, &e);
        return;
    }
    char id[64];
    if (id_in) snprintf(id, sizeof id, "%s", id_in);
    else srv_random_id("c", id, sizeof id);
    json_t *t = json_object_get(b, "title"), *m = json_object_get(b, "model"), *msgs = json_object_get(b, "messages");
    uint64_t now = byoai_time_unix();
    pthread_mutex_lock(&d->mu);
    sqlite3_exec(d->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    sqlite3_stmt *st;
    int rc = -1;
    bool exists = false;
    if (id_in && sqlite3_prepare_v2(d->db, "SELECT 1 FROM conversations WHERE id = ?", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        exists = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_finalize(st);
    }
    if (id_in && !exists) {
        sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
        pthread_mutex_unlock(&d->mu);
        json_decref(b);
        srv_err(&e, 404, "not_found_error", "conversation_not_found", NULL, "no conversation '%s'", id);
        srv_send_error(r, &e);
        return;
    }
    if (!id_in) {
        if (sqlite3_prepare_v2(d->db, "INSERT INTO conversations (id, title, model, created_at, updated_at) "
                                      "VALUES (?, ?, ?, ?, ?)", -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, t ? json_string_value(t) : "New chat", -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, m ? json_string_value(m) : "", -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 4, (sqlite3_int64)now);
            sqlite3_bind_int64(st, 5, (sqlite3_int64)now);
            rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
            sqlite3_finalize(st);
        }
    } else {
        if (sqlite3_prepare_v2(d->db, "UPDATE conversations SET title = COALESCE(?, title), model = COALESCE(?, model), "
                                      "updated_at = ? WHERE id = ?", -1, &st, NULL) == SQLITE_OK) {
            if (t) sqlite3_bind_text(st, 1, json_string_value(t), -1, SQLITE_STATIC);
            else sqlite3_bind_null(st, 1);
            if (m) sqlite3_bind_text(st, 2, json_string_value(m), -1, SQLITE_STATIC);
            else sqlite3_bind_null(st, 2);
            sqlite3_bind_int64(st, 3, (sqlite3_int64)now);
            sqlite3_bind_text(st, 4, id, -1, SQLITE_STATIC);
            rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
            sqlite3_finalize(st);
        }
    }
    if (!rc && msgs) rc = store_messages(d, id, msgs);
    if (rc) {
        db_fail(r, d);
        sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
        pthread_mutex_unlock(&d->mu);
        json_decref(b);
        return;
    }
    sqlite3_exec(d->db, "COMMIT", NULL, NULL, NULL);
    json_t *o = load(d, id);
    pthread_mutex_unlock(&d->mu);
    json_decref(b);
    srv_send_json(r, id_in ? 200 : 201, o ? o : json_object());
}

static void delete_one(srv_db *d, byoai_http_req *r, const char *id) {
    pthread_mutex_lock(&d->mu);
    sqlite3_stmt *st;
    int changes = -1;
    if (sqlite3_prepare_v2(d->db, "DELETE FROM conversations WHERE id = ?", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_DONE) changes = sqlite3_changes(d->db);
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&d->mu);
    srv_error e;
    if (changes < 0) db_fail(r, d);
    else if (changes == 0) {
        srv_err(&e, 404, "not_found_error", "conversation_not_found", NULL, "no conversation '%s'", id);
        srv_send_error(r, &e);
    } else byoai_http_send(r, 204, NULL, "", 0);
}

void srv_conversations_handle(srv_db *d, byoai_http_req *r, const char *rest) {
    const char *method = byoai_http_method(r);
    srv_error e;
    if (!rest[0] || !strcmp(rest, "/")) {
        if (!strcmp(method, "GET")) list(d, r);
        else if (!strcmp(method, "POST")) create_or_replace(d, r, NULL);
        else {
            byoai_http_add_header(r, "Allow", "GET, POST");
            srv_err(&e, 405, "invalid_request_error", "method_not_allowed", NULL, "use GET or POST on /api/conversations");
            srv_send_error(r, &e);
        }
        return;
    }
    const char *id = rest + 1;
    if (rest[0] != '/' || !valid_id(id)) {
        srv_err(&e, 404, "not_found_error", "conversation_not_found", NULL, "no such conversation");
        srv_send_error(r, &e);
        return;
    }
    if (!strcmp(method, "GET")) {
        pthread_mutex_lock(&d->mu);
        json_t *o = load(d, id);
        pthread_mutex_unlock(&d->mu);
        if (o) srv_send_json(r, 200, o);
        else {
            srv_err(&e, 404, "not_found_error", "conversation_not_found", NULL, "no conversation '%s'", id);
            srv_send_error(r, &e);
        }
    } else if (!strcmp(method, "PUT") || !strcmp(method, "PATCH")) {
        create_or_replace(d, r, id);
    } else if (!strcmp(method, "DELETE")) {
        delete_one(d, r, id);
    } else {
        byoai_http_add_header(r, "Allow", "GET, PUT, PATCH, DELETE");
        srv_err(&e, 405, "invalid_request_error", "method_not_allowed", NULL,
                "use GET, PUT, PATCH or DELETE on a conversation");
        srv_send_error(r, &e);
    }
}
