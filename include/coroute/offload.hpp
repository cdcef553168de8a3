#pragma once
// A thread pool for blocking and CPU-heavy calls, awaited from a coroutine that
// resumes on its own executor: the event loop's threads never run them.

#include <coroute/fwd.hpp>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/system_error.hpp>

#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <variant>
#include <utility>

namespace coroute {

/// The bounds of an offload pool; each is a server flag in coroute-server.
struct offload_options
{
    std::size_t threads = 0;         ///< 0: one per core
    std::size_t max_queued = 10'000; ///< calls waiting for a thread; past it a call fails at once
};

namespace detail {

struct offload_state;

/// One call as the pool sees it: queued, then run by one of its threads, or dropped.
struct offload_work
{
    virtual ~offload_work() = default;
    /// On a pool thread: runs the callable, then posts the completion.
    virtual void execute() = 0;
    /// Completes with `ec` without running the callable (cancelled while queued, pool stopped).
    virtual void drop(boost::system::error_code ec) = 0;

    enum class phase { queued, running, finished };
    phase at = phase::queued;  // guarded by the pool's mutex
    bool abandoned = false;    // guarded by the pool's mutex: the caller was cancelled while it ran
    std::shared_ptr<offload_state> pool;
};

/// Queues `w`, or drops it at once (pool stopped: shutting_down; queue full:
/// resource_unavailable_try_again).
void offload_submit(const std::shared_ptr<offload_state>& pool, std::shared_ptr<offload_work> w);

/// The caller's cancellation: a queued call is taken out and dropped; a running one
/// is marked so that its result is discarded.
void offload_cancel(const std::shared_ptr<offload_work>& w);

/// Whether the caller was cancelled while `w` ran.
bool offload_abandoned(const offload_work& w);

template <class T>
using offload_value = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class F, class Handler>
class offload_op final : public offload_work, public std::enable_shared_from_this<offload_op<F, Handler>>
{
public:
    using value_type = offload_value<std::invoke_result_t<F&>>;

    offload_op(F f, Handler h)
        : f_(std::move(f)), handler_(std::move(h)),
          guard_(asio::make_work_guard(asio::get_associated_executor(*handler_)))
    {
    }

    void watch_cancellation()
    {
        slot_ = asio::get_associated_cancellation_slot(*handler_);
        if (slot_.is_connected())
            slot_.template emplace<canceller>(this->weak_from_this());
    }

    void execute() override
    {
        std::exception_ptr error;
        std::optional<value_type> value;
        try
        {
            if constexpr (std::is_void_v<std::invoke_result_t<F&>>)
            {
                f_();
                value.emplace();
            }
            else
                value.emplace(f_());
        }
        catch (...)
        {
            error = std::current_exception();
        }
        if (offload_abandoned(*this))
        {
            error = std::make_exception_ptr(boost::system::system_error{asio::error::operation_aborted});
            value.reset();
        }
        complete(std::move(error), std::move(value));
    }

    void drop(boost::system::error_code ec) override
    {
        complete(std::make_exception_ptr(boost::system::system_error{ec}), std::nullopt);
    }

private:
    struct canceller
    {
        // A constructor, not an aggregate: the slot builds it with parentheses,
        // which clang 14 does not allow for aggregates.
        explicit canceller(std::weak_ptr<offload_op> o) : op(std::move(o)) {}
        std::weak_ptr<offload_op> op;
        void operator()(asio::cancellation_type type)
        {
            if (type == asio::cancellation_type::none)
                return;
            if (auto p = op.lock())
                offload_cancel(p);
        }
    };

    // The handler runs on its own executor, where its cancellation slot may be
    // touched; the slot is cleared there, before the handler runs. The error is
    // moved, not copied: the pool thread keeps no reference after the post, so the
    // exception is freed on the caller's thread, after its readers. (The count is in
    // libstdc++, out of ThreadSanitizer's sight, which reported the other order.)
    void complete(std::exception_ptr error, std::optional<value_type> value)
    {
        auto ex = guard_.get_executor();
        auto self = this->shared_from_this();
        asio::post(ex, [self, error = std::move(error), value = std::move(value)]() mutable {
            if (self->slot_.is_connected())
                self->slot_.clear();
            auto h = std::move(*self->handler_);
            self->handler_.reset();
            self->guard_.reset();
            std::move(h)(error, std::move(value));
        });
    }

    F f_;
    std::optional<Handler> handler_;
    asio::executor_work_guard<asio::associated_executor_t<Handler>> guard_;
    asio::cancellation_slot slot_;
};

} // namespace detail

/// A fixed set of threads that run blocking or CPU-heavy callables for coroutines.
///
/// `co_await pool.run(f)` queues `f`; one of the pool's threads calls it, and the
/// awaiting coroutine resumes on its own executor with what `f` returned, or with
/// what it threw. The event loop's threads never call `f`. Calls start in the order
/// they were made, `threads()` at a time.
///
/// Cancellation (the request's deadline, a cancelled task): a call still queued is
/// dropped, never run, and `run` throws `system_error(operation_aborted)` at once; a
/// call already running is not interrupted: it finishes, its result is discarded,
/// and `run` then throws `operation_aborted`. After `stop()`, and when
/// `max_queued` calls already wait, `run` throws at once (`error::shutting_down`,
/// `errc::resource_unavailable_try_again`).
///
/// Thread-safe. The callable is moved into the pool and owned there until it ran;
/// it must not refer to the caller's locals unless the caller waits for it.
/// The callers' execution contexts must outlive the pool: a pool thread may still be
/// inside its `post` of a completion after the caller resumed, until the pool's
/// destructor joins it, so destroy the pool before the `io_context`.
class offload_pool
{
public:
    explicit offload_pool(offload_options options = {});
    /// Stops and joins the threads (waiting for calls that are running).
    ~offload_pool();
    offload_pool(const offload_pool&) = delete;
    offload_pool& operator=(const offload_pool&) = delete;

    /// Runs `f()` on a pool thread and completes with its result on the caller's
    /// executor; the signature is `void(std::exception_ptr, std::optional<R>)`
    /// (`std::monostate` for a `void` callable), the value empty when there is an error.
    template <class F, class Token>
    auto async_run(F f, Token&& token)
    {
        using value_type = detail::offload_value<std::invoke_result_t<F&>>;
        return asio::async_initiate<Token, void(std::exception_ptr, std::optional<value_type>)>(
            [state = state_](auto handler, F fn) {
                using op_type = detail::offload_op<F, std::decay_t<decltype(handler)>>;
                auto op = std::make_shared<op_type>(std::move(fn), std::move(handler));
                op->watch_cancellation();
                detail::offload_submit(state, std::move(op));
            },
            token, std::move(f));
    }

    /// `co_await pool.run(f)`: `f()`'s result, or its exception rethrown, on the
    /// caller's executor.
    template <class F>
    asio::awaitable<std::invoke_result_t<F&>> run(F f)
    {
        auto value = co_await async_run(std::move(f), asio::use_awaitable);
        if constexpr (!std::is_void_v<std::invoke_result_t<F&>>)
            co_return std::move(*value);
    }

    /// Stops taking calls and drops the queued ones (they fail with
    /// `error::shutting_down`); running calls finish. Does not wait: the
    /// destructor joins the threads. Idempotent.
    void stop();

    std::size_t threads() const noexcept;
    std::size_t running() const;
    std::size_t queued() const;
    const offload_options& options() const noexcept;

private:
    std::shared_ptr<detail::offload_state> state_;
};

} // namespace coroute
