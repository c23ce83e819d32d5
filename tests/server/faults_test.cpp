// What the soak harness (bench/soak) found, each case as it found it: a persistent worker that
// opened the database while the data folder was read-only kept failing every write after the
// folder was writable again; a refusal sent to a client still sending was lost to a TCP reset.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/socket.h>

#include <cstring>

using namespace srv_test;

namespace {

/// The data folder bind-mounted on itself, so it can be made read-only and writable again
/// (root only: `usable` is false elsewhere). Unmounted (lazily) at the end.
class bind_mount {
  public:
    explicit bind_mount(const fs::path& dir) : dir_(dir) {
        usable = ::mount(dir_.c_str(), dir_.c_str(), nullptr, MS_BIND, nullptr) == 0;
    }
    ~bind_mount() {
        if (usable) {
            ::umount2(dir_.c_str(), MNT_DETACH);
        }
    }
    bind_mount(const bind_mount&) = delete;
    bind_mount& operator=(const bind_mount&) = delete;
    bind_mount(bind_mount&&) = delete;
    bind_mount& operator=(bind_mount&&) = delete;

    /// Remounts read-only or writable; the errno on failure.
    int set_read_only(bool read_only) {
        unsigned long flags = MS_REMOUNT | MS_BIND;
        if (read_only) {
            flags |= MS_RDONLY;
        }
        return ::mount(nullptr, dir_.c_str(), nullptr, flags, nullptr) == 0 ? 0 : errno;
    }

    bool usable = false;

  private:
    fs::path dir_;
};

/// A loopback TCP connection on a raw descriptor, whose send and receive errors the test reads.
class tcp_client {
  public:
    explicit tcp_client(unsigned short port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(port);
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd_ < 0 ||
            ::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
            throw std::runtime_error("connect: " + std::string(std::strerror(errno)));
        }
    }
    ~tcp_client() { ::close(fd_); }
    tcp_client(const tcp_client&) = delete;
    tcp_client& operator=(const tcp_client&) = delete;
    tcp_client(tcp_client&&) = delete;
    tcp_client& operator=(tcp_client&&) = delete;

    /// 0, or the errno of the send.
    int send(std::string_view data) {
        const ssize_t sent = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
        return sent == static_cast<ssize_t>(data.size()) ? 0 : (sent < 0 ? errno : EMSGSIZE);
    }

    void shutdown_send() { ::shutdown(fd_, SHUT_WR); }

    /// Reads until the server closes (returns 0), fails (its errno) or `limit` passes (ETIME).
    int read_to_end(std::string& received, std::chrono::milliseconds limit) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        for (;;) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            pollfd ready{fd_, POLLIN, 0};
            if (left.count() <= 0 || ::poll(&ready, 1, static_cast<int>(left.count())) <= 0) {
                return ETIME;
            }
            char buffer[4096];
            const ssize_t got = ::recv(fd_, buffer, sizeof buffer, 0);
            if (got == 0) {
                return 0;
            }
            if (got < 0) {
                return errno;
            }
            received.append(buffer, static_cast<std::size_t>(got));
        }
    }

  private:
    int fd_;
};

} // namespace

TEST_CASE("a persistent worker that opened the database while the data folder was read-only "
          "writes again once the folder is writable",
          "[server]") {
    server_config config;
    config.mode = "pool";
    config.pool_size = 1;
    server_process server(config);
    REQUIRE(server.post_json("/api/import-schedule", import_body("Before")).status == 200);
    // The worker has the database open for writing, so the folder cannot be made read-only
    // while it lives. Killed, it leaves the WAL files behind (as a crash does); its replacement
    // opens the database only at its first request.
    const std::vector<pid_t> first = worker_pids(server.pid());
    REQUIRE(first.size() == 1);
    ::kill(first[0], SIGKILL);
    REQUIRE(wait_until(
        [&] {
            const std::vector<pid_t> now = worker_pids(server.pid());
            return now.size() == 1 && now[0] != first[0];
        },
        5s));

    bind_mount folder(server.data_dir());
    if (!folder.usable) {
        WARN("cannot bind-mount the data folder (not root?): skipped");
        return;
    }
    REQUIRE(folder.set_read_only(true) == 0);
    {
        // Reads work from a read-only folder; a write fails with the database's own error.
        const http_response listing = server.get("/api/schedules");
        INFO(listing.body);
        CHECK(listing.status == 200);
        const http_response refused =
            server.post_json("/api/import-schedule", import_body("While read-only"));
        INFO(refused.body);
        CHECK(refused.status == 500);
    }
    REQUIRE(folder.set_read_only(false) == 0);
    const http_response after = server.post_json("/api/import-schedule", import_body("After"));
    INFO(after.body);
    CHECK(after.status == 200);
    CHECK(schedule_count(server) == 2);
}

TEST_CASE("a client still sending when its request is refused (408) reads the refusal and an "
          "orderly close, not a reset",
          "[server]") {
    server_config config;
    config.extra_arguments = {"--header-timeout-ms", "300"};
    server_process server(config);

    tcp_client client(server.port());
    REQUIRE(client.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n") == 0);
    // A header that goes on arriving, slowly, past the header timeout (the server answers 408
    // at 300 ms and closes): without a staged close, the bytes that arrive after it make the
    // server's TCP stack reset the connection, and a reset may destroy the 408 before the
    // client reads it (RFC 9112 section 9.6).
    int send_error = 0;
    const auto until = std::chrono::steady_clock::now() + 700ms;
    while (send_error == 0 && std::chrono::steady_clock::now() < until) {
        send_error = client.send("X-Slow: a\r\n");
        std::this_thread::sleep_for(20ms);
    }
    INFO("send: " << std::strerror(send_error));
    CHECK(send_error == 0);
    client.shutdown_send();
    std::string received;
    const int read_error = client.read_to_end(received, 5s);
    INFO("read: " << std::strerror(read_error) << "; received: " << received);
    CHECK(read_error == 0);
    CHECK(received.rfind("HTTP/1.1 408 ", 0) == 0);
    CHECK(server.get("/healthz").status == 200);
}
