#include <coroute/router.hpp>

#include <coroute/problem.hpp>

#include <catch2/catch.hpp>

#include <coroute/log.hpp>
#include <coroute/testing.hpp>

#include <boost/json/parse.hpp>

#include <stdexcept>

using namespace coroute;

namespace {

// Through the server's own connection code, as a client would see it.
response call(const router& r, http::verb method, std::string target, testing::fields headers = {})
{
    server_options quiet;
    quiet.log = std::make_shared<logger>(log_level::off, false);
    testing::client client{r, quiet};
    return client.send_sync(testing::make_request(method, target, std::move(headers)));
}

asio::awaitable<response> text(std::string s)
{
    co_return make_response(http::status::ok, "text/plain", std::move(s));
}

asio::awaitable<response> echo_id(request& req)
{
    co_return make_response(http::status::ok, "text/plain", "item " + std::string{*req.param("id")});
}

asio::awaitable<response> item_new(request&)
{
    co_return co_await text("new");
}

asio::awaitable<response> echo_path(request& req)
{
    co_return make_response(http::status::ok, "text/plain", req.path() + "|" + std::string{req.param("name").value_or("-")} +
                                                            "|" + std::string{req.query("q").value_or("-")});
}

asio::awaitable<response> throws(request&)
{
    throw std::runtime_error("secret internal detail");
    co_return make_response(http::status::ok, "text/plain", "unreachable");
}

} // namespace

TEST_CASE("router: a path parameter is captured and passed to the handler", "[router]")
{
    router r;
    r.get("/api/items/{id}", &echo_id);
    auto res = call(r, http::verb::get, "/api/items/42");
    CHECK(res.result() == http::status::ok);
    CHECK(res.body() == "item 42");
}

TEST_CASE("router: a static segment beats a parameter", "[router]")
{
    router r;
    r.get("/api/items/{id}", &echo_id);
    r.get("/api/items/new", &item_new);
    CHECK(call(r, http::verb::get, "/api/items/new").body() == "new");
    CHECK(call(r, http::verb::get, "/api/items/7").body() == "item 7");
}

TEST_CASE("router: segments and query values are percent-decoded", "[router]")
{
    router r;
    r.get("/hello/{name}", &echo_path);
    auto res = call(r, http::verb::get, "/hello/J%C3%BCrgen%20X?q=a%26b");
    CHECK(res.body() == "/hello/J\xC3\xBCrgen X|J\xC3\xBCrgen X|a&b");
}

TEST_CASE("router: an encoded slash or NUL in the path is a 400, never a segment boundary", "[router]")
{
    router r;
    r.get("/hello/{name}", &echo_path);
    CHECK(call(r, http::verb::get, "/hello/a%2Fb").result() == http::status::bad_request);
    CHECK(call(r, http::verb::get, "/hello/a%00b").result() == http::status::bad_request);
    CHECK(call(r, http::verb::get, "/hello/a/b").result() == http::status::not_found);
}

TEST_CASE("router: an unknown path is a 404 problem", "[router]")
{
    router r;
    r.get("/a", &item_new);
    auto res = call(r, http::verb::get, "/nope");
    CHECK(res.result() == http::status::not_found);
    CHECK(res[http::field::content_type] == "application/problem+json");
}

TEST_CASE("router: a known path with the wrong method is 405 with Allow", "[router]")
{
    router r;
    r.get("/a", &item_new);
    r.post("/a", &item_new);
    auto res = call(r, http::verb::delete_, "/a");
    CHECK(res.result() == http::status::method_not_allowed);
    CHECK(res[http::field::allow] == "GET, HEAD, POST, OPTIONS");
    CHECK(boost::json::parse(res.body()).at("status") == 405);
}

TEST_CASE("router: OPTIONS is answered from the route table", "[router]")
{
    router r;
    r.put("/a/{id}", &echo_id);
    auto res = call(r, http::verb::options, "/a/1");
    CHECK(res.result() == http::status::no_content);
    CHECK(res[http::field::allow] == "PUT, OPTIONS");
}

TEST_CASE("router: HEAD runs the GET handler", "[router]")
{
    router r;
    r.get("/a", &item_new);
    auto res = call(r, http::verb::head, "/a");
    CHECK(res.result() == http::status::ok);
    CHECK(res[http::field::content_length] == "3"); // the GET's body, which the server leaves out
    CHECK(res.body().empty());
}

TEST_CASE("router: a handler's exception becomes a 500 problem without its message", "[router]")
{
    router r;
    r.get("/boom", &throws);
    auto res = call(r, http::verb::get, "/boom");
    CHECK(res.result() == http::status::internal_server_error);
    CHECK(res.body().find("secret") == std::string::npos);
    CHECK(boost::json::parse(res.body()).at("title") == "Internal Server Error");
}

TEST_CASE("router: malformed templates and duplicate routes are refused", "[router]")
{
    router r;
    r.get("/a/{id}", &echo_id);
    CHECK_THROWS_AS(r.get("/a/{id}", &echo_id), std::invalid_argument);
    CHECK_THROWS_AS(r.get("/a/{other}/x", &echo_id), std::invalid_argument);
    CHECK_THROWS_AS(r.get("no-slash", &echo_id), std::invalid_argument);
    CHECK_THROWS_AS(r.get("/b/{}", &echo_id), std::invalid_argument);
}

TEST_CASE("router: a malformed target is a 400", "[router]")
{
    router r;
    r.get("/a", &item_new);
    CHECK(call(r, http::verb::get, "/a%zz").result() == http::status::bad_request);
}

// Records the order hooks run in.
struct trace
{
    std::vector<std::string> events;
};

namespace {
trace* current_trace = nullptr;

asio::awaitable<std::optional<response>> before_a(request&)
{
    current_trace->events.push_back("before a");
    co_return std::nullopt;
}
asio::awaitable<std::optional<response>> before_b(request& req)
{
    current_trace->events.push_back("before b");
    if (req.header("X-Deny") == "yes")
        co_return problem(http::status::forbidden, "denied");
    co_return std::nullopt;
}
asio::awaitable<void> after_a(request&, response& res)
{
    current_trace->events.push_back("after a");
    res.set("X-After-A", "1");
    co_return;
}
asio::awaitable<void> after_b(request&, response& res)
{
    current_trace->events.push_back("after b " + std::to_string(res.result_int()));
    co_return;
}
asio::awaitable<response> traced_handler(request&)
{
    current_trace->events.push_back("handler");
    co_return make_response(http::status::ok, "text/plain", "ok");
}
asio::awaitable<response> traced_throw(request&)
{
    current_trace->events.push_back("handler throws");
    throw std::logic_error("bug");
    co_return make_response(http::status::ok, "text/plain", "ok");
}
} // namespace

TEST_CASE("router: hooks run before in order, after and teardown in reverse", "[router][middleware]")
{
    trace t;
    current_trace = &t;
    router r;
    r.get("/t", &traced_handler);
    r.before(&before_a).before(&before_b).after(&after_a).after(&after_b);
    r.teardown([](request&, std::exception_ptr e) { current_trace->events.push_back(e ? "teardown a error" : "teardown a"); });
    r.teardown([](request&, std::exception_ptr e) { current_trace->events.push_back(e ? "teardown b error" : "teardown b"); });
    auto res = call(r, http::verb::get, "/t");
    CHECK(res[ "X-After-A"] == "1");
    CHECK(t.events == std::vector<std::string>{"before a", "before b", "handler", "after b 200", "after a",
                                               "teardown b", "teardown a"});
}

TEST_CASE("router: a before hook's response skips the handler but not after and teardown", "[router][middleware]")
{
    trace t;
    current_trace = &t;
    router r;
    r.get("/t", &traced_handler);
    r.before(&before_a).before(&before_b).after(&after_b);
    r.teardown([](request&, std::exception_ptr) { current_trace->events.push_back("teardown"); });
    auto res = call(r, http::verb::get, "/t", {{"X-Deny", "yes"}});
    CHECK(res.result() == http::status::forbidden);
    CHECK(t.events == std::vector<std::string>{"before a", "before b", "after b 403", "teardown"});
}

TEST_CASE("router: teardown runs and sees the error when the handler throws", "[router][middleware]")
{
    trace t;
    current_trace = &t;
    router r;
    r.get("/t", &traced_throw);
    r.after(&after_b);
    r.teardown([](request&, std::exception_ptr e) { current_trace->events.push_back(e ? "teardown error" : "teardown"); });
    auto res = call(r, http::verb::get, "/t");
    CHECK(res.result() == http::status::internal_server_error);
    CHECK(t.events == std::vector<std::string>{"handler throws", "after b 500", "teardown error"});
}

namespace {
struct item_view
{
    asio::awaitable<response> get(request& req)
    {
        co_return make_response(http::status::ok, "text/plain", req.param("id") ? "one" : "list");
    }
    asio::awaitable<response> post(request&) { co_return make_response(http::status::created, "text/plain", "made"); }
    asio::awaitable<response> del(request&) { co_return make_response(http::status::no_content, "text/plain", ""); }
};
} // namespace

TEST_CASE("router: a method view dispatches by method and answers 405 for the rest", "[router][view]")
{
    router r;
    auto v = std::make_shared<item_view>();
    r.view("/items", v, {http::verb::get, http::verb::post});
    r.view("/items/{id}", v, {http::verb::get, http::verb::delete_});
    CHECK(call(r, http::verb::get, "/items").body() == "list");
    CHECK(call(r, http::verb::post, "/items").result() == http::status::created);
    CHECK(call(r, http::verb::get, "/items/3").body() == "one");
    CHECK(call(r, http::verb::delete_, "/items/3").result() == http::status::no_content);
    auto put = call(r, http::verb::put, "/items/3");
    CHECK(put.result() == http::status::method_not_allowed);
    CHECK(put[http::field::allow] == "GET, HEAD, DELETE, OPTIONS");
    CHECK(call(r, http::verb::delete_, "/items").result() == http::status::method_not_allowed);
}
