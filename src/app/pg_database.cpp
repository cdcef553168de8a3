#include "app/pg_database.hpp"

#include "app/pg_connection.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <charconv>
#include <limits>

namespace coroute::app {

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// The columns of an item as the routes show them: timestamps as ISO 8601 in UTC.
#define COROUTE_ITEM_COLUMNS                                                                   \
    "id, name, price, "                                                                        \
    "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS created_at, " \
    "to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS updated_at"

// Every statement a pooled connection runs, prepared once per connection.
const std::vector<std::pair<const char*, const char*>> statements = {
    {"coroute_sleep", "SELECT pg_sleep($1::float8 / 1000)"},
    {"coroute_query", "SELECT " COROUTE_ITEM_COLUMNS " FROM items ORDER BY id LIMIT $1::bigint"},
    {"coroute_list", "SELECT c.total, i.* FROM (SELECT count(*) AS total FROM items) c "
                     "LEFT JOIN LATERAL (SELECT " COROUTE_ITEM_COLUMNS
                     " FROM items ORDER BY id LIMIT $1::bigint OFFSET $2::bigint) i ON true"},
    {"coroute_find", "SELECT " COROUTE_ITEM_COLUMNS " FROM items WHERE id = $1::bigint"},
    {"coroute_insert", "INSERT INTO items (name, price, created_at, updated_at) "
                       "SELECT $1::text, $2::float8, t, t FROM clock_timestamp() AS t RETURNING " COROUTE_ITEM_COLUMNS},
    {"coroute_replace", "UPDATE items SET name = $2::text, price = $3::float8, updated_at = clock_timestamp() "
                        "WHERE id = $1::bigint RETURNING " COROUTE_ITEM_COLUMNS},
    {"coroute_remove", "DELETE FROM items WHERE id = $1::bigint"},
};

// The table, its seed rows (only when it is created) and the trigger that sends every
// change to the `coroute_items` channel as the JSON of an `item` event. One process
// at a time, under a transaction-scoped advisory lock, so replicas starting together
// do not race.
constexpr const char* schema_sql = R"sql(
DO $schema$
BEGIN
  PERFORM pg_advisory_xact_lock(7105642);
  IF to_regclass('items') IS NULL THEN
    CREATE TABLE items (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
      price double precision NOT NULL CHECK (price >= 0 AND price < 'Infinity'),
      created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
      updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
    INSERT INTO items (name, price) VALUES
      ('Widget', 9.99), ('Gadget', 24.5), ('Sprocket', 3.25), ('Gizmo', 120), ('Doohickey', 0.75);
  END IF;
  CREATE OR REPLACE FUNCTION coroute_item_changed() RETURNS trigger LANGUAGE plpgsql AS $fn$
  BEGIN
    IF TG_OP = 'DELETE' THEN
      PERFORM pg_notify('coroute_items',
        json_build_object('op', 'deleted', 'item', json_build_object('id', OLD.id))::text);
      RETURN OLD;
    END IF;
    PERFORM pg_notify('coroute_items', json_build_object(
      'op', CASE TG_OP WHEN 'INSERT' THEN 'created' ELSE 'updated' END,
      'item', json_build_object(
        'id', NEW.id, 'name', NEW.name, 'price', NEW.price,
        'created_at', to_char(NEW.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'updated_at', to_char(NEW.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')))::text);
    RETURN NEW;
  END
  $fn$;
  CREATE OR REPLACE TRIGGER items_changed AFTER INSERT OR UPDATE OR DELETE ON items
    FOR EACH ROW EXECUTE FUNCTION coroute_item_changed();
END
$schema$)sql";

asio::awaitable<bool> cancelled()
{
    auto cs = co_await asio::this_coro::cancellation_state;
    co_return cs.cancelled() != asio::cancellation_type::none;
}

// A number as PostgreSQL reads it back exactly.
std::string number_text(double v)
{
    char buf[32];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    return std::string{buf, end};
}

// The item in columns first..first+4 of `row`.
item item_at(const PGresult* r, int row, int first)
{
    item i;
    i.id = std::strtoull(PQgetvalue(r, row, first), nullptr, 10);
    i.name = PQgetvalue(r, row, first + 1);
    std::string_view price = PQgetvalue(r, row, first + 2);
    std::from_chars(price.data(), price.data() + price.size(), i.price);
    i.created_at = PQgetvalue(r, row, first + 3);
    i.updated_at = PQgetvalue(r, row, first + 4);
    return i;
}

// What a failed statement means for the request that sent it.
db_error classify(const std::string& state)
{
    if (state == "57014")
        return db_error::timeout; // our own cancels never get here: statement_timeout
    if (state.starts_with("08") || state.starts_with("57P") || state.starts_with("53") || state == "40001" ||
        state == "40P01" || state == "55P03")
        return db_error::unreachable; // gone, shutting down, overloaded or a conflict: try again
    if (state.starts_with("22") || state.starts_with("23"))
        return db_error::rejected;
    return db_error::failed;
}

// Item ids are bigint on the server: a larger one is simply not there.
bool storable_id(std::uint64_t id)
{
    return id <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
}

} // namespace

// A query waiting for a pooled connection: handed one, or the right to open one.
struct pg_database::waiter
{
    explicit waiter(asio::any_io_executor ex) : timer(ex, asio::steady_timer::time_point::max()) {}
    asio::steady_timer timer;
    connection_ptr conn;
    bool may_open = false;
    bool stopped = false;
    bool granted = false; // any of the three above, as seen after the wait
};

pg_database::pg_database(asio::any_io_executor ex, db_options opts, std::shared_ptr<logger> log)
    : ex_(std::move(ex)),
      opts_(std::move(opts)),
      latency_(opts_.latency.value_or(0ms)),
      pool_size_(opts_.pool.value_or(16)),
      server_options_("-c statement_timeout=" + std::to_string(opts_.statement_timeout.count())),
      log_(std::move(log)),
      listen_strand_(asio::make_strand(ex_))
{
}

pg_database::~pg_database()
{
    blocking_.stop();
    blocking_.join();
}

void pg_database::on_change(change_observer f)
{
    auto shared = std::make_shared<const change_observer>(std::move(f));
    std::lock_guard lock{mutex_};
    observer_ = std::move(shared);
}

void pg_database::start()
{
    asio::co_spawn(listen_strand_, listen_loop(), asio::bind_cancellation_slot(listen_stop_.slot(), asio::detached));
}

asio::awaitable<void> pg_database::stop()
{
    std::vector<connection_ptr> idle;
    {
        std::lock_guard lock{mutex_};
        if (stopped_)
            co_return;
        stopped_ = true;
        idle.swap(idle_);
        open_ -= idle.size();
        for (auto& w : queue_)
        {
            w->stopped = true;
            w->timer.cancel();
        }
        queue_.clear();
    }
    asio::dispatch(listen_strand_, [self = shared_from_this()] { self->listen_stop_.emit(asio::cancellation_type::terminal); });
    // The blocking pool keeps running: a recovery's PQcancel or a connection's start
    // queued there would otherwise never complete, and its coroutine would hold the
    // caller's io_context forever. Each of them is short, and ends in a discard now.
    co_return; // the idle connections close here
}

void pg_database::set_down(std::string why)
{
    bool changed = false;
    {
        std::lock_guard lock{mutex_};
        changed = down_ != why;
        down_ = why;
        listening_ = false;
    }
    if (changed && log_)
        log_->warn("database: unreachable: " + why + " (retrying)");
}

std::optional<std::string> pg_database::unready() const
{
    std::lock_guard lock{mutex_};
    if (stopped_)
        return "the database connection is closed";
    if (!down_.empty())
        return "the database is unreachable: " + down_;
    if (!listening_)
        return "connecting to the database";
    return std::nullopt;
}

std::string pg_database::describe() const
{
    std::string where;
    char* err = nullptr;
    if (PQconninfoOption* opts = PQconninfoParse(opts_.url.c_str(), &err))
    {
        std::string db, user, host, port;
        for (auto* o = opts; o->keyword; ++o)
        {
            std::string_view k = o->keyword;
            std::string v = o->val ? o->val : "";
            if (k == "dbname")
                db = v;
            else if (k == "user")
                user = v;
            else if (k == "host")
                host = v;
            else if (k == "port")
                port = v;
        }
        PQconninfoFree(opts);
        where = " database " + (db.empty() ? std::string{"(default)"} : db) + (user.empty() ? "" : " as " + user) +
                " on " + (host.empty() ? std::string{"the default socket"} : host) + (port.empty() ? "" : ":" + port);
    }
    if (err)
        PQfreemem(err);
    return "database: PostgreSQL," + where + ", pool of " + std::to_string(pool_size_) + " connections" +
           (latency_.count() ? ", " + std::to_string(latency_.count()) + " ms pg_sleep per query" : "");
}

std::size_t pg_database::in_flight() const
{
    std::lock_guard lock{mutex_};
    return in_flight_;
}

std::size_t pg_database::peak_in_flight() const
{
    std::lock_guard lock{mutex_};
    return peak_;
}

std::size_t pg_database::open_connections() const
{
    std::lock_guard lock{mutex_};
    return open_;
}

asio::awaitable<std::string> pg_database::ensure_schema(pg::connection& c)
{
    {
        std::lock_guard lock{mutex_};
        if (schema_ready_)
            co_return std::string{};
    }
    auto failure = co_await c.exec(schema_sql);
    if (failure.empty())
    {
        std::lock_guard lock{mutex_};
        schema_ready_ = true;
    }
    else
        failure = "cannot create the items table: " + failure;
    co_return failure;
}

void pg_database::release(connection_ptr c)
{
    connection_ptr closing;
    {
        std::lock_guard lock{mutex_};
        if (!stopped_ && c->epoch == epoch_ && PQstatus(c->native()) == CONNECTION_OK)
        {
            if (!queue_.empty())
            {
                // Straight to the oldest waiter: its wait began under this lock.
                auto w = std::move(queue_.front());
                queue_.pop_front();
                w->conn = std::move(c);
                w->timer.cancel();
                return;
            }
            idle_.push_back(std::move(c));
            return;
        }
        closing = std::move(c);
    }
    discard(std::move(closing));
}

void pg_database::discard(connection_ptr c)
{
    {
        std::lock_guard lock{mutex_};
        --open_;
        // The slot goes to the oldest waiter, which opens a connection of its own.
        if (!stopped_ && !queue_.empty() && open_ < pool_size_)
        {
            ++open_;
            auto w = std::move(queue_.front());
            queue_.pop_front();
            w->may_open = true;
            w->timer.cancel();
        }
    }
    c.reset(); // closes it, outside the lock
}

asio::awaitable<boost::system::result<pg_database::connection_ptr, std::string>> pg_database::open_prepared()
{
    auto r = co_await pg::connection::open(ex_, blocking_, opts_.url, server_options_, opts_.connect_timeout);
    if (!r)
        co_return r.error();
    auto failure = co_await ensure_schema(**r);
    if (failure.empty())
        failure = co_await (*r)->prepare(statements);
    if (!failure.empty())
        co_return failure;
    co_return *r;
}

asio::awaitable<pg_database::acquired> pg_database::open_for_pool()
{
    bool backing_off = false;
    {
        std::lock_guard lock{mutex_};
        backing_off = clock_type::now() < retry_at_;
    }
    if (backing_off)
    {
        discard(nullptr);
        co_return db_error::unreachable;
    }
    // Opened apart from the caller's cancellation: the connection is worth keeping
    // even when the request that asked for it has gone.
    auto self = shared_from_this();
    // On a strand: a connection's waits and its connect timeout are never run side by side.
    auto strand = asio::make_strand(ex_);
    auto r = co_await asio::co_spawn(strand, open_prepared(),
                                     asio::bind_cancellation_slot(asio::cancellation_slot{}, asio::use_awaitable));
    if (!r)
    {
        bool new_failure = false;
        {
            std::lock_guard lock{mutex_};
            backoff_ = backoff_.count() ? std::min<std::chrono::milliseconds>(backoff_ * 2, 5s) : 100ms;
            retry_at_ = clock_type::now() + backoff_;
            new_failure = r.error() != last_open_failure_;
            last_open_failure_ = r.error();
        }
        if (log_ && new_failure)
            log_->warn("database: cannot open a connection: " + r.error());
        discard(nullptr);
        co_return db_error::unreachable;
    }
    {
        std::lock_guard lock{mutex_};
        backoff_ = 0ms;
        last_open_failure_.clear();
        (*r)->epoch = epoch_;
    }
    bool stop = co_await cancelled();
    if (stop)
    {
        release(*r);
        co_return asio::error::operation_aborted;
    }
    co_return *r;
}

asio::awaitable<std::shared_ptr<pg_database::waiter>> pg_database::wait_turn(asio::any_io_executor ex)
{
    auto w = std::make_shared<waiter>(std::move(ex));
    // The decision and the start of the wait happen under one lock, so a connection
    // handed over by another thread is never missed.
    // Named: GCC 12 destroys a temporary in a co_await expression twice.
    auto start = [this, w](auto handler) {
            std::lock_guard lock{mutex_};
            w->timer.async_wait(std::move(handler));
            if (stopped_)
                w->stopped = true;
            else if (!idle_.empty())
            {
                w->conn = std::move(idle_.back());
                idle_.pop_back();
            }
            else if (open_ < pool_size_)
            {
                ++open_;
                w->may_open = true;
            }
            else
            {
                queue_.push_back(w);
                return;
            }
            w->timer.cancel();
        };
    co_await asio::async_initiate<decltype(use_tuple), void(boost::system::error_code)>(std::move(start), use_tuple);
    {
        std::lock_guard lock{mutex_};
        w->granted = w->stopped || w->conn || w->may_open;
        if (!w->granted) // cancelled while queued: leave the queue
            queue_.erase(std::remove(queue_.begin(), queue_.end(), w), queue_.end());
    }
    co_return w;
}

asio::awaitable<pg_database::acquired> pg_database::acquire()
{
    auto ex = co_await asio::this_coro::executor;
    for (;;)
    {
        auto w = co_await wait_turn(ex);
        if (w->stopped)
            co_return db_error::unreachable;
        if (!w->granted)
            co_return asio::error::operation_aborted;
        bool stop = co_await cancelled();
        if (stop)
        {
            if (w->conn)
                release(std::move(w->conn));
            else
                discard(nullptr);
            co_return asio::error::operation_aborted;
        }
        if (w->may_open)
        {
            auto opened = co_await open_for_pool();
            co_return opened;
        }
        auto c = std::move(w->conn);
        if (usable(*c))
            co_return c;
        discard(std::move(c)); // take another
    }
}

bool pg_database::usable(pg::connection& c)
{
    std::uint64_t epoch = 0;
    {
        std::lock_guard lock{mutex_};
        epoch = epoch_;
    }
    if (c.epoch == epoch && c.idle_and_healthy())
        return true;
    if (log_)
        log_->debug(c.epoch != epoch ? "database: a connection from before an outage is closed"
                                     : "database: an idle connection had failed; it is closed");
    return false;
}

asio::awaitable<db_result<std::shared_ptr<pg::outcome>>> pg_database::execute(latency l, pg::step stmt, bool rerun)
{
    // The caller's coroutine may throw at any co_await once it is cancelled (Asio's
    // default, kept by co_spawn'd workers such as /api/db/parallel's and the jobs'):
    // that would unwind past a pooled connection and lose its slot for good. The
    // pipeline runs with throwing off and reports cancellation as operation_aborted;
    // the caller's setting comes back before we return.
    bool throws = co_await asio::this_coro::throw_if_cancelled();
    co_await asio::this_coro::throw_if_cancelled(false);
    std::exception_ptr escaped;
    db_result<std::shared_ptr<pg::outcome>> out = db_error::failed;
    try
    {
        out = co_await run_pipeline(l, std::move(stmt), rerun);
    }
    catch (...)
    {
        escaped = std::current_exception();
    }
    co_await asio::this_coro::throw_if_cancelled(throws);
    if (escaped)
        std::rethrow_exception(escaped);
    co_return out;
}

asio::awaitable<db_result<std::shared_ptr<pg::outcome>>> pg_database::run_pipeline(latency l, pg::step stmt,
                                                                                   bool rerun)
{
    auto self = shared_from_this();
    std::vector<pg::step> steps;
    if (auto d = l.value_or(latency_); d.count() > 0)
        {
        pg::step sleep{"coroute_sleep", {std::to_string(d.count())}};
        steps.push_back(std::move(sleep));
    }
    steps.push_back(std::move(stmt));

    {
        std::lock_guard lock{mutex_};
        peak_ = std::max(peak_, ++in_flight_);
    }
    struct leave
    {
        pg_database* db;
        ~leave()
        {
            std::lock_guard lock{db->mutex_};
            --db->in_flight_;
        }
    } counted{this};

    for (int attempt = 0;; ++attempt)
    {
        auto c = co_await acquire();
        if (!c)
            co_return c.error();
        bool reused = (*c)->uses > 0;
        auto ran = co_await (*c)->run(steps);
        auto out = std::make_shared<pg::outcome>(std::move(ran));
        if (out->state == pg::outcome::kind::cancelled)
        {
            // A strand of its own: the drain and its time limit are two coroutines.
            asio::co_spawn(asio::make_strand(ex_), recover(std::move(*c)), asio::detached);
            co_return asio::error::operation_aborted;
        }
        if (out->state == pg::outcome::kind::broken)
        {
            if (log_)
                log_->debug("database: a connection failed: " + out->message);
            discard(std::move(*c));
            if (rerun && reused && attempt == 0)
                continue;
            co_return db_error::unreachable;
        }
        release(std::move(*c));
        for (auto& r : out->results)
        {
            auto st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
            if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK || st == PGRES_PIPELINE_ABORTED)
                continue;
            auto state = pg::sqlstate(r.get());
            auto e = classify(state);
            if (log_ && (e == db_error::failed || e == db_error::unreachable))
                log_->warn(std::string{"database: "} + steps.back().statement + " failed: " + pg::error_text(r.get()) +
                           (state.empty() ? "" : " (SQLSTATE " + state + ")"));
            co_return e;
        }
        co_return out;
    }
}

asio::awaitable<void> pg_database::recover(connection_ptr c)
{
    auto self = shared_from_this();
    // PQcancel blocks until the server has the request: off the event loop.
    if (PGcancel* k = PQgetCancel(c->native()))
    {
        auto send = [k]() -> asio::awaitable<void> {
            char err[256];
            PQcancel(k, err, sizeof err);
            PQfreeCancel(k);
            co_return;
        };
        co_await asio::co_spawn(blocking_, std::move(send), asio::use_awaitable);
    }
    bool stopped = false;
    {
        std::lock_guard lock{mutex_};
        stopped = stopped_;
    }
    if (stopped)
    {
        discard(std::move(c)); // no one will use it again: no need to wait for its drain
        co_return;
    }
    using namespace asio::experimental::awaitable_operators;
    asio::steady_timer limit{ex_, 5s};
    auto drained = c->drain();
    auto expired = limit.async_wait(asio::use_awaitable);
    auto r = co_await (std::move(drained) || std::move(expired));
    if (r.index() == 0 && std::get<0>(r))
        release(std::move(c));
    else
        discard(std::move(c));
}

asio::awaitable<void> pg_database::listen_loop()
{
    auto self = shared_from_this();
    co_await asio::this_coro::throw_if_cancelled(false); // the stop is seen where we look for it
    auto backoff = 100ms;
    for (;;)
    {
        auto r = co_await pg::connection::open(ex_, blocking_, opts_.url, server_options_, opts_.connect_timeout);
        bool stop = co_await cancelled();
        if (stop)
            co_return;
        std::string failure = r ? std::string{} : r.error();
        if (r)
            failure = co_await ensure_schema(**r);
        if (failure.empty())
            failure = co_await (*r)->exec("LISTEN coroute_items");
        if (!failure.empty())
        {
            set_down(failure);
            asio::steady_timer t{ex_, backoff};
            co_await t.async_wait(use_tuple);
            stop = co_await cancelled();
            if (stop)
                co_return;
            backoff = std::min<std::chrono::milliseconds>(backoff * 2, 5s);
            continue;
        }
        backoff = 100ms;
        bool again = false;
        {
            std::lock_guard lock{mutex_};
            again = !down_.empty();
            down_.clear();
            listening_ = true;
            retry_at_ = {};
            backoff_ = 0ms;
        }
        if (log_)
            log_->info(std::string{"database: "} + (again ? "reconnected" : "connected") + " to PostgreSQL " +
                       std::to_string(PQserverVersion((*r)->native()) / 10000) + ", listening for item changes");
        auto deliver = [this](const std::string& payload) {
            // Whoever sent it, only a well-formed event reaches the streams.
            boost::system::error_code ec;
            auto doc = boost::json::parse(payload, ec);
            if (ec || !doc.is_object() || !doc.as_object().contains("op"))
                return;
            std::shared_ptr<const change_observer> observer;
            {
                std::lock_guard lock{mutex_};
                observer = observer_;
            }
            if (observer && *observer)
                (*observer)(boost::json::serialize(doc));
        };
        co_await (*r)->receive_notifications(deliver);
        std::string lost = PQerrorMessage((*r)->native());
        {
            std::lock_guard lock{mutex_};
            ++epoch_; // connections opened before may be as dead as this one
        }
        stop = co_await cancelled();
        if (stop)
            co_return;
        while (!lost.empty() && (lost.back() == '\n' || lost.back() == ' '))
            lost.pop_back();
        set_down("lost the connection" + (lost.empty() ? std::string{} : ": " + lost));
    }
}

asio::awaitable<db_result<std::vector<item>>> pg_database::query(std::size_t limit, latency l)
{
    pg::step stmt{"coroute_query", {std::to_string(limit)}};
    auto out = co_await execute(l, std::move(stmt), true);
    if (!out)
        co_return out.error();
    auto* r = (*out)->results.back().get();
    std::vector<item> rows;
    for (int i = 0, n = PQntuples(r); i < n; ++i)
        rows.push_back(item_at(r, i, 0));
    co_return rows;
}

asio::awaitable<db_result<item_page>> pg_database::list(std::size_t limit, std::size_t offset, latency l)
{
    pg::step stmt{"coroute_list", {std::to_string(limit), std::to_string(offset)}};
    auto out = co_await execute(l, std::move(stmt), true);
    if (!out)
        co_return out.error();
    auto* r = (*out)->results.back().get();
    item_page page;
    for (int i = 0, n = PQntuples(r); i < n; ++i)
    {
        page.total = std::strtoull(PQgetvalue(r, i, 0), nullptr, 10);
        if (!PQgetisnull(r, i, 1)) // past the end: one row with the total and no item
            page.items.push_back(item_at(r, i, 1));
    }
    co_return page;
}

asio::awaitable<db_result<std::optional<item>>> pg_database::find(std::uint64_t id, latency l)
{
    if (!storable_id(id))
        co_return std::optional<item>{};
    pg::step stmt{"coroute_find", {std::to_string(id)}};
    auto out = co_await execute(l, std::move(stmt), true);
    if (!out)
        co_return out.error();
    auto* r = (*out)->results.back().get();
    if (PQntuples(r) == 0)
        co_return std::optional<item>{};
    co_return std::optional<item>{item_at(r, 0, 0)};
}

asio::awaitable<db_result<item>> pg_database::insert(item_fields f, latency l)
{
    pg::step stmt{"coroute_insert", {std::move(f.name), number_text(f.price)}};
    auto out = co_await execute(l, std::move(stmt), false);
    if (!out)
        co_return out.error();
    auto* r = (*out)->results.back().get();
    if (PQntuples(r) != 1)
        co_return db_error::failed;
    co_return item_at(r, 0, 0);
}

asio::awaitable<db_result<std::optional<item>>> pg_database::replace(std::uint64_t id, item_fields f, latency l)
{
    if (!storable_id(id))
        co_return std::optional<item>{};
    pg::step stmt{"coroute_replace", {std::to_string(id), std::move(f.name), number_text(f.price)}};
    auto out = co_await execute(l, std::move(stmt), false);
    if (!out)
        co_return out.error();
    auto* r = (*out)->results.back().get();
    if (PQntuples(r) == 0)
        co_return std::optional<item>{};
    co_return std::optional<item>{item_at(r, 0, 0)};
}

asio::awaitable<db_result<bool>> pg_database::remove(std::uint64_t id, latency l)
{
    if (!storable_id(id))
        co_return false;
    pg::step stmt{"coroute_remove", {std::to_string(id)}};
    auto out = co_await execute(l, std::move(stmt), false);
    if (!out)
        co_return db_result<bool>{boost::system::in_place_error, out.error()};
    const char* affected = PQcmdTuples((*out)->results.back().get());
    co_return affected && std::string_view{affected} != "0" && *affected != '\0';
}

} // namespace coroute::app
