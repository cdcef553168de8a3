#pragma once
// Background jobs: coroutines that outlive the request that started them, bounded,
// observable (state, progress, result or error) and cancellable.

#include <coroute/fwd.hpp>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace coroute {

/// The bounds of a job group; each is a server flag in coroute-server.
struct job_options
{
    std::size_t max_running = 64;  ///< jobs running at once; the rest wait in order
    std::size_t max_queued = 1000; ///< jobs waiting; past it `start` refuses a new one
    std::size_t keep = 1000;       ///< finished jobs remembered for `find` and `recent`
};

/// Where a job is in its life. The last three are final.
enum class job_state
{
    queued,    ///< accepted, waiting for one of `max_running`
    running,   ///< its coroutine runs
    done,      ///< it returned; `result` holds what it returned
    failed,    ///< it threw; `error` holds what
    cancelled, ///< cancelled (by `cancel` or at shutdown) before it finished; `error` says by whom
};

/// "queued", "running", "done", "failed" or "cancelled".
std::string_view to_string(job_state s) noexcept;

/// A snapshot of one job.
struct job_info
{
    using time_point = std::chrono::system_clock::time_point;

    std::uint64_t id = 0; ///< 1, 2, 3, ... per group
    job_state state = job_state::queued;
    double progress = 0;  ///< 0 to 1, as the job reports it; 1 once done
    time_point created_at{};
    std::optional<time_point> started_at, finished_at;
    boost::json::value result; ///< null until done
    std::string error;         ///< empty unless failed or cancelled

    bool finished() const noexcept { return state >= job_state::done; }
};

/// `{"id","state","progress","created_at","started_at","finished_at","result","error"}`;
/// times are RFC 3339 UTC with milliseconds, or null; `error` is null when empty.
boost::json::object to_json(const job_info& job);

namespace detail {
struct job_group_state;
struct job_record;
} // namespace detail

/// What a running job sees of itself.
class job_context
{
public:
    std::uint64_t id() const noexcept;

    /// Reports progress from 0 to 1 (clamped; it never goes back). Observers hear of
    /// it at most once per percent and 50 ms, so a tight loop may call it freely.
    void progress(double fraction);

private:
    friend struct detail::job_group_state;
    friend class job_group;
    job_context(detail::job_group_state* g, detail::job_record* r) : group_(g), record_(r) {}
    detail::job_group_state* group_;
    detail::job_record* record_;
};

/// A job's body: a coroutine given its context, returning the job's result.
/// Write it as a named coroutine (a lambda with captures calls one, passing copies).
using job_function = std::function<asio::awaitable<boost::json::value>(job_context&)>;

/// What `cancel` did.
enum class cancel_outcome
{
    cancelled,  ///< it was queued and is now cancelled
    cancelling, ///< it runs; its coroutine was cancelled and the job ends `cancelled` when it returns
    finished,   ///< it had already finished; nothing changed
    not_found,  ///< no such job (never started, or forgotten past `keep`)
};

/// Runs jobs on an executor, beyond the requests that start them.
///
/// Each job runs as a coroutine on its own strand of the group's executor, at most
/// `max_running` at once; the others wait, in order, up to `max_queued`. What a job
/// throws fails that job: it is recorded in `error` and logged with the job's id,
/// never lost. Cancelling a running job emits terminal cancellation to its
/// coroutine: its waits end with `operation_aborted`, and however the coroutine then
/// ends, the job is `cancelled` (what it returned is discarded).
///
/// `shutdown(grace)` refuses new jobs, cancels the queued ones, gives the running
/// ones `grace` to finish, then cancels those still running; their state says
/// "cancelled at shutdown".
///
/// Thread-safe: start, find and cancel from any thread. The observer set with
/// `on_change` is called after every change (start, progress, end), from the thread
/// that made it, never under the group's lock.
class job_group
{
public:
    job_group(asio::any_io_executor ex, job_options options = {}, std::shared_ptr<logger> log = {});
    ~job_group();
    job_group(const job_group&) = delete;
    job_group& operator=(const job_group&) = delete;

    /// Accepts a job: running at once when a slot is free, else queued. Fails with
    /// `errc::resource_unavailable_try_again` when `max_queued` jobs already wait,
    /// and with `error::shutting_down` after `shutdown` began.
    boost::system::result<job_info> start(job_function f);

    std::optional<job_info> find(std::uint64_t id) const;

    /// The newest jobs first, at most `limit`.
    std::vector<job_info> recent(std::size_t limit) const;

    /// Cancels a queued or running job; see `cancel_outcome`. The job's new state
    /// reaches observers as any other change.
    cancel_outcome cancel(std::uint64_t id);

    /// Set before the first `start`.
    void on_change(std::function<void(const job_info&)> observer);

    /// See the class comment; completes on the caller's executor once no job runs,
    /// or when the cancelled ones still have not ended a second after the grace.
    asio::awaitable<void> shutdown(std::chrono::milliseconds grace);

    std::size_t running() const;
    std::size_t queued() const;
    const job_options& options() const noexcept;

private:
    std::shared_ptr<detail::job_group_state> state_;
};

} // namespace coroute
