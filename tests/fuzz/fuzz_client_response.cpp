// What an upstream could answer, read by the HTTPS client's response reader (over
// plain TCP to a loopback listener that writes the input and closes): a response
// within the caps or an error, never an exception, never more than the caps hold.
#include <coroute/fwd.hpp>
#include <coroute/http_client.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include <cstdint>
#include <cstdlib>
#include <string>

using namespace coroute;
using tcp = asio::ip::tcp;

namespace {

constexpr std::uint32_t header_cap = 2048;
constexpr std::uint64_t body_cap = 4096;

void require(bool ok)
{
    if (!ok)
        std::abort();
}

// Accepts the client's connection, reads its request, answers `bytes`, and closes.
asio::awaitable<void> answer(tcp::acceptor& acceptor, std::string bytes)
{
    auto [aec, sock] = co_await acceptor.async_accept(nothrow_awaitable);
    if (aec)
        co_return;
    char request[4096];
    auto [rec, n] = co_await sock.async_read_some(asio::buffer(request), nothrow_awaitable);
    (void)rec;
    (void)n;
    auto [wec, w] = co_await asio::async_write(sock, asio::buffer(bytes), nothrow_awaitable);
    (void)wec;
    (void)w;
    boost::system::error_code ignored;
    sock.shutdown(tcp::socket::shutdown_both, ignored);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    static asio::io_context ioc;
    static tcp::acceptor acceptor{ioc, {asio::ip::make_address("127.0.0.1"), 0}};
    static const std::string url = "http://127.0.0.1:" + std::to_string(acceptor.local_endpoint().port()) + "/";
    static http_client client{ioc.get_executor(), [] {
                                  client_options o;
                                  o.max_header_bytes = header_cap;
                                  o.max_body_bytes = body_cap;
                                  o.max_idle_per_host = 0; // a connection per call: each input is a new answer
                                  o.total_timeout = std::chrono::seconds(2);
                                  return o;
                              }()};

    asio::co_spawn(ioc, answer(acceptor, std::string(reinterpret_cast<const char*>(data), size)), asio::detached);
    bool done = false;
    asio::co_spawn(ioc, client.get(url), [&](std::exception_ptr e, client_result r) {
        require(!e);
        if (r)
            require(r.value().body().size() <= body_cap);
        done = true;
    });
    ioc.restart();
    ioc.run();
    require(done);
    return 0;
}
