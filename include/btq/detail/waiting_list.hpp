/// @file waiting_list.hpp
/// @brief The queue's waiting tasks: intrusive FIFO lists, one per priority, highest first.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <vector>

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
    void* extras = nullptr;

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

/// Waiting tasks by priority (highest first), FIFO within a priority.
class waiting_list {
  public:
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }

    void push_back(queue_node* node) {
        level& into = level_for(node->priority);
        node->next = nullptr;
        node->prev = into.tail;
        if (into.tail != nullptr) {
            into.tail->next = node;
        } else {
            into.head = node;
        }
        into.tail = node;
        ++size_;
    }

    /// Appends `node` after every node of its priority with an earlier or equal stamp, so a node
    /// that comes late from the inbox keeps its submission order (walks back from the tail).
    void insert_by_stamp(queue_node* node) {
        level& into = level_for(node->priority);
        queue_node* after = into.tail;
        while (after != nullptr && after->stamp > node->stamp) {
            after = after->prev;
        }
        node->prev = after;
        node->next = after != nullptr ? after->next : into.head;
        (node->next != nullptr ? node->next->prev : into.tail) = node;
        (after != nullptr ? after->next : into.head) = node;
        ++size_;
    }

    /// Calls `visit(node, position)` for the first `count` nodes in start order.
    template <class Visit>
    void visit_front(std::size_t count, Visit visit) const {
        std::size_t position = 0;
        for (const level& each : levels_) {
            for (queue_node* node = each.head; node != nullptr && position < count;
                 node = node->next) {
                visit(node, position++);
            }
        }
    }

    /// The task that starts next, left in place. Precondition: not empty.
    [[nodiscard]] queue_node* front() const noexcept {
        std::size_t index = 0;
        while (levels_[index].head == nullptr) {
            ++index;
        }
        return levels_[index].head;
    }

    /// The task that starts next. Precondition: not empty.
    [[nodiscard]] queue_node* pop_front() noexcept {
        std::size_t index = 0;
        while (levels_[index].head == nullptr) {
            ++index;
        }
        queue_node* node = levels_[index].head;
        unlink(index, node);
        return node;
    }

    /// The task drop_oldest displaces: the oldest of the lowest priority. Precondition: not empty.
    [[nodiscard]] queue_node* lowest_oldest() const noexcept {
        std::size_t index = levels_.size() - 1;
        while (levels_[index].head == nullptr) {
            --index;
        }
        return levels_[index].head;
    }

    void erase(queue_node* node) noexcept {
        for (std::size_t index = 0; index < levels_.size(); ++index) {
            if (levels_[index].priority == node->priority) {
                unlink(index, node);
                return;
            }
        }
    }

    /// Removes every waiting task, in start order, into `out`.
    void take_all(node_chain& out) noexcept {
        for (std::size_t index = levels_.size(); index-- > 0;) {
            for (queue_node* node = levels_[index].tail; node != nullptr;) {
                queue_node* previous = node->prev;
                out.push(node);
                node = previous;
            }
        }
        for (level& emptied : levels_) {
            emptied.head = nullptr;
            emptied.tail = nullptr;
        }
        size_ = 0;
    }

  private:
    struct level {
        int priority;
        queue_node* head;
        queue_node* tail;
    };

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

    void unlink(std::size_t index, queue_node* node) noexcept {
        level& from = levels_[index];
        (node->prev != nullptr ? node->prev->next : from.head) = node->next;
        (node->next != nullptr ? node->next->prev : from.tail) = node->prev;
        node->prev = nullptr;
        node->next = nullptr;
        --size_;
        if (from.head == nullptr && levels_.size() > kept_levels) {
            levels_.erase(levels_.begin() + static_cast<std::ptrdiff_t>(index));
        }
    }

    // Empty levels are kept while there are few, so a queue that keeps emptying and refilling
    // one priority does not erase and re-insert its level every time.
    static constexpr std::size_t kept_levels = 4;
    std::vector<level> levels_; // highest priority first; may hold empty levels
    std::size_t size_ = 0;
};

} // namespace btq::detail
