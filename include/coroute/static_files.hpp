#pragma once
// Serves a directory tree (the www/ site) with validators, ranges and HEAD.

#include <coroute/http.hpp>
#include <coroute/request.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>

namespace coroute {

/// How a static site is served.
struct static_options
{
    /// Files up to this size are kept in memory; larger ones are streamed from disk
    /// in 64 KiB chunks as the client reads, so memory per download stays bounded.
    std::uintmax_t inline_max_bytes = 64 * 1024;
};

/// Serves files below one root directory.
///
/// `/` and directories map to their `index.html`; Content-Type comes from the
/// extension; `ETag`/`If-None-Match` and `Last-Modified`/`If-Modified-Since` give
/// 304; one `Range` gives 206 (416 when unsatisfiable). No request reaches a file
/// outside the root: `..`, encoded dots or slashes, backslashes, NUL, dot-files and
/// symlinks leading out all answer 404. Small files are cached in memory and
/// revalidated against the file's size and mtime on each request; larger files are
/// streamed (see `static_options`), a `Range` by seeking.
class static_files
{
public:
    /// Throws std::filesystem::filesystem_error when `root` is not a directory.
    explicit static_files(std::filesystem::path root, static_options options = {});
    ~static_files();

    /// Answers a GET or HEAD for `req.path()` (the target's, when not routed); other methods get 405.
    response serve(const request& req) const;

    /// A router handler serving this tree; the handler keeps `files` alive.
    static std::function<asio::awaitable<response>(request&)> handler(std::shared_ptr<const static_files> files);

    const std::filesystem::path& root() const noexcept;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

/// The media type for a file name's extension ("application/octet-stream" when unknown).
std::string_view mime_type(std::string_view filename);

} // namespace coroute
