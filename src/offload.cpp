#include <coroute/offload.hpp>

#include <coroute/error.hpp>

#include <algorithm>
#include <condition_variable>
#include <list>
#include <mutex>
#include <thread>
#include <vector>

namespace coroute {

namespace detail {

struct offload_state
{
    offload_options opts;
    mutable std::mutex mutex;
    std::condition_variable wake;
    // A list, so that a call cancelled while queued leaves it at once and its slot
    // counts against max_queued no longer.
    std::list<std::shared_ptr<offload_work>> queue;
    std::size_t running = 0;
    bool stopping = false;
    std::vector<std::thread> threads; // joined by the pool's destructor

    void work()
    {
        for (;;)
        {
            std::shared_ptr<offload_work> w;
            {
                std::unique_lock lock{mutex};
                wake.wait(lock, [&] { return stopping || !queue.empty(); });
                if (queue.empty())
                    return; // stopping, and nothing is left
                w = std::move(queue.front());
                queue.pop_front();
                w->at = offload_work::phase::running;
                ++running;
            }
            w->execute();
            std::lock_guard lock{mutex};
            w->at = offload_work::phase::finished;
            --running;
        }
    }
};

void offload_submit(const std::shared_ptr<offload_state>& pool, std::shared_ptr<offload_work> w)
{
    boost::system::error_code refused;
    {
        std::lock_guard lock{pool->mutex};
        if (pool->stopping)
            refused = error::shutting_down;
        else if (pool->queue.size() >= pool->opts.max_queued)
            refused = make_error_code(boost::system::errc::resource_unavailable_try_again);
        else
        {
            w->pool = pool;
            pool->queue.push_back(w);
        }
    }
    if (refused)
    {
        w->at = offload_work::phase::finished;
        w->drop(refused);
        return;
    }
    pool->wake.notify_one();
}

void offload_cancel(const std::shared_ptr<offload_work>& w)
{
    auto pool = w->pool;
    if (!pool)
        return;
    {
        std::lock_guard lock{pool->mutex};
        if (w->at == offload_work::phase::running)
        {
            w->abandoned = true;
            return;
        }
        if (w->at != offload_work::phase::queued)
            return;
        for (auto it = pool->queue.begin(); it != pool->queue.end(); ++it)
            if (*it == w)
            {
                pool->queue.erase(it);
                break;
            }
        w->at = offload_work::phase::finished;
    }
    w->drop(asio::error::operation_aborted);
}

bool offload_abandoned(const offload_work& w)
{
    std::lock_guard lock{w.pool->mutex};
    return w.abandoned;
}

} // namespace detail

offload_pool::offload_pool(offload_options options) : state_(std::make_shared<detail::offload_state>())
{
    if (options.threads == 0)
        options.threads = std::max(1u, std::thread::hardware_concurrency());
    state_->opts = options;
    state_->threads.reserve(options.threads);
    for (std::size_t i = 0; i < options.threads; ++i)
        state_->threads.emplace_back([s = state_.get()] { s->work(); });
}

offload_pool::~offload_pool()
{
    stop();
    for (auto& t : state_->threads)
        t.join();
}

void offload_pool::stop()
{
    std::list<std::shared_ptr<detail::offload_work>> dropped;
    {
        std::lock_guard lock{state_->mutex};
        if (state_->stopping)
            return;
        state_->stopping = true;
        dropped.swap(state_->queue);
        for (auto& w : dropped)
            w->at = detail::offload_work::phase::finished;
    }
    state_->wake.notify_all();
    for (auto& w : dropped)
        w->drop(error::shutting_down);
}

std::size_t offload_pool::threads() const noexcept
{
    return state_->opts.threads;
}

std::size_t offload_pool::running() const
{
    std::lock_guard lock{state_->mutex};
    return state_->running;
}

std::size_t offload_pool::queued() const
{
    std::lock_guard lock{state_->mutex};
    return state_->queue.size();
}

const offload_options& offload_pool::options() const noexcept
{
    return state_->opts;
}

} // namespace coroute
