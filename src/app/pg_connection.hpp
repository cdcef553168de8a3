#pragma once
// One libpq connection driven by Asio: connecting, pipelines of prepared statements
// and notifications, each waiting on the socket's readiness instead of blocking.

#include "app/database.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/thread_pool.hpp>

#include <libpq-fe.h>
#include <poll.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace coroute::app::pg {

struct result_deleter
{
    void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using result_ptr = std::unique_ptr<PGresult, result_deleter>;

/// One statement of a pipeline: a prepared statement and its parameters as text.
struct step
{
    const char* statement;
    std::vector<std::string> params;
};

/// What a pipeline gave: a result per step, or why not.
struct outcome
{
    enum class kind
    {
        done,      ///< the server answered every step (some may have failed: see results)
        broken,    ///< the connection failed; it must be discarded
        cancelled, ///< the caller was cancelled mid-way; the pipeline is still in flight
    };
    kind state = kind::done;
    bool sent = false;       ///< whether anything reached the socket
    std::string message;     ///< libpq's words when broken
    std::vector<result_ptr> results;
};

/// The SQLSTATE of a failed result ("" when none).
std::string sqlstate(const PGresult* r);
/// The server's message of a failed result, one line.
std::string error_text(const PGresult* r);

/// Owns a PGconn and an Asio descriptor on a duplicate of its socket: the duplicate
/// keeps the socket's number registered with the reactor until we close it, even
/// when libpq closes its own descriptor after an error.
///
/// Used by one coroutine at a time (the pool hands it out exclusively).
class connection
{
public:
    connection(PGconn* conn, asio::any_io_executor ex);
    ~connection();
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    /// Opens a connection without blocking the event loop: libpq's start (which may
    /// resolve a host name) runs on `blocking`, the handshake on `ex`. Fails with
    /// libpq's message, or a timeout past `timeout`. Await it on a strand (or a
    /// loop of one thread): its timeout's handler runs on the caller's executor.
    /// `server_options` is libpq's `options` (e.g. "-c statement_timeout=30000"), used
    /// unless the URL sets its own.
    static asio::awaitable<boost::system::result<std::shared_ptr<connection>, std::string>>
    open(asio::any_io_executor ex, asio::thread_pool& blocking, const std::string& conninfo,
         const std::string& server_options, std::chrono::milliseconds timeout);

    PGconn* native() const noexcept { return conn_; }

    /// Sends `steps` as one pipeline (the connection must be in pipeline mode) and
    /// collects their results up to the pipeline's sync point.
    asio::awaitable<outcome> run(const std::vector<step>& steps);
    /// Enters pipeline mode and prepares `statements` (name, SQL) in one round trip;
    /// empty on success, else the first failure's message.
    asio::awaitable<std::string> prepare(const std::vector<std::pair<const char*, const char*>>& statements);
    /// Finishes a pipeline left in flight by a cancelled run(): flushes what is
    /// unsent and reads up to the sync point. False when the connection is unusable.
    asio::awaitable<bool> drain();
    /// Sends one statement without parameters outside pipeline mode and waits for its
    /// results; empty on success, else the server's or libpq's message.
    asio::awaitable<std::string> exec(const char* sql);
    /// Hands each notification's payload to `f` as it arrives; returns when the
    /// connection fails or the wait is cancelled.
    template <class F>
    asio::awaitable<void> receive_notifications(F f);

    /// Idle and usable: nothing unexpected waits on the socket (a closed
    /// connection or an error the server sent while it was idle).
    bool idle_and_healthy();

    /// Waits for the socket to be readable (POLLIN) or writable (POLLOUT). An
    /// operation_aborted means cancellation or close.
    asio::awaitable<boost::system::error_code> wait(short events);

    std::uint64_t epoch = 0; ///< the pool's generation it was opened in
    std::size_t uses = 0;    ///< pipelines it ran

private:
    // Points the descriptor at a fresh duplicate of libpq's current socket.
    bool attach();
    asio::awaitable<bool> flush();
    // Sends `count` statements through `send(i)` (libpq's 1 on success), a sync
    // point, and collects the results.
    asio::awaitable<outcome> pipeline(std::size_t count, const std::function<int(std::size_t)>& send);
    asio::awaitable<outcome> collect(std::size_t steps);

    PGconn* conn_;
    std::size_t unfinished_ = 0; // statements of a pipeline whose results are unread
    asio::posix::stream_descriptor desc_;
};

template <class F>
asio::awaitable<void> connection::receive_notifications(F f)
{
    for (;;)
    {
        while (PGnotify* n = PQnotifies(conn_))
        {
            std::string payload = n->extra ? n->extra : "";
            PQfreemem(n);
            f(payload);
        }
        auto ec = co_await wait(POLLIN);
        if (ec || !PQconsumeInput(conn_))
            co_return;
        // A result here would be an answer to nothing: drop it.
        while (!PQisBusy(conn_))
        {
            PGresult* r = PQgetResult(conn_);
            if (!r)
                break;
            PQclear(r);
        }
        if (PQstatus(conn_) != CONNECTION_OK)
            co_return;
    }
}

} // namespace coroute::app::pg
