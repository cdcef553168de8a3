// One timer for a connection's deadlines.
#include "watchdog.hpp"

#include <algorithm>

namespace coroute::detail {

watchdog::watchdog(asio::any_io_executor ex, asio::cancellation_signal& handler_signal)
    : timer_(std::move(ex)), handler_signal_(handler_signal)
{
}

void watchdog::io_until(clock::time_point t)
{
    io_ = t;
    io_expired_ = false;
    arm(t);
}

void watchdog::request_until(clock::time_point t)
{
    request_ = t;
    request_expired_ = false;
    arm(t);
}

void watchdog::cancel_io()
{
    io_expired_ = true;
    if (on_io_timeout_)
        on_io_timeout_();
}

void watchdog::stop()
{
    stopped_ = true;
    timer_.cancel();
}

void watchdog::arm(clock::time_point t)
{
    if (t >= armed_ || stopped_)
        return;
    armed_ = t;
    timer_.expires_at(t);
    // The owner's shared_ptr keeps this object alive until the wait completes.
    timer_.async_wait([this, keep = owner_.lock()](boost::system::error_code ec) {
        if (!ec && !stopped_)
            fired();
    });
}

void watchdog::fired()
{
    armed_ = never;
    auto now = clock::now();
    if (io_ <= now)
    {
        io_ = never;
        cancel_io();
    }
    if (request_ <= now)
    {
        request_ = never;
        request_expired_ = true;
        handler_signal_.emit(asio::cancellation_type::terminal);
    }
    arm(std::min(io_, request_));
}

} // namespace coroute::detail
