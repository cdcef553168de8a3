#include "app/ws_routes.hpp"

#include "app/db_routes.hpp"

#include <coroute/error.hpp>
#include <coroute/problem.hpp>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>

#include <map>
#include <optional>
#include <string>

namespace coroute::app {

namespace {

namespace json = boost::json;

constexpr long long max_delay_ms = 10'000;

std::string error_message(std::string_view detail, const json::value* id = nullptr)
{
    json::object out{{"op", "error"}, {"detail", detail}};
    if (id)
        out["id"] = *id;
    return to_json_text(out);
}

// One query; its answer goes out when it is done, whatever was asked after it.
asio::awaitable<void> answer_query(websocket& ws, std::shared_ptr<database> db, json::value id,
                                   database::latency delay)
{
    auto t = co_await timed_query(db, 5, delay);
    json::object out{{"op", "db"}, {"id", std::move(id)}, {"elapsed_ms", t.elapsed_ms}};
    if (t.rows)
        out["items"] = to_json(*t.rows);
    else
        out["error"] = "database query failed: " + t.rows.error().message();
    ws.send(to_json_text(out));
}

// One topic's events of the hub ("items": the item events, "jobs": the job
// events), for as long as the subscription lasts.
asio::awaitable<void> forward_events(websocket& ws, std::shared_ptr<event_subscription> sub, std::string topic)
{
    std::string_view name = topic == "jobs" ? "job" : "item";
    for (;;)
    {
        auto batch = co_await sub->next();
        if (!batch)
        {
            if (batch.error() == coroute::error::slow_consumer)
                ws.send(error_message("the " + topic + " feed fell behind and was stopped; subscribe again"));
            co_return;
        }
        for (auto& ev : *batch)
        {
            if (ev.name != name)
                continue;
            // The event's data is the JSON its routes published.
            std::string msg = R"({"op":"event","topic":")" + topic + R"(","seq":)" + std::to_string(ev.id) +
                              R"(,"data":)" + ev.data + "}";
            if (!ws.send(std::move(msg)))
                co_return;
        }
    }
}

struct socket_state
{
    std::shared_ptr<database> db;
    std::shared_ptr<event_hub> events;
    std::map<std::string, std::uint64_t, std::less<>> feeds; // each subscribed topic's task
};

void handle_db(websocket& ws, socket_state& st, const json::object& msg)
{
    json::value id = nullptr;
    if (auto* v = msg.if_contains("id"))
        id = *v;
    database::latency delay;
    if (auto* d = msg.if_contains("delay_ms"))
    {
        if (!d->is_int64() || d->as_int64() < 0 || d->as_int64() > max_delay_ms)
        {
            ws.send(error_message("delay_ms must be an integer from 0 to 10000", &id));
            return;
        }
        delay = std::chrono::milliseconds{d->as_int64()};
    }
    ws.spawn(answer_query(ws, st.db, std::move(id), delay));
}

void handle_subscription(websocket& ws, socket_state& st, const json::object& msg, bool subscribe)
{
    auto* topic = msg.if_contains("topic");
    if (!topic || !topic->is_string() || (topic->as_string() != "items" && topic->as_string() != "jobs"))
    {
        ws.send(error_message("the topics are \"items\" and \"jobs\""));
        return;
    }
    std::string name{topic->as_string()};
    auto feed = st.feeds.find(name);
    if (subscribe && feed == st.feeds.end())
    {
        // Listening starts here, before the answer: every change after it is sent.
        st.feeds.emplace(name, ws.spawn(forward_events(ws, st.events->listen(ws.get_executor()), name)));
    }
    else if (!subscribe && feed != st.feeds.end())
    {
        ws.cancel(feed->second);
        st.feeds.erase(feed);
    }
    ws.send(to_json_text(json::object{{"op", subscribe ? "subscribed" : "unsubscribed"}, {"topic", name}}));
}

void handle(websocket& ws, socket_state& st, const ws_message& m)
{
    if (!m.text)
        return (void)ws.send(error_message("messages are JSON text, not binary"));
    boost::system::error_code ec;
    auto doc = json::parse(m.data, ec);
    if (ec)
        return (void)ws.send(error_message("malformed JSON: " + ec.message()));
    auto* msg = doc.if_object();
    auto* op = msg ? msg->if_contains("op") : nullptr;
    if (!op || !op->is_string())
        return (void)ws.send(error_message("a message is a JSON object with an \"op\""));
    auto& name = op->as_string();
    if (name == "echo")
        ws.send(m.data);
    else if (name == "db")
        handle_db(ws, st, *msg);
    else if (name == "subscribe" || name == "unsubscribe")
        handle_subscription(ws, st, *msg, name == "subscribe");
    else
        ws.send(error_message("unknown op \"" + std::string{name} + "\""));
}

// Reads until the peer closes; what a message asks for that takes time runs as a
// task of the socket, so the next message is read at once.
asio::awaitable<void> serve_socket(websocket& ws, std::shared_ptr<database> db, std::shared_ptr<event_hub> events)
{
    socket_state st{std::move(db), std::move(events), {}};
    for (;;)
    {
        auto m = co_await ws.read();
        if (!m)
            co_return;
        handle(ws, st, *m);
    }
}

} // namespace

void add_ws_routes(router& r, std::shared_ptr<database> db, std::shared_ptr<event_hub> events,
                   websocket_options opts)
{
    // A lambda with captures must not be a coroutine: it calls one, which takes copies.
    r.websocket(
        "/ws", [db, events](websocket& ws) { return serve_socket(ws, db, events); }, std::move(opts));
}

} // namespace coroute::app
