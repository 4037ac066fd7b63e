/* tls_name.c -- host names in certificates */
#include "tls_name.h"

#include <arpa/inet.h>

#include <openssl/x509v3.h>

bool host_is_ip_literal(const char *host) {
        struct in6_addr a;

        return inet_pton(AF_INET, host, &a) == 1 || inet_pton(AF_INET6, host, &a) == 1;
}

bool x509_names_host(X509 *cert, const char *host) {
        return host_is_ip_literal(host) ? X509_check_ip_asc(cert, host, 0) == 1 :
                                          X509_check_host(cert, host, 0, 0, NULL) == 1;
}
