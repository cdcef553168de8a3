#pragma once
// TLS set-up: a self-signed identity made at start-up, and the server and client
// contexts the library uses. Everything here is synchronous set-up code: it runs
// before the io_context does, and a failure throws.

#include <boost/asio/ssl/context.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace coroute {

namespace asio = boost::asio;

/// A certificate and its private key, both PEM-encoded.
struct tls_identity
{
    /// The certificate (or chain, leaf first) as `-----BEGIN CERTIFICATE-----` blocks.
    std::string certificate_pem;
    /// The unencrypted PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`).
    std::string private_key_pem;
};

/// Makes an ECDSA P-256 key and a self-signed X.509 v3 certificate for `host_or_ip`:
/// its subjectAltName is an IP address when the argument parses as one (IPv6 may be
/// bracketed), a DNS name otherwise; valid from one hour ago for 365 days. The
/// certificate is its own trust anchor: a client trusts it by loading it as a CA.
/// Throws std::invalid_argument for a name that is neither an IP address nor a DNS
/// name, and std::runtime_error (with OpenSSL's reason) if OpenSSL fails.
tls_identity make_self_signed(std::string host_or_ip);

/// A TLS server context (TLS 1.2 minimum) presenting `identity`.
/// Throws std::runtime_error (boost::system::system_error when OpenSSL rejects the
/// PEM) if the certificate or key does not load, or if they do not match.
std::shared_ptr<asio::ssl::context> make_server_tls_context(const tls_identity& identity);

/// A TLS server context (TLS 1.2 minimum) presenting a PEM certificate chain file
/// (leaf first) and a PEM private key file. Throws boost::system::system_error naming
/// the file that does not load, std::runtime_error if the key does not match.
std::shared_ptr<asio::ssl::context> make_server_tls_context(const std::filesystem::path& certificate_chain_file,
                                                            const std::filesystem::path& private_key_file);

/// A TLS client context that verifies peers against the system's CA store
/// (`set_default_verify_paths`), TLS 1.2 minimum. Host names are checked per
/// connection by the client, not by the context.
std::shared_ptr<asio::ssl::context> make_client_tls_context();

/// A TLS client context that trusts the CA certificates in `ca_pem` and nothing
/// else (not the system store). Throws boost::system::system_error if a certificate
/// does not parse or none is there.
std::shared_ptr<asio::ssl::context> make_client_tls_context_trusting(std::string_view ca_pem);

/// A TLS client context that trusts the CA certificates in a PEM file and nothing
/// else. Throws boost::system::system_error naming the file if it does not load.
std::shared_ptr<asio::ssl::context> make_client_tls_context_trusting_file(const std::filesystem::path& ca_file);

} // namespace coroute
