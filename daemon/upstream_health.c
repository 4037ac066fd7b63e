/* upstream_health.c -- the health of each upstream, by name */
#include "upstream_health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const struct upstream_health *upstream_health_find(const struct upstream_health_table *t, const char *name) {
        for (size_t i = 0; t && i < t->n; i++)
                if (strcmp(t->v[i].name, name) == 0)
                        return &t->v[i];
        return NULL;
}

struct upstream_health *upstream_health_get(struct upstream_health_table *t, const char *name) {
        struct upstream_health *h = (struct upstream_health *) upstream_health_find(t, name);

        if (h)
                return h;
        h = realloc(t->v, (t->n + 1) * sizeof *h);
        if (!h)
                return NULL;
        t->v = h;
        h = memset(&t->v[t->n++], 0, sizeof *h);
        snprintf(h->name, sizeof h->name, "%s", name);
        return h;
}

void upstream_health_count(struct upstream_health *h, bool answered, uint64_t started_usec, uint64_t now_usec) {
        h->requests++;
        if (!answered) {
                h->failures++;
                h->failures_in_a_row++;
                h->last_failure = (int64_t) time(NULL);
                return;
        }
        h->answered++;
        h->failures_in_a_row = 0;
        h->last_success = (int64_t) time(NULL);
        h->latency_ms = (double) (now_usec - started_usec) / 1000.0;
}

void upstream_health_table_clear(struct upstream_health_table *t) {
        free(t->v);
        t->v = NULL;
        t->n = 0;
}
