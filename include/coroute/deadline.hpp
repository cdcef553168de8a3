#pragma once
// A point in time past which nobody waits any more, and the one helper that races it.

#include <coroute/error.hpp>
#include <coroute/fwd.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/system/result.hpp>

#include <algorithm>
#include <chrono>

namespace coroute {

/// A deadline: a steady-clock time point; `deadline::none()` never passes.
class deadline
{
public:
    using clock = std::chrono::steady_clock;

    constexpr deadline() = default;
    constexpr explicit deadline(clock::time_point at) : at_(at) {}
    static constexpr deadline none() { return deadline{}; }
    static deadline after(std::chrono::milliseconds d) { return deadline{clock::now() + d}; }

    constexpr clock::time_point at() const noexcept { return at_; }
    constexpr bool is_none() const noexcept { return at_ == clock::time_point::max(); }
    bool passed() const noexcept { return !is_none() && clock::now() >= at_; }

    /// Time left, never negative; milliseconds::max() for none().
    std::chrono::milliseconds left() const noexcept
    {
        if (is_none())
            return std::chrono::milliseconds::max();
        auto d = std::chrono::duration_cast<std::chrono::milliseconds>(at_ - clock::now());
        return std::max(d, std::chrono::milliseconds{0});
    }

    /// The earlier of the two.
    friend constexpr deadline earliest(deadline a, deadline b) { return a.at_ <= b.at_ ? a : b; }
    friend constexpr bool operator==(deadline, deadline) = default;

private:
    clock::time_point at_ = clock::time_point::max();
};

/// Awaits `op` until `d`: its result, or error::deadline_exceeded once `d` passes
/// (`op` is then cancelled). `op` reports failure as a value, never by throwing, so
/// a failure is not mistaken for a timeout (Boost 1.81's `||` waits for the first
/// branch to succeed). Completes on the caller's executor.
template <class T>
asio::awaitable<boost::system::result<T>> within(deadline d, asio::awaitable<boost::system::result<T>> op)
{
    if (d.is_none())
        co_return co_await std::move(op);
    if (d.passed())
        co_return boost::system::error_code{error::deadline_exceeded};
    using namespace asio::experimental::awaitable_operators;
    asio::steady_timer timer{co_await asio::this_coro::executor, d.at()};
    auto raced = co_await (std::move(op) || timer.async_wait(nothrow_awaitable));
    if (raced.index() == 0)
        co_return std::move(std::get<0>(raced));
    co_return boost::system::error_code{error::deadline_exceeded};
}

} // namespace coroute
