// The "coroute" error category.
#include <coroute/error.hpp>

#include "exception_text.hpp"

#include <boost/asio/error.hpp>
#include <boost/system/system_error.hpp>

#include <string>

namespace coroute {

namespace {

class category final : public boost::system::error_category
{
public:
    const char* name() const noexcept override { return "coroute"; }

    std::string message(int v) const override
    {
        switch (static_cast<error>(v))
        {
        case error::deadline_exceeded: return "the request's deadline passed";
        case error::client_gone: return "the client closed the connection";
        case error::shutting_down: return "the server is shutting down";
        case error::slow_consumer: return "the reader fell too far behind";
        case error::body_length: return "the body does not match its declared length";
        }
        return "coroute error " + std::to_string(v);
    }

    boost::system::error_condition default_error_condition(int v) const noexcept override
    {
        if (static_cast<error>(v) == error::deadline_exceeded)
            return boost::system::errc::timed_out;
        return {v, *this};
    }
};

} // namespace

const boost::system::error_category& error_category() noexcept
{
    static const category instance;
    return instance;
}

boost::system::error_code make_error_code(error e) noexcept
{
    return {static_cast<int>(e), error_category()};
}

} // namespace coroute

namespace coroute::detail {

std::string what_of(std::exception_ptr e)
{
    try
    {
        std::rethrow_exception(e);
    }
    catch (const std::exception& ex)
    {
        return ex.what();
    }
    catch (...)
    {
        return "unknown exception";
    }
}

bool is_cancellation(std::exception_ptr e)
{
    try
    {
        std::rethrow_exception(e);
    }
    catch (const boost::system::system_error& se)
    {
        return se.code() == boost::asio::error::operation_aborted;
    }
    catch (...)
    {
        return false;
    }
}

} // namespace coroute::detail
