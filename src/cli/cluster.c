/* byoai cluster: membership, the view, plans, and a node daemon. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "byoai/cluster.h"
#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
"usage: byoai cluster COMMAND [ARGS...]\n"
"\n"
"Pool the machines of a trusted circle into one private AI cloud: several\n"
"machines run one model together, each holding a range of its layers, over\n"
"authenticated, encrypted links.\n"
"\n"
"Membership (no running node needed):\n"
"  create NAME [--name NODE]   make a new cluster; this node holds its key\n"
"  invite [--address H:P] [--expires S]\n"
"                              print a one-time code for a new member (admin)\n"
"  join CODE [--name NODE]     join with a code (the inviting node must be running)\n"
"  leave [--force]             leave the cluster (tells the running node to go)\n"
"  remove NODE_ID              remove a member for good (admin; an id prefix while\n"
"                              the node runs, else the whole id)\n"
"\n"
"The running node:\n"
"  node [options]              run a node in the foreground (see --help)\n"
"  status [--json]             the cluster view of the running node\n"
"  plan MODEL [--json] [--ctx N] [--seq N] [--weight W] [--nodes IDS]\n"
"                              which node would run which layers, and the memory\n"
"  deploy NAME=MODEL [--url URL] [--ctx N] [--seq N] [--wire f32|f16] [--min-nodes N]\n"
"                              plan and load a model across the cluster\n"
"  run NAME [-p PROMPT] [-n N] [--temp T] [--seed S] [--json]\n"
"                              a completion through the cluster\n"
"\n"
"MODEL is a .gguf path or an installed model (`byoai install`).\n"
"\n"
"Files live under $BYOAI_HOME/cluster/ (node.key, cluster.json, and for the\n"
"admin cluster.key and invites.json). docs/cluster.md explains the security\n"
"model and what happens when a machine fails.\n"
"\n"
"Exit status: 0 success, 1 runtime error, 2 usage error.\n");
}

static void node_usage(FILE *f) {
    fprintf(f,
"usage: byoai cluster node [options]\n"
"\n"
"Run this machine as a cluster node until interrupted (Ctrl-C, SIGTERM) or\n"
"until `byoai cluster leave`. It finds other members on the LAN, keeps\n"
"encrypted links to them, serves the layers coordinators assign to it and,\n"
"with --model, coordinates a model itself.\n"
"\n"
"Options:\n"
"  --name NAME             this node's name, kept for next time (default: the host\n"
"                          name and the first four characters of the node id)\n"
"  --bind ADDR             address for links and announcements (default 0.0.0.0)\n"
"  --port N                TCP port for links (default %d; 0 picks one)\n"
"  --discovery-port N      UDP port for announcements (default %d)\n"
"  --no-discovery          do not broadcast or listen for announcements\n"
"  --peer HOST:PORT        a member to connect to directly (repeatable)\n"
"  --memory SIZE           memory offered to the cluster, e.g. 6G (default 90%% of free)\n"
"  --no-measure-bandwidth  skip measuring memory bandwidth at start (announced as\n"
"                          speed; --weight speed needs it)\n"
"  -t, --threads N         compute threads (default: all cores)\n"
"  --heartbeat S           seconds between heartbeats (default 1)\n"
"  --failure-timeout S     silence before a member is declared dead (default 5)\n"
"  --step-timeout S        longest wait for one pipeline step (default 30)\n"
"  --load-timeout S        longest wait for a node to load its layers (default 600)\n"
"  --model-file PATH       a local GGUF this node may use for its layers (repeatable)\n"
"  --model NAME=PATH       coordinate this model: plan and load it across the cluster\n"
"  --model-url URL         where nodes lacking the file fetch their tensors (HTTP Range)\n"
"  --ctx N, --seq N, --batch N  context, parallel sequences, rows per step\n"
"  --wire f32|f16          hidden states on the wire (default f32: exact)\n"
"  --weight memory|speed|both   what the plan is proportional to (default memory)\n"
"  --min-nodes N           wait for N alive members before planning --model\n"
"  --nodes ID,...          plan --model on these nodes only (id prefixes)\n"
"  --test-link-delay-ms MS testing only: add MS of latency to every received frame\n"
"  -h, --help              show this help\n"
"\n"
"Prints 'node ID listening on ADDR:PORT' when ready and 'deployed NAME' after\n"
"each --model is loaded.\n",
            BYOAI_CLUSTER_DEFAULT_PORT, BYOAI_CLUSTER_DEFAULT_DISCOVERY_PORT);
}

/* ---- the control socket client ----------------------------------------------------------- */

static int control_connect(char *why, size_t cap) {
    const char *home = getenv("BYOAI_HOME");
    char dir[4200];
    if (home && *home) snprintf(dir, sizeof dir, "%s", home);
    else if (getenv("XDG_DATA_HOME")) snprintf(dir, sizeof dir, "%s/byoai", getenv("XDG_DATA_HOME"));
    else snprintf(dir, sizeof dir, "%s/.local/share/byoai", getenv("HOME") ? getenv("HOME") : ".");
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if ((size_t)snprintf(a.sun_path, sizeof a.sun_path, "%s/cluster/control.sock", dir) >= sizeof a.sun_path) {
        snprintf(why, cap, "the control socket path is too long");
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        snprintf(why, cap, "no cluster node is running for this home (start one with `byoai cluster node` or "
                 "`byoai serve --cluster`)");
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

/* send one request; call on_line for each reply line until "done" */
static int control_call(const char *cmd, json_t *req, int (*on_line)(void *user, json_t *line), void *user,
                        json_t **final) {
    char why[256];
    *final = NULL;
    int fd = control_connect(why, sizeof why);
    if (fd < 0) {
        json_decref(req);
        fprintf(stderr, "byoai cluster %s: error: %s\n", cmd, why);
        return CLI_ERROR;
    }
    char *s = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    FILE *f = fdopen(fd, "r+");
    if (!s || !f) {
        free(s);
        if (f) fclose(f);
        else close(fd);
        return CLI_ERROR;
    }
    fprintf(f, "%s\n", s);
    fflush(f);
    free(s);
    char *line = NULL;
    size_t cap = 0;
    int rc = CLI_ERROR;
    while (getline(&line, &cap, f) > 0) {
        json_t *j = json_loads(line, 0, NULL);
        if (!j) continue;
        if (json_is_true(json_object_get(j, "done"))) {
            *final = j;
            rc = json_is_true(json_object_get(j, "ok")) ? CLI_OK : CLI_ERROR;
            if (rc) fprintf(stderr, "byoai cluster %s: error: %s\n", cmd, json_string_value(json_object_get(j, "error")));
            break;
        }
        if (on_line && on_line(user, j)) {
            json_decref(j);
            break;
        }
        json_decref(j);
    }
    if (!*final && rc == CLI_ERROR) fprintf(stderr, "byoai cluster %s: error: the node closed the connection\n", cmd);
    free(line);
    fclose(f);
    return rc;
}

/* ---- helpers ---------------------------------------------------------------------------------- */

static int split_list(char *s, const char **out, int cap) {
    int n = 0;
    for (char *tok = strtok(s, ","); tok && n < cap; tok = strtok(NULL, ",")) out[n++] = tok;
    return n;
}

/* ---- create, invite, join, leave --------------------------------------------------------------------- */

static int cmd_create(int argc, char **argv) {
    static const struct option opts[] = {{"name", required_argument, 0, 'n'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *node_name = NULL;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'n': node_name = optarg; break;
        case 'h':
            printf("usage: byoai cluster create NAME [--name NODE_NAME]\n\nMake a new cluster named NAME. This node "
                   "becomes its admin: it keeps the\ncluster key (cluster/cluster.key) and is the only node that can "
                   "invite.\n--name gives this node a name (default: the host name and the first four\ncharacters "
                   "of the node id, e.g. desk-3b51).\n");
            return CLI_OK;
        case ':': return cli_usage_error("cluster create", "option %s needs a value", argv[optind - 1]);
        default: return cli_usage_error("cluster create", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind + 1 != argc) return cli_usage_error("cluster create", "expected exactly one NAME");
    byoai_cluster_identity id;
    byoai_error err = {0};
    if (node_name && byoai_cluster_set_node_name(NULL, node_name, &err)) {
        if (err.code == BYOAI_EINVAL) return cli_usage_error("cluster create", "--name: %s", err.msg);
        return cli_fail("cluster create", &err);
    }
    if (byoai_cluster_create(NULL, argv[optind], &id, &err)) {
        if (err.code == BYOAI_EINVAL) return cli_usage_error("cluster create", "%s", err.msg);
        return cli_fail("cluster create", &err);
    }
    printf("created cluster '%s' (%s)\nthis node: %s (%s), admin\n", id.cluster_name, id.cluster_id, id.node_id,
           id.node_name);
    printf("next: run `byoai cluster node` here, then `byoai cluster invite` for each new member\n");
    return CLI_OK;
}

static int cmd_invite(int argc, char **argv) {
    static const struct option opts[] = {{"address", required_argument, 0, 'a'}, {"expires", required_argument, 0, 'e'},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *address = NULL;
    long long ttl = 86400;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'a': address = optarg; break;
        case 'e': if (!cli_parse_int("cluster invite", "--expires", optarg, 60, 30 * 86400, &ttl)) return CLI_USAGE; break;
        case 'h':
            printf("usage: byoai cluster invite [--address HOST:PORT] [--expires SECONDS]\n\n"
                   "Print a one-time invite code. The new member runs `byoai cluster join CODE`;\n"
                   "the code works once, until it expires (default one day), and only while this\n"
                   "node runs (`byoai cluster node` or `byoai serve --cluster`). --address is where\n"
                   "the new member reaches this node (default: this machine's best address and the\n"
                   "running node's port; without --address the node must be running).\n");
            return CLI_OK;
        default: return cli_option_error("cluster invite", c, opts, argv);
        }
    }
    if (optind < argc) return cli_usage_error("cluster invite", "unexpected argument '%s'", argv[optind]);
    byoai_cluster_identity me;
    byoai_error ierr = {0};
    if (byoai_cluster_identity_get(NULL, &me, &ierr)) return cli_fail("cluster invite", &ierr);
    if (!me.member) {
        byoai_error_set(&ierr, BYOAI_EINVAL, "this node is not in a cluster; run `byoai cluster create NAME` first");
        return cli_fail("cluster invite", &ierr);
    }
    char addr[128];
    bool running = false;
    char why[256];
    int cfd = control_connect(why, sizeof why);
    if (cfd >= 0) {
        running = true;
        close(cfd);
    }
    if (!address) {
        /* the running node's port and bind address (run.json) */
        if (!running) {
            fprintf(stderr, "byoai cluster invite: error: no cluster node is running for this home, so there is no "
                    "address to put in the code.\nStart it first (`byoai cluster node`, or `byoai serve --cluster`), "
                    "or pass --address HOST:PORT\nto make a code for a node that will listen there.\n");
            return CLI_ERROR;
        }
        unsigned port = BYOAI_CLUSTER_DEFAULT_PORT;
        char bind[64] = "0.0.0.0";
        const char *home = getenv("BYOAI_HOME");
        char path[4300];
        snprintf(path, sizeof path, "%s/cluster/run.json", home && *home ? home : ".");
        json_t *j = json_load_file(path, 0, NULL);
        if (j) {
            if (json_integer_value(json_object_get(j, "port"))) port = (unsigned)json_integer_value(json_object_get(j, "port"));
            const char *b = json_string_value(json_object_get(j, "bind"));
            if (b) snprintf(bind, sizeof bind, "%s", b);
            json_decref(j);
        }
        char host[64] = "127.0.0.1";
        if (strcmp(bind, "0.0.0.0")) snprintf(host, sizeof host, "%s", bind);
        else byoai_cluster_best_address(host, sizeof host);
        snprintf(addr, sizeof addr, "%s:%u", host, port);
        address = addr;
    }
    char code[BYOAI_CLUSTER_CODE_MAX];
    byoai_error err = {0};
    if (byoai_cluster_invite(NULL, address, (uint32_t)ttl, code, &err)) return cli_fail("cluster invite", &err);
    printf("%s\n", code);
    fprintf(stderr, "on the new machine: byoai cluster join %s\n(the code reaches this node at %s, works once and "
            "expires in %lld s)\n", code, address, ttl);
    if (!running)
        fprintf(stderr, "note: no cluster node is running here now; the code works once this node's node listens at "
                "%s\n", address);
    return CLI_OK;
}

static int cmd_join(int argc, char **argv) {
    static const struct option opts[] = {{"timeout", required_argument, 0, 't'}, {"name", required_argument, 0, 'n'},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    double timeout = 10;
    const char *node_name = NULL;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 't': if (!cli_parse_float("cluster join", "--timeout", optarg, 0.1, 600, &timeout)) return CLI_USAGE; break;
        case 'n': node_name = optarg; break;
        case 'h':
            printf("usage: byoai cluster join CODE [--timeout S] [--name NODE_NAME]\n\nJoin the cluster that made "
                   "CODE (`byoai cluster invite`). The inviting node must\nbe running. This node gets a certificate; "
                   "start it with `byoai cluster node`.\n--name gives this node a name (default: the host name and the "
                   "first four\ncharacters of the node id, e.g. laptop-9c0e).\n");
            return CLI_OK;
        default: return cli_option_error("cluster join", c, opts, argv);
        }
    }
    if (optind + 1 != argc) return cli_usage_error("cluster join", "expected exactly one CODE");
    byoai_cluster_identity id;
    byoai_error err = {0};
    if (node_name && byoai_cluster_set_node_name(NULL, node_name, &err)) {
        if (err.code == BYOAI_EINVAL) return cli_usage_error("cluster join", "--name: %s", err.msg);
        return cli_fail("cluster join", &err);
    }
    if (byoai_cluster_join(NULL, argv[optind], timeout, &id, &err)) {
        if (err.code == BYOAI_EINVAL) return cli_usage_error("cluster join", "%s", err.msg);
        return cli_fail("cluster join", &err);
    }
    printf("joined cluster '%s' (%s) as %s (%s)\nnext: run `byoai cluster node` on this machine\n", id.cluster_name,
           id.cluster_id, id.node_id, id.node_name);
    return CLI_OK;
}

static int cmd_leave(int argc, char **argv) {
    bool force = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--force")) force = true;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: byoai cluster leave [--force]\n\nLeave the cluster: a running node tells the members it "
                   "goes and stops; the\ncertificate is deleted (the node key stays). The admin must pass --force:\n"
                   "leaving deletes the cluster key, and nobody can invite any more.\n");
            return CLI_OK;
        } else return cli_usage_error("cluster leave", "unknown argument '%s'", argv[i]);
    }
    byoai_cluster_identity id;
    byoai_error err = {0};
    if (byoai_cluster_identity_get(NULL, &id, &err)) return cli_fail("cluster leave", &err);
    if (id.admin && !force) {
        byoai_error_set(&err, BYOAI_EBUSY, "this node holds the key of cluster '%s': leaving deletes it and nobody can "
                        "invite new members any more; pass --force to leave anyway", id.cluster_name);
        return cli_fail("cluster leave", &err);
    }
    char why[256];
    int fd = control_connect(why, sizeof why);
    if (fd >= 0) {
        close(fd);
        json_t *fin;
        control_call("leave", json_pack("{s:s}", "cmd", "leave"), NULL, NULL, &fin);
        json_decref(fin);
    }
    if (byoai_cluster_leave(NULL, force, &err)) return cli_fail("cluster leave", &err);
    printf("left cluster '%s'\n", id.cluster_name);
    return CLI_OK;
}

static int cmd_remove(int argc, char **argv) {
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: byoai cluster remove NODE_ID\n\n"
               "Remove a member for good (a lost or given-away machine): the cluster key signs a\n"
               "new list of removed members, every member gets it, and from then on no member\n"
               "links with that node, its announcements are ignored, and it stops. Admin only.\n"
               "With the admin's node running, NODE_ID may be a unique prefix (6 or more hex\n"
               "characters) of an id in `byoai cluster status`; otherwise give the whole id, and\n"
               "the members learn of it when the admin's node next runs. A removed machine can\n"
               "come back only with a new invite (`byoai cluster leave`, then `join`).\n");
        return CLI_OK;
    }
    if (argc != 2 || argv[1][0] == '-') return cli_usage_error("cluster remove", "expected exactly one NODE_ID");
    char why[256];
    int fd = control_connect(why, sizeof why);
    if (fd >= 0) {
        close(fd);
        json_t *fin;
        int rc = control_call("remove", json_pack("{s:s,s:s}", "cmd", "remove", "node", argv[1]), NULL, NULL, &fin);
        if (rc == CLI_OK) printf("removed node %s\n", json_string_value(json_object_get(fin, "node_id")));
        json_decref(fin);
        return rc;
    }
    byoai_error err = {0};
    if (byoai_cluster_remove_offline(NULL, argv[1], &err)) return cli_fail("cluster remove", &err);
    printf("removed node %s (the members learn of it when this node runs)\n", argv[1]);
    return CLI_OK;
}

/* ---- status and plan ----------------------------------------------------------------------------- */

static const char *hb(json_int_t n, char *buf, size_t cap) { return cli_bytes((uint64_t)n, buf, cap); }

static int cmd_status(int argc, char **argv) {
    bool as_json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) as_json = true;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: byoai cluster status [--json]\n\nThe running node's view of the cluster: members, their "
                   "state, memory, models\nand links; stages this node runs; models it coordinates; recent events.\n"
                   "Layer ranges are written begin-end with the end not included: 0-4 is layers\n0, 1, 2 and 3.\n");
            return CLI_OK;
        } else return cli_usage_error("cluster status", "unknown argument '%s'", argv[i]);
    }
    byoai_cluster_identity id;
    byoai_error err = {0};
    if (byoai_cluster_identity_get(NULL, &id, &err)) return cli_fail("cluster status", &err);
    char why[256];
    int fd = control_connect(why, sizeof why);
    if (fd < 0) {
        if (as_json) {
            json_t *j = json_pack("{s:s,s:s,s:b,s:s,s:s,s:b,s:b}", "node_id", id.node_id, "name", id.node_name, "member",
                                  id.member, "cluster_id", id.cluster_id, "cluster_name", id.cluster_name, "admin",
                                  id.admin, "running", 0);
            char *s = json_dumps(j, JSON_INDENT(2));
            printf("%s\n", s);
            free(s);
            json_decref(j);
        } else {
            printf("node %s (%s)\n", id.node_id, id.node_name);
            if (id.member) printf("cluster '%s' (%s)%s\n", id.cluster_name, id.cluster_id, id.admin ? ", admin" : "");
            else printf("not in a cluster: `byoai cluster create NAME` or `byoai cluster join CODE`\n");
            printf("node not running: start it with `byoai cluster node`\n");
        }
        return CLI_OK;
    }
    close(fd);
    json_t *st;
    int rc = control_call("status", json_pack("{s:s}", "cmd", "status"), NULL, NULL, &st);
    if (rc) {
        json_decref(st);
        return rc;
    }
    json_object_del(st, "done");
    json_object_del(st, "ok");
    if (as_json) {
        json_object_set_new(st, "running", json_true());
        char *s = json_dumps(st, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
        json_decref(st);
        return CLI_OK;
    }
    printf("cluster '%s' (%s), this node %.12s (%s)%s, port %d, %d alive\n",
           json_string_value(json_object_get(st, "cluster_name")), json_string_value(json_object_get(st, "cluster_id")),
           json_string_value(json_object_get(st, "node_id")), json_string_value(json_object_get(st, "name")),
           json_is_true(json_object_get(st, "admin")) ? ", admin" : "", (int)json_integer_value(json_object_get(st, "port")),
           (int)json_integer_value(json_object_get(st, "alive")));
    printf("\n%-12s  %-16s %-8s %-21s %10s %8s  %s\n", "NODE", "NAME", "STATE", "ADDRESS", "OFFERED", "RTT", "MODELS");
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(st, "members"), i, m) {
        json_t *info = json_object_get(m, "info");
        char b1[32], addr[80], models[256] = "";
        snprintf(addr, sizeof addr, "%s:%d", json_string_value(json_object_get(m, "address")),
                 (int)json_integer_value(json_object_get(m, "port")));
        size_t k;
        json_t *v;
        json_array_foreach(json_object_get(info, "deployed"), k, v) {
            strncat(models, json_string_value(v), sizeof models - strlen(models) - 3);
            strcat(models, "* ");
        }
        json_array_foreach(json_object_get(info, "models"), k, v) {
            strncat(models, json_string_value(v), sizeof models - strlen(models) - 2);
            strcat(models, " ");
        }
        char rtt[16] = "-";
        if (!json_is_true(json_object_get(m, "self")))
            snprintf(rtt, sizeof rtt, "%.1fms", json_real_value(json_object_get(m, "rtt_ms")));
        printf("%-12.12s  %-16.16s %-8s %-21s %10s %8s  %s\n", json_string_value(json_object_get(m, "node_id")),
               json_string_value(json_object_get(m, "name")),
               json_is_true(json_object_get(m, "self")) ? "self" : json_string_value(json_object_get(m, "state")), addr,
               info ? hb(json_integer_value(json_object_get(info, "memory_offered")), b1, sizeof b1) : "?", rtt, models);
    }
    json_t *deps = json_object_get(st, "deployments");
    if (json_array_size(deps)) printf("\nmodels of the cluster (* above: coordinated by that node):\n");
    json_array_foreach(deps, i, m) {
        json_t *co = json_object_get(m, "coordinator");
        printf("  %s: %s, coordinated by %s (%.12s), term %d, epoch %d, %d active, %d failovers\n",
               json_string_value(json_object_get(m, "model")), json_string_value(json_object_get(m, "state")),
               json_is_true(json_object_get(co, "self")) ? "this node" : json_string_value(json_object_get(co, "name")),
               json_string_value(json_object_get(co, "node_id")), (int)json_integer_value(json_object_get(m, "term")),
               (int)json_integer_value(json_object_get(m, "epoch")), (int)json_integer_value(json_object_get(m, "active")),
               (int)json_integer_value(json_object_get(m, "failovers")));
        size_t k;
        json_t *s;
        json_array_foreach(json_object_get(m, "stages"), k, s) {
            if (!strcmp(json_string_value(json_object_get(s, "state")), "missing"))
                printf("    layers %3d-%-3d missing (node %.12s was lost)\n",
                       (int)json_integer_value(json_object_get(s, "layer_begin")),
                       (int)json_integer_value(json_object_get(s, "layer_end")),
                       json_string_value(json_object_get(s, "lost_node_id")));
            else
                printf("    layers %3d-%-3d on %.12s (%s)\n", (int)json_integer_value(json_object_get(s, "layer_begin")),
                       (int)json_integer_value(json_object_get(s, "layer_end")),
                       json_string_value(json_object_get(s, "node_id")), json_string_value(json_object_get(s, "name")));
        }
    }
    json_t *stages = json_object_get(st, "stages");
    if (json_array_size(stages)) printf("\nstages this node runs:\n");
    json_array_foreach(stages, i, m)
        printf("  %s layers %d-%d for %.12s (epoch %d, %s)\n", json_string_value(json_object_get(m, "model")),
               (int)json_integer_value(json_object_get(m, "layer_begin")),
               (int)json_integer_value(json_object_get(m, "layer_end")),
               json_string_value(json_object_get(m, "coordinator")), (int)json_integer_value(json_object_get(m, "epoch")),
               json_is_true(json_object_get(m, "loaded")) ? "loaded" : "loading");
    json_t *ev = json_object_get(st, "events");
    size_t ne = json_array_size(ev);
    if (ne) printf("\nrecent events:\n");
    for (i = ne > 8 ? ne - 8 : 0; i < ne; i++)
        printf("  %s\n", json_string_value(json_object_get(json_array_get(ev, i), "text")));
    json_decref(st);
    return CLI_OK;
}

static int cmd_plan(int argc, char **argv) {
    static const struct option opts[] = {{"json", no_argument, 0, 'j'},       {"ctx", required_argument, 0, 'c'},
                                         {"seq", required_argument, 0, 's'},  {"weight", required_argument, 0, 'w'},
                                         {"nodes", required_argument, 0, 'n'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    bool as_json = false;
    long long ctx = 0, seq = 0;
    const char *weight = "memory", *nodes = NULL;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'j': as_json = true; break;
        case 'c': if (!cli_parse_int("cluster plan", "--ctx", optarg, 8, 1 << 20, &ctx)) return CLI_USAGE; break;
        case 's': if (!cli_parse_int("cluster plan", "--seq", optarg, 1, 256, &seq)) return CLI_USAGE; break;
        case 'w':
            if (strcmp(optarg, "memory") && strcmp(optarg, "speed") && strcmp(optarg, "both"))
                return cli_usage_error("cluster plan", "--weight is memory, speed or both");
            weight = optarg;
            break;
        case 'n': nodes = optarg; break;
        case 'h':
            printf("usage: byoai cluster plan MODEL.gguf [--json] [--ctx N] [--seq N] [--weight memory|speed|both] "
                   "[--nodes ID,...]\n\nShow which node of the running cluster would run which layers of MODEL, and "
                   "the\nmemory each needs (weights, KV cache, buffers) against what it offers. Nothing\nis loaded. "
                   "Layer ranges are written begin-end with the end not included:\n0-4 is layers 0, 1, 2 and 3.\n");
            return CLI_OK;
        default: return cli_option_error("cluster plan", c, opts, argv);
        }
    }
    if (optind + 1 != argc) return cli_usage_error("cluster plan", "expected exactly one MODEL");
    char path[4096], real[4096];
    if (!cli_resolve_model("cluster plan", argv[optind], path, sizeof path)) return CLI_ERROR;
    if (!realpath(path, real)) snprintf(real, sizeof real, "%s", path);
    json_t *req = json_pack("{s:s,s:s,s:i,s:i,s:s}", "cmd", "plan", "model", real, "n_ctx", (int)ctx, "n_seq", (int)seq,
                            "weighting", weight);
    if (nodes) {
        char *copy = strdup(nodes);
        const char *list[64];
        int n = copy ? split_list(copy, list, 64) : 0;
        json_t *arr = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(arr, json_string(list[i]));
        json_object_set_new(req, "nodes", arr);
        free(copy);
    }
    json_t *fin;
    int rc = control_call("plan", req, NULL, NULL, &fin);
    if (rc) {
        json_decref(fin);
        return rc;
    }
    json_t *plan = json_object_get(fin, "plan");
    if (as_json) {
        char *s = json_dumps(plan, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
    } else {
        char b1[32], b2[32], b3[32], b4[32], b5[32];
        printf("%d layers on %zu node(s):\n\n%-12s  %-16s %-9s %10s %10s %10s %10s %10s %6s\n",
               (int)json_integer_value(json_object_get(plan, "layers")), json_array_size(json_object_get(plan, "stages")),
               "NODE", "NAME", "LAYERS", "WEIGHTS", "KV", "BUFFERS", "TOTAL", "OFFERED", "SHARE");
        size_t i;
        json_t *s;
        json_array_foreach(json_object_get(plan, "stages"), i, s) {
            char lay[16];
            snprintf(lay, sizeof lay, "%d-%d", (int)json_integer_value(json_object_get(s, "layer_begin")),
                     (int)json_integer_value(json_object_get(s, "layer_end")));
            printf("%-12.12s  %-16.16s %-9s %10s %10s %10s %10s %10s %5.0f%%\n", json_string_value(json_object_get(s, "node_id")),
                   json_string_value(json_object_get(s, "name")), lay,
                   hb(json_integer_value(json_object_get(s, "weight_bytes")), b1, sizeof b1),
                   hb(json_integer_value(json_object_get(s, "kv_bytes")), b2, sizeof b2),
                   hb(json_integer_value(json_object_get(s, "buffer_bytes")), b3, sizeof b3),
                   hb(json_integer_value(json_object_get(s, "total_bytes")), b4, sizeof b4),
                   hb(json_integer_value(json_object_get(s, "memory")), b5, sizeof b5),
                   100 * json_real_value(json_object_get(s, "share")));
        }
        printf("\ntotal %s of %s offered (layers 0-4 means layers 0, 1, 2 and 3: the end is not included)\n",
               hb(json_integer_value(json_object_get(plan, "total_bytes")), b1, sizeof b1),
               hb(json_integer_value(json_object_get(plan, "total_memory")), b2, sizeof b2));
    }
    json_decref(fin);
    return CLI_OK;
}

/* ---- deploy and run through the running node ----------------------------------------------------- */

typedef struct {
    const char *name, *path, *url;
    long long ctx, seq, batch, min_nodes;
    const char *wire, *weight;
    const char *nodes;
} deploy_opts;

static json_t *deploy_request(const deploy_opts *d) {
    char real[4096];
    if (!realpath(d->path, real)) snprintf(real, sizeof real, "%s", d->path);
    json_t *req = json_pack("{s:s,s:s,s:s,s:i,s:i,s:i,s:i,s:s,s:s}", "cmd", "deploy", "name", d->name, "model", real,
                            "n_ctx", (int)d->ctx, "n_seq", (int)d->seq, "n_batch", (int)d->batch, "min_nodes",
                            (int)d->min_nodes, "wire", d->wire ? d->wire : "f32", "weighting",
                            d->weight ? d->weight : "memory");
    if (d->url) json_object_set_new(req, "url", json_string(d->url));
    if (d->nodes) {
        char *copy = strdup(d->nodes);
        const char *list[64];
        int n = copy ? split_list(copy, list, 64) : 0;
        json_t *arr = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(arr, json_string(list[i]));
        json_object_set_new(req, "nodes", arr);
        free(copy);
    }
    return req;
}

static bool split_model_arg(const char *cmd, char *arg, const char **name, const char **path) {
    char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1]) {
        cli_usage_error(cmd, "expected NAME=PATH, got '%s'", arg);
        return false;
    }
    *eq = '\0';
    *name = arg;
    *path = eq + 1;
    return true;
}

static int cmd_deploy(int argc, char **argv) {
    static const struct option opts[] = {{"url", required_argument, 0, 'u'},      {"ctx", required_argument, 0, 'c'},
                                         {"seq", required_argument, 0, 's'},      {"batch", required_argument, 0, 'b'},
                                         {"wire", required_argument, 0, 'w'},     {"weight", required_argument, 0, 'W'},
                                         {"min-nodes", required_argument, 0, 'm'}, {"nodes", required_argument, 0, 'n'},
                                         {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    deploy_opts d = {0};
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'u': d.url = optarg; break;
        case 'c': if (!cli_parse_int("cluster deploy", "--ctx", optarg, 8, 1 << 20, &d.ctx)) return CLI_USAGE; break;
        case 's': if (!cli_parse_int("cluster deploy", "--seq", optarg, 1, 256, &d.seq)) return CLI_USAGE; break;
        case 'b': if (!cli_parse_int("cluster deploy", "--batch", optarg, 1, 8192, &d.batch)) return CLI_USAGE; break;
        case 'w':
            if (strcmp(optarg, "f32") && strcmp(optarg, "f16")) return cli_usage_error("cluster deploy", "--wire is f32 or f16");
            d.wire = optarg;
            break;
        case 'W': d.weight = optarg; break;
        case 'm': if (!cli_parse_int("cluster deploy", "--min-nodes", optarg, 1, 64, &d.min_nodes)) return CLI_USAGE; break;
        case 'n': d.nodes = optarg; break;
        case 'h':
            printf("usage: byoai cluster deploy NAME=MODEL.gguf [--url URL] [--ctx N] [--seq N] [--batch N]\n"
                   "                            [--wire f32|f16] [--weight memory|speed|both] [--min-nodes N] [--nodes IDS]\n\n"
                   "Plan and load MODEL across the cluster with the running node as coordinator.\n"
                   "Nodes lacking the file fetch only their tensors from --url (HTTP Range).\n");
            return CLI_OK;
        default: return cli_option_error("cluster deploy", c, opts, argv);
        }
    }
    if (optind + 1 != argc) return cli_usage_error("cluster deploy", "expected exactly one NAME=MODEL.gguf");
    if (!split_model_arg("cluster deploy", argv[optind], &d.name, &d.path)) return CLI_USAGE;
    char resolved[4096];
    if (!cli_resolve_model("cluster deploy", d.path, resolved, sizeof resolved)) return CLI_ERROR;
    d.path = resolved;
    json_t *fin;
    int rc = control_call("deploy", deploy_request(&d), NULL, NULL, &fin);
    if (!rc) {
        json_t *co = json_object_get(fin, "coordinator");
        json_t *st = json_object_get(fin, "stages");
        if (json_is_true(json_object_get(co, "self")) || !json_object_size(co)) {
            printf("deployed %s on %zu node(s):", d.name, json_array_size(st));
        } else {
            printf("%s is already deployed by node %.12s (%s); using that deployment:", d.name,
                   json_string_value(json_object_get(co, "node_id")), json_string_value(json_object_get(co, "name")));
        }
        size_t i;
        json_t *s;
        json_array_foreach(st, i, s) printf("%s %s layers %d-%d", i ? "," : "", json_string_value(json_object_get(s, "name")),
                                          (int)json_integer_value(json_object_get(s, "layer_begin")),
                                          (int)json_integer_value(json_object_get(s, "layer_end")));
        printf("\n");
        json_t *lack = json_object_get(fin, "lacking");
        if (json_array_size(lack)) {
            fprintf(stderr, "byoai cluster deploy: warning: %zu member(s) have no copy of the model and no URL to fetch "
                    "it from, so the plan leaves them out:", json_array_size(lack));
            json_array_foreach(lack, i, s) fprintf(stderr, "%s %s", i ? "," : "", json_string_value(s));
            fprintf(stderr, "\n%s\n", json_string_value(json_object_get(fin, "hint")));
        }
    }
    json_decref(fin);
    return rc;
}

typedef struct {
    bool json;
} run_out;

static int run_line(void *user, json_t *line) {
    run_out *o = user;
    if (o->json) {
        char *s = json_dumps(line, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
    } else {
        const char *t = json_string_value(json_object_get(line, "text"));
        if (t) fputs(t, stdout);
    }
    fflush(stdout);
    return 0;
}

static int cmd_run(int argc, char **argv) {
    static const struct option opts[] = {{"prompt", required_argument, 0, 'p'}, {"n-predict", required_argument, 0, 'n'},
                                         {"temp", required_argument, 0, 'T'},   {"seed", required_argument, 0, 's'},
                                         {"top-k", required_argument, 0, 'k'},  {"top-p", required_argument, 0, 'P'},
                                         {"json", no_argument, 0, 'j'},          {"help", no_argument, 0, 'h'},
                                         {"json-object", no_argument, 0, 'J'},   {0, 0, 0, 0}};
    bool json_object = false;
    const char *prompt = "Once upon a time";
    long long n = 64, topk = 40;
    double temp = 0.8, topp = 0.95;
    unsigned long long seed = 0xB10A1;
    run_out o = {0};
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":p:n:s:h", opts, NULL)) != -1) {
        switch (c) {
        case 'p': prompt = optarg; break;
        case 'n': if (!cli_parse_int("cluster run", "-n", optarg, -1, 1 << 20, &n)) return CLI_USAGE; break;
        case 'T': if (!cli_parse_float("cluster run", "--temp", optarg, 0, 100, &temp)) return CLI_USAGE; break;
        case 'k': if (!cli_parse_int("cluster run", "--top-k", optarg, 0, 1 << 24, &topk)) return CLI_USAGE; break;
        case 'P': if (!cli_parse_float("cluster run", "--top-p", optarg, 1e-6, 1, &topp)) return CLI_USAGE; break;
        case 's': {
            char *end;
            seed = strtoull(optarg, &end, 0);
            if (end == optarg || *end) return cli_usage_error("cluster run", "--seed expects a whole number");
            break;
        }
        case 'j': o.json = true; break;
        case 'J': json_object = true; break;
        case 'h':
            printf("usage: byoai cluster run NAME [-p PROMPT] [-n N] [--temp T] [--top-k K] [--top-p P] [--seed S] [--json]\n"
                   "                         [--json-object]\n\n"
                   "Run a completion for model NAME through the cluster (the running node\n"
                   "coordinates it or asks the member that does). Text streams to standard\n"
                   "output; with --json, one JSON object per token. Speed goes to standard error.\n"
                   "--json-object constrains the output to one valid JSON object (JSON mode),\n"
                   "closed within N tokens.\n");
            return CLI_OK;
        default: return cli_option_error("cluster run", c, opts, argv);
        }
    }
    if (optind + 1 != argc) return cli_usage_error("cluster run", "expected exactly one model NAME");
    json_t *req = json_pack("{s:s,s:s,s:s,s:i,s:f,s:i,s:f,s:I}", "cmd", "generate", "model", argv[optind], "prompt",
                            prompt, "n_predict", (int)n, "temp", temp, "top_k", (int)topk, "top_p", topp, "seed",
                            (json_int_t)seed);
    if (json_object) json_object_set_new(req, "json_object", json_true());
    if (!o.json) {
        fputs(prompt, stdout);
        fflush(stdout);
    }
    json_t *fin;
    int rc = control_call("run", req, run_line, &o, &fin);
    if (!rc) {
        const char *tail = json_string_value(json_object_get(fin, "tail"));
        if (o.json) {
            char *s = json_dumps(fin, JSON_COMPACT);
            printf("%s\n", s);
            free(s);
        } else {
            if (tail) fputs(tail, stdout);
            printf("\n");
        }
        double gs = json_real_value(json_object_get(fin, "gen_seconds"));
        int ng = (int)json_integer_value(json_object_get(fin, "n_generated"));
        fprintf(stderr, "byoai: prompt %d tokens, first token after %.3f s | generation %d tokens, %.2f tokens/s | "
                "failovers %d (stall %.2f s)\n", (int)json_integer_value(json_object_get(fin, "n_prompt")),
                json_real_value(json_object_get(fin, "prompt_seconds")), ng, gs > 0 && ng > 1 ? (ng - 1) / gs : 0.0,
                (int)json_integer_value(json_object_get(fin, "failovers")),
                json_real_value(json_object_get(fin, "stall_seconds")));
    }
    json_decref(fin);
    return rc;
}

/* ---- the node daemon -------------------------------------------------------------------------------- */

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static int cmd_node(int argc, char **argv) {
    static const struct option opts[] = {
        {"bind", required_argument, 0, 1},           {"port", required_argument, 0, 2},
        {"discovery-port", required_argument, 0, 3}, {"no-discovery", no_argument, 0, 4},
        {"peer", required_argument, 0, 5},           {"memory", required_argument, 0, 6},
        {"threads", required_argument, 0, 't'},      {"heartbeat", required_argument, 0, 7},
        {"failure-timeout", required_argument, 0, 8}, {"step-timeout", required_argument, 0, 9},
        {"load-timeout", required_argument, 0, 10},  {"model-file", required_argument, 0, 11},
        {"model", required_argument, 0, 12},         {"model-url", required_argument, 0, 13},
        {"ctx", required_argument, 0, 14},           {"seq", required_argument, 0, 15},
        {"batch", required_argument, 0, 16},         {"wire", required_argument, 0, 17},
        {"weight", required_argument, 0, 18},        {"min-nodes", required_argument, 0, 19},
        {"nodes", required_argument, 0, 20},         {"test-link-delay-ms", required_argument, 0, 21},
        {"measure-bandwidth", no_argument, 0, 22},   {"no-measure-bandwidth", no_argument, 0, 23},
        {"name", required_argument, 0, 24},          {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    byoai_cluster_config cfg = {.port = BYOAI_CLUSTER_DEFAULT_PORT, .measure_bandwidth = true};
    const char *peers[32], *files[32];
    size_t n_peers = 0, n_files = 0;
    char *models[8];
    int n_models = 0;
    deploy_opts d = {0};
    const char *url = NULL;
    long long iv;
    double fv;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":t:h", opts, NULL)) != -1) {
        switch (c) {
        case 1: cfg.bind_addr = optarg; break;
        case 2: if (!cli_parse_int("cluster node", "--port", optarg, 0, 65535, &iv)) return CLI_USAGE; cfg.port = (uint16_t)iv; break;
        case 3: if (!cli_parse_int("cluster node", "--discovery-port", optarg, 1, 65535, &iv)) return CLI_USAGE; cfg.discovery_port = (uint16_t)iv; break;
        case 4: cfg.no_discovery = true; break;
        case 5: if (n_peers < 32) peers[n_peers++] = optarg; break;
        case 6: if (!cli_parse_bytes("cluster node", "--memory", optarg, &cfg.memory)) return CLI_USAGE; break;
        case 't': if (!cli_parse_int("cluster node", "--threads", optarg, 1, 512, &iv)) return CLI_USAGE; cfg.n_threads = (int)iv; break;
        case 7: if (!cli_parse_float("cluster node", "--heartbeat", optarg, 0.05, 60, &fv)) return CLI_USAGE; cfg.heartbeat_s = fv; break;
        case 8: if (!cli_parse_float("cluster node", "--failure-timeout", optarg, 0.1, 3600, &fv)) return CLI_USAGE; cfg.failure_timeout_s = fv; break;
        case 9: if (!cli_parse_float("cluster node", "--step-timeout", optarg, 0.1, 3600, &fv)) return CLI_USAGE; cfg.step_timeout_s = fv; break;
        case 10: if (!cli_parse_float("cluster node", "--load-timeout", optarg, 0.1, 86400, &fv)) return CLI_USAGE; cfg.load_timeout_s = fv; break;
        case 11: if (n_files < 32) files[n_files++] = optarg; break;
        case 12: if (n_models < 8) models[n_models++] = optarg; break;
        case 13: url = optarg; break;
        case 14: if (!cli_parse_int("cluster node", "--ctx", optarg, 8, 1 << 20, &d.ctx)) return CLI_USAGE; break;
        case 15: if (!cli_parse_int("cluster node", "--seq", optarg, 1, 256, &d.seq)) return CLI_USAGE; break;
        case 16: if (!cli_parse_int("cluster node", "--batch", optarg, 1, 8192, &d.batch)) return CLI_USAGE; break;
        case 17:
            if (strcmp(optarg, "f32") && strcmp(optarg, "f16")) return cli_usage_error("cluster node", "--wire is f32 or f16");
            d.wire = optarg;
            break;
        case 18:
            if (strcmp(optarg, "memory") && strcmp(optarg, "speed") && strcmp(optarg, "both"))
                return cli_usage_error("cluster node", "--weight is memory, speed or both");
            d.weight = optarg;
            break;
        case 19: if (!cli_parse_int("cluster node", "--min-nodes", optarg, 1, 64, &d.min_nodes)) return CLI_USAGE; break;
        case 20: d.nodes = optarg; break;
        case 21: if (!cli_parse_float("cluster node", "--test-link-delay-ms", optarg, 0, 10000, &fv)) return CLI_USAGE; cfg.test_link_delay_ms = fv; break;
        case 22: cfg.measure_bandwidth = true; break;
        case 23: cfg.measure_bandwidth = false; break;
        case 24: cfg.name = optarg; break;
        case 'h': node_usage(stdout); return CLI_OK;
        default: return cli_option_error("cluster node", c, opts, argv);
        }
    }
    if (optind < argc) return cli_usage_error("cluster node", "unexpected argument '%s'", argv[optind]);
    static char resolved[8][4096];
    const char *model_name[8], *model_path[8];
    for (int i = 0; i < n_models; i++) {
        const char *name, *path;
        if (!split_model_arg("cluster node", models[i], &name, &path)) return CLI_USAGE;
        if (!cli_resolve_model("cluster node", path, resolved[i], sizeof resolved[i])) return CLI_ERROR;
        model_name[i] = name;
        model_path[i] = resolved[i];
        if (n_files < 32) files[n_files++] = resolved[i];
    }
    cfg.peers = peers;
    cfg.n_peers = n_peers;
    cfg.model_files = files;
    cfg.n_model_files = n_files;
    byoai_error err = {0};
    byoai_cluster *cl;
    if (byoai_cluster_start(&cfg, &cl, &err)) return cli_fail("cluster node", &err);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    printf("node %s listening on %s:%u\n", byoai_cluster_node_id(cl), cfg.bind_addr ? cfg.bind_addr : "0.0.0.0",
           byoai_cluster_port(cl));
    fflush(stdout);
    int rc = CLI_OK;
    for (int i = 0; i < n_models && !g_stop; i++) {
        byoai_cluster_model_opts o = {0};
        const char *name = model_name[i], *path = model_path[i];
        const char *nodes[64];
        char *copy = d.nodes ? strdup(d.nodes) : NULL;
        o.name = name;
        o.path = path;
        o.url = url;
        o.n_ctx = (uint32_t)d.ctx;
        o.n_seq = (uint32_t)d.seq;
        o.n_batch = (uint32_t)d.batch;
        o.min_nodes = (uint32_t)d.min_nodes;
        o.wire = d.wire && !strcmp(d.wire, "f16") ? BYOAI_WIRE_F16 : BYOAI_WIRE_F32;
        o.weighting = d.weight && !strcmp(d.weight, "speed") ? BYOAI_WEIGHT_SPEED
                      : d.weight && !strcmp(d.weight, "both") ? BYOAI_WEIGHT_BOTH
                                                              : BYOAI_WEIGHT_MEMORY;
        if (copy) {
            o.n_nodes = (size_t)split_list(copy, nodes, 64);
            o.nodes = nodes;
        }
        if (byoai_cluster_deploy(cl, &o, &err)) {
            cli_fail("cluster node", &err);
            rc = CLI_ERROR;
            free(copy);
            g_stop = 1;
            break;
        }
        free(copy);
        printf("deployed %s\n", name);
        fflush(stdout);
    }
    while (!g_stop && !byoai_cluster_left(cl)) usleep(100000);
    byoai_cluster_stop(cl);
    if (rc == CLI_OK) fprintf(stderr, "byoai cluster node: stopped\n");
    return rc;
}

int cli_cluster(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(cmd, "create")) return cmd_create(argc - 1, argv + 1);
    if (!strcmp(cmd, "invite")) return cmd_invite(argc - 1, argv + 1);
    if (!strcmp(cmd, "join")) return cmd_join(argc - 1, argv + 1);
    if (!strcmp(cmd, "leave")) return cmd_leave(argc - 1, argv + 1);
    if (!strcmp(cmd, "remove")) return cmd_remove(argc - 1, argv + 1);
    if (!strcmp(cmd, "status")) return cmd_status(argc - 1, argv + 1);
    if (!strcmp(cmd, "plan")) return cmd_plan(argc - 1, argv + 1);
    if (!strcmp(cmd, "deploy")) return cmd_deploy(argc - 1, argv + 1);
    if (!strcmp(cmd, "run")) return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "node")) return cmd_node(argc - 1, argv + 1);
    static const char *const cmds[] = {"create", "invite", "join", "leave", "remove",
                                       "status", "plan", "deploy", "run", "node"};
    return cli_unknown_word("cluster", "command", cmd, cmds, sizeof cmds / sizeof cmds[0]);
}
