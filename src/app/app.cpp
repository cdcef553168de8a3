#include "app/app.hpp"

#include "app/db_routes.hpp"
#include "app/external_routes.hpp"
#include "app/jobs_routes.hpp"
#include "app/offload_routes.hpp"
#include "app/report_routes.hpp"
#include "app/upstream.hpp"
#include "app/ws_routes.hpp"

#include <coroute/http_client.hpp>
#include <coroute/tls.hpp>

#include <coroute/events.hpp>
#include <coroute/problem.hpp>
#include <coroute/static_files.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

namespace coroute::app {

struct demo_app::impl
{
    asio::any_io_executor ex;
    app_options cfg;
    std::shared_ptr<logger> log;
    std::shared_ptr<const static_files> site;
    std::shared_ptr<database> db;
    std::shared_ptr<event_hub> events;
    std::shared_ptr<offload_pool> pool;
    std::shared_ptr<job_group> jobs;
    std::unique_ptr<builtin_upstream> upstream; // when no --upstream is given
    std::shared_ptr<http_client> client;
    std::string upstream_url;
    bool stopped = false;
};

namespace {

// Written before the listening line, so a script that waits for that line finds the file.
void write_certificate(const std::string& pem, const std::string& file)
{
    std::ofstream out{file, std::ios::binary | std::ios::trunc};
    if (out)
        out << pem;
    if (!out || !out.flush())
        throw std::runtime_error("cannot write the built-in upstream's certificate to " + file +
                                 " (--upstream-cert-out): " + std::strerror(errno) + "; give a writable file path");
}

} // namespace

std::string default_www()
{
    return COROUTE_DEFAULT_WWW;
}

demo_app::demo_app(asio::any_io_executor ex, const app_options& cfg, std::shared_ptr<logger> log)
    : impl_(std::make_unique<impl>())
{
    impl_->ex = std::move(ex);
    impl_->cfg = cfg;
    impl_->log = std::move(log);
    impl_->db = make_database(impl_->ex, cfg.db, impl_->log);
    impl_->events = std::make_shared<event_hub>(cfg.events);
    impl_->pool = std::make_shared<offload_pool>(cfg.offload);
    impl_->jobs = std::make_shared<job_group>(impl_->ex, cfg.jobs, impl_->log);
    // Every change of a job is an event; the hub is thread-safe and the observer holds no lock.
    impl_->jobs->on_change([events = impl_->events](const job_info& j) { events->publish("job", to_json_text(to_json(j))); });

    client_options copts;
    copts.total_timeout = cfg.upstream_timeout;
    copts.max_idle_per_host = cfg.upstream_pool;
    if (cfg.upstream.empty())
    {
        impl_->upstream = std::make_unique<builtin_upstream>(impl_->ex, cfg.upstream_latency, cfg.upstream_fail_rate);
        impl_->upstream_url = impl_->upstream->url();
        copts.tls = impl_->upstream->client_tls(); // trusts that certificate and nothing else
        if (!cfg.upstream_cert_out.empty())
            write_certificate(impl_->upstream->certificate_pem(), cfg.upstream_cert_out);
    }
    else
    {
        impl_->upstream_url = cfg.upstream;
        if (!cfg.upstream_ca.empty())
            copts.ca_file = cfg.upstream_ca;
    }
    try
    {
        impl_->client = std::make_shared<http_client>(impl_->ex, copts);
    }
    catch (const boost::system::system_error& e)
    {
        throw std::runtime_error("cannot load the CA file " + cfg.upstream_ca + " (--upstream-ca): " +
                                 e.code().message() + "; give a PEM file of CA certificates");
    }
    auto root = cfg.www.empty() ? default_www() : cfg.www;
    try
    {
        impl_->site = std::make_shared<const static_files>(root, cfg.site);
    }
    catch (const std::exception& e)
    {
        throw std::runtime_error("cannot serve www directory " + root + ": " + e.what());
    }
    // Last, once nothing else can throw: connecting starts now, in the background.
    impl_->db->start();
}

demo_app::~demo_app() = default;

void demo_app::install(router& r, server* srv)
{
    add_db_routes(r, impl_->db, impl_->events);
    add_jobs_routes(r, impl_->jobs, impl_->db, impl_->pool);
    add_offload_routes(r, impl_->pool);
    stats_sources sources;
    sources.threads = impl_->cfg.threads;
    if (srv)
    {
        sources.server = [srv] { return srv->stats(); };
        sources.reset_peak = [srv] { srv->reset_peak(); };
    }
    add_stats_routes(r, std::move(sources), impl_->pool, impl_->jobs);
    r.get("/api/events", impl_->events->handler());
    add_ws_routes(r, impl_->db, impl_->events, impl_->cfg.ws);
    add_external_routes(r, impl_->client, impl_->upstream_url, impl_->db);
    add_report_routes(r, impl_->db, impl_->client, impl_->upstream_url);
    r.fallback(static_files::handler(impl_->site));
}

std::vector<std::string> demo_app::banner() const
{
    auto& cfg = impl_->cfg;
    std::string upstream = "upstream: " + impl_->upstream_url;
    if (impl_->upstream)
    {
        upstream += " (built-in, self-signed certificate trusted explicitly, " +
                    std::to_string(cfg.upstream_latency.count()) + " ms latency";
        if (!cfg.upstream_cert_out.empty())
            upstream += ", certificate in " + cfg.upstream_cert_out;
        if (cfg.upstream_fail_rate > 0)
        {
            char share[32];
            std::snprintf(share, sizeof share, "%g", cfg.upstream_fail_rate * 100);
            upstream += std::string{", "} + share + " % of answers are faults (--upstream-fail-rate)";
        }
        upstream += ")";
    }
    else if (impl_->upstream_url.starts_with("http://"))
        upstream += " (plain HTTP: not encrypted, not verified)";
    else
        upstream += cfg.upstream_ca.empty() ? " (verified with the system CA store)"
                                            : " (verified with " + cfg.upstream_ca + ")";
    return {upstream, "static site: " + impl_->site->root().string(), impl_->db->describe()};
}

std::function<std::optional<std::string>()> demo_app::readiness() const
{
    return [db = impl_->db] { return db->unready(); };
}

asio::awaitable<void> demo_app::stop_jobs(std::chrono::milliseconds grace)
{
    co_await impl_->jobs->shutdown(grace);
}

asio::awaitable<void> demo_app::stop()
{
    if (impl_->stopped)
        co_return;
    impl_->stopped = true;
    impl_->pool->stop();
    auto s = impl_->client->stats();
    impl_->log->info("upstream client: " + std::to_string(s.connections_opened) + " connections, " +
                     std::to_string(s.tls_handshakes) + " TLS handshakes, " + std::to_string(s.reuses) +
                     " reuses, " + std::to_string(s.retries) + " retries");
    impl_->client->close_idle();
    co_await impl_->db->stop();
    if (impl_->upstream)
        co_await impl_->upstream->stop();
}

} // namespace coroute::app
