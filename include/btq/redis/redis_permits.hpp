/// @file redis/redis_permits.hpp
/// @brief redis_permits: a start gate (btq::start_gate) that is a cluster-wide counting
///        semaphore on Redis 7: every queue of every instance that uses the same pool starts a
///        task only while it holds one of the pool's N permits. Needs hiredis: link the
///        `btq::redis` CMake target.
///
/// How it works, and what it guarantees (README, "Cluster-wide limit (Redis)", says more):
/// - A permit is a lease in a sorted set on Redis whose expiry comes from the Redis server's
///   clock (TIME inside a Redis function), never from a client's: a client's clock skew moves
///   nobody's leases.
/// - The gate's own thread renews every lease it holds every `renew_interval`, in one call for
///   all of them. The client takes a lease as lost at (the send time of the last acknowledged
///   renewal, or of the grant, + ttl - safety_margin) on its own steady clock: earlier than Redis
///   can expire it, as long as both clocks run at the same rate. When that passes (Redis
///   unreachable or paused, this process paused), or Redis says the lease is gone, the task's
///   stop token is requested, `on_lease_lost` is called and `leases_lost` counts it.
/// - Each grant carries a fencing token from a monotonic Redis counter (INCR): a resource that
///   remembers the highest token it has seen rejects a holder whose lease was lost (paused past
///   its lease, or granted by a primary that failed over). Tasks receive it through prepare()
///   (btq::redis_permit_info, btq::fenced_task).
/// - Waiting instances are woken by Redis (pub/sub, a message on every release or expiry); a
///   timer set to the earliest lease expiry in the pool, and a slow fallback, only cover
///   holders that vanished without releasing and lost messages.
/// - Acquire and release are one Redis round trip each, for as many permits as are wanted or
///   given back at that moment.
#pragma once

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "../detail/waker_registry.hpp"
#include "../errors.hpp"
#include "../start_gate.hpp"
#include "detail/connection.hpp"
#include "detail/functions.hpp"
#include "redis_url.hpp"

namespace btq {

/// @brief What a redis_permits gate does while its Redis cannot be reached.
enum class redis_unreachable {
    /// Tasks wait (their queue deadlines still expire); healthy() is false, so a readiness
    /// check can report it. Leases already held stay valid until their local deadline.
    hold,
    /// A task that would start fails with btq::gate_unavailable (a btq::task_not_run) whose
    /// message names the Redis server and the cause.
    fail_fast,
};

/// @brief What a task may know of the permit it runs under (see redis_permits::prepare()).
struct redis_permit_info {
    /// The grant's fencing token: higher than every token granted before it by this pool. Hand
    /// it to the protected resource with every write; the resource rejects a token lower than
    /// the highest it has seen.
    std::uint64_t fencing_token = 0;
    /// The lease's member in the pool's sorted set ("<owner>:<fencing token>").
    std::string lease_id;
};

/// @brief What on_lease_lost is told.
struct redis_lease_lost {
    std::uint64_t fencing_token = 0; ///< the lost grant's token
    std::string lease_id;            ///< the lost lease
    std::string reason; ///< why: a deadline passed unrenewed, or Redis no longer had it
};

/// @brief The timing of a lease, from redis_permits_options with the defaults filled in and
///        checked. Pure arithmetic: the unit tests drive it with their own time points.
struct redis_lease_timing {
    std::chrono::milliseconds ttl{};            ///< lease lifetime on the Redis server
    std::chrono::milliseconds renew_interval{}; ///< how often every held lease is renewed
    std::chrono::milliseconds safety_margin{};  ///< how much earlier than Redis the client gives up
    std::chrono::milliseconds io_timeout{};     ///< bound of a connect and of every command

    /// @brief The client's deadline for a lease whose grant or last acknowledged renewal was
    ///        sent at `sent` (steady clock): sent + ttl - safety_margin. The server set its
    ///        expiry to (its time when it ran the command) + ttl, which is later.
    [[nodiscard]] std::chrono::steady_clock::time_point
    deadline_after(std::chrono::steady_clock::time_point sent) const noexcept {
        return sent + ttl - safety_margin;
    }

    /// @brief Defaults: renew_interval = ttl / 3, safety_margin = ttl / 5, io_timeout =
    ///        min(1 s, ttl / 4). Throws std::invalid_argument unless ttl >= 50 ms, the margin is
    ///        below ttl, and a renewal that times out still leaves time for the next one before
    ///        the deadline: renew_interval + io_timeout < ttl - safety_margin.
    [[nodiscard]] static redis_lease_timing make(std::chrono::milliseconds ttl,
                                                 std::chrono::milliseconds renew_interval,
                                                 std::chrono::milliseconds safety_margin,
                                                 std::chrono::milliseconds io_timeout) {
        using std::chrono::milliseconds;
        if (ttl < milliseconds(50)) {
            throw std::invalid_argument("btq::redis_permits: lease_ttl must be at least 50 ms");
        }
        redis_lease_timing out{ttl, renew_interval, safety_margin, io_timeout};
        if (out.renew_interval <= milliseconds::zero()) {
            out.renew_interval = ttl / 3;
        }
        if (out.safety_margin <= milliseconds::zero()) {
            out.safety_margin = ttl / 5;
        }
        if (out.io_timeout <= milliseconds::zero()) {
            out.io_timeout = std::min(milliseconds(1000), ttl / 4);
        }
        if (out.safety_margin >= ttl) {
            throw std::invalid_argument(
                "btq::redis_permits: safety_margin must be shorter than lease_ttl");
        }
        if (out.renew_interval + out.io_timeout >= ttl - out.safety_margin) {
            throw std::invalid_argument(
                "btq::redis_permits: renew_interval + io_timeout must be shorter than lease_ttl "
                "- safety_margin, or a lease is lost before its renewal can be retried");
        }
        return out;
    }
};

/// @brief The settings of a redis_permits gate.
/// @code
/// btq::redis_permits permits({.endpoint = btq::parse_redis_url("redis://10.0.0.5:6379/imports"),
///                             .limit = 16,
///                             .lease_ttl = std::chrono::seconds(10)});
/// @endcode
struct redis_permits_options {
    /// The server and the pool's name. Every instance of one pool must use the same `limit`.
    redis_endpoint endpoint{};
    /// N: permits in the pool, cluster-wide.
    std::size_t limit = 1;
    /// Lifetime of a lease on the Redis server; a holder that dies frees its permit after this.
    std::chrono::milliseconds lease_ttl{10000};
    /// How often leases are renewed; 0 = lease_ttl / 3.
    std::chrono::milliseconds renew_interval{0};
    /// How much earlier than Redis the client takes a lease as lost; 0 = lease_ttl / 5.
    std::chrono::milliseconds safety_margin{0};
    /// Bound of a connect and of every command; 0 = min(1 s, lease_ttl / 4).
    std::chrono::milliseconds io_timeout{0};
    /// First wait before reconnecting; doubles up to 2 s while Redis stays unreachable.
    std::chrono::milliseconds reconnect_delay{100};
    /// A waiter asks again at least this often even without a wake-up message (a message lost
    /// while the subscriber reconnected).
    std::chrono::milliseconds fallback_interval{2000};
    /// Permits granted but not taken by any task are given back once no task has wanted them
    /// for this long.
    std::chrono::milliseconds unused_hold{50};
    /// Most permits asked for in one call.
    std::size_t max_batch = 64;
    /// Hold tasks or fail them while Redis is unreachable.
    redis_unreachable when_unreachable = redis_unreachable::hold;
    /// Called on one of the gate's threads (one call at a time, never under the gate's mutex)
    /// when a running task's lease is lost, just before its stop token is requested. Must not
    /// call the gate.
    std::function<void(const redis_lease_lost&)> on_lease_lost{};
};

/// @brief A consistent snapshot of a redis_permits gate.
struct redis_permits_stats {
    std::size_t limit = 0;                ///< N, cluster-wide
    std::size_t permits_held = 0;         ///< leases of tasks running now (in this process)
    std::size_t permits_unused = 0;       ///< leases granted and not yet taken by a task
    std::size_t waiters = 0;              ///< tasks of the attached queues held back by the gate
    std::uint64_t grants = 0;             ///< leases granted by Redis, in total
    std::uint64_t releases = 0;           ///< leases given back, in total
    std::uint64_t lease_renewals = 0;     ///< lease renewals acknowledged
    std::uint64_t leases_lost = 0;        ///< running tasks' leases lost (stop requested)
    std::uint64_t redis_errors = 0;       ///< failed connects, commands and error replies
    std::uint64_t reconnects = 0;         ///< connections made after the first
    std::uint64_t round_trips = 0;        ///< commands sent (a library load included)
    std::uint64_t library_loads = 0;      ///< FUNCTION LOADs (the server had lost the functions)
    std::uint64_t failed_fast = 0;        ///< tasks failed with gate_unavailable
    std::uint64_t last_fencing_token = 0; ///< the highest token granted to this gate
    bool healthy = false;                 ///< connected, and the last command succeeded
    std::string last_error{};             ///< the last Redis error, empty if none yet
};

namespace redis_detail {

/// One lease this process holds. Guarded by the gate's mutex.
struct lease {
    enum class state { unused, running, lost };
    std::uint64_t token = 0;
    std::string id;
    std::chrono::steady_clock::time_point deadline{};
    state now = state::unused;
    std::optional<std::stop_source> stop{};
    bool stop_pending = false; // lost before its stop source was bound: request it on binding
};

} // namespace redis_detail

/// @brief A start gate (btq::start_gate) backed by a cluster-wide pool of N permits on Redis 7:
///        a task starts only with a local slot of its queue *and* one of the pool's permits,
///        and gives the permit back when it ends, whatever the ending.
///
/// Threads: the hiredis connections (one for commands, one subscribed to the pool's wake-up
/// channel) live on the gate's own thread, which fetches permits ahead according to demand()
/// (as many as the attached queues have tasks held back), renews leases and gives permits
/// back. A second thread watches the lease deadlines. try_acquire() only takes a granted lease
/// from memory under the gate's mutex.
///
/// Fairness: between instances, none is promised beyond "whoever asks first after a release":
/// every waiting instance is woken and the first call to reach Redis wins (per-instance
/// fairness). Within an instance, the queue's priorities and deadlines decide which task gets
/// the next permit.
///
/// Redis unreachable: see redis_unreachable. Never over-admits: a permit is only ever the
/// server's grant. On a failover with asynchronous replication, a grant the old primary
/// acknowledged may be missing on the new one, so the pool can briefly hand out more than N;
/// the holder learns it at its next renewal (lease lost, stop requested) and the fencing token,
/// which keeps growing, lets the resource reject the stale holder.
///
/// @warning Destroy the gate only after every queue attached to it.
/// @code
/// btq::redis_permits permits({.endpoint = btq::parse_redis_url("redis://127.0.0.1:6379/imports"),
///                             .limit = 16});
/// btq::bounded_task_queue<btq::fenced_task<void>, btq::thread_executor, btq::redis_permits>
///     queue(permits, {.max_concurrency = 4, .capacity = 100});
/// queue.submit(btq::fenced_task<void>([](const btq::redis_permit_info& permit, std::stop_token) {
///     import_with_token(permit.fencing_token); // the resource rejects stale tokens
/// }));
/// @endcode
class redis_permits {
  public:
    /// @brief One granted start: a lease (or, in fail-fast mode with Redis unreachable, the
    ///        failure that prepare() reports). Move-only; destroying it gives the lease back.
    class permit_type {
      public:
        /// @brief Takes over `other`'s lease; the moved-from permit releases nothing.
        permit_type(permit_type&& other) noexcept
            : gate_(std::exchange(other.gate_, nullptr)), lease_(std::move(other.lease_)),
              failure_(std::move(other.failure_)) {}
        permit_type& operator=(permit_type&&) = delete;
        permit_type(const permit_type&) = delete;
        permit_type& operator=(const permit_type&) = delete;
        ~permit_type() {
            if (gate_ != nullptr && lease_) {
                gate_->give_back(std::move(lease_));
            }
        }

        /// @brief The grant's fencing token (0 for a failure permit).
        [[nodiscard]] std::uint64_t fencing_token() const noexcept {
            return lease_ ? lease_->token : 0;
        }
        /// @brief What prepare() hands the task.
        [[nodiscard]] redis_permit_info info() const {
            return lease_ ? redis_permit_info{lease_->token, lease_->id} : redis_permit_info{};
        }
        /// @brief btq::revocable_permit: the task's stop source, requested if the lease is lost.
        void bind_stop(std::stop_source source) {
            if (gate_ != nullptr && lease_) {
                gate_->bind_stop(*lease_, std::move(source));
            }
        }

      private:
        friend class redis_permits;
        permit_type(redis_permits* gate, std::shared_ptr<redis_detail::lease> lease) noexcept
            : gate_(gate), lease_(std::move(lease)) {}
        explicit permit_type(std::string failure)
            : failure_(std::make_shared<const std::string>(std::move(failure))) {}

        redis_permits* gate_ = nullptr;
        std::shared_ptr<redis_detail::lease> lease_;
        std::shared_ptr<const std::string> failure_; // fail-fast: what prepare() throws
    };

    /// @brief Checks the options (std::invalid_argument) and starts the gate's threads; the
    ///        first connection is made on the gate's thread (healthy() is false until then).
    explicit redis_permits(redis_permits_options options)
        : options_(std::move(options)),
          timing_(redis_lease_timing::make(options_.lease_ttl, options_.renew_interval,
                                           options_.safety_margin, options_.io_timeout)),
          keys_(options_.endpoint.key_prefix), owner_(make_owner_id()),
          signal_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
        if (options_.limit == 0) {
            throw std::invalid_argument("btq::redis_permits: limit must be at least 1");
        }
        if (options_.endpoint.key_prefix.empty()) {
            throw std::invalid_argument("btq::redis_permits: the key prefix must not be empty");
        }
        if (signal_fd_ < 0) {
            throw std::system_error(errno, std::generic_category(), "btq::redis_permits: eventfd");
        }
        options_.max_batch = std::max<std::size_t>(1, options_.max_batch);
        worker_ = std::thread([this] { run(); });
        watchdog_ = std::thread([this] { watch(); });
    }

    redis_permits(const redis_permits&) = delete;
    redis_permits& operator=(const redis_permits&) = delete;
    redis_permits(redis_permits&&) = delete;
    redis_permits& operator=(redis_permits&&) = delete;

    /// @brief Gives every lease still held back (one call, bounded by io_timeout) and stops the
    ///        threads. Every queue attached must be gone already.
    ~redis_permits() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        signal();
        deadlines_changed_.notify_all();
        worker_.join();
        watchdog_.join();
        ::close(signal_fd_);
    }

    /// @brief btq::start_gate: a lease already granted to this process, if there is one.
    ///        Called under a queue's lock: takes the gate's mutex, never does I/O. With Redis
    ///        unreachable in fail-fast mode, a permit whose prepare() fails the task.
    [[nodiscard]] std::optional<permit_type> try_acquire(const start_request& /*request*/) {
        std::lock_guard lock(mutex_);
        const auto now = std::chrono::steady_clock::now();
        while (healthy_ && !unused_.empty()) {
            std::shared_ptr<redis_detail::lease> lease = std::move(unused_.front());
            unused_.pop_front();
            if (lease->deadline - now < timing_.safety_margin) {
                drop_locked(*lease); // about to be lost: no task starts on it
                continue;
            }
            lease->now = redis_detail::lease::state::running;
            ++running_;
            return permit_type(this, std::move(lease));
        }
        if (options_.when_unreachable == redis_unreachable::fail_fast && unreachable_) {
            ++failed_fast_;
            return permit_type("btq: cluster permits unavailable: " + last_error_);
        }
        return std::nullopt;
    }

    /// @brief btq::returns_unstarted: takes back a lease whose task did not start (a later
    ///        gate of a btq::gate_chain refused) and keeps it for the next start, as if
    ///        try_acquire() had not taken it: no round trip, no wake-up. Under a queue's lock.
    void return_unstarted(permit_type&& permit) noexcept {
        if (permit.gate_ != this || !permit.lease_) {
            return; // a failure permit, or moved from
        }
        permit.gate_ = nullptr;
        std::shared_ptr<redis_detail::lease> lease = std::move(permit.lease_);
        std::lock_guard lock(mutex_);
        if (lease->now != redis_detail::lease::state::running) {
            return; // lost meanwhile: already on its way back to Redis
        }
        --running_;
        try {
            lease->now = redis_detail::lease::state::unused;
            unused_.push_front(std::move(lease));
        } catch (...) {
            // Out of memory: give it back to Redis instead.
            live_.erase(lease->token);
            try {
                to_release_.push_back(lease->id);
            } catch (...) { // NOLINT(bugprone-empty-catch)
                // The lease expires on the server after one ttl.
            }
        }
    }

    /// @brief btq::start_gate: called by a queue's constructor.
    void attach(start_gate_waker waker) { wakers_.attach(waker); }

    /// @brief btq::start_gate: called by a queue's destructor; `waker` is never called after.
    void detach(start_gate_waker waker) {
        wakers_.detach(waker);
        std::lock_guard lock(mutex_);
        demand_.erase(waker.context);
        recount_demand_locked();
    }

    /// @brief btq::start_gate (optional): `held` tasks of the queue `waker` names wait for a
    ///        permit. The gate's thread fetches that many ahead. Called under the queue's lock.
    void demand(const start_gate_waker& waker, std::size_t held) {
        bool more = false;
        {
            std::lock_guard lock(mutex_);
            const std::size_t before = wanted_;
            if (held == 0) {
                demand_.erase(waker.context);
            } else {
                demand_[waker.context] = held;
            }
            recount_demand_locked();
            // More wanted: fetch. Fewer than granted: the surplus goes back after unused_hold.
            more = wanted_ > before || (wanted_ < before && wanted_ < unused_.size());
        }
        if (more) {
            signal(); // one write to an eventfd: never blocks
        }
    }

    /// @brief btq::start_gate (optional): hands the task what its permit carries. A task type
    ///        receives it with a member `set_redis_permit(const btq::redis_permit_info&)` (as
    ///        btq::fenced_task has); other tasks get nothing. A failure permit (fail-fast mode,
    ///        Redis unreachable) throws btq::gate_unavailable here: the task never runs.
    template <class Task>
    void prepare(Task& task, permit_type& permit) const {
        if (permit.failure_) {
            throw gate_unavailable(*permit.failure_);
        }
        if constexpr (requires(const redis_permit_info& info) { task.set_redis_permit(info); }) {
            task.set_redis_permit(permit.info());
        }
    }

    /// @brief True while the gate is connected to Redis and its last command succeeded: what a
    ///        readiness check (/readyz) reports.
    [[nodiscard]] bool healthy() const {
        std::lock_guard lock(mutex_);
        return healthy_;
    }

    /// @brief A consistent snapshot of the gate's counters.
    [[nodiscard]] redis_permits_stats stats() const {
        std::lock_guard lock(mutex_);
        return redis_permits_stats{.limit = options_.limit,
                                   .permits_held = running_,
                                   .permits_unused = unused_.size(),
                                   .waiters = wanted_,
                                   .grants = grants_,
                                   .releases = releases_,
                                   .lease_renewals = renewals_,
                                   .leases_lost = leases_lost_,
                                   .redis_errors = redis_errors_,
                                   .reconnects = reconnects_,
                                   .round_trips = round_trips_,
                                   .library_loads = library_loads_,
                                   .failed_fast = failed_fast_,
                                   .last_fencing_token = highest_token_,
                                   .healthy = healthy_,
                                   .last_error = last_error_};
    }

    /// @brief The options, with the lease timing's defaults in timing().
    [[nodiscard]] const redis_permits_options& options() const noexcept { return options_; }
    /// @brief The lease timing in force.
    [[nodiscard]] const redis_lease_timing& timing() const noexcept { return timing_; }
    /// @brief This gate's owner id: the first part of its lease ids.
    [[nodiscard]] const std::string& owner() const noexcept { return owner_; }

    /// @brief Live leases of the pool at `where`, counted on the Redis server (expired ones are
    ///        removed first): N minus this is the pool's free count. One connection, one call (two
    ///        if the functions must be loaded); throws std::runtime_error if Redis cannot be
    ///        reached. For tests, readiness checks and tools.
    [[nodiscard]] static std::size_t count_holders(const redis_endpoint& where,
                                                   std::chrono::milliseconds timeout) {
        redis_detail::connection link(where.host, where.port, timeout);
        const redis_detail::pool_keys keys(where.key_prefix);
        std::uint64_t loads = 0;
        const redis_detail::reply_ptr reply =
            redis_detail::call_function(link, "count", {keys.holders}, {keys.channel}, loads);
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
            throw std::runtime_error("btq::redis_permits: unexpected reply to count");
        }
        return static_cast<std::size_t>(reply->element[1]->integer);
    }

  private:
    using clock = std::chrono::steady_clock;
    using lease_ptr = std::shared_ptr<redis_detail::lease>;

    /// A lease lost while a task ran: what the watchdog or the worker tells, outside the lock.
    struct revocation {
        std::optional<std::stop_source> stop;
        redis_lease_lost report;
    };

    static std::string make_owner_id() {
        std::random_device entropy;
        const std::uint64_t high = entropy();
        const std::uint64_t random = (high << 32) ^ entropy();
        char text[17] = {};
        static constexpr char digits[] = "0123456789abcdef";
        for (int at = 0; at < 16; ++at) {
            text[at] = digits[(random >> (60 - 4 * at)) & 0xfu];
        }
        return std::to_string(::getpid()) + "-" + text;
    }

    void signal() const noexcept {
        const std::uint64_t one = 1;
        static_cast<void>(::write(signal_fd_, &one, sizeof one));
    }

    void recount_demand_locked() noexcept {
        std::size_t total = 0;
        for (const auto& entry : demand_) {
            total += entry.second;
        }
        if (total == 0) {
            may_acquire_ = true; // a refusal long ago says nothing about the next demand
        }
        wanted_ = total;
    }

    /// An unused lease dropped (about to be lost, or lost): forgotten and given back.
    void drop_locked(redis_detail::lease& lease) {
        live_.erase(lease.token);
        to_release_.push_back(lease.id);
    }

    /// A permit's destructor: the task ended.
    void give_back(lease_ptr lease) noexcept {
        try {
            {
                std::lock_guard lock(mutex_);
                if (lease->now == redis_detail::lease::state::running) {
                    --running_;
                }
                live_.erase(lease->token);
                to_release_.push_back(lease->id); // a lost lease too: Redis may still hold it
            }
            signal();
        } catch (...) { // NOLINT(bugprone-empty-catch)
            // Out of memory: the lease expires on the server after one ttl.
        }
    }

    void bind_stop(redis_detail::lease& lease, std::stop_source source) {
        std::lock_guard lock(mutex_);
        lease.stop = std::move(source);
        if (lease.stop_pending) {
            deadlines_changed_.notify_all(); // lost already: the watchdog requests stop
        }
    }

    /// Marks `lease` lost: no more renewals; a running task's stop is requested by whoever
    /// runs `out` after unlocking.
    void lose_locked(const lease_ptr& lease, const std::string& reason,
                     std::vector<revocation>& out) {
        live_.erase(lease->token);
        to_release_.push_back(lease->id);
        if (lease->now == redis_detail::lease::state::unused) {
            std::erase(unused_, lease);
            return;
        }
        if (lease->now != redis_detail::lease::state::running) {
            return;
        }
        lease->now = redis_detail::lease::state::lost;
        --running_;
        ++leases_lost_;
        revocation told{.stop = lease->stop, .report = {lease->token, lease->id, reason}};
        if (!told.stop) {
            lease->stop_pending = true; // bind_stop() has not run yet: the watchdog requests it
            stop_pending_.push_back(lease);
        }
        out.push_back(std::move(told));
    }

    void revoke(std::vector<revocation>& lost) noexcept {
        const std::lock_guard reporting(report_mutex_); // one report at a time
        for (revocation& told : lost) {
            try {
                if (options_.on_lease_lost) {
                    options_.on_lease_lost(told.report);
                }
            } catch (...) { // NOLINT(bugprone-empty-catch)
                // A callback's failure does not keep the task from being stopped.
            }
            if (told.stop) {
                told.stop->request_stop();
            }
        }
        lost.clear();
    }

    // ---- the watchdog thread: lease deadlines ------------------------------------------------

    void watch() {
        std::vector<revocation> lost;
        std::vector<std::stop_source> pending;
        std::unique_lock lock(mutex_);
        while (!stopping_) {
            const auto now = clock::now();
            std::optional<clock::time_point> next;
            std::vector<lease_ptr> due;
            for (const auto& [token, lease] : live_) {
                if (lease->deadline <= now) {
                    due.push_back(lease);
                } else if (!next || lease->deadline < *next) {
                    next = lease->deadline;
                }
            }
            for (const lease_ptr& lease : due) {
                lose_locked(lease, "its lease was not renewed in time (deadline passed)", lost);
            }
            if (!lost.empty()) {
                lock.unlock();
                revoke(lost);
                signal(); // the worker gives the lost leases back
                lock.lock();
                continue;
            }
            collect_pending_stops_locked(pending);
            if (!pending.empty()) {
                lock.unlock();
                for (std::stop_source& source : pending) {
                    source.request_stop();
                }
                pending.clear();
                lock.lock();
                continue;
            }
            if (next) {
                deadlines_changed_.wait_until(lock, *next);
            } else {
                deadlines_changed_.wait(lock);
            }
        }
    }

    void collect_pending_stops_locked(std::vector<std::stop_source>& out) {
        for (auto it = stop_pending_.begin(); it != stop_pending_.end();) {
            lease_ptr lease = it->lock();
            if (lease && lease->stop_pending && lease->stop) {
                lease->stop_pending = false;
                out.push_back(*lease->stop);
            }
            if (!lease || !lease->stop_pending) {
                it = stop_pending_.erase(it);
            } else {
                ++it;
            }
        }
    }

    // ---- the worker thread: the Redis connections --------------------------------------------

    void run() {
        auto delay = options_.reconnect_delay;
        bool first = true;
        while (!stopped()) {
            if (!command_) {
                if (!connect(first)) {
                    first = false;
                    wait_for_signal(clock::now() + delay);
                    delay = std::min(delay * 2, std::chrono::milliseconds(2000));
                    continue;
                }
                first = false;
                delay = options_.reconnect_delay;
            }
            try {
                step();
                wait_for_events(next_wake());
            } catch (const redis_detail::io_error& error) {
                fail(error.what());
            }
        }
        give_everything_back();
    }

    [[nodiscard]] bool stopped() const {
        std::lock_guard lock(mutex_);
        return stopping_;
    }

    bool connect(bool first) {
        try {
            auto command = std::make_unique<redis_detail::connection>(
                options_.endpoint.host, options_.endpoint.port, timing_.io_timeout);
            auto subscriber = std::make_unique<redis_detail::connection>(
                options_.endpoint.host, options_.endpoint.port, timing_.io_timeout);
            const redis_detail::reply_ptr subscribed =
                subscriber->command({"SUBSCRIBE", keys_.channel});
            if (redis_detail::is_error(*subscribed)) {
                throw redis_detail::io_error("Redis at " + subscriber->where() + ": SUBSCRIBE: " +
                                             std::string(redis_detail::text_of(*subscribed)));
            }
            command_ = std::move(command);
            subscriber_ = std::move(subscriber);
            std::lock_guard lock(mutex_);
            round_trips_ += 1;
            reconnects_ += first ? 0 : 1;
            healthy_ = true;
            unreachable_ = false;
            may_acquire_ = true;
            renew_now_ = true; // Redis may have restarted: find out which leases it still has
            return true;
        } catch (const redis_detail::io_error& error) {
            fail(error.what());
            return false;
        }
    }

    /// A connection or a command failed: drop both connections, report, wake the queues in
    /// fail-fast mode so their held tasks fail.
    void fail(const std::string& what) {
        command_.reset();
        subscriber_.reset();
        bool wake = false;
        {
            std::lock_guard lock(mutex_);
            ++redis_errors_;
            last_error_ = what;
            wake = !unreachable_ && options_.when_unreachable == redis_unreachable::fail_fast;
            healthy_ = false;
            unreachable_ = true;
        }
        if (wake) {
            wakers_.wake_all();
        }
    }

    /// One pass: give back, renew, fetch, return surplus.
    void step() {
        std::vector<std::string> releasing;
        {
            std::lock_guard lock(mutex_);
            releasing.swap(to_release_);
        }
        if (!releasing.empty()) {
            release(releasing);
        }
        renew_if_due();
        acquire_if_wanted();
        return_surplus();
    }

    redis_detail::reply_ptr call(std::string_view function, std::vector<std::string> keys,
                                 std::vector<std::string> args) {
        std::uint64_t loads = 0;
        redis_detail::reply_ptr reply =
            redis_detail::call_function(*command_, function, keys, args, loads);
        std::lock_guard lock(mutex_);
        round_trips_ += 1 + 2 * loads;
        library_loads_ += loads;
        if (redis_detail::is_error(*reply)) {
            // An error reply (READONLY on a replica, OOM, a script error): unusable for now.
            throw redis_detail::io_error("Redis at " + command_->where() + ": " +
                                         std::string(redis_detail::text_of(*reply)));
        }
        return reply;
    }

    void release(std::vector<std::string>& ids) {
        for (std::size_t at = 0; at < ids.size(); at += 256) {
            std::vector<std::string> args{keys_.channel};
            const std::size_t end = std::min(ids.size(), at + 256);
            args.insert(args.end(), ids.begin() + static_cast<std::ptrdiff_t>(at),
                        ids.begin() + static_cast<std::ptrdiff_t>(end));
            try {
                static_cast<void>(call("release", {keys_.holders}, std::move(args)));
            } catch (...) {
                // Not given back yet: try again after reconnecting (or the lease expires).
                std::lock_guard lock(mutex_);
                to_release_.insert(to_release_.end(), ids.begin() + static_cast<std::ptrdiff_t>(at),
                                   ids.end());
                throw;
            }
            std::lock_guard lock(mutex_);
            releases_ += end - at;
        }
    }

    void renew_if_due() {
        std::vector<lease_ptr> renewing;
        const auto sent = clock::now();
        {
            std::lock_guard lock(mutex_);
            if (live_.empty()) {
                renew_now_ = false;
                next_renewal_.reset();
                return;
            }
            if (!renew_now_ && next_renewal_ && sent < *next_renewal_) {
                return;
            }
            renew_now_ = false;
            for (const auto& entry : live_) {
                renewing.push_back(entry.second);
            }
        }
        std::vector<std::string> args{std::to_string(timing_.ttl.count())};
        for (const lease_ptr& lease : renewing) {
            args.push_back(lease->id);
        }
        const redis_detail::reply_ptr reply = call("renew", {keys_.holders}, std::move(args));
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != renewing.size() + 1) {
            throw redis_detail::io_error("Redis at " + command_->where() +
                                         ": unexpected reply to renew");
        }
        std::vector<revocation> lost;
        {
            std::lock_guard lock(mutex_);
            next_renewal_ = sent + timing_.renew_interval;
            for (std::size_t at = 0; at < renewing.size(); ++at) {
                const lease_ptr& lease = renewing[at];
                if (!live_.contains(lease->token)) {
                    continue; // released or lost meanwhile
                }
                if (reply->element[at + 1]->integer == 1) {
                    lease->deadline = timing_.deadline_after(sent);
                    ++renewals_;
                } else {
                    lose_locked(lease, "Redis no longer holds its lease", lost);
                }
            }
        }
        if (!lost.empty()) {
            revoke(lost);
        }
    }

    void acquire_if_wanted() {
        std::size_t want = 0;
        std::uint64_t min_token = 0;
        const auto sent = clock::now();
        {
            std::lock_guard lock(mutex_);
            if (!may_acquire_ && fallback_at_ && sent >= *fallback_at_) {
                may_acquire_ = true;
            }
            const std::size_t have = unused_.size();
            if (!may_acquire_ || wanted_ <= have) {
                return;
            }
            want = std::min({wanted_ - have, options_.max_batch, options_.limit});
            min_token = highest_token_;
        }
        const redis_detail::reply_ptr reply =
            call("acquire", {keys_.holders, keys_.fence},
                 {std::to_string(options_.limit), std::to_string(timing_.ttl.count()),
                  std::to_string(want), owner_, std::to_string(min_token), keys_.channel});
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2) {
            throw redis_detail::io_error("Redis at " + command_->where() +
                                         ": unexpected reply to acquire");
        }
        const long long earliest = reply->element[1]->integer;
        const std::size_t granted = reply->elements - 2;
        {
            std::lock_guard lock(mutex_);
            for (std::size_t at = 0; at < granted; ++at) {
                auto lease = std::make_shared<redis_detail::lease>();
                lease->token = static_cast<std::uint64_t>(reply->element[at + 2]->integer);
                lease->id = owner_ + ":" + std::to_string(lease->token);
                lease->deadline = timing_.deadline_after(sent);
                highest_token_ = std::max(highest_token_, lease->token);
                live_.emplace(lease->token, lease);
                unused_.push_back(std::move(lease));
            }
            grants_ += granted;
            if (!next_renewal_) {
                next_renewal_ = sent + timing_.renew_interval;
            }
            if (granted < want) {
                // The pool is full: wait for a wake-up message, or for the earliest lease to
                // expire (a holder that vanished publishes nothing), or for the fallback.
                may_acquire_ = false;
                auto wait = options_.fallback_interval;
                if (earliest >= 0) {
                    wait = std::min(wait, std::chrono::milliseconds(earliest + 2));
                }
                fallback_at_ = sent + wait;
            } else {
                fallback_at_.reset();
            }
        }
        if (granted > 0) {
            deadlines_changed_.notify_all();
            wakers_.wake_all();
        }
    }

    void return_surplus() {
        std::vector<std::string> returning;
        {
            std::lock_guard lock(mutex_);
            const auto now = clock::now();
            if (unused_.size() <= wanted_) {
                surplus_since_.reset();
                return;
            }
            if (!surplus_since_) {
                surplus_since_ = now;
            }
            if (now - *surplus_since_ < options_.unused_hold) {
                return;
            }
            surplus_since_.reset();
            while (unused_.size() > wanted_) {
                const lease_ptr lease = unused_.back();
                unused_.pop_back();
                live_.erase(lease->token);
                returning.push_back(lease->id);
            }
        }
        release(returning);
    }

    /// When the worker must run again without an event: the next renewal, the fallback for a
    /// refused acquire, the end of the unused hold.
    [[nodiscard]] std::optional<clock::time_point> next_wake() const {
        std::lock_guard lock(mutex_);
        std::optional<clock::time_point> at = next_renewal_;
        const auto earliest = [&at](clock::time_point candidate) {
            at = at ? std::min(*at, candidate) : candidate;
        };
        if (!to_release_.empty() || renew_now_) {
            earliest(clock::now());
        }
        if (!may_acquire_ && fallback_at_ && wanted_ > unused_.size()) {
            earliest(*fallback_at_);
        }
        if (surplus_since_) {
            earliest(*surplus_since_ + options_.unused_hold);
        } else if (unused_.size() > wanted_) {
            earliest(clock::now() + options_.unused_hold);
        }
        return at;
    }

    /// Waits for a signal (demand, a release, stop), a wake-up message, or `until`.
    void wait_for_events(std::optional<clock::time_point> until) {
        pollfd fds[2] = {{signal_fd_, POLLIN, 0}, {subscriber_->fd(), POLLIN, 0}};
        if (!until || *until > clock::now()) {
            const int timeout = until ? poll_timeout(*until) : -1;
            if (::poll(fds, 2, timeout) < 0 && errno != EINTR) {
                throw redis_detail::io_error("poll failed");
            }
        } else {
            static_cast<void>(::poll(fds, 2, 0));
        }
        drain_signal();
        if ((fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
            bool woken = false;
            for (const redis_detail::reply_ptr& message : subscriber_->read_available()) {
                woken = woken || message->type == REDIS_REPLY_ARRAY;
            }
            if (woken) {
                std::lock_guard lock(mutex_);
                may_acquire_ = true;
            }
        }
    }

    void wait_for_signal(clock::time_point until) {
        pollfd fd{signal_fd_, POLLIN, 0};
        static_cast<void>(::poll(&fd, 1, poll_timeout(until)));
        drain_signal();
    }

    static int poll_timeout(clock::time_point until) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - clock::now());
        return static_cast<int>(std::clamp<std::chrono::milliseconds::rep>(left.count(), 0, 60000));
    }

    void drain_signal() const noexcept {
        std::uint64_t count = 0;
        static_cast<void>(::read(signal_fd_, &count, sizeof count));
    }

    /// At the gate's end: every lease still held goes back in one call (bounded by io_timeout).
    void give_everything_back() {
        std::vector<std::string> ids;
        {
            std::lock_guard lock(mutex_);
            ids.swap(to_release_);
            for (const auto& entry : live_) {
                ids.push_back(entry.second->id);
            }
            live_.clear();
            unused_.clear();
        }
        if (ids.empty()) {
            return;
        }
        try {
            if (!command_) {
                command_ = std::make_unique<redis_detail::connection>(
                    options_.endpoint.host, options_.endpoint.port, timing_.io_timeout);
            }
            release(ids);
        } catch (...) { // NOLINT(bugprone-empty-catch)
            // Unreachable: the leases expire on the server after one ttl.
        }
    }

    redis_permits_options options_;
    const redis_lease_timing timing_;
    const redis_detail::pool_keys keys_;
    const std::string owner_;
    const int signal_fd_;

    // The worker thread's own.
    std::unique_ptr<redis_detail::connection> command_;
    std::unique_ptr<redis_detail::connection> subscriber_;

    mutable std::mutex mutex_; // everything below; never held during I/O or a wake-up
    std::map<std::uint64_t, lease_ptr> live_; // every lease held (unused and running), by token
    std::deque<lease_ptr> unused_;            // granted, not yet taken by a task
    std::vector<std::string> to_release_;
    std::vector<std::weak_ptr<redis_detail::lease>> stop_pending_;
    std::map<const void*, std::size_t> demand_;
    std::size_t wanted_ = 0;
    std::size_t running_ = 0;
    bool may_acquire_ = true;
    bool renew_now_ = false;
    bool healthy_ = false;
    bool unreachable_ = false;
    bool stopping_ = false;
    std::optional<clock::time_point> next_renewal_;
    std::optional<clock::time_point> fallback_at_;
    std::optional<clock::time_point> surplus_since_;
    std::uint64_t highest_token_ = 0;
    std::uint64_t grants_ = 0;
    std::uint64_t releases_ = 0;
    std::uint64_t renewals_ = 0;
    std::uint64_t leases_lost_ = 0;
    std::uint64_t redis_errors_ = 0;
    std::uint64_t reconnects_ = 0;
    std::uint64_t round_trips_ = 0;
    std::uint64_t library_loads_ = 0;
    std::uint64_t failed_fast_ = 0;
    std::string last_error_;
    std::condition_variable deadlines_changed_;
    std::mutex report_mutex_; // serialises on_lease_lost calls of the two threads

    detail::waker_registry wakers_;

    std::thread worker_; // last: started once everything above exists
    std::thread watchdog_;
};

static_assert(start_gate<redis_permits>);
static_assert(revocable_permit<redis_permits::permit_type>);

/// @brief A task that wants its permit's fencing token: a function of the permit's
///        btq::redis_permit_info and the task's stop token (requested when the lease is lost).
///        redis_permits::prepare() fills the info in just before the task runs.
/// @code
/// btq::fenced_task<int> task([](const btq::redis_permit_info& permit, std::stop_token stop) {
///     return write_with_token(permit.fencing_token, stop);
/// });
/// @endcode
template <class R>
class fenced_task {
  public:
    /// The work: called with the permit's info and the task's stop token.
    using body_type = std::function<R(const redis_permit_info&, std::stop_token)>;

    /// @brief A task that runs `body`.
    explicit fenced_task(body_type body) : body_(std::move(body)) {}

    /// @brief Called by redis_permits::prepare().
    void set_redis_permit(const redis_permit_info& info) { info_ = info; }
    /// @brief The permit's info (empty before prepare()).
    [[nodiscard]] const redis_permit_info& permit() const noexcept { return info_; }

    /// @brief Runs the work.
    R operator()(std::stop_token stop) { return body_(info_, std::move(stop)); }

  private:
    body_type body_;
    redis_permit_info info_{};
};

} // namespace btq
