#include <coroute/log.hpp>

#include <catch2/catch.hpp>

#include <cstdio>
#include <string>

using namespace coroute;

namespace {

std::string read_all(std::FILE* f)
{
    std::fflush(f);
    std::rewind(f);
    std::string out;
    char buf[512];
    while (auto n = std::fread(buf, 1, sizeof buf, f))
        out.append(buf, n);
    return out;
}

} // namespace

TEST_CASE("log: an access line has remote, request, status, bytes, duration and id", "[log]")
{
    std::FILE* access = std::tmpfile();
    std::FILE* diag = std::tmpfile();
    logger log{log_level::info, true, access, diag};
    log.access({"127.0.0.1", "GET", "/api/db?x=\"1\"\n", 200, 123, std::chrono::microseconds{1500}, "abc"});
    auto line = read_all(access);
    CHECK(line.find(" 127.0.0.1 \"GET /api/db?x=?1??\" 200 123 1.500ms id=abc\n") != std::string::npos);
    CHECK(std::count(line.begin(), line.end(), '\n') == 1);
    std::fclose(access);
    std::fclose(diag);
}

TEST_CASE("log: lines below the level and a disabled access log write nothing", "[log]")
{
    std::FILE* access = std::tmpfile();
    std::FILE* diag = std::tmpfile();
    logger log{log_level::warn, false, access, diag};
    log.info("hidden");
    log.warn("shown");
    log.access({"-", "GET", "/", 200, 0, {}, "x"});
    auto text = read_all(diag);
    CHECK(text.find("hidden") == std::string::npos);
    CHECK(text.find(" warn shown\n") != std::string::npos);
    CHECK(read_all(access).empty());
    std::fclose(access);
    std::fclose(diag);
}

TEST_CASE("log: level names parse, anything else does not", "[log]")
{
    log_level l = log_level::info;
    CHECK(parse_log_level("debug", l));
    CHECK(l == log_level::debug);
    CHECK(parse_log_level("off", l));
    CHECK(l == log_level::off);
    CHECK_FALSE(parse_log_level("verbose", l));
    CHECK(l == log_level::off);
}
