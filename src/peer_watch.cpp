// The peer watch.
#include "peer_watch.hpp"

namespace coroute::detail {

bool peer_closed(asio::ip::tcp::socket& s)
{
    if (!s.is_open())
        return true;
    boost::system::error_code ec;
    s.non_blocking(true, ec);
    if (ec)
        return true;
    char byte;
    auto n = s.receive(asio::buffer(&byte, 1), asio::ip::tcp::socket::message_peek, ec);
    boost::system::error_code restore;
    s.non_blocking(false, restore);
    if (ec == asio::error::would_block || ec == asio::error::interrupted)
        return false;
    return ec || n == 0;
}

void peer_watch::stop(asio::ip::tcp::socket& s)
{
    ++generation_;
    if (!watching_)
        return;
    watching_ = false;
    boost::system::error_code ec;
    s.cancel(ec);
}

} // namespace coroute::detail
