// Responses: in-memory bodies, streamed files, produced bodies, upgrades.
#include <coroute/response.hpp>

#include <charconv>
#include <stdexcept>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace coroute {

boost::system::result<file> file::open(const std::filesystem::path& path)
{
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return boost::system::error_code{errno, boost::system::system_category()};
    struct stat st{};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
    {
        int err = errno ? errno : EISDIR;
        ::close(fd);
        return boost::system::error_code{err, boost::system::system_category()};
    }
    file f;
    f.fd_ = std::shared_ptr<const int>(new int{fd}, [](const int* p) {
        ::close(*p);
        delete p;
    });
    f.size_ = static_cast<std::uint64_t>(st.st_size);
    return f;
}

void response::send_file(file_part part)
{
    body().clear();
    source_ = std::move(part);
}

void response::stream(body_producer producer, std::optional<std::uint64_t> length)
{
    body().clear();
    source_ = produced_body{std::move(producer), length};
}

void response::upgrade(std::string_view protocol, upgrade_handler h)
{
    result(http::status::switching_protocols);
    body().clear();
    set(http::field::upgrade, protocol);
    set(http::field::connection, "upgrade");
    source_ = std::move(h);
}

void response::take_over(takeover_handler h)
{
    result(http::status::switching_protocols);
    body().clear();
    source_ = takeover{std::move(h)};
}

namespace {

// Sets Content-Length to `n` unless it already says so: replacing a field frees and
// allocates one, and most responses already carry the right length.
void set_length(response& res, std::uint64_t n)
{
    char digits[24];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, n);
    auto have = res[http::field::content_length];
    if (std::string_view{have.data(), have.size()} != std::string_view{digits, static_cast<std::size_t>(end - digits)})
        res.content_length(n);
}

} // namespace

void finish_payload(response& res)
{
    auto s = res.result_int();
    // A hook that turned an upgrade into another answer (403, say) cancels the upgrade.
    bool upgrading = std::holds_alternative<upgrade_handler>(res.source()) ||
                     std::holds_alternative<takeover>(res.source());
    if (upgrading && s != 101)
        res.source() = std::monostate{};
    if (s < 200 || s == 204 || s == 304)
    {
        res.body().clear();
        res.erase(http::field::content_length);
        res.erase(http::field::transfer_encoding);
        if (s != 101)
            res.source() = std::monostate{};
        return;
    }
    if (auto* f = std::get_if<file_part>(&res.source()))
        return set_length(res, f->length);
    if (auto* p = std::get_if<produced_body>(&res.source()))
    {
        if (p->length)
        {
            res.erase(http::field::transfer_encoding);
            return set_length(res, *p->length);
        }
        res.erase(http::field::content_length);
        res.chunked(true);
        return;
    }
    if (res.chunked())
        return;
    set_length(res, res.body().size());
}

response make_response(http::status status, std::string_view content_type, std::string body)
{
    response res{status, 11};
    res.set(http::field::content_type, content_type);
    res.body() = std::move(body);
    finish_payload(res);
    return res;
}

void throw_exception_from_error(const response& e, const boost::source_location&)
{
    throw std::runtime_error("result holds a problem response, status " + std::to_string(e.result_int()));
}

} // namespace coroute
