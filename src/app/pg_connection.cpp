#include "app/pg_connection.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <unistd.h>

#include <mutex>
#include <optional>

namespace coroute::app::pg {

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// libpq's messages end with a newline and may span lines; one line reads better in a log.
std::string one_line(const char* text)
{
    std::string s = text ? text : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
        s.pop_back();
    for (auto& c : s)
        if (c == '\n' || c == '\t')
            c = ' ';
    for (auto at = s.find("  "); at != std::string::npos; at = s.find("  "))
        s.erase(at, 1);
    return s.empty() ? "unknown libpq error" : s;
}

asio::awaitable<bool> cancelled()
{
    auto cs = co_await asio::this_coro::cancellation_state;
    co_return cs.cancelled() != asio::cancellation_type::none;
}

} // namespace

std::string sqlstate(const PGresult* r)
{
    const char* s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    return s ? s : "";
}

std::string error_text(const PGresult* r)
{
    return one_line(r ? PQresultErrorMessage(r) : nullptr);
}

connection::connection(PGconn* conn, asio::any_io_executor ex) : conn_(conn), desc_(std::move(ex)) {}

connection::~connection()
{
    boost::system::error_code ignored;
    desc_.close(ignored);
    PQfinish(conn_);
}

bool connection::attach()
{
    boost::system::error_code ec;
    desc_.close(ec);
    int fd = PQsocket(conn_);
    if (fd < 0)
        return false;
    int copy = ::dup(fd);
    if (copy < 0)
        return false;
    desc_.assign(copy, ec);
    if (ec)
    {
        ::close(copy);
        return false;
    }
    return true;
}

bool connection::idle_and_healthy()
{
    if (PQstatus(conn_) != CONNECTION_OK || !desc_.is_open() || unfinished_ != 0)
        return false;
    // An idle connection has nothing to read: data now is an error or a close.
    pollfd p{desc_.native_handle(), POLLIN, 0};
    return ::poll(&p, 1, 0) == 0;
}

asio::awaitable<boost::system::error_code> connection::wait(short events)
{
    // The reactor is edge-triggered and a wait does not look at the socket first, so
    // a readiness that came before the wait began would be missed. The wait starts,
    // then poll() looks: ready already means the wait is ended at once (as a success).
    // On an executor with several threads the wait can complete on another thread
    // while its start is still running, and the caller's coroutine would move on
    // (freeing this start, even the connection) under it: a completion that comes
    // while `starting` is kept, and handed on once the start is done.
    // Named: GCC 12 destroys a temporary in a co_await expression twice.
    auto start = [this, events](auto handler) {
        struct state
        {
            std::mutex mutex;
            bool starting = true;
            bool ready = false;
            std::optional<boost::system::error_code> early;
            std::optional<decltype(handler)> waiting;
        };
        auto s = std::make_shared<state>();
        auto slot = asio::get_associated_cancellation_slot(handler);
        auto ex = asio::get_associated_executor(handler, desc_.get_executor());
        auto what = (events & POLLOUT) ? asio::posix::descriptor_base::wait_write
                                       : asio::posix::descriptor_base::wait_read;
        auto& desc = desc_;
        pollfd p{desc_.native_handle(), events, 0};
        s->waiting.emplace(std::move(handler));
        desc.async_wait(what, asio::bind_cancellation_slot(slot, asio::bind_executor(ex, [s](boost::system::error_code e) {
                                   std::unique_lock lock{s->mutex};
                                   if (s->ready)
                                       e = {};
                                   if (s->starting)
                                   {
                                       s->early = e;
                                       return;
                                   }
                                   auto h = std::move(*s->waiting);
                                   lock.unlock();
                                   std::move(h)(e);
                               })));
        // From here on only `s`, `desc`, `p` and `ex`: the wait cannot be handed on
        // before `starting` is cleared, so the connection is still ours.
        if (::poll(&p, 1, 0) > 0)
        {
            {
                std::lock_guard lock{s->mutex};
                s->ready = true;
            }
            desc.cancel();
        }
        std::unique_lock lock{s->mutex};
        s->starting = false;
        if (!s->early)
            return;
        auto h = std::move(*s->waiting);
        auto e = *s->early;
        lock.unlock();
        asio::post(ex, [h = std::move(h), e]() mutable { std::move(h)(e); });
    };
    auto [ec] = co_await asio::async_initiate<decltype(use_tuple), void(boost::system::error_code)>(std::move(start), use_tuple);
    co_return ec;
}

asio::awaitable<boost::system::result<std::shared_ptr<connection>, std::string>>
connection::open(asio::any_io_executor ex, asio::thread_pool& blocking, const std::string& conninfo,
                 const std::string& server_options, std::chrono::milliseconds timeout)
{
    // The start may resolve a host name, which blocks: it runs on the blocking pool.
    // Our defaults come first, so that what the URL says wins.
    auto start = [&conninfo, &server_options]() -> asio::awaitable<PGconn*> {
        const char* keys[] = {"application_name", "options", "dbname", nullptr};
        const char* values[] = {"coroute", server_options.c_str(), conninfo.c_str(), nullptr};
        co_return PQconnectStartParams(keys, values, 1);
    };
    PGconn* raw = co_await asio::co_spawn(blocking, std::move(start), asio::use_awaitable);
    if (!raw)
        co_return std::string{"out of memory"};
    auto c = std::make_shared<connection>(raw, ex);
    if (PQstatus(raw) == CONNECTION_BAD)
        co_return one_line(PQerrorMessage(raw));

    // Past the timeout the wait in progress is cancelled; the flag tells why. The
    // timer's handler runs on our executor (a strand: see the header), never beside
    // attach() replacing the descriptor it cancels.
    auto expired = std::make_shared<bool>(false);
    asio::steady_timer timer{ex, timeout};
    auto here = co_await asio::this_coro::executor;
    timer.async_wait(asio::bind_executor(here, [weak = std::weak_ptr<connection>{c}, expired](boost::system::error_code e) {
        if (e)
            return;
        *expired = true;
        if (auto c = weak.lock())
            c->desc_.cancel();
    }));

    auto state = PGRES_POLLING_WRITING;
    for (;;)
    {
        // libpq may switch sockets while it tries addresses: look at the current one.
        if (!c->attach())
            co_return one_line(PQerrorMessage(raw));
        auto ec = co_await c->wait(state == PGRES_POLLING_READING ? POLLIN : POLLOUT);
        if (*expired)
            co_return "no connection within " + std::to_string(timeout.count()) + " ms";
        if (ec)
            co_return std::string{"cancelled while connecting"};
        state = PQconnectPoll(raw);
        if (state == PGRES_POLLING_OK)
            break;
        if (state == PGRES_POLLING_FAILED)
            co_return one_line(PQerrorMessage(raw));
    }
    timer.cancel();
    if (!c->attach() || PQsetnonblocking(raw, 1) != 0)
        co_return one_line(PQerrorMessage(raw));
    co_return c;
}

asio::awaitable<bool> connection::flush()
{
    for (;;)
    {
        int r = PQflush(conn_);
        if (r == 0)
            co_return true;
        if (r < 0)
            co_return false;
        auto ec = co_await wait(POLLOUT);
        if (ec)
            co_return false;
        // The server may be waiting for us to read before it reads more.
        if (!PQconsumeInput(conn_))
            co_return false;
    }
}

asio::awaitable<outcome> connection::collect(std::size_t steps)
{
    outcome out;
    out.sent = true;
    out.results.resize(steps);
    const std::size_t expected = unfinished_; // statements before the sync point
    std::size_t index = 0; // the step whose results come now; a null result ends one
    for (;;)
    {
        while (PQisBusy(conn_))
        {
            auto ec = co_await wait(POLLIN);
            bool stop = co_await cancelled();
            if (stop)
            {
                out.state = outcome::kind::cancelled;
                co_return out;
            }
            if (ec)
            {
                out.state = outcome::kind::broken;
                out.message = "the connection was closed";
                co_return out;
            }
            if (!PQconsumeInput(conn_))
            {
                out.state = outcome::kind::broken;
                out.message = one_line(PQerrorMessage(conn_));
                co_return out;
            }
        }
        PGresult* r = PQgetResult(conn_);
        if (!r)
        {
            if (++index > expected || PQstatus(conn_) != CONNECTION_OK)
            {
                out.state = outcome::kind::broken;
                out.message = one_line(PQerrorMessage(conn_));
                co_return out;
            }
            continue;
        }
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC)
        {
            PQclear(r);
            unfinished_ = 0;
            co_return out;
        }
        if (index < steps)
            out.results[index].reset(r); // the last result of a step is its answer
        else
            PQclear(r);
    }
}

asio::awaitable<outcome> connection::pipeline(std::size_t count, const std::function<int(std::size_t)>& send)
{
    outcome out;
    ++uses;
    for (std::size_t i = 0; i < count; ++i)
    {
        if (!send(i))
        {
            out.state = outcome::kind::broken;
            out.message = one_line(PQerrorMessage(conn_));
            co_return out;
        }
    }
    if (!PQpipelineSync(conn_))
    {
        out.state = outcome::kind::broken;
        out.message = one_line(PQerrorMessage(conn_));
        co_return out;
    }
    unfinished_ = count;
    bool flushed = co_await flush();
    if (!flushed)
    {
        bool stop = co_await cancelled();
        out.state = stop ? outcome::kind::cancelled : outcome::kind::broken;
        out.message = one_line(PQerrorMessage(conn_));
        co_return out;
    }
    co_return co_await collect(count);
}

asio::awaitable<outcome> connection::run(const std::vector<step>& steps)
{
    std::vector<const char*> values;
    co_return co_await pipeline(steps.size(), [&](std::size_t i) {
        values.clear();
        for (auto& p : steps[i].params)
            values.push_back(p.c_str());
        return PQsendQueryPrepared(conn_, steps[i].statement, static_cast<int>(values.size()), values.data(),
                                   nullptr, nullptr, 0);
    });
}

asio::awaitable<std::string> connection::prepare(const std::vector<std::pair<const char*, const char*>>& statements)
{
    if (!PQenterPipelineMode(conn_))
        co_return one_line(PQerrorMessage(conn_));
    auto out = co_await pipeline(statements.size(), [&](std::size_t i) {
        return PQsendPrepare(conn_, statements[i].first, statements[i].second, 0, nullptr);
    });
    if (out.state != outcome::kind::done)
        co_return out.message.empty() ? std::string{"cancelled"} : out.message;
    for (auto& r : out.results)
        if (!r || PQresultStatus(r.get()) != PGRES_COMMAND_OK)
            co_return error_text(r.get());
    co_return std::string{};
}

asio::awaitable<bool> connection::drain()
{
    if (unfinished_ == 0)
        co_return PQstatus(conn_) == CONNECTION_OK;
    bool flushed = co_await flush();
    if (!flushed)
        co_return false;
    auto out = co_await collect(0);
    co_return out.state == outcome::kind::done && PQtransactionStatus(conn_) == PQTRANS_IDLE;
}

asio::awaitable<std::string> connection::exec(const char* sql)
{
    if (!PQsendQueryParams(conn_, sql, 0, nullptr, nullptr, nullptr, nullptr, 0))
        co_return one_line(PQerrorMessage(conn_));
    bool flushed = co_await flush();
    if (!flushed)
        co_return one_line(PQerrorMessage(conn_));
    std::string failure;
    for (;;)
    {
        while (PQisBusy(conn_))
        {
            auto ec = co_await wait(POLLIN);
            if (ec)
                co_return std::string{"cancelled"};
            if (!PQconsumeInput(conn_))
                co_return one_line(PQerrorMessage(conn_));
        }
        result_ptr r{PQgetResult(conn_)};
        if (!r)
            break;
        auto st = PQresultStatus(r.get());
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && failure.empty())
            failure = error_text(r.get());
    }
    co_return failure;
}

} // namespace coroute::app::pg
