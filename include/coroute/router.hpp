#pragma once
// Routes requests by method and path template to coroutine handlers, with Flask-style hooks.

#include <coroute/http.hpp>
#include <coroute/request.hpp>
#include <coroute/websocket.hpp>

#include <exception>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace coroute {

/// A route's handler. Write it as a named coroutine function (or a capture-less
/// lambda calling one): a lambda with captures must not itself be a coroutine.
using handler = std::function<asio::awaitable<response>(request&)>;

/// Runs before routing, in registration order; returning a response answers the
/// request at once (later before-hooks and the handler are skipped).
using before_hook = std::function<asio::awaitable<std::optional<response>>(request&)>;

/// Runs after the handler, in reverse registration order, and may change the response.
/// It also runs on the 500 that replaces a handler's exception.
using after_hook = std::function<asio::awaitable<void>(request&, response&)>;

/// Runs last, in reverse registration order, always; `error` is what the handler or a
/// hook threw (null when nothing did). It must not throw; what it throws is logged.
using teardown_hook = std::function<void(request&, std::exception_ptr error)>;

/// Method + path-template routing with `{name}` parameters.
///
/// Matching works on percent-decoded path segments; a static segment beats a
/// parameter at the same position. A path that matches no route goes to the
/// fallback (404 problem by default); a path that matches with another method
/// gets 405 with `Allow`; `OPTIONS` is answered from the table with `Allow`;
/// `HEAD` runs the `GET` handler and the server drops the body.
///
/// Register everything before the first dispatch: dispatching is read-only and
/// safe from many threads at once, registering is not.
class router
{
public:
    router();
    ~router();
    router(router&&) noexcept;
    router& operator=(router&&) noexcept;

    /// Registers `h` for `method` on `path` (e.g. "/api/items/{id}").
    /// Throws std::invalid_argument for a malformed template or a duplicate route.
    router& route(http::verb method, std::string_view path, handler h);
    router& get(std::string_view path, handler h) { return route(http::verb::get, path, std::move(h)); }
    router& post(std::string_view path, handler h) { return route(http::verb::post, path, std::move(h)); }
    router& put(std::string_view path, handler h) { return route(http::verb::put, path, std::move(h)); }
    router& patch(std::string_view path, handler h) { return route(http::verb::patch, path, std::move(h)); }
    router& del(std::string_view path, handler h) { return route(http::verb::delete_, path, std::move(h)); }

    /// Registers a WebSocket on `path`: a GET whose handshake is checked (version,
    /// key, `Origin` against `opts.allowed_origins`) and answered with 101, after which
    /// `h` owns the socket. The before-hooks run on the handshake request as on any
    /// other, and a hook's response refuses the upgrade. A plain GET gets 426; a
    /// handshake with another method 400.
    router& websocket(std::string_view path, websocket_handler h, websocket_options opts = {});

    /// Registers a class-based view (Flask's MethodView): each of the members
    /// `get`, `post`, `put`, `patch`, `del` that `View` has, taking `request&` and
    /// returning `awaitable<response>`, becomes a route on `path`. `only` limits
    /// which of them are registered here (empty: all it has), so one view can
    /// serve a collection path and an item path with different methods.
    template <class View>
    router& view(std::string_view path, std::shared_ptr<View> v, std::initializer_list<http::verb> only = {});

    router& before(before_hook h);
    router& after(after_hook h);
    router& teardown(teardown_hook h);

    /// Handles requests whose path matches no route (for example static files).
    router& fallback(handler h);

    /// Routes and answers one request: hooks, handler, and problems for what fails.
    /// Never throws for what a handler throws: that becomes a 500 problem, logged
    /// with the request id. Completes on the caller's executor.
    asio::awaitable<response> dispatch(request& req) const;

    /// The methods `path` answers to (with HEAD and OPTIONS), empty when no route matches.
    std::vector<http::verb> allowed(std::string_view path) const;

private:
    static bool selected(std::initializer_list<http::verb> only, http::verb v);
    void add(http::verb method, std::string_view path, handler h, bool websocket);
    struct impl;
    std::unique_ptr<impl> impl_;
};

template <class View>
router& router::view(std::string_view path, std::shared_ptr<View> v, std::initializer_list<http::verb> only)
{
    // Each lambda returns the member's awaitable; the shared_ptr keeps the view alive.
    if constexpr (requires(View& x, request& r) { x.get(r); })
        if (selected(only, http::verb::get))
            route(http::verb::get, path, [v](request& r) { return v->get(r); });
    if constexpr (requires(View& x, request& r) { x.post(r); })
        if (selected(only, http::verb::post))
            route(http::verb::post, path, [v](request& r) { return v->post(r); });
    if constexpr (requires(View& x, request& r) { x.put(r); })
        if (selected(only, http::verb::put))
            route(http::verb::put, path, [v](request& r) { return v->put(r); });
    if constexpr (requires(View& x, request& r) { x.patch(r); })
        if (selected(only, http::verb::patch))
            route(http::verb::patch, path, [v](request& r) { return v->patch(r); });
    if constexpr (requires(View& x, request& r) { x.del(r); })
        if (selected(only, http::verb::delete_))
            route(http::verb::delete_, path, [v](request& r) { return v->del(r); });
    return *this;
}

/// Formats an `Allow` header value: "GET, HEAD, OPTIONS".
std::string allow_header(const std::vector<http::verb>& methods);

} // namespace coroute
