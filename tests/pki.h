/*
 * tests/pki.h - certificates for TLS tests and benchmarks, made with the
 * OpenSSL API in the test's own temp dir (no openssl CLI, no fixed files,
 * nothing that expires in the tree).
 *
 * Header-only (static functions): the integration harness, the unit tests
 * and bench/micro/tls.c each include it, and each links only its own
 * objects. Keys are EC P-256 (fast to make). Prefix: pki_.
 *
 *   pki_make_ca(dir, "ca", "uvmq test CA")        -> dir/ca.crt, dir/ca.key
 *   pki_issue(dir, "ca", "server", "localhost", PKI_SERVER, 0, 30)
 *                                                  -> dir/server.crt, .key
 *
 * Every function returns 0, or -1 after printing why to stderr.
 */
#ifndef UVMQ_TESTS_PKI_H
#define UVMQ_TESTS_PKI_H

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* pki_issue flags. */
#define PKI_SERVER 0x01 /* SAN IP:127.0.0.1, IP:::1, DNS:localhost; serverAuth */
#define PKI_CLIENT 0x02 /* clientAuth */
#define PKI_NO_CN  0x04 /* subject without a common name (O only) */

/* Writes dir/name.crt and dir/name.key. */
static inline int pki_write(const char *dir, const char *name, X509 *x, EVP_PKEY *k)
{
    char path[512];
    FILE *f;
    int ok;
    snprintf(path, sizeof path, "%s/%s.crt", dir, name);
    f = fopen(path, "w");
    ok = f != NULL && PEM_write_X509(f, x) == 1;
    if (f != NULL) fclose(f);
    snprintf(path, sizeof path, "%s/%s.key", dir, name);
    f = ok ? fopen(path, "w") : NULL;
    ok = f != NULL && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1;
    if (f != NULL) fclose(f);
    if (!ok) fprintf(stderr, "# pki: cannot write %s/%s.{crt,key}\n", dir, name);
    return ok ? 0 : -1;
}

/* Reads dir/name.crt and dir/name.key (the issuer of a new certificate). */
static inline int pki_read(const char *dir, const char *name, X509 **x, EVP_PKEY **k)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s.crt", dir, name);
    f = fopen(path, "r");
    *x = f != NULL ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f != NULL) fclose(f);
    snprintf(path, sizeof path, "%s/%s.key", dir, name);
    f = fopen(path, "r");
    *k = f != NULL ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f != NULL) fclose(f);
    if (*x != NULL && *k != NULL) return 0;
    fprintf(stderr, "# pki: cannot read %s/%s.{crt,key}\n", dir, name);
    X509_free(*x);
    EVP_PKEY_free(*k);
    return -1;
}

/* Adds extension nid with value (config syntax) to x, issued by issuer. */
static inline int pki_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *e;
    int ok;
    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    ok = e != NULL && X509_add_ext(x, e, -1) == 1;
    X509_EXTENSION_free(e);
    return ok ? 0 : -1;
}

/* A certificate for key k with subject cn (or O only), valid from
 * from_days to to_days (relative to now; negative is the past). */
static inline X509 *pki_cert(EVP_PKEY *k, const char *cn, int flags, int from_days, int to_days)
{
    static long serial = 1000;
    X509 *x = X509_new();
    X509_NAME *n = X509_get_subject_name(x);
    if (flags & PKI_NO_CN)
        X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
    else
        X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), (long)from_days * 86400);
    X509_gmtime_adj(X509_getm_notAfter(x), (long)to_days * 86400);
    X509_set_pubkey(x, k);
    return x;
}

/* Signs x with signer (when rc is 0) and writes it with its key k as
 * dir/name.{crt,key}. Returns 0 or -1. */
static inline int pki_sign_write(const char *dir, const char *name, X509 *x, EVP_PKEY *signer,
                                 EVP_PKEY *k, int rc)
{
    if (rc == 0 && X509_sign(x, signer, EVP_sha256()) == 0) rc = -1;
    if (rc == 0)
        rc = pki_write(dir, name, x, k);
    else
        fprintf(stderr, "# pki: cannot make %s\n", name);
    return rc;
}

/* A self-signed CA: dir/name.crt, dir/name.key. */
static inline int pki_make_ca(const char *dir, const char *name, const char *cn)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = k != NULL ? pki_cert(k, cn, 0, -1, 3650) : NULL;
    int rc = x != NULL ? 0 : -1;
    if (rc == 0) X509_set_issuer_name(x, X509_get_subject_name(x));
    if (rc == 0) rc = pki_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
    if (rc == 0) rc = pki_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
    if (rc == 0) rc = pki_ext(x, x, NID_subject_key_identifier, "hash");
    rc = pki_sign_write(dir, name, x, k, k, rc);
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}

/* A certificate signed by CA dir/ca_name: dir/name.crt, dir/name.key,
 * with subject cn, valid from from_days to to_days, and flags. */
static inline int pki_issue(const char *dir, const char *ca_name, const char *name, const char *cn,
                            int flags, int from_days, int to_days)
{
    X509 *ca = NULL, *x = NULL;
    EVP_PKEY *ca_key = NULL, *k = NULL;
    int rc = pki_read(dir, ca_name, &ca, &ca_key);
    if (rc == 0) k = EVP_EC_gen("P-256");
    if (k != NULL) x = pki_cert(k, cn, flags, from_days, to_days);
    if (rc == 0 && x == NULL) rc = -1;
    if (rc == 0) X509_set_issuer_name(x, X509_get_subject_name(ca));
    if (rc == 0) rc = pki_ext(x, ca, NID_basic_constraints, "CA:FALSE");
    if (rc == 0) rc = pki_ext(x, ca, NID_authority_key_identifier, "keyid");
    if (rc == 0 && (flags & PKI_SERVER))
        rc = pki_ext(x, ca, NID_subject_alt_name, "IP:127.0.0.1,IP:::1,DNS:localhost");
    if (rc == 0)
        rc = pki_ext(x, ca, NID_ext_key_usage, flags & PKI_SERVER ? "serverAuth" : "clientAuth");
    rc = pki_sign_write(dir, name, x, ca_key, k, rc);
    X509_free(x);
    X509_free(ca);
    EVP_PKEY_free(k);
    EVP_PKEY_free(ca_key);
    return rc;
}

/* The usual set in dir: ca (trusted), rogue-ca (not), server (localhost,
 * 127.0.0.1), client (CN tls-user), expired (CN expired-user, ended
 * yesterday), rogue (CN rogue-user, from rogue-ca), nocn (no CN). */
static inline int pki_make_set(const char *dir)
{
    int rc = pki_make_ca(dir, "ca", "uvmq test CA");
    if (rc == 0) rc = pki_make_ca(dir, "rogue-ca", "someone else's CA");
    if (rc == 0) rc = pki_issue(dir, "ca", "server", "localhost", PKI_SERVER, -1, 30);
    if (rc == 0) rc = pki_issue(dir, "ca", "client", "tls-user", PKI_CLIENT, -1, 30);
    if (rc == 0) rc = pki_issue(dir, "ca", "expired", "expired-user", PKI_CLIENT, -30, -1);
    if (rc == 0) rc = pki_issue(dir, "rogue-ca", "rogue", "rogue-user", PKI_CLIENT, -1, 30);
    if (rc == 0)
        rc = pki_issue(dir, "ca", "nocn", "no common name", PKI_CLIENT | PKI_NO_CN, -1, 30);
    return rc;
}

/* nftw callback of pki_set_remove. */
static inline int pki_remove_entry(const char *path, const struct stat *st, int flag,
                                   struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

/* A fresh temp dir named from templ ("/tmp/NAME-XXXXXX", rewritten in
 * place) holding the usual set. Returns 0 or -1. */
static inline int pki_set_create(char *templ)
{
    return mkdtemp(templ) != NULL && pki_make_set(templ) == 0 ? 0 : -1;
}

/* Removes dir and everything in it. */
static inline void pki_set_remove(const char *dir)
{
    nftw(dir, pki_remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

#endif
