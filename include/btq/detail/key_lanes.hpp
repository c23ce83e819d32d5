/// @file key_lanes.hpp
/// @brief What a queue keeps per key (submit_options::key): a record with the key's counts, and
///        one lane per priority the key has waiting tasks at, which the waiting list takes turns
///        over.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../task_key.hpp"

namespace btq::detail {

struct queue_node;
struct key_record;

/// A key's waiting tasks of one priority, FIFO, linked into its level's ring while not empty.
struct key_lane {
    key_record* record = nullptr;
    int priority = 0;
    queue_node* head = nullptr;
    queue_node* tail = nullptr;
    key_lane* ring_next = nullptr; ///< the ring of its level is circular
    key_lane* ring_prev = nullptr;
    bool linked = false; ///< in its level's ring
};

/// A key in use: it exists while it has tasks waiting or running (the queue erases it then).
struct key_record {
    const task_key* key = nullptr; ///< its key, as the queue's map holds it
    std::size_t waiting = 0;
    std::size_t running = 0;
    std::uint64_t rejected = 0;
    key_lane first; ///< the lane of the first priority used; most keys need no other
    std::vector<std::unique_ptr<key_lane>> more;

    explicit key_record(int priority) noexcept {
        first.record = this;
        first.priority = priority;
    }
    key_record(const key_record&) = delete;
    key_record& operator=(const key_record&) = delete;
    key_record(key_record&&) = delete;
    key_record& operator=(key_record&&) = delete;
    ~key_record() = default;

    [[nodiscard]] bool idle() const noexcept { return waiting == 0 && running == 0; }

    /// Makes an idle record (kept for reuse by key_table) as new: its lanes are empty and
    /// unlinked already, and lane_for() gives the first one the priority of the next task.
    void reuse() noexcept {
        rejected = 0;
        more.clear();
    }

    key_lane& lane_for(int priority) {
        if (first.priority == priority ||
            (first.head == nullptr && !first.linked && more.empty())) {
            first.priority = priority;
            return first;
        }
        for (auto& lane : more) {
            if (lane->priority == priority) {
                return *lane;
            }
        }
        auto lane = std::make_unique<key_lane>();
        lane->record = this;
        lane->priority = priority;
        more.push_back(std::move(lane));
        return *more.back();
    }
};

/// The first member of every task's extras: where a keyed task waits, and whose it is. The
/// waiting list reaches it through queue_node::extras without knowing the rest.
struct key_link {
    key_record* record = nullptr; ///< null for a task without a key
    key_lane* lane = nullptr;     ///< while it waits
    std::uint64_t id = 0;         ///< submit_options::id
};

/// Every key with tasks waiting or running, and the per-key bounds (queue_options::max_per_key,
/// capacity_per_key). Not synchronized: the queue's lock guards it.
class key_table {
  public:
    key_table(std::size_t max_running, std::size_t max_waiting)
        : max_running_(max_running), max_waiting_(max_waiting) {
        spare_.reserve(spare_records);
    }

    /// The record of `key`, or null when it has no task waiting or running.
    [[nodiscard]] key_record* find(const task_key& key) noexcept {
        auto found = records_.find(key);
        return found != records_.end() ? &found->second : nullptr;
    }
    /// The record of `key`, made (or taken from the spare ones) if it has none.
    key_record& record_for(const task_key& key, int priority) {
        if (auto found = records_.find(key); found != records_.end()) {
            return found->second;
        }
        if (!spare_.empty()) {
            map_type::node_type spare = std::move(spare_.back());
            spare_.pop_back();
            spare.key() = key;
            spare.mapped().reuse();
            const auto position = records_.insert(std::move(spare)).position;
            position->second.key = &position->first;
            return position->second;
        }
        const auto position = records_.try_emplace(key, priority).first;
        position->second.key = &position->first;
        return position->second;
    }
    /// A task of `record`'s key (null: a key with nothing yet) may start now.
    [[nodiscard]] bool may_start(const key_record* record) const noexcept {
        return record == nullptr || max_running_ == 0 || record->running < max_running_;
    }
    /// A lane's key may start a task now.
    [[nodiscard]] bool eligible(const key_lane& lane) const noexcept {
        return may_start(lane.record);
    }
    /// `record`'s key has its share of waiting places (it is then refused and counted).
    bool refuse_waiting(key_record* record) noexcept {
        if (record == nullptr || max_waiting_ == 0 || record->waiting < max_waiting_) {
            return false;
        }
        ++record->rejected;
        return true;
    }
    /// A keyed task leaves its key's waiting tasks: it starts, or is answered unstarted.
    void leave_waiting(key_link& link, bool starts) noexcept {
        key_record* record = link.record;
        if (record == nullptr) {
            return;
        }
        link.lane = nullptr;
        --record->waiting;
        if (starts) {
            ++record->running;
        } else {
            link.record = nullptr;
            forget_if_idle(record);
        }
    }
    /// A task of `record`'s key has finished.
    void finished(key_record* record) noexcept {
        --record->running;
        forget_if_idle(record);
    }

    [[nodiscard]] std::size_t size() const noexcept { return records_.size(); }
    /// Calls `visit(key, record)` for every key in use.
    template <class Visit>
    void visit(Visit visit) const {
        for (const auto& [key, record] : records_) {
            visit(key, record);
        }
    }

  private:
    // A key that goes idle leaves the map at once (stats list keys in use only), but its
    // node is kept for the next new key, up to spare_records of them (about 200 bytes each):
    // keys that come and go, as clients do, then cost no allocation under the lock.
    void forget_if_idle(key_record* record) noexcept {
        if (record->idle()) {
            map_type::node_type idle = records_.extract(records_.find(*record->key));
            if (spare_.size() < spare_records) { // reserved: push_back does not allocate
                spare_.push_back(std::move(idle));
            }
        }
    }

    using map_type = std::unordered_map<task_key, key_record>;
    static constexpr std::size_t spare_records = 16;
    std::size_t max_running_;
    std::size_t max_waiting_;
    map_type records_;
    std::vector<map_type::node_type> spare_;
};

} // namespace btq::detail
