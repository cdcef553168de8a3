#pragma once
// What a server's listener and its sessions share.

#include "framing.hpp"
#include "request_id.hpp"
#include "request_reader.hpp"

#include <coroute/log.hpp>
#include <coroute/router.hpp>
#include <coroute/server.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace coroute::detail {

/// What the listener asks of a session at shutdown.
struct session_base
{
    virtual ~session_base() = default;
    /// Shutdown has begun: an idle connection closes now, a produced body ends,
    /// an upgraded connection is told (`upgraded::until_stopping`).
    virtual void notify_stopping() = 0;
    /// The grace period is over: close now.
    virtual void force_close() = 0;
};

struct server_state : std::enable_shared_from_this<server_state>
{
    server_state(std::vector<asio::any_io_executor> e, std::shared_ptr<const router> r, server_options o);

    std::vector<asio::any_io_executor> executors; // connections are spread over these
    std::size_t next_executor = 0;                // the accept loop's, on its strand
    asio::strand<asio::any_io_executor> strand;   // the acceptor's and shutdown's
    std::shared_ptr<const router> routes;
    server_options opts;
    std::shared_ptr<logger> log;
    reader_options reading;
    asio::ip::tcp::acceptor acceptor;
    bool started = false;

    std::atomic<bool> draining{false};
    std::atomic<bool> stopping{false};
    std::atomic<std::uint64_t> accepted{0}, rejected{0}, open{0}, requests{0};
    std::atomic<std::uint64_t> in_flight{0}, peak_in_flight{0};

    /// Counts a request into dispatch, raising the peak.
    void dispatch_begins() noexcept
    {
        auto now = in_flight.fetch_add(1, std::memory_order_relaxed) + 1;
        auto peak = peak_in_flight.load(std::memory_order_relaxed);
        while (now > peak && !peak_in_flight.compare_exchange_weak(peak, now, std::memory_order_relaxed))
        {
        }
    }
    void dispatch_ends() noexcept { in_flight.fetch_sub(1, std::memory_order_relaxed); }
    request_ids ids;

    std::mutex sessions_mutex;
    std::unordered_map<session_base*, std::weak_ptr<session_base>> sessions;
    asio::steady_timer all_closed; // shutdown waits on it; the last session to end cancels it
    bool accept_running = false;    // on the strand: the accept loop has not ended yet
    asio::steady_timer accept_ended; // shutdown waits on it; the accept loop cancels it as it ends

    /// Where the next connection runs: a strand of the next executor, or the executor
    /// itself when `server_options::strand_per_connection` is off.
    asio::any_io_executor connection_executor();

    void add(std::shared_ptr<session_base> s);
    void remove(session_base* s);

    template <class F>
    void for_each_session(F f)
    {
        std::vector<std::shared_ptr<session_base>> live;
        {
            std::lock_guard lock{sessions_mutex};
            for (auto& [p, w] : sessions)
                if (auto s = w.lock())
                    live.push_back(std::move(s));
        }
        for (auto& s : live)
            f(*s);
    }

    asio::awaitable<void> accept_loop();
    static constexpr std::size_t accept_burst = 64; // connections taken per wake-up of accept_loop
    /// Accepts, without waiting, the connections already in the kernel's accept queue.
    void accept_pending();
    void admit(asio::ip::tcp::socket socket);
    void spawn(asio::ip::tcp::socket socket);
};

} // namespace coroute::detail
