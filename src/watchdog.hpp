#pragma once
// The deadlines of one connection on one timer: the current I/O operation's, and
// the request handler's.

#include <coroute/fwd.hpp>

#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <memory>

namespace coroute::detail {

/// One timer per connection, re-armed only when a deadline moves earlier (moving it
/// later costs a store, and the timer re-arms itself when it fires early).
///
/// Past the I/O deadline the pending read or write is cancelled by the owner's
/// `on_io_timeout` action (a socket's `cancel()`, which a TLS stream's inner operations
/// wait on too); past the request deadline `handler_signal` is emitted, which cancels
/// the handler's waits. `io_expired()` and `request_expired()` then say why.
/// Runs on the connection's executor; not thread-safe.
class watchdog
{
public:
    using clock = std::chrono::steady_clock;

    watchdog(asio::any_io_executor ex, asio::cancellation_signal& handler_signal);

    /// What keeps the watchdog's owner alive while the timer is pending.
    void set_owner(std::weak_ptr<void> owner) { owner_ = std::move(owner); }
    void set_io_timeout_action(std::function<void()> f) { on_io_timeout_ = std::move(f); }

    void io_until(clock::time_point t);
    void io_after(std::chrono::milliseconds d) { io_until(clock::now() + d); }
    void io_clear() noexcept { io_ = never; }
    bool io_expired() const noexcept { return io_expired_; }
    void clear_io_expired() noexcept { io_expired_ = false; }

    /// Cancels the pending I/O operation now, as a timeout would (for shutdown).
    void cancel_io();

    void request_until(clock::time_point t);
    void request_clear() noexcept { request_ = never; }
    bool request_expired() const noexcept { return request_expired_; }

    /// Stops the timer for good (the connection is closing).
    void stop();

private:
    static constexpr auto never = clock::time_point::max();
    void arm(clock::time_point t);
    void fired();

    asio::steady_timer timer_;
    asio::cancellation_signal& handler_signal_;
    std::function<void()> on_io_timeout_;
    std::weak_ptr<void> owner_;
    clock::time_point armed_ = never, io_ = never, request_ = never;
    bool io_expired_ = false, request_expired_ = false, stopped_ = false;
};

} // namespace coroute::detail
