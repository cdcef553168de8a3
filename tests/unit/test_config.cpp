#include "server/options.hpp"

#include <catch2/catch.hpp>

#include <map>

using namespace coroute;
using namespace coroute::cli;

namespace {

parse_result parse(std::vector<const char*> args, std::map<std::string, std::string> env = {})
{
    args.insert(args.begin(), "coroute-server");
    return parse_args(static_cast<int>(args.size()), args.data(), [&](const char* name) -> const char* {
        auto it = env.find(name);
        return it == env.end() ? nullptr : it->second.c_str();
    });
}

} // namespace

TEST_CASE("config: defaults are close to nginx's", "[config]")
{
    auto r = parse({});
    REQUIRE(r.error.empty());
    CHECK(r.cfg.port == 8080);
    CHECK(r.cfg.server.header_limit == 8192);
    CHECK(r.cfg.server.body_limit == 1024 * 1024);
    CHECK(r.cfg.server.idle_timeout == std::chrono::seconds(30));
    CHECK_FALSE(r.cfg.app.db.latency.has_value()); // 100 ms simulated, 0 on PostgreSQL
    CHECK(r.cfg.app.db.url == "sim");
}

TEST_CASE("config: flags take values separately or after =", "[config]")
{
    auto r = parse({"--port", "0", "--db-latency-ms=250", "--body-limit-bytes", "10", "--db-fail-rate", "0.5"});
    REQUIRE(r.error.empty());
    CHECK(r.cfg.port == 0);
    CHECK(r.cfg.app.db.latency == std::chrono::milliseconds(250));
    CHECK(r.cfg.server.body_limit == 10);
    CHECK(r.cfg.app.db.fail_rate == 0.5);
}

TEST_CASE("config: the environment is read and arguments win over it", "[config]")
{
    auto r = parse({"--port", "9000"}, {{"COROUTE_PORT", "7000"}, {"COROUTE_DB_POOL", "4"}});
    REQUIRE(r.error.empty());
    CHECK(r.cfg.port == 9000);
    CHECK(r.cfg.app.db.pool == 4);
}

TEST_CASE("config: bad values and unknown flags are errors that name them", "[config]")
{
    CHECK(parse({"--port", "70000"}).error.find("--port") != std::string::npos);
    CHECK(parse({"--port", "70000"}).error == "invalid value '70000' for --port (PORT: port to listen on; 0 takes a free one)");
    CHECK(parse({"--nope"}).error.find("--nope") != std::string::npos);
    CHECK(parse({"--db-fail-rate", "2"}).error.find("--db-fail-rate") != std::string::npos);
    CHECK(parse({"--port"}).error.find("needs a value") != std::string::npos);
    CHECK(parse({}, {{"COROUTE_THREADS", "x"}}).error.find("COROUTE_THREADS") != std::string::npos);
    CHECK_FALSE(parse({"--tls-cert", "a.pem"}).error.empty());
}

TEST_CASE("config: an upstream must be an http or https URL with a host", "[config]")
{
    CHECK(parse({"--upstream", "https://api.example.com/todos/1"}).error.empty());
    CHECK(parse({"--upstream", "http://127.0.0.1:8081/x"}).error.empty());
    CHECK(parse({"--upstream", "https://"}).error.find("has no host") != std::string::npos);
    CHECK(parse({}, {{"COROUTE_UPSTREAM", "http://"}}).error.find("has no host") != std::string::npos);
    CHECK(parse({"--upstream", "ftp://x/"}).error.find("http:// or https://") != std::string::npos);
    CHECK(parse({"--upstream", "https://x:0/"}).error.find("port") != std::string::npos);
    CHECK(parse({"--upstream-cert-out", "c.pem"}).error.empty());
    CHECK_FALSE(parse({"--upstream", "https://x/", "--upstream-cert-out", "c.pem"}).error.empty());
    // Every call would refuse it, so the start does.
    CHECK(parse({"--upstream", "https://user:pw@x/"}).error.find("credentials in the URL are not supported") !=
          std::string::npos);
}

TEST_CASE("config: --ws-allowed-origins takes * or origins, scheme://host[:port] and nothing after", "[config]")
{
    auto good = parse({"--ws-allowed-origins", "https://app.example, http://127.0.0.1:8080,*,chrome-extension://abc"});
    REQUIRE(good.error.empty());
    CHECK(good.cfg.app.ws.allowed_origins ==
          std::vector<std::string>{"https://app.example", "http://127.0.0.1:8080", "*", "chrome-extension://abc"});
    for (auto bad : {",", "https://a,,https://b", "app.example", "https://", "https://app.example/",
                     "https://app.example/x", "https://u@app.example", "https://app.example:0",
                     "https://app.example:99999", "https://app.example?x", "null"})
    {
        INFO(bad);
        CHECK(parse({"--ws-allowed-origins", bad}).error.find("for --ws-allowed-origins") != std::string::npos);
    }
}

TEST_CASE("config: a --db URL whose port is not a port is a bad option", "[config]")
{
    for (auto url : {"postgresql://h:abc/db", "postgresql://h:99999999/db", "postgresql://h:0/db",
                     "postgresql://a:5432,b:x/db", "host=/tmp port=-1"})
    {
        auto r = parse({"--db", url});
        INFO(url);
        CHECK(r.error.find("--db: the port") != std::string::npos);
    }
    for (auto url : {"postgresql://h:5432/db", "postgresql://a:1,b:65535/db", "postgresql://a,b:/db",
                     "postgresql://postgres@/db?host=/tmp", "host=/tmp port=6543"})
    {
        auto r = parse({"--db", url});
        INFO(url);
        CHECK(r.error.empty());
    }
    CHECK(parse({}, {{"COROUTE_DB", "postgresql://h:x/db"}}).error.find("--db") != std::string::npos);
}

TEST_CASE("config: --help lists every flag with its default", "[config]")
{
    auto text = help_text();
    for (auto flag : {"--port", "--threads", "--header-limit-bytes", "--request-timeout-ms", "--db-latency-ms",
                      "--db-pool", "--shutdown-timeout-ms", "--access-log"})
        CHECK(text.find(flag) != std::string::npos);
    CHECK(text.find("[8080]") != std::string::npos);
}
