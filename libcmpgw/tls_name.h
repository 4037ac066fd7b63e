/* tls_name.h -- does a peer's certificate name the host we meant to reach
 * (RFC 6125 via OpenSSL's X509_check_host/X509_check_ip_asc), and may that
 * host go into SNI (RFC 6066 §3: names only, never address literals) */
#pragma once

#include <stdbool.h>

#include <openssl/x509.h>

bool host_is_ip_literal(const char *host);

/* an iPAddress SAN for an address literal; a dNSName SAN (or the CN) for a name */
bool x509_names_host(X509 *cert, const char *host);
