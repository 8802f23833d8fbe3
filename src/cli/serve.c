/* byoai serve: the OpenAI-compatible API server and the web app. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "byoai/server.h"
#include "byoai/store.h"
#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
"usage: byoai serve [MODEL...] [options]\n"
"\n"
"Serve models over HTTP: the OpenAI API (/v1/chat/completions, /v1/completions,\n"
"/v1/embeddings, /v1/models), a native API (/api/health, /api/version,\n"
"/metrics, /api/conversations, /api/models) and a web app to chat in at /.\n"
"Installed models and bundles are always served by name. A MODEL given here\n"
"is a .gguf file, named in the API after the file (lower case, without\n"
".gguf) or --alias; or an installed name (checked at start). Models load on\n"
"first use and unload when idle.\n"
"Prints the address it listens on; stops gracefully on SIGTERM or Ctrl-C.\n"
"\n"
"Options (each also a config-file key and a BYOAI_<KEY> environment variable):\n"
"      --host ADDR           address to listen on (default 127.0.0.1; 0.0.0.0 for all)\n"
"  -p, --port N              port (default 8080; 0 picks a free one)\n"
"      --alias NAME          API name of the one MODEL given\n"
"      --model NAME=PATH     serve PATH as NAME (repeatable)\n"
"      --chat-template T     force a chat template family for every model, or\n"
"                            NAME=T for one: chatml, llama2, llama3, mistral,\n"
"                            phi3, gemma, zephyr, fallback (default: detect)\n"
"      --api-key KEY         require this key as 'Authorization: Bearer KEY'\n"
"                            (repeatable; keys from `byoai apikey create` also work)\n"
"      --cors-origin ORIGIN  let web pages from ORIGIN call the API (repeatable,\n"
"                            or comma-separated; '*' for any)\n"
"      --parallel N          requests decoded together per model (default 4)\n"
"  -c, --ctx N               context tokens per request (default: the model's trained\n"
"                            context, less when the KV cache of --parallel sequences\n"
"                            would take more than a quarter of the memory)\n"
"  -t, --threads N           compute threads per model (default: all cores)\n"
"      --max-loaded N        models loaded at once (default 2)\n"
"      --idle-timeout S      unload a model unused for S seconds (default 300; 0 never)\n"
"      --queue N             requests waiting per model before 503 (default 64)\n"
"      --max-tokens N        most tokens one request may generate (default 4096)\n"
"      --max-messages N      most messages in one chat request (default 1024)\n"
"      --max-body BYTES      largest request body, K/M/G suffixes (default 1M)\n"
"      --request-timeout S   longest a generation may take (default 600)\n"
"      --shutdown-grace S    seconds running requests get on SIGTERM (default 10)\n"
"      --max-connections N   open connections at most (default 4096)\n"
"      --max-connections-per-ip N  connections one client address may hold (default 64;\n"
"                            0 for no limit)\n"
"      --header-timeout S    seconds a client has to send a request's headers (default 10)\n"
"      --min-body-rate BYTES bytes/s a request body must average after that (default 1K)\n"
"      --log-format F        the per-request log line on stderr: text or json (default text)\n"
"      --no-log-requests     no per-request log line\n"
"      --no-web              do not serve the web app\n"
"      --db PATH             server database (default $BYOAI_HOME/server.db)\n"
"      --config FILE         read 'key = value' settings (default $BYOAI_HOME/server.conf\n"
"                            when it exists; also $BYOAI_CONFIG)\n"
"\n"
"The prompt cache: each conversation keeps its KV cache between turns.\n"
"      --slot-similarity F   reuse a slot's cache for a request when it holds at\n"
"                            least this share of the prompt (default 0.5); else the\n"
"                            least recently used slot is taken and its conversation\n"
"                            moves to the prompt cache\n"
"      --cache-ram SIZE      KV of such conversations kept in memory, per model\n"
"                            (default 512M; K/M/G suffixes)\n"
"      --cache-disk SIZE     and on disk beyond that, per model (default 4G; 0: none)\n"
"      --cache-dir DIR       where (default $BYOAI_HOME/cache)\n"
"\n"
"The private cluster (docs/cluster.md; this home must have joined one with\n"
"`byoai cluster create` or `byoai cluster join`):\n"
"      --cluster             run a cluster node in the server and answer requests\n"
"                            for every model the cluster runs\n"
"      --cluster-model NAME=PATH  coordinate this model across the cluster (repeatable;\n"
"                            PATH may be an installed name)\n"
"      --cluster-model-url URL   where members lacking a file fetch its tensors\n"
"      --cluster-min-nodes N wait for N members before deploying (default 1)\n"
"      --cluster-peer H:P    a member to connect to directly (repeatable)\n"
"      --cluster-name NAME   this node's name, kept (default: host name + id)\n"
"      --cluster-bind ADDR   address for links and announcements (default 0.0.0.0)\n"
"      --cluster-port N      TCP port for links (default 47475; 0 picks one)\n"
"      --cluster-discovery-port N  UDP port for announcements (default 47474)\n"
"      --no-cluster-discovery      no broadcast announcements (use --cluster-peer)\n"
"      --cluster-memory SIZE memory offered to the cluster (default 90%% of free)\n"
"      --cluster-wire f32|f16      hidden states on the wire (default f32: exact)\n"
"      --cluster-heartbeat S, --cluster-failure-timeout S, --cluster-step-timeout S\n"
"                            heartbeat interval (1), silence before a member is\n"
"                            declared dead (5), longest pipeline step (30)\n"
"  -h, --help                show this help\n"
"\n"
"Precedence: flags over environment over config file over defaults.\n"
"See docs/server.md for the API and every setting.\n"
"\n"
"Exit status: 0 stopped by a signal, 1 cannot start (port in use, bad model), 2 usage error.\n"
"\n"
"Example:\n"
"  byoai serve stories260K.gguf --port 8080\n"
"  curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\\n"
"    -d '{\"model\": \"stories260k\", \"messages\": [{\"role\": \"user\", \"content\": \"Once upon a time\"}]}'\n");
}

typedef struct {
    const char *key, *value;
} setting;

/* byoai_server_start on its own thread, so that a signal during a long
 * start (waiting for cluster members) stops it */
typedef struct {
    const byoai_server_config *cfg;
    byoai_server *srv;
    byoai_error err;
    int rc, cancel, done;
} starter;

static void *start_main(void *arg) {
    starter *st = arg;
    st->rc = byoai_server_start_cancellable(st->cfg, &st->cancel, &st->srv, &st->err);
    __atomic_store_n(&st->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

int cli_serve(int argc, char **argv) {
    enum { O_HOST = 1, O_ALIAS, O_MODEL, O_CHAT, O_KEY, O_CORS, O_PAR, O_MAXLOADED, O_IDLE, O_QUEUE, O_MAXTOK,
           O_MAXMSG, O_MAXBODY, O_REQTO, O_GRACE, O_NOWEB, O_DB, O_CONFIG, O_HOME, O_CLUSTER, O_CL_MODEL, O_CL_URL,
           O_CL_MIN, O_CL_PEER, O_CL_BIND, O_CL_PORT, O_CL_DPORT, O_CL_NODISC, O_CL_MEM, O_CL_WIRE, O_CL_HB,
           O_CL_FAIL, O_CL_STEP, O_CL_DELAY, O_SIM, O_CRAM, O_CDISK, O_CDIR, O_MAXCONN, O_PERIP, O_HDRTO,
           O_BODYRATE, O_LOGFMT, O_NOLOG, O_CL_NAME };
    static const struct option opts[] = {
        {"host", required_argument, 0, O_HOST},          {"port", required_argument, 0, 'p'},
        {"alias", required_argument, 0, O_ALIAS},        {"model", required_argument, 0, O_MODEL},
        {"chat-template", required_argument, 0, O_CHAT}, {"api-key", required_argument, 0, O_KEY},
        {"cors-origin", required_argument, 0, O_CORS},   {"parallel", required_argument, 0, O_PAR},
        {"ctx", required_argument, 0, 'c'},              {"threads", required_argument, 0, 't'},
        {"max-loaded", required_argument, 0, O_MAXLOADED}, {"idle-timeout", required_argument, 0, O_IDLE},
        {"queue", required_argument, 0, O_QUEUE},        {"max-tokens", required_argument, 0, O_MAXTOK},
        {"max-messages", required_argument, 0, O_MAXMSG}, {"max-body", required_argument, 0, O_MAXBODY},
        {"request-timeout", required_argument, 0, O_REQTO}, {"shutdown-grace", required_argument, 0, O_GRACE},
        {"no-web", no_argument, 0, O_NOWEB},             {"db", required_argument, 0, O_DB},
        {"config", required_argument, 0, O_CONFIG},      {"home", required_argument, 0, O_HOME},
        {"cluster", no_argument, 0, O_CLUSTER},          {"cluster-model", required_argument, 0, O_CL_MODEL},
        {"cluster-model-url", required_argument, 0, O_CL_URL}, {"cluster-min-nodes", required_argument, 0, O_CL_MIN},
        {"cluster-peer", required_argument, 0, O_CL_PEER}, {"cluster-bind", required_argument, 0, O_CL_BIND},
        {"cluster-port", required_argument, 0, O_CL_PORT}, {"cluster-discovery-port", required_argument, 0, O_CL_DPORT},
        {"no-cluster-discovery", no_argument, 0, O_CL_NODISC}, {"cluster-memory", required_argument, 0, O_CL_MEM},
        {"cluster-wire", required_argument, 0, O_CL_WIRE}, {"cluster-heartbeat", required_argument, 0, O_CL_HB},
        {"cluster-failure-timeout", required_argument, 0, O_CL_FAIL},
        {"cluster-step-timeout", required_argument, 0, O_CL_STEP},
        {"cluster-test-link-delay-ms", required_argument, 0, O_CL_DELAY},
        {"slot-similarity", required_argument, 0, O_SIM}, {"cache-ram", required_argument, 0, O_CRAM},
        {"cache-disk", required_argument, 0, O_CDISK},   {"cache-dir", required_argument, 0, O_CDIR},
        {"max-connections", required_argument, 0, O_MAXCONN},
        {"max-connections-per-ip", required_argument, 0, O_PERIP},
        {"header-timeout", required_argument, 0, O_HDRTO}, {"min-body-rate", required_argument, 0, O_BODYRATE},
        {"log-format", required_argument, 0, O_LOGFMT},  {"no-log-requests", no_argument, 0, O_NOLOG},
        {"cluster-name", required_argument, 0, O_CL_NAME},
        {"help", no_argument, 0, 'h'},                   {0, 0, 0, 0}};
    static const char *keys[] = {[O_HOST] = "host", [O_MODEL] = "model", [O_CHAT] = "chat-template",
                                 [O_KEY] = "api-key", [O_CORS] = "cors-origin", [O_PAR] = "parallel",
                                 [O_MAXLOADED] = "max-loaded", [O_IDLE] = "idle-timeout", [O_QUEUE] = "queue",
                                 [O_MAXTOK] = "max-tokens", [O_MAXMSG] = "max-messages", [O_MAXBODY] = "max-body",
                                 [O_REQTO] = "request-timeout", [O_GRACE] = "shutdown-grace", [O_DB] = "db",
                                 [O_HOME] = "home", [O_CL_MODEL] = "cluster-model", [O_CL_URL] = "cluster-model-url",
                                 [O_CL_MIN] = "cluster-min-nodes", [O_CL_PEER] = "cluster-peer",
                                 [O_CL_BIND] = "cluster-bind", [O_CL_PORT] = "cluster-port",
                                 [O_CL_DPORT] = "cluster-discovery-port", [O_CL_MEM] = "cluster-memory",
                                 [O_CL_WIRE] = "cluster-wire", [O_CL_HB] = "cluster-heartbeat",
                                 [O_CL_FAIL] = "cluster-failure-timeout", [O_CL_STEP] = "cluster-step-timeout",
                                 [O_CL_DELAY] = "cluster-test-link-delay-ms", [O_SIM] = "slot-similarity",
                                 [O_CRAM] = "cache-ram", [O_CDISK] = "cache-disk", [O_CDIR] = "cache-dir",
                                 [O_MAXCONN] = "max-connections",
                                 [O_PERIP] = "max-connections-per-ip", [O_HDRTO] = "header-timeout",
                                 [O_BODYRATE] = "min-body-rate", [O_LOGFMT] = "log-format",
                                 [O_CL_NAME] = "cluster-name"};
    setting flags[256];
    int n_flags = 0;
    const char *alias = NULL, *config = getenv("BYOAI_CONFIG");
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":p:c:t:h", opts, NULL)) != -1) {
        if (n_flags >= (int)(sizeof flags / sizeof flags[0]) - 1) return cli_usage_error("serve", "too many options");
        switch (c) {
        case 'p': flags[n_flags++] = (setting){"port", optarg}; break;
        case 'c': flags[n_flags++] = (setting){"ctx", optarg}; break;
        case 't': flags[n_flags++] = (setting){"threads", optarg}; break;
        case O_ALIAS: alias = optarg; break;
        case O_CONFIG: config = optarg; break;
        case O_NOWEB: flags[n_flags++] = (setting){"web", "false"}; break;
        case O_CLUSTER: flags[n_flags++] = (setting){"cluster", "true"}; break;
        case O_CL_NODISC: flags[n_flags++] = (setting){"cluster-discovery", "false"}; break;
        case O_NOLOG: flags[n_flags++] = (setting){"log-requests", "false"}; break;
        case 'h': usage(stdout); return CLI_OK;
        case ':': case '?': return cli_option_error("serve", c, opts, argv);
        default: flags[n_flags++] = (setting){keys[c], optarg}; break;
        }
    }
    byoai_server_config cfg;
    byoai_server_config_defaults(&cfg);
    byoai_error err = {0};
    /* the config file: named, or the default one when it exists */
    char def_conf[1100];
    if (!config) {
        const char *home = getenv("BYOAI_HOME");
        for (int i = 0; i < n_flags; i++)
            if (!strcmp(flags[i].key, "home")) home = flags[i].value;
        char db[1100];
        byoai_server_default_db(home, db, sizeof db);
        char *slash = strrchr(db, '/');
        if (slash) *slash = '\0';
        snprintf(def_conf, sizeof def_conf, "%s/server.conf", db);
        if (access(def_conf, R_OK) == 0) config = def_conf;
    }
    if (config && byoai_server_config_load_file(&cfg, config, &err)) return cli_fail("serve", &err);
    if (byoai_server_config_load_env(&cfg, &err)) return cli_fail("serve", &err);
    /* positional models, then flags in the order given */
    int n_pos = argc - optind;
    if (alias && n_pos != 1) return cli_usage_error("serve", "--alias names the one MODEL given; use --model NAME=PATH for several");
    for (int i = optind; i < argc; i++) {
        char path[4096];
        byoai_store_model info;
        if (!cli_resolve_model_info("serve", argv[i], path, sizeof path, &info)) return CLI_ERROR;
        /* an installed name is served from the store as it is (bundles keep
         * their prompt and parameters); a file, or a renamed model, by path */
        if (info.name[0] && !alias) continue;
        if (byoai_server_config_add_model(&cfg, path, alias, &err)) return cli_usage_error("serve", "%s", err.msg);
    }
    for (int i = 0; i < n_flags; i++)
        if (byoai_server_config_set(&cfg, flags[i].key, flags[i].value, &err))
            return cli_usage_error("serve", "--%s: %s", flags[i].key, err.msg);
    if (cfg.n_cluster_models && !cfg.cluster)
        return cli_usage_error("serve", "--cluster-model needs --cluster (or cluster = true in the config)");
    if (cfg.n_models == 0 && !cfg.cluster)
        fprintf(stderr, "byoai serve: no models given: the API will answer, but has no model to run (give a MODEL.gguf "
                        "or --model NAME=PATH)\n");

    /* signals are taken by this thread with sigwait(): block them before any thread starts */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    starter st = {.cfg = &cfg};
    pthread_t th;
    if (pthread_create(&th, NULL, start_main, &st) != 0) {
        byoai_error_set(&err, BYOAI_EIO, "cannot start a thread");
        return cli_fail("serve", &err);
    }
    int sig = 0;
    while (!__atomic_load_n(&st.done, __ATOMIC_ACQUIRE)) {
        struct timespec tick = {0, 50 * 1000 * 1000};
        int got = sigtimedwait(&set, NULL, &tick);
        if (got > 0 && !sig) {
            sig = got;
            __atomic_store_n(&st.cancel, 1, __ATOMIC_RELEASE);
        }
    }
    pthread_join(th, NULL);
    if (sig) {
        if (!st.rc) byoai_server_free(st.srv);
        fprintf(stderr, "byoai serve: %s received while starting; stopped\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        return CLI_OK;
    }
    if (st.rc) return cli_fail("serve", &st.err);
    byoai_server *srv = st.srv;
    bool v6 = strchr(cfg.host, ':') != NULL;
    printf("byoai serve: listening on http://%s%s%s:%u/\n", v6 ? "[" : "", cfg.host, v6 ? "]" : "",
           byoai_server_port(srv));
    for (uint32_t i = 0; i < cfg.n_models; i++) printf("  model %s: %s\n", cfg.models[i].name, cfg.models[i].path);
    for (uint32_t i = 0; i < cfg.n_cluster_models; i++)
        printf("  cluster model %s: %s\n", cfg.cluster_models[i].name, cfg.cluster_models[i].path);
    fflush(stdout);
    sigwait(&set, &sig);
    fprintf(stderr, "byoai serve: %s received, finishing running requests (up to %u s)\n",
            sig == SIGTERM ? "SIGTERM" : "SIGINT", cfg.shutdown_grace);
    byoai_server_shutdown(srv, cfg.shutdown_grace);
    byoai_server_free(srv);
    fprintf(stderr, "byoai serve: stopped\n");
    return CLI_OK;
}
