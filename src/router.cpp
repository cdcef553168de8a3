// The route tree and the hook pipeline.
#include <coroute/router.hpp>

#include <coroute/error.hpp>
#include <coroute/log.hpp>
#include <coroute/problem.hpp>

#include "exception_text.hpp"
#include "target.hpp"
#include "websocket_route.hpp"

#include <boost/asio/this_coro.hpp>
#include <boost/container/small_vector.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <map>
#include <stdexcept>

namespace coroute {

namespace {

// The order methods appear in an Allow header.
constexpr http::verb method_order[] = {http::verb::get,   http::verb::head,    http::verb::post,
                                       http::verb::put,   http::verb::patch,   http::verb::delete_,
                                       http::verb::options};

struct node
{
    std::map<std::string, std::unique_ptr<node>, std::less<>> statics;
    std::unique_ptr<node> param;
    std::string param_name;
    std::string route; // the template that ends here ("/api/items/{id}")
    std::vector<std::pair<http::verb, handler>> handlers;
    bool websocket = false; // a WebSocket route: its GET is the handshake

    const handler* find(http::verb v) const
    {
        for (auto& [verb, h] : handlers)
            if (verb == v)
                return &h;
        return nullptr;
    }
};

// A request path's segments: views into the request's path (or into decoded copies).
// Eight fit without an allocation.
using segment_list = boost::container::small_vector<std::string_view, 8>;

struct match
{
    const node* n;
    request::param_list params;
};

// "/" → {}, "/a/b" → {"a","b"}, "/a/" → {"a",""}: the same shape Boost.URL gives a request path.
std::vector<std::string> split_template(std::string_view path)
{
    if (path.empty() || path.front() != '/')
        throw std::invalid_argument("route path must start with '/': " + std::string{path});
    path.remove_prefix(1);
    std::vector<std::string> out;
    if (path.empty())
        return out;
    for (;;)
    {
        auto slash = path.find('/');
        out.emplace_back(path.substr(0, slash));
        if (slash == std::string_view::npos)
            break;
        path.remove_prefix(slash + 1);
    }
    return out;
}

void collect(const node& n, const segment_list& segs, std::size_t i, request::param_list& params,
             std::vector<match>& out)
{
    if (i == segs.size())
    {
        if (!n.handlers.empty())
            out.push_back({&n, params});
        return;
    }
    // Static first, so a static segment beats a parameter at the same position.
    if (auto it = n.statics.find(segs[i]); it != n.statics.end())
        collect(*it->second, segs, i + 1, params, out);
    if (n.param && !segs[i].empty())
    {
        params.emplace_back(n.param_name, segs[i]);
        collect(*n.param, segs, i + 1, params, out);
        params.pop_back();
    }
}

// The route, in the order `collect` lists them, that has a handler for `method`
// (GET's for HEAD): the common case, found without collecting every match.
const node* first_route(const node& n, const segment_list& segs, std::size_t i, http::verb method,
                        request::param_list& params)
{
    if (i == segs.size())
    {
        if (n.find(method) || (method == http::verb::head && n.find(http::verb::get)))
            return &n;
        return nullptr;
    }
    if (auto it = n.statics.find(segs[i]); it != n.statics.end())
        if (auto r = first_route(*it->second, segs, i + 1, method, params))
            return r;
    if (n.param && !segs[i].empty())
    {
        params.emplace_back(n.param_name, segs[i]);
        if (auto r = first_route(*n.param, segs, i + 1, method, params))
            return r;
        params.pop_back();
    }
    return nullptr;
}

const handler* handler_of(const node& n, http::verb method)
{
    const handler* h = n.find(method);
    if (!h && method == http::verb::head)
        h = n.find(http::verb::get);
    return h;
}

// "/" → {}, "/a/b" → {"a","b"}, "/a/" → {"a",""}: views into a normalized path.
void split_path(std::string_view path, segment_list& segs)
{
    path.remove_prefix(1);
    if (path.empty())
        return;
    for (;;)
    {
        auto slash = path.find('/');
        segs.push_back(path.substr(0, slash));
        if (slash == std::string_view::npos)
            break;
        path.remove_prefix(slash + 1);
    }
}

std::vector<http::verb> allowed_of(const std::vector<match>& matches)
{
    std::vector<http::verb> out;
    auto has = [&](http::verb v) {
        return std::any_of(matches.begin(), matches.end(), [&](const match& m) { return m.n->find(v) != nullptr; });
    };
    for (auto v : method_order)
    {
        bool yes = has(v) || (v == http::verb::head && has(http::verb::get)) || v == http::verb::options;
        if (yes)
            out.push_back(v);
    }
    for (auto& m : matches)
        for (auto& [v, h] : m.n->handlers)
            if (std::find(out.begin(), out.end(), v) == out.end())
                out.push_back(v);
    return out;
}

asio::awaitable<response> no_route(request& req)
{
    co_return problem(http::status::not_found, "no route for " + req.path());
}

} // namespace

struct router::impl
{
    node root;
    std::vector<before_hook> befores;
    std::vector<after_hook> afters;
    std::vector<teardown_hook> teardowns;
    handler fallback = &no_route;

    std::vector<match> find(const segment_list& segs) const
    {
        std::vector<match> out;
        request::param_list params;
        collect(root, segs, 0, params, out);
        return out;
    }

    // Routing without suspending: fills the request's path, query, route and
    // parameters, and gives the handler to run, or the answer when there is none
    // (400, 405, OPTIONS). Null handler and empty answer: the fallback's turn.
    const handler* select(request& req, std::optional<response>& answer) const
    {
        if (req.target() == "*" && req.method() == http::verb::options)
        {
            auto& res = answer.emplace(make_response(http::status::no_content, "text/plain", {}));
            res.set(http::field::allow, allow_header({method_order, method_order + std::size(method_order)}));
            return nullptr;
        }
        if (!detail::parse_target(req.target(), req.path_, req.query_))
        {
            answer.emplace(problem(http::status::bad_request, "malformed request target"));
            return nullptr;
        }
        segment_list segs;
        split_path(req.path_, segs);

        auto method = req.method();
        if (auto n = first_route(root, segs, 0, method, req.params_))
        {
            req.route_ = n->route;
            return handler_of(*n, method);
        }
        auto matches = find(segs);
        if (matches.empty())
            return &fallback;

        req.route_ = matches.front().n->route;
        req.params_ = matches.front().params;
        auto allow = allow_header(allowed_of(matches));
        if (method == http::verb::options)
        {
            auto& res = answer.emplace(make_response(http::status::no_content, "text/plain", {}));
            res.set(http::field::allow, allow);
            return nullptr;
        }
        if (matches.front().n->websocket && detail::asks_for_websocket(req))
        {
            answer.emplace(problem(http::status::bad_request, "a WebSocket handshake must be a GET"));
            return nullptr;
        }
        auto& res = answer.emplace(problem(http::status::method_not_allowed,
                                           std::string{req.message().method_string()} + " is not allowed on " +
                                               req.path()));
        res.set(http::field::allow, allow);
        return nullptr;
    }
};

router::router() : impl_(std::make_unique<impl>()) {}
router::~router() = default;
router::router(router&&) noexcept = default;
router& router::operator=(router&&) noexcept = default;

bool router::selected(std::initializer_list<http::verb> only, http::verb v)
{
    return only.size() == 0 || std::find(only.begin(), only.end(), v) != only.end();
}

router& router::route(http::verb method, std::string_view path, handler h)
{
    add(method, path, std::move(h), false);
    return *this;
}

router& router::websocket(std::string_view path, websocket_handler h, websocket_options opts)
{
    add(http::verb::get, path, detail::websocket_route(std::move(h), std::move(opts)), true);
    return *this;
}

void router::add(http::verb method, std::string_view path, handler h, bool websocket)
{
    if (!h)
        throw std::invalid_argument("empty handler for " + std::string{path});
    node* n = &impl_->root;
    for (auto& seg : split_template(path))
    {
        if (seg.size() >= 2 && seg.front() == '{' && seg.back() == '}')
        {
            auto name = seg.substr(1, seg.size() - 2);
            if (name.empty() || name.find_first_of("{}/") != std::string::npos)
                throw std::invalid_argument("bad parameter in route " + std::string{path});
            if (!n->param)
            {
                n->param = std::make_unique<node>();
                n->param_name = name;
            }
            else if (n->param_name != name)
                throw std::invalid_argument("parameter {" + name + "} conflicts with {" + n->param_name +
                                            "} in route " + std::string{path});
            n = n->param.get();
        }
        else
        {
            if (seg.find_first_of("{}") != std::string::npos)
                throw std::invalid_argument("bad segment in route " + std::string{path});
            auto& child = n->statics[seg];
            if (!child)
                child = std::make_unique<node>();
            n = child.get();
        }
    }
    if (n->find(method))
        throw std::invalid_argument("duplicate route " + std::string{http::to_string(method)} + " " +
                                    std::string{path});
    n->route = std::string{path};
    n->handlers.emplace_back(method, std::move(h));
    n->websocket = n->websocket || websocket;
}

router& router::before(before_hook h)
{
    impl_->befores.push_back(std::move(h));
    return *this;
}

router& router::after(after_hook h)
{
    impl_->afters.push_back(std::move(h));
    return *this;
}

router& router::teardown(teardown_hook h)
{
    impl_->teardowns.push_back(std::move(h));
    return *this;
}

router& router::fallback(handler h)
{
    impl_->fallback = h ? std::move(h) : handler{&no_route};
    return *this;
}

std::vector<http::verb> router::allowed(std::string_view path) const
{
    std::string normalized;
    request::param_list query;
    if (!detail::parse_target(path, normalized, query))
        return {};
    segment_list segs;
    split_path(normalized, segs);
    auto matches = impl_->find(segs);
    if (matches.empty())
        return {};
    return allowed_of(matches);
}

namespace {

void log_exception(const request& req, std::string_view where, std::exception_ptr e)
{
    if (req.log())
        req.log()->error("request " + req.id() + " " + std::string{where} + " threw: " + detail::what_of(e));
}

response internal_error()
{
    return problem(http::status::internal_server_error, "the server failed to answer this request");
}

} // namespace

asio::awaitable<response> router::dispatch(request& req) const
{
    std::exception_ptr error;
    std::optional<response> res;
    // Routing first: the before-hooks see the path, route and parameters the handler will.
    const handler* h = impl_->select(req, res);
    try
    {
        for (auto& hook : impl_->befores)
        {
            auto early = co_await hook(req);
            if (early)
            {
                res.emplace(std::move(*early));
                h = nullptr;
                break;
            }
        }
        if (h)
            res.emplace(co_await (*h)(req));
    }
    catch (...)
    {
        error = std::current_exception();
    }

    // The server cancels a handler's waits at its deadline or when its client leaves:
    // the answer is then 504 (or 499) whatever the handler made of it, decided here,
    // before the after-hooks, so they see what the client will.
    auto cs = co_await asio::this_coro::cancellation_state;
    auto cancelled = cs.cancelled();
    if (cancelled != asio::cancellation_type::none)
    {
        auto why = req.until().passed() ? coroute::error::deadline_exceeded : coroute::error::client_gone;
        res.emplace(problem_for(why, why == coroute::error::deadline_exceeded
                                         ? "the request took longer than its deadline"
                                         : "the client closed the connection"));
        error = nullptr;
    }
    else if (error)
    {
        if (!detail::is_cancellation(error))
            log_exception(req, "handler", error);
        res.emplace(internal_error());
    }

    for (auto it = impl_->afters.rbegin(); it != impl_->afters.rend(); ++it)
    {
        std::exception_ptr hook_error;
        try
        {
            co_await (*it)(req, *res);
        }
        catch (...)
        {
            hook_error = std::current_exception();
        }
        if (hook_error)
        {
            log_exception(req, "after-request hook", hook_error);
            error = hook_error;
            res.emplace(internal_error());
        }
    }

    for (auto it = impl_->teardowns.rbegin(); it != impl_->teardowns.rend(); ++it)
    {
        try
        {
            (*it)(req, error);
        }
        catch (...)
        {
            log_exception(req, "teardown hook", std::current_exception());
        }
    }
    co_return std::move(*res);
}

std::string allow_header(const std::vector<http::verb>& methods)
{
    std::string out;
    for (auto v : methods)
    {
        if (!out.empty())
            out += ", ";
        out += http::to_string(v);
    }
    return out;
}

} // namespace coroute
