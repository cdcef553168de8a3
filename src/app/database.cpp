#include "app/database.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/object.hpp>

#include <algorithm>
#include <ctime>

namespace coroute::app {

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::string now_iso8601()
{
    auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

class db_category_impl : public boost::system::error_category
{
public:
    const char* name() const noexcept override { return "coroute.db"; }
    std::string message(int ev) const override
    {
        switch (static_cast<db_error>(ev))
        {
        case db_error::unavailable:
            return "database unavailable (injected failure)";
        }
        return "unknown database error";
    }
    // A database that is down is "try again later" to whoever maps errors to answers.
    boost::system::error_condition default_error_condition(int ev) const noexcept override
    {
        if (static_cast<db_error>(ev) == db_error::unavailable)
            return boost::system::errc::resource_unavailable_try_again;
        return {ev, *this};
    }
};

} // namespace

const boost::system::error_category& db_category() noexcept
{
    static const db_category_impl cat;
    return cat;
}

boost::system::error_code make_error_code(db_error e) noexcept
{
    return {static_cast<int>(e), db_category()};
}

boost::json::value to_json(const item& i)
{
    return boost::json::object{{"id", i.id},
                               {"name", i.name},
                               {"price", i.price},
                               {"created_at", i.created_at},
                               {"updated_at", i.updated_at}};
}

// A query queued for a pool slot: woken by cancelling its timer, `granted` says why.
struct database::waiter
{
    explicit waiter(asio::any_io_executor ex) : timer(ex, asio::steady_timer::time_point::max()) {}
    asio::steady_timer timer;
    bool granted = false;
};

database::database(db_options opts, std::uint64_t seed) : opts_(opts), rng_(seed)
{
    auto now = now_iso8601();
    const std::pair<const char*, double> seed_rows[] = {
        {"Widget", 9.99}, {"Gadget", 24.5}, {"Sprocket", 3.25}, {"Gizmo", 120}, {"Doohickey", 0.75}};
    for (auto& [name, price] : seed_rows)
    {
        auto id = next_id_++;
        rows_[id] = item{id, name, price, now, now};
    }
}

asio::awaitable<boost::system::error_code> database::acquire()
{
    if (opts_.pool == 0)
        co_return boost::system::error_code{};
    auto ex = co_await asio::this_coro::executor;
    std::shared_ptr<waiter> w;
    {
        std::lock_guard lock{mutex_};
        if (active_ < opts_.pool)
        {
            ++active_;
            co_return boost::system::error_code{};
        }
        w = std::make_shared<waiter>(ex);
        queue_.push_back(w);
    }
    co_await w->timer.async_wait(use_tuple);
    std::lock_guard lock{mutex_};
    if (w->granted)
        co_return boost::system::error_code{};
    // Cancelled while queued: leave the queue without taking a slot.
    queue_.erase(std::remove(queue_.begin(), queue_.end(), w), queue_.end());
    co_return asio::error::operation_aborted;
}

void database::release()
{
    if (opts_.pool == 0)
        return;
    std::lock_guard lock{mutex_};
    if (!queue_.empty())
    {
        // Hand the slot straight to the oldest waiter, on its own executor.
        auto w = std::move(queue_.front());
        queue_.pop_front();
        w->granted = true;
        asio::post(w->timer.get_executor(), [w] { w->timer.cancel(); });
        return;
    }
    --active_;
}

asio::awaitable<boost::system::error_code> database::simulate(latency l)
{
    auto ec = co_await acquire();
    if (ec)
        co_return ec;

    auto cs = co_await asio::this_coro::cancellation_state;
    if (cs.cancelled() != asio::cancellation_type::none)
    {
        release();
        co_return asio::error::operation_aborted;
    }

    auto delay = l.value_or(opts_.latency);
    bool fail = false;
    {
        std::lock_guard lock{mutex_};
        if (opts_.jitter.count() > 0)
            delay += std::chrono::milliseconds{
                std::uniform_int_distribution<long long>{0, opts_.jitter.count()}(rng_)};
        if (opts_.fail_rate > 0)
            fail = std::uniform_real_distribution<double>{0, 1}(rng_) < opts_.fail_rate;
        peak_ = std::max(peak_, ++in_flight_);
    }
    asio::steady_timer timer{co_await asio::this_coro::executor, delay};
    auto [wait_ec] = co_await timer.async_wait(use_tuple);
    {
        std::lock_guard lock{mutex_};
        --in_flight_;
    }
    release();
    if (wait_ec)
        co_return wait_ec; // cancelled by the deadline or by shutdown: nothing was changed
    if (fail)
        co_return db_error::unavailable;
    co_return boost::system::error_code{};
}

asio::awaitable<db_result<std::vector<item>>> database::query(std::size_t limit, latency l)
{
    auto ec = co_await simulate(l);
    if (ec)
        co_return ec;
    std::lock_guard lock{mutex_};
    std::vector<item> out;
    for (auto& [id, row] : rows_)
    {
        if (out.size() >= limit)
            break;
        out.push_back(row);
    }
    co_return out;
}

asio::awaitable<db_result<item_page>> database::list(std::size_t limit, std::size_t offset, latency l)
{
    auto ec = co_await simulate(l);
    if (ec)
        co_return ec;
    std::lock_guard lock{mutex_};
    item_page page;
    page.total = rows_.size();
    auto it = rows_.begin();
    std::advance(it, std::min(offset, rows_.size()));
    for (; it != rows_.end() && page.items.size() < limit; ++it)
        page.items.push_back(it->second);
    co_return page;
}

asio::awaitable<db_result<std::optional<item>>> database::find(std::uint64_t id, latency l)
{
    auto ec = co_await simulate(l);
    if (ec)
        co_return ec;
    std::lock_guard lock{mutex_};
    auto it = rows_.find(id);
    if (it == rows_.end())
        co_return std::optional<item>{};
    co_return std::optional<item>{it->second};
}

asio::awaitable<db_result<item>> database::insert(item_fields f, latency l)
{
    auto ec = co_await simulate(l);
    if (ec)
        co_return ec;
    auto now = now_iso8601();
    std::lock_guard lock{mutex_};
    auto id = next_id_++;
    auto& row = rows_[id];
    row = item{id, std::move(f.name), f.price, now, now};
    co_return row;
}

asio::awaitable<db_result<std::optional<item>>> database::replace(std::uint64_t id, item_fields f, latency l)
{
    auto ec = co_await simulate(l);
    if (ec)
        co_return ec;
    auto now = now_iso8601();
    std::lock_guard lock{mutex_};
    auto it = rows_.find(id);
    if (it == rows_.end())
        co_return std::optional<item>{};
    it->second.name = std::move(f.name);
    it->second.price = f.price;
    it->second.updated_at = now;
    co_return std::optional<item>{it->second};
}

asio::awaitable<db_result<bool>> database::remove(std::uint64_t id, latency l)
{
    auto ec = co_await simulate(l);
    if (ec)
        co_return db_result<bool>{boost::system::in_place_error, ec}; // an error_code also converts to bool
    std::lock_guard lock{mutex_};
    co_return rows_.erase(id) > 0;
}

std::size_t database::peak_in_flight() const
{
    std::lock_guard lock{mutex_};
    return peak_;
}

std::size_t database::in_flight() const
{
    std::lock_guard lock{mutex_};
    return in_flight_;
}

} // namespace coroute::app
