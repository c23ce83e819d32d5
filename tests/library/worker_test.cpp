// The worker protocol's framing (btq/process/frames.hpp) and the worker side of it
// (btq/worker.hpp, docs/worker-protocol.md).
//
// A btq::worker runs on a thread of this process; the test plays btq's part through two pipes:
// it writes requests into one and reads the worker's frames from the other.
#include <btq/process/frames.hpp>
#include <btq/process/unique_fd.hpp>
#include <btq/worker.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <future>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using btq::process::unique_fd;
using btq::protocol::frame;
using btq::protocol::frame_reader;
using btq::protocol::frame_type;
using btq::protocol::protocol_error;

namespace {

/// How long the test waits for any one frame or for run() to return before it gives up.
constexpr auto answer_limit = 10s;

/// The bytes of a request frame.
std::string request(std::string_view operation, std::string_view body) {
    return btq::protocol::encode(frame_type::request,
                                 btq::protocol::encode_request(operation, body));
}

/// Reads every frame in `bytes`; throws protocol_error as frame_reader does.
std::vector<frame> frames_in(std::string_view bytes, std::size_t max = 1U << 20U) {
    frame_reader reader(max);
    reader.feed(bytes.data(), bytes.size());
    std::vector<frame> out;
    while (auto f = reader.next()) {
        out.push_back(std::move(*f));
    }
    return out;
}

std::string bytes_of(std::initializer_list<int> values) {
    std::string out;
    for (const int value : values) {
        out.push_back(static_cast<char>(static_cast<unsigned char>(value)));
    }
    return out;
}

struct pipe_pair {
    unique_fd read;
    unique_fd write;
};

pipe_pair make_pipe() {
    std::array<int, 2> fds{};
    REQUIRE(::pipe2(fds.data(), O_CLOEXEC) == 0);
    return {unique_fd(fds[0]), unique_fd(fds[1])};
}

bool sigpipe_in(const sigset_t& set) {
    return sigismember(&set, SIGPIPE) == 1;
}

/// A btq::worker serving on its own thread, and btq's ends of its two pipes.
class worker_harness {
  public:
    explicit worker_harness(btq::worker worker,
                            std::size_t max_frame = btq::protocol::default_max_frame)
        : worker_(std::move(worker)), requests_(make_pipe()), responses_(make_pipe()),
          reader_(btq::protocol::default_max_frame) {
        thread_ = std::thread([this, max_frame] {
            const int status = worker_.run(requests_.read.get(), responses_.write.get(), max_frame);
            sigset_t mask;
            sigemptyset(&mask);
            ::pthread_sigmask(SIG_BLOCK, nullptr, &mask);
            sigset_t pending;
            sigemptyset(&pending);
            ::sigpending(&pending);
            sigpipe_blocked_after_ = sigpipe_in(mask);
            sigpipe_pending_after_ = sigpipe_in(pending);
            status_.set_value(status);
        });
        status_future_ = status_.get_future();
    }

    worker_harness(const worker_harness&) = delete;
    worker_harness& operator=(const worker_harness&) = delete;
    worker_harness(worker_harness&&) = delete;
    worker_harness& operator=(worker_harness&&) = delete;

    /// Ends the worker whatever state the test left it in: end of input on its requests, and a
    /// closed pipe for anything it still writes.
    ~worker_harness() {
        requests_.write.reset();
        responses_.read.reset();
        thread_.join();
    }

    /// Writes all of `bytes` to the worker's requests.
    void send(std::string_view bytes) {
        std::size_t written = 0;
        while (written < bytes.size()) {
            const ssize_t now =
                ::write(requests_.write.get(), bytes.data() + written, bytes.size() - written);
            if (now < 0 && errno == EINTR) {
                continue;
            }
            REQUIRE(now > 0);
            written += static_cast<std::size_t>(now);
        }
    }

    /// The next frame the worker wrote, or nothing if its responses ended or it sent nothing
    /// for answer_limit.
    std::optional<frame> receive() {
        const auto until = std::chrono::steady_clock::now() + answer_limit;
        std::vector<char> buffer(std::size_t{64} << 10U);
        for (;;) {
            if (auto f = reader_.next()) {
                return f;
            }
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                until - std::chrono::steady_clock::now());
            if (left <= 0ms) {
                return std::nullopt;
            }
            pollfd ready{.fd = responses_.read.get(), .events = POLLIN, .revents = 0};
            if (::poll(&ready, 1, static_cast<int>(left.count())) <= 0) {
                continue;
            }
            const ssize_t got = ::read(responses_.read.get(), buffer.data(), buffer.size());
            if (got < 0 && errno == EINTR) {
                continue;
            }
            if (got <= 0) {
                return std::nullopt;
            }
            reader_.feed(buffer.data(), static_cast<std::size_t>(got));
        }
    }

    /// The frame answering `operation(body)`.
    frame call(std::string_view operation, std::string_view body) {
        send(request(operation, body));
        std::optional<frame> answer = receive();
        REQUIRE(answer.has_value());
        return std::move(*answer);
    }

    /// Receives the hello and checks it.
    void expect_hello() {
        const std::optional<frame> hello = receive();
        REQUIRE(hello.has_value());
        CHECK(hello->type == frame_type::hello);
        CHECK(hello->payload == btq::protocol::hello_text);
    }

    void close_requests() { requests_.write.reset(); }
    void close_responses() { responses_.read.reset(); }

    /// What run() returned, or nothing if it is still running after answer_limit. Once it has
    /// returned, the worker's ends of the pipes are closed.
    std::optional<int> status() {
        if (!status_value_ && status_future_.wait_for(answer_limit) == std::future_status::ready) {
            status_value_ = status_future_.get();
            // run() is over: close the worker's ends, so that receive() sees end of file at
            // once after the last frame the worker wrote.
            requests_.read.reset();
            responses_.write.reset();
        }
        return status_value_;
    }

    /// After run() returned: the worker thread's SIGPIPE was neither blocked nor pending.
    [[nodiscard]] bool sigpipe_left_alone() {
        REQUIRE(status().has_value());
        return !sigpipe_blocked_after_ && !sigpipe_pending_after_;
    }

    [[nodiscard]] const btq::worker& worker() const { return worker_; }
    [[nodiscard]] int worker_request_fd() const { return requests_.read.get(); }
    [[nodiscard]] int worker_response_fd() const { return responses_.write.get(); }

  private:
    btq::worker worker_;
    pipe_pair requests_;
    pipe_pair responses_;
    frame_reader reader_;
    std::promise<int> status_;
    std::future<int> status_future_;
    std::optional<int> status_value_;
    bool sigpipe_blocked_after_ = false; // written by the worker thread before status_ is set
    bool sigpipe_pending_after_ = false;
    std::thread thread_;
};

/// A worker with echo, upper and a handler that throws.
btq::worker test_worker() {
    btq::worker worker;
    worker.on("echo", [](std::string_view body) { return std::string(body); });
    worker.on("upper", [](std::string_view body) {
        std::string out(body);
        for (char& c : out) {
            if (c >= 'a' && c <= 'z') {
                c = static_cast<char>(c - 'a' + 'A');
            }
        }
        return out;
    });
    worker.on("fail", [](std::string_view body) -> std::string {
        throw std::runtime_error("asked to fail: " + std::string(body));
    });
    return worker;
}

/// SIGPIPE's default action (terminate) for the duration of a test, whatever it was before.
class default_sigpipe {
  public:
    default_sigpipe() {
        struct sigaction action {};
        action.sa_handler = SIG_DFL; // NOLINT(cppcoreguidelines-pro-type-union-access)
        sigemptyset(&action.sa_mask);
        REQUIRE(::sigaction(SIGPIPE, &action, &previous_) == 0);
    }
    default_sigpipe(const default_sigpipe&) = delete;
    default_sigpipe& operator=(const default_sigpipe&) = delete;
    default_sigpipe(default_sigpipe&&) = delete;
    default_sigpipe& operator=(default_sigpipe&&) = delete;
    ~default_sigpipe() { ::sigaction(SIGPIPE, &previous_, nullptr); }

  private:
    struct sigaction previous_ {};
};

} // namespace

// --- frames.hpp ------------------------------------------------------------------------------

TEST_CASE("The hello text is btq-worker 1 and the default frame limit is 16 MiB", "[worker]") {
    CHECK(btq::protocol::hello_text == "btq-worker 1");
    CHECK(btq::protocol::default_max_frame == 16U * 1024U * 1024U);
}

TEST_CASE("Every frame type survives encode and frame_reader unchanged, including empty and "
          "binary payloads",
          "[worker]") {
    const std::string binary = bytes_of({0, 1, 0xFF, 0x80, 0, 'Q', 0x0A});
    for (const frame_type type :
         {frame_type::hello, frame_type::request, frame_type::result, frame_type::error}) {
        for (const std::string& payload : {std::string(), std::string("text"), binary}) {
            const std::string bytes = btq::protocol::encode(type, payload);
            CHECK(bytes.size() == 5 + payload.size());
            const std::vector<frame> got = frames_in(bytes);
            REQUIRE(got.size() == 1);
            CHECK(got[0].type == type);
            CHECK(got[0].payload == payload);
        }
    }
}

TEST_CASE("encode_request and decode_request round-trip the operation and the body", "[worker]") {
    const std::string binary_body = bytes_of({0, 0, 0xFE, 'x', 0});
    const std::string long_name(300, 'n'); // a length with a non-zero high byte
    for (const auto& [operation, body] : std::vector<std::pair<std::string, std::string>>{
             {"echo", "hello"},
             {"echo", ""},
             {"", "body without an operation name"},
             {"binary", binary_body},
             {long_name, "b"},
             {"\xC3\xA9t\xC3\xA9", "UTF-8 operation name"}}) {
        const std::string payload = btq::protocol::encode_request(operation, body);
        CHECK(payload.size() == 2 + operation.size() + body.size());
        const auto [decoded_operation, decoded_body] = btq::protocol::decode_request(payload);
        CHECK(decoded_operation == operation);
        CHECK(decoded_body == body);
    }
}

TEST_CASE("The bytes of hello, request, result and error frames are those of the worked "
          "example in docs/worker-protocol.md",
          "[worker]") {
    CHECK(btq::protocol::encode(frame_type::hello, btq::protocol::hello_text) ==
          bytes_of({0x00, 0x00, 0x00, 0x0d, 0x48, 0x62, 0x74, 0x71, 0x2d, 0x77, 0x6f, 0x72, 0x6b,
                    0x65, 0x72, 0x20, 0x31}));
    CHECK(request("upper", "hi") == bytes_of({0x00, 0x00, 0x00, 0x0a, 0x51, 0x00, 0x05, 0x75, 0x70,
                                              0x70, 0x65, 0x72, 0x68, 0x69}));
    CHECK(btq::protocol::encode(frame_type::result, "HI") ==
          bytes_of({0x00, 0x00, 0x00, 0x03, 0x52, 0x48, 0x49}));
    CHECK(request("nope", "") ==
          bytes_of({0x00, 0x00, 0x00, 0x07, 0x51, 0x00, 0x04, 0x6e, 0x6f, 0x70, 0x65}));
    CHECK(btq::protocol::encode(frame_type::error, "unknown operation 'nope'") ==
          bytes_of({0x00, 0x00, 0x00, 0x19, 0x45, 0x75, 0x6e, 0x6b, 0x6e, 0x6f,
                    0x77, 0x6e, 0x20, 0x6f, 0x70, 0x65, 0x72, 0x61, 0x74, 0x69,
                    0x6f, 0x6e, 0x20, 0x27, 0x6e, 0x6f, 0x70, 0x65, 0x27}));
}

TEST_CASE("Frames fed one byte at a time come out whole, each only after its last byte",
          "[worker]") {
    const std::string first = btq::protocol::encode(frame_type::hello, "btq-worker 1");
    const std::string second = request("echo", bytes_of({0, 1, 2}));
    const std::string third = btq::protocol::encode(frame_type::result, "");
    const std::string stream = first + second + third;
    const std::vector<std::size_t> ends{first.size(), first.size() + second.size(), stream.size()};

    frame_reader reader;
    std::vector<frame> got;
    for (std::size_t i = 0; i < stream.size(); ++i) {
        reader.feed(&stream[i], 1);
        std::optional<frame> f = reader.next();
        const bool completes_a_frame = std::find(ends.begin(), ends.end(), i + 1) != ends.end();
        REQUIRE(f.has_value() == completes_a_frame);
        if (f) {
            CHECK(reader.pending() == 0);
            got.push_back(std::move(*f));
        } else {
            CHECK(reader.pending() > 0);
        }
        CHECK_FALSE(reader.next().has_value());
    }
    REQUIRE(got.size() == 3);
    CHECK(got[0].type == frame_type::hello);
    CHECK(got[1].type == frame_type::request);
    CHECK(btq::protocol::decode_request(got[1].payload).second == bytes_of({0, 1, 2}));
    CHECK(got[2].type == frame_type::result);
    CHECK(got[2].payload.empty());
}

TEST_CASE("Several frames fed at once come out one by one in order, then nothing", "[worker]") {
    std::string stream;
    for (int i = 0; i < 100; ++i) {
        stream += btq::protocol::encode(i % 2 == 0 ? frame_type::result : frame_type::error,
                                        std::to_string(i));
    }
    // Cut the stream in two in the middle of a frame: the partial frame waits for its rest.
    const std::size_t cut = stream.size() - 3;
    frame_reader reader;
    reader.feed(stream.data(), cut);
    std::vector<frame> got;
    while (auto f = reader.next()) {
        got.push_back(std::move(*f));
    }
    CHECK(got.size() == 99);
    CHECK(reader.pending() > 0);
    reader.feed(stream.data() + cut, stream.size() - cut);
    while (auto f = reader.next()) {
        got.push_back(std::move(*f));
    }
    REQUIRE(got.size() == 100);
    CHECK(reader.pending() == 0);
    for (int i = 0; i < 100; ++i) {
        const auto& f = got[static_cast<std::size_t>(i)];
        CHECK(f.type == (i % 2 == 0 ? frame_type::result : frame_type::error));
        CHECK(f.payload == std::to_string(i));
    }
}

TEST_CASE("A frame over the size limit throws protocol_error as soon as its length has arrived",
          "[worker]") {
    frame_reader reader(64);
    const std::string header = bytes_of({0, 0, 0, 65}); // N = 65: one more than the limit
    reader.feed(header.data(), header.size());
    CHECK_THROWS_AS(reader.next(), protocol_error);

    frame_reader default_limit;
    const std::string huge = bytes_of({0xFF, 0xFF, 0xFF, 0xFF});
    default_limit.feed(huge.data(), huge.size());
    CHECK_THROWS_WITH(default_limit.next(),
                      Catch::Contains("btq: worker protocol:") && Catch::Contains("exceeds"));
}

TEST_CASE("A frame of exactly the size limit is accepted", "[worker]") {
    const std::string payload(63, 'x'); // N = 64 = the limit
    const std::vector<frame> got =
        frames_in(btq::protocol::encode(frame_type::result, payload), 64);
    REQUIRE(got.size() == 1);
    CHECK(got[0].payload == payload);
}

TEST_CASE("Every frame type byte other than H Q R E throws protocol_error", "[worker]") {
    for (int value = 0; value < 256; ++value) {
        const char type = static_cast<char>(static_cast<unsigned char>(value));
        std::string bytes = bytes_of({0, 0, 0, 2});
        bytes.push_back(type);
        bytes.push_back('p');
        frame_reader reader;
        reader.feed(bytes.data(), bytes.size());
        if (type == 'H' || type == 'Q' || type == 'R' || type == 'E') {
            CHECK(reader.next().has_value());
        } else {
            INFO("type byte " << value);
            CHECK_THROWS_AS(reader.next(), protocol_error);
        }
    }
}

TEST_CASE("A frame of length 0 (no type byte) throws protocol_error", "[worker]") {
    const std::string bytes = bytes_of({0, 0, 0, 0});
    frame_reader reader;
    reader.feed(bytes.data(), bytes.size());
    CHECK_THROWS_AS(reader.next(), protocol_error);
}

TEST_CASE("A request shorter than its operation length or whose operation runs past the frame "
          "throws protocol_error",
          "[worker]") {
    CHECK_THROWS_AS(btq::protocol::decode_request(""), protocol_error);
    CHECK_THROWS_AS(btq::protocol::decode_request(bytes_of({0})), protocol_error);
    CHECK_THROWS_AS(btq::protocol::decode_request(bytes_of({0, 5, 'e', 'c', 'h', 'o'})),
                    protocol_error);
    CHECK_THROWS_AS(btq::protocol::decode_request(bytes_of({0xFF, 0xFF, 'x'})), protocol_error);
    // Exactly long enough is well formed: the body is empty.
    const std::string exact = bytes_of({0, 2, 'o', 'k'}); // the views below point into it
    const auto [operation, body] = btq::protocol::decode_request(exact);
    CHECK(operation == "ok");
    CHECK(body.empty());
}

TEST_CASE("encode_request accepts an operation name of 65535 bytes and refuses 65536", "[worker]") {
    CHECK(btq::protocol::encode_request(std::string(65535, 'a'), "").size() == 65537);
    CHECK_THROWS_AS(btq::protocol::encode_request(std::string(65536, 'a'), ""), protocol_error);
}

// --- worker.hpp ------------------------------------------------------------------------------

TEST_CASE("A worker sends hello before anything else, without being asked", "[worker]") {
    worker_harness harness(test_worker());
    const std::optional<frame> first = harness.receive();
    REQUIRE(first.has_value());
    CHECK(first->type == frame_type::hello);
    CHECK(first->payload == "btq-worker 1");
}

TEST_CASE("A worker answers echo with the body byte for byte: empty, binary and 1 MiB",
          "[worker]") {
    worker_harness harness(test_worker());
    harness.expect_hello();
    std::string big(std::size_t{1} << 20U, '\0');
    for (std::size_t i = 0; i < big.size(); ++i) {
        big[i] = static_cast<char>(static_cast<unsigned char>(i * 7U));
    }
    for (const std::string& body :
         {std::string("hello"), std::string(), bytes_of({0, 0xFF, 0, '\n', 0x80}), big}) {
        const frame answer = harness.call("echo", body);
        CHECK(answer.type == frame_type::result);
        CHECK(answer.payload == body);
    }
    const frame upper = harness.call("upper", "Hello, World");
    CHECK(upper.type == frame_type::result);
    CHECK(upper.payload == "HELLO, WORLD");
}

TEST_CASE("A handler that throws gives an E frame with its message and the worker keeps serving",
          "[worker]") {
    worker_harness harness(test_worker());
    harness.expect_hello();
    const frame failed = harness.call("fail", "please");
    CHECK(failed.type == frame_type::error);
    CHECK(failed.payload == "asked to fail: please");
    const frame after = harness.call("echo", "still here");
    CHECK(after.type == frame_type::result);
    CHECK(after.payload == "still here");
}

TEST_CASE("A handler that throws something not derived from std::exception gives an E frame",
          "[worker]") {
    btq::worker worker = test_worker();
    worker.on("odd", [](std::string_view) -> std::string { throw 42; });
    worker_harness harness(std::move(worker));
    harness.expect_hello();
    const frame failed = harness.call("odd", "");
    CHECK(failed.type == frame_type::error);
    CHECK_THAT(failed.payload, Catch::Contains("'odd'"));
    CHECK(harness.call("echo", "x").type == frame_type::result);
}

TEST_CASE("An unknown operation gives an E frame naming it and the worker keeps serving",
          "[worker]") {
    worker_harness harness(test_worker());
    harness.expect_hello();
    const frame unknown = harness.call("nope", "body");
    CHECK(unknown.type == frame_type::error);
    CHECK(unknown.payload == "unknown operation 'nope'");
    const frame empty_name = harness.call("", "body");
    CHECK(empty_name.type == frame_type::error);
    CHECK(empty_name.payload == "unknown operation ''");
    CHECK(harness.call("echo", "x").payload == "x");
}

TEST_CASE("Requests sent back to back are answered once each, in order", "[worker]") {
    worker_harness harness(test_worker());
    harness.expect_hello();
    std::string burst;
    for (int i = 0; i < 200; ++i) {
        burst += request(i % 3 == 0 ? "fail" : "echo", std::to_string(i));
    }
    harness.send(burst);
    for (int i = 0; i < 200; ++i) {
        const std::optional<frame> answer = harness.receive();
        REQUIRE(answer.has_value());
        if (i % 3 == 0) {
            CHECK(answer->type == frame_type::error);
            CHECK(answer->payload == "asked to fail: " + std::to_string(i));
        } else {
            CHECK(answer->type == frame_type::result);
            CHECK(answer->payload == std::to_string(i));
        }
    }
    harness.close_requests();
    CHECK(harness.status() == 0);
    CHECK_FALSE(harness.receive().has_value()); // nothing more than one answer per request
}

TEST_CASE("A handler registered again for the same operation replaces the first", "[worker]") {
    btq::worker worker = test_worker();
    worker.on("echo", [](std::string_view) { return std::string("replaced"); });
    worker_harness harness(std::move(worker));
    harness.expect_hello();
    CHECK(harness.call("echo", "x").payload == "replaced");
}

TEST_CASE("on refuses an empty handler and an operation name longer than 65535 bytes", "[worker]") {
    btq::worker worker;
    CHECK_THROWS_AS(worker.on("empty", btq::worker::handler()), std::invalid_argument);
    CHECK_THROWS_AS(
        worker.on(std::string(65536, 'a'), [](std::string_view) { return std::string(); }),
        std::invalid_argument);
    CHECK_NOTHROW(
        worker.on(std::string(65535, 'a'), [](std::string_view) { return std::string(); }));
}

TEST_CASE("A result larger than the frame limit becomes an E frame and the worker keeps serving",
          "[worker]") {
    btq::worker worker = test_worker();
    worker.on("big", [](std::string_view) { return std::string(64, 'b'); });  // N would be 65
    worker.on("fits", [](std::string_view) { return std::string(63, 'f'); }); // N = 64
    worker_harness harness(std::move(worker), 64);
    harness.expect_hello();
    const frame big = harness.call("big", "");
    CHECK(big.type == frame_type::error);
    CHECK_THAT(big.payload, Catch::Contains("over the frame limit"));
    CHECK(big.payload.size() <= 63);
    const frame fits = harness.call("fits", "");
    CHECK(fits.type == frame_type::result);
    CHECK(fits.payload == std::string(63, 'f'));
}

TEST_CASE("An error message longer than the frame limit is cut to fit it", "[worker]") {
    btq::worker worker;
    worker.on("fail", [](std::string_view) -> std::string {
        throw std::runtime_error(std::string(500, 'm'));
    });
    worker_harness harness(std::move(worker), 32);
    harness.expect_hello();
    const frame failed = harness.call("fail", "");
    CHECK(failed.type == frame_type::error);
    CHECK(failed.payload == std::string(31, 'm'));
}

TEST_CASE("Closing the request pipe between frames makes run return 0", "[worker]") {
    worker_harness harness(test_worker());
    harness.expect_hello();
    CHECK(harness.call("echo", "one").payload == "one");
    harness.close_requests();
    CHECK(harness.status() == 0);
    CHECK(harness.worker().last_error().empty());
    CHECK_FALSE(harness.receive().has_value()); // the worker sent nothing more
    CHECK(harness.sigpipe_left_alone());
}

TEST_CASE("Closing the request pipe before any request makes run return 0", "[worker]") {
    worker_harness harness(test_worker());
    harness.close_requests();
    CHECK(harness.status() == 0);
    harness.expect_hello();
}

TEST_CASE("A garbage frame makes run return 2 and stop reading", "[worker]") {
    worker_harness harness(test_worker());
    harness.expect_hello();
    harness.send(bytes_of({0, 0, 0, 2, 'X', 'y'}) + request("echo", "never answered"));
    CHECK(harness.status() == 2);
    CHECK_THAT(harness.worker().last_error(), Catch::Contains("unknown frame type"));
    CHECK_FALSE(harness.receive().has_value());
}

TEST_CASE("A frame other than a request (a hello, a result or an error sent to the worker) "
          "makes run return 2",
          "[worker]") {
    for (const frame_type type : {frame_type::hello, frame_type::result, frame_type::error}) {
        worker_harness harness(test_worker());
        harness.expect_hello();
        harness.send(btq::protocol::encode(type, "x"));
        CHECK(harness.status() == 2);
        CHECK_THAT(harness.worker().last_error(), Catch::Contains("unexpected"));
    }
}

TEST_CASE("A malformed request makes run return 2", "[worker]") {
    worker_harness harness(test_worker());
    harness.expect_hello();
    harness.send(btq::protocol::encode(frame_type::request, bytes_of({0, 9, 'e', 'c', 'h', 'o'})));
    CHECK(harness.status() == 2);
    CHECK_THAT(harness.worker().last_error(), Catch::Contains("btq: worker protocol:"));
}

TEST_CASE("An empty frame makes run return 2", "[worker]") {
    worker_harness harness(test_worker());
    harness.expect_hello();
    harness.send(bytes_of({0, 0, 0, 0}));
    CHECK(harness.status() == 2);
    CHECK_THAT(harness.worker().last_error(), Catch::Contains("empty frame"));
}

TEST_CASE("A frame over the worker's limit makes run return 2 before its payload arrives",
          "[worker]") {
    worker_harness harness(test_worker(), 64);
    harness.expect_hello();
    harness.send(bytes_of({0, 0, 0, 65})); // the header alone
    CHECK(harness.status() == 2);
    CHECK_THAT(harness.worker().last_error(), Catch::Contains("exceeds the limit"));
}

TEST_CASE("End of input in the middle of a frame makes run return 2", "[worker]") {
    SECTION("inside the length") {
        worker_harness harness(test_worker());
        harness.expect_hello();
        harness.send(bytes_of({0, 0}));
        harness.close_requests();
        CHECK(harness.status() == 2);
        CHECK_THAT(harness.worker().last_error(), Catch::Contains("middle of a frame"));
    }
    SECTION("inside the payload") {
        worker_harness harness(test_worker());
        harness.expect_hello();
        const std::string whole = request("echo", "cut short");
        harness.send(std::string_view(whole).substr(0, whole.size() - 2));
        harness.close_requests();
        CHECK(harness.status() == 2);
        CHECK_THAT(harness.worker().last_error(), Catch::Contains("middle of a frame"));
        CHECK_FALSE(harness.receive().has_value());
    }
}

TEST_CASE("A closed response pipe makes run return 2 without SIGPIPE killing the process, and "
          "leaves the thread's signal mask as it was",
          "[worker]") {
    const default_sigpipe terminate_on_sigpipe; // if the worker let SIGPIPE through, we die here
    worker_harness harness(test_worker());
    harness.expect_hello();
    harness.close_responses();
    harness.send(request("echo", "nobody reads this"));
    CHECK(harness.status() == 2);
    CHECK_THAT(harness.worker().last_error(), Catch::Contains("cannot write"));
    CHECK(harness.sigpipe_left_alone());
}

TEST_CASE("run marks both descriptors close-on-exec", "[worker]") {
    worker_harness harness(test_worker());
    harness.expect_hello();
    // Both ends were created close-on-exec here already; check the flag is still set (run only
    // adds it), and that run also sets it on descriptors that lacked it.
    CHECK((::fcntl(harness.worker_request_fd(), F_GETFD) & FD_CLOEXEC) != 0);
    CHECK((::fcntl(harness.worker_response_fd(), F_GETFD) & FD_CLOEXEC) != 0);

    pipe_pair requests = make_pipe();
    pipe_pair responses = make_pipe();
    REQUIRE(::fcntl(requests.read.get(), F_SETFD, 0) == 0);
    REQUIRE(::fcntl(responses.write.get(), F_SETFD, 0) == 0);
    requests.write.reset(); // end of input at once: run returns after its hello
    btq::worker worker;
    CHECK(worker.run(requests.read.get(), responses.write.get()) == 0);
    CHECK((::fcntl(requests.read.get(), F_GETFD) & FD_CLOEXEC) != 0);
    CHECK((::fcntl(responses.write.get(), F_GETFD) & FD_CLOEXEC) != 0);
}

TEST_CASE("run returns 2 with a message naming the descriptor when it is not open", "[worker]") {
    btq::worker worker;
    CHECK(worker.run(-1, -1) == 2);
    CHECK_THAT(worker.last_error(), Catch::Contains("descriptor -1"));
}
