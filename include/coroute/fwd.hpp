#pragma once
// The namespace aliases every coroute header uses, and the completion token for
// awaiting an operation whose failure is a value rather than an exception.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace boost::beast::http {}

namespace coroute {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;

/// `auto [ec, n] = co_await op(..., nothrow_awaitable);`: errors come back as values.
constexpr auto nothrow_awaitable = asio::as_tuple(asio::use_awaitable);

class request;
class response;
class router;
class logger;
class body_writer;
class upgraded;

} // namespace coroute
