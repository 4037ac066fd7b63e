/* main.c -- cmpgwd: wires configuration, logging and the manager */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <coap3/coap.h>
#include <curl/curl.h>

#include "coap_loop.h"
#include "config.h"
#include "log.h"
#include "manager.h"

static void usage(FILE *f) {
        fprintf(f,
                "Usage: cmpgwd [--config FILE] [--check-config] [--verbose] [--version]\n"
                "CMP over CoAP (RFC 9482) gateway.\n\n"
                "  -c, --config FILE   configuration (default %s)\n"
                "      --check-config  validate the configuration and exit\n"
                "  -v, --verbose       log debug messages (twice: libcoap's too)\n"
                "      --version       print the version and exit\n"
                "  -h, --help          this text\n", CMPGW_DEFAULT_CONFIG);
}

int main(int argc, char **argv) {
        enum { OPT_CHECK = 0x100, OPT_VERSION };
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' },
                { "check-config", no_argument, NULL, OPT_CHECK },
                { "verbose", no_argument, NULL, 'v' },
                { "version", no_argument, NULL, OPT_VERSION },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        const char *config_path = CMPGW_DEFAULT_CONFIG;
        struct cmpgw_config *config = NULL;
        Manager *m = NULL;
        bool check = false;
        int verbose = 0, c, r;
        char *err = NULL;

        log_set_program("cmpgwd");
        log_set_journal_prefix(getenv("JOURNAL_STREAM") != NULL);
        while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
                switch (c) {
                case 'c': config_path = optarg; break;
                case OPT_CHECK: check = true; break;
                case 'v': verbose++; break;
                case OPT_VERSION: printf("cmpgwd %s\n", CMPGW_VERSION); return 0;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "cmpgwd: unexpected argument \"%s\"; see --help\n", argv[optind]);
                return 2;
        }
        if (verbose)
                log_set_max_level(LOG_LVL_DEBUG);

        r = config_load_file(config_path, &config, &err);
        if (r < 0) {
                log_error("%s", err ? err : strerror(-r));
                free(err);
                return 1;
        }
        if (check) {
                printf("%s: OK (%zu listeners, %zu upstreams)\n", config_path, config->n_listen, config->n_upstreams);
                config_free(config);
                return 0;
        }

        coap_startup();
        coap_set_log_level(verbose > 1 ? LOG_DEBUG : LOG_WARNING);
        coap_loop_log_to_ours();
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                log_error("cannot initialise libcurl");
                config_free(config);
                return 1;
        }
        r = manager_new(config_path, config, &m);
        if (r < 0) {
                log_error("cannot set up the event loop: %s", strerror(-r));
                config_free(config);
                return 1;
        }
        r = manager_start(m);
        if (r >= 0)
                r = manager_run(m);
        else
                r = 1;
        manager_free(m);
        curl_global_cleanup();
        coap_cleanup();
        return r;
}
