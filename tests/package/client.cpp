// One GET with coroute's HTTPS client; exits 0 only when a 2xx answer came back.
// usage: client URL [CA_FILE]   (without CA_FILE, the system CA store is trusted)
#include <coroute/http_client.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <iostream>
#include <string>

namespace asio = boost::asio;

// Prints the answer (or why there is none) and yields the exit status.
asio::awaitable<int> fetch(coroute::http_client& client, std::string url)
{
    auto result = co_await client.get(url); // or request(verb, url, headers, body, deadline)
    if (!result)
    {
        std::cerr << "client: " << result.error().message << "\n"; // e.g. "tls: host name mismatch: …"
        co_return 1;
    }
    auto& res = result.value();
    std::cout << res.result_int() << " " << res.body() << "\n";
    co_return res.result_int() / 100 == 2 ? 0 : 1;
}

int main(int argc, char** argv)
{
    if (argc < 2)
    {
        std::cerr << "usage: client URL [CA_FILE]\n";
        return 2;
    }
    std::string url = argv[1];
    coroute::client_options opts; // 5 s per call
    if (argc > 2)
        opts.ca_file = argv[2];

    asio::io_context io;
    coroute::http_client client{io.get_executor(), opts};
    int status = 1;
    asio::co_spawn(io, fetch(client, url), [&](std::exception_ptr e, int s) {
        if (e)
            std::rethrow_exception(e);
        status = s;
    });
    io.run();
    return status;
}
