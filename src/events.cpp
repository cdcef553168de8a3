// The event feed: numbering, history, subscribers, and the SSE stream.
#include <coroute/events.hpp>

#include <coroute/error.hpp>
#include <coroute/request.hpp>
#include <coroute/streaming.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include <charconv>
#include <deque>
#include <mutex>
#include <vector>

namespace coroute {

namespace {

// An event as published, with its SSE form written once for every stream.
struct record
{
    event ev;
    std::string sse;
};
using frame = std::shared_ptr<const record>;

// "id: N\nevent: E\ndata: line\n...\n\n".
std::string format_event(std::uint64_t id, std::string_view event, std::string_view data)
{
    std::string out = "id: " + std::to_string(id) + "\nevent: " + std::string{event} + "\n";
    for (;;)
    {
        auto nl = data.find('\n');
        out += "data: ";
        out += data.substr(0, nl);
        out += '\n';
        if (nl == std::string_view::npos)
            break;
        data.remove_prefix(nl + 1);
    }
    out += '\n';
    return out;
}

// One subscribed stream. Its queue is filled by publish() on any thread and drained
// by the stream's coroutine; the wake-up timer is touched only on the stream's
// executor (a strand or one thread), where the queue is checked and the wait begun
// without a suspension in between, so a wake-up cannot be lost.
struct subscriber
{
    explicit subscriber(asio::any_io_executor ex) : wake(ex) {}
    std::mutex mutex;
    std::deque<frame> queue;
    bool dropped = false;
    asio::steady_timer wake;
    body_writer* out = nullptr; // while streaming; only on the stream's executor
};

} // namespace

struct event_hub::impl
{
    explicit impl(event_options o) : opts(o) {}

    event_options opts;
    mutable std::mutex mutex;
    std::uint64_t last = 0;
    std::deque<std::pair<std::uint64_t, frame>> history;
    std::vector<std::weak_ptr<subscriber>> subs;

    void notify(const std::shared_ptr<subscriber>& s)
    {
        asio::post(s->wake.get_executor(), [s] {
            s->wake.cancel();
            bool dropped;
            {
                std::lock_guard lock{s->mutex};
                dropped = s->dropped;
            }
            if (dropped && s->out)
                s->out->cancel(); // a write stuck on a reader that stopped reading
        });
    }
};

event_hub::event_hub(event_options options) : impl_(std::make_shared<impl>(options)) {}
event_hub::~event_hub() = default;

const event_options& event_hub::options() const noexcept
{
    return impl_->opts;
}

std::uint64_t event_hub::publish(std::string_view event, std::string_view data)
{
    std::vector<std::shared_ptr<subscriber>> wake;
    std::uint64_t id;
    {
        std::lock_guard lock{impl_->mutex};
        id = ++impl_->last;
        auto f = std::make_shared<const record>(
            record{{id, std::string{event}, std::string{data}}, format_event(id, event, data)});
        if (impl_->opts.history > 0)
        {
            impl_->history.emplace_back(id, f);
            while (impl_->history.size() > impl_->opts.history)
                impl_->history.pop_front();
        }
        auto& subs = impl_->subs;
        for (auto it = subs.begin(); it != subs.end();)
        {
            auto s = it->lock();
            if (!s)
            {
                it = subs.erase(it);
                continue;
            }
            {
                std::lock_guard slock{s->mutex};
                if (s->queue.size() >= impl_->opts.buffer)
                    s->dropped = true;
                else
                    s->queue.push_back(f);
            }
            wake.push_back(std::move(s));
            ++it;
        }
    }
    for (auto& s : wake)
        impl_->notify(s);
    return id;
}

std::size_t event_hub::subscribers() const
{
    std::lock_guard lock{impl_->mutex};
    std::size_t n = 0;
    for (auto& w : impl_->subs)
        n += !w.expired();
    return n;
}

std::uint64_t event_hub::last_id() const
{
    std::lock_guard lock{impl_->mutex};
    return impl_->last;
}

namespace {

std::optional<std::uint64_t> last_event_id(const request& req)
{
    auto v = req.header("Last-Event-ID");
    if (v.empty())
        return std::nullopt;
    std::uint64_t n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc{} || end != v.data() + v.size())
        return std::nullopt;
    return n;
}

// The stream: what the subscription began with, then whatever arrives, with a
// heartbeat between. Ends when the client goes, the server stops (the waits are
// cancelled), or the subscriber fell too far behind (dropped: the body is cut).
asio::awaitable<void> run_stream(std::shared_ptr<event_hub::impl> hub, std::shared_ptr<subscriber> sub,
                                 std::string first, body_writer& out)
{
    out.limit_send_buffer(hub->opts.send_buffer);
    sub->out = &out;
    auto ec = co_await out.write(first);
    while (!ec)
    {
        std::deque<frame> ready;
        bool dropped;
        {
            std::lock_guard lock{sub->mutex};
            ready.swap(sub->queue);
            dropped = sub->dropped;
        }
        if (dropped)
            break;
        if (!ready.empty())
        {
            // Everything that arrived since the last write goes out in one write.
            std::string batch;
            for (auto& f : ready)
                batch += f->sse;
            ec = co_await out.write(batch);
            continue;
        }
        // Cancelled (the client left, the server stops) before or during the wait: the
        // writer ends the body.
        auto before = co_await asio::this_coro::cancellation_state;
        if (before.cancelled() != asio::cancellation_type::none)
            break;
        sub->wake.expires_after(hub->opts.heartbeat);
        auto [wec] = co_await sub->wake.async_wait(nothrow_awaitable);
        auto cs = co_await asio::this_coro::cancellation_state;
        if (cs.cancelled() != asio::cancellation_type::none)
            break;
        if (!wec)
            ec = co_await out.write(": ping\n\n");
    }
    sub->out = nullptr;
    std::lock_guard lock{sub->mutex};
    if (sub->dropped)
        out.abort(); // cut the body: the client sees it did not end
}

// Registers a subscriber and computes its replay under the hub's lock, so no event
// is missed or sent twice, then streams.
asio::awaitable<void> stream_events(std::shared_ptr<event_hub::impl> hub, std::optional<std::uint64_t> after,
                                    body_writer& out)
{
    auto sub = std::make_shared<subscriber>(co_await asio::this_coro::executor);
    std::string first = ": connected\n\n";
    {
        std::lock_guard lock{hub->mutex};
        if (after)
        {
            std::uint64_t oldest = hub->history.empty() ? hub->last + 1 : hub->history.front().first;
            if (*after > hub->last || *after + 1 < oldest)
                // With the feed's current id, so the client's next reconnect asks from here.
                first += "id: " + std::to_string(hub->last) + "\nevent: reset\ndata: {\"last_event_id\":" +
                         std::to_string(*after) + ",\"oldest_id\":" + std::to_string(oldest) + "}\n\n";
            else
                for (auto& [id, f] : hub->history)
                    if (id > *after)
                        first += f->sse;
        }
        std::erase_if(hub->subs, [](const std::weak_ptr<subscriber>& w) { return w.expired(); });
        hub->subs.push_back(sub);
    }
    co_await run_stream(hub, sub, std::move(first), out);
}

// A subscription that hands events to its owner's coroutine instead of a stream.
class listener final : public event_subscription
{
public:
    explicit listener(std::shared_ptr<subscriber> s) : sub_(std::move(s)) {}

    asio::awaitable<boost::system::result<std::vector<event>>> next() override
    {
        for (;;)
        {
            std::deque<frame> ready;
            bool dropped;
            {
                std::lock_guard lock{sub_->mutex};
                ready.swap(sub_->queue);
                dropped = sub_->dropped;
            }
            if (dropped)
                co_return make_error_code(error::slow_consumer);
            if (!ready.empty())
            {
                std::vector<event> out;
                out.reserve(ready.size());
                for (auto& f : ready)
                    out.push_back(f->ev);
                co_return out;
            }
            auto before = co_await asio::this_coro::cancellation_state;
            if (before.cancelled() != asio::cancellation_type::none)
                co_return make_error_code(asio::error::operation_aborted);
            // The queue was checked on the wake-up timer's executor, with no suspension
            // before the wait: a publish after the check cancels the wait.
            sub_->wake.expires_at(asio::steady_timer::time_point::max());
            auto [ec] = co_await sub_->wake.async_wait(nothrow_awaitable);
            (void)ec; // cancelled: by a publish (look again) or by the caller (below)
            auto cs = co_await asio::this_coro::cancellation_state;
            if (cs.cancelled() != asio::cancellation_type::none)
                co_return make_error_code(asio::error::operation_aborted);
        }
    }

private:
    std::shared_ptr<subscriber> sub_;
};

asio::awaitable<response> serve_events(std::shared_ptr<event_hub> hub, request& req)
{
    co_return hub->subscribe(req);
}

} // namespace

response event_hub::subscribe(const request& req)
{
    response res{http::status::ok, 11};
    res.set(http::field::content_type, "text/event-stream");
    res.set(http::field::cache_control, "no-cache");
    res.set("X-Accel-Buffering", "no"); // nginx: pass events on at once
    // The stream runs on the connection's executor, and so does its wake-up timer.
    res.stream([hub = impl_, after = last_event_id(req)](body_writer& out) { return stream_events(hub, after, out); });
    return res;
}

std::shared_ptr<event_subscription> event_hub::listen(asio::any_io_executor ex)
{
    auto sub = std::make_shared<subscriber>(std::move(ex));
    {
        std::lock_guard lock{impl_->mutex};
        std::erase_if(impl_->subs, [](const std::weak_ptr<subscriber>& w) { return w.expired(); });
        impl_->subs.push_back(sub);
    }
    return std::make_shared<listener>(std::move(sub));
}

std::function<asio::awaitable<response>(request&)> event_hub::handler()
{
    return [self = shared_from_this()](request& req) { return serve_events(self, req); };
}

} // namespace coroute
