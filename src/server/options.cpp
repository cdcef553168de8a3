// coroute-server's command line: every flag, its environment variable, its default.
#include "server/options.hpp"

#include <boost/url/parse.hpp>

#include <charconv>
#include <limits>
#include <thread>
#include <vector>

namespace coroute::cli {

namespace {

struct option_spec
{
    std::string_view name;     // without the leading "--"
    std::string_view metavar;  // empty: a switch taking no value
    std::string_view help;
    std::function<std::string(const config&)> current; // the default, for --help
    std::function<bool(config&, std::string_view)> set;
};

template <class T>
bool parse_number(std::string_view s, T& out, T min, T max)
{
    T v{};
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || end != s.data() + s.size() || v < min || v > max)
        return false;
    out = v;
    return true;
}

// A share from 0 to 1.
bool parse_rate(std::string_view s, double& out)
{
    double p = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), p);
    if (ec != std::errc{} || end != s.data() + s.size() || !(p >= 0 && p <= 1))
        return false;
    out = p;
    return true;
}

// A browser's serialized origin (RFC 6454): scheme://host[:port], nothing after it.
// Anything else would never equal an Origin header, and so would allow nothing.
bool valid_origin(std::string_view o)
{
    auto u = boost::urls::parse_absolute_uri(o);
    if (!u || !u->has_authority() || u->host().empty() || u->has_userinfo() || !u->path().empty() ||
        u->has_query() || u->has_fragment())
        return false;
    unsigned short port = 0;
    return !u->has_port() || parse_number<unsigned short>(u->port(), port, 1, 65535);
}

// A duration flag in milliseconds; `field` names the member, for a const or a
// mutable config alike.
template <class Field>
option_spec ms_option(std::string_view name, std::string_view help, Field field, long long min = 0,
                      long long max = 86'400'000)
{
    return {name, "MS", help, [field](const config& c) { return std::to_string(field(c).count()); },
            [field, min, max](config& c, std::string_view v) {
                long long n = 0;
                if (!parse_number<long long>(v, n, min, max))
                    return false;
                field(c) = std::chrono::milliseconds{n};
                return true;
            }};
}

template <class T>
option_spec server_size_option(std::string_view name, std::string_view help, T server_options::*member, T min,
                               T max)
{
    return {name, "N", help, [member](const config& c) { return std::to_string(c.server.*member); },
            [member, min, max](config& c, std::string_view v) { return parse_number<T>(v, c.server.*member, min, max); }};
}

// The server's own flags: where to listen, threads, logging, TLS, limits, shutdown.
std::vector<option_spec> server_options_specs()
{
    return {
        {"host", "ADDR", "address to listen on", [](const config& c) { return c.host; },
         [](config& c, std::string_view v) {
             c.host = v;
             return !v.empty();
         }},
        {"port", "PORT", "port to listen on; 0 takes a free one", [](const config& c) { return std::to_string(c.port); },
         [](config& c, std::string_view v) { return parse_number<unsigned short>(v, c.port, 0, 65535); }},
        {"threads", "N", "I/O threads running the io_context; 0: one per core",
         [](const config& c) { return std::to_string(c.threads); },
         [](config& c, std::string_view v) { return parse_number<unsigned>(v, c.threads, 0, 1024); }},
        {"www", "DIR", "directory of the static site", [](const config& c) { return c.app.www.empty() ? app::default_www() : c.app.www; },
         [](config& c, std::string_view v) {
             c.app.www = v;
             return !v.empty();
         }},
        {"log-level", "LEVEL", "debug, info, warn, error or off",
         [](const config& c) {
             constexpr std::string_view names[] = {"debug", "info", "warn", "error", "off"};
             return std::string{names[static_cast<int>(c.level)]};
         },
         [](config& c, std::string_view v) { return parse_log_level(v, c.level); }},
        {"access-log", "on|off", "one stdout line per request", [](const config& c) { return c.access_log ? "on" : "off"; },
         [](config& c, std::string_view v) {
             if (v != "on" && v != "off")
                 return false;
             c.access_log = v == "on";
             return true;
         }},
        {"cancel-on-disconnect", "on|off",
         "cancel a handler when its client disconnects (costs ~20 % on the smallest requests)",
         [](const config& c) { return c.server.cancel_on_disconnect ? "on" : "off"; },
         [](config& c, std::string_view v) {
             if (v != "on" && v != "off")
                 return false;
             c.server.cancel_on_disconnect = v == "on";
             return true;
         }},
        {"tls-cert", "FILE", "serve HTTPS with this PEM certificate chain (with --tls-key)",
         [](const config& c) { return c.tls_cert; },
         [](config& c, std::string_view v) {
             c.tls_cert = v;
             return true;
         }},
        {"tls-key", "FILE", "the PEM private key for --tls-cert", [](const config& c) { return c.tls_key; },
         [](config& c, std::string_view v) {
             c.tls_key = v;
             return true;
         }},
        server_size_option<std::size_t>("header-limit-bytes", "request header fields, bytes (431 past it)",
                                        &server_options::header_limit, 256, 1 << 20),
        server_size_option<std::size_t>("target-limit-bytes", "request target, bytes (414 past it)",
                                        &server_options::target_limit, 16, 1 << 20),
        server_size_option<std::size_t>("max-header-fields", "header fields per request (431 past it)",
                                        &server_options::max_header_fields, 1, 10'000),
        server_size_option<std::uint64_t>("body-limit-bytes", "request body, bytes (413 past it)",
                                          &server_options::body_limit, 0, std::uint64_t{1} << 40),
        server_size_option<std::size_t>("max-connections", "open connections; more are closed at once",
                                        &server_options::max_connections, 1, 10'000'000),
        ms_option("header-timeout-ms", "time to read a request header, from its first byte (408)", [](auto& c) -> auto& { return c.server.header_timeout; }, 1),
        ms_option("body-timeout-ms", "time to read a whole request body (408)", [](auto& c) -> auto& { return c.server.body_timeout; }, 1),
        ms_option("idle-timeout-ms", "keep-alive wait for the next request", [](auto& c) -> auto& { return c.server.idle_timeout; }, 1),
        ms_option("write-timeout-ms", "longest a response may make no progress before the client is dropped", [](auto& c) -> auto& { return c.server.write_timeout; }, 1),
        ms_option("request-timeout-ms", "deadline of a request's handler (504)", [](auto& c) -> auto& { return c.server.request_timeout; }, 1),
        ms_option("shutdown-timeout-ms", "on SIGTERM, how long requests in flight may take", [](auto& c) -> auto& { return c.shutdown_timeout; }),
        ms_option("drain-delay-ms", "on SIGTERM, how long /readyz answers 503 before accepting stops", [](auto& c) -> auto& { return c.drain_delay; }),
    };
}

// The demo app's flags: the database, the upstream, the event feed, the site.
std::vector<option_spec> app_options_specs()
{
    return {
        {"db", "URL", "the database: sim (in memory, simulated latency) or a PostgreSQL URL, "
                      "postgresql://user@host:port/dbname or postgresql://user@/dbname?host=/socket/dir",
         [](const config& c) { return c.app.db.url; },
         [](config& c, std::string_view v) {
             c.app.db.url = v;
             return !v.empty(); // checked as a URL once every option is read
         }},
        {"db-latency-ms", "MS", "what every query waits unless it gives ?delay_ms: a timer on sim, pg_sleep on PostgreSQL",
         [](const config& c) {
             return c.app.db.latency ? std::to_string(c.app.db.latency->count()) : std::string{"100 on sim, 0 on PostgreSQL"};
         },
         [](config& c, std::string_view v) {
             long long n = 0;
             if (!parse_number<long long>(v, n, 0, 60'000))
                 return false;
             c.app.db.latency = std::chrono::milliseconds{n};
             return true;
         }},
        ms_option("db-jitter-ms", "sim only: up to this much random extra latency", [](auto& c) -> auto& { return c.app.db.jitter; }, 0, 60'000),
        {"db-pool", "N", "queries in flight at once (PostgreSQL: connections), the rest wait in order; 0: unlimited (sim only)",
         [](const config& c) {
             return c.app.db.pool ? std::to_string(*c.app.db.pool) : std::string{"unlimited on sim, 16 on PostgreSQL"};
         },
         [](config& c, std::string_view v) {
             std::size_t n = 0;
             if (!parse_number<std::size_t>(v, n, 0, 1'000'000))
                 return false;
             c.app.db.pool = n;
             return true;
         }},
        ms_option("db-statement-timeout-ms", "PostgreSQL: the server ends a statement running longer (504)", [](auto& c) -> auto& { return c.app.db.statement_timeout; }, 1),
        ms_option("db-connect-timeout-ms", "PostgreSQL: longest one connection attempt may take", [](auto& c) -> auto& { return c.app.db.connect_timeout; }, 1),
        {"db-fail-rate", "P", "sim only: share of queries that fail (0 to 1), answered 503",
         [](const config& c) {
             char buf[32];
             std::snprintf(buf, sizeof buf, "%g", c.app.db.fail_rate);
             return std::string{buf};
         },
         [](config& c, std::string_view v) { return parse_rate(v, c.app.db.fail_rate); }},
        {"upstream", "URL", "the external API that /api/external calls; default: a built-in HTTPS upstream",
         [](const config& c) { return c.app.upstream.empty() ? std::string{"built-in"} : c.app.upstream; },
         [](config& c, std::string_view v) {
             c.app.upstream = v;
             return !v.empty(); // checked as a URL once every option is read
         }},
        {"upstream-ca", "FILE", "PEM file of CAs to trust for --upstream instead of the system store",
         [](const config& c) { return c.app.upstream_ca; },
         [](config& c, std::string_view v) {
             c.app.upstream_ca = v;
             return true;
         }},
        {"upstream-cert-out", "FILE", "write the built-in upstream's certificate (PEM) here, for clients to trust",
         [](const config& c) { return c.app.upstream_cert_out; },
         [](config& c, std::string_view v) {
             c.app.upstream_cert_out = v;
             return !v.empty();
         }},
        ms_option("upstream-timeout-ms", "total deadline of one external call (504 past it)", [](auto& c) -> auto& { return c.app.upstream_timeout; }),
        ms_option("upstream-latency-ms", "how long the built-in upstream takes to answer", [](auto& c) -> auto& { return c.app.upstream_latency; }),
        {"upstream-fail-rate", "P", "share of the built-in upstream's answers that are faults (0 to 1): a 500, not JSON, a cut body",
         [](const config& c) {
             char buf[32];
             std::snprintf(buf, sizeof buf, "%g", c.app.upstream_fail_rate);
             return std::string{buf};
         },
         [](config& c, std::string_view v) { return parse_rate(v, c.app.upstream_fail_rate); }},
        {"upstream-pool", "N", "idle keep-alive connections kept per upstream host; 0: a new one per call",
         [](const config& c) { return std::to_string(c.app.upstream_pool); },
         [](config& c, std::string_view v) { return parse_number<std::size_t>(v, c.app.upstream_pool, 0, 10'000); }},
        {"events-history", "N", "events /api/events keeps for clients that reconnect with Last-Event-ID",
         [](const config& c) { return std::to_string(c.app.events.history); },
         [](config& c, std::string_view v) { return parse_number<std::size_t>(v, c.app.events.history, 0, 1'000'000); }},
        {"events-buffer", "N", "events an /api/events client may fall behind before it is disconnected",
         [](const config& c) { return std::to_string(c.app.events.buffer); },
         [](config& c, std::string_view v) { return parse_number<std::size_t>(v, c.app.events.buffer, 1, 1'000'000); }},
        {"events-heartbeat-ms", "MS", "how often an idle /api/events stream gets a ': ping' comment",
         [](const config& c) { return std::to_string(c.app.events.heartbeat.count()); },
         [](config& c, std::string_view v) {
             long long n = 0;
             if (!parse_number<long long>(v, n, 10, 86'400'000))
                 return false;
             c.app.events.heartbeat = std::chrono::milliseconds{n};
             return true;
         }},
        {"static-inline-max-bytes", "N", "static files up to this size are served from memory; larger ones stream from disk",
         [](const config& c) { return std::to_string(c.app.site.inline_max_bytes); },
         [](config& c, std::string_view v) {
             return parse_number<std::uintmax_t>(v, c.app.site.inline_max_bytes, 0, std::uintmax_t{1} << 30);
         }},
    };
}

// The demo's /ws limits.
std::vector<option_spec> websocket_options_specs()
{
    return {
        {"ws-max-message-bytes", "N", "/ws: largest message a peer may send (closed with 1009 past it)",
         [](const config& c) { return std::to_string(c.app.ws.max_message_bytes); },
         [](config& c, std::string_view v) {
             return parse_number<std::size_t>(v, c.app.ws.max_message_bytes, 1, std::size_t{1} << 30);
         }},
        {"offload-threads", "N", "threads of the offload pool (/api/cpu, /api/blocking, the jobs' CPU work); 0: one per core",
         [](const config& c) { return std::to_string(c.app.offload.threads); },
         [](config& c, std::string_view v) { return parse_number<std::size_t>(v, c.app.offload.threads, 0, 1024); }},
        {"offload-queue", "N", "calls waiting for an offload thread; past it a call is answered 503",
         [](const config& c) { return std::to_string(c.app.offload.max_queued); },
         [](config& c, std::string_view v) { return parse_number<std::size_t>(v, c.app.offload.max_queued, 1, 10'000'000); }},
        {"max-jobs", "N", "background jobs running at once; the rest queue",
         [](const config& c) { return std::to_string(c.app.jobs.max_running); },
         [](config& c, std::string_view v) { return parse_number<std::size_t>(v, c.app.jobs.max_running, 1, 100'000); }},
        {"jobs-queue", "N", "background jobs waiting to run; past it POST /api/jobs answers 503",
         [](const config& c) { return std::to_string(c.app.jobs.max_queued); },
         [](config& c, std::string_view v) { return parse_number<std::size_t>(v, c.app.jobs.max_queued, 0, 1'000'000); }},
        {"jobs-keep", "N", "finished jobs remembered for GET /api/jobs",
         [](const config& c) { return std::to_string(c.app.jobs.keep); },
         [](config& c, std::string_view v) { return parse_number<std::size_t>(v, c.app.jobs.keep, 0, 1'000'000); }},
        ms_option("ws-idle-timeout-ms", "/ws: a silent peer is pinged at half this and dropped at it; 0: never", [](auto& c) -> auto& { return c.app.ws.idle_timeout; }),
        ms_option("ws-handshake-timeout-ms", "/ws: longest the opening answer and the closing handshake may take", [](auto& c) -> auto& { return c.app.ws.handshake_timeout; }, 1),
        ms_option("ws-write-timeout-ms", "/ws: longest one message may take to reach the peer", [](auto& c) -> auto& { return c.app.ws.write_timeout; }, 1),
        {"ws-send-queue", "N", "/ws: messages waiting for a slow peer before it is closed with 1008",
         [](const config& c) { return std::to_string(c.app.ws.send_queue); },
         [](config& c, std::string_view v) { return parse_number<std::size_t>(v, c.app.ws.send_queue, 1, 1'000'000); }},
        {"ws-send-queue-bytes", "N", "/ws: bytes waiting for a slow peer before it is closed with 1008",
         [](const config& c) { return std::to_string(c.app.ws.send_queue_bytes); },
         [](config& c, std::string_view v) {
             return parse_number<std::size_t>(v, c.app.ws.send_queue_bytes, 1, std::size_t{1} << 34);
         }},
        {"ws-allowed-origins", "LIST", "/ws: comma-separated origins (scheme://host[:port]) a browser may connect from, or *; empty: the server's own",
         [](const config& c) {
             std::string out;
             for (auto& o : c.app.ws.allowed_origins)
                 out += (out.empty() ? "" : ",") + o;
             return out;
         },
         [](config& c, std::string_view v) {
             c.app.ws.allowed_origins.clear();
             while (!v.empty())
             {
                 auto comma = v.find(',');
                 auto one = v.substr(0, comma);
                 while (!one.empty() && one.front() == ' ')
                     one.remove_prefix(1);
                 while (!one.empty() && one.back() == ' ')
                     one.remove_suffix(1);
                 if (one != "*" && !valid_origin(one))
                     return false;
                 c.app.ws.allowed_origins.emplace_back(one);
                 v = comma == std::string_view::npos ? std::string_view{} : v.substr(comma + 1);
             }
             return true;
         }},
    };
}

const std::vector<option_spec>& options()
{
    static const std::vector<option_spec> specs = [] {
        auto all = server_options_specs();
        for (auto more : {app_options_specs(), websocket_options_specs()})
            all.insert(all.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
        return all;
    }();
    return specs;
}

// Why `url` cannot be the upstream (empty: it can, or it is empty, meaning the
// built-in one). Caught here, so a URL that would fail every call fails at start.
std::string upstream_url_problem(const std::string& url)
{
    if (url.empty())
        return {};
    auto u = boost::urls::parse_uri(url);
    if (!u || (u->scheme() != "http" && u->scheme() != "https"))
        return "give an http:// or https:// URL, like https://api.example.com/todos/1";
    if (!u->has_authority() || u->host().empty())
        return "the URL has no host; give one, like https://api.example.com/todos/1";
    if (u->has_userinfo())
        return "credentials in the URL are not supported; give it without user:password@";
    unsigned short port = 0;
    if (u->has_port() && !parse_number<unsigned short>(u->port(), port, 1, 65535))
        return "the port must be 1 to 65535";
    return {};
}

// What a bad value should have been: the option's own line of --help.
std::string expected(const option_spec& o)
{
    return " (" + std::string{o.metavar} + ": " + std::string{o.help} + ")";
}

std::string env_name(std::string_view name)
{
    std::string out = "COROUTE_";
    for (char ch : name)
        out += ch == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    return out;
}

} // namespace


parse_result parse_args(int argc, const char* const* argv, const std::function<const char*(const char*)>& getenv)
{
    parse_result r;
    for (auto& o : options())
    {
        auto var = env_name(o.name);
        if (const char* v = getenv ? getenv(var.c_str()) : nullptr)
            if (!o.set(r.cfg, v))
            {
                r.error = "invalid value '" + std::string{v} + "' in " + var + expected(o);
                return r;
            }
    }
    for (int i = 1; i < argc; ++i)
    {
        std::string_view arg = argv[i];
        if (arg == "--help" || arg == "-h")
        {
            r.help = true;
            continue;
        }
        if (arg == "--version")
        {
            r.version = true;
            continue;
        }
        if (arg.substr(0, 2) != "--")
        {
            r.error = "unexpected argument '" + std::string{arg} + "' (try --help)";
            return r;
        }
        arg.remove_prefix(2);
        std::string_view value;
        bool has_value = false;
        if (auto eq = arg.find('='); eq != std::string_view::npos)
        {
            value = arg.substr(eq + 1);
            arg = arg.substr(0, eq);
            has_value = true;
        }
        const option_spec* spec = nullptr;
        for (auto& o : options())
            if (o.name == arg)
                spec = &o;
        if (!spec)
        {
            r.error = "unknown option --" + std::string{arg} + " (try --help)";
            return r;
        }
        if (!has_value)
        {
            if (i + 1 >= argc)
            {
                r.error = "--" + std::string{arg} + " needs a value";
                return r;
            }
            value = argv[++i];
        }
        if (!spec->set(r.cfg, value))
        {
            r.error = "invalid value '" + std::string{value} + "' for --" + std::string{arg} + expected(*spec);
            return r;
        }
    }
    if (r.cfg.tls_cert.empty() != r.cfg.tls_key.empty())
        r.error = "--tls-cert and --tls-key go together";
    else if (auto why = upstream_url_problem(r.cfg.app.upstream); !why.empty())
        r.error = "invalid value '" + r.cfg.app.upstream + "' for --upstream: " + why;
    else if (auto bad = app::check_db_options(r.cfg.app.db))
        r.error = *bad;
    else if (r.cfg.app.upstream.empty() && !r.cfg.app.upstream_ca.empty())
        r.error = "--upstream-ca names the CAs to trust for --upstream; the built-in upstream needs none";
    else if (!r.cfg.app.upstream.empty() && !r.cfg.app.upstream_cert_out.empty())
        r.error = "--upstream-cert-out writes the built-in upstream's certificate, and --upstream replaces that "
                  "upstream; drop one of them";
    else if (!r.cfg.app.upstream.empty() && r.cfg.app.upstream_fail_rate > 0)
        r.error = "--upstream-fail-rate makes the built-in upstream fail, and --upstream replaces that upstream; "
                  "drop one of them";
    return r;
}

std::string help_text()
{
    config defaults;
    std::string out =
        "usage: coroute-server [OPTION]...\n"
        "Serves the coroute demo: async routes over a database (simulated, or PostgreSQL) and an HTTPS API.\n\n"
        "Every option can also be set in the environment: --db-latency-ms is COROUTE_DB_LATENCY_MS.\n"
        "Arguments win over the environment.\n\n";
    for (auto& o : options())
    {
        std::string left = "  --";
        left.append(o.name);
        if (!o.metavar.empty())
        {
            left.push_back(' ');
            left.append(o.metavar);
        }
        out += left;
        out += left.size() < 34 ? std::string(34 - left.size(), ' ') : "\n" + std::string(34, ' ');
        out += o.help;
        auto def = o.current(defaults);
        if (!def.empty())
            out += " [" + def + "]";
        out += "\n";
    }
    out += "  --help                          this text\n"
           "  --version                       the version\n"
           "\nExit status: 0 after a stop by SIGINT or SIGTERM, 1 when the server cannot start\n"
           "(one line on stderr says why), 2 for a bad option.\n";
    return out;
}

} // namespace coroute::cli
