// WebSocket routes through a real server and Beast's WebSocket client: hooks on the
// handshake, the 101's fields, tasks of a socket, close codes, shutdown, TLS.
#include <coroute/websocket.hpp>

#include <catch2/catch.hpp>

#include "server_fixture.hpp"

#include <coroute/problem.hpp>
#include <coroute/tls.hpp>

#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <future>

using namespace coroute;
using namespace coroute::test;
namespace ws = beast::websocket;

namespace {

std::atomic<bool> task_cancelled{false};

// The handshake of /private/... needs a token, as any request of it would.
asio::awaitable<std::optional<response>> require_token(request& req)
{
    if (req.path().starts_with("/private/") && req.header(http::field::authorization) != "Bearer s3cret")
        co_return problem(http::status::unauthorized, "a token is needed");
    co_return std::nullopt;
}

asio::awaitable<void> mark_101(request&, response& res)
{
    res.set("X-Hooked", "yes");
    co_return;
}

// Sleeps `ms` as a task, then says so; was it cancelled instead?
asio::awaitable<void> sleep_then_say(websocket& s, int ms)
{
    asio::steady_timer t{co_await asio::this_coro::executor, std::chrono::milliseconds(ms)};
    auto [ec] = co_await t.async_wait(nothrow_awaitable);
    if (ec)
    {
        task_cancelled = true;
        co_return;
    }
    s.send("slept " + std::to_string(ms));
}

// A room: every message is answered with the room's name in front ("sleep N" starts
// a task, "quit" returns, "throw" throws).
asio::awaitable<void> room(coroute::websocket& ws)
{
    auto name = std::string{ws.request().param("room").value_or("?")};
    for (;;)
    {
        auto m = co_await ws.read(); // result<ws_message>: an error once closed
        if (!m)
            co_return; // the socket closes (1000) when the handler returns
        if (m->data.starts_with("sleep "))
            ws.spawn(sleep_then_say(ws, std::stoi(m->data.substr(6))));
        else if (m->data == "quit")
            co_return;
        else if (m->data == "throw")
            throw std::runtime_error("the handler failed");
        else
            ws.send(name + ": " + m->data, m->text); // queued; never waits
    }
}

void socket_routes(router& r)
{
    r.before(&require_token);
    r.after(&mark_101);
    r.websocket("/rooms/{room}", &room);
    r.websocket("/private/{room}", &room);
}

// A blocking client whose reads give up after 5 s, so a silent server fails the test.
template <class Next>
void bound_reads(Next& s)
{
    timeval tv{5, 0};
    ::setsockopt(beast::get_lowest_layer(s).native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

struct client
{
    explicit client(unsigned short port) { ws.next_layer().connect({asio::ip::make_address("127.0.0.1"), port}); bound_reads(ws); }

    boost::system::error_code open(const std::string& target, std::string token = {})
    {
        ws.set_option(ws::stream_base::decorator([token](ws::request_type& r) {
            if (!token.empty())
                r.set(http::field::authorization, "Bearer " + token);
        }));
        boost::system::error_code ec;
        ws.handshake(answer, "127.0.0.1", target, ec);
        return ec;
    }

    std::string say(std::string_view text)
    {
        ws.write(asio::buffer(text));
        return next();
    }

    std::string next()
    {
        beast::flat_buffer buf;
        ws.read(buf);
        return beast::buffers_to_string(buf.data());
    }

    // Reads until the server's close arrives; its code.
    std::uint16_t close_code()
    {
        beast::flat_buffer buf;
        boost::system::error_code ec;
        while (!ec)
            ws.read(buf, ec);
        return ec == ws::error::closed ? ws.reason().code : 0;
    }

    asio::io_context ioc;
    ws::stream<tcp::socket> ws{ioc};
    ws::response_type answer;
};

} // namespace

TEST_CASE("websocket: a before-hook refuses the handshake; with its token the socket opens", "[websocket][hooks]")
{
    embedded app{{}, &socket_routes};
    {
        client c{app.port};
        CHECK(c.open("/private/vault") == ws::error::upgrade_declined);
        CHECK(c.answer.result() == http::status::unauthorized);
        CHECK(c.answer[http::field::content_type] == "application/problem+json");
    }
    client c{app.port};
    REQUIRE_FALSE(c.open("/private/vault", "s3cret"));
    CHECK(c.say("hello") == "vault: hello");
}

TEST_CASE("websocket: the 101 carries the server's fields and what the after-hooks add", "[websocket][hooks]")
{
    embedded app{{}, &socket_routes};
    client c{app.port};
    REQUIRE_FALSE(c.open("/rooms/lobby"));
    CHECK(c.answer.result() == http::status::switching_protocols);
    CHECK(c.answer[http::field::server].starts_with("coroute/"));
    CHECK(c.answer["X-Request-Id"].size() == 16);
    CHECK_FALSE(c.answer[http::field::date].empty());
    CHECK(c.answer["X-Hooked"] == "yes");
    CHECK(c.say("hi") == "lobby: hi");
    c.ws.binary(true);
    CHECK(c.say(std::string("\x00\xff", 2)) == std::string("lobby: \x00\xff", 9));
    CHECK(c.ws.got_binary());
}

TEST_CASE("websocket: tasks answer as they finish; the handler's return closes with 1000 and cancels them",
          "[websocket]")
{
    task_cancelled = false;
    embedded app{{}, &socket_routes};
    client c{app.port};
    REQUIRE_FALSE(c.open("/rooms/a"));
    c.ws.write(asio::buffer(std::string_view{"sleep 300"}));
    c.ws.write(asio::buffer(std::string_view{"sleep 30"}));
    CHECK(c.next() == "slept 30");
    CHECK(c.next() == "slept 300");

    c.ws.write(asio::buffer(std::string_view{"sleep 10000"}));
    auto start = std::chrono::steady_clock::now();
    c.ws.write(asio::buffer(std::string_view{"quit"}));
    CHECK(c.close_code() == close_code::normal);
    CHECK(std::chrono::steady_clock::now() - start < 3s); // the task did not hold the socket open
    CHECK(task_cancelled);
}

TEST_CASE("websocket: a handler that throws closes its socket with 1011", "[websocket]")
{
    embedded app{{}, &socket_routes};
    client c{app.port};
    REQUIRE_FALSE(c.open("/rooms/a"));
    c.ws.write(asio::buffer(std::string_view{"throw"}));
    CHECK(c.close_code() == close_code::internal_error);
    CHECK(app.get("/healthz").result() == http::status::ok);
}

TEST_CASE("websocket: shutdown closes every socket with 1001, and ends without waiting out the grace",
          "[websocket][shutdown]")
{
    embedded app{{}, &socket_routes};
    client a{app.port}, b{app.port};
    REQUIRE_FALSE(a.open("/rooms/a"));
    REQUIRE_FALSE(b.open("/rooms/b"));
    CHECK(a.say("x") == "a: x");
    auto start = std::chrono::steady_clock::now();
    std::promise<void> done;
    asio::co_spawn(app.ioc, app.srv->shutdown(5s), [&](std::exception_ptr) { done.set_value(); });
    CHECK(a.close_code() == close_code::going_away);
    CHECK(b.close_code() == close_code::going_away);
    CHECK(a.ws.reason().reason == "server shutting down");
    REQUIRE(done.get_future().wait_for(5s) == std::future_status::ready);
    CHECK(std::chrono::steady_clock::now() - start < 4s);
    CHECK(app.srv->stats().connections_open == 0);
}

TEST_CASE("websocket: over TLS the socket runs on the TLS stream", "[websocket][tls]")
{
    auto identity = make_self_signed("127.0.0.1");
    server_options o;
    o.tls = make_server_tls_context(identity);
    embedded app{o, &socket_routes};

    auto tls = make_client_tls_context_trusting(identity.certificate_pem);
    asio::io_context ioc;
    ws::stream<asio::ssl::stream<tcp::socket>> s{ioc, *tls};
    beast::get_lowest_layer(s).connect({asio::ip::make_address("127.0.0.1"), app.port});
    bound_reads(s);
    s.next_layer().handshake(asio::ssl::stream_base::client);
    s.handshake("127.0.0.1", "/rooms/secure");
    s.write(asio::buffer(std::string_view{"over tls"}));
    beast::flat_buffer buf;
    s.read(buf);
    CHECK(beast::buffers_to_string(buf.data()) == "secure: over tls");
    s.close(ws::close_code::normal);
}
