#include "coroute/tls.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <unistd.h>

namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct x509_free_deleter
{
    void operator()(X509* p) const noexcept { X509_free(p); }
};
struct pkey_free_deleter
{
    void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};
using x509_ptr = std::unique_ptr<X509, x509_free_deleter>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_free_deleter>;

x509_ptr parse_certificate(const std::string& pem)
{
    std::unique_ptr<BIO, decltype(&BIO_free)> bio{BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())),
                                                  &BIO_free};
    return x509_ptr{PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)};
}

pkey_ptr parse_key(const std::string& pem)
{
    std::unique_ptr<BIO, decltype(&BIO_free)> bio{BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())),
                                                  &BIO_free};
    return pkey_ptr{PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr)};
}

/// Seconds from now to `t` (negative: in the past).
long long seconds_from_now(const ASN1_TIME* t)
{
    int days = 0;
    int seconds = 0;
    REQUIRE(ASN1_TIME_diff(&days, &seconds, nullptr, t) == 1);
    return days * 86400LL + seconds;
}

/// A file in the temporary directory, removed when the test ends.
struct temp_file
{
    explicit temp_file(const std::string& contents)
        : path(std::filesystem::temp_directory_path() /
               ("coroute-test-tls-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + ".pem"))
    {
        std::ofstream{path} << contents;
    }
    ~temp_file()
    {
        std::error_code ignored;
        std::filesystem::remove(path, ignored);
    }
    std::filesystem::path path;
    static inline int counter = 0;
};

// ---------------------------------------------------------------------------
// A handshake between a server and a client context over loopback.

asio::awaitable<boost::system::error_code> server_side(tcp::acceptor& acceptor, ssl::context& ctx)
{
    auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
    if (ec)
        co_return ec;
    ssl::stream<tcp::socket> stream{std::move(socket), ctx};
    auto [hec] = co_await stream.async_handshake(ssl::stream_base::server, use_tuple);
    co_return hec;
}

asio::awaitable<boost::system::error_code> client_side(tcp::endpoint endpoint, ssl::context& ctx,
                                                       std::string host)
{
    ssl::stream<tcp::socket> stream{co_await asio::this_coro::executor, ctx};
    auto [cec] = co_await stream.next_layer().async_connect(endpoint, use_tuple);
    if (cec)
        co_return cec;
    stream.set_verify_mode(ssl::verify_peer);
    stream.set_verify_callback(ssl::host_name_verification(host));
    auto [hec] = co_await stream.async_handshake(ssl::stream_base::client, use_tuple);
    co_return hec;
}

asio::awaitable<std::tuple<boost::system::error_code, boost::system::error_code>>
both_sides(tcp::acceptor& acceptor, ssl::context& server, ssl::context& client, std::string host)
{
    using namespace asio::experimental::awaitable_operators;
    co_return co_await (server_side(acceptor, server) && client_side(acceptor.local_endpoint(), client, host));
}

/// The server's and the client's handshake results.
std::tuple<boost::system::error_code, boost::system::error_code> handshake(ssl::context& server,
                                                                           ssl::context& client,
                                                                           std::string host = "127.0.0.1")
{
    asio::io_context io;
    tcp::acceptor acceptor{io, tcp::endpoint{asio::ip::make_address("127.0.0.1"), 0}};
    std::optional<std::tuple<boost::system::error_code, boost::system::error_code>> result;
    asio::co_spawn(io, both_sides(acceptor, server, client, host), [&](std::exception_ptr e, auto value) {
        if (e)
            std::rethrow_exception(e);
        result = value;
    });
    io.run_for(10s);
    REQUIRE(result.has_value());
    return *result;
}

} // namespace

TEST_CASE("tls: make_self_signed returns a PEM certificate and a PKCS#8 key that match", "[tls]")
{
    auto identity = coroute::make_self_signed("127.0.0.1");

    CHECK_THAT(identity.certificate_pem, Catch::StartsWith("-----BEGIN CERTIFICATE-----"));
    CHECK_THAT(identity.private_key_pem, Catch::StartsWith("-----BEGIN PRIVATE KEY-----"));
    auto cert = parse_certificate(identity.certificate_pem);
    auto key = parse_key(identity.private_key_pem);
    REQUIRE(cert);
    REQUIRE(key);
    CHECK(X509_check_private_key(cert.get(), key.get()) == 1);
}

TEST_CASE("tls: the certificate is ECDSA P-256, self-signed, valid from an hour ago for a year", "[tls]")
{
    auto cert = parse_certificate(coroute::make_self_signed("localhost").certificate_pem);
    REQUIRE(cert);

    EVP_PKEY* key = X509_get0_pubkey(cert.get());
    REQUIRE(key);
    CHECK(EVP_PKEY_get_base_id(key) == EVP_PKEY_EC);
    char group[64] = {};
    REQUIRE(EVP_PKEY_get_group_name(key, group, sizeof group, nullptr) == 1);
    CHECK(std::string(group) == "prime256v1");

    CHECK(X509_check_issued(cert.get(), cert.get()) == X509_V_OK);
    CHECK(X509_verify(cert.get(), key) == 1);
    CHECK(X509_get_version(cert.get()) == X509_VERSION_3);

    auto not_before = seconds_from_now(X509_get0_notBefore(cert.get()));
    auto not_after = seconds_from_now(X509_get0_notAfter(cert.get()));
    CHECK(not_before <= -3600 + 60);
    CHECK(not_before >= -3600 - 60);
    CHECK(not_after >= 365 * 86400LL - 60);
    CHECK(not_after <= 365 * 86400LL + 60);
}

TEST_CASE("tls: an IP address gets an IP subjectAltName and a name gets a DNS one", "[tls]")
{
    SECTION("IPv4")
    {
        auto cert = parse_certificate(coroute::make_self_signed("127.0.0.1").certificate_pem);
        CHECK(X509_check_ip_asc(cert.get(), "127.0.0.1", 0) == 1);
        CHECK(X509_check_ip_asc(cert.get(), "127.0.0.2", 0) == 0);
        CHECK(X509_check_host(cert.get(), "127.0.0.1", 0, 0, nullptr) != 1);
    }
    SECTION("IPv6, bracketed or not")
    {
        for (std::string host : {"::1", "[::1]"})
        {
            auto cert = parse_certificate(coroute::make_self_signed(host).certificate_pem);
            CHECK(X509_check_ip_asc(cert.get(), "::1", 0) == 1);
        }
    }
    SECTION("DNS name")
    {
        auto cert = parse_certificate(coroute::make_self_signed("api.example.test").certificate_pem);
        CHECK(X509_check_host(cert.get(), "api.example.test", 0, 0, nullptr) == 1);
        CHECK(X509_check_host(cert.get(), "other.example.test", 0, 0, nullptr) == 0);
        CHECK(X509_check_ip_asc(cert.get(), "127.0.0.1", 0) == 0);
    }
}

TEST_CASE("tls: a name that is neither an IP address nor a DNS name is rejected", "[tls]")
{
    for (std::string bad : {std::string(), std::string("a,DNS:evil.example"), std::string("two words"),
                            std::string("a..b"), std::string("-"), std::string(300, 'a')})
    {
        INFO(bad);
        CHECK_THROWS_AS(coroute::make_self_signed(bad), std::invalid_argument);
    }
}

TEST_CASE("tls: two certificates for one host have different keys and serials", "[tls]")
{
    auto a = parse_certificate(coroute::make_self_signed("localhost").certificate_pem);
    auto b = parse_certificate(coroute::make_self_signed("localhost").certificate_pem);
    CHECK(ASN1_INTEGER_cmp(X509_get0_serialNumber(a.get()), X509_get0_serialNumber(b.get())) != 0);
    CHECK(EVP_PKEY_eq(X509_get0_pubkey(a.get()), X509_get0_pubkey(b.get())) != 1);
}

TEST_CASE("tls: a client trusting the certificate completes a handshake, one trusting another does not", "[tls]")
{
    auto identity = coroute::make_self_signed("127.0.0.1");
    auto server = coroute::make_server_tls_context(identity);

    SECTION("trusted")
    {
        auto client = coroute::make_client_tls_context_trusting(identity.certificate_pem);
        auto [server_ec, client_ec] = handshake(*server, *client);
        CHECK_FALSE(server_ec);
        CHECK_FALSE(client_ec);
    }
    SECTION("another CA")
    {
        auto client = coroute::make_client_tls_context_trusting(coroute::make_self_signed("127.0.0.1").certificate_pem);
        auto [server_ec, client_ec] = handshake(*server, *client);
        CHECK(client_ec);
    }
    SECTION("the system store")
    {
        auto client = coroute::make_client_tls_context();
        auto [server_ec, client_ec] = handshake(*server, *client);
        CHECK(client_ec);
    }
}

TEST_CASE("tls: client contexts verify peers and refuse anything below TLS 1.2", "[tls]")
{
    auto identity = coroute::make_self_signed("127.0.0.1");
    for (auto& ctx : {coroute::make_client_tls_context(),
                      coroute::make_client_tls_context_trusting(identity.certificate_pem)})
    {
        CHECK((SSL_CTX_get_verify_mode(ctx->native_handle()) & SSL_VERIFY_PEER) != 0);
        CHECK(SSL_CTX_get_min_proto_version(ctx->native_handle()) == TLS1_2_VERSION);
    }
    auto server = coroute::make_server_tls_context(identity);
    CHECK(SSL_CTX_get_min_proto_version(server->native_handle()) == TLS1_2_VERSION);
}

TEST_CASE("tls: a client that allows only TLS 1.1 cannot reach the server", "[tls]")
{
    auto identity = coroute::make_self_signed("127.0.0.1");
    auto server = coroute::make_server_tls_context(identity);
    auto client = coroute::make_client_tls_context_trusting(identity.certificate_pem);
    SSL_CTX_set_min_proto_version(client->native_handle(), TLS1_1_VERSION);
    SSL_CTX_set_max_proto_version(client->native_handle(), TLS1_1_VERSION);
    // OpenSSL 3's default security level forbids TLS 1.1 on the client by itself;
    // level 0 makes sure it is the server that refuses.
    SSL_CTX_set_security_level(client->native_handle(), 0);

    auto [server_ec, client_ec] = handshake(*server, *client);
    CHECK(server_ec);
    CHECK(client_ec);
}

TEST_CASE("tls: server and client contexts load from files, and a bad file is named in the error", "[tls]")
{
    auto identity = coroute::make_self_signed("127.0.0.1");
    temp_file cert{identity.certificate_pem};
    temp_file key{identity.private_key_pem};

    auto server = coroute::make_server_tls_context(cert.path, key.path);
    auto client = coroute::make_client_tls_context_trusting_file(cert.path);
    auto [server_ec, client_ec] = handshake(*server, *client);
    CHECK_FALSE(server_ec);
    CHECK_FALSE(client_ec);

    const std::filesystem::path missing = "/nonexistent/coroute-missing.pem";
    CHECK_THROWS_WITH(coroute::make_server_tls_context(missing, key.path), Catch::Contains(missing.string()));
    CHECK_THROWS_WITH(coroute::make_server_tls_context(cert.path, missing), Catch::Contains(missing.string()));
    CHECK_THROWS_WITH(coroute::make_client_tls_context_trusting_file(missing), Catch::Contains(missing.string()));
}

TEST_CASE("tls: a key that does not match the certificate is rejected", "[tls]")
{
    auto a = coroute::make_self_signed("127.0.0.1");
    auto b = coroute::make_self_signed("127.0.0.1");
    coroute::tls_identity mixed{a.certificate_pem, b.private_key_pem};
    CHECK_THROWS(coroute::make_server_tls_context(mixed));
}

TEST_CASE("tls: a CA PEM that does not parse is rejected", "[tls]")
{
    CHECK_THROWS_AS(coroute::make_client_tls_context_trusting("not a certificate"), boost::system::system_error);
}
