#pragma once
// The response every handler returns: a message whose body is in memory, a file
// streamed from disk, a body produced over time, or a switch to another protocol.

#include <coroute/fwd.hpp>

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/system/result.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace coroute {

/// A file opened for reading; copies share the descriptor, the last one closes it.
class file
{
public:
    /// Opens `path` for reading; the error when it cannot (ENOENT, EACCES, ...).
    static boost::system::result<file> open(const std::filesystem::path& path);

    int native_handle() const noexcept { return fd_ ? *fd_ : -1; }
    std::uint64_t size() const noexcept { return size_; }

private:
    std::shared_ptr<const int> fd_;
    std::uint64_t size_ = 0;
};

/// `length` bytes of `source` from `offset`, read from disk in bounded chunks as
/// the socket takes them: memory per download does not grow with the file.
struct file_part
{
    file source;
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
};

/// Writes a body over time: each `write` waits until the socket has taken the bytes
/// (back-pressure). The producer's waits are cancelled when the client goes away or
/// the server shuts down; it then returns, and the server ends the response.
using body_producer = std::function<asio::awaitable<void>(body_writer&)>;

/// A produced body; chunked framing unless `length` is known.
struct produced_body
{
    body_producer producer;
    std::optional<std::uint64_t> length;
};

/// Takes over the connection after a `101 Switching Protocols` has been written.
using upgrade_handler = std::function<asio::awaitable<void>(upgraded&)>;

class response;

/// Takes over the connection before its answer is written, and writes `head` (the
/// response as the hooks left it) itself: a WebSocket handshake, whose 101 is written
/// by the WebSocket layer.
using takeover_handler = std::function<asio::awaitable<void>(upgraded&, response& head)>;

struct takeover
{
    takeover_handler handler;
};

/// An HTTP response. Its header and an in-memory body are Beast's message; a
/// streamed body (a file, a producer) or an upgrade ride along beside it, so hooks
/// can read and change the header of every response alike.
class response : public http::response<http::string_body>
{
public:
    using message_type = http::response<http::string_body>;
    using source_type = std::variant<std::monostate, file_part, produced_body, upgrade_handler, takeover>;
    using message_type::message_type;

    response() = default;
    response(message_type m) : message_type(std::move(m)) {}

    /// The body is `part`, streamed; Content-Length is its length.
    void send_file(file_part part);

    /// The body is written by `producer`; chunked unless `length` is given.
    void stream(body_producer producer, std::optional<std::uint64_t> length = {});

    /// Answers `101 Switching Protocols` with `protocol` in `Upgrade`; then `h` owns
    /// the connection until it returns.
    void upgrade(std::string_view protocol, upgrade_handler h);

    /// Answers `101 Switching Protocols`, written by `h` itself (see `takeover_handler`).
    void take_over(takeover_handler h);

    /// What carries the body: monostate when it is the in-memory `body()`.
    const source_type& source() const noexcept { return source_; }
    source_type& source() noexcept { return source_; }
    bool streamed() const noexcept { return source_.index() != 0; }

private:
    source_type source_;
};

/// Makes the framing match the body: `Content-Length` is the body's size (or the
/// streamed part's); a producer without a length is chunked; 1xx, 204 and 304 never
/// have a body (RFC 9110 §8.6). The server calls it on every response after the
/// hooks, so hooks may change a body freely.
void finish_payload(response& res);

/// A response with `status`, `Content-Type` and `body`, payload prepared.
response make_response(http::status status, std::string_view content_type, std::string body);

/// Lets `result<T, response>::value()` throw when it holds a problem response.
[[noreturn]] void throw_exception_from_error(const response& e, const boost::source_location& loc);

} // namespace coroute
