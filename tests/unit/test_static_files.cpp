#include <coroute/static_files.hpp>

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

using namespace coroute;
namespace fs = std::filesystem;

namespace {

struct site
{
    site()
    {
        root = fs::temp_directory_path() / ("coroute-static-" + std::to_string(::getpid()));
        fs::create_directories(root / "sub");
        std::ofstream{root / "index.html"} << "<h1>home</h1>";
        std::ofstream{root / "sub" / "data.json"} << "0123456789abcdef";
        std::ofstream{root / ".secret"} << "hidden";
        std::ofstream{root.parent_path() / "coroute-outside.txt"} << "outside";
        fs::create_symlink(root.parent_path() / "coroute-outside.txt", root / "escape.txt");
        files = std::make_unique<static_files>(root);
    }
    ~site()
    {
        std::error_code ec;
        fs::remove_all(root, ec);
        fs::remove(root.parent_path() / "coroute-outside.txt", ec);
    }

    response get(std::string target, std::vector<std::pair<http::field, std::string>> headers = {},
                 http::verb method = http::verb::get)
    {
        request::message_type msg{method, target, 11};
        for (auto& [f, v] : headers)
            msg.set(f, v);
        request req{std::move(msg), "t", request::clock::now()};
        return files->serve(req);
    }

    fs::path root;
    std::unique_ptr<static_files> files;
};

} // namespace

TEST_CASE("static files: / serves index.html as HTML with validators", "[static]")
{
    site s;
    auto res = s.get("/");
    CHECK(res.result() == http::status::ok);
    CHECK(res.body() == "<h1>home</h1>");
    CHECK(res[http::field::content_type] == "text/html; charset=utf-8");
    CHECK_FALSE(res[http::field::etag].empty());
    CHECK_FALSE(res[http::field::last_modified].empty());
}

TEST_CASE("static files: If-None-Match and If-Modified-Since give 304", "[static]")
{
    site s;
    auto first = s.get("/sub/data.json");
    CHECK(first[http::field::content_type] == "application/json");
    auto etag = std::string{first[http::field::etag]};
    CHECK(s.get("/sub/data.json", {{http::field::if_none_match, etag}}).result() == http::status::not_modified);
    CHECK(s.get("/sub/data.json", {{http::field::if_none_match, "\"other\""}}).result() == http::status::ok);
    auto lm = std::string{first[http::field::last_modified]};
    CHECK(s.get("/sub/data.json", {{http::field::if_modified_since, lm}}).result() == http::status::not_modified);
    CHECK(s.get("/sub/data.json", {{http::field::if_modified_since, "Sun, 06 Nov 1994 08:49:37 GMT"}}).result() ==
          http::status::ok);
}

TEST_CASE("static files: one range gives 206, an unsatisfiable one 416", "[static]")
{
    site s;
    auto part = s.get("/sub/data.json", {{http::field::range, "bytes=2-5"}});
    CHECK(part.result() == http::status::partial_content);
    CHECK(part.body() == "2345");
    CHECK(part[http::field::content_range] == "bytes 2-5/16");
    CHECK(s.get("/sub/data.json", {{http::field::range, "bytes=-3"}}).body() == "def");
    CHECK(s.get("/sub/data.json", {{http::field::range, "bytes=10-"}}).body() == "abcdef");
    auto bad = s.get("/sub/data.json", {{http::field::range, "bytes=50-60"}});
    CHECK(bad.result() == http::status::range_not_satisfiable);
    CHECK(bad[http::field::content_range] == "bytes */16");
    CHECK(s.get("/sub/data.json", {{http::field::range, "bytes=0-1,4-5"}}).result() == http::status::ok);
}

TEST_CASE("static files: nothing outside the root is ever served", "[static][security]")
{
    site s;
    for (auto target : {"/../coroute-outside.txt", "/%2e%2e/coroute-outside.txt", "/sub/..%2f..%2fcoroute-outside.txt",
                        "/sub%5c..%5cindex.html", "/index.html%00.txt", "/.secret", "/escape.txt", "/nope.html"})
    {
        INFO(target);
        CHECK(s.get(target).result() == http::status::not_found);
    }
}

TEST_CASE("static files: other methods than GET and HEAD are 405", "[static]")
{
    site s;
    auto res = s.get("/", {}, http::verb::post);
    CHECK(res.result() == http::status::method_not_allowed);
    CHECK(res[http::field::allow] == "GET, HEAD");
}

TEST_CASE("static files: media types come from the extension", "[static]")
{
    CHECK(mime_type("a.css") == "text/css; charset=utf-8");
    CHECK(mime_type("a.JS") == "text/javascript; charset=utf-8");
    CHECK(mime_type("a.png") == "image/png");
    CHECK(mime_type("README") == "application/octet-stream");
}
