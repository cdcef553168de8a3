#pragma once
// coroute-server's start-up steps that can fail because of the machine: a file, a
// directory, a name, a port. Each failure is one line that names what failed and
// what to do about it; main prints it and exits 1.

#include "server/options.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <stdexcept>
#include <string>

namespace coroute::cli {

/// A start-up failure; `what()` is the whole line for stderr, without the program name.
struct startup_error : std::runtime_error
{
    using std::runtime_error::runtime_error;
};

/// Throws startup_error unless the www directory exists and the TLS and CA files
/// named by `cfg` can be read.
void check_files(const config& cfg);

/// `host` as an IP address or, failing that, a name resolved here (its first IPv4
/// address, else its first address). Throws startup_error when it does not resolve.
asio::ip::tcp::endpoint listen_endpoint(const std::string& host, unsigned short port);

/// The line for a failed bind or listen on `where` (`host` as it was given).
std::string listen_failure(const boost::system::error_code& ec, const asio::ip::tcp::endpoint& where,
                           const std::string& host);

/// The server's TLS context from --tls-cert and --tls-key; throws startup_error when
/// they are not a PEM chain and its key.
std::shared_ptr<asio::ssl::context> load_server_tls(const config& cfg);

} // namespace coroute::cli
