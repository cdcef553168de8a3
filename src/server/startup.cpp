#include "server/startup.hpp"

#include <coroute/tls.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace coroute::cli {

namespace {

namespace fs = std::filesystem;

std::string endpoint_text(const asio::ip::tcp::endpoint& ep)
{
    auto a = ep.address().to_string();
    return (ep.address().is_v6() ? "[" + a + "]" : a) + ":" + std::to_string(ep.port());
}

// Opening the file is the test: permissions, a missing directory and a dangling link
// all fail here, with the reason errno gives.
void require_readable(const std::string& file, std::string_view flag, std::string_view what, std::string_view fix)
{
    std::error_code ec;
    if (fs::is_directory(file, ec))
        throw startup_error("cannot read " + std::string{what} + " " + file + " (" + std::string{flag} +
                            "): it is a directory; " + std::string{fix});
    std::FILE* f = std::fopen(file.c_str(), "rb");
    if (!f)
        throw startup_error("cannot read " + std::string{what} + " " + file + " (" + std::string{flag} +
                            "): " + std::strerror(errno) + "; " + std::string{fix});
    std::fclose(f);
}

} // namespace

void check_files(const config& cfg)
{
    auto www = cfg.app.www.empty() ? app::default_www() : cfg.app.www;
    std::error_code ec;
    if (!fs::exists(www, ec))
        throw startup_error("the www directory " + www + " does not exist (--www); give the site's directory, e.g. --www " +
                            app::default_www());
    if (!fs::is_directory(www, ec))
        throw startup_error("the www path " + www + " is not a directory (--www); give the site's directory, e.g. --www " +
                            app::default_www());
    if (!cfg.tls_cert.empty())
    {
        require_readable(cfg.tls_cert, "--tls-cert", "the TLS certificate", "give a readable PEM certificate chain");
        require_readable(cfg.tls_key, "--tls-key", "the TLS private key", "give a readable PEM private key");
    }
    if (!cfg.app.upstream_ca.empty())
        require_readable(cfg.app.upstream_ca, "--upstream-ca", "the CA file", "give a readable PEM file of CA certificates");
}

asio::ip::tcp::endpoint listen_endpoint(const std::string& host, unsigned short port)
{
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    if (!ec)
        return {addr, port};
    // A name: resolved once, here, before anything runs (a blocking call is fine now).
    asio::io_context ioc;
    asio::ip::tcp::resolver resolver{ioc};
    auto results = resolver.resolve(host, std::to_string(port), asio::ip::tcp::resolver::passive, ec);
    if (ec || results.empty())
        throw startup_error("cannot resolve --host " + host + ": " + (ec ? ec.message() : "no address") +
                            "; give an IP address (127.0.0.1, ::1, 0.0.0.0) or a name this machine resolves");
    for (auto& r : results)
        if (r.endpoint().address().is_v4())
            return r.endpoint();
    return results.begin()->endpoint();
}

std::string listen_failure(const boost::system::error_code& ec, const asio::ip::tcp::endpoint& where,
                           const std::string& host)
{
    auto head = "cannot listen on " + endpoint_text(where) + ": ";
    if (ec == asio::error::address_in_use)
        return head + "the port is in use by another program; choose another with --port (--port 0 takes a free one)";
    if (ec == boost::system::errc::address_not_available)
        return head + host + " is not an address of this machine; use --host 127.0.0.1 (this machine only), "
                             "--host 0.0.0.0 (every interface) or one of its own addresses";
    if (ec == asio::error::access_denied)
        return head + "permission denied (ports below 1024 need privileges); choose --port 1024 or above";
    return head + ec.message() + "; check --host and --port";
}

std::shared_ptr<asio::ssl::context> load_server_tls(const config& cfg)
{
    auto fix = "; give --tls-cert a PEM certificate chain and --tls-key its PEM private key";
    try
    {
        return make_server_tls_context(cfg.tls_cert, cfg.tls_key);
    }
    catch (const boost::system::system_error& e)
    {
        // e.what() carries a source location; the code's message is the reason.
        bool key = std::string_view{e.what()}.starts_with("cannot load the private key");
        auto reason = e.code().message();
        // OpenSSL compares the key with the certificate as it loads the key.
        if (key && reason.find("mismatch") != std::string::npos)
            throw startup_error("the key " + cfg.tls_key + " (--tls-key) does not belong to the certificate " +
                                cfg.tls_cert + " (--tls-cert): " + reason + "; give the key made with that certificate");
        throw startup_error("cannot load " + (key ? cfg.tls_key + " (--tls-key)" : cfg.tls_cert + " (--tls-cert)") +
                            ": " + reason + fix);
    }
    catch (const std::exception& e)
    {
        throw startup_error("cannot use " + cfg.tls_cert + " with " + cfg.tls_key + ": " + e.what() + fix);
    }
}

} // namespace coroute::cli
