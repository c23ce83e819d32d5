// libFuzzer target: the server's request path without sockets (examples/schedule_server). The
// input is the bytes a client sends on a connection: Beast's request parser reads them with the
// server's limits (16 KiB of header; a smaller body limit here), then as http_server.cpp does:
// describe() takes the header's fields, api::route() parses the target, decodes the query, checks
// Host, Expect, the method, the bearer token and the Content-Type, and routes; for a routed
// request, refuse_before_body() and take_body() (UTF-8 of a JSON body, an XMLTV body's charset
// to UTF-8, the worker's request JSON). Two api objects, one with a bearer token and the memory
// probe and one without, over a fake backend (never run: the queued part is the worker's, which
// the other fuzzers cover). Nothing may throw, and the answers must keep their promises: every
// immediate answer a status the server documents with a JSON body (or none, for 204), every
// worker request in UTF-8 (a JSON object when the server built it: from a query, around XMLTV).
#include "api.hpp"
#include "backend.hpp"
#include "request_head.hpp"
#include "utf8.hpp"

#include <boost/beast/core/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace {

using namespace schedule_server;
namespace http = boost::beast::http;

void require(bool condition, const char* what) {
    if (!condition) {
        std::fprintf(stderr, "broken promise: %s\n", what);
        std::abort();
    }
}

/// A backend that runs nothing: the stats of an idle queue (or a full one, for
/// refuse_before_body's 503).
class fake_backend final : public backend {
  public:
    explicit fake_backend(bool full) {
        options_.worker_program = "schedule_worker";
        options_.data_dir = "data";
        stats_.max_concurrency = 4;
        stats_.capacity = 8;
        if (full) {
            stats_.active = 4;
            stats_.queued = 8;
        }
    }
    boost::asio::awaitable<run_outcome> run(const std::string& /*operation*/, std::string& /*body*/,
                                            const std::stop_token& /*stop*/,
                                            const request_share& /*share*/) override {
        co_return run_outcome{};
    }
    [[nodiscard]] btq::queue_stats stats() const override { return stats_; }
    [[nodiscard]] btq::queue_stats stats(std::size_t /*top_keys*/) const override { return stats_; }
    [[nodiscard]] memory_stats memory() override { return {}; }
    [[nodiscard]] const backend_options& options() const noexcept override { return options_; }
    [[nodiscard]] std::optional<redis_gate_stats> redis() const override { return std::nullopt; }
    std::size_t close_and_clear(const std::string& /*reason*/) override { return 0; }
    [[nodiscard]] bool drain(std::chrono::milliseconds /*grace*/) override { return true; }
    void stop() override {}

  private:
    backend_options options_;
    btq::queue_stats stats_;
};

/// The statuses route() and take_body() answer with.
constexpr std::array<unsigned, 10> documented{200, 204, 304, 400, 401, 404, 405, 415, 417, 503};

void check_answer(const api_response& answer) {
    require(std::find(documented.begin(), documented.end(), answer.status) != documented.end(),
            "an immediate answer with a status the server does not document");
    require(!find_invalid_utf8(answer.body), "an answer body that is not UTF-8");
    for (const auto& [name, value] : answer.headers) {
        require(!find_invalid_utf8(name) && !find_invalid_utf8(value),
                "an answer header that is not UTF-8");
        require(name.find_first_of("\r\n:") == std::string::npos &&
                    value.find_first_of("\r\n") == std::string::npos,
                "an answer header that would split the response");
    }
    if (answer.status == 204 || answer.status == 304) {
        require(answer.body.empty(), "a 204 or 304 with a body");
        return;
    }
    if (answer.content_type == "application/json") {
        boost::system::error_code error;
        const boost::json::value parsed = boost::json::parse(answer.body, error);
        require(!error && parsed.is_object(), "a JSON answer that is not a JSON object");
    }
}

/// A routed request; `body_taken`: after take_body() (before it, a POST's body is still empty).
void check_job(const api::routed& job, bool body_taken) {
    if (job.immediate) {
        check_answer(*job.immediate);
        return;
    }
    if (job.event_stream) {
        return; // answered by the HTTP layer
    }
    require(!job.operation.empty(), "a routed request without an operation");
    require(!find_invalid_utf8(job.body), "a worker request that is not UTF-8");
    if (!job.get && (!job.xml_body || !body_taken)) {
        return; // a JSON body goes to the worker as it came (checked for UTF-8 only)
    }
    boost::system::error_code error;
    const boost::json::value parsed = boost::json::parse(job.body, error);
    require(!error && parsed.is_object(), "a worker request that is not a JSON object");
}

fake_backend idle_queue(false);
fake_backend full_queue(true);
api open_api(idle_queue, api_options{});
api guarded_api(full_queue, [] {
    api_options options;
    options.auth_token = "s3cret";
    options.memory_probe = true;
    return options;
}());

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    http::request_parser<http::string_body> parser;
    parser.header_limit(16 * 1024);
    parser.body_limit(64 * 1024);
    parser.eager(true);
    boost::beast::error_code error;
    std::size_t used = 0;
    while (used < input.size() && !parser.is_done()) {
        const std::size_t consumed =
            parser.put(boost::asio::const_buffer(input.data() + used, input.size() - used), error);
        used += consumed;
        if (error == http::error::need_more) {
            break;
        }
        if (error || consumed == 0) {
            break;
        }
    }
    if (!parser.is_header_done()) {
        return 0;
    }
    if (!parser.is_done() && (!error || error == http::error::need_more)) {
        parser.put_eof(error); // the client closed: a body up to the end (or a partial message)
    }
    const api_request call = describe(parser.get());
    for (api* endpoints : {&open_api, &guarded_api}) {
        api::routed job = endpoints->route(call);
        check_job(job, false);
        if (job.immediate) {
            continue;
        }
        if (auto refusal = endpoints->refuse_before_body(job)) {
            check_answer(*refusal);
        }
        endpoints->take_body(job, parser.get().body(), call.content_type);
        check_job(job, true);
    }
    return 0;
}
