#pragma once
// The demo's database: the interface the routes use, and its two backends, the
// simulated one (an in-memory table behind steady_timer waits) and PostgreSQL.

#include <coroute/fwd.hpp>
#include <coroute/http.hpp>

#include <boost/json/value.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace coroute::app {

/// A row of the items table.
struct item
{
    std::uint64_t id = 0;
    std::string name;
    double price = 0;
    std::string created_at; ///< ISO 8601, UTC
    std::string updated_at;
};

/// The fields a client sets.
struct item_fields
{
    std::string name;
    double price = 0;
};

boost::json::value to_json(const item& i);

/// Why a query failed. Cancellation (deadline, shutdown) is asio::error::operation_aborted.
enum class db_error
{
    unavailable = 1, ///< the injected failure of --db-fail-rate
    unreachable,     ///< no connection to the database server (503, Retry-After)
    timeout,         ///< the server's statement_timeout ended the query (504)
    rejected,        ///< the server refused a value the client sent (422)
    failed,          ///< any other server error (500, logged)
};
const boost::system::error_category& db_category() noexcept;
boost::system::error_code make_error_code(db_error e) noexcept;

template <class T>
using db_result = boost::system::result<T>;

/// The database's configuration, for either backend.
struct db_options
{
    std::string url = "sim"; ///< "sim", or a PostgreSQL URL / conninfo string
    /// The wait of a query that names none (`?delay_ms` absent): a timer on the
    /// simulated database, pg_sleep on PostgreSQL. Unset: 100 ms simulated, 0 on PostgreSQL.
    std::optional<std::chrono::milliseconds> latency;
    std::chrono::milliseconds jitter{0}; ///< simulated: plus a uniform random share of this
    /// Queries in flight at once, the rest queue in order. Unset: unlimited simulated,
    /// 16 connections on PostgreSQL; 0 means unlimited and is for the simulated one only.
    std::optional<std::size_t> pool;
    double fail_rate = 0; ///< simulated: share of queries that fail with db_error::unavailable
    std::chrono::milliseconds statement_timeout{30'000}; ///< PostgreSQL: the server's backstop per statement
    std::chrono::milliseconds connect_timeout{5'000};    ///< PostgreSQL: one connection attempt

    bool simulated() const noexcept { return url == "sim"; }
};

/// A page of the items table.
struct item_page
{
    std::vector<item> items;
    std::size_t total = 0;
};

/// The demo's database, as the routes see it: the simulated one or PostgreSQL.
///
/// Every operation is a coroutine that holds no thread while it waits. Cancelling
/// the awaiting operation (the request's deadline, the server's shutdown) ends the
/// wait at once with operation_aborted; a write it interrupts is not applied.
/// Queries past the pool bound queue without blocking a thread, in arrival order.
/// Safe to use from many threads.
class database
{
public:
    using latency = std::optional<std::chrono::milliseconds>;
    /// Receives each change to the items as the JSON text of an `item` event,
    /// `{"op":"created"|"updated"|"deleted","item":{...}}`, on any thread.
    using change_observer = std::function<void(const std::string& event_json)>;

    virtual ~database() = default;

    /// A sample query: the first `limit` rows.
    virtual asio::awaitable<db_result<std::vector<item>>> query(std::size_t limit, latency l = {}) = 0;
    virtual asio::awaitable<db_result<item_page>> list(std::size_t limit, std::size_t offset, latency l = {}) = 0;
    virtual asio::awaitable<db_result<std::optional<item>>> find(std::uint64_t id, latency l = {}) = 0;
    virtual asio::awaitable<db_result<item>> insert(item_fields f, latency l = {}) = 0;
    /// Empty when there is no such row.
    virtual asio::awaitable<db_result<std::optional<item>>> replace(std::uint64_t id, item_fields f, latency l = {}) = 0;
    /// False when there was no such row.
    virtual asio::awaitable<db_result<bool>> remove(std::uint64_t id, latency l = {}) = 0;

    /// What a query without a latency of its own waits.
    virtual std::chrono::milliseconds default_latency() const noexcept = 0;
    /// Queries being served now, and the most there ever were at once.
    virtual std::size_t in_flight() const = 0;
    virtual std::size_t peak_in_flight() const = 0;

    /// Why the database cannot serve now (for /readyz), or nothing when it can.
    virtual std::optional<std::string> unready() const { return std::nullopt; }
    /// Sets the one observer of changes; on a shared database it also sees the
    /// changes other processes make. Set it before start().
    virtual void on_change(change_observer f) = 0;
    /// One line for the start-up banner.
    virtual std::string describe() const = 0;
    /// Starts the background work (connecting, the change feed); returns at once.
    virtual void start() {}
    /// Ends the background work and closes the connections; safe to call twice.
    virtual asio::awaitable<void> stop();
};

/// The simulated database: an in-memory item table whose every query waits on a
/// steady_timer of the caller's executor, then works on the table under a mutex
/// that is never held across a wait. It must outlive the queries in flight.
class sim_database final : public database
{
public:
    explicit sim_database(db_options opts = {}, std::uint64_t seed = std::random_device{}());

    asio::awaitable<db_result<std::vector<item>>> query(std::size_t limit, latency l = {}) override;
    asio::awaitable<db_result<item_page>> list(std::size_t limit, std::size_t offset, latency l = {}) override;
    asio::awaitable<db_result<std::optional<item>>> find(std::uint64_t id, latency l = {}) override;
    asio::awaitable<db_result<item>> insert(item_fields f, latency l = {}) override;
    asio::awaitable<db_result<std::optional<item>>> replace(std::uint64_t id, item_fields f, latency l = {}) override;
    asio::awaitable<db_result<bool>> remove(std::uint64_t id, latency l = {}) override;

    std::chrono::milliseconds default_latency() const noexcept override { return latency_; }
    std::size_t peak_in_flight() const override;
    std::size_t in_flight() const override;
    void on_change(change_observer f) override { observer_ = std::move(f); }
    std::string describe() const override;

private:
    struct waiter;
    // Waits for a pool slot (if bounded) and the latency; fails on cancellation or injected failure.
    asio::awaitable<boost::system::error_code> simulate(latency l);
    asio::awaitable<boost::system::error_code> acquire();
    void release();
    void announce(std::string_view op, const boost::json::value& item) const;

    db_options opts_;
    std::chrono::milliseconds latency_;
    std::size_t pool_;
    change_observer observer_;
    mutable std::mutex mutex_;
    std::map<std::uint64_t, item> rows_;
    std::uint64_t next_id_ = 1;
    std::mt19937_64 rng_;
    std::size_t in_flight_ = 0, peak_ = 0, active_ = 0;
    std::deque<std::shared_ptr<waiter>> queue_;
};

/// The backend `opts.url` names: the simulated database or PostgreSQL on `ex`.
/// Throws std::runtime_error (a one-line what()) for an unusable URL.
std::shared_ptr<database> make_database(asio::any_io_executor ex, const db_options& opts,
                                        std::shared_ptr<logger> log);

/// Empty when `opts` is usable, else why not: one line naming the flag.
std::optional<std::string> check_db_options(const db_options& opts);

} // namespace coroute::app

namespace boost::system {
template <>
struct is_error_code_enum<coroute::app::db_error> : std::true_type
{
};
} // namespace boost::system
