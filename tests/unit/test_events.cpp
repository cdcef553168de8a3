#include <coroute/events.hpp>

#include <catch2/catch.hpp>

#include <coroute/error.hpp>
#include <coroute/request.hpp>

#include "support.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <optional>
#include <thread>

using namespace coroute;

namespace {

request with_last_event_id(std::string_view id)
{
    request::message_type msg{http::verb::get, "/events", 11};
    if (!id.empty())
        msg.set("Last-Event-ID", id);
    return request{std::move(msg), "id", request::clock::now() + std::chrono::seconds(5)};
}

} // namespace

TEST_CASE("events: ids count up by one across the process, from 1", "[events]")
{
    event_hub hub{{.history = 3}};
    CHECK(hub.last_id() == 0);
    CHECK(hub.publish("item", "{}") == 1);
    CHECK(hub.publish("item", "{}") == 2);
    CHECK(hub.publish("job", "{}") == 3);
    CHECK(hub.last_id() == 3);
    CHECK(hub.subscribers() == 0);
}

TEST_CASE("events: a subscription is a streamed text/event-stream response", "[events]")
{
    auto hub = std::make_shared<event_hub>();
    auto res = hub->subscribe(with_last_event_id("abc"));
    finish_payload(res);
    CHECK(res.result() == http::status::ok);
    CHECK(res[http::field::content_type] == "text/event-stream");
    CHECK(res[http::field::cache_control] == "no-cache");
    CHECK(res.chunked());
    CHECK(std::holds_alternative<produced_body>(res.source()));
}

TEST_CASE("events: a listener gets what is published after it, in order, and is dropped when it falls behind",
          "[events]")
{
    using namespace std::chrono_literals;
    asio::io_context ioc;
    auto hub = std::make_shared<event_hub>(event_options{.history = 10, .buffer = 3});
    hub->publish("item", "before");
    auto sub = hub->listen(ioc.get_executor());
    CHECK(hub->subscribers() == 1);
    hub->publish("item", R"({"n":1})");
    hub->publish("job", "two");
    auto batch = test::run_sync(ioc, sub->next());
    REQUIRE(batch.has_value());
    REQUIRE(batch->size() == 2);
    CHECK((*batch)[0].id == 2);
    CHECK((*batch)[0].name == "item");
    CHECK((*batch)[0].data == R"({"n":1})");
    CHECK((*batch)[1].id == 3);
    CHECK((*batch)[1].name == "job");

    // A waiting listener is woken by a publish from another thread.
    std::thread publisher([&] {
        std::this_thread::sleep_for(50ms);
        hub->publish("item", "late");
    });
    auto later = test::run_sync(ioc, sub->next());
    publisher.join();
    REQUIRE(later.has_value());
    REQUIRE(later->size() == 1);
    CHECK(later->front().data == "late");

    for (int i = 0; i < 4; ++i)
        hub->publish("item", "x");
    auto dropped = test::run_sync(ioc, sub->next());
    REQUIRE_FALSE(dropped.has_value());
    CHECK(dropped.error() == coroute::error::slow_consumer);
    sub.reset();
    CHECK(hub->subscribers() == 0);
}

TEST_CASE("events: cancelling a listener's wait ends it with operation_aborted", "[events]")
{
    using namespace std::chrono_literals;
    asio::io_context ioc;
    auto hub = std::make_shared<event_hub>();
    auto sub = hub->listen(ioc.get_executor());
    asio::cancellation_signal cancel;
    std::optional<boost::system::error_code> ended;
    asio::co_spawn(ioc, sub->next(),
                   asio::bind_cancellation_slot(cancel.slot(), [&](std::exception_ptr, auto r) {
                       ended = r.has_value() ? boost::system::error_code{} : r.error();
                   }));
    ioc.run_for(30ms);
    CHECK_FALSE(ended.has_value()); // nothing published: still waiting
    cancel.emit(asio::cancellation_type::terminal);
    ioc.run_for(30ms);
    REQUIRE(ended.has_value());
    CHECK(*ended == asio::error::operation_aborted);
}
