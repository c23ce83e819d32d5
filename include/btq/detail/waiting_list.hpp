/// @file waiting_list.hpp
/// @brief The queue's waiting tasks: intrusive FIFO lists, one per priority, highest first, and
///        per key within a priority (taking turns).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <vector>

#include "key_lanes.hpp"

namespace btq::detail {

/// A task waiting in (or running from) a queue. Intrusive links keep waiting free of per-task
/// container allocations and let clear(), expiry, cancellation and drop_oldest unlink any task
/// in O(1). `next` is also the link of the queue's lock-free inbox (detail::inbox).
struct queue_node {
    queue_node* next = nullptr;
    queue_node* prev = nullptr;
    std::uint64_t stamp = 0; ///< tick_clock stamp: submission while waiting, start while running
    int priority = 0;
    /// Held back by its queue's start gate with a slot free for it (gated queues only; it fits
    /// in the padding after `priority`).
    bool held_by_gate = false;
    /// First in line and waiting for a rate token (queue_options::rate): its hold is counted.
    bool held_by_rate = false;
    /// How much of max_concurrency it holds while running (submit_options::weight; in the
    /// padding too).
    std::uint16_t weight = 1;
    /// The queue's per-task state for a task with a deadline, a stop token or a run timeout
    /// (owned by the node; null for every other task). Such a task is admitted under the lock
    /// into the waiting list, never the inbox.
    key_link* extras = nullptr;

    /// Hands the task to the executor; `waited` is how long it waited.
    virtual void start(std::chrono::nanoseconds waited) = 0;
    /// Answers the task with `error` without running it, then frees the node.
    virtual void fail(std::exception_ptr error) noexcept = 0;
    /// Answers the task with `error` while it still runs (its run timeout); frees nothing.
    virtual void answer_error(std::exception_ptr error) noexcept = 0;

    queue_node(const queue_node&) = delete;
    queue_node& operator=(const queue_node&) = delete;
    queue_node(queue_node&&) = delete;
    queue_node& operator=(queue_node&&) = delete;

  protected:
    queue_node() = default;
    ~queue_node() = default;
};

static_assert(sizeof(void*) != 8 || sizeof(queue_node) <= 48,
              "a waiting node's own fields fit in 48 bytes (memory per waiter)");

/// A singly linked chain of nodes (through `next`) taken out of the queue to be answered.
struct node_chain {
    queue_node* head = nullptr;
    std::size_t size = 0;

    void push(queue_node* node) noexcept {
        node->next = head;
        head = node;
        ++size;
    }
    /// Answers every node with `error`. Call without the queue's lock.
    void fail_all(const std::exception_ptr& error) noexcept {
        while (head != nullptr) {
            queue_node* node = head;
            head = node->next;
            node->fail(error);
        }
    }
};

/// Nodes in no particular order, unlinked in O(1): the tasks backing off before a retry.
class node_list {
  public:
    void push(queue_node* node) noexcept {
        node->prev = nullptr;
        node->next = head_;
        if (head_ != nullptr) {
            head_->prev = node;
        }
        head_ = node;
    }
    void erase(queue_node* node) noexcept {
        (node->prev != nullptr ? node->prev->next : head_) = node->next;
        if (node->next != nullptr) {
            node->next->prev = node->prev;
        }
        node->prev = nullptr;
        node->next = nullptr;
    }
    /// Takes the first node, or null.
    queue_node* pop() noexcept {
        queue_node* node = head_;
        if (node != nullptr) {
            erase(node);
        }
        return node;
    }

  private:
    queue_node* head_ = nullptr;
};

/// Waiting tasks by priority (highest first), FIFO within a priority. Within a priority, tasks
/// with a key (submit_options::key) wait in their key's lane, and the lanes and the tasks
/// without a key (as one more member) take turns: round robin, one start each, a new key
/// joining at the end of the round. `eligible(lane)` says whether a lane's key may start a task
/// now (its per-key concurrency); a lane that may not is passed over, and a priority level with
/// nothing eligible gives way to the next.
class waiting_list {
  public:
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    /// True while a task with a key waits.
    [[nodiscard]] bool has_lanes() const noexcept { return lanes_ > 0; }

    void push_back(queue_node* node) {
        level& into = level_for(node->priority);
        if (key_lane* lane = lane_of(node)) {
            append(lane->head, lane->tail, node);
            if (!lane->linked) {
                link_lane(into, lane);
            }
        } else {
            append(into.head, into.tail, node);
        }
        ++size_;
    }

    /// Inserts `node` after every node of its priority (and its key) with an earlier or equal
    /// stamp, so a node that comes late from the inbox, or changes priority, takes the place its
    /// submission gives it (walks back from the tail).
    void insert_by_stamp(queue_node* node) {
        level& into = level_for(node->priority);
        key_lane* lane = lane_of(node);
        queue_node*& head = lane != nullptr ? lane->head : into.head;
        queue_node*& tail = lane != nullptr ? lane->tail : into.tail;
        queue_node* after = tail;
        while (after != nullptr && after->stamp > node->stamp) {
            after = after->prev;
        }
        node->prev = after;
        node->next = after != nullptr ? after->next : head;
        (node->next != nullptr ? node->next->prev : tail) = node;
        (after != nullptr ? after->next : head) = node;
        if (lane != nullptr && !lane->linked) {
            link_lane(into, lane);
        }
        ++size_;
    }

    /// Calls `visit(node, position)` for the first `count` nodes in start order (as far as it
    /// can be told now: eligibility as it stands).
    template <class Visit, class Eligible>
    void visit_front(std::size_t count, Visit visit, Eligible eligible) const {
        std::size_t position = 0;
        std::vector<queue_node*> cursors; // per member of a level with lanes, its next node
        for (const level& each : levels_) {
            if (each.ring == nullptr) {
                for (queue_node* node = each.head; node != nullptr && position < count;
                     node = node->next) {
                    visit(node, position++);
                }
                continue;
            }
            cursors.clear();
            for_members_from(each, [&](key_lane* lane) {
                cursors.push_back(lane == nullptr   ? each.head
                                  : eligible(*lane) ? lane->head
                                                    : nullptr);
                return false;
            });
            for (bool any = true; any && position < count;) {
                any = false;
                for (queue_node*& cursor : cursors) {
                    if (cursor != nullptr && position < count) {
                        visit(cursor, position++);
                        cursor = cursor->next;
                        any = true;
                    }
                }
            }
        }
    }

    /// Appends the number waiting at each priority, highest first, leaving out empty ones.
    template <class Out>
    void count_by_priority(Out& out) const {
        for (const level& each : levels_) {
            std::size_t count = 0;
            for (const queue_node* node = each.head; node != nullptr; node = node->next) {
                ++count;
            }
            for_members_from(each, [&](key_lane* lane) {
                for (const queue_node* node = lane != nullptr ? lane->head : nullptr;
                     node != nullptr; node = node->next) {
                    ++count;
                }
                return false;
            });
            if (count > 0) {
                out.push_back({each.priority, count});
            }
        }
    }

    /// The task that starts next, left in place; null if none may start (every waiting task's
    /// key is at its limit). `outside` is the oldest keyless task of priority 0 kept outside the
    /// list (the queue's inbox), or null: it counts as the keyless tasks' head at priority 0
    /// when it is older than theirs (call ensure_level(0) first).
    template <class Eligible>
    [[nodiscard]] queue_node* front(Eligible eligible,
                                    queue_node* outside = nullptr) const noexcept {
        for (const level& each : levels_) {
            if (queue_node* node = candidate(each, eligible, outside).node) {
                return node;
            }
        }
        return nullptr;
    }

    /// Takes the task front(eligible, outside) names, and gives the next member its turn; when
    /// that task is `outside`, it is left where it is (the caller takes it).
    template <class Eligible>
    queue_node* pop_front(Eligible eligible, queue_node* outside = nullptr) noexcept {
        for (std::size_t index = 0; index < levels_.size(); ++index) {
            level& each = levels_[index];
            const choice chosen = candidate(each, eligible, outside);
            if (chosen.node == nullptr) {
                continue;
            }
            if (each.ring != nullptr) {
                each.turn = member_after(each, chosen.lane); // the next member's turn
            }
            if (chosen.node != outside) {
                remove(index, chosen.node);
            }
            return chosen.node;
        }
        return nullptr;
    }

    /// Makes sure a level of `priority` exists (empty if nothing waits there).
    void ensure_level(int priority) { static_cast<void>(level_for(priority)); }

    /// The task drop_oldest displaces: the oldest of the lowest priority. Precondition: not empty.
    [[nodiscard]] queue_node* lowest_oldest() const noexcept {
        std::size_t index = levels_.size() - 1;
        while (levels_[index].head == nullptr && levels_[index].ring == nullptr) {
            --index;
        }
        const level& lowest = levels_[index];
        queue_node* oldest = lowest.head;
        for_members_from(lowest, [&](key_lane* lane) {
            if (lane != nullptr && (oldest == nullptr || lane->head->stamp < oldest->stamp)) {
                oldest = lane->head;
            }
            return false;
        });
        return oldest;
    }

    void erase(queue_node* node) noexcept {
        for (std::size_t index = 0; index < levels_.size(); ++index) {
            if (levels_[index].priority == node->priority) {
                remove(index, node);
                return;
            }
        }
    }

    /// Removes every waiting task into `out` (without a key in start order first).
    void take_all(node_chain& out) noexcept {
        for (std::size_t index = levels_.size(); index-- > 0;) {
            level& each = levels_[index];
            while (each.ring != nullptr) {
                key_lane* lane = each.ring;
                for (queue_node* node = lane->tail; node != nullptr;) {
                    queue_node* previous = node->prev;
                    out.push(node);
                    node = previous;
                }
                lane->head = nullptr;
                lane->tail = nullptr;
                unlink_lane(each, lane);
            }
            for (queue_node* node = each.tail; node != nullptr;) {
                queue_node* previous = node->prev;
                out.push(node);
                node = previous;
            }
            each.head = nullptr;
            each.tail = nullptr;
        }
        size_ = 0;
    }

  private:
    struct level {
        int priority;
        queue_node* head; ///< tasks without a key, FIFO
        queue_node* tail;
        key_lane* ring = nullptr; ///< the lanes, circular; the keyless tasks come before this one
        key_lane* turn = nullptr; ///< whose turn it is: a lane, or null for the keyless tasks
    };
    struct choice {
        queue_node* node = nullptr;
        key_lane* lane = nullptr; ///< null: the keyless tasks
    };

    static key_lane* lane_of(const queue_node* node) noexcept {
        return node->extras != nullptr ? node->extras->lane : nullptr;
    }

    static void append(queue_node*& head, queue_node*& tail, queue_node* node) noexcept {
        node->next = nullptr;
        node->prev = tail;
        (tail != nullptr ? tail->next : head) = node;
        tail = node;
    }

    /// Calls `visit(member)` for the members of a level with lanes in turn order, from whose
    /// turn it is: a lane, or null for the keyless tasks (visited even when there are none);
    /// stops when `visit` returns true.
    template <class Visit>
    static void for_members_from(const level& each, Visit visit) {
        if (each.ring == nullptr) {
            return;
        }
        key_lane* const start = each.turn;
        key_lane* member = start;
        do {
            if (visit(member)) {
                return;
            }
            member = member == nullptr                ? each.ring
                     : member->ring_next == each.ring ? nullptr
                                                      : member->ring_next;
        } while (member != start);
    }

    template <class Eligible>
    static choice candidate(const level& each, Eligible& eligible, queue_node* outside) noexcept {
        queue_node* keyless = each.head;
        if (outside != nullptr && each.priority == 0 &&
            (keyless == nullptr || outside->stamp < keyless->stamp)) {
            keyless = outside;
        }
        if (each.ring == nullptr) {
            return choice{keyless, nullptr};
        }
        choice found;
        for_members_from(each, [&](key_lane* lane) {
            if (lane == nullptr) {
                found = choice{keyless, nullptr};
            } else if (eligible(*lane)) {
                found = choice{lane->head, lane};
            }
            return found.node != nullptr;
        });
        return found;
    }

    /// The member whose turn follows `member`'s (null: the keyless tasks).
    static key_lane* member_after(const level& each, const key_lane* member) noexcept {
        if (member == nullptr) {
            return each.ring;
        }
        return member->ring_next == each.ring ? nullptr : member->ring_next;
    }

    void link_lane(level& into, key_lane* lane) noexcept {
        if (into.ring == nullptr) {
            lane->ring_next = lane;
            lane->ring_prev = lane;
            into.ring = lane;
        } else { // at the end of the round: just before the keyless tasks' turn
            key_lane* last = into.ring->ring_prev;
            lane->ring_prev = last;
            lane->ring_next = into.ring;
            last->ring_next = lane;
            into.ring->ring_prev = lane;
        }
        lane->linked = true;
        ++lanes_;
    }

    void unlink_lane(level& from, key_lane* lane) noexcept {
        if (from.turn == lane) {
            from.turn = member_after(from, lane);
        }
        if (lane->ring_next == lane) {
            from.ring = nullptr;
            from.turn = nullptr;
        } else {
            lane->ring_prev->ring_next = lane->ring_next;
            lane->ring_next->ring_prev = lane->ring_prev;
            if (from.ring == lane) {
                from.ring = lane->ring_next;
            }
        }
        lane->ring_next = nullptr;
        lane->ring_prev = nullptr;
        lane->linked = false;
        --lanes_;
    }

    level& level_for(int priority) {
        auto position = levels_.begin();
        for (; position != levels_.end(); ++position) {
            if (position->priority == priority) {
                return *position;
            }
            if (position->priority < priority) {
                break;
            }
        }
        return *levels_.insert(position, level{priority, nullptr, nullptr});
    }

    void remove(std::size_t index, queue_node* node) noexcept {
        level& from = levels_[index];
        if (key_lane* lane = lane_of(node)) {
            (node->prev != nullptr ? node->prev->next : lane->head) = node->next;
            (node->next != nullptr ? node->next->prev : lane->tail) = node->prev;
            if (lane->head == nullptr) {
                unlink_lane(from, lane);
            }
        } else {
            (node->prev != nullptr ? node->prev->next : from.head) = node->next;
            (node->next != nullptr ? node->next->prev : from.tail) = node->prev;
        }
        node->prev = nullptr;
        node->next = nullptr;
        --size_;
        if (from.head == nullptr && from.ring == nullptr && levels_.size() > kept_levels) {
            levels_.erase(levels_.begin() + static_cast<std::ptrdiff_t>(index));
        }
    }

    // Empty levels are kept while there are few, so a queue that keeps emptying and refilling
    // one priority does not erase and re-insert its level every time.
    static constexpr std::size_t kept_levels = 4;
    std::vector<level> levels_; // highest priority first; may hold empty levels
    std::size_t size_ = 0;
    std::size_t lanes_ = 0; // lanes linked, over every level
};

} // namespace btq::detail
