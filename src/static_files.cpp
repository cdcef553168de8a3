// The static site: path resolution, validators, ranges, and streamed large files.
#include <coroute/static_files.hpp>

#include <coroute/problem.hpp>

#include "detail.hpp"
#include "http_date.hpp"
#include "target.hpp"

#include <fstream>
#include <mutex>
#include <sstream>
#include <unordered_map>

namespace coroute {

namespace fs = std::filesystem;

namespace {

struct file_entry
{
    std::uintmax_t size = 0;
    fs::file_time_type mtime;
    std::shared_ptr<const std::string> data; // null: a large file, streamed from `file`
    std::optional<coroute::file> file;
    std::string etag;
    std::string last_modified;
    std::chrono::system_clock::time_point modified;
};

std::chrono::system_clock::time_point to_system(fs::file_time_type t)
{
    return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::file_clock::to_sys(t));
}

// An entity tag from size and mtime: it changes whenever the file does.
std::string make_etag(std::uintmax_t size, fs::file_time_type mtime)
{
    char buf[64];
    std::snprintf(buf, sizeof buf, "\"%jx-%llx\"", size,
                  static_cast<unsigned long long>(mtime.time_since_epoch().count()));
    return buf;
}

// RFC 9110 §13.1.2: If-None-Match uses the weak comparison.
bool etag_matches(std::string_view header, std::string_view etag)
{
    if (detail::trim(header) == "*")
        return true;
    auto strip_weak = [](std::string_view t) {
        t = detail::trim(t);
        if (t.substr(0, 2) == "W/")
            t.remove_prefix(2);
        return t;
    };
    auto want = strip_weak(etag);
    while (!header.empty())
    {
        auto comma = header.find(',');
        if (strip_weak(header.substr(0, comma)) == want)
            return true;
        if (comma == std::string_view::npos)
            break;
        header.remove_prefix(comma + 1);
    }
    return false;
}

// Reads one `bytes=` range; false for anything else (then the whole file is sent).
// `unsatisfiable` is set when the syntax is fine but no byte of the file is in it.
bool parse_range(std::string_view h, std::uintmax_t size, std::uintmax_t& first, std::uintmax_t& last,
                 bool& unsatisfiable)
{
    unsatisfiable = false;
    h = detail::trim(h);
    if (h.substr(0, 6) != "bytes=" || h.find(',') != std::string_view::npos)
        return false;
    h.remove_prefix(6);
    auto dash = h.find('-');
    if (dash == std::string_view::npos)
        return false;
    auto parse = [](std::string_view s, std::uintmax_t& out) {
        if (s.empty() || s.size() > 18)
            return false;
        out = 0;
        for (char c : s)
        {
            if (c < '0' || c > '9')
                return false;
            out = out * 10 + static_cast<unsigned>(c - '0');
        }
        return true;
    };
    auto a = h.substr(0, dash), b = h.substr(dash + 1);
    if (a.empty())
    {
        std::uintmax_t n = 0;
        if (!parse(b, n))
            return false;
        if (n == 0 || size == 0)
        {
            unsatisfiable = true;
            return false;
        }
        first = n >= size ? 0 : size - n;
        last = size - 1;
        return true;
    }
    if (!parse(a, first))
        return false;
    if (b.empty())
        last = size ? size - 1 : 0;
    else if (!parse(b, last) || last < first)
        return false;
    if (first >= size)
    {
        unsatisfiable = true;
        return false;
    }
    if (last >= size)
        last = size - 1;
    return true;
}

} // namespace

namespace {

// `length` bytes of the file from `first`: copied from memory, or streamed from disk.
response body_of(const file_entry& e, http::status status, std::string_view type, std::uintmax_t first,
                 std::uintmax_t length)
{
    if (e.data)
        return make_response(status, type, e.data->substr(first, length));
    auto res = make_response(status, type, {});
    res.send_file({*e.file, first, length});
    finish_payload(res);
    return res;
}

} // namespace

struct static_files::impl
{
    fs::path root;
    std::string root_prefix; // canonical root with a trailing '/'
    mutable std::mutex mutex;
    mutable std::unordered_map<std::string, file_entry> cache;

    std::uintmax_t inline_max = 64 * 1024;

    // The file a normalized request path names, or empty when it names nothing servable.
    std::optional<fs::path> resolve(std::string_view path) const
    {
        if (path.empty() || path.front() != '/')
            return std::nullopt;
        fs::path p = root;
        path.remove_prefix(1);
        while (!path.empty())
        {
            auto slash = path.find('/');
            auto seg = path.substr(0, slash);
            path.remove_prefix(slash == std::string_view::npos ? path.size() : slash + 1);
            if (seg.empty())
                continue;
            // No dot-files, and nothing a file system could read as a separator or drive.
            if (seg.front() == '.' || seg.find_first_of(std::string_view{"\\\0:", 3}) != std::string_view::npos)
                return std::nullopt;
            p /= std::string{seg};
        }
        std::error_code ec;
        if (fs::is_directory(p, ec))
            p /= "index.html";
        auto real = fs::canonical(p, ec);
        if (ec)
            return std::nullopt;
        // Symlinks are followed, but only to files inside the root.
        if (real.native().compare(0, root_prefix.size(), root_prefix) != 0)
            return std::nullopt;
        if (!fs::is_regular_file(real, ec))
            return std::nullopt;
        return real;
    }

    // Small files come from memory (cached, revalidated by size and mtime); large ones
    // are opened and streamed, so no request holds a copy of them.
    std::optional<file_entry> load(const fs::path& p) const
    {
        std::error_code ec;
        auto size = fs::file_size(p, ec);
        if (ec)
            return std::nullopt;
        auto mtime = fs::last_write_time(p, ec);
        if (ec)
            return std::nullopt;
        if (size <= inline_max)
        {
            std::lock_guard lock{mutex};
            auto it = cache.find(p.native());
            if (it != cache.end() && it->second.size == size && it->second.mtime == mtime)
                return it->second;
        }
        file_entry e;
        e.mtime = mtime;
        e.etag = make_etag(size, mtime);
        e.modified = to_system(mtime);
        e.last_modified = detail::format_http_date(e.modified);
        if (size > inline_max)
        {
            auto f = coroute::file::open(p);
            if (!f)
                return std::nullopt;
            e.size = f->size();
            e.file = std::move(*f);
            return e;
        }
        std::ifstream in{p, std::ios::binary};
        if (!in)
            return std::nullopt;
        std::string data(size, '\0');
        in.read(data.data(), static_cast<std::streamsize>(size));
        data.resize(static_cast<std::size_t>(in.gcount()));
        e.size = data.size();
        e.data = std::make_shared<const std::string>(std::move(data));
        std::lock_guard lock{mutex};
        cache[p.native()] = e;
        return e;
    }
};

static_files::static_files(fs::path root, static_options options) : impl_(std::make_unique<impl>())
{
    impl_->inline_max = options.inline_max_bytes;
    impl_->root = fs::canonical(root);
    if (!fs::is_directory(impl_->root))
        throw fs::filesystem_error("not a directory", root, std::make_error_code(std::errc::not_a_directory));
    impl_->root_prefix = impl_->root.native();
    if (impl_->root_prefix.back() != '/')
        impl_->root_prefix += '/';
}

static_files::~static_files() = default;

const fs::path& static_files::root() const noexcept
{
    return impl_->root;
}

response static_files::serve(const request& req) const
{
    // Routed requests carry the normalized path; a direct call parses the target itself.
    std::string parsed;
    if (req.path().empty())
    {
        request::param_list query;
        if (!detail::parse_target(req.target(), parsed, query))
            return problem(http::status::not_found, "no file at " + std::string{req.target()});
    }
    const std::string& path = req.path().empty() ? parsed : req.path();
    auto file = impl_->resolve(path);
    if (!file)
        return problem(http::status::not_found, "no file at " + path);
    if (req.method() != http::verb::get && req.method() != http::verb::head)
    {
        auto res = problem(http::status::method_not_allowed, "static files answer GET and HEAD only");
        res.set(http::field::allow, "GET, HEAD");
        return res;
    }
    auto entry = impl_->load(*file);
    if (!entry)
        return problem(http::status::not_found, "no file at " + path);

    auto with_validators = [&](response res) {
        res.set(http::field::etag, entry->etag);
        res.set(http::field::last_modified, entry->last_modified);
        res.set(http::field::cache_control, "no-cache");
        res.set(http::field::accept_ranges, "bytes");
        return res;
    };

    // RFC 9110 §13.2.2: If-None-Match wins over If-Modified-Since.
    auto inm = req.header(http::field::if_none_match);
    bool not_modified = false;
    if (!inm.empty())
        not_modified = etag_matches(inm, entry->etag);
    else if (auto ims = detail::parse_http_date(req.header(http::field::if_modified_since)))
        not_modified = entry->modified <= *ims;
    if (not_modified)
    {
        response res{http::status::not_modified, 11};
        return with_validators(std::move(res));
    }

    auto type = mime_type(file->filename().native());
    auto range = req.header(http::field::range);
    auto if_range = req.header(http::field::if_range);
    bool range_allowed = if_range.empty() || if_range == entry->etag || if_range == entry->last_modified;
    std::uintmax_t first = 0, last = 0;
    bool unsatisfiable = false;
    if (!range.empty() && range_allowed && parse_range(range, entry->size, first, last, unsatisfiable))
    {
        auto res = with_validators(body_of(*entry, http::status::partial_content, type, first, last - first + 1));
        res.set(http::field::content_range, "bytes " + std::to_string(first) + "-" + std::to_string(last) + "/" +
                                                std::to_string(entry->size));
        return res;
    }
    if (unsatisfiable && range_allowed)
    {
        auto res = problem(http::status::range_not_satisfiable,
                           "range " + std::string{range} + " is outside the file's " + std::to_string(entry->size) +
                               " bytes");
        res.set(http::field::content_range, "bytes */" + std::to_string(entry->size));
        return res;
    }
    return with_validators(body_of(*entry, http::status::ok, type, 0, entry->size));
}

namespace {
asio::awaitable<response> serve_static(std::shared_ptr<const static_files> files, request& req)
{
    co_return files->serve(req);
}
} // namespace

std::function<asio::awaitable<response>(request&)> static_files::handler(std::shared_ptr<const static_files> files)
{
    return [files = std::move(files)](request& req) { return serve_static(files, req); };
}

std::string_view mime_type(std::string_view name)
{
    static constexpr std::pair<std::string_view, std::string_view> types[] = {
        {".html", "text/html; charset=utf-8"},
        {".htm", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".json", "application/json"},
        {".map", "application/json"},
        {".txt", "text/plain; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".jpg", "image/jpeg"},
        {".jpeg", "image/jpeg"},
        {".gif", "image/gif"},
        {".webp", "image/webp"},
        {".ico", "image/x-icon"},
        {".woff2", "font/woff2"},
        {".wasm", "application/wasm"},
        {".xml", "application/xml"},
        {".pdf", "application/pdf"},
    };
    auto dot = name.rfind('.');
    if (dot != std::string_view::npos)
        for (auto& [ext, type] : types)
            if (beast::iequals(name.substr(dot), ext))
                return type;
    return "application/octet-stream";
}

} // namespace coroute
