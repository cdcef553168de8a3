#pragma once
// The PostgreSQL backend of the demo's database: libpq's asynchronous API on the
// event loop, a pool of pipelined connections, and the change feed over LISTEN/NOTIFY.

#include "app/database.hpp"

#include <coroute/log.hpp>

#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

namespace coroute::app {

namespace pg {
class connection;
struct step;
struct outcome;
} // namespace pg

/// Items in a PostgreSQL table, shared by every process that uses the database.
///
/// - Connections are opened on demand, up to the pool size, each with its
///   statements prepared; queries past the pool queue in order. Each query is one
///   pipeline: `pg_sleep` for its latency (when it has one), then the statement.
/// - At the caller's cancellation the caller gets operation_aborted at once; the
///   query is cancelled on the server (PQcancel, off the event loop) and its
///   connection goes back to the pool once it is clean, or is closed.
/// - A connection that fails is discarded; opening is retried with backoff, and
///   while the server cannot be reached queries fail with db_error::unreachable.
/// - A trigger on the table sends every change with NOTIFY; one connection of the
///   process LISTENs and hands them to the observer, whoever made them.
///
/// Create it with std::make_shared, start() it, and co_await stop() before the
/// executor's context stops.
class pg_database final : public database, public std::enable_shared_from_this<pg_database>
{
public:
    pg_database(asio::any_io_executor ex, db_options opts, std::shared_ptr<logger> log);
    ~pg_database() override;

    asio::awaitable<db_result<std::vector<item>>> query(std::size_t limit, latency l = {}) override;
    asio::awaitable<db_result<item_page>> list(std::size_t limit, std::size_t offset, latency l = {}) override;
    asio::awaitable<db_result<std::optional<item>>> find(std::uint64_t id, latency l = {}) override;
    asio::awaitable<db_result<item>> insert(item_fields f, latency l = {}) override;
    asio::awaitable<db_result<std::optional<item>>> replace(std::uint64_t id, item_fields f, latency l = {}) override;
    asio::awaitable<db_result<bool>> remove(std::uint64_t id, latency l = {}) override;

    std::chrono::milliseconds default_latency() const noexcept override { return latency_; }
    std::size_t in_flight() const override;
    std::size_t peak_in_flight() const override;
    std::optional<std::string> unready() const override;
    void on_change(change_observer f) override;
    std::string describe() const override;
    void start() override;
    asio::awaitable<void> stop() override;

    /// Connections open now (idle, busy or being cleaned), for tests and stats.
    std::size_t open_connections() const;

private:
    struct waiter;
    using connection_ptr = std::shared_ptr<pg::connection>;
    using acquired = boost::system::result<connection_ptr>;

    // Runs one pipeline on a pooled connection: the latency's pg_sleep, then `stmt`.
    // `rerun` allows one more try on a fresh connection when a reused one turns out
    // dead before it answered (reads only: a write may have been applied).
    asio::awaitable<db_result<std::shared_ptr<pg::outcome>>> execute(latency l, pg::step stmt, bool rerun);
    // execute()'s work, run with throw_if_cancelled off.
    asio::awaitable<db_result<std::shared_ptr<pg::outcome>>> run_pipeline(latency l, pg::step stmt, bool rerun);
    asio::awaitable<acquired> acquire();
    // Waits for a pooled connection, the right to open one, or the stop.
    asio::awaitable<std::shared_ptr<waiter>> wait_turn(asio::any_io_executor ex);
    // Whether an idle connection taken from the pool can be used.
    bool usable(pg::connection& c);
    asio::awaitable<acquired> open_for_pool();
    // Opens a connection with the schema in place and the statements prepared.
    asio::awaitable<boost::system::result<connection_ptr, std::string>> open_prepared();
    void release(connection_ptr c);
    void discard(connection_ptr c);
    // Cancels the statement in flight on the server, then cleans the connection.
    asio::awaitable<void> recover(connection_ptr c);
    asio::awaitable<std::string> ensure_schema(pg::connection& c);
    asio::awaitable<void> listen_loop();
    void set_down(std::string why);

    asio::any_io_executor ex_;
    db_options opts_;
    std::chrono::milliseconds latency_;
    std::size_t pool_size_;
    std::string server_options_;
    std::shared_ptr<logger> log_;
    std::shared_ptr<const change_observer> observer_; // set at any time, read by the feed
    asio::thread_pool blocking_{2}; // PQcancel and libpq's connection start
    asio::strand<asio::any_io_executor> listen_strand_; // the change feed's coroutine
    asio::cancellation_signal listen_stop_;             // emitted on that strand

    mutable std::mutex mutex_;
    std::vector<connection_ptr> idle_;
    std::deque<std::shared_ptr<waiter>> queue_;
    std::size_t open_ = 0; // connections counted against the pool, opening ones included
    std::uint64_t epoch_ = 1;
    bool stopped_ = false;
    bool schema_ready_ = false;
    std::chrono::steady_clock::time_point retry_at_{}; // no new connection before this
    std::chrono::milliseconds backoff_{0};
    std::string down_; // why the database is unreachable; empty: it is reachable
    std::string last_open_failure_;
    bool listening_ = false;
    std::size_t in_flight_ = 0, peak_ = 0;
};

} // namespace coroute::app
