/// @file key_lanes.hpp
/// @brief What a queue keeps per key (submit_options::key): a record with the key's counts, and
///        one lane per priority the key has waiting tasks at, which the waiting list takes turns
///        over.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
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
};

} // namespace btq::detail
