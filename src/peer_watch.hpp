#pragma once
// Is the client still there? A readability wait on a socket nobody reads, and a
// non-blocking peek when it fires.

#include <coroute/fwd.hpp>

#include <boost/asio/ip/tcp.hpp>

#include <cstdint>

namespace coroute::detail {

/// True when the peer has closed or reset the connection; false while it is there
/// (nothing to read yet, or bytes waiting). Never blocks.
bool peer_closed(asio::ip::tcp::socket& s);

/// Watches a plain TCP connection while nobody reads it (a handler runs, a body is
/// produced): when the client leaves, `on_gone` runs. A FIN over TLS hides behind the
/// close_notify record, so TLS connections are not watched. Not thread-safe: start
/// and stop on the connection's executor.
class peer_watch
{
public:
    /// `on_gone` must keep the watch's owner alive (capture its shared_ptr).
    template <class OnGone>
    void start(asio::ip::tcp::socket& s, OnGone on_gone)
    {
        auto gen = ++generation_;
        watching_ = true;
        s.async_wait(asio::ip::tcp::socket::wait_read,
                     [this, &s, gen, on_gone = std::move(on_gone)](boost::system::error_code ec) mutable {
                         if (ec || gen != generation_)
                             return;
                         watching_ = false;
                         if (peer_closed(s))
                             on_gone();
                     });
    }

    /// Ends the watch; its pending wait (the only operation on the socket then) is cancelled.
    void stop(asio::ip::tcp::socket& s);

private:
    std::uint64_t generation_ = 0;
    bool watching_ = false;
};

} // namespace coroute::detail
