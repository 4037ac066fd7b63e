/* dn_text.h -- distinguished names written as text, parsed into X509_NAME
 *
 * Two spellings are taken:
 *   - OpenSSL's "/O=Example/CN=node1": RDNs in order, as `openssl cmp
 *     -subject` and cmpcoap --subject write them;
 *   - RFC 4514 (RFC 2253) "CN=node1,O=Example": RDNs in reverse order, as
 *     the registry, cmpgwctl and `openssl x509 -nameopt RFC2253` print them;
 *     spaces around types and values are ignored, "\XX" is a hex byte.
 * In both '+' joins the attributes of a multi-valued RDN and '\' takes the
 * next character literally. An attribute with an empty value is left out,
 * like openssl does. Attribute types are OpenSSL short names or OIDs. */
#pragma once

#include <stddef.h>

#include <openssl/x509.h>

/* NULL with the reason in why (naming the text) when it is not a name. */
X509_NAME *dn_text_parse(const char *text, char *why, size_t why_size);

/* The name as the registry writes it (RFC 2253, XN_FLAG_RFC2253), whatever
 * the spelling it was given in: malloc'd, or NULL with the reason in why. */
char *dn_text_canonical(const char *text, char *why, size_t why_size);
