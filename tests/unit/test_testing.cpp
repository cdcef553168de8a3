// The test client: requests through the server's own connection code without a
// socket, both call styles, streamed bodies, WebSockets, and the loopback server.
#include <coroute/testing.hpp>

#include <catch2/catch.hpp>

#include "support.hpp"

#include <coroute/events.hpp>
#include <coroute/problem.hpp>
#include <coroute/streaming.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/websocket/error.hpp>

#include <atomic>
#include <filesystem>
#include <functional>
#include <fstream>

using namespace coroute;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::atomic<bool> slow_cancelled{false};

asio::awaitable<response> hello(request& req)
{
    co_return make_response(http::status::ok, "text/plain", "hello " + std::string{req.param("name").value_or("?")});
}

// Answers with what it was sent: the JSON body, and the header X-Echo.
asio::awaitable<response> echo(request& req)
{
    auto res = make_response(http::status::created, "application/json", req.body());
    res.set("X-Echo", req.header("X-Echo"));
    co_return res;
}

asio::awaitable<response> slow(request&)
{
    asio::steady_timer t{co_await asio::this_coro::executor, 30s};
    auto [ec] = co_await t.async_wait(nothrow_awaitable);
    slow_cancelled = ec == asio::error::operation_aborted;
    co_return make_response(http::status::ok, "text/plain", "late");
}

// "first", a pause, then "second": two pieces a reader sees one at a time.
asio::awaitable<void> two_pieces(body_writer& out)
{
    auto ec = co_await out.write("first");
    if (ec)
        co_return;
    asio::steady_timer t{co_await asio::this_coro::executor, 50ms};
    auto [tec] = co_await t.async_wait(nothrow_awaitable);
    if (tec)
        co_return;
    ec = co_await out.write("second");
}

asio::awaitable<response> produced(request&)
{
    response res{http::status::ok, 11};
    res.set(http::field::content_type, "text/plain");
    res.stream(&two_pieces);
    co_return res;
}

asio::awaitable<void> echo_socket(websocket& s)
{
    for (;;)
    {
        auto m = co_await s.read();
        if (!m)
            co_return;
        if (m->data == "bye")
        {
            s.close(4000, "asked to");
            continue;
        }
        s.send("echo: " + m->data, m->text);
    }
}

asio::awaitable<std::optional<response>> guard(request& req)
{
    if (req.path().starts_with("/private") && req.header(http::field::authorization) != "Bearer ok")
        co_return problem(http::status::unauthorized, "a token is needed");
    co_return std::nullopt;
}

std::shared_ptr<router> routes()
{
    auto r = std::make_shared<router>();
    r->before(&guard);
    r->get("/hello/{name}", &hello);
    r->post("/echo", &echo);
    r->put("/echo", &echo);
    r->get("/slow", &slow);
    r->get("/produced", &produced);
    r->websocket("/ws", &echo_socket);
    r->websocket("/private/ws", &echo_socket);
    return r;
}

} // namespace

TEST_CASE("testing: a route answers through the server's writer: status, body, framing and common fields",
          "[testing]")
{
    testing::client client{routes()};
    auto res = client.get_sync("/hello/world");
    CHECK(res.result() == http::status::ok);
    CHECK(res.body() == "hello world");
    CHECK(res[http::field::content_length] == "11");
    CHECK(res[http::field::server].starts_with("coroute/"));
    CHECK_FALSE(res[http::field::date].empty());
    CHECK_FALSE(res["X-Request-Id"].empty());
    CHECK(client.get_sync("/hello/x", {{"X-Request-Id", "mine-1"}})["X-Request-Id"] == "mine-1");
    CHECK(res.keep_alive());
    client.drain();
    CHECK_FALSE(client.get_sync("/hello/x").keep_alive());
}

TEST_CASE("testing: HEAD, 404, 405 and OPTIONS are what a client over TCP gets", "[testing]")
{
    testing::client client{routes()};
    auto head = client.head_sync("/hello/world");
    CHECK(head.result() == http::status::ok);
    CHECK(head[http::field::content_length] == "11");
    CHECK(head.body().empty());

    auto missing = client.get_sync("/nothing");
    CHECK(missing.result() == http::status::not_found);
    CHECK(missing[http::field::content_type] == "application/problem+json");
    CHECK(testing::json_body(missing).at("status") == 404);

    auto wrong = client.del_sync("/hello/world");
    CHECK(wrong.result() == http::status::method_not_allowed);
    CHECK(wrong[http::field::allow] == "GET, HEAD, OPTIONS");

    auto options = client.send_sync(testing::make_request(http::verb::options, "/echo"));
    CHECK(options.result() == http::status::no_content);
    CHECK(options[http::field::allow] == "POST, PUT, OPTIONS");
}

TEST_CASE("testing: JSON bodies and header fields go out as given", "[testing]")
{
    testing::client client{routes()};
    auto res = client.post_json_sync("/echo", {{"name", "Bolt"}, {"price", 1.5}}, {{"X-Echo", "yes"}});
    CHECK(res.result() == http::status::created);
    CHECK(res["X-Echo"] == "yes");
    auto j = testing::json_body(res);
    CHECK(j.at("name") == "Bolt");
    CHECK(j.at("price") == 1.5);
    CHECK(client.put_json_sync("/echo", boost::json::array{1, 2}).body() == "[1,2]");
}

TEST_CASE("testing: the server's limits and framing rules apply (413, 431, 400)", "[testing][limits]")
{
    server_options opts;
    opts.body_limit = 16;
    opts.header_limit = 256;
    testing::client client{routes(), opts};
    CHECK(client.post_json_sync("/echo", boost::json::string(std::string(8, 'x'))).result() == http::status::created);
    CHECK(client.post_json_sync("/echo", boost::json::string(std::string(32, 'x'))).result() ==
          http::status::payload_too_large);
    auto big = client.get_sync("/hello/x", {{"X-Big", std::string(400, 'y')}});
    CHECK(big.result() == http::status::request_header_fields_too_large);

    auto no_host = client.run(client.send_raw("GET /hello/x HTTP/1.1\r\n\r\n"));
    CHECK(no_host.result() == http::status::bad_request);
    auto smuggled = client.run(client.send_raw(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"));
    CHECK(smuggled.result() == http::status::bad_request);
}

TEST_CASE("testing: the request deadline answers 504 and cancels the handler", "[testing][deadline]")
{
    server_options opts;
    opts.request_timeout = 50ms;
    testing::client client{routes(), opts};
    slow_cancelled = false;
    auto started = std::chrono::steady_clock::now();
    auto res = client.get_sync("/slow");
    CHECK(res.result() == http::status::gateway_timeout);
    CHECK(std::chrono::steady_clock::now() - started < 2s);
    CHECK(slow_cancelled);
}

TEST_CASE("testing: a sync call gives up after the client's timeout, and the handler is cancelled",
          "[testing][deadline]")
{
    testing::client client{routes()};
    client.set_timeout(100ms);
    slow_cancelled = false;
    auto started = std::chrono::steady_clock::now();
    CHECK_THROWS_AS(client.get_sync("/slow"), testing::timeout_error);
    auto took = std::chrono::steady_clock::now() - started;
    CHECK(took >= 100ms);
    CHECK(took < 2s);
    CHECK(slow_cancelled);
    // The client still works after a timeout.
    client.set_timeout(5s);
    CHECK(client.get_sync("/hello/again").body() == "hello again");
}

namespace {

// Polls `done` every millisecond on the caller's executor.
asio::awaitable<void> wait_until(std::function<bool()> done)
{
    asio::steady_timer t{co_await asio::this_coro::executor};
    while (!done())
    {
        t.expires_after(1ms);
        auto [ec] = co_await t.async_wait(nothrow_awaitable);
        if (ec)
            co_return;
    }
}

asio::awaitable<std::string> two_calls(testing::client& c)
{
    auto a = co_await c.get("/hello/a");
    boost::json::object body{{"n", 2}};
    auto b = co_await c.post_json("/echo", body);
    co_return a.body() + " " + b.body();
}

} // namespace

TEST_CASE("testing: from a coroutine on the caller's io_context", "[testing]")
{
    asio::io_context ioc;
    testing::client client{ioc.get_executor(), routes()};
    CHECK(test::run_sync(ioc, two_calls(client)) == "hello a {\"n\":2}");
    CHECK_THROWS_AS(client.get_sync("/hello/a"), std::logic_error);
}

TEST_CASE("testing: a produced body is read piece by piece as it is written", "[testing][stream]")
{
    testing::client client{routes()};
    auto s = client.run(client.open(testing::make_request(http::verb::get, "/produced")));
    CHECK(s.head().result() == http::status::ok);
    CHECK(s.head().chunked());
    auto first = client.run(s.read_some());
    REQUIRE(first.has_value());
    CHECK(*first == "first");
    CHECK_FALSE(s.done());
    auto rest = client.run(s.read_all());
    REQUIRE(rest.has_value());
    CHECK(*rest == "second");
    CHECK(s.done());
}

TEST_CASE("testing: an event stream delivers what is published while it is open", "[testing][stream]")
{
    auto hub = std::make_shared<event_hub>();
    auto r = std::make_shared<router>();
    r->get("/events", hub->handler());
    testing::client client{r};
    auto s = client.run(client.open(testing::make_request(http::verb::get, "/events")));
    CHECK(s.head()[http::field::content_type] == "text/event-stream");
    auto hello = client.run(s.read_until(": connected\n\n"));
    REQUIRE(hello.has_value());
    hub->publish("item", R"({"id":1})");
    auto ev = client.run(s.read_until("\n\n"));
    REQUIRE(ev.has_value());
    CHECK(*ev == "id: 1\nevent: item\ndata: {\"id\":1}\n\n");
}

namespace {

asio::awaitable<response> serve_file(fs::path path)
{
    auto f = file::open(path);
    response res{http::status::ok, 11};
    res.send_file({*f, 0, f->size()});
    co_return res;
}

} // namespace

TEST_CASE("testing: a reader that leaves ends its stream: the producer is cancelled at once", "[testing][stream]")
{
    auto hub = std::make_shared<event_hub>();
    auto r = std::make_shared<router>();
    r->get("/events", hub->handler());
    testing::client client{r};
    {
        auto s = client.run(client.open(testing::make_request(http::verb::get, "/events")));
        REQUIRE(client.run(s.read_until("\n\n")).has_value());
        CHECK(hub->subscribers() == 1);
    }
    // Long before the 15 s heartbeat would have found the reader gone.
    client.set_timeout(2s);
    std::function<bool()> gone = [&] { return hub->subscribers() == 0 && client.connections() == 0; };
    client.run(wait_until(gone));
    CHECK(hub->subscribers() == 0);
}

TEST_CASE("testing: a file larger than the in-memory stream's buffer arrives whole", "[testing][stream]")
{
    auto path = fs::temp_directory_path() / ("coroute-testing-" + std::to_string(::getpid()));
    std::string content;
    for (int i = 0; content.size() < 300'000; ++i)
        content += std::to_string(i) + ",";
    std::ofstream{path, std::ios::binary} << content;
    auto r = std::make_shared<router>();
    r->get("/file", [path](request&) { return serve_file(path); });
    testing::client client{r};
    auto res = client.get_sync("/file");
    fs::remove(path);
    CHECK(res[http::field::content_length] == std::to_string(content.size()));
    CHECK(res.body() == content);
}

TEST_CASE("testing: a WebSocket opens, exchanges messages and closes with the server's code", "[testing][websocket]")
{
    testing::client client{routes()};
    auto ws = client.run(client.websocket("/ws"));
    REQUIRE(ws.has_value());
    CHECK(ws->handshake().result() == http::status::switching_protocols);
    CHECK(ws->handshake()[http::field::server].starts_with("coroute/"));
    CHECK_FALSE(client.run(ws->send("ping")));
    auto m = client.run(ws->read());
    REQUIRE(m.has_value());
    CHECK(m->data == "echo: ping");
    CHECK(m->text);
    CHECK_FALSE(client.run(ws->send("bye")));
    auto end = client.run(ws->read());
    REQUIRE_FALSE(end.has_value());
    CHECK(end.error() == beast::websocket::error::closed);
    CHECK(ws->close_code() == 4000);
}

TEST_CASE("testing: a refused WebSocket handshake gives the HTTP answer", "[testing][websocket]")
{
    testing::client client{routes()};
    auto refused = client.run(client.websocket("/private/ws"));
    REQUIRE_FALSE(refused.has_value());
    CHECK(refused.error().result() == http::status::unauthorized);
    CHECK(testing::json_body(refused.error()).at("detail") == "a token is needed");
    auto allowed = client.run(client.websocket("/private/ws", {{"Authorization", "Bearer ok"}}));
    REQUIRE(allowed.has_value());
    CHECK(client.get_sync("/ws").result() == http::status::upgrade_required);
}

TEST_CASE("testing: the loopback server answers on a real port and stops at scope exit", "[testing][live]")
{
    std::string url;
    unsigned short port = 0;
    {
        testing::live_server live{routes(), {}, true};
        url = live.url();
        port = live.port();
        CHECK(url == "http://127.0.0.1:" + std::to_string(port));
        CHECK(live.get("/hello/tcp").body() == "hello tcp");
        CHECK(live.get("/healthz").result() == http::status::ok);
    }
    asio::io_context io;
    asio::ip::tcp::socket s{io};
    boost::system::error_code ec;
    s.connect({asio::ip::make_address("127.0.0.1"), port}, ec);
    CHECK(ec == asio::error::connection_refused);
}
