#pragma once
// The simulated async database: an in-memory item table whose every query waits on a
// steady_timer, so a request waiting on it holds no thread.

#include <coroute/http.hpp>

#include <boost/json/value.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
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
};
const boost::system::error_category& db_category() noexcept;
boost::system::error_code make_error_code(db_error e) noexcept;

template <class T>
using db_result = boost::system::result<T>;

struct db_options
{
    std::chrono::milliseconds latency{100}; ///< every query waits this long…
    std::chrono::milliseconds jitter{0};    ///< …plus a uniform random share of this
    std::size_t pool = 0;                   ///< queries in flight at once; 0: unlimited
    double fail_rate = 0;                   ///< share of queries that fail with db_error::unavailable
};

/// A page of the items table.
struct item_page
{
    std::vector<item> items;
    std::size_t total = 0;
};

/// The demo's database. Every operation is a coroutine that waits the configured
/// latency (or the caller's override) on a timer of the caller's executor, then
/// works on the table under a mutex that is never held across a wait.
///
/// Cancellation: cancelling the awaiting operation (the request's deadline, the
/// server's shutdown) cancels the wait, changes nothing, and yields
/// operation_aborted. With a pool bound, queries past it queue without blocking a
/// thread and are served in arrival order.
///
/// Safe to use from many threads; it must outlive the queries in flight.
class database
{
public:
    explicit database(db_options opts = {}, std::uint64_t seed = std::random_device{}());

    using latency = std::optional<std::chrono::milliseconds>;

    /// A sample query: the first `limit` rows.
    asio::awaitable<db_result<std::vector<item>>> query(std::size_t limit, latency l = {});
    asio::awaitable<db_result<item_page>> list(std::size_t limit, std::size_t offset, latency l = {});
    asio::awaitable<db_result<std::optional<item>>> find(std::uint64_t id, latency l = {});
    asio::awaitable<db_result<item>> insert(item_fields f, latency l = {});
    /// Empty when there is no such row.
    asio::awaitable<db_result<std::optional<item>>> replace(std::uint64_t id, item_fields f, latency l = {});
    /// False when there was no such row.
    asio::awaitable<db_result<bool>> remove(std::uint64_t id, latency l = {});

    const db_options& options() const noexcept { return opts_; }

    /// The most queries that were ever in flight (waiting their latency) at once.
    std::size_t peak_in_flight() const;
    std::size_t in_flight() const;

private:
    struct waiter;
    // Waits for a pool slot (if bounded) and the latency; fails on cancellation or injected failure.
    asio::awaitable<boost::system::error_code> simulate(latency l);
    asio::awaitable<boost::system::error_code> acquire();
    void release();

    db_options opts_;
    mutable std::mutex mutex_;
    std::map<std::uint64_t, item> rows_;
    std::uint64_t next_id_ = 1;
    std::mt19937_64 rng_;
    std::size_t in_flight_ = 0, peak_ = 0, active_ = 0;
    std::deque<std::shared_ptr<waiter>> queue_;
};

} // namespace coroute::app

namespace boost::system {
template <>
struct is_error_code_enum<coroute::app::db_error> : std::true_type
{
};
} // namespace boost::system
