// The server: its listening socket, the accept loop, the sessions it spawns, and
// their shutdown.
#include <coroute/server.hpp>

#include "server_state.hpp"
#include "session.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/strand.hpp>

namespace coroute {

using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

namespace {

void log_escaped(logger& log, std::string_view what, std::exception_ptr e)
{
    try
    {
        std::rethrow_exception(e);
    }
    catch (const std::exception& ex)
    {
        log.error(std::string{what} + " ended by an exception: " + ex.what());
    }
    catch (...)
    {
        log.error(std::string{what} + " ended by an unknown exception");
    }
}

} // namespace

namespace detail {

server_state::server_state(std::vector<asio::any_io_executor> e, std::shared_ptr<const router> r, server_options o)
    : executors(std::move(e)), strand(asio::make_strand(executors.at(0))), routes(std::move(r)),
      opts(std::move(o)), acceptor(strand), all_closed(strand), accept_ended(strand)
{
    log = opts.log ? opts.log : std::make_shared<logger>();
    reading.limits = {opts.target_limit, opts.header_limit, opts.max_header_fields};
    reading.body_limit = opts.body_limit;
    reading.chunk_extension_limit = opts.chunk_extension_limit;
    reading.header_timeout = opts.header_timeout;
    reading.body_timeout = opts.body_timeout;
    reading.idle_timeout = opts.idle_timeout;
    reading.write_timeout = opts.write_timeout;
}

// A strand of the io_context's own executor fits in any_io_executor's small-object
// buffer; a strand of an any_io_executor does not, and then every completion handler's
// work guard (`prefer(outstanding_work.tracked)`) allocates a copy of it.
asio::any_io_executor server_state::connection_executor()
{
    auto& e = executors[next_executor++ % executors.size()];
    if (!opts.strand_per_connection)
        return e;
    if (auto* io = e.target<asio::io_context::executor_type>())
        return asio::make_strand(*io);
    return asio::make_strand(e);
}

void server_state::add(std::shared_ptr<session_base> s)
{
    open.fetch_add(1);
    std::lock_guard lock{sessions_mutex};
    sessions.emplace(s.get(), s);
}

void server_state::remove(session_base* s)
{
    {
        std::lock_guard lock{sessions_mutex};
        sessions.erase(s);
    }
    if (open.fetch_sub(1) == 1 && stopping.load())
        asio::post(strand, [self = shared_from_this()] { self->all_closed.cancel(); });
}

void server_state::spawn(tcp::socket socket)
{
    auto start = [&](auto s) {
        add(s);
        auto slot = s->cancel_slot();
        auto ex = s->executor();
        // The completion handler owns the session: `run`'s `this` lives until it ends.
        asio::co_spawn(ex, s->run(), asio::bind_cancellation_slot(slot, [s, log = log](std::exception_ptr e) {
                           if (e)
                               log_escaped(*log, "connection", e);
                       }));
    };
    if (opts.tls)
        start(std::make_shared<session<asio::ssl::stream<tcp::socket>>>(shared_from_this(), std::move(socket),
                                                                        *opts.tls));
    else
        start(std::make_shared<session<tcp::socket>>(shared_from_this(), std::move(socket)));
}

asio::awaitable<void> server_state::accept_loop()
{
    auto self = shared_from_this();
    accept_running = true;
    asio::steady_timer backoff{strand};
    // Without it the burst below would block on an empty queue.
    boost::system::error_code nb;
    acceptor.non_blocking(true, nb);
    for (;;)
    {
        auto [ec, socket] = co_await acceptor.async_accept(connection_executor(), nothrow_awaitable);
        if (!ec)
        {
            // Even when shutdown has begun: this client may have sent its request already.
            admit(std::move(socket));
            // This loop gets one turn of the io_context's queue per wait, so under load a
            // backlog of new clients would be taken one per turn, behind all the open
            // connections' work: take what the kernel has queued already, up to a burst.
            for (std::size_t n = 1; !nb && n < accept_burst && !stopping.load(); ++n)
            {
                boost::system::error_code more_ec;
                auto more = acceptor.accept(connection_executor(), more_ec);
                if (more_ec)
                    break; // would_block, or an error the wait above will meet again
                admit(std::move(more));
            }
            if (stopping.load() || !acceptor.is_open())
                break;
            continue;
        }
        if (stopping.load() || !acceptor.is_open() || ec == asio::error::operation_aborted)
            break;
        // Out of descriptors or memory: wait instead of spinning on the same error.
        if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space || ec == asio::error::no_memory ||
            ec == boost::system::errc::too_many_files_open_in_system)
        {
            log->warn("accept failed: " + ec.message() + "; pausing 100 ms");
            backoff.expires_after(std::chrono::milliseconds(100));
            co_await backoff.async_wait(nothrow_awaitable);
        }
    }
    accept_running = false;
    accept_ended.cancel();
}

// Closing a listening socket resets the connections still in its accept queue, and a
// client there may have sent its request already (a load balancer sends until
// accepting stops): they are served instead, as the connections already open are.
void server_state::accept_pending()
{
    boost::system::error_code ec;
    acceptor.non_blocking(true, ec);
    while (!ec)
    {
        auto socket = acceptor.accept(connection_executor(), ec);
        if (!ec)
            admit(std::move(socket));
    }
}

void server_state::admit(tcp::socket socket)
{
    if (open.load() >= opts.max_connections)
    {
        rejected.fetch_add(1);
        boost::system::error_code ignored;
        socket.close(ignored);
        return;
    }
    accepted.fetch_add(1);
    boost::system::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    spawn(std::move(socket));
}

} // namespace detail

server::server(asio::any_io_executor ex, std::shared_ptr<const router> routes, server_options options)
    : server(std::vector<asio::any_io_executor>{std::move(ex)}, std::move(routes), std::move(options))
{
}

server::server(std::vector<asio::any_io_executor> executors, std::shared_ptr<const router> routes,
               server_options options)
{
    if (executors.empty())
        throw std::invalid_argument("coroute::server needs at least one executor");
    impl_ = std::make_shared<detail::server_state>(std::move(executors), std::move(routes), std::move(options));
}

server::~server()
{
    boost::system::error_code ec;
    impl_->acceptor.close(ec);
}

tcp::endpoint server::listen(const tcp::endpoint& where)
{
    auto& a = impl_->acceptor;
    a.open(where.protocol());
    a.set_option(tcp::acceptor::reuse_address(true));
    a.bind(where);
    a.listen(asio::socket_base::max_listen_connections);
    return a.local_endpoint();
}

void server::start()
{
    if (impl_->started)
        throw std::logic_error("server already started");
    impl_->started = true;
    auto log = impl_->log;
    asio::co_spawn(impl_->strand, impl_->accept_loop(), [log](std::exception_ptr e) {
        if (e)
            log_escaped(*log, "the accept loop", e);
    });
}

tcp::endpoint server::local_endpoint() const
{
    return impl_->acceptor.local_endpoint();
}

std::string_view server::scheme() const noexcept
{
    return impl_->opts.tls ? "https" : "http";
}

void server::drain()
{
    impl_->draining.store(true);
}

bool server::draining() const noexcept
{
    return impl_->draining.load();
}

namespace {

// Runs on the server's strand: the last session's wake-up is posted there, so it
// cannot slip in between counting the open connections and the wait.
asio::awaitable<void> shut_down(std::shared_ptr<detail::server_state> self, std::chrono::milliseconds grace)
{
    if (self->acceptor.is_open())
        self->accept_pending();
    boost::system::error_code ec;
    self->acceptor.close(ec);
    // A connection the accept loop has taken but not yet handed on is served too: wait
    // for the loop to end before counting the open connections.
    if (self->accept_running)
    {
        self->accept_ended.expires_at(clock_type::time_point::max());
        co_await self->accept_ended.async_wait(nothrow_awaitable);
    }
    self->for_each_session([](detail::session_base& s) { s.notify_stopping(); });
    if (self->open.load() > 0)
    {
        self->all_closed.expires_after(grace);
        co_await self->all_closed.async_wait(nothrow_awaitable);
    }
    if (self->open.load() > 0)
    {
        self->log->warn(std::to_string(self->open.load()) + " connection(s) still busy after " +
                        std::to_string(grace.count()) + " ms; closing them");
        self->for_each_session([](detail::session_base& s) { s.force_close(); });
        if (self->open.load() > 0)
        {
            self->all_closed.expires_after(std::chrono::seconds(5));
            co_await self->all_closed.async_wait(nothrow_awaitable);
        }
    }
}

} // namespace

asio::awaitable<void> server::shutdown(std::chrono::milliseconds grace)
{
    impl_->draining.store(true);
    impl_->stopping.store(true);
    co_await asio::co_spawn(impl_->strand, shut_down(impl_, grace), asio::use_awaitable);
}

server_stats server::stats() const noexcept
{
    return {impl_->accepted.load(), impl_->rejected.load(), impl_->open.load(), impl_->requests.load(),
            impl_->in_flight.load(), impl_->peak_in_flight.load()};
}

void server::reset_peak() noexcept
{
    impl_->peak_in_flight.store(impl_->in_flight.load());
}

const server_options& server::options() const noexcept
{
    return impl_->opts;
}

logger& server::log() const noexcept
{
    return *impl_->log;
}

} // namespace coroute
