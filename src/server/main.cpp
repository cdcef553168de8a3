// coroute-server: parses options, owns the thread pool and the signals, wires the demo app.

#include "app/app.hpp"
#include "server/options.hpp"
#include "server/startup.hpp"

#include <coroute/server.hpp>
#include <coroute/tls.hpp>
#include <coroute/version.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <thread>

using namespace coroute;

namespace {

// Many idle keep-alive connections need many descriptors: take what the hard limit allows.
void raise_fd_limit()
{
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
    {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

asio::awaitable<void> stop_gracefully(server& srv, app::demo_app& demo, const cli::config& cfg, logger& log,
                                      asio::io_context& ioc)
{
    log.info("shutting down: draining");
    srv.drain();
    if (cfg.drain_delay.count() > 0)
    {
        asio::steady_timer t{co_await asio::this_coro::executor, cfg.drain_delay};
        co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    // Requests in flight and background jobs share the same grace period.
    using namespace asio::experimental::awaitable_operators;
    co_await (srv.shutdown(cfg.shutdown_timeout) && demo.stop_jobs(cfg.shutdown_timeout));
    co_await demo.stop();
    log.info("stopped");
    ioc.stop();
}

} // namespace

int main(int argc, char** argv)
{
    auto parsed = cli::parse_args(argc, argv, [](const char* name) { return std::getenv(name); });
    if (!parsed.error.empty())
    {
        std::fprintf(stderr, "coroute-server: %s\n", parsed.error.c_str());
        return 2;
    }
    if (parsed.help)
    {
        std::fputs(cli::help_text().c_str(), stdout);
        return 0;
    }
    if (parsed.version)
    {
        std::printf("coroute-server %.*s\n", static_cast<int>(version.size()), version.data());
        return 0;
    }
    auto& cfg = parsed.cfg;
    // Every start-up failure is one line on stderr and exit status 1 (bad options: 2).
    auto fail = [](const std::string& line) {
        std::fprintf(stderr, "coroute-server: %s\n", line.c_str());
        return 1;
    };
    asio::ip::tcp::endpoint where;
    try
    {
        cli::check_files(cfg);
        where = cli::listen_endpoint(cfg.host, cfg.port);
    }
    catch (const cli::startup_error& e)
    {
        return fail(e.what());
    }
    raise_fd_limit();
    std::setvbuf(stdout, nullptr, _IOLBF, 0);

    unsigned threads = cfg.threads ? cfg.threads : std::max(1u, std::thread::hardware_concurrency());
    asio::io_context ioc{static_cast<int>(threads)};
    auto log = std::make_shared<logger>(cfg.level, cfg.access_log);

    bool started = false;
    try
    {
        auto routes = std::make_shared<router>();
        cfg.app.threads = threads;
        app::demo_app demo{ioc.get_executor(), cfg.app, log};

        server_options opts = cfg.server;
        opts.log = log;
        opts.strand_per_connection = threads > 1; // one thread runs the io_context: no strands needed
        if (!cfg.tls_cert.empty())
            opts.tls = cli::load_server_tls(cfg);
        server srv{ioc.get_executor(), routes, opts};
        add_health_routes(*routes, srv, demo.readiness());
        demo.install(*routes, &srv);

        // Signals are caught from before the listening line, so a script that signals as
        // soon as it reads that line still gets a graceful stop.
        asio::signal_set signals{ioc, SIGINT, SIGTERM};

        asio::ip::tcp::endpoint ep;
        try
        {
            ep = srv.listen(where);
        }
        catch (const boost::system::system_error& e)
        {
            throw cli::startup_error(cli::listen_failure(e.code(), where, cfg.host));
        }
        srv.start();
        started = true;
        auto host = ep.address().is_v6() ? "[" + ep.address().to_string() + "]" : ep.address().to_string();
        std::printf("coroute listening on %.*s://%s:%u\n", static_cast<int>(srv.scheme().size()), srv.scheme().data(),
                    host.c_str(), ep.port());
        for (auto& line : demo.banner())
            std::printf("%s\n", line.c_str());
        std::fflush(stdout);
        log->info("coroute " + std::string{version} + " with " + std::to_string(threads) + " thread(s)");

        // First signal: graceful stop. A second one: stop now.
        bool stopping = false;
        std::function<void(boost::system::error_code, int)> on_signal = [&](boost::system::error_code ec, int) {
            if (ec)
                return;
            if (stopping)
            {
                log->warn("second signal: stopping now");
                ioc.stop();
                return;
            }
            stopping = true;
            // The references stay valid: everything they name outlives ioc.run().
            asio::co_spawn(ioc, stop_gracefully(srv, demo, cfg, *log, ioc), [&](std::exception_ptr e) {
                if (!e)
                    return;
                log->error("graceful stop failed; stopping now");
                ioc.stop();
            });
            signals.async_wait(on_signal);
        };
        signals.async_wait(on_signal);

        std::vector<std::thread> pool;
        for (unsigned i = 1; i < threads; ++i)
            pool.emplace_back([&ioc] { ioc.run(); });
        ioc.run();
        for (auto& t : pool)
            t.join();
    }
    catch (const std::exception& e)
    {
        // Before the listening line, every failure is a start-up failure, said in one line.
        if (!started)
        {
            std::string line = e.what();
            return fail(line.substr(0, line.find('\n')));
        }
        std::fprintf(stderr, "coroute-server: %s\n", e.what());
        return 1;
    }
    return 0;
}
