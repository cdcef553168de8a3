#include "app/app.hpp"

#include "app/db_routes.hpp"

#include <coroute/static_files.hpp>

namespace coroute::app {

struct demo_app::impl
{
    asio::any_io_executor ex;
    config cfg;
    std::shared_ptr<logger> log;
    std::shared_ptr<const static_files> site;
    std::shared_ptr<database> db;
};

demo_app::demo_app(asio::any_io_executor ex, const config& cfg, std::shared_ptr<logger> log)
    : impl_(std::make_unique<impl>())
{
    impl_->ex = std::move(ex);
    impl_->cfg = cfg;
    impl_->log = std::move(log);
    impl_->db = std::make_shared<database>(cfg.db);
    auto root = cfg.www.empty() ? default_www() : cfg.www;
    try
    {
        impl_->site = std::make_shared<const static_files>(root);
    }
    catch (const std::exception& e)
    {
        throw std::runtime_error("cannot serve www directory " + root + ": " + e.what());
    }
}

demo_app::~demo_app() = default;

void demo_app::install(router& r)
{
    add_db_routes(r, impl_->db);
    r.fallback(static_files::handler(impl_->site));
}

std::vector<std::string> demo_app::banner() const
{
    auto& db = impl_->cfg.db;
    return {"static site: " + impl_->site->root().string(),
            "database: simulated, " + std::to_string(db.latency.count()) + " ms per query" +
                (db.jitter.count() ? " + up to " + std::to_string(db.jitter.count()) + " ms jitter" : "") +
                (db.pool ? ", pool of " + std::to_string(db.pool) : ", no pool bound")};
}

void demo_app::stop() {}

} // namespace coroute::app
