#include <coroute/events.hpp>

#include <catch2/catch.hpp>

#include <coroute/request.hpp>

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
