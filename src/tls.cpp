#include "coroute/tls.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/system/system_error.hpp>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <stdexcept>
#include <system_error>

namespace coroute {

namespace {

namespace ssl = asio::ssl;

template <class T, void (*Free)(T*)>
struct openssl_deleter
{
    void operator()(T* p) const noexcept { Free(p); }
};
template <class T, void (*Free)(T*)>
using openssl_ptr = std::unique_ptr<T, openssl_deleter<T, Free>>;

using pkey_ptr = openssl_ptr<EVP_PKEY, EVP_PKEY_free>;
using pkey_ctx_ptr = openssl_ptr<EVP_PKEY_CTX, EVP_PKEY_CTX_free>;
using x509_ptr = openssl_ptr<X509, X509_free>;
using bio_ptr = openssl_ptr<BIO, BIO_free_all>;
using bignum_ptr = openssl_ptr<BIGNUM, BN_free>;
using extension_ptr = openssl_ptr<X509_EXTENSION, X509_EXTENSION_free>;
using general_names_ptr = openssl_ptr<GENERAL_NAMES, GENERAL_NAMES_free>;

// OpenSSL keeps its reasons on a thread-local queue; take the oldest, which is the
// cause rather than the last layer that noticed it, and leave the queue empty.
[[noreturn]] void throw_openssl(const char* what)
{
    std::string message = what;
    if (unsigned long err = ERR_get_error(); err != 0)
    {
        char reason[256];
        ERR_error_string_n(err, reason, sizeof reason);
        message.append(": ").append(reason);
    }
    ERR_clear_error();
    throw std::runtime_error(message);
}

void check(int ok, const char* what)
{
    if (ok <= 0)
        throw_openssl(what);
}

pkey_ptr make_p256_key()
{
    pkey_ctx_ptr ctx{EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr)};
    if (!ctx)
        throw_openssl("EVP_PKEY_CTX_new_from_name(EC)");
    check(EVP_PKEY_keygen_init(ctx.get()), "EVP_PKEY_keygen_init");
    check(EVP_PKEY_CTX_set_group_name(ctx.get(), "P-256"), "EVP_PKEY_CTX_set_group_name(P-256)");
    EVP_PKEY* raw = nullptr;
    check(EVP_PKEY_generate(ctx.get(), &raw), "EVP_PKEY_generate");
    return pkey_ptr{raw};
}

// RFC 1035 / RFC 1123 host names (with an optional leading "*." wildcard label, and
// '_' which private DNS uses): anything else cannot be a dNSName a client matches.
bool is_dns_name(std::string_view name)
{
    if (name.starts_with("*."))
        name.remove_prefix(2);
    if (name.empty() || name.size() > 253)
        return false;
    std::size_t start = 0;
    while (start <= name.size())
    {
        auto end = name.find('.', start);
        if (end == std::string_view::npos)
            end = name.size();
        const auto label = name.substr(start, end - start);
        if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
            return false;
        for (char c : label)
        {
            const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                            c == '-' || c == '_';
            if (!ok)
                return false;
        }
        start = end + 1;
    }
    return true;
}

// The subjectAltName is built from GENERAL_NAME values rather than a config string
// such as "DNS:<host>", so no host can inject further names or options.
void add_subject_alt_name(X509* cert, const std::string& host, const asio::ip::address* ip)
{
    general_names_ptr names{sk_GENERAL_NAME_new_null()};
    if (!names)
        throw_openssl("sk_GENERAL_NAME_new_null");
    GENERAL_NAME* name = GENERAL_NAME_new();
    if (!name)
        throw_openssl("GENERAL_NAME_new");
    if (sk_GENERAL_NAME_push(names.get(), name) <= 0)
    {
        GENERAL_NAME_free(name);
        throw_openssl("sk_GENERAL_NAME_push");
    }
    if (ip)
    {
        ASN1_OCTET_STRING* octets = ASN1_OCTET_STRING_new();
        if (!octets)
            throw_openssl("ASN1_OCTET_STRING_new");
        int ok = 0;
        if (ip->is_v4())
        {
            auto bytes = ip->to_v4().to_bytes();
            ok = ASN1_OCTET_STRING_set(octets, bytes.data(), static_cast<int>(bytes.size()));
        }
        else
        {
            auto bytes = ip->to_v6().to_bytes();
            ok = ASN1_OCTET_STRING_set(octets, bytes.data(), static_cast<int>(bytes.size()));
        }
        GENERAL_NAME_set0_value(name, GEN_IPADD, octets);
        check(ok, "ASN1_OCTET_STRING_set");
    }
    else
    {
        ASN1_IA5STRING* dns = ASN1_IA5STRING_new();
        if (!dns)
            throw_openssl("ASN1_IA5STRING_new");
        GENERAL_NAME_set0_value(name, GEN_DNS, dns);
        check(ASN1_STRING_set(dns, host.data(), static_cast<int>(host.size())), "ASN1_STRING_set");
    }
    check(X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT),
          "X509_add1_ext_i2d(subjectAltName)");
}

void add_extension(X509* cert, X509V3_CTX& ctx, int nid, const char* value)
{
    extension_ptr ext{X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value)};
    if (!ext)
        throw_openssl("X509V3_EXT_nconf_nid");
    check(X509_add_ext(cert, ext.get(), -1), "X509_add_ext");
}

std::string drain(BIO* bio)
{
    char* data = nullptr;
    long size = BIO_get_mem_data(bio, &data);
    return size > 0 ? std::string(data, static_cast<std::size_t>(size)) : std::string();
}

void set_tls12_minimum(ssl::context& ctx)
{
    if (SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION) != 1)
        throw_openssl("SSL_CTX_set_min_proto_version(TLS 1.2)");
}

std::shared_ptr<ssl::context> new_server_context()
{
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression |
                     ssl::context::single_dh_use);
    set_tls12_minimum(*ctx);
    return ctx;
}

std::shared_ptr<ssl::context> new_client_context()
{
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression);
    set_tls12_minimum(*ctx);
    // The client also forces verify_peer on every stream it makes; setting it here
    // too protects anyone who uses the context with a stream of their own.
    ctx->set_verify_mode(ssl::verify_peer);
    return ctx;
}

// Asio's context errors name the OpenSSL function but not the file, which is the
// one thing a person fixing a start-up failure needs.
[[noreturn]] void rethrow_for_file(const boost::system::system_error& e, std::string_view what,
                                   const std::filesystem::path& file)
{
    throw boost::system::system_error(e.code(), std::string(what) + " " + file.string());
}

void check_key_matches(ssl::context& ctx)
{
    if (SSL_CTX_check_private_key(ctx.native_handle()) != 1)
        throw_openssl("the private key does not match the certificate");
}

} // namespace

tls_identity make_self_signed(std::string host_or_ip)
{
    std::string host = host_or_ip;
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);

    boost::system::error_code ec;
    const auto address = asio::ip::make_address(host, ec);
    const bool is_ip = !ec;
    if (!is_ip && !is_dns_name(host))
        throw std::invalid_argument("make_self_signed: not an IP address or DNS name: " + host_or_ip);

    pkey_ptr key = make_p256_key();
    x509_ptr cert{X509_new()};
    if (!cert)
        throw_openssl("X509_new");
    check(X509_set_version(cert.get(), X509_VERSION_3), "X509_set_version");

    // RFC 5280 section 4.1.2.2: a positive serial of at most 20 octets, unpredictable
    // so that two certificates made for the same host never share one.
    bignum_ptr serial{BN_new()};
    if (!serial)
        throw_openssl("BN_new");
    check(BN_rand(serial.get(), 127, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY), "BN_rand");
    if (!BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())))
        throw_openssl("BN_to_ASN1_INTEGER");

    // One hour of slack before "now" tolerates a peer whose clock is a little behind.
    if (!X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60L * 60) ||
        !X509_gmtime_adj(X509_getm_notAfter(cert.get()), 365L * 24 * 60 * 60))
        throw_openssl("X509_gmtime_adj");
    check(X509_set_pubkey(cert.get(), key.get()), "X509_set_pubkey");

    X509_NAME* name = X509_get_subject_name(cert.get());
    check(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                     reinterpret_cast<const unsigned char*>("coroute self-signed"), -1, -1, 0),
          "X509_NAME_add_entry_by_txt(O)");
    // The CN is informational: clients match the subjectAltName. It is left out for
    // IP addresses, because OpenSSL's X509_check_host falls back to the CN when
    // there is no DNS name, and would then accept "127.0.0.1" as a host name; and
    // for names over its upper bound of 64 characters.
    if (!is_ip && host.size() <= 64)
        check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                         reinterpret_cast<const unsigned char*>(host.c_str()), -1, -1, 0),
              "X509_NAME_add_entry_by_txt(CN)");
    check(X509_set_issuer_name(cert.get(), name), "X509_set_issuer_name");

    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
    // The certificate is its own trust anchor. OpenSSL only treats a certificate as
    // self-issued (so usable as an anchor) when its keyUsage, if present, allows
    // keyCertSign; CA:TRUE matches what `openssl req -x509` makes.
    add_extension(cert.get(), ctx, NID_basic_constraints, "critical,CA:TRUE");
    add_extension(cert.get(), ctx, NID_key_usage, "critical,digitalSignature,keyCertSign");
    add_extension(cert.get(), ctx, NID_ext_key_usage, "serverAuth");
    add_extension(cert.get(), ctx, NID_subject_key_identifier, "hash");
    add_extension(cert.get(), ctx, NID_authority_key_identifier, "keyid:always");
    add_subject_alt_name(cert.get(), host, is_ip ? &address : nullptr);

    if (X509_sign(cert.get(), key.get(), EVP_sha256()) <= 0)
        throw_openssl("X509_sign");

    tls_identity out;
    bio_ptr cert_bio{BIO_new(BIO_s_mem())};
    bio_ptr key_bio{BIO_new(BIO_s_mem())};
    if (!cert_bio || !key_bio)
        throw_openssl("BIO_new");
    check(PEM_write_bio_X509(cert_bio.get(), cert.get()), "PEM_write_bio_X509");
    check(PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr),
          "PEM_write_bio_PrivateKey");
    out.certificate_pem = drain(cert_bio.get());
    out.private_key_pem = drain(key_bio.get());
    return out;
}

std::shared_ptr<asio::ssl::context> make_server_tls_context(const tls_identity& identity)
{
    auto ctx = new_server_context();
    ctx->use_certificate_chain(asio::buffer(identity.certificate_pem));
    ctx->use_private_key(asio::buffer(identity.private_key_pem), ssl::context::pem);
    check_key_matches(*ctx);
    return ctx;
}

std::shared_ptr<asio::ssl::context> make_server_tls_context(const std::filesystem::path& certificate_chain_file,
                                                            const std::filesystem::path& private_key_file)
{
    auto ctx = new_server_context();
    try
    {
        ctx->use_certificate_chain_file(certificate_chain_file.string());
    }
    catch (const boost::system::system_error& e)
    {
        rethrow_for_file(e, "cannot load the certificate chain", certificate_chain_file);
    }
    try
    {
        ctx->use_private_key_file(private_key_file.string(), ssl::context::pem);
    }
    catch (const boost::system::system_error& e)
    {
        rethrow_for_file(e, "cannot load the private key", private_key_file);
    }
    check_key_matches(*ctx);
    return ctx;
}

std::shared_ptr<asio::ssl::context> make_client_tls_context()
{
    auto ctx = new_client_context();
    ctx->set_default_verify_paths();
    return ctx;
}

std::shared_ptr<asio::ssl::context> make_client_tls_context_trusting(std::string_view ca_pem)
{
    auto ctx = new_client_context();
    ctx->add_certificate_authority(asio::buffer(ca_pem.data(), ca_pem.size()));
    return ctx;
}

std::shared_ptr<asio::ssl::context> make_client_tls_context_trusting_file(const std::filesystem::path& ca_file)
{
    auto ctx = new_client_context();
    try
    {
        ctx->load_verify_file(ca_file.string());
    }
    catch (const boost::system::system_error& e)
    {
        rethrow_for_file(e, "cannot load the CA file", ca_file);
    }
    return ctx;
}

} // namespace coroute
