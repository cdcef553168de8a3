// The in-memory stream pair's shared state: two pipes under one lock.
#include "memory_stream.hpp"

#include <boost/asio/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include <algorithm>

namespace coroute::detail {

struct memory_stream::state
{
    struct parked_op
    {
        std::unique_ptr<waiter> w;
        std::uint64_t serial = 0;
    };
    /// The bytes one end writes and the other reads.
    struct one_pipe
    {
        beast::flat_buffer data;
        bool writer_done = false; // the writer shut down or closed: the reader gets eof after `data`
        bool reader_gone = false; // the reader closed: writes fail
        parked_op reader, writer; // at most one read and one write wait on a pipe
    };

    std::mutex mutex;
    std::size_t capacity;
    one_pipe pipes[2]; // pipes[i]: written by end i, read by end 1 - i
    bool closed[2] = {false, false};
    std::uint64_t next_serial = 0;
    // watch_peer's callback of each end, and its generation: a callback already posted
    // when it was replaced does nothing.
    std::function<void()> on_peer_closed[2];
    asio::any_io_executor watcher_ex[2];
    std::uint64_t watch_gen[2] = {0, 0};

    // Under the lock: posts end `side`'s callback, once.
    void notify_watcher(const std::shared_ptr<state>& self, int side)
    {
        auto f = std::move(on_peer_closed[side]);
        on_peer_closed[side] = nullptr;
        if (!f)
            return;
        asio::post(watcher_ex[side], [self, side, gen = watch_gen[side], f = std::move(f)] {
            {
                std::lock_guard l{self->mutex};
                if (self->watch_gen[side] != gen)
                    return;
            }
            f();
        });
    }

    explicit state(std::size_t cap) : capacity(cap) {}

    static void wake(parked_op& p, boost::system::error_code ec = {})
    {
        if (auto w = std::move(p.w))
            w->wake(ec);
    }
};

std::pair<memory_stream, memory_stream> memory_stream::make_pair(asio::any_io_executor a, asio::any_io_executor b,
                                                                 std::size_t capacity)
{
    auto st = std::make_shared<state>(std::max<std::size_t>(capacity, 1));
    return {memory_stream{st, 0, std::move(a)}, memory_stream{st, 1, std::move(b)}};
}

memory_stream::memory_stream(memory_stream&& other) noexcept
    : state_(std::move(other.state_)), side_(other.side_), ex_(other.ex_) // a moved-from end still completes its handlers
{
}

memory_stream& memory_stream::operator=(memory_stream&& other) noexcept
{
    if (this != &other)
    {
        close();
        state_ = std::move(other.state_);
        side_ = other.side_;
        ex_ = other.ex_;
    }
    return *this;
}

memory_stream::~memory_stream()
{
    close();
}

std::unique_lock<std::mutex> memory_stream::lock(state& s)
{
    return std::unique_lock{s.mutex};
}

memory_stream::attempt memory_stream::try_read(state& s, int side, const asio::mutable_buffer* b, std::size_t count)
{
    if (s.closed[side])
        return {asio::error::bad_descriptor};
    auto& p = s.pipes[1 - side];
    std::size_t room = 0;
    for (std::size_t i = 0; i < count; ++i)
        room += b[i].size();
    if (room == 0)
        return {};
    if (p.data.size() == 0)
    {
        if (p.writer_done)
            return {asio::error::eof};
        return {{}, 0, true};
    }
    std::size_t n = 0;
    for (std::size_t i = 0; i < count && p.data.size() > 0; ++i)
    {
        auto k = asio::buffer_copy(b[i], p.data.data());
        p.data.consume(k);
        n += k;
    }
    state::wake(p.writer); // room again
    return {{}, n};
}

memory_stream::attempt memory_stream::try_write(state& s, int side, const asio::const_buffer* b, std::size_t count)
{
    if (s.closed[side])
        return {asio::error::bad_descriptor};
    auto& p = s.pipes[side];
    if (p.reader_gone)
        return {asio::error::broken_pipe};
    if (p.writer_done)
        return {asio::error::shut_down};
    std::size_t size = 0;
    for (std::size_t i = 0; i < count; ++i)
        size += b[i].size();
    if (size == 0)
        return {};
    if (p.data.size() >= s.capacity)
        return {{}, 0, true};
    std::size_t n = 0;
    for (std::size_t i = 0; i < count && p.data.size() < s.capacity; ++i)
    {
        auto k = std::min(b[i].size(), s.capacity - p.data.size());
        auto dst = p.data.prepare(k);
        asio::buffer_copy(dst, asio::buffer(b[i].data(), k));
        p.data.commit(k);
        n += k;
    }
    state::wake(p.reader); // bytes to read
    return {{}, n};
}

std::uint64_t memory_stream::park(state& s, int side, direction d, std::unique_ptr<waiter> w)
{
    auto& slot = d == reading ? s.pipes[1 - side].reader : s.pipes[side].writer;
    slot.w = std::move(w);
    slot.serial = ++s.next_serial;
    return slot.serial;
}

void memory_stream::cancel_parked(state& s, int side, direction d, std::uint64_t serial)
{
    auto l = lock(s);
    auto& slot = d == reading ? s.pipes[1 - side].reader : s.pipes[side].writer;
    if (slot.w && slot.serial == serial)
        state::wake(slot, asio::error::operation_aborted);
}

bool memory_stream::is_open() const noexcept
{
    if (!state_)
        return false;
    std::lock_guard l{state_->mutex};
    return !state_->closed[side_];
}

void memory_stream::close(boost::system::error_code& ec)
{
    ec = {};
    if (!state_)
        return;
    auto l = lock(*state_);
    auto& s = *state_;
    if (s.closed[side_])
        return;
    s.closed[side_] = true;
    auto& out = s.pipes[side_];
    auto& in = s.pipes[1 - side_];
    out.writer_done = true;
    in.reader_gone = true;
    in.data.consume(in.data.size());
    // This end's waits end; the peer's read sees eof and its write broken_pipe.
    state::wake(in.reader, asio::error::operation_aborted);
    state::wake(out.writer, asio::error::operation_aborted);
    state::wake(out.reader);
    state::wake(in.writer);
    s.notify_watcher(state_, 1 - side_);
    ++s.watch_gen[side_];
    s.on_peer_closed[side_] = nullptr;
}

void memory_stream::cancel(boost::system::error_code& ec)
{
    ec = {};
    if (!state_)
        return;
    auto l = lock(*state_);
    state::wake(state_->pipes[1 - side_].reader, asio::error::operation_aborted);
    state::wake(state_->pipes[side_].writer, asio::error::operation_aborted);
}

void memory_stream::shutdown(asio::socket_base::shutdown_type what, boost::system::error_code& ec)
{
    ec = {};
    if (!state_)
        return;
    if (what == asio::socket_base::shutdown_receive)
        return;
    auto l = lock(*state_);
    auto& out = state_->pipes[side_];
    out.writer_done = true;
    state::wake(out.reader);
}

void memory_stream::watch_peer(std::function<void()> f)
{
    if (!state_)
        return;
    auto l = lock(*state_);
    auto& s = *state_;
    ++s.watch_gen[side_];
    s.on_peer_closed[side_] = std::move(f);
    s.watcher_ex[side_] = ex_;
    if (s.closed[1 - side_])
        s.notify_watcher(state_, side_);
}

void memory_stream::unwatch_peer()
{
    if (!state_)
        return;
    auto l = lock(*state_);
    ++state_->watch_gen[side_];
    state_->on_peer_closed[side_] = nullptr;
}

void teardown(beast::role_type, memory_stream& s, boost::system::error_code& ec)
{
    s.shutdown(asio::socket_base::shutdown_send, ec);
    s.close(ec);
}

} // namespace coroute::detail
