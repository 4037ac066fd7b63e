/* psk_file.h -- DTLS pre-shared keys from a file (RFC 9482 §4: keys
 * readable only by the service): "IDENTITY:KEY" lines, KEY text or 0xHEX,
 * '#' comments and blank lines. Used by coaps listeners (many identities)
 * and coaps upstreams (the gateway's own, one). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <coap3/coap.h>

#define PSK_IDENTITY_MAX 128
#define PSK_KEY_MAX 64

struct psk_entry {
        char identity[PSK_IDENTITY_MAX + 1];
        uint8_t key[PSK_KEY_MAX];
        coap_bin_const_t bin;           /* the key: points into key */
};

/* Reads PATH, refusing a file that group or others may read; errors are
 * logged naming KEY (the config key) and the line. Entries come sorted by
 * identity, without duplicates. Negative errno on failure. */
int psk_file_load(const char *key, const char *path, struct psk_entry **ret, size_t *ret_n);

const struct psk_entry *psk_file_find(const struct psk_entry *v, size_t n, const char *identity);

/* wipes the keys */
void psk_file_free(struct psk_entry *v, size_t n);
