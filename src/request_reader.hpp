#pragma once
// Bytes in, a request or a rejection out: the header with its limits and the RFC 9112
// framing rules, Expect: 100-continue, and the body.

#include "detail.hpp"
#include "framing.hpp"
#include "request_id.hpp"
#include "watchdog.hpp"

#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/system/result.hpp>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>

namespace coroute::detail {

struct reader_options
{
    header_limits limits;
    std::uint64_t body_limit = 1024 * 1024;
    std::size_t chunk_extension_limit = 1024;
    std::chrono::milliseconds header_timeout{10'000};
    std::chrono::milliseconds body_timeout{60'000};
    std::chrono::milliseconds idle_timeout{30'000};
    std::chrono::milliseconds write_timeout{30'000};
};

/// A request read whole, before it becomes a `coroute::request`.
struct incoming
{
    http::request<http::string_body> message;
    std::string id;
    std::chrono::steady_clock::time_point started; ///< when its header was complete
};

/// Why no request came: an answer to give (then close), or nothing to say (the
/// client left, the connection idled out, the server stops).
struct read_failure
{
    std::optional<rejection> answer;
    std::string id; ///< the request's id once its header was parsed, else empty
};


/// Pure steps of reading, apart from the waiting (and tested alone).
namespace reading {

/// Parses a complete header's bytes into `parser` and checks its framing and length.
/// On success the parser holds the header and `used` bytes of `header` were taken.
std::optional<rejection> parse_head(std::string_view header, const reader_options& o,
                                    http::request_parser<http::string_body>& parser);

/// The rejection for a failed body read, or empty when the client simply left.
std::optional<rejection> body_failure(boost::system::error_code ec, bool timed_out, const reader_options& o);

/// How much to ask the socket for: under 1 KiB covers most request headers (and stays
/// below glibc's large-chunk sizes); more only when a header or pipelined requests need it.
std::size_t read_room(const beast::flat_buffer& b);

inline constexpr std::size_t small_read = 1000;

} // namespace reading

/// Reads requests from `Stream` into a buffer the connection keeps (pipelined bytes
/// stay there for the next request). One reader per connection; not thread-safe.
template <class Stream>
class request_reader
{
public:
    request_reader(Stream& s, beast::flat_buffer& b, watchdog& w, const reader_options& o, request_ids& ids)
        : stream_(s), buffer_(b), watchdog_(w), opts_(o), ids_(ids)
    {
    }

    /// True while waiting for the first byte of the next request.
    bool idle() const noexcept { return idle_; }

    /// Nothing of the next request is buffered yet.
    bool empty() const noexcept { return buffer_.size() == 0; }

    /// The wait of an idle connection, for the caller to await directly: one read under
    /// the idle timeout, no coroutine frame of the reader's, so an idle connection costs
    /// only its session. Pass the outcome to `idle_read_done`.
    auto idle_read()
    {
        idle_ = true;
        watchdog_.io_after(opts_.idle_timeout);
        // An idle keep-alive connection keeps a small read buffer only: a big one,
        // grown for a big request, goes back now.
        if (buffer_.capacity() > reading::small_read)
            buffer_.shrink_to_fit();
        return stream_.async_read_some(buffer_.prepare(reading::read_room(buffer_)), nothrow_awaitable);
    }

    /// True when the idle read brought bytes (`read` then takes the request on);
    /// false when the connection ends (closed, idle timeout, shutdown).
    bool idle_read_done(boost::system::error_code ec, std::size_t n)
    {
        idle_ = false;
        watchdog_.io_clear();
        watchdog_.clear_io_expired();
        if (ec)
            return false;
        buffer_.commit(n);
        return true;
    }

    /// Reads the next request: empty when it is ready (`take` it), else why there is
    /// none. Gives up waiting for a request that has not begun once `stopping` is set.
    /// (The request stays in the reader until taken: the frame that waits while a
    /// connection idles stays small.)
    asio::awaitable<std::optional<read_failure>> read(const std::atomic<bool>& stopping)
    {
        // The header: read until it is whole (RFC 9112 §2.2: leading empty lines are
        // skipped). In this frame, not one of its own: this runs once per request.
        std::size_t resume = 0;
        bool started = false;
        std::size_t header_size = 0;
        for (;;)
        {
            auto scan = scan_header(buffered(), opts_.limits, resume);
            if (scan.state == header_scan::rejected)
                co_return read_failure{std::move(scan.error), {}};
            if (scan.state == header_scan::complete)
            {
                watchdog_.io_clear();
                buffer_.consume(scan.skip);
                header_size = scan.end - scan.skip;
                break;
            }
            bool has_bytes = buffer_.size() > scan.skip;
            if (!has_bytes)
            {
                if (stopping.load())
                    co_return read_failure{};
                idle_ = true;
                watchdog_.io_after(opts_.idle_timeout);
                // An idle keep-alive connection keeps a small read buffer only: a big one,
                // grown for a big request, goes back now.
                if (buffer_.size() == 0 && buffer_.capacity() > reading::small_read)
                    buffer_.shrink_to_fit();
            }
            else if (!started)
            {
                started = true; // the header clock starts with its first byte
                watchdog_.io_after(opts_.header_timeout);
            }
            auto [ec, n] = co_await stream_.async_read_some(buffer_.prepare(reading::read_room(buffer_)),
                                                            nothrow_awaitable);
            idle_ = false;
            if (ec)
            {
                watchdog_.io_clear();
                std::optional<rejection> answer;
                if (watchdog_.io_expired() && has_bytes && !stopping.load())
                    answer = rejection{http::status::request_timeout, "the request header took too long"};
                watchdog_.clear_io_expired();
                co_return read_failure{std::move(answer), {}};
            }
            buffer_.commit(n);
        }

        started_ = std::chrono::steady_clock::now();
        auto& parser = parser_.emplace();
        auto head_bytes = buffered().substr(0, header_size);
        if (auto r = reading::parse_head(head_bytes, opts_, parser))
        {
            auto given = parser.get()["X-Request-Id"];
            auto id = parser.is_header_done() ? ids_.for_request({given.data(), given.size()}) : std::string{};
            parser_.reset();
            co_return read_failure{std::move(r), std::move(id)};
        }
        buffer_.consume(header_size);
        auto given = parser.get()["X-Request-Id"];
        id_ = ids_.for_request({given.data(), given.size()});

        if (!parser.is_done() || !parser.get()[http::field::expect].empty())
        {
            auto failed = co_await read_body(parser);
            if (failed)
            {
                parser_.reset();
                co_return read_failure{std::move(*failed), std::move(id_)};
            }
        }
        co_return std::nullopt;
    }

    /// The request `read` made ready, taken once; then its id and when its header
    /// was complete.
    http::request<http::string_body> take_message()
    {
        auto m = parser_->release();
        parser_.reset();
        return m;
    }
    std::string take_id() noexcept { return std::move(id_); }
    std::chrono::steady_clock::time_point started() const noexcept { return started_; }

    /// All three at once (for tests).
    incoming take()
    {
        auto started = started_;
        auto id = take_id();
        return {take_message(), std::move(id), started};
    }

private:
    std::string_view buffered() const
    {
        return {static_cast<const char*>(buffer_.data().data()), buffer_.size()};
    }

    // Expect: 100-continue and the body. Empty: the body is read.
    asio::awaitable<std::optional<std::optional<rejection>>> read_body(http::request_parser<http::string_body>& parser)
    {
        auto& head = parser.get();
        bool has_body = !parser.is_done();
        if (auto expect = head[http::field::expect]; !expect.empty())
        {
            if (!beast::iequals(detail::trim({expect.data(), expect.size()}), "100-continue"))
                co_return std::optional<rejection>{rejection{http::status::expectation_failed,
                                                             "only 100-continue is supported"}};
            if (has_body && head.version() >= 11)
            {
                static constexpr std::string_view cont = "HTTP/1.1 100 Continue\r\n\r\n";
                watchdog_.io_after(opts_.write_timeout);
                auto [wec, wn] = co_await asio::async_write(stream_, asio::buffer(cont), nothrow_awaitable);
                watchdog_.io_clear();
                if (wec)
                    co_return std::optional<rejection>{};
            }
        }
        if (!has_body)
            co_return std::nullopt;

        parser.body_limit(opts_.body_limit);
        auto ext_limit = opts_.chunk_extension_limit;
        auto on_chunk = [ext_limit](std::uint64_t, beast::string_view ext, boost::system::error_code& cec) {
            if (ext.size() > ext_limit)
                cec = http::error::bad_chunk_extension;
        };
        parser.on_chunk_header(on_chunk);
        auto header_fields = static_cast<std::size_t>(std::distance(head.begin(), head.end()));
        watchdog_.io_after(opts_.body_timeout);
        auto [ec, n] = co_await http::async_read(stream_, buffer_, parser, nothrow_awaitable);
        watchdog_.io_clear();
        bool timed_out = watchdog_.io_expired();
        watchdog_.clear_io_expired();
        if (!ec)
            co_return drop_trailers(parser.get(), header_fields);
        co_return std::optional<rejection>{reading::body_failure(ec, timed_out, opts_)};
    }

    // Beast adds a chunked body's trailer fields to the header. They are counted
    // against --max-header-fields and dropped: a handler sees only the header it
    // was sent (RFC 9110 §6.5.1: a trailer is not merged into the header).
    std::optional<std::optional<rejection>> drop_trailers(http::request_header<>& head, std::size_t header_fields)
    {
        auto it = head.begin();
        std::size_t kept = 0;
        for (; it != head.end() && kept < header_fields; ++it)
            ++kept;
        std::size_t trailers = 0;
        while (it != head.end())
        {
            it = head.erase(it);
            ++trailers;
        }
        if (trailers > opts_.limits.max_fields)
            return std::optional<rejection>{rejection{http::status::request_header_fields_too_large,
                                                      "more than " + std::to_string(opts_.limits.max_fields) +
                                                          " trailer fields"}};
        return std::nullopt;
    }

    Stream& stream_;
    beast::flat_buffer& buffer_;
    watchdog& watchdog_;
    const reader_options& opts_;
    request_ids& ids_;
    std::optional<http::request_parser<http::string_body>> parser_;
    std::string id_;
    std::chrono::steady_clock::time_point started_;
    bool idle_ = false;
};

} // namespace coroute::detail
