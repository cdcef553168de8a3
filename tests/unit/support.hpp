#pragma once
// Runs coroutines to completion on a local io_context, bounded so that a hang fails.

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <chrono>
#include <stdexcept>

namespace coroute::test {

/// Runs `a` on `ioc` until it completes or `limit` passes; rethrows what it threw.
template <class T>
T run_sync(boost::asio::io_context& ioc, boost::asio::awaitable<T> a,
           std::chrono::milliseconds limit = std::chrono::seconds(10))
{
    auto fut = boost::asio::co_spawn(ioc, std::move(a), boost::asio::use_future);
    ioc.restart();
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (fut.wait_for(std::chrono::seconds(0)) != std::future_status::ready &&
           std::chrono::steady_clock::now() < deadline)
        ioc.run_one_for(std::chrono::milliseconds(10));
    if (fut.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
        throw std::runtime_error("coroutine did not finish in time");
    return fut.get();
}

template <class T>
T run_sync(boost::asio::awaitable<T> a, std::chrono::milliseconds limit = std::chrono::seconds(10))
{
    boost::asio::io_context ioc;
    return run_sync(ioc, std::move(a), limit);
}

} // namespace coroute::test
