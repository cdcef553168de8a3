// coroute-ws-load: WebSocket round trips for the benchmark. Opens N sockets to a
// server, and on each one sends a message and waits for its answer, again and again
// for a warm-up and then a measured time; prints one JSON line with the rate and the
// latency percentiles of the measured round trips.
//
// usage: coroute-ws-load --port P [--host 127.0.0.1] [--path /ws] [--connections 64]
//                        [--warmup S] [--duration S] [--message TEXT]
//
// One thread, like `wrk -t1`: the client's CPU is part of what the machine spends.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ws = beast::websocket;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

namespace {

struct settings
{
    std::string host = "127.0.0.1";
    std::string port;
    std::string path = "/ws";
    int connections = 64;
    double warmup = 3;
    double duration = 10;
    std::string message = R"({"op":"echo","data":"hello"})";
};

struct tally
{
    clock_type::time_point measure_from, measure_until;
    std::vector<float> latency_ms; // of the round trips in the measured window
    long errors = 0;
    int open = 0;
};

asio::awaitable<void> one_socket(const settings& s, tcp::endpoint where, tally& t)
{
    auto ex = co_await asio::this_coro::executor;
    ws::stream<tcp::socket> sock{ex};
    auto [cec] = co_await sock.next_layer().async_connect(where, asio::as_tuple(asio::use_awaitable));
    if (cec)
    {
        ++t.errors;
        co_return;
    }
    sock.next_layer().set_option(tcp::no_delay(true));
    auto [hec] = co_await sock.async_handshake(s.host, s.path, asio::as_tuple(asio::use_awaitable));
    if (hec)
    {
        ++t.errors;
        co_return;
    }
    ++t.open;
    beast::flat_buffer buf;
    for (;;)
    {
        auto sent = clock_type::now();
        if (sent >= t.measure_until)
            break;
        auto [wec, wn] = co_await sock.async_write(asio::buffer(s.message), asio::as_tuple(asio::use_awaitable));
        if (wec)
        {
            ++t.errors;
            co_return;
        }
        auto [rec, rn] = co_await sock.async_read(buf, asio::as_tuple(asio::use_awaitable));
        if (rec)
        {
            ++t.errors;
            co_return;
        }
        buf.consume(buf.size());
        if (sent >= t.measure_from)
            t.latency_ms.push_back(std::chrono::duration<float, std::milli>(clock_type::now() - sent).count());
    }
    auto [clec] = co_await sock.async_close(ws::close_code::normal, asio::as_tuple(asio::use_awaitable));
    (void)clec;
}

bool parse(int argc, char** argv, settings& s)
{
    for (int i = 1; i + 1 < argc; i += 2)
    {
        std::string_view k = argv[i];
        const char* v = argv[i + 1];
        if (k == "--host")
            s.host = v;
        else if (k == "--port")
            s.port = v;
        else if (k == "--path")
            s.path = v;
        else if (k == "--connections")
            s.connections = std::atoi(v);
        else if (k == "--warmup")
            s.warmup = std::atof(v);
        else if (k == "--duration")
            s.duration = std::atof(v);
        else if (k == "--message")
            s.message = v;
        else
            return false;
    }
    return !s.port.empty() && s.connections > 0 && s.duration > 0 && argc % 2 == 1;
}

double percentile(std::vector<float>& v, double p)
{
    if (v.empty())
        return 0;
    auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return v[k];
}

} // namespace

int main(int argc, char** argv)
{
    settings s;
    if (!parse(argc, argv, s))
    {
        std::fprintf(stderr, "usage: coroute-ws-load --port P [--host H] [--path /ws] [--connections N] "
                             "[--warmup S] [--duration S] [--message TEXT]\n");
        return 2;
    }
    asio::io_context ioc{1};
    tcp::resolver resolver{ioc};
    auto where = *resolver.resolve(s.host, s.port).begin();
    tally t;
    auto start = clock_type::now();
    t.measure_from = start + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(s.warmup));
    t.measure_until = t.measure_from + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(s.duration));
    t.latency_ms.reserve(1 << 20);
    for (int i = 0; i < s.connections; ++i)
        asio::co_spawn(ioc, one_socket(s, where, t), [&t](std::exception_ptr e) {
            if (e)
                ++t.errors;
        });
    ioc.run();
    auto n = t.latency_ms.size();
    std::printf("{\"connections\":%d,\"open\":%d,\"round_trips\":%zu,\"seconds\":%.3f,\"rate\":%.1f,"
                "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"errors\":%ld}\n",
                s.connections, t.open, n, s.duration, static_cast<double>(n) / s.duration,
                percentile(t.latency_ms, 0.50), percentile(t.latency_ms, 0.99), t.errors);
    return t.errors ? 1 : 0;
}
