// schedule_server: the seed's API server rebuilt on btq. The eight queued endpoints run
// schedule_worker through a bounded queue (a process per request, or persistent workers); the
// rest answer at once. See README.md ("The example server") for the endpoints and flags.
#include "api.hpp"
#include "backend.hpp"
#include "byte_size.hpp"
#include "database_url.hpp"
#include "http_server.hpp"

#include <CLI/CLI.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <variant>
#include <vector>

namespace {

namespace fs = std::filesystem;
namespace asio = boost::asio;
using namespace schedule_server;

/// The schedule_worker beside this program (installed together) or in the build tree's
/// sibling directory.
fs::path default_worker() {
    std::error_code error;
    const fs::path self = fs::read_symlink("/proc/self/exe", error);
    if (error) {
        return "schedule_worker";
    }
    for (const fs::path& candidate :
         {self.parent_path() / "schedule_worker",
          self.parent_path().parent_path() / "schedule_worker" / "schedule_worker"}) {
        if (fs::exists(candidate, error)) {
            return candidate;
        }
    }
    return "schedule_worker";
}

#ifndef SCHEDULE_SERVER_INSTALLED_SAMPLE_DATA
#define SCHEDULE_SERVER_INSTALLED_SAMPLE_DATA "../share/btq/sample-data"
#endif

/// The sample data: the installed copy, found relative to this program (bin/../share/btq/...,
/// so a moved installation still finds it), else the source tree's the build was made from.
std::string default_sample_data() {
    std::error_code error;
    const fs::path self = fs::read_symlink("/proc/self/exe", error);
    if (!error) {
        const fs::path installed =
            (self.parent_path() / SCHEDULE_SERVER_INSTALLED_SAMPLE_DATA).lexically_normal();
        if (fs::is_directory(installed, error)) {
            return installed.string();
        }
    }
    return SCHEDULE_SERVER_SAMPLE_DATA;
}

/// A new data folder gets the sample playlists and feed, so the first run shows real content.
void seed_data_folder(const fs::path& data_dir, const fs::path& sample_data) {
    fs::create_directories(data_dir);
    if (sample_data.empty() || !fs::is_directory(sample_data) ||
        fs::exists(data_dir / "playlists") || fs::exists(data_dir / "feed.m3u")) {
        return;
    }
    fs::copy(sample_data, data_dir, fs::copy_options::recursive | fs::copy_options::skip_existing);
    std::fprintf(stderr, "schedule_server: new data folder %s filled from %s\n", data_dir.c_str(),
                 sample_data.c_str());
}

/// A CLI11 check of a SIZE flag (byte_size.hpp); 0 is refused: a limit or floor of nothing.
CLI::Validator size_above_zero() {
    return CLI::Validator(
        [](const std::string& text) -> std::string {
            const auto parsed = parse_byte_size(text);
            if (const auto* message = std::get_if<std::string>(&parsed)) {
                return *message;
            }
            if (std::get<std::uint64_t>(parsed) == 0) {
                return "'" + text + "' is 0: give a size above 0, or leave the flag out";
            }
            return {};
        },
        "");
}

/// A CLI11 check of a PERCENT flag (0 to 100).
CLI::Validator percent() {
    return CLI::Validator(
        [](const std::string& text) -> std::string {
            const auto parsed = parse_percent(text);
            const auto* message = std::get_if<std::string>(&parsed);
            return message != nullptr ? *message : std::string();
        },
        "");
}

/// The descriptors the server keeps for itself, beside its connections: 64 (standard streams,
/// the listening socket, refusals being written, the Redis connections, files read in /proc, the
/// loader's), 4 for each worker or child (its pipes and its pidfd), 3 for each I/O thread (its
/// epoll, eventfd and timerfd).
std::size_t reserved_descriptors(std::size_t pool_size, unsigned threads) {
    return 64 + 4 * pool_size + 3 * std::size_t{threads};
}

/// The soft limit of open descriptors (RLIMIT_NOFILE); 1,048,576 when there is none.
std::size_t descriptor_limit() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) {
        return std::size_t{1} << 20;
    }
    return static_cast<std::size_t>(limit.rlim_cur);
}

/// Shutdown, last step: lets the connections still writing their last response finish, for at
/// most until `until`, then stops the I/O threads.
void wait_for_connections(asio::steady_timer& timer, http_server& server, io_pool& contexts,
                          std::chrono::steady_clock::time_point until) {
    if (server.connections() == 0 || std::chrono::steady_clock::now() >= until) {
        contexts.stop();
        return;
    }
    timer.expires_after(std::chrono::milliseconds(20));
    timer.async_wait([&timer, &server, &contexts, until](const boost::system::error_code&) {
        wait_for_connections(timer, server, contexts, until);
    });
}

int run(int argc, char** argv) {
    CLI::App app{"schedule_server: the seed's schedule API on a btq bounded queue"};
    http_options http;
    backend_options queue;
    api_options endpoints;
    std::string mode = "pool";
    std::string data_dir = "data";
    std::string worker;
    std::string sample_data = default_sample_data();
    long queue_timeout_ms = 30'000;
    long task_timeout_ms = 30'000;
    long grace_ms = 10'000;
    unsigned threads = std::max(1U, std::thread::hardware_concurrency());
    bool no_access_log = false;

    app.add_option("--address", http.address, "Address to listen on")->capture_default_str();
    app.add_option("--port", http.port, "Port to listen on (0: any free port)")
        ->capture_default_str();
    app.add_option("--mode", mode, "pool: persistent workers; spawn: a process per request")
        ->check(CLI::IsMember({"pool", "spawn"}))
        ->capture_default_str();
    app.add_option("--pool-size", queue.pool_size, "Most schedule_worker runs at once")
        ->check(CLI::Range(1, 1024))
        ->capture_default_str();
    app.add_option("--queue-capacity", queue.queue_capacity,
                   "Most requests waiting; beyond it: 503 + Retry-After")
        ->check(CLI::Range(0, 1'000'000))
        ->capture_default_str();
    app.add_option("--queue-timeout-ms", queue_timeout_ms,
                   "A request not started within this time gets 503")
        ->check(CLI::Range(1L, 3'600'000L))
        ->capture_default_str();
    app.add_option("--task-timeout-ms", task_timeout_ms,
                   "A worker run longer than this is stopped; the request gets 504")
        ->check(CLI::Range(1L, 3'600'000L))
        ->capture_default_str();
    app.add_option("--data-dir", data_dir, "Data folder (SQLite database, playlists, feed)")
        ->capture_default_str();
    app.add_option("--database", queue.database,
                   "Where the schedules are: sqlite:FILE or "
                   "postgresql://[user[:password]@]host[:port]/dbname (default: "
                   "sqlite:DATA_DIR/schedules.db); passed to the workers")
        ->envname("SCHEDULE_DATABASE")
        ->type_name("URL");
    app.add_option("--sample-data", sample_data,
                   "Copied into a data folder that has no playlists yet ('' to skip; default: "
                   "../share/btq/sample-data from the program if there, else the source tree's)");
    app.add_option("--worker", worker, "The schedule_worker program (default: found beside)");
    app.add_option("--body-limit", http.body_limit, "Largest request body in bytes (413 above)")
        ->check(CLI::Range(std::size_t{1}, std::size_t{64} << 20))
        ->capture_default_str();
    long idle_timeout_ms = http.idle_timeout.count();
    long header_timeout_ms = http.header_timeout.count();
    long body_timeout_ms = http.body_timeout.count();
    app.add_option("--idle-timeout-ms", idle_timeout_ms,
                   "A connection with no byte of a (next) request is closed after this time")
        ->check(CLI::Range(1L, 3'600'000L))
        ->capture_default_str();
    app.add_option("--header-timeout-ms", header_timeout_ms,
                   "A request header not complete this long after its first byte gets 408")
        ->check(CLI::Range(1L, 3'600'000L))
        ->capture_default_str();
    app.add_option("--body-timeout-ms", body_timeout_ms,
                   "A request body not complete this long after its header gets 408")
        ->check(CLI::Range(1L, 3'600'000L))
        ->capture_default_str();
    app.add_option("--shutdown-grace-ms", grace_ms,
                   "On SIGTERM/SIGINT: how long running requests may take to finish")
        ->check(CLI::Range(0L, 600'000L))
        ->capture_default_str();
    app.add_option("--auth-token", endpoints.auth_token,
                   "Bearer token required by POST endpoints (empty: none)")
        ->envname("SCHEDULE_SERVER_TOKEN");
    app.add_option("--threads", threads, "I/O threads")
        ->check(CLI::Range(1U, 256U))
        ->capture_default_str();
    std::string task_memory_limit;
    std::string min_available_memory;
    std::string max_memory_pressure;
    const auto add_size_option = [&app](const char* name, std::string& text, const char* help) {
        app.add_option(name, text, help)->type_name("SIZE")->check(size_above_zero());
    };
    add_size_option("--task-memory-limit", task_memory_limit,
                    "Most memory one worker run may use (spawn: each child; pool: each worker); "
                    "above it the run is stopped and the request gets 507. SIZE: bytes, or with "
                    "K, M, G (KiB, MiB, GiB: powers of 1024), e.g. 256M");
    add_size_option("--min-available-memory", min_available_memory,
                    "Start no queued request while less memory than this is available (host "
                    "MemAvailable or the cgroup's headroom); one still starts when none runs. "
                    "SIZE as above");
    app.add_option("--max-memory-pressure", max_memory_pressure,
                   "Start no queued request while memory pressure (PSI some avg10, percent of "
                   "time stalled) is above this; one still starts when none runs. 0 to 100")
        ->type_name("PERCENT")
        ->check(percent());
    std::string redis_url;
    long global_concurrency = 0;
    CLI::Option* redis_flag =
        app.add_option("--redis", redis_url,
                       "Redis of a cluster-wide limit shared by every server given the same URL: "
                       "redis://host[:port][/keyprefix] (with --global-concurrency)")
            ->type_name("URL");
    CLI::Option* global_flag =
        app.add_option("--global-concurrency", global_concurrency,
                       "Most requests running at once across every server of the --redis pool "
                       "(--pool-size still bounds this host)")
            ->type_name("N");
    long redis_lease_ttl_ms = queue.redis_lease_ttl.count();
    CLI::Option* lease_flag =
        app.add_option("--redis-lease-ttl-ms", redis_lease_ttl_ms,
                       "Lease of a running request's cluster-wide permit, renewed every third of "
                       "it; a server that dies frees its permits after this (with --redis)")
            ->check(CLI::Range(100L, 3'600'000L))
            ->capture_default_str();
    std::string redis_unavailable = "hold";
    CLI::Option* unavailable_flag =
        app.add_option("--redis-unavailable", redis_unavailable,
                       "While Redis cannot be reached: hold (requests wait until their queue "
                       "timeout; /readyz 503) or fail-fast (they get 503 at once) (with --redis)")
            ->check(CLI::IsMember({"hold", "fail-fast"}))
            ->capture_default_str();
    std::size_t max_connections = 0;
    CLI::Option* max_connections_flag =
        app.add_option("--max-connections", max_connections,
                       "Most client connections open at once; beyond it a new connection is "
                       "answered 503 with Retry-After and closed (default: the descriptor limit, "
                       "RLIMIT_NOFILE, less 64 + 4 per --pool-size + 3 per --threads)")
            ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 24));
    long event_stream_seconds = http.event_stream_duration.count();
    app.add_option("--event-stream-seconds", event_stream_seconds,
                   "GET /api/queue-stats/stream: the server ends a stream after this long (the "
                   "browser's EventSource reconnects)")
        ->check(CLI::Range(1L, 86'400L))
        ->capture_default_str();
    app.add_option("--max-event-streams", http.max_event_streams,
                   "Most GET /api/queue-stats/stream streams open at once; beyond: 503 with "
                   "Retry-After: 5")
        ->check(CLI::Range(std::size_t{1}, std::size_t{100'000}))
        ->capture_default_str();
    std::string fairness = "auto";
    app.add_option("--fairness-key", fairness,
                   "Whose a queued request is, for taking turns: auto (the bearer token when the "
                   "request has one, else the peer address), token, peer, or none (one FIFO)")
        ->check(CLI::IsMember({"auto", "token", "peer", "none"}))
        ->capture_default_str();
    app.add_option("--import-weight", endpoints.import_weight,
                   "Slots of --pool-size an import-schedule takes while it runs (at most the "
                   "pool size; listings take 1)")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1024}))
        ->capture_default_str();
    app.add_option("--schedule-weight", endpoints.schedule_weight,
                   "Slots of --pool-size a schedule-playlist takes while it runs (at most the "
                   "pool size)")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1024}))
        ->capture_default_str();
    app.add_option("--max-per-client", queue.max_per_client,
                   "Most requests of one client (--fairness-key) running at once (0: no limit "
                   "but --pool-size)")
        ->check(CLI::Range(std::size_t{0}, std::size_t{1024}))
        ->capture_default_str();
    app.add_option("--capacity-per-client", queue.capacity_per_client,
                   "Most requests of one client waiting at once; beyond: 503 (0: no limit but "
                   "--queue-capacity)")
        ->check(CLI::Range(std::size_t{0}, std::size_t{1'000'000}))
        ->capture_default_str();
    app.add_flag("--no-access-log", no_access_log, "Do not log a line per request");
    app.add_flag("--enable-memory-probe", endpoints.memory_probe,
                 "Serve GET /api/memory-probe (touches the memory a request asks for: tests and "
                 "benchmarks only; off: 404)");
    CLI11_PARSE(app, argc, argv);
    // Refused like a bad flag value (CLI11's exit status and message shape).
    const auto refuse = [&app](const std::string& flag, const std::string& message) {
        return app.exit(CLI::ValidationError(flag, message));
    };
    if ((redis_flag->count() > 0) != (global_flag->count() > 0)) {
        return refuse(redis_flag->count() > 0 ? "--redis" : "--global-concurrency",
                      "--redis and --global-concurrency go together: give both or neither");
    }
    for (const CLI::Option* needs_redis : {lease_flag, unavailable_flag}) {
        if (needs_redis->count() > 0 && redis_flag->count() == 0) {
            return refuse(needs_redis->get_name(), "only means something with --redis");
        }
    }
    if (redis_flag->count() > 0) {
        if (global_concurrency < 1) {
            return refuse("--global-concurrency",
                          "must be at least 1 (got " + std::to_string(global_concurrency) + ")");
        }
        try {
            queue.redis = btq::parse_redis_url(redis_url);
        } catch (const btq::redis_url_error& bad) {
            return refuse("--redis", bad.what());
        }
        queue.global_concurrency = static_cast<std::size_t>(global_concurrency);
        queue.redis_lease_ttl = std::chrono::milliseconds(redis_lease_ttl_ms);
        queue.redis_fail_fast = redis_unavailable == "fail-fast";
        if (!redis_available()) {
            return refuse("--redis", "this server was built without Redis (hiredis was not "
                                     "found): --redis and --global-concurrency are unavailable");
        }
    }

    if (!queue.database.empty()) {
        try {
            const schedule::database_location store = schedule::parse_database_url(queue.database);
            if (store.store == schedule::database_location::kind::postgresql &&
                SCHEDULE_SERVER_POSTGRES == 0) {
                return refuse("--database",
                              "schedule_worker was built without PostgreSQL support (libpq's "
                              "header was not found): only sqlite:FILE is available");
            }
        } catch (const schedule::database_url_error& bad) {
            return refuse("--database", bad.what());
        }
    }

    queue.mode = mode == "spawn" ? run_mode::spawn : run_mode::pool;
    endpoints.key = fairness == "token"  ? fairness_key::token
                    : fairness == "peer" ? fairness_key::peer
                    : fairness == "none" ? fairness_key::none
                                         : fairness_key::automatic;
    queue.queue_timeout = std::chrono::milliseconds(queue_timeout_ms);
    queue.task_timeout = std::chrono::milliseconds(task_timeout_ms);
    queue.worker_program = worker.empty() ? default_worker() : fs::path(worker);
    const auto size_flag = [](const std::string& text) -> std::optional<std::uint64_t> {
        if (text.empty()) {
            return std::nullopt;
        }
        return std::get<std::uint64_t>(parse_byte_size(text)); // checked by size_above_zero()
    };
    queue.task_memory_limit = size_flag(task_memory_limit);
    queue.min_available_memory = size_flag(min_available_memory);
    if (!max_memory_pressure.empty()) {
        queue.max_memory_pressure = std::get<double>(parse_percent(max_memory_pressure));
    }
    http.access_log = !no_access_log;
    http.event_stream_duration = std::chrono::seconds(event_stream_seconds);
    http.idle_timeout = std::chrono::milliseconds(idle_timeout_ms);
    http.header_timeout = std::chrono::milliseconds(header_timeout_ms);
    http.body_timeout = std::chrono::milliseconds(body_timeout_ms);
    const std::size_t descriptors = descriptor_limit();
    const std::size_t reserved = reserved_descriptors(queue.pool_size, threads);
    const std::size_t room = descriptors > reserved ? descriptors - reserved : 1;
    http.max_connections = max_connections_flag->count() > 0 ? max_connections : room;
    if (http.max_connections > room) {
        std::fprintf(stderr,
                     "schedule_server: --max-connections %zu is above what the descriptor limit "
                     "%zu leaves for connections (%zu, after %zu kept for the server): accept may "
                     "run out of descriptors (it waits and retries)\n",
                     http.max_connections, descriptors, room, reserved);
    }

    std::error_code error;
    if (!fs::exists(queue.worker_program, error) ||
        ::access(queue.worker_program.c_str(), X_OK) != 0) {
        std::fprintf(stderr,
                     "schedule_server: the worker program %s is not an executable file "
                     "(set --worker)\n",
                     queue.worker_program.c_str());
        return 2;
    }
    seed_data_folder(data_dir, sample_data);
    queue.data_dir = fs::absolute(data_dir);

    io_pool contexts(threads);
    asio::signal_set signals(contexts.main(), SIGINT, SIGTERM);

    std::unique_ptr<backend> work = make_backend(queue);
    api routes(*work, endpoints);
    http_server server(contexts, routes, http);
    try {
        server.start();
    } catch (const std::exception& failure) {
        std::fprintf(stderr, "schedule_server: cannot listen on %s:%u: %s\n", http.address.c_str(),
                     static_cast<unsigned>(http.port), failure.what());
        return 2;
    }
    std::fprintf(stderr,
                 "schedule_server: listening on http://%s:%u (mode %s, pool %zu, queue %zu, data "
                 "%s)\n",
                 http.address.c_str(), static_cast<unsigned>(server.port()), mode.c_str(),
                 queue.pool_size, queue.queue_capacity, queue.data_dir.c_str());
    std::fprintf(stderr, "schedule_server: schedules in %s\n",
                 schedule::describe(schedule::parse_database_url(store_url(queue))).c_str());
    std::fprintf(stderr, "schedule_server: at most %zu connections (descriptor limit %zu)\n",
                 http.max_connections, descriptors);
    if (queue.redis) {
        std::fprintf(stderr, "schedule_server: cluster-wide limit %zu on %s\n",
                     queue.global_concurrency, btq::to_url(*queue.redis).c_str());
    }
    std::fflush(stderr);

    std::thread drainer;
    asio::steady_timer deadline(contexts.main());
    const auto grace = std::chrono::milliseconds(grace_ms);
    signals.async_wait([&](const boost::system::error_code& failed, int signal_number) {
        if (failed) {
            return;
        }
        std::fprintf(stderr, "schedule_server: %s received: shutting down\n",
                     signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
        routes.begin_shutdown();
        server.stop_accepting();
        const std::size_t cleared = work->close_and_clear("Server shutting down");
        std::fprintf(stderr, "schedule_server: cleared %zu waiting requests\n", cleared);
        std::fflush(stderr);
        // A second signal stops at once.
        signals.async_wait([&](const boost::system::error_code& again, int) {
            if (!again) {
                std::fprintf(stderr, "schedule_server: second signal: stopping now\n");
                work->stop();
                contexts.stop();
            }
        });
        drainer = std::thread([&] {
            if (!work->drain(grace)) {
                std::fprintf(stderr, "schedule_server: running requests did not finish within "
                                     "the grace; stopping them\n");
                work->stop();
            }
            asio::post(contexts.main(), [&] {
                server.close_idle_connections();
                signals.cancel();
                wait_for_connections(deadline, server, contexts,
                                     std::chrono::steady_clock::now() + std::chrono::seconds(2));
            });
        });
    });

    contexts.run();
    if (drainer.joinable()) {
        drainer.join();
    }
    work.reset(); // stops the workers
    std::fprintf(stderr, "schedule_server: stopped\n");
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& failure) {
        std::fprintf(stderr, "schedule_server: %s\n", failure.what());
        return 1;
    }
}
