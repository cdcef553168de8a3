#include "app/database.hpp"

#include "app/pg_database.hpp"

#include <libpq-fe.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <charconv>
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
        case db_error::unreachable:
            return "the database server cannot be reached";
        case db_error::timeout:
            return "the statement ran past the database's statement_timeout";
        case db_error::rejected:
            return "the database refused a value of the request";
        case db_error::failed:
            return "the database server failed the statement";
        }
        return "unknown database error";
    }
    // A database that is down is "try again later" to whoever maps errors to answers.
    boost::system::error_condition default_error_condition(int ev) const noexcept override
    {
        switch (static_cast<db_error>(ev))
        {
        case db_error::unavailable:
        case db_error::unreachable:
            return boost::system::errc::resource_unavailable_try_again;
        case db_error::timeout:
            return boost::system::errc::timed_out;
        case db_error::rejected:
            return boost::system::errc::invalid_argument;
        case db_error::failed:
            break;
        }
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
struct sim_database::waiter
{
    explicit waiter(asio::any_io_executor ex) : timer(ex, asio::steady_timer::time_point::max()) {}
    asio::steady_timer timer;
    bool granted = false;
};

sim_database::sim_database(db_options opts, std::uint64_t seed)
    : opts_(opts), latency_(opts.latency.value_or(std::chrono::milliseconds{100})), pool_(opts.pool.value_or(0)),
      rng_(seed)
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

asio::awaitable<boost::system::error_code> sim_database::acquire()
{
    if (pool_ == 0)
        co_return boost::system::error_code{};
    {
        std::lock_guard lock{mutex_};
        if (active_ < pool_)
        {
            ++active_;
            co_return boost::system::error_code{};
        }
    }
    auto ex = co_await asio::this_coro::executor;
    auto w = std::make_shared<waiter>(ex);
    // The wait starts and the waiter joins the queue under one lock, so a slot handed
    // over by another thread at any moment after it is never missed.
    // Named: GCC 12 destroys a temporary in a co_await expression twice.
    auto start = [this, w](auto handler) {
            std::lock_guard lock{mutex_};
            w->timer.async_wait(std::move(handler));
            if (active_ < pool_)
            {
                ++active_;
                w->granted = true;
                w->timer.cancel();
            }
            else
                queue_.push_back(w);
        };
    co_await asio::async_initiate<decltype(use_tuple), void(boost::system::error_code)>(std::move(start), use_tuple);
    std::lock_guard lock{mutex_};
    if (w->granted)
        co_return boost::system::error_code{};
    // Cancelled while queued: leave the queue without taking a slot.
    queue_.erase(std::remove(queue_.begin(), queue_.end(), w), queue_.end());
    co_return asio::error::operation_aborted;
}

void sim_database::release()
{
    if (pool_ == 0)
        return;
    std::lock_guard lock{mutex_};
    if (!queue_.empty())
    {
        // Hand the slot straight to the oldest waiter: its wait began under this lock.
        auto w = std::move(queue_.front());
        queue_.pop_front();
        w->granted = true;
        w->timer.cancel();
        return;
    }
    --active_;
}

asio::awaitable<boost::system::error_code> sim_database::simulate(latency l)
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

    auto delay = l.value_or(latency_);
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

asio::awaitable<db_result<std::vector<item>>> sim_database::query(std::size_t limit, latency l)
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

asio::awaitable<db_result<item_page>> sim_database::list(std::size_t limit, std::size_t offset, latency l)
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

asio::awaitable<db_result<std::optional<item>>> sim_database::find(std::uint64_t id, latency l)
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

asio::awaitable<db_result<item>> sim_database::insert(item_fields f, latency l)
{
    auto ec = co_await simulate(l);
    if (ec)
        co_return ec;
    auto now = now_iso8601();
    std::lock_guard lock{mutex_};
    auto id = next_id_++;
    auto& row = rows_[id];
    row = item{id, std::move(f.name), f.price, now, now};
    announce("created", to_json(row));
    co_return row;
}

asio::awaitable<db_result<std::optional<item>>> sim_database::replace(std::uint64_t id, item_fields f, latency l)
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
    announce("updated", to_json(it->second));
    co_return std::optional<item>{it->second};
}

asio::awaitable<db_result<bool>> sim_database::remove(std::uint64_t id, latency l)
{
    auto ec = co_await simulate(l);
    if (ec)
        co_return db_result<bool>{boost::system::in_place_error, ec}; // an error_code also converts to bool
    std::lock_guard lock{mutex_};
    if (rows_.erase(id) == 0)
        co_return false;
    announce("deleted", boost::json::object{{"id", id}});
    co_return true;
}

// Called under the table's mutex, so observers see the changes in the order they were made.
void sim_database::announce(std::string_view op, const boost::json::value& item) const
{
    if (observer_)
        observer_(boost::json::serialize(boost::json::object{{"op", op}, {"item", item}}));
}

std::string sim_database::describe() const
{
    return "database: simulated, " + std::to_string(latency_.count()) + " ms per query" +
           (opts_.jitter.count() ? " + up to " + std::to_string(opts_.jitter.count()) + " ms jitter" : "") +
           (pool_ ? ", pool of " + std::to_string(pool_) : ", no pool bound");
}

asio::awaitable<void> database::stop()
{
    co_return;
}

std::size_t sim_database::peak_in_flight() const
{
    std::lock_guard lock{mutex_};
    return peak_;
}

std::size_t sim_database::in_flight() const
{
    std::lock_guard lock{mutex_};
    return in_flight_;
}

std::optional<std::string> check_db_options(const db_options& opts)
{
    if (opts.simulated())
        return std::nullopt;
    char* err = nullptr;
    PQconninfoOption* parsed = PQconninfoParse(opts.url.c_str(), &err);
    if (!parsed)
    {
        std::string why = err ? err : "out of memory";
        if (err)
            PQfreemem(err);
        while (!why.empty() && (why.back() == '\n' || why.back() == ' '))
            why.pop_back();
        return "--db: not 'sim' and not a PostgreSQL URL (" + why +
               "); give e.g. postgresql://user@host:5432/dbname or postgresql://user@/dbname?host=/socket/dir";
    }
    // libpq checks a port only when it connects, and then for good: it would fail
    // every retry, so a bad one is a bad option.
    std::string bad_port;
    for (auto* o = parsed; o->keyword && bad_port.empty(); ++o)
    {
        if (std::string_view{o->keyword} != "port" || !o->val)
            continue;
        std::string_view ports = o->val;
        for (std::size_t from = 0; from <= ports.size();)
        {
            auto to = std::min(ports.find(',', from), ports.size());
            auto one = ports.substr(from, to - from);
            unsigned n = 0;
            auto [end, ec] = std::from_chars(one.data(), one.data() + one.size(), n);
            if (!one.empty() && (ec != std::errc{} || end != one.data() + one.size() || n < 1 || n > 65535))
            {
                bad_port = one;
                break;
            }
            from = to + 1;
        }
    }
    PQconninfoFree(parsed);
    if (!bad_port.empty())
        return "--db: the port '" + bad_port + "' is not a number from 1 to 65535";
    if (opts.pool && *opts.pool == 0)
        return "--db-pool: PostgreSQL needs at least one connection; 0 (unlimited) is for --db sim only";
    if (opts.jitter.count() > 0 || opts.fail_rate > 0)
        return "--db-jitter-ms and --db-fail-rate are for --db sim only";
    return std::nullopt;
}

std::shared_ptr<database> make_database(asio::any_io_executor ex, const db_options& opts, std::shared_ptr<logger> log)
{
    if (auto bad = check_db_options(opts))
        throw std::runtime_error(*bad);
    if (opts.simulated())
        return std::make_shared<sim_database>(opts);
    return std::make_shared<pg_database>(std::move(ex), opts, std::move(log));
}

} // namespace coroute::app
