/* cmp_asn1.h -- ASN.1 templates (asn1t.h) for the parts of RFC 4210 that
 * OpenSSL 3.0 keeps private, shared by cmp_content.c (the registry's view of
 * an exchange), cmp_ann.c (announcements) and cmpcoap (observe).
 *
 * RFC 4210 Appendix F (EXPLICIT TAGS), only as deep as we look. OpenSSL's
 * public items are reused wherever there is one (OSSL_CRMF_MSGS,
 * OSSL_CRMF_CERTTEMPLATE, OSSL_CRMF_CERTID, X509_REQ, X509, X509_CRL,
 * GENERAL_NAME, X509_EXTENSION); what we never look at is ASN1_ANY /
 * ASN1_SEQUENCE_ANY. The templates encode as well as decode. Free a value
 * with ASN1_item_free(v, ASN1_ITEM_rptr(TYPE)). */
#pragma once

#include <openssl/asn1t.h>
#include <openssl/crmf.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
/* InfoTypeAndValue ::= SEQUENCE { infoType OID, infoValue ANY OPTIONAL } */
typedef struct {
        ASN1_OBJECT *type;
        ASN1_TYPE *value;
} CMPGW_ITAV;
DEFINE_STACK_OF(CMPGW_ITAV)
DECLARE_ASN1_ITEM(CMPGW_ITAV)

/* PKIHeader (RFC 4210 §5.1.1) */
typedef struct {
        ASN1_INTEGER *pvno;
        GENERAL_NAME *sender;
        GENERAL_NAME *recipient;
        ASN1_GENERALIZEDTIME *message_time;
        X509_ALGOR *protection_alg;
        ASN1_OCTET_STRING *sender_kid;
        ASN1_OCTET_STRING *recip_kid;
        ASN1_OCTET_STRING *transaction_id;
        ASN1_OCTET_STRING *sender_nonce;
        ASN1_OCTET_STRING *recip_nonce;
        STACK_OF(ASN1_UTF8STRING) *free_text;
        STACK_OF(CMPGW_ITAV) *general_info;
} CMPGW_HEADER;
DECLARE_ASN1_ITEM(CMPGW_HEADER)

/* PKIStatusInfo (RFC 4210 §5.2.3) */
typedef struct {
        ASN1_INTEGER *status;
        STACK_OF(ASN1_UTF8STRING) *status_string;
        ASN1_BIT_STRING *fail_info;
} CMPGW_PKISI;
DEFINE_STACK_OF(CMPGW_PKISI)
DECLARE_ASN1_ITEM(CMPGW_PKISI)

/* Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm,
 * signatureValue } (RFC 5280 §4.1) in the shape OpenSSL's X509 decodes,
 * but with the subjectPublicKeyInfo left as algorithm and bits: a
 * certificate we only pass on (extraCerts, caPubs) or read names, serial
 * and validity of (the issued one) is checked without OpenSSL 3.0 decoding
 * its public key, the costly part of X509 (~0.17 ms each). */
typedef struct {
        X509_ALGOR *algorithm;
        ASN1_BIT_STRING *public_key;
} CMPGW_SPKI_SHELL;
DECLARE_ASN1_ITEM(CMPGW_SPKI_SHELL)

typedef struct {
        ASN1_TIME *not_before;
        ASN1_TIME *not_after;
} CMPGW_VALIDITY;
DECLARE_ASN1_ITEM(CMPGW_VALIDITY)

typedef struct {
        ASN1_INTEGER *version;
        ASN1_INTEGER *serial;
        X509_ALGOR *signature;
        X509_NAME *issuer;
        CMPGW_VALIDITY *validity;
        X509_NAME *subject;
        CMPGW_SPKI_SHELL *spki;
        ASN1_BIT_STRING *issuer_uid;
        ASN1_BIT_STRING *subject_uid;
        STACK_OF(X509_EXTENSION) *extensions;
} CMPGW_TBS_SHELL;
DECLARE_ASN1_ITEM(CMPGW_TBS_SHELL)

/* A certificate is checked for DER on its own as soon as it is decoded
 * (cmp_asn1.c, cert_shell_cb()); from then on it encodes as the bytes it
 * came in (enc), so a message around it re-encodes it as a copy. */
typedef struct {
        CMPGW_TBS_SHELL *tbs;
        X509_ALGOR *sig_alg;
        ASN1_BIT_STRING *signature;
        ASN1_ENCODING enc;
} CMPGW_CERT_SHELL;
DEFINE_STACK_OF(CMPGW_CERT_SHELL)
DECLARE_ASN1_ITEM(CMPGW_CERT_SHELL)

/* CertOrEncCert ::= CHOICE { certificate [0] CMPCertificate,
 *                            encryptedCert [1] EncryptedKey }
 * CMPCertificate ::= CHOICE { x509v3PKCert Certificate, ... } (RFC 4210 §5.2.4) */
typedef struct {
        int type;
        union {
                CMPGW_CERT_SHELL *certificate;  /* the issued one, its key undecoded */
                OSSL_CRMF_ENCRYPTEDVALUE *encrypted;
        } value;
} CMPGW_CERTORENCCERT;
DECLARE_ASN1_ITEM(CMPGW_CERTORENCCERT)

/* CertifiedKeyPair ::= SEQUENCE { certOrEncCert, privateKey [0] OPTIONAL,
 *                                 publicationInfo [1] OPTIONAL } */
typedef struct {
        CMPGW_CERTORENCCERT *cert_or_enc_cert;
        ASN1_TYPE *private_key;
        ASN1_TYPE *publication_info;
} CMPGW_CERTIFIEDKEYPAIR;
DECLARE_ASN1_ITEM(CMPGW_CERTIFIEDKEYPAIR)

/* CertResponse ::= SEQUENCE { certReqId INTEGER, status PKIStatusInfo,
 *      certifiedKeyPair OPTIONAL, rspInfo OCTET STRING OPTIONAL } */
typedef struct {
        ASN1_INTEGER *cert_req_id;
        CMPGW_PKISI *status;
        CMPGW_CERTIFIEDKEYPAIR *certified_key_pair;
        ASN1_OCTET_STRING *rsp_info;
} CMPGW_CERTRESPONSE;
DEFINE_STACK_OF(CMPGW_CERTRESPONSE)
DECLARE_ASN1_ITEM(CMPGW_CERTRESPONSE)

/* CertRepMessage ::= SEQUENCE { caPubs [1] SEQUENCE OF CMPCertificate
 *      OPTIONAL, response SEQUENCE OF CertResponse } (RFC 4210 §5.3.4) */
typedef struct {
        STACK_OF(CMPGW_CERT_SHELL) *ca_pubs;
        STACK_OF(CMPGW_CERTRESPONSE) *response;
} CMPGW_CERTREPMESSAGE;
DECLARE_ASN1_ITEM(CMPGW_CERTREPMESSAGE)

/* RevDetails ::= SEQUENCE { certDetails CertTemplate,
 *      crlEntryDetails Extensions OPTIONAL } (RFC 4210 §5.3.9) */
typedef struct {
        OSSL_CRMF_CERTTEMPLATE *cert_details;
        STACK_OF(X509_EXTENSION) *crl_entry_details;
} CMPGW_REVDETAILS;
DEFINE_STACK_OF(CMPGW_REVDETAILS)
DECLARE_ASN1_ITEM(CMPGW_REVDETAILS)

/* RevRepContent ::= SEQUENCE { status SEQUENCE OF PKIStatusInfo,
 *      revCerts [0] OPTIONAL, crls [1] OPTIONAL } (RFC 4210 §5.3.10) */
typedef struct {
        STACK_OF(CMPGW_PKISI) *status;
        STACK_OF(OSSL_CRMF_CERTID) *rev_certs;
        STACK_OF(X509_CRL) *crls;
} CMPGW_REVREPCONTENT;
DECLARE_ASN1_ITEM(CMPGW_REVREPCONTENT)

/* CertStatus ::= SEQUENCE { certHash OCTET STRING, certReqId INTEGER,
 *      statusInfo PKIStatusInfo OPTIONAL,
 *      hashAlg [0] AlgorithmIdentifier OPTIONAL -- RFC 9480 §2.10 } */
typedef struct {
        ASN1_OCTET_STRING *cert_hash;
        ASN1_INTEGER *cert_req_id;
        CMPGW_PKISI *status_info;
        X509_ALGOR *hash_alg;
} CMPGW_CERTSTATUS;
DEFINE_STACK_OF(CMPGW_CERTSTATUS)
DECLARE_ASN1_ITEM(CMPGW_CERTSTATUS)

/* ErrorMsgContent ::= SEQUENCE { pKIStatusInfo, errorCode INTEGER OPTIONAL,
 *      errorDetails PKIFreeText OPTIONAL } (RFC 4210 §5.3.21) */
typedef struct {
        CMPGW_PKISI *status_info;
        ASN1_INTEGER *error_code;
        STACK_OF(ASN1_UTF8STRING) *error_details;
} CMPGW_ERRORMSG;
DECLARE_ASN1_ITEM(CMPGW_ERRORMSG)

/* CAKeyUpdAnnContent ::= SEQUENCE { oldWithNew, newWithOld, newWithNew
 *      CMPCertificate } (RFC 4210 §5.3.13; CMPCertificate is a Certificate) */
typedef struct {
        X509 *old_with_new;
        X509 *new_with_old;
        X509 *new_with_new;
} CMPGW_CKUANN;

/* RevAnnContent ::= SEQUENCE { status PKIStatus, certId CertId,
 *      willBeRevokedAt GeneralizedTime, badSinceDate GeneralizedTime,
 *      crlDetails Extensions OPTIONAL } (RFC 4210 §5.3.15) */
typedef struct {
        ASN1_INTEGER *status;
        OSSL_CRMF_CERTID *cert_id;
        ASN1_GENERALIZEDTIME *will_be_revoked_at;
        ASN1_GENERALIZEDTIME *bad_since_date;
        STACK_OF(X509_EXTENSION) *crl_details;
} CMPGW_RANN;
/* PKIBody ::= CHOICE (RFC 4210 §5.1.2): the selector is the index in the
 * template array, so the alternatives are listed in tag order 0..26. */
typedef struct {
        int type;
        union {
                OSSL_CRMF_MSGS *crmf;                           /* ir cr kur */
                CMPGW_CERTREPMESSAGE *rep;                         /* ip cp kup */
                X509_REQ *p10cr;
                STACK_OF(CMPGW_REVDETAILS) *rr;
                CMPGW_REVREPCONTENT *rp;
                STACK_OF(CMPGW_CERTSTATUS) *cert_conf;
                CMPGW_ERRORMSG *error;
                CMPGW_CKUANN *ckuann;
                X509 *cann;
                CMPGW_RANN *rann;
                STACK_OF(X509_CRL) *crlann;
                ASN1_TYPE *other;
        } value;
} CMPGW_BODY;
DECLARE_ASN1_ITEM(CMPGW_BODY)

/* PKIMessage ::= SEQUENCE { header, body, protection [0] PKIProtection
 *      OPTIONAL, extraCerts [1] SEQUENCE OF CMPCertificate OPTIONAL } */
typedef struct {
        CMPGW_HEADER *header;
        CMPGW_BODY *body;
        ASN1_BIT_STRING *protection;
        STACK_OF(X509) *extra_certs;
} CMPGW_MSG;
DECLARE_ASN1_ITEM(CMPGW_MSG)

/* The same PKIMessage with the extraCerts as certificate shells: what the
 * gateway reads needs none of them, and OpenSSL 3.0 decodes every
 * certificate's public key, the larger part of reading an ip
 * (doc/performance.md). */
typedef struct {
        CMPGW_HEADER *header;
        CMPGW_BODY *body;
        ASN1_BIT_STRING *protection;
        STACK_OF(CMPGW_CERT_SHELL) *extra_certs;
} CMPGW_MSG_CONTENT;
DECLARE_ASN1_ITEM(CMPGW_MSG_CONTENT)

/* ---- the bodies CMPGW_BODY leaves as ANY, for checking their shape
 * (cmp_msg_inspect) as OpenSSL's own d2i_OSSL_CMP_MSG does ---- */

/* Challenge ::= SEQUENCE { owf AlgorithmIdentifier OPTIONAL, witness OCTET
 *      STRING, challenge OCTET STRING } (RFC 4210 §5.2.8.3);
 * POPODecKeyChallContent ::= SEQUENCE OF Challenge */
typedef struct {
        X509_ALGOR *owf;
        ASN1_OCTET_STRING *witness;
        ASN1_OCTET_STRING *challenge;
} CMPGW_CHALLENGE;
DECLARE_ASN1_ITEM(CMPGW_CHALLENGE)
DECLARE_ASN1_ITEM(CMPGW_POPDECC)
/* POPODecKeyRespContent ::= SEQUENCE OF INTEGER */
DECLARE_ASN1_ITEM(CMPGW_POPDECR)

/* KeyRecRepContent ::= SEQUENCE { status PKIStatusInfo, newSigCert [0]
 *      CMPCertificate OPTIONAL, caCerts [1] SEQUENCE OF CMPCertificate
 *      OPTIONAL, keyPairHist [2] SEQUENCE OF CertifiedKeyPair OPTIONAL }
 *      (RFC 4210 §5.3.8) */
typedef struct {
        CMPGW_PKISI *status;
        CMPGW_CERT_SHELL *new_sig_cert;
        STACK_OF(CMPGW_CERT_SHELL) *ca_certs;
        STACK_OF(ASN1_TYPE) *key_pair_hist;
} CMPGW_KEYRECREP;
DECLARE_ASN1_ITEM(CMPGW_KEYRECREP)

/* PollReqContent ::= SEQUENCE OF SEQUENCE { certReqId INTEGER }
 * PollRepContent ::= SEQUENCE OF SEQUENCE { certReqId INTEGER, checkAfter
 *      INTEGER, reason PKIFreeText OPTIONAL } (RFC 4210 §5.3.22) */
typedef struct {
        ASN1_INTEGER *cert_req_id;
} CMPGW_POLLREQ_ENTRY;
DECLARE_ASN1_ITEM(CMPGW_POLLREQ_ENTRY)
DECLARE_ASN1_ITEM(CMPGW_POLLREQ)
typedef struct {
        ASN1_INTEGER *cert_req_id;
        ASN1_INTEGER *check_after;
        STACK_OF(ASN1_UTF8STRING) *reason;
} CMPGW_POLLREP_ENTRY;
DECLARE_ASN1_ITEM(CMPGW_POLLREP_ENTRY)
DECLARE_ASN1_ITEM(CMPGW_POLLREP)

/* NestedMessageContent ::= PKIMessages (SEQUENCE OF PKIMessage), each kept
 * as ANY and inspected in turn */

/* InfoTypeAndValue values (RFC 4210 §5.3.19): SEQUENCE OF
 * AlgorithmIdentifier (signKeyPairTypes, encKeyPairTypes), OBJECT
 * IDENTIFIER (unsupportedOIDs), UTF8String (suppLangTags) */
DECLARE_ASN1_ITEM(CMPGW_ALGORS)
DECLARE_ASN1_ITEM(CMPGW_OIDS)
DECLARE_ASN1_ITEM(CMPGW_UTF8S)

DECLARE_ASN1_ITEM(CMPGW_CKUANN)
DECLARE_ASN1_ITEM(CMPGW_RANN)

/* ProtectedPart ::= SEQUENCE { header PKIHeader, body PKIBody } (§5.1.3) */
typedef struct {
        CMPGW_HEADER *header;
        CMPGW_BODY *body;
} CMPGW_PROTECTED;
DECLARE_ASN1_ITEM(CMPGW_PROTECTED)

/* ---- support messages (RFC 9483 §4.3; RFC 9480 EXPLICIT TAGS) ---- */

/* GenMsgContent, GenRepContent ::= SEQUENCE OF InfoTypeAndValue (RFC 4210
 * §5.3.19-20): decodes to STACK_OF(CMPGW_ITAV) */
DECLARE_ASN1_ITEM(CMPGW_GENMSG)
/* id-it-caCerts: SEQUENCE SIZE (1..MAX) OF CMPCertificate (§4.3.1);
 * decodes to STACK_OF(X509) */
DECLARE_ASN1_ITEM(CMPGW_CERTS)
/* id-it-crls: SEQUENCE SIZE (1..MAX) OF CertificateList (§4.3.4); decodes
 * to STACK_OF(X509_CRL) */
DECLARE_ASN1_ITEM(CMPGW_CRLS)

/* RootCaKeyUpdateContent ::= SEQUENCE { newWithNew CMPCertificate,
 *      newWithOld [0] CMPCertificate OPTIONAL,
 *      oldWithNew [1] CMPCertificate OPTIONAL } (RFC 9483 §4.3.2: id-it-rootCaKeyUpdate) */
typedef struct {
        X509 *new_with_new;
        X509 *new_with_old;
        X509 *old_with_new;
} CMPGW_ROOTCAKEYUPDATE;
DECLARE_ASN1_ITEM(CMPGW_ROOTCAKEYUPDATE)

/* CRLSource ::= CHOICE { dpn [0] DistributionPointName, issuer [1] GeneralNames }
 * CRLStatus ::= SEQUENCE { source CRLSource, thisUpdate Time OPTIONAL }
 * (RFC 9483 §4.3.4, RFC 9480: id-it-crlStatusList is a SEQUENCE SIZE (1..MAX) OF
 * CRLStatus, which decodes to STACK_OF(CMPGW_CRLSTATUS)) */
typedef struct {
        int type;                       /* 0 dpn, 1 issuer */
        union {
                DIST_POINT_NAME *dpn;
                GENERAL_NAMES *issuer;
        } value;
} CMPGW_CRLSOURCE;
DECLARE_ASN1_ITEM(CMPGW_CRLSOURCE)

typedef struct {
        CMPGW_CRLSOURCE *source;
        ASN1_TIME *this_update;
} CMPGW_CRLSTATUS;
DEFINE_STACK_OF(CMPGW_CRLSTATUS)
DECLARE_ASN1_ITEM(CMPGW_CRLSTATUS)
DECLARE_ASN1_ITEM(CMPGW_CRLSTATUSLIST)
