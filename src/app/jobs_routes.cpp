#include "app/jobs_routes.hpp"

#include "app/db_routes.hpp"
#include "app/offload_routes.hpp"

#include <coroute/problem.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <cctype>

namespace coroute::app {

namespace {

namespace json = boost::json;
using clock_type = std::chrono::steady_clock;
constexpr std::chrono::milliseconds cpu_slice{50}; // a cancelled job stops within one slice

// The report's shared progress; its workers all run on the job's strand.
struct report_run
{
    job_context* ctx;
    std::shared_ptr<database> db;
    report_spec spec;
    long long next = 0, done = 0;
    std::uint64_t rows = 0;
    double query_share = 1; // of the whole run's expected time
};

// One of the `parallel` workers: takes the next query until none is left.
asio::awaitable<void> query_worker(std::shared_ptr<report_run> run)
{
    database::latency delay{std::chrono::milliseconds{run->spec.delay_ms}};
    while (run->next < run->spec.queries)
    {
        auto n = run->next++;
        auto rows = co_await run->db->query(5, delay);
        if (!rows)
        {
            if (rows.error() == asio::error::operation_aborted)
                throw boost::system::system_error{rows.error()};
            throw std::runtime_error("query " + std::to_string(n + 1) + " failed: " + rows.error().message());
        }
        run->rows += rows->size();
        ++run->done;
        run->ctx->progress(run->query_share * static_cast<double>(run->done) / static_cast<double>(run->spec.queries));
    }
}

std::string_view media_type(std::string_view type)
{
    auto media = type.substr(0, type.find(';'));
    while (!media.empty() && (media.back() == ' ' || media.back() == '\t'))
        media.remove_suffix(1);
    return media;
}

bool iequals(std::string_view a, std::string_view b)
{
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

response job_answer(http::status status, const job_info& job)
{
    auto res = json_response(status, to_json(job));
    return res;
}

asio::awaitable<response> create_job(std::shared_ptr<job_group> jobs, std::shared_ptr<database> db,
                                     std::shared_ptr<offload_pool> pool, request& req)
{
    auto spec = parse_report_spec(req);
    if (!spec)
        co_return spec.error();
    auto s = *spec;
    auto started = jobs->start([db, pool, s](job_context& ctx) { return run_report(ctx, db, pool, s); });
    if (!started)
    {
        auto ec = started.error();
        if (ec == boost::system::errc::resource_unavailable_try_again)
            co_return problem_for(ec, "the job queue is full (" + std::to_string(jobs->options().max_queued) +
                                          " waiting, --jobs-queue); try again later");
        co_return problem_for(ec, "the server is shutting down and takes no new jobs");
    }
    auto res = job_answer(http::status::accepted, *started);
    res.set(http::field::location, "/api/jobs/" + std::to_string(started->id));
    co_return res;
}

asio::awaitable<response> list_jobs(std::shared_ptr<job_group> jobs, request& req)
{
    auto limit = req.query_param<long long>("limit", 1, 1000, 100);
    if (!limit)
        co_return limit.error();
    json::array out;
    for (auto& j : jobs->recent(static_cast<std::size_t>(*limit)))
        out.push_back(to_json(j));
    co_return json_response(http::status::ok,
                            {{"jobs", std::move(out)}, {"running", jobs->running()}, {"queued", jobs->queued()}});
}

boost::system::result<std::uint64_t, response> job_id(const request& req)
{
    auto v = req.param_as<std::uint64_t>("id");
    if (!v || *v == 0)
        return problem(http::status::bad_request,
                       "job id must be a positive integer, not '" + std::string{req.param("id").value_or("")} + "'");
    return *v;
}

asio::awaitable<response> show_job(std::shared_ptr<job_group> jobs, request& req)
{
    auto id = job_id(req);
    if (!id)
        co_return id.error();
    auto job = jobs->find(*id);
    if (!job)
        co_return problem(http::status::not_found, "no job " + std::to_string(*id));
    co_return job_answer(http::status::ok, *job);
}

asio::awaitable<response> cancel_job(std::shared_ptr<job_group> jobs, request& req)
{
    auto id = job_id(req);
    if (!id)
        co_return id.error();
    auto outcome = jobs->cancel(*id);
    auto job = jobs->find(*id);
    if (outcome == cancel_outcome::not_found || !job)
        co_return problem(http::status::not_found, "no job " + std::to_string(*id));
    if (outcome == cancel_outcome::finished)
        co_return problem(http::status::conflict, "job " + std::to_string(*id) + " already finished (" +
                                                      std::string{to_string(job->state)} + ")",
                          {{"job", to_json(*job)}});
    co_return job_answer(http::status::accepted, *job);
}

} // namespace

boost::system::result<report_spec, response> parse_report_spec(const request& req)
{
    report_spec spec;
    if (req.body().empty())
        return spec;
    auto type = req.header(http::field::content_type);
    if (!iequals(media_type(type), "application/json"))
        return problem(http::status::unsupported_media_type,
                       "Content-Type must be application/json, not '" + std::string{type} + "'");
    boost::system::error_code ec;
    auto doc = json::parse(req.body(), ec);
    if (ec)
        return problem(http::status::bad_request, "malformed JSON: " + ec.message());
    if (!doc.is_object())
        return problem(http::status::unprocessable_entity, "the body must be a JSON object",
                       {{"errors", json::array{json::object{{"field", ""}, {"message", "must be an object"}}}}});

    struct field_rule
    {
        std::string_view name;
        long long lo, hi;
        long long report_spec::*member;
    };
    static constexpr field_rule rules[] = {
        {"queries", 1, 1000, &report_spec::queries},
        {"delay_ms", 0, 10'000, &report_spec::delay_ms},
        {"parallel", 1, 100, &report_spec::parallel},
        {"cpu_ms", 0, 10'000, &report_spec::cpu_ms},
    };
    json::array errors;
    for (auto& kv : doc.as_object())
    {
        auto rule = std::find_if(std::begin(rules), std::end(rules), [&](auto& r) { return r.name == kv.key(); });
        if (rule == std::end(rules))
        {
            errors.push_back(json::object{{"field", kv.key()}, {"message", "is not a field of a job"}});
            continue;
        }
        boost::system::error_code nec;
        auto v = kv.value().is_number() ? kv.value().to_number<long long>(nec) : 0;
        if (!kv.value().is_number() || nec || v < rule->lo || v > rule->hi)
        {
            errors.push_back(json::object{{"field", rule->name},
                                          {"message", "must be an integer from " + std::to_string(rule->lo) +
                                                          " to " + std::to_string(rule->hi)}});
            continue;
        }
        spec.*(rule->member) = v;
    }
    if (!errors.empty())
    {
        std::string detail = "invalid job:";
        for (auto& e : errors)
        {
            detail += " ";
            detail += e.at("field").as_string();
            detail += " ";
            detail += e.at("message").as_string();
            detail += ";";
        }
        detail.pop_back();
        return problem(http::status::unprocessable_entity, detail, {{"errors", std::move(errors)}});
    }
    return spec;
}

asio::awaitable<json::value> run_report(job_context& ctx, std::shared_ptr<database> db,
                                        std::shared_ptr<offload_pool> pool, report_spec spec)
{
    auto start = clock_type::now();
    // Progress is shared by the expected time of the two phases.
    auto rounds = (spec.queries + spec.parallel - 1) / spec.parallel;
    auto query_ms = static_cast<double>(rounds * spec.delay_ms);
    auto total_ms = query_ms + static_cast<double>(spec.cpu_ms);
    auto run = std::make_shared<report_run>();
    run->ctx = &ctx;
    run->db = std::move(db);
    run->spec = spec;
    run->query_share = total_ms > 0 ? query_ms / total_ms : 1;

    auto ex = co_await asio::this_coro::executor;
    auto workers = std::min(spec.parallel, spec.queries);
    using op_type = decltype(asio::co_spawn(ex, query_worker(run), asio::deferred));
    std::vector<op_type> ops;
    for (long long i = 0; i < workers; ++i)
        ops.push_back(asio::co_spawn(ex, query_worker(run), asio::deferred));
    // The first failure (or the job's cancellation) stops the other workers.
    auto [order, errors] = co_await asio::experimental::make_parallel_group(std::move(ops))
                               .async_wait(asio::experimental::wait_for_one_error(), asio::use_awaitable);
    for (auto i : order)
        if (errors[i])
            std::rethrow_exception(errors[i]);
    auto queries_done = clock_type::now();

    prime_count counted;
    auto cpu_left = std::chrono::milliseconds{spec.cpu_ms};
    while (cpu_left.count() > 0)
    {
        auto slice = std::min(cpu_left, cpu_slice);
        counted = co_await pool->run([counted, slice] { return count_primes(counted, slice); });
        cpu_left -= slice;
        auto cpu_done = static_cast<double>(spec.cpu_ms - cpu_left.count());
        ctx.progress(total_ms > 0 ? (query_ms + cpu_done) / total_ms : 1);
    }
    auto end = clock_type::now();
    auto ms = [](auto d) {
        return std::round(std::chrono::duration<double, std::milli>(d).count() * 10) / 10;
    };
    co_return json::object{{"rows", run->rows},
                           {"queries", spec.queries},
                           {"parallel", spec.parallel},
                           {"delay_ms", spec.delay_ms},
                           {"cpu_ms", spec.cpu_ms},
                           {"primes", counted.primes},
                           {"elapsed_ms", ms(end - start)},
                           {"query_elapsed_ms", ms(queries_done - start)},
                           {"cpu_elapsed_ms", ms(end - queries_done)},
                           {"sequential_estimate_ms", spec.queries * spec.delay_ms + spec.cpu_ms}};
}

void add_jobs_routes(router& r, std::shared_ptr<job_group> jobs, std::shared_ptr<database> db,
                     std::shared_ptr<offload_pool> pool)
{
    r.post("/api/jobs", [jobs, db, pool](request& req) { return create_job(jobs, db, pool, req); });
    r.get("/api/jobs", [jobs](request& req) { return list_jobs(jobs, req); });
    r.get("/api/jobs/{id}", [jobs](request& req) { return show_job(jobs, req); });
    r.del("/api/jobs/{id}", [jobs](request& req) { return cancel_job(jobs, req); });
}

} // namespace coroute::app
