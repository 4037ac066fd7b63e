/* cmp_path.h -- the CMP-over-CoAP resource namespace (RFC 9482 §2.1)
 *
 *   /.well-known/cmp[/p/<label>][/<operation>|/ann]
 *
 * and the operation labels of RFC 9483 §6.2 with their HTTP spellings. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Operation labels of RFC 9483 §6.2, CoAP spelling. CMP_OP_NONE: the bare
 * /.well-known/cmp (or /p/<label>) resource, which takes every body type. */
enum cmp_op {
        CMP_OP_NONE = 0,
        CMP_OP_IR,
        CMP_OP_CR,
        CMP_OP_KUR,
        CMP_OP_P10,
        CMP_OP_RR,
        CMP_OP_CRTS,
        CMP_OP_RCU,
        CMP_OP_ATT,
        CMP_OP_CRLS,
        CMP_OP_NEST,
        _CMP_OP_MAX,
};

#define CMP_LABEL_MAX 64

struct cmp_path {
        enum cmp_op op;
        bool ann;                       /* .../ann (RFC 9482 §2.6) */
        char label[CMP_LABEL_MAX + 1];  /* "" when no /p/<label> */
};

enum cmp_path_result {
        CMP_PATH_OK = 0,
        CMP_PATH_NOT_CMP,       /* not under /.well-known/cmp at all */
        CMP_PATH_BAD_LABEL,     /* /p/ without a usable label */
        CMP_PATH_UNKNOWN_OP,    /* a segment that is no operation we know */
};

/* Parse a Uri-Path given as its segments (already percent-decoded by CoAP
 * option framing, never containing '/'). */
enum cmp_path_result cmp_path_parse_segments(const char *const *segs, size_t n,
                                             struct cmp_path *out);
/* Parse a slash-separated path such as ".well-known/cmp/p/x/ir" (leading
 * '/' optional). Convenience for tests and the CLI. */
enum cmp_path_result cmp_path_parse(const char *path, struct cmp_path *out);

/* A label may hold [A-Za-z0-9._~-], 1..CMP_LABEL_MAX characters, and is
 * neither "." nor "..". */
bool cmp_label_valid(const char *s, size_t len);

const char *cmp_op_coap_name(enum cmp_op op);   /* "ir" ... ; "" for NONE */
const char *cmp_op_http_name(enum cmp_op op);   /* "initialization" ...; "" for NONE */
enum cmp_op cmp_op_from_coap_name(const char *s, size_t len); /* CMP_OP_NONE if unknown */

/* Builds "<base>[/p/<label>][/<http op>]" into buf when base's path ends in
 * "/.well-known/cmp" (PRODUCT.md: upstream URIs), else copies base as is.
 * Returns the length, or -ENOBUFS. */
int cmp_path_http_upstream_uri(const char *base, const char *label, enum cmp_op op,
                               char *buf, size_t size);
/* The same for a CoAP upstream: the CoAP operation labels, unchanged. */
int cmp_path_coap_upstream_uri(const char *base, const char *label, enum cmp_op op,
                               char *buf, size_t size);
