// Frames a peer could send after a valid handshake, into a real server's WebSocket
// route (an echo): whatever arrives, the server answers or closes, and the connection
// is given back: no crash, no hang, no connection left open.
#include <coroute/router.hpp>
#include <coroute/server.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

using namespace coroute;
using tcp = asio::ip::tcp;

namespace {

void require(bool ok)
{
    if (!ok)
        std::abort();
}

asio::awaitable<void> echo(websocket& ws)
{
    for (;;)
    {
        auto m = co_await ws.read();
        if (!m)
            co_return;
        if (m->data == "close")
            ws.close(close_code::normal, "asked");
        else
            ws.send(std::move(m->data), m->text);
    }
}

struct site
{
    site()
    {
        auto r = std::make_shared<router>();
        websocket_options o;
        o.max_message_bytes = 4096;
        o.handshake_timeout = std::chrono::milliseconds(500);
        o.send_queue = 8;
        r->websocket("/ws", &echo, o);
        server_options so;
        so.log = std::make_shared<logger>(std::getenv("COROUTE_FUZZ_DEBUG") ? log_level::debug : log_level::off, false);
        srv = std::make_unique<server>(ioc.get_executor(), r, so);
        port = srv->listen({asio::ip::make_address("127.0.0.1"), 0}).port();
        srv->start();
    }
    asio::io_context ioc;
    std::unique_ptr<server> srv;
    unsigned short port = 0;
};

// The handshake, the input right behind it, then the end of what this peer sends; it
// reads whatever comes back until the server closes.
asio::awaitable<void> peer(unsigned short port, std::string frames)
{
    auto ex = co_await asio::this_coro::executor;
    tcp::socket s{ex};
    auto [cec] = co_await s.async_connect({asio::ip::make_address("127.0.0.1"), port}, nothrow_awaitable);
    require(!cec);
    std::string out = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    out += frames;
    auto [wec, w] = co_await asio::async_write(s, asio::buffer(out), nothrow_awaitable);
    (void)w;
    if (!wec)
        s.shutdown(tcp::socket::shutdown_send, wec);
    char buf[4096];
    for (;;)
    {
        auto [rec, n] = co_await s.async_read_some(asio::buffer(buf), nothrow_awaitable);
        (void)n;
        if (rec)
            break;
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    static site s;
    bool done = false;
    asio::co_spawn(s.ioc, peer(s.port, std::string(reinterpret_cast<const char*>(data), size)),
                   [&](std::exception_ptr e) {
                       require(!e);
                       done = true;
                   });
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while ((!done || s.srv->stats().connections_open > 0) && std::chrono::steady_clock::now() < until)
        s.ioc.run_one_for(std::chrono::milliseconds(50));
    if (!done || s.srv->stats().connections_open != 0)
    {
        std::fprintf(stderr, "fuzz_websocket: after 5 s the peer %s, %llu connection(s) still open\n",
                     done ? "was answered" : "still waits", static_cast<unsigned long long>(s.srv->stats().connections_open));
        std::abort();
    }
    return 0;
}
