#include "app/pg_database.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>

#include <libpq-fe.h>

#include <condition_variable>
#include <cstdlib>
#include <future>
#include <limits>
#include <thread>

// The PostgreSQL backend against a real server: COROUTE_TEST_PG names it
// (`pgserver.py run -- coroute_unit_tests "[pg]"`; CTest's `unit-pg` entry). The
// tests are hidden ([.]) so that a run without a server does not pick them up.

using namespace coroute;
using namespace coroute::app;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

std::string base_url()
{
    const char* url = std::getenv("COROUTE_TEST_PG");
    if (!url || !*url)
        throw std::runtime_error("COROUTE_TEST_PG is not set: run the [pg] tests under tests/integration/pgserver.py run");
    return url;
}

std::string conninfo_value(std::string_view v)
{
    std::string out = "'";
    for (char c : v)
    {
        if (c == '\'' || c == '\\')
            out += '\\';
        out += c;
    }
    return out + "'";
}

// The server of COROUTE_TEST_PG, database `dbname`, as a keyword=value conninfo.
std::string conninfo_for(const std::string& dbname)
{
    char* err = nullptr;
    PQconninfoOption* opts = PQconninfoParse(base_url().c_str(), &err);
    if (!opts)
    {
        std::string why = err ? err : "out of memory";
        PQfreemem(err);
        throw std::runtime_error("COROUTE_TEST_PG: " + why);
    }
    std::string out;
    for (auto* o = opts; o->keyword; ++o)
        if (o->val && std::string_view{o->keyword} != "dbname")
            out += std::string{o->keyword} + "=" + conninfo_value(o->val) + " ";
    PQconninfoFree(opts);
    return out + "dbname=" + conninfo_value(dbname);
}

// A blocking libpq connection of the test's own, standing for another process.
class admin
{
public:
    explicit admin(const std::string& dbname = "postgres") : conn_(PQconnectdb(conninfo_for(dbname).c_str()))
    {
        if (PQstatus(conn_) != CONNECTION_OK)
        {
            std::string why = PQerrorMessage(conn_);
            PQfinish(conn_);
            throw std::runtime_error("cannot connect to the test server: " + why);
        }
    }
    ~admin() { PQfinish(conn_); }
    admin(const admin&) = delete;
    admin& operator=(const admin&) = delete;

    /// Runs `sql`; the first column of the first row, or "" when there is none.
    std::string exec(const std::string& sql)
    {
        PGresult* r = PQexec(conn_, sql.c_str());
        auto st = PQresultStatus(r);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        {
            std::string why = PQresultErrorMessage(r);
            PQclear(r);
            throw std::runtime_error(sql + ": " + why);
        }
        std::string out = PQntuples(r) > 0 && PQnfields(r) > 0 ? PQgetvalue(r, 0, 0) : "";
        PQclear(r);
        return out;
    }

    /// Backends of coroute on `dbname` (optionally narrowed by `where`).
    int coroute_backends(const std::string& dbname, const std::string& where = "")
    {
        return std::stoi(exec("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'coroute' "
                              "AND datname = '" + dbname + "' " + where));
    }

private:
    PGconn* conn_;
};

const std::string sleeping = "AND state = 'active' AND query LIKE '%pg_sleep%'";

// A database of its own per test, made afresh: coroute creates and seeds the table.
std::string fresh_database(const std::string& name)
{
    admin a;
    a.exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
    a.exec("CREATE DATABASE " + name);
    return conninfo_for(name);
}

template <class F>
bool eventually(F f, std::chrono::milliseconds limit, std::chrono::milliseconds step = 20ms)
{
    auto until = clock_type::now() + limit;
    for (;;)
    {
        if (f())
            return true;
        if (clock_type::now() >= until)
            return false;
        std::this_thread::sleep_for(step);
    }
}

// The changes an observer saw, handed from the loop's thread to the test's.
class changes
{
public:
    void push(const std::string& event)
    {
        std::lock_guard lock{mutex_};
        events_.push_back(event);
        cv_.notify_all();
    }
    /// The next change within `limit`, parsed; null when none came.
    boost::json::value next(std::chrono::milliseconds limit = 5s)
    {
        std::unique_lock lock{mutex_};
        if (!cv_.wait_for(lock, limit, [&] { return taken_ < events_.size(); }))
            return nullptr;
        return boost::json::parse(events_[taken_++]);
    }
    std::size_t count()
    {
        std::lock_guard lock{mutex_};
        return events_.size();
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<std::string> events_;
    std::size_t taken_ = 0;
};

// A pg_database on an io_context run by one thread of its own, as the server runs it.
class pg_fixture
{
public:
    pg_fixture(const std::string& name, db_options o, changes* seen = nullptr, int threads = 1) : dbname(name)
    {
        if (o.url == "sim")
            o.url = fresh_database(name);
        db = std::make_shared<pg_database>(ioc_.get_executor(), o, nullptr);
        if (seen)
            db->on_change([seen](const std::string& e) { seen->push(e); });
        db->start();
        runner_ = std::thread([this, threads] {
            std::vector<std::thread> more;
            for (int i = 1; i < threads; ++i)
                more.emplace_back([this] { ioc_.run(); });
            ioc_.run();
            for (auto& t : more)
                t.join();
            ran_out_.set_value();
        });
    }

    ~pg_fixture() { stop(); }

    /// Runs `a` on the loop; its result, or an exception when it takes longer than `limit`.
    template <class T>
    T run(asio::awaitable<T> a, std::chrono::milliseconds limit = 10s)
    {
        auto fut = asio::co_spawn(ioc_, std::move(a), asio::use_future);
        if (fut.wait_for(limit) != std::future_status::ready)
            throw std::runtime_error("a database operation did not finish in time");
        return fut.get();
    }

    /// Starts `a` on the loop, cancellable through `signal` (emitted on the loop).
    template <class T>
    std::future<T> spawn(asio::awaitable<T> a, asio::cancellation_signal* signal = nullptr)
    {
        if (signal)
            return asio::co_spawn(ioc_, std::move(a), asio::bind_cancellation_slot(signal->slot(), asio::use_future));
        return asio::co_spawn(ioc_, std::move(a), asio::use_future);
    }

    void cancel(asio::cancellation_signal& signal)
    {
        asio::post(ioc_, [&signal] { signal.emit(asio::cancellation_type::terminal); });
    }

    asio::io_context& context() { return ioc_; }

    /// Stops the database, then lets the loop run out of work: true when it did
    /// within a few seconds (nothing the database started is left waiting).
    bool stop()
    {
        if (stopped_)
            return drained_;
        stopped_ = true;
        try
        {
            run(db->stop(), 5s);
        }
        catch (...)
        {
        }
        work_.reset();
        drained_ = ran_out_.get_future().wait_for(5s) == std::future_status::ready;
        if (!drained_)
            ioc_.stop();
        runner_.join();
        return drained_;
    }

    std::string dbname;

private:
    asio::io_context ioc_;
    asio::executor_work_guard<asio::io_context::executor_type> work_{ioc_.get_executor()};
    std::promise<void> ran_out_;
    std::thread runner_;
    bool stopped_ = false, drained_ = false;

public:
    std::shared_ptr<pg_database> db; // destroyed before the loop
};

db_options pool_of(std::size_t n)
{
    db_options o;
    o.pool = n;
    return o;
}

bool is_timestamp(const std::string& s)
{
    // YYYY-MM-DDTHH:MM:SSZ
    if (s.size() != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != 'Z')
        return false;
    for (int i : {0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18})
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

std::chrono::milliseconds since(clock_type::time_point start)
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - start);
}

// A caller with Asio's default throw_if_cancelled(true): the query, then whether
// the caller's setting is still its own.
asio::awaitable<std::pair<db_result<std::vector<item>>, bool>> query_as_caller(std::shared_ptr<pg_database> db,
                                                                                 std::chrono::milliseconds delay)
{
    auto rows = co_await db->query(1, delay);
    bool throws = co_await asio::this_coro::throw_if_cancelled();
    co_return std::pair{std::move(rows), throws};
}

} // namespace

// Arguments to coroutines are named locals, never braced temporaries (GCC 12).

TEST_CASE("pg_database: insert, find, replace and remove work, and list counts every row", "[pg][.]")
{
    pg_fixture f{"unit_crud", pool_of(4)};
    auto& db = *f.db;
    auto page = f.run(db.list(10, 0));
    REQUIRE(page.has_value());
    CHECK(page->total == 5);
    REQUIRE(page->items.size() == 5);
    CHECK(page->items.front().name == "Widget");
    CHECK(page->items.back().name == "Doohickey");

    item_fields bolt{"Bolt", 2.5};
    auto made = f.run(db.insert(bolt));
    REQUIRE(made.has_value());
    CHECK(made->id == 6);
    CHECK(made->name == "Bolt");
    CHECK(made->price == 2.5);
    CHECK(is_timestamp(made->created_at));
    CHECK(made->updated_at == made->created_at);

    auto found = f.run(db.find(6));
    REQUIRE(found.has_value());
    REQUIRE(found->has_value());
    CHECK((*found)->name == "Bolt");
    CHECK((*found)->created_at == made->created_at);

    item_fields nut{"Nut", 0.1};
    auto replaced = f.run(db.replace(6, nut));
    REQUIRE(replaced.has_value());
    REQUIRE(replaced->has_value());
    CHECK((*replaced)->name == "Nut");
    CHECK((*replaced)->price == 0.1);
    CHECK((*replaced)->created_at == made->created_at);
    CHECK((*replaced)->updated_at >= made->updated_at);
    auto none = f.run(db.replace(999, nut));
    REQUIRE(none.has_value());
    CHECK_FALSE(none->has_value());

    auto tail = f.run(db.list(2, 4));
    REQUIRE(tail.has_value());
    CHECK(tail->total == 6);
    REQUIRE(tail->items.size() == 2);
    CHECK(tail->items[0].id == 5);
    CHECK(tail->items[1].name == "Nut");
    auto past = f.run(db.list(5, 100));
    REQUIRE(past.has_value());
    CHECK(past->items.empty());
    CHECK(past->total == 6);

    auto removed = f.run(db.remove(6));
    REQUIRE(removed.has_value());
    CHECK(*removed);
    auto again = f.run(db.remove(6));
    REQUIRE(again.has_value());
    CHECK_FALSE(*again);
    auto gone = f.run(db.find(6));
    REQUIRE(gone.has_value());
    CHECK_FALSE(gone->has_value());
    auto rows = f.run(db.query(100));
    REQUIRE(rows.has_value());
    CHECK(rows->size() == 5);
    CHECK(f.stop());
}

TEST_CASE("pg_database: a latency is a pg_sleep on the server in the query's round trip", "[pg][.]")
{
    db_options o = pool_of(2);
    o.latency = 150ms;
    pg_fixture f{"unit_latency", o};
    admin a;
    auto warm = f.run(f.db->query(1, 0ms));
    REQUIRE(warm.has_value());

    auto start = clock_type::now();
    auto rows = f.run(f.db->query(1));
    CHECK(since(start) >= 150ms);
    REQUIRE(rows.has_value());
    CHECK(rows->size() == 1);

    // A per-call latency instead, seen sleeping by another connection while it runs.
    start = clock_type::now();
    auto slow = f.spawn(f.db->query(1, 800ms));
    CHECK(eventually([&] { return a.coroute_backends(f.dbname, sleeping) == 1; }, 700ms));
    REQUIRE(slow.wait_for(5s) == std::future_status::ready);
    CHECK(since(start) >= 800ms);
    CHECK(slow.get().has_value());
    CHECK(a.coroute_backends(f.dbname, sleeping) == 0);
    CHECK(f.stop());
}

TEST_CASE("pg_database: 20 queries on one thread overlap on a pool of 20", "[pg][.]")
{
    pg_fixture f{"unit_overlap", pool_of(20)};
    std::vector<std::future<db_result<std::vector<item>>>> queries;
    auto start = clock_type::now();
    for (int i = 0; i < 20; ++i)
        queries.push_back(f.spawn(f.db->query(1, 200ms)));
    int ok = 0;
    for (auto& q : queries)
        if (q.wait_for(10s) == std::future_status::ready && q.get().has_value())
            ++ok;
    auto took = since(start);
    CHECK(ok == 20);
    CHECK(took >= 200ms);
    CHECK(took < 2000ms); // one after another: 4 s
    CHECK(f.db->peak_in_flight() == 20);
    CHECK(f.db->open_connections() <= 20);
    CHECK(f.stop());
}

TEST_CASE("pg_database: past the pool, queries wait their turn without failing", "[pg][.]")
{
    pg_fixture f{"unit_pool", pool_of(2)};
    std::vector<std::future<db_result<std::vector<item>>>> queries;
    auto start = clock_type::now();
    for (int i = 0; i < 6; ++i)
        queries.push_back(f.spawn(f.db->query(1, 100ms)));
    int ok = 0;
    std::size_t most_open = 0;
    for (auto& q : queries)
    {
        while (q.wait_for(5ms) != std::future_status::ready && since(start) < 10s)
            most_open = std::max(most_open, f.db->open_connections());
        if (q.get().has_value())
            ++ok;
    }
    CHECK(ok == 6);
    CHECK(since(start) >= 290ms); // three rounds of two
    CHECK(most_open <= 2);
    CHECK(f.db->open_connections() == 2);
    CHECK(f.stop());
}

TEST_CASE("pg_database: a cancelled query ends at once, is cancelled on the server, and the connection serves again",
          "[pg][.]")
{
    pg_fixture f{"unit_cancel", pool_of(1)};
    admin a;
    asio::cancellation_signal signal;
    // Cancelled, the caller's next co_await would throw: the database must not let
    // that unwind past the pooled connection (it did, and the pool of one was gone).
    auto slow = f.spawn(query_as_caller(f.db, 5000ms), &signal);
    REQUIRE(eventually([&] { return a.coroute_backends(f.dbname, sleeping) == 1; }, 3s));

    auto cancelled_at = clock_type::now();
    f.cancel(signal);
    REQUIRE(slow.wait_for(3s) == std::future_status::ready);
    CHECK(since(cancelled_at) < 500ms);
    auto [r, caller_throws] = slow.get();
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == asio::error::operation_aborted);
    CHECK(caller_throws); // the caller's own setting, given back

    CHECK(eventually([&] { return a.coroute_backends(f.dbname, sleeping) == 0; }, 2s));
    CHECK(f.db->open_connections() <= 1);
    auto start = clock_type::now();
    auto next = f.run(f.db->query(2));
    REQUIRE(next.has_value());
    CHECK(next->size() == 2);
    CHECK(since(start) < 2s);
    CHECK(f.db->open_connections() <= 1);
    CHECK(a.coroute_backends(f.dbname) <= 2); // the pool and the listener
    CHECK(f.stop());
}

namespace {

// One 2 s query per signal, each on a strand of its own as the server's requests are,
// cancelled through its signal.
std::vector<std::future<std::pair<db_result<std::vector<item>>, bool>>>
spawn_slow_queries(pg_fixture& f, std::vector<asio::cancellation_signal>& signals)
{
    std::vector<std::future<std::pair<db_result<std::vector<item>>, bool>>> slow;
    for (auto& s : signals)
    {
        auto strand = asio::make_strand(f.context());
        slow.push_back(asio::co_spawn(strand, query_as_caller(f.db, 2000ms),
                                      asio::bind_cancellation_slot(s.slot(), asio::use_future)));
    }
    return slow;
}

} // namespace

TEST_CASE("pg_database: on a loop of two threads, cancelled queries are recovered and their connections serve again",
          "[pg][.]")
{
    // recover() and new connections run on the loop's executor, whose two threads may
    // complete a socket wait while the other is still starting it: this once read a
    // freed coroutine frame (a crash every few cancellations under the server).
    pg_fixture f{"unit_cancel_threads", pool_of(4), nullptr, 2};
    admin a;
    for (int round = 0; round < 15; ++round)
    {
        std::vector<asio::cancellation_signal> signals(4);
        auto slow = spawn_slow_queries(f, signals);
        REQUIRE(eventually([&] { return a.coroute_backends(f.dbname, sleeping) == 4; }, 3s));
        for (auto& s : signals)
            f.cancel(s);
        for (auto& q : slow)
        {
            REQUIRE(q.wait_for(3s) == std::future_status::ready);
            auto r = q.get().first;
            REQUIRE_FALSE(r.has_value());
            CHECK(r.error() == asio::error::operation_aborted);
        }
        std::vector<std::future<db_result<std::vector<item>>>> quick;
        for (int i = 0; i < 4; ++i)
            quick.push_back(f.spawn(f.db->query(1, 0ms)));
        for (auto& q : quick)
        {
            REQUIRE(q.wait_for(5s) == std::future_status::ready);
            CHECK(q.get().has_value());
        }
        CHECK(f.db->open_connections() <= 4);
    }
    CHECK(eventually([&] { return a.coroute_backends(f.dbname, sleeping) == 0; }, 2s));
    CHECK(f.stop());
}

TEST_CASE("pg_database: stopped while cancelled queries recover, it leaves nothing waiting on the loop", "[pg][.]")
{
    // The stop comes as the recoveries send PQcancel on the blocking pool: each must
    // still complete (and close its connection), or its coroutine holds the loop.
    pg_fixture f{"unit_stop_recovering", pool_of(4), nullptr, 2};
    admin a;
    std::vector<asio::cancellation_signal> signals(4);
    auto slow = spawn_slow_queries(f, signals);
    REQUIRE(eventually([&] { return a.coroute_backends(f.dbname, sleeping) == 4; }, 3s));
    for (auto& s : signals)
        f.cancel(s);
    for (auto& q : slow)
        REQUIRE(q.wait_for(3s) == std::future_status::ready);
    CHECK(f.stop());
    CHECK(eventually([&] { return a.coroute_backends(f.dbname) == 0; }, 3s));
}

TEST_CASE("pg_database: a cancelled write is not applied and the connection serves again", "[pg][.]")
{
    pg_fixture f{"unit_cancel_write", pool_of(1)};
    admin a{"unit_cancel_write"};
    auto warm = f.run(f.db->query(1, 0ms));
    REQUIRE(warm.has_value());
    asio::cancellation_signal signal;
    item_fields late{"Too late", 1};
    auto write = f.spawn(f.db->insert(late, 3000ms), &signal);
    REQUIRE(eventually([&] { return a.coroute_backends(f.dbname, sleeping) == 1; }, 3s));
    f.cancel(signal);
    REQUIRE(write.wait_for(3s) == std::future_status::ready);
    auto r = write.get();
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == asio::error::operation_aborted);
    auto page = f.run(f.db->list(10, 0));
    REQUIRE(page.has_value());
    CHECK(page->total == 5);
    CHECK(a.exec("SELECT count(*) FROM items WHERE name = 'Too late'") == "0");
    CHECK(f.stop());
}

TEST_CASE("pg_database: the server's statement_timeout ends a query as a timeout", "[pg][.]")
{
    db_options o = pool_of(1);
    o.statement_timeout = 200ms;
    pg_fixture f{"unit_statement_timeout", o};
    auto start = clock_type::now();
    auto r = f.run(f.db->query(1, 3000ms));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == db_error::timeout);
    CHECK(since(start) < 2s);
    auto next = f.run(f.db->query(1, 0ms));
    CHECK(next.has_value());
    CHECK(f.stop());
}

TEST_CASE("pg_database: a value the server refuses is rejected and the connection serves again", "[pg][.]")
{
    pg_fixture f{"unit_rejected", pool_of(1)};
    item_fields too_long{std::string(101, 'x'), 1};
    item_fields negative{"Negative", -1};
    item_fields infinite{"Infinite", std::numeric_limits<double>::infinity()};
    item_fields not_a_number{"NaN", std::numeric_limits<double>::quiet_NaN()};
    for (auto* fields : {&too_long, &negative, &infinite, &not_a_number})
    {
        auto copy = *fields;
        auto r = f.run(f.db->insert(copy));
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error() == db_error::rejected);
        auto copy2 = *fields;
        auto p = f.run(f.db->replace(1, copy2));
        REQUIRE_FALSE(p.has_value());
        CHECK(p.error() == db_error::rejected);
    }
    auto page = f.run(f.db->list(10, 0));
    REQUIRE(page.has_value());
    CHECK(page->total == 5);
    CHECK(page->items.front().name == "Widget");
    CHECK(f.db->open_connections() == 1);
    CHECK(f.stop());
}

TEST_CASE("pg_database: the change observer sees writes made by another connection", "[pg][.]")
{
    changes seen;
    pg_fixture f{"unit_changes", pool_of(2), &seen};
    REQUIRE(eventually([&] { return !f.db->unready().has_value(); }, 5s));
    admin a{"unit_changes"};

    auto id = a.exec("INSERT INTO items (name, price) VALUES ('From elsewhere', 4.5) RETURNING id");
    auto created = seen.next();
    REQUIRE(created.is_object());
    CHECK(created.at("op").as_string() == "created");
    CHECK(created.at("item").at("id").to_number<std::int64_t>() == std::stoll(id));
    CHECK(created.at("item").at("name").as_string() == "From elsewhere");
    CHECK(created.at("item").at("price").to_number<double>() == 4.5);
    CHECK(is_timestamp(std::string{created.at("item").at("created_at").as_string()}));

    a.exec("UPDATE items SET name = 'Renamed' WHERE id = " + id);
    auto updated = seen.next();
    REQUIRE(updated.is_object());
    CHECK(updated.at("op").as_string() == "updated");
    CHECK(updated.at("item").at("name").as_string() == "Renamed");

    a.exec("DELETE FROM items WHERE id = " + id);
    auto deleted = seen.next();
    REQUIRE(deleted.is_object());
    CHECK(deleted.at("op").as_string() == "deleted");
    CHECK(deleted.at("item").as_object() == boost::json::object{{"id", std::stoll(id)}});

    // A write of our own comes once, through the same feed.
    item_fields ours{"Ours", 1};
    auto made = f.run(f.db->insert(ours));
    REQUIRE(made.has_value());
    auto mine = seen.next();
    REQUIRE(mine.is_object());
    CHECK(mine.at("item").at("name").as_string() == "Ours");
    CHECK(seen.next(300ms).is_null());
    // Payloads that are not item events (psql's own NOTIFY) reach no one.
    a.exec("NOTIFY coroute_items, 'not json'");
    a.exec("NOTIFY coroute_items, '[1,2]'");
    CHECK(seen.next(300ms).is_null());
    CHECK(f.stop());
}

TEST_CASE("pg_database: connections the server ended are replaced, and the feed listens again", "[pg][.]")
{
    changes seen;
    pg_fixture f{"unit_terminated", pool_of(2), &seen};
    REQUIRE(eventually([&] { return !f.db->unready().has_value(); }, 5s));
    auto warm = f.run(f.db->query(1));
    REQUIRE(warm.has_value());
    admin a{"unit_terminated"};
    CHECK(a.exec("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'coroute' "
                 "AND datname = current_database()") == "2"); // a pooled one and the listener
    std::this_thread::sleep_for(200ms);

    auto read = f.run(f.db->query(1));
    CHECK(read.has_value());
    item_fields after{"After", 1};
    auto write = f.run(f.db->insert(after));
    CHECK(write.has_value());
    REQUIRE(eventually([&] { return !f.db->unready().has_value(); }, 5s));
    // Events from before the listener came back are lost; after it, they arrive.
    while (!seen.next(300ms).is_null())
    {
    }
    a.exec("INSERT INTO items (name, price) VALUES ('Heard', 1)");
    auto heard = seen.next();
    REQUIRE(heard.is_object());
    CHECK(heard.at("item").at("name").as_string() == "Heard");
    CHECK(f.db->open_connections() <= 2);
    CHECK(f.stop());
}

TEST_CASE("pg_database: an unreachable server fails queries as unreachable and says why", "[pg][.]")
{
    db_options o = pool_of(2);
    o.url = "postgresql://postgres@/coroute?host=/nonexistent/coroute-test";
    o.connect_timeout = 1000ms;
    pg_fixture f{"unused", o};
    CHECK(f.db->describe().find("/nonexistent/coroute-test") != std::string::npos);
    CHECK(f.db->unready().has_value()); // connecting, then unreachable
    auto start = clock_type::now();
    auto r = f.run(f.db->query(1));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == db_error::unreachable);
    CHECK(since(start) < 2s);
    CHECK(eventually(
        [&] {
            auto why = f.db->unready();
            return why && why->find("unreachable") != std::string::npos;
        },
        3s));
    // Later queries fail at once while the backoff runs, and open nothing.
    for (int i = 0; i < 5; ++i)
    {
        auto again = f.run(f.db->find(1));
        REQUIRE_FALSE(again.has_value());
        CHECK(again.error() == db_error::unreachable);
    }
    CHECK(f.db->open_connections() == 0);
    CHECK(f.stop());
}

TEST_CASE("pg_database: an id past the largest bigint is simply not found", "[pg][.]")
{
    pg_fixture f{"unit_ids", pool_of(1)};
    constexpr auto big = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    for (std::uint64_t id : {big, big + 1, std::numeric_limits<std::uint64_t>::max()})
    {
        auto found = f.run(f.db->find(id));
        REQUIRE(found.has_value());
        CHECK_FALSE(found->has_value());
        item_fields fields{"x", 1};
        auto replaced = f.run(f.db->replace(id, fields));
        REQUIRE(replaced.has_value());
        CHECK_FALSE(replaced->has_value());
        auto removed = f.run(f.db->remove(id));
        REQUIRE(removed.has_value());
        CHECK_FALSE(*removed);
    }
    auto page = f.run(f.db->list(10, 0));
    REQUIRE(page.has_value());
    CHECK(page->total == 5);
    CHECK(f.stop());
}
