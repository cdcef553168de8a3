// Request targets, decoded and normalized by the router, then resolved by the static
// site: whatever the target, no byte of a file outside the www directory (or of a
// dot-file in it) is ever served, and the answer is never a 500.
#include <coroute/router.hpp>
#include <coroute/static_files.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include <unistd.h>

using namespace coroute;
namespace fs = std::filesystem;

namespace {

constexpr std::string_view outside = "SECRET-OUTSIDE-THE-ROOT";
constexpr std::string_view hidden = "SECRET-IN-A-DOT-FILE";

void require(bool ok)
{
    if (!ok)
        std::abort();
}

void write(const fs::path& p, std::string_view text)
{
    std::ofstream(p) << text;
}

// A site with a secret beside it and every way out a path could try.
std::shared_ptr<router> make_site()
{
    char tmpl[] = "/tmp/coroute-fuzz-site-XXXXXX";
    fs::path top = ::mkdtemp(tmpl);
    auto www = top / "www";
    fs::create_directories(www / "sub");
    write(www / "index.html", "<p>inside</p>");
    write(www / "sub" / "a.txt", "inside a");
    write(www / ".env", hidden);
    write(top / "secret.txt", outside);
    fs::create_symlink(top / "secret.txt", www / "link.txt");
    fs::create_directory_symlink(top, www / "up");
    auto r = std::make_shared<router>();
    r->fallback(static_files::handler(std::make_shared<const static_files>(www)));
    return r;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    static const auto site = make_site();
    if (size == 0)
        return 0;
    // The first byte picks the method, the rest is the target.
    auto method = data[0] % 2 ? http::verb::head : http::verb::get;
    std::string target(reinterpret_cast<const char*>(data) + 1, size - 1);
    request::message_type msg{method, target, 11};
    msg.set(http::field::host, "x");
    request req{std::move(msg), "fuzz", request::clock::now() + std::chrono::seconds(5)};

    asio::io_context ioc;
    std::optional<response> res;
    asio::co_spawn(ioc, site->dispatch(req), [&](std::exception_ptr e, response r) {
        require(!e);
        res = std::move(r);
    });
    ioc.run();
    require(res.has_value());
    auto status = res->result_int();
    require(status < 500);
    if (status >= 400)
    {
        // A problem document (it may quote the path it refuses, so its words are not checked).
        require((*res)[http::field::content_type] == "application/problem+json");
        return 0;
    }
    require(res->body().find(outside) == std::string::npos);
    require(res->body().find(hidden) == std::string::npos);
    if (auto* part = std::get_if<file_part>(&res->source()))
    {
        // A streamed file (none here is large enough, but should one be): read what would go out.
        std::string got(part->length, '\0');
        require(::pread(part->source.native_handle(), got.data(), got.size(), static_cast<off_t>(part->offset)) >= 0);
        require(got.find(outside) == std::string::npos && got.find(hidden) == std::string::npos);
    }
    return 0;
}
