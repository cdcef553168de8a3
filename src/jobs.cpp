#include <coroute/jobs.hpp>

#include <coroute/error.hpp>
#include <coroute/log.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <deque>
#include <map>
#include <mutex>

namespace coroute {

namespace {

using steady = std::chrono::steady_clock;
constexpr std::chrono::milliseconds progress_interval{50};
constexpr std::chrono::milliseconds cancel_wait{1000};

boost::json::value time_json(const std::optional<job_info::time_point>& t)
{
    if (!t)
        return nullptr;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t->time_since_epoch()).count();
    std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
    return boost::json::string{buf};
}

} // namespace

std::string_view to_string(job_state s) noexcept
{
    switch (s)
    {
    case job_state::queued: return "queued";
    case job_state::running: return "running";
    case job_state::done: return "done";
    case job_state::failed: return "failed";
    case job_state::cancelled: return "cancelled";
    }
    return "unknown";
}

boost::json::object to_json(const job_info& job)
{
    return {{"id", job.id},
            {"state", to_string(job.state)},
            {"progress", job.progress},
            {"created_at", time_json(job.created_at)},
            {"started_at", time_json(job.started_at)},
            {"finished_at", time_json(job.finished_at)},
            {"result", job.result},
            {"error", job.error.empty() ? boost::json::value{} : boost::json::value(boost::json::string(job.error))}};
}

namespace detail {

struct job_record
{
    job_record(asio::any_io_executor ex, job_function f) : strand(asio::make_strand(ex)), fn(std::move(f)) {}

    job_info info;                       // guarded by the group's mutex
    asio::strand<asio::any_io_executor> strand; // the job's coroutine, and its cancellation, run here
    job_function fn;
    asio::cancellation_signal signal;    // bound and emitted on `strand` only
    std::optional<job_context> ctx;
    bool cancel_requested = false;       // guarded by the group's mutex
    std::string cancel_reason;
    double notified_progress = 0;
    steady::time_point notified_at{};
};

struct job_group_state : std::enable_shared_from_this<job_group_state>
{
    asio::any_io_executor ex;
    job_options opts;
    std::shared_ptr<logger> log;
    std::function<void(const job_info&)> observer;

    mutable std::mutex mutex;
    std::uint64_t next_id = 0;
    std::map<std::uint64_t, std::shared_ptr<job_record>> jobs; // every job kept, by id
    std::deque<std::shared_ptr<job_record>> waiting;
    std::size_t running = 0;
    std::size_t finished_kept = 0;
    bool stopping = false;

    void notify(const job_info& info)
    {
        if (observer)
            observer(info);
    }

    // Under the lock: marks the job running; the caller spawns it after unlocking.
    void mark_running(job_record& r)
    {
        r.info.state = job_state::running;
        r.info.started_at = std::chrono::system_clock::now();
        ++running;
    }

    // Under the lock: forgets the oldest finished jobs past `keep`.
    void forget_old()
    {
        for (auto it = jobs.begin(); finished_kept > opts.keep && it != jobs.end();)
        {
            if (it->second->info.finished())
            {
                it = jobs.erase(it);
                --finished_kept;
            }
            else
                ++it;
        }
    }

    // The coroutine is spawned on the job's strand, where cancel_locked emits: co_spawn
    // binds its handler to the signal's slot, and a cancellation_signal is not
    // thread-safe. A cancellation requested before the spawn (a DELETE between
    // mark_running and here) is then emitted to an empty slot, and run() sees it as
    // cancel_requested instead. It must not reach the coroutine before its first
    // resumption: Boost 1.81's co_spawn then throws "co_await: Operation canceled"
    // out of io_context::run, which ends the server.
    void spawn(std::shared_ptr<job_record> r)
    {
        asio::dispatch(r->strand, [self = shared_from_this(), r] {
            auto slot = r->signal.slot();
            asio::co_spawn(r->strand, run(self, r),
                           asio::bind_cancellation_slot(slot, [self, r](std::exception_ptr e) {
                               // run() catches everything; this is a bug's last trace.
                               if (e && self->log)
                                   self->log->error("job " + std::to_string(r->info.id) + ": an exception escaped");
                           }));
        });
    }

    static asio::awaitable<void> run(std::shared_ptr<job_group_state> g, std::shared_ptr<job_record> r)
    {
        bool cancelled_before_start = false;
        {
            std::lock_guard lock{g->mutex};
            cancelled_before_start = r->cancel_requested;
        }
        if (cancelled_before_start)
        {
            g->finish(r, {}, false, {}); // cancelled, with its reason; the function never runs
            co_return;
        }
        boost::json::value result;
        std::string failure;
        bool threw = false;
        try
        {
            result = co_await r->fn(*r->ctx);
        }
        catch (const boost::system::system_error& e)
        {
            threw = true;
            failure = e.code() == asio::error::operation_aborted ? std::string{"operation aborted"} : e.what();
        }
        catch (const std::exception& e)
        {
            threw = true;
            failure = e.what();
        }
        catch (...)
        {
            threw = true;
            failure = "an exception that is not a std::exception";
        }
        g->finish(r, std::move(result), threw, std::move(failure));
    }

    void finish(const std::shared_ptr<job_record>& r, boost::json::value result, bool threw, std::string failure)
    {
        std::vector<std::shared_ptr<job_record>> next;
        job_info info;
        bool log_failure = false;
        {
            std::lock_guard lock{mutex};
            auto& j = r->info;
            j.finished_at = std::chrono::system_clock::now();
            if (r->cancel_requested)
            {
                j.state = job_state::cancelled;
                j.error = r->cancel_reason;
            }
            else if (threw)
            {
                j.state = job_state::failed;
                j.error = std::move(failure);
                log_failure = true;
            }
            else
            {
                j.state = job_state::done;
                j.progress = 1;
                j.result = std::move(result);
            }
            --running;
            ++finished_kept;
            r->fn = nullptr; // what it captured goes now, not when the record is forgotten
            while (!stopping && running < opts.max_running && !waiting.empty())
            {
                auto n = std::move(waiting.front());
                waiting.pop_front();
                mark_running(*n);
                next.push_back(std::move(n));
            }
            info = j;
            forget_old();
        }
        if (log_failure && log)
            log->error("job " + std::to_string(info.id) + " failed: " + info.error);
        notify(info);
        for (auto& n : next)
            start_running(n);
    }

    void start_running(const std::shared_ptr<job_record>& r)
    {
        job_info info;
        {
            std::lock_guard lock{mutex};
            info = r->info;
        }
        notify(info);
        spawn(r);
    }

    void report(job_record& r, double fraction)
    {
        fraction = std::clamp(fraction, 0.0, 1.0);
        job_info info;
        {
            std::lock_guard lock{mutex};
            if (r.info.state != job_state::running || fraction <= r.info.progress)
                return;
            r.info.progress = fraction;
            auto now = steady::now();
            if (fraction < 1 && (fraction - r.notified_progress < 0.01 || now - r.notified_at < progress_interval))
                return;
            r.notified_progress = fraction;
            r.notified_at = now;
            info = r.info;
        }
        notify(info);
    }

    // Under the lock. A queued job ends at once; a running one is told on its strand.
    // Returns the snapshot to announce when the job ended here.
    std::optional<job_info> cancel_locked(const std::shared_ptr<job_record>& r, std::string reason)
    {
        auto& j = r->info;
        if (j.state == job_state::queued)
        {
            waiting.erase(std::find(waiting.begin(), waiting.end(), r));
            j.state = job_state::cancelled;
            j.error = std::move(reason);
            j.finished_at = std::chrono::system_clock::now();
            r->fn = nullptr;
            ++finished_kept;
            return j;
        }
        if (j.state == job_state::running && !r->cancel_requested)
        {
            r->cancel_requested = true;
            r->cancel_reason = std::move(reason);
            asio::post(r->strand, [r] { r->signal.emit(asio::cancellation_type::terminal); });
        }
        return std::nullopt;
    }
};

} // namespace detail

std::uint64_t job_context::id() const noexcept
{
    return record_->info.id; // set before the job starts, never changed
}

void job_context::progress(double fraction)
{
    group_->report(*record_, fraction);
}

job_group::job_group(asio::any_io_executor ex, job_options options, std::shared_ptr<logger> log)
    : state_(std::make_shared<detail::job_group_state>())
{
    state_->ex = std::move(ex);
    state_->opts = options;
    state_->log = std::move(log);
}

job_group::~job_group() = default;

boost::system::result<job_info> job_group::start(job_function f)
{
    auto r = std::make_shared<detail::job_record>(state_->ex, std::move(f));
    r->ctx.emplace(job_context{state_.get(), r.get()});
    bool now = false;
    job_info info;
    {
        std::lock_guard lock{state_->mutex};
        if (state_->stopping)
            return boost::system::error_code{error::shutting_down};
        now = state_->running < state_->opts.max_running;
        if (!now && state_->waiting.size() >= state_->opts.max_queued)
            return make_error_code(boost::system::errc::resource_unavailable_try_again);
        r->info.id = ++state_->next_id;
        r->info.created_at = std::chrono::system_clock::now();
        state_->jobs.emplace(r->info.id, r);
        if (now)
            state_->mark_running(*r);
        else
            state_->waiting.push_back(r);
        info = r->info;
    }
    state_->notify(info);
    if (now)
        state_->spawn(r);
    return info;
}

std::optional<job_info> job_group::find(std::uint64_t id) const
{
    std::lock_guard lock{state_->mutex};
    auto it = state_->jobs.find(id);
    if (it == state_->jobs.end())
        return std::nullopt;
    return it->second->info;
}

std::vector<job_info> job_group::recent(std::size_t limit) const
{
    std::vector<job_info> out;
    std::lock_guard lock{state_->mutex};
    for (auto it = state_->jobs.rbegin(); it != state_->jobs.rend() && out.size() < limit; ++it)
        out.push_back(it->second->info);
    return out;
}

cancel_outcome job_group::cancel(std::uint64_t id)
{
    std::optional<job_info> ended;
    {
        std::lock_guard lock{state_->mutex};
        auto it = state_->jobs.find(id);
        if (it == state_->jobs.end())
            return cancel_outcome::not_found;
        auto r = it->second;
        if (r->info.finished())
            return cancel_outcome::finished;
        ended = state_->cancel_locked(r, "cancelled by request");
        if (!ended)
            return cancel_outcome::cancelling;
        state_->forget_old();
    }
    state_->notify(*ended);
    return cancel_outcome::cancelled;
}

void job_group::on_change(std::function<void(const job_info&)> observer)
{
    state_->observer = std::move(observer);
}

asio::awaitable<void> job_group::shutdown(std::chrono::milliseconds grace)
{
    auto g = state_;
    std::vector<job_info> ended;
    std::vector<std::shared_ptr<detail::job_record>> were_running;
    {
        std::lock_guard lock{g->mutex};
        g->stopping = true;
        for (auto& [id, r] : g->jobs)
            if (r->info.state == job_state::running)
                were_running.push_back(r);
        auto waiting = g->waiting; // cancel_locked erases from the deque
        for (auto& r : waiting)
            if (auto e = g->cancel_locked(r, "cancelled at shutdown before it started"))
                ended.push_back(std::move(*e));
    }
    for (auto& e : ended)
        g->notify(e);

    // Polled: a job's end may come from any thread, and this wait is short and rare.
    asio::steady_timer tick{co_await asio::this_coro::executor};
    auto running = [&] {
        std::lock_guard lock{g->mutex};
        return g->running;
    };
    // Each job that was running is logged with how it ended: the record a reader
    // has once the process is gone.
    auto report = [&] {
        if (!g->log)
            return;
        std::lock_guard lock{g->mutex};
        for (auto& r : were_running)
            g->log->info("shutdown: job " + std::to_string(r->info.id) + " " + std::string{to_string(r->info.state)} +
                         (r->info.error.empty() ? std::string{} : " (" + r->info.error + ")"));
    };
    auto grace_end = steady::now() + grace;
    while (running() > 0 && steady::now() < grace_end)
    {
        tick.expires_after(std::min<steady::duration>(std::chrono::milliseconds{10}, grace_end - steady::now()));
        co_await tick.async_wait(nothrow_awaitable);
    }
    std::size_t left = 0;
    {
        std::lock_guard lock{g->mutex};
        for (auto& [id, r] : g->jobs)
            if (r->info.state == job_state::running)
            {
                g->cancel_locked(r, "cancelled at shutdown: still running after the grace period");
                ++left;
            }
    }
    if (left == 0)
    {
        report();
        co_return;
    }
    if (g->log)
        g->log->info("shutdown: cancelling " + std::to_string(left) + " job(s) still running after the grace period");
    auto cancel_end = steady::now() + cancel_wait;
    while (running() > 0 && steady::now() < cancel_end)
    {
        tick.expires_after(std::chrono::milliseconds{10});
        co_await tick.async_wait(nothrow_awaitable);
    }
    if (auto n = running(); n > 0 && g->log)
        g->log->warn("shutdown: " + std::to_string(n) + " job(s) did not end when cancelled");
    report();
}

std::size_t job_group::running() const
{
    std::lock_guard lock{state_->mutex};
    return state_->running;
}

std::size_t job_group::queued() const
{
    std::lock_guard lock{state_->mutex};
    return state_->waiting.size();
}

const job_options& job_group::options() const noexcept
{
    return state_->opts;
}

} // namespace coroute
