#include "app/upstream.hpp"

#include <coroute/problem.hpp>
#include <coroute/router.hpp>
#include <coroute/server.hpp>
#include <coroute/streaming.hpp>
#include <coroute/tls.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <random>

namespace coroute::app {

namespace {

constexpr std::string_view titles[] = {
    "delectus aut autem", "quis ut nam facilis et officia qui", "fugiat veniam minus", "et porro tempora",
    "laboriosam mollitia et enim quasi adipisci quia provident illum",
};

boost::json::object todo(std::uint64_t id)
{
    return {{"userId", (id - 1) / 20 + 1},
            {"id", id},
            {"title", titles[(id - 1) % std::size(titles)]},
            {"completed", id % 3 == 0}};
}

asio::awaitable<void> wait_latency(const request& req, std::chrono::milliseconds latency)
{
    if (auto d = req.query_as<long long>("delay_ms"); d && *d >= 0 && *d <= 60'000)
        latency = std::chrono::milliseconds{*d};
    if (latency.count() == 0)
        co_return;
    asio::steady_timer t{co_await asio::this_coro::executor, latency};
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
}

asio::awaitable<void> cut_body(body_writer& out)
{
    auto ec = co_await out.write(R"({"userId": 1, "id": )");
    if (!ec)
        out.abort();
}

// One of the three faults, when this answer draws one at `rate`.
std::optional<response> fault(double rate)
{
    if (rate <= 0)
        return std::nullopt;
    thread_local std::minstd_rand rng{std::random_device{}()};
    if (std::uniform_real_distribution<double>{0, 1}(rng) >= rate)
        return std::nullopt;
    switch (rng() % 3)
    {
    case 0:
        return problem(http::status::internal_server_error, "the built-in upstream failed on purpose (--upstream-fail-rate)");
    case 1:
        return make_response(http::status::ok, "text/plain", "not JSON, on purpose (--upstream-fail-rate)");
    default:
    {
        response res{http::status::ok, 11};
        res.set(http::field::content_type, "application/json");
        res.stream(&cut_body, 64); // declares 64 bytes, sends 20, then closes
        return res;
    }
    }
}

asio::awaitable<response> get_todo(std::chrono::milliseconds latency, double fail_rate, request& req)
{
    co_await wait_latency(req, latency);
    if (auto f = fault(fail_rate))
        co_return std::move(*f);
    auto id = req.param_as<std::uint64_t>("id");
    if (!id || *id < 1 || *id > 200)
        co_return problem(http::status::not_found, "no todo " + std::string{req.param("id").value_or("")});
    co_return json_response(http::status::ok, todo(*id));
}

asio::awaitable<response> list_todos(std::chrono::milliseconds latency, request& req)
{
    co_await wait_latency(req, latency);
    boost::json::array out;
    for (std::uint64_t id = 1; id <= 10; ++id)
        out.push_back(todo(id));
    co_return json_response(http::status::ok, out);
}

} // namespace

struct builtin_upstream::impl
{
    tls_identity identity = make_self_signed("127.0.0.1");
    std::shared_ptr<router> routes = std::make_shared<router>();
    std::unique_ptr<server> srv;
    unsigned short port = 0;
};

builtin_upstream::builtin_upstream(asio::any_io_executor ex, std::chrono::milliseconds latency, double fail_rate)
    : impl_(std::make_unique<impl>())
{
    impl_->routes->get("/todos", [latency](request& req) { return list_todos(latency, req); });
    impl_->routes->get("/todos/{id}",
                       [latency, fail_rate](request& req) { return get_todo(latency, fail_rate, req); });
    server_options opts;
    opts.tls = make_server_tls_context(impl_->identity);
    opts.log = std::make_shared<logger>(log_level::warn, false);
    impl_->srv = std::make_unique<server>(std::move(ex), impl_->routes, opts);
    impl_->port = impl_->srv->listen({asio::ip::make_address("127.0.0.1"), 0}).port();
    impl_->srv->start();
}

builtin_upstream::~builtin_upstream() = default;

std::string builtin_upstream::url() const
{
    return "https://127.0.0.1:" + std::to_string(impl_->port) + "/todos/1";
}

const std::string& builtin_upstream::certificate_pem() const
{
    return impl_->identity.certificate_pem;
}

std::shared_ptr<asio::ssl::context> builtin_upstream::client_tls() const
{
    return make_client_tls_context_trusting(impl_->identity.certificate_pem);
}

asio::awaitable<void> builtin_upstream::stop()
{
    co_await impl_->srv->shutdown(std::chrono::seconds(1));
}

std::uint64_t builtin_upstream::connections() const
{
    return impl_->srv->stats().connections_accepted;
}

} // namespace coroute::app
